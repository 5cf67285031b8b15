"""The runs console at /console, in real headless Chromium, as a person uses it: the key typed
once; runs appearing and ending; a run's live logs; a task started from the form made from
its JSON Schema (a wrong value first, its problem beside the field); a callback approved; a
delivery retried; a schedule disabled. Each page is saved as a 1280 by 800 screenshot in the
folder the test prints."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import needs_chromium, open_browser
from tests.conftest import API_KEY, modules_that_do_not_import
from tests.receiver import Receiver
from tests.test_run_control import started, waited
from tests.waiting import until

pytestmark = needs_chromium
PATIENCE = 30  # seconds a page may take to show what is asked of it
AXE_VERSION = "4.11.0"  # tests/vendor/axe-core: the accessibility engine, pinned, run in each page checked
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
AXE_RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("console-screenshots")
    print(f"\n  console screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def page(base_url: str, tmp_path_factory: pytest.TempPathFactory, shots: Path) -> Iterator[Page]:
    """One browser for the module's tests, as one person's day with the console."""
    browser = open_browser(tmp_path_factory.mktemp("profile"))
    browser.set_window_size(1280, 800)
    try:
        yield Page(browser, base_url, shots)
    finally:
        browser.quit()


class Page:
    """The console in a browser, with the steps a person takes."""

    def __init__(self, browser: Any, base_url: str, shots: Path) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.browser, self.base_url, self.shots = browser, base_url, shots
        self.wait = WebDriverWait(browser, PATIENCE, poll_frequency=0.2)

    def open(self, hash_route: str = "") -> None:
        self.browser.get(f"{self.base_url}/console{hash_route}")

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.wait.until(lambda browser: browser.find_element(By.CSS_SELECTOR, css))

    def until(self, check: Any) -> Any:
        return self.wait.until(lambda _: check())

    def text(self, css: str) -> str:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.common.by import By

        try:
            return str(self.browser.find_element(By.CSS_SELECTOR, css).text)
        except (NoSuchElementException, StaleElementReferenceException):
            return ""

    def click(self, css: str) -> None:
        self.until(lambda: self.find(css).is_displayed() and self.find(css).is_enabled())
        self.find(css).click()

    def sign_in(self) -> None:
        self.open()
        if self.browser.execute_script("return sessionStorage.getItem('taskrun-key')") != API_KEY:
            self.find("#key").send_keys(API_KEY)
            self.click("#use-key")
        self.find("#runs")

    def sign_out(self) -> None:
        self.open()
        self.browser.execute_script("sessionStorage.clear()")
        self.browser.refresh()

    def shot(self, name: str) -> None:
        """Save the page as a screenshot, and hold it to showing no stray text: a value the
        page meant to leave out, written as `null`, `undefined`, `NaN` or `[object Object]`."""
        self.browser.save_screenshot(str(self.shots / f"{name}.png"))
        stray = self.stray_text()
        assert stray == [], f"{name}: stray text on the page: {stray}"

    def accessibility_problems(self) -> list[str]:
        """What axe-core finds against WCAG 2.1 A and AA (and its best practices) on the page
        as it stands (its refreshes stopped first, so that it holds still while checked): each
        rule broken, with the elements that break it."""
        self.browser.execute_script("timers.forEach(clearInterval)")
        self.browser.execute_script(AXE.read_text())
        assert self.browser.execute_script("return axe.version") == AXE_VERSION
        self.browser.set_script_timeout(PATIENCE)
        found = self.browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}})"
            ".then(r => done(r.violations.map(v => v.id + ': ' + v.help + ' at '"
            " + v.nodes.map(n => n.target.join(' ')).join(', '))), e => done(['axe failed: ' + e]));",
            AXE_RULES,
        )
        return list(found)

    def stray_text(self) -> list[str]:
        """The page's visible text nodes that are a value written by mistake, each with the
        element it sits in."""
        found: list[str] = self.browser.execute_script(STRAY_TEXT)
        return found


STRAY_TEXT = """
const stray = /^(null|undefined|NaN|\\[object Object\\])$/;
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const found = [];
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const text = node.textContent.trim();
  const parent = node.parentElement;
  if (stray.test(text) && parent && parent.closest("pre, code, textarea") === null) {
    found.push(`${parent.tagName.toLowerCase()}#${parent.id}: ${text}`);
  }
}
return found;
"""


@pytest.fixture
def person(page: Page) -> Page:
    page.sign_in()
    return page


def test_the_key_is_asked_once_kept_for_the_session_and_never_put_in_a_url(page: Page) -> None:
    # A wrong key is refused on the page
    page.sign_out()
    page.find("#key").send_keys("not-a-key")
    page.click("#use-key")
    page.until(
        lambda: "key" in page.text("#key-problem").lower() or "unauthorized" in page.text("#key-problem").lower()
    )
    page.shot("key-refused")
    # The right one opens the runs; a reload keeps it; no address ever holds it
    page.find("#key").clear()
    page.find("#key").send_keys(API_KEY)
    page.click("#use-key")
    page.find("#runs")
    page.browser.refresh()
    page.find("#runs")
    assert API_KEY not in page.browser.current_url
    entries = page.browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert entries and not any(API_KEY in entry for entry in entries)
    assert page.browser.execute_script("return sessionStorage.getItem('taskrun-key')") == API_KEY
    assert page.browser.execute_script("return localStorage.length") == 0


def test_a_run_appears_ends_and_shows_its_live_logs(person: Page, api: httpx.Client) -> None:
    # Given a run of a task that prints a line a second
    run = started(api, {"task_id": "examples/countdown", "arguments": {"seconds": 10}})
    row = f'tr[data-run="{run["run_id"]}"]'
    # The runs page shows it by itself, running, and says it refreshes itself while runs are active
    person.find(row)
    person.until(lambda: "refreshes itself" in person.text("#runs-live"))
    person.shot("runs")
    # Opened, its logs grow while it runs
    person.click(f"{row} a")
    person.until(lambda: "10..." in person.text("#logs"))
    assert api.get(f"/v1/runs/{run['run_id']}").json()["status"] == "running"
    assert "running" in person.text("#run-head")
    person.shot("run-live-logs")
    # and it ends, succeeded, with its result and every line
    person.until(lambda: "succeeded" in person.text("#run-head"))
    person.until(lambda: person.find("#logs").get_attribute("data-ended") == "true")
    assert person.text("#logs").split() == [f"{n}..." for n in range(10, 0, -1)]
    assert '"lift-off"' in person.text("#result")
    person.shot("run-ended")
    # back on the list, it shows ended
    person.open("#/runs")
    person.until(lambda: "succeeded" in person.text(row))


def test_the_runs_list_shows_a_screenful_in_one_filter_row_and_keeps_its_filter_in_the_url(
    person: Page, api: httpx.Client
) -> None:
    # Given more runs than a screen holds
    tag = f"screen-{uuid.uuid4().hex[:8]}"
    batch = {"runs": [{"task_id": "team/add", "arguments": {"a": n}, "tags": [tag]} for n in range(24)]}
    assert api.post("/v1/runs/batch", json=batch).status_code in (200, 201, 207)
    until(lambda: len(api.get("/v1/runs", params={"tag": tag, "limit": 50}).json()["runs"]) == 24)
    # When the list is opened filtered by their tag, from an address someone shared
    person.open(f"#/runs?tag={tag}")
    person.until(lambda: len(rows_of(person)) == 24)
    # Then the filter shows in its field, the filters sit in one row, and 15 or more runs are
    # in view in a 1280 by 800 window without scrolling
    assert person.find("#filter-tag").get_attribute("value") == tag
    tops = person.browser.execute_script(
        "return [...document.querySelectorAll('.filters input, .filters select, .filters button')]"
        ".map(e => Math.round(e.getBoundingClientRect().top))"
    )
    assert len(tops) == 6 and len(set(tops)) == 1, tops
    in_view = person.browser.execute_script(
        "return [...document.querySelectorAll('#runs tr')]"
        ".filter(r => r.getBoundingClientRect().bottom <= window.innerHeight).length"
    )
    assert in_view >= 15, f"{in_view} runs in view"
    person.shot("runs-screenful")
    # And a filter chosen on the page goes into the address, so the view can be shared
    person.find("#filter-status").send_keys("failed")
    person.click(".filters button")
    person.until(lambda: "status=failed" in person.browser.current_url and f"tag={tag}" in person.browser.current_url)
    person.until(lambda: len(rows_of(person)) == 0)


def rows_of(person: Page) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(person.browser.find_elements(By.CSS_SELECTOR, "#runs tr"))


def test_live_logs_follow_the_newest_line_unless_the_person_scrolls_up(person: Page, api: httpx.Client) -> None:
    # Given a run printing ten lines a second, for longer than the test needs
    run = started(api, {"task_id": "noisy/steady", "arguments": {"lines": 400, "every": 0.1}})
    try:
        open_run(person, run["run_id"])
        # While its logs grow past the box, the newest line stays in view
        person.until(lambda: person.browser.execute_script(LOGS_STATE)["overflow"] > 100)
        person.until(lambda: person.browser.execute_script(LOGS_STATE)["at_end"])
        grown = person.browser.execute_script(LOGS_STATE)["lines"]
        person.until(lambda: person.browser.execute_script(LOGS_STATE)["lines"] > grown)
        assert person.browser.execute_script(LOGS_STATE)["at_end"]
        # When the person scrolls up to read, the box stays where they put it as lines come
        person.browser.execute_script("document.getElementById('logs').scrollTop = 0")
        read = person.browser.execute_script(LOGS_STATE)["lines"]
        person.until(lambda: person.browser.execute_script(LOGS_STATE)["lines"] > read + 10)
        assert person.browser.execute_script(LOGS_STATE)["top"] == 0
        # and once they scroll back to the end, it follows again
        person.browser.execute_script("const l = document.getElementById('logs'); l.scrollTop = l.scrollHeight")
        read = person.browser.execute_script(LOGS_STATE)["lines"]
        person.until(lambda: person.browser.execute_script(LOGS_STATE)["lines"] > read + 10)
        assert person.browser.execute_script(LOGS_STATE)["at_end"]
    finally:
        api.post(f"/v1/runs/{run['run_id']}/cancel")


LOGS_STATE = """
const logs = document.getElementById('logs');
if (!logs) return {lines: 0, overflow: 0, top: 0, at_end: false};
return {
  lines: logs.textContent.split('\\n').length,
  overflow: logs.scrollHeight - logs.clientHeight,
  top: Math.round(logs.scrollTop),
  at_end: logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 8,
};
"""


def test_a_flow_s_steps_are_bars_on_one_time_axis_with_retries_and_each_step_s_output_or_error(
    person: Page, api: httpx.Client
) -> None:
    # Given a state machine flow whose first step was tried twice, and one whose stock ran out
    done = api.post(
        "/v1/runs?wait=true", json={"task_id": "examples/order", "arguments": {"order_id": "T-1", "quantity": 2}}
    ).json()
    assert done["status"] == "succeeded", done
    open_run(person, done["run_id"])
    # Then each step is a bar on one axis, in the order the steps started, coloured by status
    person.until(lambda: len(bars_of(person)) >= 4)
    bars = bars_of(person)
    assert [bar["step"] for bar in bars][:2] == ["Reserve", "Price"], bars
    for bar in bars:
        assert bar["left"] >= 0 and bar["left"] + bar["width"] <= 100.5 and bar["width"] > 0, bar
        assert bar["colour"] == "rgb(46, 139, 71)", bar  # succeeded
    lefts = [bar["left"] for bar in bars]
    assert lefts == sorted(lefts) and lefts[-1] > lefts[0]
    # the retried step says how many attempts it took
    assert "2 attempts" in person.text('[data-step="Reserve"] .gantt-label')
    # and a step's output shows when its name is clicked, and hides again
    person.click('[data-step="Reserve"] .gantt-label')
    person.until(lambda: "rsv-T-1" in person.text('[data-step="Reserve"] .step-output'))
    assert person.find('[data-step="Reserve"] .gantt-label').get_attribute("aria-expanded") == "true"
    person.shot("flow-timeline")
    person.click('[data-step="Reserve"] .gantt-label')
    person.until(lambda: person.text('[data-step="Reserve"] .step-detail') == "")
    # Keyboard too: Enter on a focused step opens it
    from selenium.webdriver.common.keys import Keys

    person.find('[data-step="Price"] .gantt-label').send_keys(Keys.ENTER)
    person.until(lambda: "total" in person.text('[data-step="Price"] .step-output'))

    out = api.post(
        "/v1/runs?wait=true", json={"task_id": "examples/order", "arguments": {"order_id": "T-2", "quantity": 500}}
    ).json()
    open_run(person, out["run_id"])
    reserve = person.until(lambda: next((bar for bar in bars_of(person) if bar["step"] == "Reserve"), None))
    assert reserve["status"] == "failed" and reserve["colour"] == "rgb(192, 57, 43)", reserve
    person.click('[data-step="Reserve"] .gantt-label')
    person.until(lambda: "OutOfStock" in person.text('[data-step="Reserve"] .step-error'))
    assert "only 100 in stock" in person.text('[data-step="Reserve"] .step-error')
    person.shot("flow-timeline-error")


REDRAWN = "return document.querySelector('[data-step=\"approval\"] .gantt-label') !== window.onStep"


def ended_bars(person: Page, last: str) -> list[dict[str, Any]] | None:
    """The timeline's bars once it shows the step `last` and every step succeeded, else None."""
    bars = bars_of(person)
    done = any(bar["step"] == last for bar in bars) and all(bar["status"] == "succeeded" for bar in bars)
    return bars if done else None


