import ipaddress

import pytest

from scriptorium.webhooks.addresses import (
    TargetRefused,
    choose_address,
    parse_networks,
    parse_target,
    refusal_reason,
)

BLOCKED = {
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "127.0.0.1": "loopback",
    "0.0.0.0": "unspecified",
    "169.254.169.254": "metadata",
    "169.254.10.10": "link-local",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.254": "carrier-grade NAT",
    "100.100.100.200": "metadata",
    "192.0.0.192": "metadata",
    "198.18.0.1": "benchmarking",
    "224.0.0.1": "multicast",
    "255.255.255.255": "reserved",
    "::1": "loopback",
    "::": "unspecified",
    "::ffff:10.0.0.1": "IPv4-mapped",
    "::ffff:127.0.0.1": "IPv4-mapped",
    "::ffff:8.8.8.8": "IPv4-mapped",
    "::10.0.0.1": "IPv4-compatible",
    "2002:a00:1::1": "6to4",
    "2002:7f00:1::": "6to4",
    "64:ff9b::a00:1": "NAT64",
    "64:ff9b::7f00:1": "NAT64",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "Teredo",
    "fd00:ec2::254": "metadata",
    "fd12:3456::1": "unique local",
    "fe80::1": "link-local",
    "ff02::1": "multicast",
    "2001:db8::1": "documentation",
}


@pytest.mark.parametrize(("address", "label"), BLOCKED.items())
def test_non_global_addresses_are_refused_with_a_reason(address: str, label: str) -> None:
    reason = refusal_reason(ipaddress.ip_address(address))
    assert reason is not None and label in reason


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.1", "2606:4700:4700::1111"]
)
def test_global_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_the_allow_list_exempts_only_its_networks() -> None:
    allowed = parse_networks(["127.0.0.0/8", "::1"])
    assert refusal_reason(ipaddress.ip_address("127.0.0.5"), allowed) is None
    assert refusal_reason(ipaddress.ip_address("::1"), allowed) is None
    assert refusal_reason(ipaddress.ip_address("10.0.0.1"), allowed) is not None
    assert refusal_reason(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) is not None


def test_one_blocked_answer_refuses_the_host_and_the_first_checked_one_is_used() -> None:
    public, private = ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.0.0.7")
    with pytest.raises(TargetRefused, match=r"10\.0\.0\.7 is a private network"):
        choose_address("rebind.example", [public, private])
    with pytest.raises(TargetRefused, match="did not resolve"):
        choose_address("empty.example", [])
    second = ipaddress.ip_address("93.184.215.15")
    assert choose_address("ok.example", [public, second]) == public


def test_only_https_unless_http_is_allowed() -> None:
    with pytest.raises(TargetRefused, match="https"):
        parse_target("http://hooks.example.com/x", allow_http=False)
    assert parse_target("http://hooks.example.com/x", allow_http=True).port == 80
    with pytest.raises(TargetRefused, match="https or http"):
        parse_target("ftp://hooks.example.com/x", allow_http=True)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://user:pw@hooks.example.com/", "credentials"),
        ("https:///path-only", "no host"),
        ("https://hooks.example.com:99999/", "port"),
        ("https://" + "a" * 2100 + ".com/", "longer"),
    ],
)
def test_malformed_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(TargetRefused, match=message):
        parse_target(url, allow_http=False)


def test_host_header_and_literals() -> None:
    named = parse_target("https://Hooks.Example.com/x?y=1", allow_http=False)
    assert (named.host, named.port, named.host_header, named.literal_address) == (
        "hooks.example.com",
        443,
        "hooks.example.com",
        None,
    )
    literal = parse_target("http://[2606:4700::1111]:8080/", allow_http=True)
    assert literal.host_header == "[2606:4700::1111]:8080"
    assert literal.literal_address == ipaddress.ip_address("2606:4700::1111")
