"""Which addresses a webhook may be delivered to, and which redirects it may follow. No I/O.

A webhook URL is typed by an installer, but the daemon runs next to a PBX,
often on a cloud VM: a URL (or a DNS name) that leads to the instance
metadata service or another machine's link-local address would make textback
a request forger. Without `allow_private`, only public addresses are used;
with it (an on-premises CRM), private and loopback ones too. Cloud metadata
addresses are refused either way.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

# Instance metadata services: AWS, GCP, Azure, OpenStack (IPv4 link-local), AWS (IPv6),
# Alibaba Cloud.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200"))


def refusal(address: str, allow_private: bool) -> str | None:
    """Why a webhook must not be sent to this IP address, or None if it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return f"{ip} is not a unicast host address"
    if allow_private:
        return None
    if ip.is_link_local:
        return f"{ip} is a link-local address (set allow_private for an on-premises receiver)"
    if not ip.is_global:
        return f"{ip} is a private or loopback address (set allow_private for an on-premises receiver)"
    return None


def literal_host_refusal(url: str, allow_private: bool) -> str | None:
    """`refusal` for a URL whose host is an IP literal; None for a DNS name (checked when resolved)."""
    host = urlsplit(url).hostname or ""
    try:
        return refusal(host, allow_private)
    except ValueError:
        return None


def same_origin(url: str, location: str) -> bool:
    """May a redirect from `url` to `location` be followed: same scheme, host and port only."""
    a, b = urlsplit(url), urlsplit(location)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)