def open_run(person: Page, run_id: str) -> None:
    """A run's page, once it shows that run (not the page before it)."""
    person.open(f"#/runs/{run_id}")
    person.until(lambda: run_id in person.text("#run-head"))


def bars_of(person: Page) -> list[dict[str, Any]]:
    """The timeline's bars as drawn: each step's name, status, place on the axis (percent) and colour."""
    found: list[dict[str, Any]] = person.browser.execute_script(
        "return [...document.querySelectorAll('.timeline [data-step]')].map(row => {"
        " const bar = row.querySelector('.gantt-bar');"
        " return {step: row.dataset.step, status: row.dataset.status, left: parseFloat(bar.dataset.left),"
        " width: parseFloat(bar.dataset.width), colour: getComputedStyle(bar).backgroundColor,"
        " wait: bar.classList.contains('bar-wait')}; });"
    )
    return found


def test_a_failed_run_shows_its_error_and_traceback(person: Page, api: httpx.Client) -> None:
    failed = api.post("/v1/runs?wait=true", json={"task_id": "noisy/fail", "arguments": {"number": 5}}).json()
    person.open(f"#/runs/{failed['run_id']}")
    person.until(lambda: "5 is too many" in person.text("#error"))
    assert "ValueError" in person.text("#error") and "noisy.py" in person.text("#error")
    person.until(lambda: "Traceback" in person.text("#logs"))
    person.shot("run-failed")


