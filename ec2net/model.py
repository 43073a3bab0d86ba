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
from typing import Any, TypeVar, Union

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

# Plausibility bounds: EC2 values with margin; anything past them is refused for that ENI (see
# README "Which metadata is refused"). Per key: (shortest, longest) accepted prefix length.
# EC2 delegates /28 IPv4 and /80 IPv6 prefixes; subnets are /16../28 IPv4 and /44../64 IPv6.
PREFIX_LENGTHS: dict[str, tuple[int, int]] = {
    "ipv4-prefix": (24, 32),
    "ipv6-prefix": (64, 96),
    "subnet-ipv4-cidr-block": (12, 30),
    "subnet-ipv6-cidr-blocks": (32, 64),
}
# Per key: most lines accepted. EC2 allows about 50 addresses per ENI (prefixes count against
# the same limit) and one IPv6 CIDR block per subnet.
MAX_ENTRIES: dict[str, int] = {
    "local-ipv4s": 64,
    "ipv6s": 64,
    "ipv4-prefix": 64,
    "ipv6-prefix": 64,
    "subnet-ipv6-cidr-blocks": 8,
}
# Ranges no ENI address, prefix or subnet may touch: as a source or an Address= they would
# mean "any", this host, the local link or a group (0.0.0.0/32 reads as "pick from the pool").
# Spelled out rather than taken from ipaddress's is_* flags, whose meaning changed between
# Python versions. The first match names the reason.
NOT_UNICAST: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (ipaddress.ip_network("255.255.255.255/32"), "the broadcast address"),
    (ipaddress.ip_network("0.0.0.0/8"), "unspecified (0.0.0.0/8)"),
    (ipaddress.ip_network("127.0.0.0/8"), "loopback"),
    (ipaddress.ip_network("169.254.0.0/16"), "link-local"),
    (ipaddress.ip_network("224.0.0.0/4"), "multicast"),
    (ipaddress.ip_network("240.0.0.0/4"), "reserved (240.0.0.0/4)"),
    (ipaddress.ip_network("::/8"), "unspecified, loopback or IPv4-mapped (::/8)"),
    (ipaddress.ip_network("fe80::/10"), "link-local"),
    (ipaddress.ip_network("fec0::/10"), "site-local (deprecated)"),
    (ipaddress.ip_network("ff00::/8"), "multicast"),
)

_MAC_RE = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_ENI_ID_RE = re.compile(r"eni-[0-9a-f]{8,32}")
_INT_RE = re.compile(r"[0-9]{1,4}")
# Only characters that can appear in a textual IP address or CIDR. ipaddress alone would
# accept e.g. an IPv6 scope suffix ("fe80::1%eth0"), which must never reach a config file.
_IP_CHARS_RE = re.compile(r"[0-9a-fA-F:.]{2,45}")
_CIDR_CHARS_RE = re.compile(r"[0-9a-fA-F:.]{2,45}/(?:0|[1-9][0-9]{0,2})")
# An IPv4 octet with a leading zero ("010.0.0.1", alone or at the end of an IPv6 address) is
# octal to inet_aton but decimal to Python's ipaddress before 3.9.5: refused here, whatever
# the Python version.
_LEADING_ZERO_RE = re.compile(r"(?:^|\.)0[0-9]")
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]  # Python 3.9: no X | Y at runtime
# (network card, device number): the ENI's place on the instance, which fixes its table.
Slot = tuple[int, int]
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


def _check_octets(address: str) -> None:
    tail = address.rpartition(":")[2]
    if "." in tail and _LEADING_ZERO_RE.search(tail):
        raise ValueError(f"IPv4 octet with a leading zero: {address!r}")


def _special(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str] | None:
    """The NOT_UNICAST range `net` (an address as /32 or /128, or a block) reaches into."""
    for bad, reason in NOT_UNICAST:
        if bad.version == net.version and net.overlaps(bad):
            return bad, reason
    return None


def _ip(text: str) -> IPAddress:
    if not _IP_CHARS_RE.fullmatch(text):
        raise ValueError(f"not an IP address: {text!r}")
    _check_octets(text)
    address = ipaddress.ip_address(text)
    special = _special(ipaddress.ip_network(address))
    if special is not None:
        raise ValueError(f"{address} is {special[1]}, not a unicast address")
    return address


def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not _CIDR_CHARS_RE.fullmatch(text):
        raise ValueError(f"not a CIDR block: {text!r}")
    _check_octets(text.partition("/")[0])
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


NetT = TypeVar("NetT", ipaddress.IPv4Network, ipaddress.IPv6Network)


def _block(key: str, parse: Callable[[str], NetT]) -> Callable[[str], NetT]:
    """`parse`, refusing prefix lengths outside PREFIX_LENGTHS[key] and blocks that reach
    into a NOT_UNICAST range (0.0.0.0/0 as a rule source would capture all IPv4 traffic)."""
    shortest, longest = PREFIX_LENGTHS[key]

    def check(text: str) -> NetT:
        net = parse(text)
        if not shortest <= net.prefixlen <= longest:
            raise ValueError(f"{net}: prefix length outside /{shortest}../{longest}")
        special = _special(net)
        if special is not None:
            raise ValueError(f"{net} reaches into {special[0]} ({special[1]})")
        return net

    return check


