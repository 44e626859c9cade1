"""Outbound URLs (partner subscriptions, Slack and Teams webhooks) must not reach into our network.

A URL is refused when its host is, or resolves to, a loopback, link-local, private, multicast,
reserved or unspecified address, unless private URLs are allowed (development and tests). It is
checked when given and again before each delivery, as a name may resolve elsewhere later.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from shared.errors import Invalid


def _forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def shape(url: str, field: str) -> str:
    """The URL, if it is an absolute http(s) URL with a host; Invalid naming `field` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid.on(field, "must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise Invalid.on(field, "must not carry credentials (sign with the subscription's secret instead)")
    return url


async def check(url: str, field: str, *, allow_private: bool) -> str:
    """`url` when it may be called; Invalid naming `field` when it points inside the network."""
    shape(url, field)
    if allow_private:
        return url
    host = urlsplit(url).hostname or ""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Invalid.on(field, f"host {host!r} does not resolve") from exc
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    bad = [str(a) for a in addresses if _forbidden(a)]
    if bad:
        raise Invalid.on(
            field,
            f"points at a loopback, link-local or private address ({', '.join(sorted(set(bad)))}); "
            "only public addresses are called",
        )
    return url