def test_a_task_is_started_from_its_form_a_wrong_value_shown_beside_its_field(person: Page, api: httpx.Client) -> None:
    # Given the form made from examples/greet's parameters
    person.open("#/tasks")
    person.click('tr[data-task="examples/greet"] a')
    name = person.find('[data-schemapath="root.name"] input')
    times = person.find('[data-schemapath="root.times"] input')
    person.shot("task-form")
    # When it is sent with a count past the task's limit
    name.send_keys("Ada")
    times.clear()
    times.send_keys("20")
    person.click("#start")
    # Then the API's problem shows beside that field, and no run starts
    person.until(lambda: "10" in person.text('[data-schemapath="root.times"]'))
    assert person.text("#start-detail")
    assert "#/tasks/" in person.browser.current_url
    person.shot("task-form-problem")
    # When it is corrected, the run starts and the page follows it to its end
    times.clear()
    times.send_keys("2")
    person.click("#start")
    person.until(lambda: "#/runs/run_" in person.browser.current_url)
    person.until(lambda: "succeeded" in person.text("#run-head"))
    assert "hello Ada hello Ada!" in person.text("#result")
    run_id = person.browser.current_url.rsplit("/", 1)[1]
    assert api.get(f"/v1/runs/{run_id}").json()["arguments"]["times"] == 2


