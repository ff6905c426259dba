"""SSRF protection: which URLs a webhook may target and which addresses it may connect to.

Every address a host resolves to must be globally routable, otherwise the URL is refused:
private, loopback, link-local (cloud metadata), CGNAT, documentation, multicast and reserved
ranges, and the IPv6 forms that embed an IPv4 address (mapped, compatible, 6to4, Teredo,
NAT64). The sender then connects to an address it checked, so a second DNS answer cannot
rebind the request. Networks in the operator's allow-list (loopback in tests) are exempt.
The explicit table does not trust ``ipaddress.is_global`` alone: its ranges changed across
Python patch releases (CVE-2024-4032).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from scriptorium.errors import DomainError
from scriptorium.settings import WebhookSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048

_BLOCKED: tuple[tuple[str, str], ...] = (
    ("169.254.169.254/32", "a cloud metadata service"),
    ("fd00:ec2::254/128", "a cloud metadata service"),
    ("100.100.100.200/32", "a cloud metadata service"),
    ("192.0.0.192/32", "a cloud metadata service"),
    ("0.0.0.0/8", "the unspecified network"),
    ("10.0.0.0/8", "a private network"),
    ("100.64.0.0/10", "carrier-grade NAT (shared address space)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "a private network"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "the 6to4 relay anycast"),
    ("192.168.0.0/16", "a private network"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "the unspecified address"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "an IPv4-mapped address"),
    ("::/96", "an IPv4-compatible address"),
    ("64:ff9b::/96", "NAT64"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "the discard prefix"),
    ("2001::/32", "Teredo"),
    ("2001::/23", "IETF protocol assignments"),
    ("2001:db8::/32", "documentation"),
    ("2002::/16", "6to4"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing"),
    ("fc00::/7", "a unique local network"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
BLOCKED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(network), label) for network, label in _BLOCKED
)


class TargetRefused(DomainError):
    """The URL or an address it resolves to may not receive webhooks."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_webhook_url", message)


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    scheme: str
    host: str  # lower-case host name or IP literal, without brackets
    port: int

    @property
    def literal_address(self) -> IPAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return shown if self.port == default else f"{shown}:{self.port}"


def parse_networks(networks: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(network, strict=False) for network in networks)


def parse_target(url: str, *, allow_http: bool) -> WebhookTarget:
    """Check the form of a receiver URL: scheme, host, port, no credentials."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url.strip())
    allowed_schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed_schemes:
        raise TargetRefused(f"the URL must use {' or '.join(allowed_schemes)}")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL must not contain credentials")
    host = parts.hostname
    if not host:
        raise TargetRefused("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host.encode("idna")
    except (ValueError, UnicodeError) as error:
        raise TargetRefused(f"the URL's host or port is invalid: {error}") from error
    return WebhookTarget(url=url.strip(), scheme=parts.scheme, host=host.lower(), port=port)


def refusal_reason(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why ``address`` may not be contacted, or None when it may."""
    if any(address.version == network.version and address in network for network in allowed):
        return None
    for network, label in BLOCKED_NETWORKS:
        if address.version == network.version and address in network:
            return f"{address} is {label}"
    if not address.is_global:
        return f"{address} is not globally routable"
    return None


def choose_address(host: str, addresses: Sequence[IPAddress], allowed: Sequence[IPNetwork] = ()) -> IPAddress:
    """The address to connect to, once every address the host resolved to has been checked."""
    if not addresses:
        raise TargetRefused(f"{host} did not resolve to any address")
    for address in addresses:
        reason = refusal_reason(address, allowed)
        if reason is not None:
            raise TargetRefused(f"{host} resolves to a blocked address: {reason}")
    return addresses[0]


def addresses_from_getaddrinfo(answers: Iterable[tuple[object, ...]]) -> list[IPAddress]:
    """Unique addresses, in resolver order, from ``getaddrinfo`` results."""
    found: list[IPAddress] = []
    for *_, sockaddr in answers:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])  # type: ignore[index]
        if address not in found:
            found.append(address)
    return found


def resolve(host: str, port: int) -> list[IPAddress]:
    """Blocking resolution (the API's check at registration); IP literals resolve to themselves."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    return addresses_from_getaddrinfo(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))


def check_registration(url: str, settings: WebhookSettings) -> WebhookTarget:
    """Refuse a URL at registration when its form is wrong or it resolves to a blocked address.

    A host that does not resolve yet is accepted: every send resolves and checks again.
    """
    target = parse_target(url, allow_http=settings.allow_http)
    try:
        addresses = resolve(target.host, target.port)
    except OSError:
        return target
    choose_address(target.host, addresses, parse_networks(settings.allowed_networks))
    return target
