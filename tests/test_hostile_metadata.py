"""Property-based: whatever IMDS sends, nothing but validated values reaches a networkd file."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ec2net.errors import MetadataError, UsageError
from ec2net.model import ENI_KEYS, RenderOptions, parse_eni
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
        assert exc.key == key
        return
    for primary in (True, False):
        for options in (RenderOptions(), RenderOptions(mtu=1500, manage_secondary_ips=False)):
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