def test_the_tasks_page_flags_modules_that_do_not_import(person: Page, api: httpx.Client, live_tasks: Path) -> None:
    # Given a new module whose dependency is missing, and a loaded one saved with a syntax error
    with modules_that_do_not_import(api, live_tasks):
        # Then the tasks page names the module that did not import, with its file, line and error
        person.open("#/tasks")
        person.until(lambda: "No module named 'requestz'" in person.text("#unloaded-modules"))
        assert "unimportable.py line 2" in person.text('#unloaded-modules [data-module="unimportable"]')
        # and marks the task whose module no longer imports, on the list and on its form
        assert "SyntaxError" in person.text('tr[data-task="live/version"] [data-problem]')
        person.shot("tasks-broken-modules")
        person.click('tr[data-task="live/version"] a')
        person.until(lambda: "cannot run" in person.text("[role=alert]"))
    # And once both import again, the page flags nothing
    person.open("#/tasks")
    person.find('tr[data-task="live/version"]')
    assert person.text("#unloaded-modules") == ""


def test_a_task_s_file_parameter_is_uploaded_from_the_form(person: Page, tmp_path: Path) -> None:
    # Given a file on the person's machine, and the form of a task that takes one
    content = "taskrun console upload\n" * 100
    chosen = tmp_path / "notes.txt"
    chosen.write_text(content)
    person.open("#/tasks/files/measure")
    # When it is chosen, it goes up by itself; then the run is started
    person.find('[data-schemapath="root.upload"] input[type="file"]').send_keys(str(chosen))
    field = '[data-schemapath="root.upload"] input[type="hidden"]'
    person.until(lambda: (person.find(field).get_attribute("value") or "").startswith("file_"))
    assert "notes.txt" in person.text('[data-schemapath="root.upload"]')
    person.shot("task-form-file")
    person.click("#start")
    # Then the task reads the very bytes
    person.until(lambda: "succeeded" in person.text("#run-head"))
    assert hashlib.sha256(content.encode()).hexdigest() in person.text("#result")


