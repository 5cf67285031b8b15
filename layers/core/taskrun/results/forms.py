"""A run sent as `multipart/form-data`: a part `request` with the run request as JSON, and
one part per file parameter, named after it, as image-upload endpoints take them.

The form is turned into the JSON request at the edge of the function: each file part is
kept as an uploaded file (taskrun.results.files) and the request's arguments name it by
`{"file_id": ...}`, so the run is validated and recorded as any other. What is not a
well-formed form answers a problem here, before the route.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from http import HTTPStatus
from typing import Any

from taskrun.errors import FieldError
from taskrun.results.files import FileStore

MAX_FILE_PARTS = 10


class FormError(Exception):
    def __init__(self, status: HTTPStatus, detail: str, location: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.location = status, detail, location


def _header(event: dict[str, Any], name: str) -> str:
    return next((str(v) for k, v in (event.get("headers") or {}).items() if k.lower() == name), "")


def is_form(event: dict[str, Any]) -> bool:
    return _header(event, "content-type").split(";")[0].strip().lower() == "multipart/form-data"


def form_as_json(event: dict[str, Any], files: FileStore | None, now: datetime) -> dict[str, Any]:
    """The event with the form turned into a JSON body; FormError if it cannot be."""
    raw = event.get("body") or ""
    try:
        data = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw.encode()
    except (binascii.Error, ValueError):
        raise FormError(HTTPStatus.BAD_REQUEST, "the body is not valid base64") from None
    content_type = _header(event, "content-type")
    if "boundary=" not in content_type:
        raise FormError(HTTPStatus.BAD_REQUEST, "a multipart/form-data body needs a boundary in its Content-Type")
    import email.parser  # a form's request only (email.policy's header registry: ~3 ms of an init)
    import email.policy

    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + data
    )
    if not message.is_multipart() or message.defects:
        raise FormError(HTTPStatus.BAD_REQUEST, "the body is not well-formed multipart/form-data")
    request: dict[str, Any] | None = None
    uploads: list[tuple[str, str, str, bytes]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise FormError(HTTPStatus.BAD_REQUEST, "every part needs a Content-Disposition with a name")
        decoded = part.get_payload(decode=True)
        payload = decoded if isinstance(decoded, bytes) else b""
        if name == "request":
            try:
                request = json.loads(payload)
            except (ValueError, UnicodeDecodeError):
                raise FormError(HTTPStatus.BAD_REQUEST, "the part `request` is not JSON", "body.request") from None
            if not isinstance(request, dict):
                raise FormError(HTTPStatus.UNPROCESSABLE_ENTITY, "the part `request` must be an object", "body.request")
            continue
        filename = part.get_filename() or name
        uploads.append((name, filename, part.get_content_type(), payload))
    if request is None:
        raise FormError(
            HTTPStatus.UNPROCESSABLE_ENTITY, "the form has no part `request` (the run as JSON)", "body.request"
        )
    if len(uploads) > MAX_FILE_PARTS:
        raise FormError(HTTPStatus.UNPROCESSABLE_ENTITY, f"at most {MAX_FILE_PARTS} file parts")
    if uploads and files is None:
        raise FormError(HTTPStatus.UNPROCESSABLE_ENTITY, "this stack takes no files")
    arguments = request.setdefault("arguments", {})
    if not isinstance(arguments, dict):
        raise FormError(HTTPStatus.UNPROCESSABLE_ENTITY, "arguments must be an object", "body.arguments")
    for name, filename, part_type, payload in uploads:
        if not payload:
            raise FormError(HTTPStatus.UNPROCESSABLE_ENTITY, "the file is empty", f"body.arguments.{name}")
        assert files is not None
        arguments[name] = {"file_id": files.put(filename, part_type, payload, now)}
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() != "content-type"}
    return {
        **event,
        "body": json.dumps(request),
        "isBase64Encoded": False,
        "headers": {**headers, "Content-Type": "application/json"},
        "multiValueHeaders": {**multi, "Content-Type": ["application/json"]},
    }


def problem_event(error: FormError) -> dict[str, Any]:
    """The proxy answer of a form that cannot be taken (problem+json)."""
    from taskrun.api import proxy_problem

    return proxy_problem(
        error.status, error.detail, [FieldError(error.location, error.detail)] if error.location else []
    )
