"""Webhooks: where taskrun may send a run's outcome, how it signs it, and how it sends it.

Only http and https, to a host that is not loopback, private, link-local (the cloud
metadata address among them), multicast, reserved or otherwise not a public address.
A name is resolved and every address it resolves to is checked, so a name pointing inside
is refused like the address itself. (Delivery checks again after its own resolution, so a
name that changes what it points to cannot reach inside either.) A name that does not
resolve now is let through: it is checked again when there is something to deliver.
`TASKRUN_WEBHOOK_ALLOW_PRIVATE=1` lets through loopback (127/8, ::1) and the private ranges
(10/8, 172.16/12, 192.168/16, fc00::/7), for a receiver on your own machine or network, and
nothing else that is not public: link-local (the cloud metadata service, 169.254.169.254 and
fd00:ec2::254, in any form), documentation, benchmarking, shared, broadcast, multicast,
unspecified and reserved addresses stay refused.

Messages are signed the Standard Webhooks way (https://www.standardwebhooks.com): headers
`webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">`, keyed with the `whsec_` secret's base64-decoded bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from taskrun.errors import FieldError, InvalidInput
from taskrun.settings import WEBHOOK_DELAYS

if TYPE_CHECKING:
    import urllib3

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# Standard Webhooks' schedule after the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
# (eight attempts over about 28 hours).
DEFAULT_DELAYS = WEBHOOK_DELAYS


# what a refusal of a loopback or private address says, so that a person sees how to allow them
ALLOW_PRIVATE_HINT = "the stack's TASKRUN_WEBHOOK_ALLOW_PRIVATE=1 lets webhooks reach this machine and private networks"


def check_target(url: str, allow_private: bool = False, location: str = "body.webhook_url") -> None:
    """InvalidInput at `location` unless `url` is a webhook target taskrun may send to."""
    reason = _refusal(url, allow_private)
    if reason is not None:
        raise InvalidInput("the webhook URL is not allowed", [FieldError(location, reason, url[:300])])


@dataclass(frozen=True)
class Target:
    """A webhook URL taken apart: where to connect, and what to ask for there."""

    scheme: str
    host: str
    port: int
    netloc: str  # host[:port] as the URL wrote it, for the Host header
    path: str  # with the query

    @classmethod
    def parse(cls, url: str) -> Target | str:
        """The target, or why the URL is not one taskrun sends to."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            return f"not a URL: {error}"
        if parts.scheme not in ("http", "https"):
            return "only http and https URLs are sent to"
        host = parts.hostname
        if not host:
            return "the URL has no host"
        if parts.username is not None or parts.password is not None:
            return "a URL with credentials in it is not sent to"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, host, port or default_port, parts.netloc, path)


def _refusal(url: str, allow_private: bool) -> str | None:
    target = Target.parse(url)
    if isinstance(target, str):
        return target
    return _refused_address(target.host, _addresses(target.host, target.port), allow_private)


def _refused_address(host: str, addresses: list[Address], allow_private: bool) -> str | None:
    """Why one of the addresses a host resolves to is not sent to, or None."""
    for address in addresses:
        reason = _forbidden(address, allow_private)
        if reason is not None:
            return f"{host} is {reason}" if str(address) == host else f"{host} resolves to {address}, {reason}"
    return None


def _addresses(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    numeric = _inet_aton(host)
    if numeric is not None:
        return [numeric]
    try:
        found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []  # does not resolve now: checked again at delivery
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]


# An IPv4 host as the C library reads it: one to four parts, each decimal, octal (0...) or
# hex (0x...), the last filling the bytes left (2852039166, 0xa9fea9fe, 0251.0376.0251.0376,
# 169.254.43518), a trailing dot allowed.
NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?", re.IGNORECASE)


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a host written as numbers stands for, the way a resolver or a
    browser reads it, or None if it is a name."""
    if NUMERIC_HOST.fullmatch(host) is None:
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host.removesuffix(".")))
    except OSError:
        return None  # numbers no resolver reads as an address (a part too large): not a name either


# IPv6 prefixes whose addresses carry an IPv4 address in their last 32 bits.
IPV4_IN_LOW_BITS = [
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated, still routed by some stacks)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # SIIT, RFC 6145
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64's well-known prefix, RFC 6052
]
# NAT64's local-use prefix (RFC 8215), whose IPv4 address may sit at any of RFC 6052's places.
LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address translates to, if it is of such a form: mapped,
    compatible, SIIT, NAT64, 6to4 or Teredo (its client)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in network for network in IPV4_IN_LOW_BITS) and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def isatap_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address in an ISATAP interface id (`[02]00:5efe:a.b.c.d`, under any prefix)."""
    if (int(address) >> 32) & 0xFDFFFFFF == 0x00005EFE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


