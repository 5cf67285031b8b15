"""Webhook targets: a run or schedule whose webhook_url points where taskrun must not send
is refused when it is made (422 at body.webhook_url); with TASKRUN_WEBHOOK_ALLOW_PRIVATE=1
only loopback and the private ranges are let through besides public addresses."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from taskrun.errors import InvalidInput
from taskrun.webhooks.send import check_target

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


# What the checker says of each host, without the setting and with it (None: let through).
# Never let through, whatever the setting: every address that is neither public nor this
# machine's nor a private network's, the metadata service's in every form first of all.
NEVER = {
    # the cloud metadata service, and the forms that reach it
    "169.254.169.254": "link-local",
    "169.254.170.2": "link-local",  # ECS's task metadata and credentials
    "169.254.0.1": "link-local",
    "[fe80::1]": "link-local",
    "[fd00:ec2::254]": "fd00:ec2::/32",  # AWS's metadata service over IPv6, inside fc00::/7
    "[fd00:ec2::23]": "fd00:ec2::/32",  # EKS Pod Identity's agent
    "[::ffff:169.254.169.254]": "link-local",  # IPv4-mapped
    "[::169.254.169.254]": "link-local",  # IPv4-compatible
    "[::ffff:0:a9fe:a9fe]": "link-local",  # SIIT
    "[64:ff9b::a9fe:a9fe]": "link-local",  # NAT64
    "[64:ff9b:1::a9fe:a9fe]": "local NAT64",
    "[2002:a9fe:a9fe::]": "link-local",  # 6to4
    "[2001:0:4136:e378:8000:63bf:5601:5601]": "link-local",  # Teredo
    "[fd00::5efe:a9fe:a9fe]": "link-local",  # ISATAP under a private prefix
    "2852039166": "link-local",  # 169.254.169.254 as one decimal number
    "0xa9fea9fe": "link-local",  # as one hex number
    "0251.0376.0251.0376": "link-local",  # in octal parts
    "0xa9.0xfe.0xa9.0xfe": "link-local",
    "169.254.43518": "link-local",  # the last part filling two bytes
    "169.254.169.254.": "link-local",  # a trailing dot
    "metadata.test": "link-local",  # a name that resolves to it (see the resolver below)
    "imds6.test": "fd00:ec2::/32",
    # documentation, benchmarking, shared, broadcast, multicast, unspecified, reserved
    "192.0.2.10": "documentation",
    "198.51.100.7": "documentation",
    "203.0.113.1": "documentation",
    "[2001:db8::1]": "documentation",
    "198.18.0.1": "benchmarking",
    "198.19.255.254": "benchmarking",
    "100.64.0.1": "shared",
    "100.127.255.254": "shared",
    "255.255.255.255": "broadcast",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "[ff02::1]": "multicast",
    "0.0.0.0": "unspecified",
    "0": "unspecified",
    "[::]": "unspecified",
    "240.0.0.1": "reserved",
    "192.0.0.8": "reserved",
    "[100::1]": "reserved",
    "[2001:10::1]": "reserved",
    "[::ffff:198.18.0.1]": "benchmarking",
    "[64:ff9b::c000:20a]": "documentation",  # NAT64 of 192.0.2.10
    "[2002:6440:1::]": "shared",  # 6to4 of 100.64.0.1
}
# Let through only with the setting: this machine and the private ranges.
PRIVATE_ONLY = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "2130706433": "loopback",  # 127.0.0.1 as one number
    "0x7f.1": "loopback",
    "localhost": "loopback",
    "[::1]": "loopback",
    "[::ffff:127.0.0.1]": "loopback",
    "10.0.0.1": "private",
    "10.255.255.254": "private",
    "172.16.0.1": "private",
    "172.31.255.254": "private",
    "192.168.1.1": "private",
    "[fc00::1]": "private",
    "[fd12:3456:789a::1]": "private",
    "[fd00:ec3::254]": "private",
    "inside.test": "private",
}
# Let through either way: public addresses.
PUBLIC = ["8.8.8.8", "172.32.0.1", "100.128.0.1", "198.20.0.1", "[2606:4700:4700::1111]", "[64:ff9b::808:808]"]
NAMES = {
    "metadata.test": "169.254.169.254",
    "imds6.test": "fd00:ec2::254",
    "inside.test": "10.1.2.3",
}


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names of the table resolve to their address; others as the system resolves them."""
    system = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in NAMES:
            address = NAMES[host]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]
        return system(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def refusal(host: str, allow_private: bool) -> str | None:
    try:
        check_target(f"http://{host}/hook", allow_private)
    except InvalidInput as refused:
        (error,) = refused.errors
        assert error.location == "body.webhook_url"
        return error.message
    return None


@pytest.mark.usefixtures("resolver")
@pytest.mark.parametrize("allow_private", [False, True], ids=["default", "allow-private"])
@pytest.mark.parametrize(("host", "kind"), NEVER.items())
def test_an_address_neither_public_nor_private_is_refused_whatever_the_setting(
    host: str, kind: str, allow_private: bool
) -> None:
    # Given a webhook URL to such a host, When it is checked, Then it is refused, and the reason says why
    message = refusal(host, allow_private)
    assert message is not None and kind in message, message
    assert "TASKRUN_WEBHOOK_ALLOW_PRIVATE" not in message  # the setting would not let it through


@pytest.mark.usefixtures("resolver")
@pytest.mark.parametrize(("host", "kind"), PRIVATE_ONLY.items())
def test_this_machine_and_private_networks_are_let_through_only_with_the_setting(host: str, kind: str) -> None:
    message = refusal(host, allow_private=False)
    assert message is not None and f"a {kind} address" in message and "TASKRUN_WEBHOOK_ALLOW_PRIVATE=1" in message
    assert refusal(host, allow_private=True) is None


@pytest.mark.parametrize("allow_private", [False, True], ids=["default", "allow-private"])
@pytest.mark.parametrize("host", PUBLIC)
def test_a_public_address_is_let_through_whatever_the_setting(host: str, allow_private: bool) -> None:
    assert refusal(host, allow_private) is None
