"""The API document and Swagger UI, open without a key.

The document is the one docs/openapi.json holds (made from every function's routes by
`taskrun openapi`), served with the address the API is reached at as its server. The page
comes with a content policy, as the console does: its two inline scripts (Swagger UI, and
the document with the options) run by their digests, nothing else runs, it calls only the
API it came from, and no other site may frame it."""

import base64
import hashlib
import json
import re
from functools import cache
from pathlib import Path

from taskrun.api import APPLICATION_JSON, make_resolver
from taskrun.event_handler import Response
from taskrun.runtime import api_handler

app = make_resolver()
DOCUMENT = Path(__file__).with_name("openapi.json")
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
# Swagger UI's own inline styles and style attributes; its icons as data: images; the tried
# operations' requests to the API itself
POLICY = (
    "default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@cache
def _document() -> dict:
    return json.loads(DOCUMENT.read_text())


@cache
def _assets() -> tuple[str, str]:
    from aws_lambda_powertools.event_handler.openapi import swagger_ui  # after taskrun.event_handler

    assets = Path(swagger_ui.__file__).parent
    return (assets / "swagger-ui-bundle.min.js").read_text(), (assets / "swagger-ui.min.css").read_text()


def _served() -> str:
    """The document, its server the base path this request came through (a stage, a
    custom domain's mapping), so that Swagger UI's requests reach the same API."""
    event = app.current_event
    full = event.raw_event.get("requestContext", {}).get("path") or event.path
    base = full[: -len(event.path)] if full.endswith(event.path) else ""
    return json.dumps({**_document(), "servers": [{"url": base or "/"}]}, indent=2)


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi_document() -> Response[str]:
    return Response(status_code=200, content_type=APPLICATION_JSON, body=_served())


@app.get("/v1/docs", include_in_schema=False)
def swagger() -> Response[str]:
    if app.current_event.get_query_string_value("format") == "json":  # the link Swagger UI shows
        return openapi_document()
    script, style = _assets()
    spec = _served().replace("</", "<\\/")  # the document sits inside a <script>
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

    page = generate_swagger_html(spec, script, style, swagger_base_url="", oauth2_config=None)
    page = page.replace("<title>Swagger UI</title>", "<title>taskrun API</title>")
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=page,
        headers={"Content-Security-Policy": _policy(page), "X-Frame-Options": "DENY"},
    )


def _policy(page: str) -> str:
    """The page's policy, its inline scripts allowed by their SHA-256 digests (the document
    inside one of them differs with the base path, so the digests are of this page)."""
    digests = (hashlib.sha256(script.encode()).digest() for script in INLINE_SCRIPT.findall(page))
    return POLICY.replace("{scripts}", " ".join(f"'sha256-{base64.b64encode(d).decode()}'" for d in digests))


lambda_handler = api_handler(app)