# What TASKRUN_WEBHOOK_ALLOW_PRIVATE=1 lets through: this machine and the private ranges.
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
PRIVATE = [
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("fc00::/7"),
]
# Never, whatever the setting: the cloud's own services inside the private ranges (AWS's
# fd00:ec2::/32 holds the instance metadata service's IPv6 address, fd00:ec2::254, and
# its DNS, time and EKS Pod Identity endpoints), and ranges `ipaddress` counts as private
# (or, before Python 3.13, global) that are not anyone's network, named to say which one a
# refusal is.
CLOUD_SERVICES = ipaddress.ip_network("fd00:ec2::/32")
SPECIAL: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = [
    (ipaddress.ip_network("255.255.255.255/32"), "the broadcast address"),
    (ipaddress.ip_network("192.0.2.0/24"), "a documentation address"),
    (ipaddress.ip_network("198.51.100.0/24"), "a documentation address"),
    (ipaddress.ip_network("203.0.113.0/24"), "a documentation address"),
    (ipaddress.ip_network("2001:db8::/32"), "a documentation address"),
    (ipaddress.ip_network("198.18.0.0/15"), "a benchmarking address"),
    (ipaddress.ip_network("100.64.0.0/10"), "a shared address (carrier-grade NAT)"),
    # IETF protocol assignments (Python before 3.13 counts most of them global)
    (ipaddress.ip_network("192.0.0.0/24"), "a reserved address (IETF protocol assignments)"),
]


def _forbidden(address: Address, allow_private: bool) -> str | None:
    if isinstance(address, ipaddress.IPv6Address):
        if address in LOCAL_NAT64:
            return "a local NAT64 address (it translates to an IPv4 address that cannot be judged)"
        inner = embedded_ipv4(address)
        if inner is not None:  # a translating form: judged by the IPv4 address it reaches
            reason = _forbidden(inner, allow_private)
            return f"{reason} ({inner}, inside {address})" if reason else None
        inner = isatap_ipv4(address)
        if inner is not None and (reason := _forbidden(inner, allow_private)):  # the prefix is judged below
            return f"{reason} ({inner}, inside {address})"
        if address in CLOUD_SERVICES:
            return "one of the cloud's metadata and service addresses (fd00:ec2::/32)"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_link_local:
        return "a link-local address (the cloud metadata service lives there)"
    for network, name in SPECIAL:
        if address in network:
            return name
    if address.is_global:
        return None
    if any(address in network for network in LOOPBACK):
        return None if allow_private else f"a loopback address ({ALLOW_PRIVATE_HINT})"
    if any(address in network for network in PRIVATE):
        return None if allow_private else f"a private address ({ALLOW_PRIVATE_HINT})"
    return "a reserved address"


class Signer:
    """Signs messages with a Standard Webhooks secret (`whsec_` and base64 key bytes; the
    prefix may be left off)."""

    def __init__(self, secret: str) -> None:
        encoded = secret.strip().removeprefix("whsec_")
        try:
            self._key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the webhook secret is not whsec_ followed by base64") from None
        if len(self._key) < 16:
            raise ValueError("the webhook secret is too short: use at least 16 random bytes, base64-encoded")

    def headers(self, message_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The three signature headers of one attempt to send `body`."""
        sent_at = int(time.time()) if timestamp is None else timestamp
        signed = f"{message_id}.{sent_at}.".encode() + body
        signature = base64.b64encode(hmac.new(self._key, signed, hashlib.sha256).digest()).decode()
        return {"webhook-id": message_id, "webhook-timestamp": str(sent_at), "webhook-signature": f"v1,{signature}"}


def new_secret() -> str:
    """A fresh signing secret: `whsec_` and 24 random bytes in base64."""
    import secrets

    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass(frozen=True)
class Answer:
    """What one POST came to: a status code, or an error that kept it from getting one."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def accepted(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


USER_AGENT = "taskrun-webhooks/1"
MAX_ANSWER_BYTES = 64 * 1024  # of the receiver's body read (and dropped): the status is what counts


def post(url: str, body: bytes, headers: dict[str, str], timeout: float, allow_private: bool = False) -> Answer:
    """POST `body` to a webhook URL: resolve its host now and refuse it if any address is
    not allowed, connect to the address checked (so a second resolution cannot lead
    elsewhere), follow no redirect, give up after `timeout` seconds."""
    began = time.monotonic()

    def answer(status_code: int | None = None, error: str | None = None) -> Answer:
        return Answer(status_code, error, int((time.monotonic() - began) * 1000))

    target = Target.parse(url)
    if isinstance(target, str):
        return answer(error=f"refused: {target}")
    addresses = _addresses(target.host, target.port)
    if not addresses:
        return answer(error=f"{target.host} does not resolve")
    refusal = _refused_address(target.host, addresses, allow_private)
    if refusal is not None:
        return answer(error=f"refused: {refusal}")
    import urllib3  # with the first delivery: a function that only checks a target never needs it

    address = str(addresses[0])
    options: dict[str, object] = {
        "timeout": urllib3.Timeout(total=timeout),
        "retries": False,
        "maxsize": 1,
    }
    if target.scheme == "https":
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            address,
            target.port,
            cert_reqs="CERT_REQUIRED",
            server_hostname=target.host,
            assert_hostname=target.host,
            **options,  # type: ignore[arg-type]
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, target.port, **options)  # type: ignore[arg-type]
    request_headers = {
        **headers,
        "Host": target.netloc,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers=request_headers,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
        )
        try:
            response.read(MAX_ANSWER_BYTES)
        finally:
            response.release_conn()
        return answer(status_code=response.status)
    except urllib3.exceptions.HTTPError as error:
        return answer(error=_describe(error, timeout))
    finally:
        pool.close()


def _describe(error: Exception, timeout: float) -> str:
    import urllib3

    if isinstance(error, urllib3.exceptions.NewConnectionError):  # before timeouts: it is one of them
        return "could not connect: " + str(error).rpartition(": ")[2]
    if isinstance(error, urllib3.exceptions.TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(error, urllib3.exceptions.SSLError):
        return f"TLS failed: {error}"
    return f"{type(error).__name__}: {error}"[:500]
