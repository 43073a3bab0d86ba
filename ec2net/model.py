"""Validated, immutable description of an instance's ENIs.

Everything that reaches a networkd file passes through here first. Values are parsed with
strict grammars (character whitelist, then `ipaddress`), so text such as a newline, ``[Route]``
or ``=`` can never be smuggled from metadata into generated configuration.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar, Union

from .errors import MetadataError

# Metadata keys read for each ENI, relative to network/interfaces/macs/<mac>/.
ENI_KEYS: tuple[str, ...] = (
    "device-number",
    "interface-id",
    "network-card",
    "local-ipv4s",
    "ipv6s",
    "ipv4-prefix",
    "ipv6-prefix",
    "subnet-ipv4-cidr-block",
    "subnet-ipv6-cidr-blocks",
)
# Some IMDS emulators name the card key differently; the live service says "network-card".
NETWORK_CARD_ALIASES: tuple[str, ...] = ("network-card", "network-card-index")

# Table/priority and metric bases; compatible with the original tool so that admin policy
# and the Kubernetes VPC CNI, which assume these numbers, keep working.
TABLE_BASE = 10000
METRIC_BASE = 512
# device-number must stay below the card stride or two ENIs would share a table.
CARD_STRIDE = 100
MAX_DEVICE_NUMBER = CARD_STRIDE - 1
MAX_NETWORK_CARD = 31

_MAC_RE = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_ENI_ID_RE = re.compile(r"eni-[0-9a-f]{8,32}")
_INT_RE = re.compile(r"[0-9]{1,4}")
# Only characters that can appear in a textual IP address or CIDR. ipaddress alone would
# accept e.g. an IPv6 scope suffix ("fe80::1%eth0"), which must never reach a config file.
_IP_CHARS_RE = re.compile(r"[0-9a-fA-F:.]{2,45}")
_CIDR_CHARS_RE = re.compile(r"[0-9a-fA-F:.]{2,45}/[0-9]{1,3}")

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]  # Python 3.9: no X | Y at runtime
T = TypeVar("T")


def parse_mac(value: str) -> str:
    """Return the MAC in canonical lower-case form, or raise ValueError."""
    mac = value.strip().lower()
    if not _MAC_RE.fullmatch(mac):
        raise ValueError(f"not a MAC address: {value!r}")
    return mac


@dataclass(frozen=True)
class Eni:
    """One elastic network interface as IMDS describes it, validated."""

    mac: str
    device_number: int
    network_card: int = 0
    interface_id: str | None = None
    local_ipv4s: tuple[ipaddress.IPv4Address, ...] = ()
    ipv6s: tuple[ipaddress.IPv6Address, ...] = ()
    ipv4_prefixes: tuple[ipaddress.IPv4Network, ...] = ()
    ipv6_prefixes: tuple[ipaddress.IPv6Network, ...] = ()
    subnet_ipv4_cidr: ipaddress.IPv4Network | None = None
    subnet_ipv6_cidrs: tuple[ipaddress.IPv6Network, ...] = ()

    @property
    def table(self) -> int:
        """Routing table and policy-rule priority of this ENI."""
        return TABLE_BASE + CARD_STRIDE * self.network_card + self.device_number

    @property
    def metric(self) -> int:
        """Metric of this ENI's DHCP/RA routes in the main table (primary wins)."""
        return METRIC_BASE + CARD_STRIDE * self.network_card + self.device_number

    @property
    def has_ipv4(self) -> bool:
        return bool(self.local_ipv4s or self.ipv4_prefixes or self.subnet_ipv4_cidr)

    @property
    def has_ipv6(self) -> bool:
        return bool(self.ipv6s or self.ipv6_prefixes or self.subnet_ipv6_cidrs)

    @property
    def has_addresses(self) -> bool:
        """False for an EFA-only interface, which carries no IP traffic at all."""
        return bool(self.local_ipv4s or self.ipv6s or self.ipv4_prefixes or self.ipv6_prefixes)

    @property
    def secondary_ipv4s(self) -> tuple[ipaddress.IPv4Address, ...]:
        """Private IPv4s beyond the first (which DHCP assigns), sorted for stable output."""
        return tuple(sorted(self.local_ipv4s[1:]))


@dataclass(frozen=True)
class RenderOptions:
    """Site choices from the configuration that shape the generated files."""

    # Fixed MTU instead of the one DHCP announces.
    mtu: int | None = None
    # False: secondary private IPv4s and delegated prefixes belong to someone else (e.g. a
    # container network plugin): no aliases, and policy rules only for the DHCP addresses.
    manage_secondary_ips: bool = True


DEFAULT_RENDER_OPTIONS = RenderOptions()


