"""Webhook targets: a run or schedule whose webhook_url points where taskrun must not send
is refused when it is made (422 at body.webhook_url)."""

from __future__ import annotations

import httpx
import pytest

REFUSED = [
    "ftp://hooks.example.org/x",
    "file:///etc/passwd",
    "http:///no-host",
    "https://user:secret@hooks.example.org/x",
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://2130706433/hook",  # 127.0.0.1 written as one number
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://172.16.5.4/hook",
    "http://100.64.0.1/hook",  # carrier-grade NAT
    "http://169.254.169.254/latest/meta-data/",  # the metadata service
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://224.0.0.1/hook",
    "http://0.0.0.0/hook",
    "http://240.0.0.1/hook",
    "http://hooks.example.org:99999/x",
    # IPv6 forms that embed or translate to 169.254.169.254, each judged by that address
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64, well-known prefix
    "http://[64:ff9b:1::a9fe:a9fe]/hook",  # NAT64, local-use prefix
    "http://[2002:a9fe:a9fe::]/hook",  # 6to4
    "http://[::a9fe:a9fe]/hook",  # IPv4-compatible
    "http://[::ffff:0:a9fe:a9fe]/hook",  # SIIT
    "http://[2001:0:4136:e378:8000:63bf:5601:5601]/hook",  # Teredo, the client obfuscated
    "http://[2001:db8::5efe:a9fe:a9fe]/hook",  # ISATAP
    "http://[64:ff9b::7f00:1]/hook",  # NAT64 to loopback
    "http://[2002:0a00:0001::1]/hook",  # 6to4 of 10.0.0.1
]


@pytest.mark.parametrize("url", REFUSED)
def test_a_run_with_a_webhook_to_a_place_it_must_not_reach_is_refused(api: httpx.Client, url: str) -> None:
    response = api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1}, "webhook_url": url})
    assert response.status_code == 422, url
    (error,) = response.json()["errors"]
    assert error["location"] == "body.webhook_url"


def test_a_public_webhook_target_is_kept_on_the_run(api: httpx.Client) -> None:
    url = "https://hooks.example.org/taskrun?x=1"
    run = api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1}, "webhook_url": url, "wait": True})
    assert run.status_code == 201 and run.json()["webhook_url"] == url
    ok_ip = api.post(
        "/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1}, "webhook_url": "https://8.8.8.8/h"}
    )
    assert ok_ip.status_code == 201
    # a translated public address is judged by it, and taken
    translated = api.post(
        "/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1}, "webhook_url": "https://[64:ff9b::808:808]/h"}
    )
    assert translated.status_code == 201, translated.text


def test_a_schedule_with_a_webhook_inside_is_refused_when_made_and_when_changed(api: httpx.Client) -> None:
    body = {"task_id": "team/add", "arguments": {"a": 1}, "expression": "rate(1 day)"}
    refused = api.post("/v1/schedules", json={**body, "webhook_url": "http://169.254.169.254/"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["location"] == "body.webhook_url"
    made = api.post("/v1/schedules", json={**body, "webhook_url": "https://hooks.example.org/s"}).json()
    changed = api.patch(f"/v1/schedules/{made['schedule_id']}", json={"webhook_url": "http://localhost:9/"})
    assert changed.status_code == 422
    # the refusal of this machine's address names the setting that would allow it
    message = changed.json()["errors"][0]["message"]
    assert "a loopback address" in message and "TASKRUN_WEBHOOK_ALLOW_PRIVATE=1" in message
    api.delete(f"/v1/schedules/{made['schedule_id']}")
