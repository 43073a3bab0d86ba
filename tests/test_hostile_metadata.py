"""Property-based: whatever IMDS sends, nothing but validated values reaches a networkd file."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ec2net.errors import MetadataError, UsageError
from ec2net.model import ENI_KEYS, PREFIX_LENGTHS, RenderOptions, parse_eni
from ec2net.render import render_eni
from ec2net.sysfs import check_ifname

MAC = "0e:8c:2d:7a:41:b3"
VALID = {
    "device-number": "1",
    "network-card": "0",
    "interface-id": "eni-07b2c9d8e1f0a3456",
    "local-ipv4s": "10.0.2.41\n10.0.2.140",
    "ipv6s": "2001:db8::5",
    "ipv4-prefix": "10.0.2.208/28",
    "ipv6-prefix": "2001:db8:0:0:7a1c::/80",
    "subnet-ipv4-cidr-block": "10.0.2.0/24",
    "subnet-ipv6-cidr-blocks": "2001:db8::/64",
}
SECTIONS = {
    "Match",
    "Link",
    "Network",
    "DHCPv4",
    "DHCPv6",
    "IPv6AcceptRA",
    "Route",
    "Address",
    "RoutingPolicyRule",
}
# Every setting line we generate: a known key and a value made of address/number characters.
SETTING = re.compile(r"([A-Za-z0-9]+)=([0-9A-Za-z:./_]+)")
KEYS = {
    "MACAddress",
    "MTUBytes",
    "DHCP",
    "LLMNR",
    "IPv6DuplicateAddressDetection",
    "RouteMetric",
    "UseRoutes",
    "UseGateway",
    "UseHostname",
    "UseMTU",
    "WithoutRA",
    "Table",
    "Gateway",
    "Destination",
    "Scope",
    "Address",
    "AddPrefixRoute",
    "From",
    "Priority",
    "KeepConfiguration",
    "Metric",
}
HEADER = re.compile(r"# [ -~]*")  # printable ASCII comment

# Text that stresses the grammar: address characters mixed with separators and INI syntax.
tricky = st.text(alphabet="0123456789abcdefABCDEF:./%[]= \n\r\t-eniRoute", max_size=60)
values = st.one_of(tricky, st.text(max_size=40))


def assert_only_validated(files: dict[str, str]) -> None:
    for path, text in files.items():
        assert text.endswith("\n")
        for line in text[:-1].split("\n"):
            if line == "" or HEADER.fullmatch(line):
                continue
            if line.startswith("["):
                assert line[1:-1] in SECTIONS and line.endswith("]"), (path, line)
                continue
            match = SETTING.fullmatch(line)
            assert match is not None, (path, line)
            assert match.group(1) in KEYS, (path, line)
            if match.group(1) in ADDRESS_SETTINGS:
                assert_plausible(match.group(1), match.group(2))


# Settings that carry an address or block, and the prefix lengths each may have: host routes
# for addresses, else the documented bounds of the keys they come from (README "Which
# metadata is refused"). Written out here, not taken from the model, as the oracle.
ADDRESS_SETTINGS = {
    "Address": {4: {32}, 6: {128}},
    "From": {4: {32, *range(24, 33)}, 6: {128, *range(64, 97)}},
    "Destination": {4: set(range(12, 31)), 6: set(range(32, 65))},
}
# Never an ENI's address, nor inside one of its blocks.
SPECIAL = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/127",
        "::ffff:0:0/96",
        "fe80::/10",
        "ff00::/8",
    )
]


def assert_plausible(setting: str, value: str) -> None:
    net = ipaddress.ip_network(value)
    assert net.prefixlen in ADDRESS_SETTINGS[setting][net.version], (setting, value)
    for edge in (net.network_address, net.broadcast_address):
        assert not (
            edge.is_unspecified
            or edge.is_loopback
            or edge.is_multicast
            or edge.is_link_local
            or edge.is_reserved
        ), (setting, value)
    for special in SPECIAL:
        assert special.version != net.version or not net.overlaps(special), (setting, value)  # type: ignore[arg-type]


def test_oracle_matches_documented_bounds() -> None:
    assert PREFIX_LENGTHS == {
        "ipv4-prefix": (24, 32),
        "ipv6-prefix": (64, 96),
        "subnet-ipv4-cidr-block": (12, 30),
        "subnet-ipv6-cidr-blocks": (32, 64),
    }


@pytest.mark.parametrize("key", ENI_KEYS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values)
@example(value="10.0.2.77\n[Route]\nGateway=1.2.3.4")
@example(value="fe80::1%eth0")
@example(value="1\n")
def test_any_value_is_rejected_or_rendered_safely(key: str, value: str) -> None:
    raw: dict[str, str | None] = dict(VALID)
    raw[key] = value
    try:
        eni = parse_eni(MAC, raw)
    except MetadataError as exc:
        # A value that does not fit the others (an address outside a changed subnet) is
        # reported under the address's key, naming the varied one.
        assert exc.key == key or key in exc.reason
        return
    for primary in (True, False):
        for options in (RenderOptions(), RenderOptions(mtu=1500, manage_secondary_ips=False)):
            assert_only_validated(render_eni(eni, "eth1", primary=primary, options=options))


def _joined(items: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(items, min_size=1, max_size=4).map("\n".join)


def _networks(version: int, near: str) -> st.SearchStrategy[str]:
    """Blocks of any length: anywhere, or around the example subnet (so some are valid)."""
    bits = 32 if version == 4 else 128
    anywhere = st.ip_addresses(v=version).map(str)
    base = st.one_of(anywhere, st.just(near))
    return st.builds(
        lambda a, n: str(ipaddress.ip_network(f"{a}/{n}", strict=False)),
        base,
        st.integers(0, bits),
    )


def _addresses(version: int, subnet: str) -> st.SearchStrategy[str]:
    """Addresses anywhere (special ones come up often), or inside the example subnet."""
    net = ipaddress.ip_network(subnet)
    inside = st.integers(0, min(net.num_addresses - 1, 2**16)).map(
        lambda i: str(net.network_address + i)
    )
    return st.one_of(st.ip_addresses(v=version).map(str), inside)


# Well-formed values of every address key: only the semantic checks can refuse them.
WELL_FORMED = {
    "local-ipv4s": _joined(_addresses(4, "10.0.2.0/24")),
    "ipv6s": _joined(_addresses(6, "2001:db8::/64")),
    "ipv4-prefix": _joined(_networks(4, "10.0.2.208")),
    "ipv6-prefix": _joined(_networks(6, "2001:db8::7a1c:0:0:0")),
    "subnet-ipv4-cidr-block": _networks(4, "10.0.2.0"),
    "subnet-ipv6-cidr-blocks": _joined(_networks(6, "2001:db8::")),
}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.fixed_dictionaries(
        {key: st.one_of(st.just(VALID[key]), strategy) for key, strategy in WELL_FORMED.items()}
    )
)
@example(values={**{k: VALID[k] for k in WELL_FORMED}, "local-ipv4s": "10.0.2.41\n0.0.0.0"})
@example(values={**{k: VALID[k] for k in WELL_FORMED}, "ipv4-prefix": "0.0.0.0/0"})
def test_well_formed_values_render_only_plausible_addresses(values: dict[str, str]) -> None:
    raw: dict[str, str | None] = {**VALID, **values}
    try:
        eni = parse_eni(MAC, raw)
    except MetadataError as exc:
        assert exc.key in WELL_FORMED
        return
    for primary in (True, False):
        for options in (RenderOptions(), RenderOptions(manage_secondary_ips=False)):
            assert_only_validated(render_eni(eni, "eth1", primary=primary, options=options))


@settings(max_examples=500, deadline=None)
@given(name=st.text(max_size=20))
@example(name="..")
@example(name="a/b")
@example(name="é" * 8)
def test_interface_names_are_safe_in_paths(name: str) -> None:
    try:
        checked = check_ifname(name)
    except UsageError:
        return
    assert "/" not in checked and checked not in (".", "..")
    assert 0 < len(checked.encode()) <= 15
    assert not any(c.isspace() for c in checked) and checked.isprintable()