def _outside(
    items: tuple[IPAddress, ...] | tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
    subnets: tuple[ipaddress.IPv4Network, ...] | tuple[ipaddress.IPv6Network, ...],
) -> str | None:
    """The first item not inside any of `subnets` (or a subnet's own network or broadcast
    address, which no ENI is ever given), as text; None when all fit or no subnet is known."""
    if not subnets:
        return None
    for item in items:
        net = ipaddress.ip_network(item)
        # Items and subnets are of one IP version by construction (the callers' keys).
        inside = [s for s in subnets if net.subnet_of(s)]  # type: ignore[arg-type]
        if not inside:
            return f"{item} is not in any of {', '.join(map(str, subnets))}"
        if net.num_addresses == 1 and item == inside[0].network_address:
            return f"{item} is the network address of {inside[0]}"
        if net.num_addresses == 1 and net.version == 4 and item == inside[0].broadcast_address:
            return f"{item} is the broadcast address of {inside[0]}"
    return None


def parse_slot(mac: str, raw: Mapping[str, str | None]) -> Slot:
    """(network card, device number) from the raw strings; MetadataError naming the key."""
    device_number = _one(mac, raw, "device-number", lambda t: _bounded_int(t, MAX_DEVICE_NUMBER))
    if device_number is None:
        raise MetadataError(mac, "device-number", "missing")
    card_key = next((k for k in NETWORK_CARD_ALIASES if raw.get(k) is not None), "network-card")
    network_card = _one(mac, raw, card_key, lambda t: _bounded_int(t, MAX_NETWORK_CARD))
    return (network_card or 0, device_number)


def _get(mac: str, raw: Mapping[str, str | None], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and value.strip() == "":
        raise MetadataError(mac, key, "empty value")
    return value


def _one(mac: str, raw: Mapping[str, str | None], key: str, parse: Callable[[str], T]) -> T | None:
    value = _get(mac, raw, key)
    if value is None:
        return None
    try:
        lines = _lines(value)
        if len(lines) != 1:
            raise ValueError(f"expected one value, got {len(lines)} lines")
        return parse(lines[0])
    except ValueError as exc:
        raise MetadataError(mac, key, str(exc)) from None


def parse_eni(mac: str, raw: Mapping[str, str | None]) -> Eni:
    """Validate the raw metadata strings of one ENI (None = key absent).

    Raises MetadataError naming the key for the first value that does not parse or makes no
    sense (see README "Which metadata is refused").
    """

    def one(key: str, parse: Callable[[str], T]) -> T | None:
        return _one(mac, raw, key, parse)

    def many(key: str, parse: Callable[[str], T]) -> tuple[T, ...]:
        value = _get(mac, raw, key)
        if value is None:
            return ()
        try:
            lines = _lines(value)
            if len(lines) > MAX_ENTRIES[key]:
                raise ValueError(f"{len(lines)} entries, more than the {MAX_ENTRIES[key]} accepted")
            return _unique([parse(line) for line in lines], key)
        except ValueError as exc:
            raise MetadataError(mac, key, str(exc)) from None

    network_card, device_number = parse_slot(mac, raw)
    subnet4 = one("subnet-ipv4-cidr-block", _block("subnet-ipv4-cidr-block", _ipv4_net))
    eni = Eni(
        mac=mac,
        device_number=device_number,
        network_card=network_card,
        interface_id=one("interface-id", _eni_id),
        local_ipv4s=many("local-ipv4s", _ipv4),
        ipv6s=many("ipv6s", _ipv6),
        ipv4_prefixes=many("ipv4-prefix", _block("ipv4-prefix", _ipv4_net)),
        ipv6_prefixes=many("ipv6-prefix", _block("ipv6-prefix", _ipv6_net)),
        subnet_ipv4_cidr=subnet4,
        subnet_ipv6_cidrs=many(
            "subnet-ipv6-cidr-blocks", _block("subnet-ipv6-cidr-blocks", _ipv6_net)
        ),
    )
    _check_within_subnets(eni)
    return eni


def _check_within_subnets(eni: Eni) -> None:
    """Addresses and prefixes come from the ENI's subnet; one outside it is an inconsistent
    answer (IMDS mid-update, or nonsense) and is refused naming the key and the value."""
    subnets4 = (eni.subnet_ipv4_cidr,) if eni.subnet_ipv4_cidr else ()
    checks: tuple[tuple[str, str, tuple[Any, ...], tuple[Any, ...]], ...] = (
        ("local-ipv4s", "subnet-ipv4-cidr-block", eni.local_ipv4s, subnets4),
        ("ipv4-prefix", "subnet-ipv4-cidr-block", eni.ipv4_prefixes, subnets4),
        ("ipv6s", "subnet-ipv6-cidr-blocks", eni.ipv6s, eni.subnet_ipv6_cidrs),
        ("ipv6-prefix", "subnet-ipv6-cidr-blocks", eni.ipv6_prefixes, eni.subnet_ipv6_cidrs),
    )
    for key, subnet_key, items, subnets in checks:
        problem = _outside(items, subnets)
        if problem is not None:
            raise MetadataError(eni.mac, key, f"{problem} ({subnet_key})")
