"""Tasks under reports/, for keys limited to them."""

from taskrun import task


@task("reports/daily", timeout=5)
def daily(day: str = "today") -> dict[str, str]:
    """A day's report."""
    return {"report": f"the report of {day}"}