def test_a_flow_s_callback_is_approved(person: Page, api: httpx.Client) -> None:
    run = started(api, {"task_id": "examples/approval", "arguments": {"requester": "ada", "amount": 120}})
    open_run(person, run["run_id"])
    person.until(lambda: "Waiting for a decision" in person.text("#callbacks"))
    person.shot("run-callback")
    person.click("#callbacks button:not(.secondary)")
    person.find("#decided")
    ended = waited(api, run["run_id"])
    assert ended["status"] == "succeeded" and ended["result"]["approved"] is True
    person.until(lambda: "succeeded" in person.text("#run-head"))
    person.find(".timeline")
    person.shot("flow-ended")


def test_a_code_first_flow_s_approval_is_given_and_its_steps_shown(person: Page, api: httpx.Client) -> None:
    arguments = {"order_id": "web-1", "quantity": 1, "approval": True, "cool_down": 1}
    run = started(api, {"task_id": "examples/order_code", "arguments": arguments})
    open_run(person, run["run_id"])
    person.until(lambda: "Waiting for a decision" in person.text("#callbacks"))
    # while it waits, the timeline shows the wait going, live
    person.until(lambda: any(bar["status"] == "running" for bar in bars_of(person)))
    # and a step a keyboard is on stays focused as the timeline is drawn again
    person.browser.execute_script(
        "window.onStep = document.querySelector('[data-step=\"approval\"] .gantt-label'); window.onStep.focus()"
    )
    person.until(lambda: person.browser.execute_script(REDRAWN))
    assert person.browser.execute_script("return document.activeElement.closest('[data-step]').dataset.step") == (
        "approval"
    )
    assert person.text("#callbacks button.secondary") == "Reject"
    # the card holds what there is to decide: no stray "null" for a request the flow left out,
    # and buttons the size of their words
    assert "null" not in person.text("#callbacks").split(), person.text("#callbacks")
    widths = person.browser.execute_script(
        "return [...document.querySelectorAll('#callbacks button')].map(b => b.offsetWidth)"
    )
    assert len(widths) == 2 and max(widths) < 300, widths
    person.shot("code-flow-waiting")
    person.click("#callbacks button:not(.secondary)")
    person.find("#decided")
    ended = waited(api, run["run_id"])
    assert ended["status"] == "succeeded" and ended["result"]["status"] == "shipped", ended
    person.until(lambda: "succeeded" in person.text("#run-head"))
    # every step ended on the same axis, the cool-down drawn as a wait, the reservation's retry said
    bars = person.until(lambda: ended_bars(person, "ship-standard"))
    assert [bar["wait"] for bar in bars if bar["step"] == "cool-down"] == [True], bars
    # (read once the timeline has drawn it: an ended run's last redraw may still be under way)
    assert person.until(lambda: "2 attempts" in person.text('[data-step="reserve"] .gantt-label'))
    person.shot("code-flow-ended")


