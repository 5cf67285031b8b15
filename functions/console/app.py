"""The runs console: one web page and its assets, open without a key.

The page asks the person for a key once, keeps it in the browser's session storage (never
in a URL) and sends it with each call it makes to the public API, as any client does. The
front-end libraries are shipped in `static/` (Pico CSS, JSON Editor), so the page works
offline; the page's policy lets it load nothing from elsewhere.
"""

from functools import cache
from http import HTTPStatus
from pathlib import Path

from taskrun import __version__
from taskrun.api import make_resolver, problem_response
from taskrun.event_handler import Response
from taskrun.runtime import api_handler

app = make_resolver()
STATIC = Path(__file__).with_name("static")
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
ASSETS = ("console.js", "console.css", "pico.min.css", "jsoneditor.min.js")
# scripts and styles from the page's own assets only; JSON Editor sets styles inline; calls to
# the API itself, and uploads to the pre-signed links it answers (another host)
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self' http: https:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
PAGE = """<!doctype html>
<html lang="en" data-theme="light">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>taskrun console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="console/assets/pico.min.css?v={version}">
<link rel="stylesheet" href="console/assets/console.css?v={version}">
<script src="console/assets/jsoneditor.min.js?v={version}" defer></script>
<script src="console/assets/console.js?v={version}" defer></script>
</head>
<body>
<header class="container-fluid" id="top">
  <nav>
    <ul><li><h1 class="brand">taskrun</h1></li></ul>
    <ul id="nav" hidden>
      <li><a href="#/runs" data-nav="runs">Runs</a></li>
      <li><a href="#/tasks" data-nav="tasks">Tasks</a></li>
      <li><a href="#/schedules" data-nav="schedules">Schedules</a></li>
      <li><a href="#/" id="forget">Forget key</a></li>
    </ul>
  </nav>
</header>
<main class="container-fluid" id="main"><p aria-busy="true">Loading…</p></main>
</body>
</html>
"""


@cache
def _asset(name: str) -> str:
    return (STATIC / name).read_text()


@app.get("/console", include_in_schema=False)
def console() -> Response[str]:
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=PAGE.replace("{version}", __version__),
        headers={"Content-Security-Policy": POLICY, "Cache-Control": "no-cache", "X-Frame-Options": "DENY"},
    )


@app.get("/console/assets/<name>", include_in_schema=False)
def asset(name: str) -> Response[str]:
    if name not in ASSETS:
        return problem_response(HTTPStatus.NOT_FOUND, "the console has no such asset")
    return Response(
        status_code=200,
        content_type=TYPES[Path(name).suffix],
        body=_asset(name),
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


lambda_handler = api_handler(app)
