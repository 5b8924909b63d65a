"""Which URLs and addresses an outbound fetch may reach (SSRF): the one policy of every fetch of
a URL someone else chose (the API's `/convert/url` and callbacks, `http(s)://` references).

A URL must be `http(s)`, without credentials, and its host must be a name or a canonical IP
literal. An address is refused when it is not public: loopback, private, shared (CGNAT),
link-local, unique-local, multicast, unspecified, documentation, benchmarking and reserved
ranges, and anything outside IPv6 global unicast. IPv6 forms that carry an IPv4 address are
judged by that address: IPv4-mapped, IPv4-compatible, IPv4-translated, 6to4, Teredo (server and
client) and well-known NAT64; local-use NAT64 is refused whole. Networks in `allow`
(`OCRFLUX_FETCH_ALLOW`) pass, except cloud metadata addresses, which never do.

The policy only judges; `streams.blobstore.guarded_http` applies it to the address each
connection really uses and to every redirect.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from yarl import URL

from ocrflux.errors import FetchFailed

__all__ = [
    "METADATA_ADDRESSES",
    "IpAddress",
    "IpNetwork",
    "UrlPolicy",
    "UrlRefused",
    "parse_networks",
    "refusal",
]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class UrlRefused(FetchFailed):
    """A URL that will not be fetched: its scheme, its form, or an address it resolves to."""

    code = "url_refused"
    http_status = 400


_v4 = ipaddress.IPv4Network
_v6 = ipaddress.IPv6Network

#: Cloud metadata endpoints, refused even when their network is allowed.
METADATA_ADDRESSES: frozenset[IpAddress] = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, Oracle...
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("168.63.129.16"),  # Azure WireServer (a public address)
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    }
)

# IANA's special-purpose registries, with the class a refusal names. Written out rather than
# taken from `ipaddress`'s flags, whose tables change between Python releases (3.12.4 made all
# of 2002::/16 private, which would refuse public 6to4 addresses).
_IPV4_CLASSES: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_v4("0.0.0.0/8"), "unspecified"),
    (_v4("10.0.0.0/8"), "private"),
    (_v4("100.64.0.0/10"), "shared (CGNAT)"),
    (_v4("127.0.0.0/8"), "loopback"),
    (_v4("169.254.0.0/16"), "link-local"),
    (_v4("172.16.0.0/12"), "private"),
    (_v4("192.0.0.0/24"), "reserved"),  # IETF protocol assignments
    (_v4("192.0.2.0/24"), "documentation"),
    (_v4("192.88.99.0/24"), "reserved"),  # the retired 6to4 relay anycast
    (_v4("192.168.0.0/16"), "private"),
    (_v4("198.18.0.0/15"), "benchmarking"),
    (_v4("198.51.100.0/24"), "documentation"),
    (_v4("203.0.113.0/24"), "documentation"),
    (_v4("224.0.0.0/4"), "multicast"),
    (_v4("240.0.0.0/4"), "reserved"),  # includes the broadcast address
)
_IPV6_CLASSES: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_v6("::/128"), "unspecified"),
    (_v6("::1/128"), "loopback"),
    (_v6("2001::/23"), "reserved"),  # IETF protocol assignments (Teredo is judged before)
    (_v6("2001:db8::/32"), "documentation"),
    (_v6("3fff::/20"), "documentation"),
    (_v6("fc00::/7"), "unique-local"),
    (_v6("fe80::/10"), "link-local"),
    (_v6("fec0::/10"), "site-local"),
    (_v6("ff00::/8"), "multicast"),
)
_GLOBAL_UNICAST = _v6("2000::/3")

# IPv6 forms that embed an IPv4 address in their last 32 bits.
_LOW_32_FORMS: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_v6("::ffff:0:0/96"), "IPv4-mapped"),
    (_v6("::ffff:0:0:0/96"), "IPv4-translated"),
    (_v6("64:ff9b::/96"), "NAT64"),
    (_v6("::/96"), "IPv4-compatible"),  # after ::/128 and ::1/128, see `_embedded`
)
_LOCAL_NAT64 = _v6("64:ff9b:1::/48")
_SIXTOFOUR = _v6("2002::/16")
_TEREDO = _v6("2001::/32")

# Legacy numeric host forms (2130706433, 127.1, 0x7f.1) that resolvers map onto addresses.
_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]*|\d+)(\.(0x[0-9a-f]*|\d+))*\.?", re.IGNORECASE)


def parse_networks(text: str) -> tuple[IpNetwork, ...]:
    """Comma-separated CIDRs (host bits allowed); `ValueError` names a bad entry."""
    entries = (part.strip() for part in text.split(","))
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries if entry)


def refusal(address: IpAddress) -> str | None:
    """Why `address` is not public ("a loopback address", "the 6to4 form of 10.0.0.1, a
    private address"...), or None when it is public."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv4Address):
        return _ipv4_refusal(address)
    if address in _LOCAL_NAT64:
        return "a local-use NAT64 address"
    embedded = _embedded(address)
    if embedded is not None:
        form, addresses = embedded
        for inner in addresses:
            why = refusal(inner)
            if why is not None:
                return f"the {form} form of {inner}, {why}"
        return None
    for network, label in _IPV6_CLASSES:
        if address in network:
            return _a(label)
    if address not in _GLOBAL_UNICAST:
        return "a reserved address"
    return None


