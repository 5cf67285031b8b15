"""File inputs: announced with POST /v1/files, uploaded through the pre-signed PUT, named
by a run's arguments, read by the task."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import httpx
import pytest


def announce(api: httpx.Client, size: int, filename: str = "photo.png", content_type: str = "image/png") -> Any:
    answer = api.post("/v1/files", json={"filename": filename, "content_type": content_type, "size": size})
    assert answer.status_code == 201, answer.text
    return answer.json()


def upload(api: httpx.Client, data: bytes, **announced: Any) -> str:
    made = announce(api, len(data), **announced)
    put = httpx.put(made["upload_url"], content=data, headers=made["upload_headers"], timeout=30)
    assert put.status_code == 200, put.text
    file_id: str = made["file_id"]
    return file_id


def test_an_uploaded_file_reaches_the_task_that_reads_its_bytes(api: httpx.Client) -> None:
    data = os.urandom(300_000)
    file_id = upload(api, data, filename="café photo.png")
    body = {"task_id": "files/measure", "arguments": {"upload": {"file_id": file_id}, "label": "x"}, "wait": True}
    run = api.post("/v1/runs", json=body).json()
    assert run["status"] == "succeeded", run
    assert run["result"] == {
        "label": "x",
        "name": "café photo.png",
        "content_type": "image/png",
        "size": len(data),
        "read": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "on_disk": True,
    }
    # the run shows the file's reference and metadata, never its bytes
    assert run["arguments"]["upload"] == {
        "file_id": file_id,
        "name": "café photo.png",
        "content_type": "image/png",
        "size": len(data),
    }


def test_the_catalog_marks_file_parameters(api: httpx.Client) -> None:
    schema = api.get("/v1/tasks/files/measure").json()["parameters"]
    reference = schema["properties"]["upload"]["$ref"].rpartition("/")[2]
    assert schema["$defs"][reference]["x-taskrun-file"] is True
    assert "x-taskrun-file" not in schema["properties"]["label"]


def test_an_announcement_answers_what_an_upload_needs(api: httpx.Client) -> None:
    made = announce(api, 10)
    assert made["file_id"].startswith("file_")
    assert made["upload_headers"]["Content-Type"] == "image/png"
    assert made["upload_url"].startswith("http") and "X-Amz-Signature" in made["upload_url"]
    assert made["expires_at"].endswith("Z")


def refused(api: httpx.Client, value: Any) -> dict[str, Any]:
    answer = api.post("/v1/runs", json={"task_id": "files/measure", "arguments": {"upload": value}})
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["errors"]
    assert error["location"].startswith("body.arguments.upload"), error
    return dict(error)


def test_unknown_missing_or_wrong_size_files_are_refused_at_the_argument(api: httpx.Client) -> None:
    assert "no such file" in refused(api, {"file_id": "file_" + "0" * 32})["message"]
    refused(api, {"file_id": "../../etc/passwd"})
    refused(api, "file_" + "0" * 32)
    refused(api, {"file_id": 5})
    announced_only = announce(api, 10)["file_id"]
    assert "not uploaded" in refused(api, {"file_id": announced_only})["message"]
    made = announce(api, 10)
    httpx.put(made["upload_url"], content=b"short", headers=made["upload_headers"], timeout=30)
    assert "not the 10 announced" in refused(api, {"file_id": made["file_id"]})["message"]


def test_an_expired_file_is_refused(api: httpx.Client) -> None:
    made = announce(api, 3)
    headers = {**made["upload_headers"], "x-amz-meta-expires-at": "2020-01-01T00:00:00.000Z"}
    httpx.put(made["upload_url"], content=b"old", headers=headers, timeout=30)
    assert "expired" in refused(api, {"file_id": made["file_id"]})["message"]


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"filename": "a.png", "size": 0}, "body.size"),
        ({"filename": "a.png", "size": 6 * 1024**3}, "body.size"),
        ({"filename": "../a.png", "size": 1}, "body.filename"),
        ({"filename": "", "size": 1}, "body.filename"),
        ({"size": 1}, "body.filename"),
        ({"filename": "a", "size": "big"}, "body.size"),
        ({"filename": "a", "size": 1, "content_type": "not a type"}, "body.content_type"),
        ({"filename": "a", "size": 1, "extra": True}, "body.extra"),
    ],
)
def test_a_bad_announcement_is_refused(api: httpx.Client, body: dict[str, Any], location: str) -> None:
    answer = api.post("/v1/files", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["location"] == location


def test_a_run_sent_as_a_form_with_its_file_reaches_the_task(api: httpx.Client) -> None:
    data = os.urandom(200_000)
    request = {"task_id": "files/measure", "arguments": {"label": "form"}, "wait": True}
    answer = api.post(
        "/v1/runs",
        data={"request": json.dumps(request)},
        files={"upload": ("scan.jpg", data, "image/jpeg")},
    )
    assert answer.status_code == 201, answer.text
    run = answer.json()
    assert run["status"] == "succeeded", run
    assert run["result"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert run["result"]["name"] == "scan.jpg" and run["result"]["content_type"] == "image/jpeg"
    assert run["arguments"]["upload"]["size"] == len(data) and run["arguments"]["label"] == "form"


FORM = "multipart/form-data; boundary=XyZ"


def form(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, payload in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--XyZ\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + payload + b"\r\n"
    return out + b"--XyZ--\r\n"


REQUEST = json.dumps({"task_id": "files/measure"}).encode()


@pytest.mark.parametrize(
    ("content_type", "body", "status", "location"),
    [
        (FORM, form(("upload", "a.png", b"x")), 422, "body.request"),
        (FORM, form(("request", None, b"{not json"), ("upload", "a.png", b"x")), 400, "body.request"),
        (FORM, form(("request", None, b"[1]")), 422, "body.request"),
        (FORM, form(("request", None, REQUEST), ("upload", "a.png", b"")), 422, "body.arguments.upload"),
        (FORM, form(("request", None, REQUEST), ("label", "a.txt", b"text")), 422, "body.arguments.label"),
        (FORM, form(("request", None, REQUEST), *[(f"f{i}", "a", b"x") for i in range(11)]), 422, None),
        ("multipart/form-data", form(("request", None, REQUEST)), 400, None),
        (FORM, b"no parts here at all", 400, None),
        (FORM, b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--\r\n", 400, None),
    ],
)
def test_a_form_that_cannot_be_taken_is_a_clear_problem(
    api: httpx.Client, content_type: str, body: bytes, status: int, location: str | None
) -> None:
    answer = api.post("/v1/runs", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    if location is not None:
        assert location in [error["location"] for error in answer.json()["errors"]]
