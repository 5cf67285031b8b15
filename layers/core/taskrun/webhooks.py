"""Webhook targets: where taskrun may send a run's outcome, and where it must not.

Only http and https, to a host that is not loopback, private, link-local (the cloud
metadata address among them), multicast, reserved or otherwise not a public address.
A name is resolved and every address it resolves to is checked, so a name pointing inside
is refused like the address itself. (Delivery checks again after its own resolution, so a
name that changes what it points to cannot reach inside either.) A name that does not
resolve now is let through: it is checked again when there is something to deliver.
`TASKRUN_WEBHOOK_ALLOW_PRIVATE=1` lets loopback and private addresses through, for a
receiver on your own machine or network; link-local, multicast and unspecified addresses
stay refused.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from taskrun.errors import FieldError, InvalidInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_target(url: str, allow_private: bool = False, location: str = "body.webhook_url") -> None:
    """InvalidInput at `location` unless `url` is a webhook target taskrun may send to."""
    reason = _refusal(url, allow_private)
    if reason is not None:
        raise InvalidInput("the webhook URL is not allowed", [FieldError(location, reason, url[:300])])


def _refusal(url: str, allow_private: bool) -> str | None:
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
    for address in _addresses(host, port or (443 if parts.scheme == "https" else 80)):
        reason = _forbidden(address, allow_private)
        if reason is not None:
            return f"{host} is {reason}" if str(address) == host else f"{host} resolves to {address}, {reason}"
    return None


def _addresses(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []  # does not resolve now: checked again at delivery
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]


def _forbidden(address: Address, allow_private: bool) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_link_local:
        return "a link-local address (the cloud metadata service lives there)"
    if address.is_global:
        return None
    if allow_private and (address.is_loopback or address.is_private):
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_private:
        return "a private address"
    return "a reserved address"
