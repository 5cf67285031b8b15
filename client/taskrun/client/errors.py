"""The client's errors: a problem document answered, raised as the class of its status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


class TaskrunError(Exception):
    """Anything the client raises of its own."""


class ProblemError(TaskrunError):
    """The API answered an error: the problem document (RFC 9457) it sent."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.title: str = str(problem.get("title") or status)
        self.detail: str = str(problem.get("detail") or "")
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        where = "; ".join(f"{e.get('location')}: {e.get('message')}" for e in self.errors)
        super().__init__(f"{status} {self.title}: {self.detail}" + (f" ({where})" if where else ""))


class BadRequest(ProblemError):
    """400 or 415: the body is not JSON."""


class Unauthorized(ProblemError):
    """401: no key, or one that is not valid."""


class Forbidden(ProblemError):
    """403: the key lacks the route's scope."""


class NotFound(ProblemError):
    """404: no such task, run, schedule or route."""


class Conflict(ProblemError):
    """409: the resource's state refuses the request (a run that has ended, a reused key)."""


class PayloadTooLarge(ProblemError):
    """413."""


class Invalid(ProblemError):
    """422: well formed but not valid; `errors` says where."""


class Throttled(ProblemError):
    """429, still after the client's retries."""


class ServerError(ProblemError):
    """5xx."""


ERRORS: dict[int, type[ProblemError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: BadRequest,
    422: Invalid,
    429: Throttled,
}


def problem_error(response: httpx.Response) -> ProblemError:
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):  # not the API's answer (a proxy's page, the gateway's own)
        problem = {"title": response.reason_phrase, "status": response.status_code, "detail": response.text[:500]}
    kind = ERRORS.get(response.status_code, ServerError if response.status_code >= 500 else ProblemError)
    return kind(response.status_code, problem)
