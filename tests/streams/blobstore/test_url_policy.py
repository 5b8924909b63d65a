"""The SSRF policy: which addresses and URLs outbound fetches may reach, IPv6 transition forms
included (each judged by the IPv4 address it carries)."""

from __future__ import annotations

import ipaddress

import pytest

from streams.blobstore import UrlPolicy, UrlRefused
from streams.blobstore.url_policy import parse_networks


def _v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def forms(v4: str) -> dict[str, str]:
    """Every IPv6 transition form that carries `v4`, by name."""
    bits = _v4(v4)
    return {
        "mapped": str(ipaddress.IPv6Address(0xFFFF << 32 | bits)),
        "compatible": str(ipaddress.IPv6Address(bits)),
        "translated": str(ipaddress.IPv6Address(0xFFFF << 48 | bits)),
        "6to4": str(ipaddress.IPv6Address(0x2002 << 112 | bits << 80)),
        "nat64": str(ipaddress.IPv6Address(0x64FF9B << 96 | bits)),
        # Teredo: the server's IPv4 in bits 32-63, the client's inverted in the last 32
        "teredo-client": str(
            ipaddress.IPv6Address(0x20010000 << 96 | _v4("8.8.8.8") << 64 | bits ^ 0xFFFFFFFF)
        ),
        "teredo-server": str(
            ipaddress.IPv6Address(0x20010000 << 96 | bits << 64 | _v4("8.8.4.4") ^ 0xFFFFFFFF)
        ),
    }


REFUSED: list[tuple[str, str]] = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.1.1", "link-local"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.100.100.200", "cloud metadata"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fd00::1", "unique-local"),
    ("fd00:ec2::254", "cloud metadata"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("100::1", "reserved"),
    ("64:ff9b:1::808:808", "local-use NAT64"),  # refused whatever it carries
    ("4000::1", "reserved"),  # outside global unicast 2000::/3
]
for _v4_text, _class in (
    ("127.0.0.1", "loopback"),
    ("10.0.0.1", "private"),
    ("169.254.169.254", "cloud metadata"),
):
    for _form, _v6_text in forms(_v4_text).items():
        REFUSED.append((_v6_text, _class))

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "2001:4860:4860::8888",
    "2002:0808:0808::",  # 6to4 of 8.8.8.8
    "2002:808:808:1::1",
    *forms("8.8.8.8").values(),
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_non_public_addresses_are_refused_naming_their_class(address: str, why: str) -> None:
    with pytest.raises(UrlRefused) as refused:
        UrlPolicy().check_address(ipaddress.ip_address(address), "docs.example")
    assert refused.value.code == "url_refused"
    assert f"{why} address" in refused.value.message, refused.value.message
    assert str(ipaddress.ip_address(address)) in refused.value.message


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    UrlPolicy().check_address(ipaddress.ip_address(address), "docs.example")


def test_transition_forms_name_the_address_they_carry() -> None:
    policy = UrlPolicy()
    with pytest.raises(UrlRefused, match=r"the 6to4 form of 169\.254\.169\.254, a cloud metadata"):
        policy.check_url("http://[2002:a9fe:a9fe::]/latest/meta-data/")
    with pytest.raises(UrlRefused, match=r"the Teredo form of 127\.0\.0\.1, a loopback"):
        policy.check_url(f"http://[{forms('127.0.0.1')['teredo-client']}]/")


def test_ip_literals_in_urls_are_judged_before_any_connection() -> None:
    policy = UrlPolicy()
    for url in (
        "http://127.0.0.1/a.pdf",
        "http://[::ffff:127.0.0.1]/a.pdf",
        "http://[2002:7f00:1::]/a.pdf",
        "http://[64:ff9b::a00:1]/a.pdf",
        "http://2130706433/a.pdf",  # 127.0.0.1 as one number
        "http://0x7f.1/a.pdf",
        "ftp://example.com/a.pdf",
        "file:///etc/passwd",
        "http://user:secret@example.com/a.pdf",
    ):
        with pytest.raises(UrlRefused):
            policy.check_url(url)
    assert str(policy.check_url("https://example.com/a.pdf")) == "https://example.com/a.pdf"
    assert policy.check_url("http://[2002:808:808::]/a.pdf").host == "2002:808:808::"


def test_allowed_networks_pass_except_metadata() -> None:
    policy = UrlPolicy(parse_networks("10.1.0.0/16, 127.0.0.1/32, 169.254.0.0/16"))
    for address in ("10.1.2.3", "127.0.0.1", "::ffff:127.0.0.1", "2002:7f00:1::", "169.254.1.1"):
        policy.check_address(ipaddress.ip_address(address), "internal.example")
    for address in ("10.2.0.1", "127.0.0.2", "::1", "169.254.169.254", "2002:a9fe:a9fe::"):
        with pytest.raises(UrlRefused):
            policy.check_address(ipaddress.ip_address(address), "internal.example")


def test_a_scoped_address_is_judged_without_its_zone() -> None:
    with pytest.raises(UrlRefused, match="link-local"):
        UrlPolicy().check_address(ipaddress.ip_address("fe80::1%eth0"), "printer.local")
    allow_metadata_net = UrlPolicy(parse_networks("fd00::/8"))
    with pytest.raises(UrlRefused, match="metadata"):
        allow_metadata_net.check_address(ipaddress.ip_address("fd00:ec2::254%1"), "x.example")


def test_parse_networks() -> None:
    assert parse_networks("") == ()
    assert parse_networks(" 10.0.0.1/8 ,::1 ") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    with pytest.raises(ValueError, match="nope"):
        parse_networks("10.0.0.0/8,nope")