def test_a_flow_cancelled_while_it_waits_is_drawn_over_its_own_time(person: Page, api: httpx.Client) -> None:
    # Given a code-first flow cancelled while it waited for an approval, some seconds ago
    arguments = {"order_id": "web-2", "quantity": 1, "approval": True}
    run = started(api, {"task_id": "examples/order_code", "arguments": arguments})
    until(lambda: api.get(f"/v1/runs/{run['run_id']}/callbacks").json()["callbacks"], 30)
    api.post(f"/v1/runs/{run['run_id']}/cancel")
    ended = waited(api, run["run_id"])
    assert ended["status"] == "cancelled", ended
    # (no step of its history has an end now that it has stopped)
    until(lambda: time.time() - datetime.fromisoformat(ended["ended_at"]).timestamp() > 3)
    # Then its timeline spans the run's own time, not the time until now
    open_run(person, run["run_id"])
    span = int(person.find(".gantt-axis").get_attribute("data-span-ms"))
    lasted = (datetime.fromisoformat(ended["ended_at"]) - datetime.fromisoformat(ended["created_at"])).total_seconds()
    assert span <= lasted * 1000 + 500, (span, lasted)


def test_a_webhook_delivery_is_retried(person: Page, api: httpx.Client, receiver: Receiver) -> None:
    run = api.post(
        "/v1/runs?wait=true", json={"task_id": "team/add", "arguments": {"a": 1}, "webhook_url": receiver.url}
    ).json()
    receiver.wait_for(lambda: bool(receiver.of_run(run["run_id"])))
    open_run(person, run["run_id"])
    person.click("#deliveries button")
    receiver.wait_for(lambda: len(receiver.of_run(run["run_id"])) == 2)
    (delivery,) = api.get(f"/v1/runs/{run['run_id']}/deliveries").json()["deliveries"]
    assert [attempt["trigger"] for attempt in delivery["attempts"]] == ["automatic", "manual"]
    person.until(lambda: "2 attempt" in person.text("#deliveries"))
    person.shot("run-deliveries")


def test_a_schedule_is_disabled_and_enabled_again(person: Page, api: httpx.Client) -> None:
    made = api.post("/v1/schedules", json={"task_id": "team/add", "arguments": {"a": 1}, "expression": "rate(1 hour)"})
    assert made.status_code == 201, made.text
    name = made.json()["schedule_id"]
    try:
        person.open("#/schedules")
        row = f'tr[data-schedule="{name}"]'
        person.until(lambda: person.text(f"{row} .state") == "scheduled")  # the API's word for its state
        person.shot("schedules")
        person.click(f'[id="disable-{name}"]')
        person.until(lambda: person.text(f"{row} .state") == "disabled")
        assert api.get(f"/v1/schedules/{name}").json()["enabled"] is False
        person.click(f'[id="enable-{name}"]')
        person.until(lambda: person.text(f"{row} .state") == "scheduled")
        assert api.get(f"/v1/schedules/{name}").json()["enabled"] is True
    finally:
        api.delete(f"/v1/schedules/{name}")


def test_every_page_passes_the_accessibility_check(person: Page, api: httpx.Client) -> None:
    flow = api.post(
        "/v1/runs?wait=true", json={"task_id": "examples/order", "arguments": {"order_id": "A-1", "quantity": 2}}
    ).json()
    failed = api.post("/v1/runs?wait=true", json={"task_id": "noisy/fail", "arguments": {"number": 5}}).json()
    pages = {
        "#/runs": "#runs tr",
        f"#/runs/{flow['run_id']}": ".timeline [data-step]",
        f"#/runs/{failed['run_id']}": "#error",
        "#/tasks": "#tasks tr",
        "#/tasks/examples/greet": '[data-schemapath="root.name"] input',
        "#/schedules": "#schedules",
    }
    for route, ready in pages.items():
        person.open(route)
        person.find(ready)
        if route.endswith(flow["run_id"]):
            person.click(".timeline .gantt-label")  # a step opened, its output shown
            person.find(".step-detail")
        assert person.accessibility_problems() == [], route
    person.sign_out()
    person.find("#key")
    assert person.accessibility_problems() == [], "the key page"


def test_the_console_loads_nothing_from_elsewhere_and_logs_no_error(person: Page) -> None:
    person.browser.get_log("browser")  # what earlier pages logged (a refused key's 401) is not this page's
    person.browser.refresh()
    person.find("#runs tr")
    entries = person.browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert entries and all(entry.startswith(person.base_url) for entry in entries)
    logs = person.browser.get_log("browser")
    assert not [entry for entry in logs if entry.get("level") == "SEVERE"], logs