def policy_sources(eni: Eni, options: RenderOptions, version: int) -> list[str]:
    """Sources (address/len) of the ENI's policy rules for IP `version`, sorted by value."""
    if version == 4:
        managed = options.manage_secondary_ips
        addresses: tuple[IPAddress, ...] = eni.local_ipv4s if managed else eni.local_ipv4s[:1]
        prefixes: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
            eni.ipv4_prefixes if managed else ()
        )
    else:
        addresses = eni.ipv6s
        prefixes = eni.ipv6_prefixes if options.manage_secondary_ips else ()
    networks = {ipaddress.ip_network(a) for a in addresses} | set(prefixes)
    return [str(n) for n in sorted(networks, key=lambda n: (n.version, n))]


def _lines(value: str) -> list[str]:
    # IMDS separates multi-valued keys by newlines; a trailing newline is harmless, any other
    # blank line means a damaged body.
    lines = value.removesuffix("\n").split("\n")
    if any(line == "" for line in lines):
        raise ValueError("empty line in value")
    return lines


def _ip(text: str) -> IPAddress:
    if not _IP_CHARS_RE.fullmatch(text):
        raise ValueError(f"not an IP address: {text!r}")
    return ipaddress.ip_address(text)


def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not _CIDR_CHARS_RE.fullmatch(text):
        raise ValueError(f"not a CIDR block: {text!r}")
    return ipaddress.ip_network(text, strict=True)


def _of_type(parse: Callable[[str], object], kind: type[T], what: str) -> Callable[[str], T]:
    def check(text: str) -> T:
        value = parse(text)
        if not isinstance(value, kind):
            raise ValueError(f"not an {what}: {text!r}")
        return value

    return check


_ipv4 = _of_type(_ip, ipaddress.IPv4Address, "IPv4 address")
_ipv6 = _of_type(_ip, ipaddress.IPv6Address, "IPv6 address")
_ipv4_net = _of_type(_net, ipaddress.IPv4Network, "IPv4 CIDR block")
_ipv6_net = _of_type(_net, ipaddress.IPv6Network, "IPv6 CIDR block")


def _bounded_int(text: str, upper: int) -> int:
    if not _INT_RE.fullmatch(text):
        raise ValueError(f"not a small non-negative integer: {text!r}")
    number = int(text)
    if number > upper:
        raise ValueError(f"{number} is out of range 0..{upper}")
    return number


def _eni_id(text: str) -> str:
    if not _ENI_ID_RE.fullmatch(text):
        raise ValueError(f"not an ENI id: {text!r}")
    return text


def _unique(items: list[T], key: str) -> tuple[T, ...]:
    if len(set(items)) != len(items):
        raise ValueError(f"duplicate entries in {key}")
    return tuple(items)


def parse_eni(mac: str, raw: Mapping[str, str | None]) -> Eni:
    """Validate the raw metadata strings of one ENI (None = key absent).

    Raises MetadataError naming the key for the first value that does not parse.
    """

    def get(key: str) -> str | None:
        value = raw.get(key)
        if value is not None and value.strip() == "":
            raise MetadataError(mac, key, "empty value")
        return value

    def one(key: str, parse: Callable[[str], T]) -> T | None:
        value = get(key)
        if value is None:
            return None
        try:
            lines = _lines(value)
            if len(lines) != 1:
                raise ValueError(f"expected one value, got {len(lines)} lines")
            return parse(lines[0])
        except ValueError as exc:
            raise MetadataError(mac, key, str(exc)) from None

    def many(key: str, parse: Callable[[str], T]) -> tuple[T, ...]:
        value = get(key)
        if value is None:
            return ()
        try:
            return _unique([parse(line) for line in _lines(value)], key)
        except ValueError as exc:
            raise MetadataError(mac, key, str(exc)) from None

    device_number = one("device-number", lambda t: _bounded_int(t, MAX_DEVICE_NUMBER))
    if device_number is None:
        raise MetadataError(mac, "device-number", "missing")
    card_key = next((k for k in NETWORK_CARD_ALIASES if raw.get(k) is not None), "network-card")
    network_card = one(card_key, lambda t: _bounded_int(t, MAX_NETWORK_CARD))
    return Eni(
        mac=mac,
        device_number=device_number,
        network_card=network_card or 0,
        interface_id=one("interface-id", _eni_id),
        local_ipv4s=many("local-ipv4s", _ipv4),
        ipv6s=many("ipv6s", _ipv6),
        ipv4_prefixes=many("ipv4-prefix", _ipv4_net),
        ipv6_prefixes=many("ipv6-prefix", _ipv6_net),
        subnet_ipv4_cidr=one("subnet-ipv4-cidr-block", _ipv4_net),
        subnet_ipv6_cidrs=many("subnet-ipv6-cidr-blocks", _ipv6_net),
    )
