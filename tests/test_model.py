"""Validation grammar of metadata values and the table/metric numbering."""

from __future__ import annotations

import ipaddress

import pytest

from ec2net.errors import MetadataError
from ec2net.model import Eni, parse_eni, parse_mac

MAC = "0e:8c:2d:7a:41:b3"


def raw(**values: str) -> dict[str, str | None]:
    base: dict[str, str | None] = {"device-number": "1"}
    base.update({k.replace("_", "-"): v for k, v in values.items()})
    return base


def test_full_eni_parses() -> None:
    eni = parse_eni(
        MAC,
        raw(
            network_card="1",
            interface_id="eni-07b2c9d8e1f0a3456",
            local_ipv4s="10.0.2.41\n10.0.2.140\n10.0.2.77\n",
            ipv6s="2001:db8::5",
            ipv4_prefix="10.0.2.208/28",
            ipv6_prefix="2001:db8:0:0:7a1c::/80",
            subnet_ipv4_cidr_block="10.0.2.0/24",
            subnet_ipv6_cidr_blocks="2001:db8::/64",
        ),
    )
    assert eni.table == 10101 and eni.metric == 613
    assert eni.secondary_ipv4s == (
        ipaddress.IPv4Address("10.0.2.77"),
        ipaddress.IPv4Address("10.0.2.140"),
    )
    assert eni.ipv6_prefixes == (ipaddress.IPv6Network("2001:db8:0:0:7a1c::/80"),)
    assert eni.has_ipv4 and eni.has_ipv6 and eni.has_addresses


@pytest.mark.parametrize(
    ("device", "card", "table", "metric"),
    [(0, 0, 10000, 512), (1, 0, 10001, 513), (0, 1, 10100, 612), (1, 1, 10101, 613)],
)
def test_numbering(device: int, card: int, table: int, metric: int) -> None:
    eni = Eni(mac=MAC, device_number=device, network_card=card)
    assert (eni.table, eni.metric) == (table, metric)


def test_ipv6_only_and_efa_only() -> None:
    v6 = parse_eni(MAC, raw(ipv6s="2001:db8::5", subnet_ipv6_cidr_blocks="2001:db8::/64"))
    assert v6.has_ipv6 and not v6.has_ipv4
    efa = parse_eni(MAC, raw())
    assert not efa.has_addresses


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("device-number", "-1", "not a small non-negative integer"),
        ("device-number", "100", "out of range"),
        ("device-number", "1\n2", "expected one value"),
        ("network-card", "32", "out of range"),
        ("local-ipv4s", "10.0.0.1 10.0.0.2", "not an IP address"),
        ("local-ipv4s", "10.0.0.1\n10.0.0.1", "duplicate"),
        ("local-ipv4s", "10.0.0.1\r", "not an IP address"),
        ("local-ipv4s", "010.0.0.1", "leading zero"),
        ("local-ipv4s", "", "empty value"),
        ("ipv6s", "fe80::1%eth0", "not an IP address"),
        ("ipv6s", "10.0.0.1", "not an IPv6 address"),
        ("ipv4-prefix", "10.0.2.209/28", "host bits set"),
        ("ipv4-prefix", "10.0.2.208", "not a CIDR block"),
        ("subnet-ipv4-cidr-block", "10.0.2.0/24 ", "not a CIDR block"),
        ("subnet-ipv6-cidr-blocks", "10.0.2.0/24", "not an IPv6 CIDR block"),
        ("interface-id", "eni-XYZ", "not an ENI id"),
        ("interface-id", "eni-0123456789\n[Network]", "expected one value"),
    ],
)
def test_bad_values_name_the_key(key: str, value: str, message: str) -> None:
    values = raw()
    values[key] = value
    with pytest.raises(MetadataError) as info:
        parse_eni(MAC, values)
    assert info.value.key == key
    assert message in str(info.value)
    assert MAC in str(info.value)


def test_missing_device_number() -> None:
    with pytest.raises(MetadataError, match="'device-number': missing"):
        parse_eni(MAC, {})


def test_network_card_index_alias() -> None:
    assert parse_eni(MAC, raw(network_card_index="2")).network_card == 2


@pytest.mark.parametrize("text", ["0E:8C:2D:7A:41:B3", " 0e:8c:2d:7a:41:b3\n"])
def test_mac_is_canonicalised(text: str) -> None:
    assert parse_mac(text) == MAC


@pytest.mark.parametrize("text", ["0e:8c:2d:7a:41", "0e-8c-2d-7a-41-b3", "0e:8c:2d:7a:41:b3:00"])
def test_bad_mac(text: str) -> None:
    with pytest.raises(ValueError, match="not a MAC"):
        parse_mac(text)