def _ipv4_refusal(address: ipaddress.IPv4Address) -> str | None:
    for network, label in _IPV4_CLASSES:
        if address in network:
            return _a(label)
    return None


def _a(label: str) -> str:
    return f"{'an' if label[0] in 'aeiou' else 'a'} {label} address"


def _embedded(address: ipaddress.IPv6Address) -> tuple[str, list[ipaddress.IPv4Address]] | None:
    """The IPv4 address(es) an IPv6 transition form carries, with the form's name."""
    if address.is_unspecified or address.is_loopback:  # inside ::/96, but IPv6's own
        return None
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    for network, form in _LOW_32_FORMS:
        if address in network:
            return form, [low32]
    if address in _SIXTOFOUR:
        return "6to4", [ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF)]
    if address in _TEREDO:
        server = ipaddress.IPv4Address((int(address) >> 64) & 0xFFFFFFFF)
        client = ipaddress.IPv4Address(~int(address) & 0xFFFFFFFF)
        return "Teredo", [server, client]
    return None


def _allowed(address: IpAddress, allow: Sequence[IpNetwork]) -> bool:
    """In an allowed network, itself or (for a transition form) every IPv4 address it carries."""
    if any(address in network for network in allow):
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded(address)
        if embedded is not None:
            return all(_allowed(inner, allow) for inner in embedded[1])
    return False


def _metadata(address: IpAddress) -> bool:
    if address in METADATA_ADDRESSES:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded(address)
        return embedded is not None and any(inner in METADATA_ADDRESSES for inner in embedded[1])
    return False


class UrlPolicy:
    """Which URLs and addresses may be reached: public ones, and those in `allow`."""

    def __init__(self, allow: Sequence[IpNetwork] = ()) -> None:
        self.allow = tuple(allow)

    def check_url(self, raw: str | URL) -> URL:
        """The URL, parsed, if its scheme and (literal) host may be fetched; else `UrlRefused`.
        A host name is judged later, by the addresses it resolves to (`check_address`)."""
        try:
            url = raw if isinstance(raw, URL) else URL(raw)
        except (ValueError, TypeError) as exc:
            raise UrlRefused(f"not a valid URL: {raw!s:.200}") from exc
        if url.scheme not in ("http", "https"):
            raise UrlRefused(f"URL scheme {url.scheme or '(none)'!r} is not allowed: use http(s)")
        if not url.host:
            raise UrlRefused("the URL has no host")
        if url.user or url.password:
            raise UrlRefused("URLs with credentials are not allowed")
        try:
            literal = ipaddress.ip_address(url.host.strip("[]"))
        except ValueError:
            if _NUMERIC_HOST.fullmatch(url.host):
                raise UrlRefused(f"{url.host} is a non-canonical numeric address") from None
            return url
        self.check_address(literal, url.host)
        return url

    def check_address(self, address: IpAddress, host: str) -> None:
        """`UrlRefused`, naming the address's class, unless `host`'s `address` may be reached."""
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        why = refusal(address)
        if why is None or (_allowed(address, self.allow) and not _metadata(address)):
            return
        if _is_literal(host):
            raise UrlRefused(f"{host.strip('[]')} is {why}")
        raise UrlRefused(f"{host} resolves to {address}, {why}")


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
