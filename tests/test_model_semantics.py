"""Values that parse but make no sense are refused for that ENI, naming the key (README
"Which metadata is refused"); two ENIs never share a routing table."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from conftest import Cli, add_link, read_tree
from instance_builder import eni, eni_node, example
from test_setup_tree import PRIMARY, SECONDARY, attach_dual_stack, golden

from ec2net import commands
from ec2net.errors import MetadataError
from ec2net.inventory import read_enis
from ec2net.model import MAX_ENTRIES, PREFIX_LENGTHS, parse_eni
from ec2net.snapshot import SnapshotSource

MAC = "0e:8c:2d:7a:41:b3"
MACS = "network/interfaces/macs"
README = Path(__file__).resolve().parents[1] / "README.md"


def raw(**values: str) -> dict[str, str | None]:
    """A plausible secondary ENI, with `values` replacing keys (None removes one)."""
    base: dict[str, str | None] = {
        "device-number": "1",
        "local-ipv4s": "10.0.2.41\n10.0.2.140",
        "subnet-ipv4-cidr-block": "10.0.2.0/24",
        "ipv4-prefix": "10.0.2.208/28",
        "ipv6s": "2001:db8:0:2::5",
        "subnet-ipv6-cidr-blocks": "2001:db8:0:2::/64",
        "ipv6-prefix": "2001:db8:0:2:7a1c::/80",
    }
    base.update({k.replace("_", "-"): v for k, v in values.items()})
    return base


REFUSED = [
    # not unicast
    ("local-ipv4s", "0.0.0.0", "unspecified"),
    ("local-ipv4s", "10.0.2.41\n0.0.0.7", "unspecified"),
    ("local-ipv4s", "127.0.0.1", "loopback"),
    ("local-ipv4s", "169.254.169.254", "link-local"),
    ("local-ipv4s", "224.0.0.1", "multicast"),
    ("local-ipv4s", "240.0.0.1", "reserved"),
    ("local-ipv4s", "255.255.255.255", "the broadcast address"),
    ("ipv6s", "::", "unspecified"),
    ("ipv6s", "::1", "loopback"),
    ("ipv6s", "::ffff:10.0.2.5", "IPv4-mapped"),
    ("ipv6s", "fe80::1", "link-local"),
    ("ipv6s", "fec0::1", "site-local"),
    ("ipv6s", "ff02::1", "multicast"),
    # the subnet's own network and broadcast address
    ("local-ipv4s", "10.0.2.255", "broadcast address of 10.0.2.0/24"),
    ("local-ipv4s", "10.0.2.41\n10.0.2.0", "network address of 10.0.2.0/24"),
    ("ipv6s", "2001:db8:0:2::", "network address of 2001:db8:0:2::/64"),
    # prefix lengths: length 0 would capture all traffic
    ("ipv4-prefix", "0.0.0.0/0", "prefix length outside /24../32"),
    ("ipv4-prefix", "10.0.0.0/8", "prefix length outside /24../32"),
    ("ipv6-prefix", "::/0", "prefix length outside /64../96"),
    ("ipv6-prefix", "2001:db8:0:2::/64\n2001:db8::/48", "prefix length outside /64../96"),
    ("subnet-ipv4-cidr-block", "0.0.0.0/0", "prefix length outside /12../30"),
    ("subnet-ipv4-cidr-block", "10.0.2.40/31", "prefix length outside /12../30"),
    ("subnet-ipv6-cidr-blocks", "::/0", "prefix length outside /32../64"),
    ("subnet-ipv6-cidr-blocks", "2001:db8:0:2::/80", "prefix length outside /32../64"),
    # blocks that reach into special ranges
    ("ipv4-prefix", "127.0.0.0/28", "reaches into 127.0.0.0/8 (loopback)"),
    ("subnet-ipv4-cidr-block", "169.254.0.0/16", "link-local"),
    ("subnet-ipv6-cidr-blocks", "fe80::/64", "link-local"),
    # octets with leading zeros: octal to some parsers, decimal to others
    ("local-ipv4s", "010.0.2.41", "leading zero"),
    ("local-ipv4s", "10.0.2.041", "leading zero"),
    ("ipv6s", "::ffff:10.0.2.05", "leading zero"),
    ("ipv4-prefix", "10.0.2.208/028", "not a CIDR block"),
    ("subnet-ipv4-cidr-block", "010.0.2.0/24", "leading zero"),
    # addresses and prefixes outside the ENI's subnet
    ("local-ipv4s", "10.0.3.41", "10.0.3.41 is not in any of 10.0.2.0/24"),
    ("local-ipv4s", "10.0.2.41\n10.9.9.9", "10.9.9.9 is not in any of 10.0.2.0/24"),
    ("ipv4-prefix", "10.0.3.208/28", "not in any of 10.0.2.0/24"),
    ("ipv6s", "2001:db8:0:3::5", "not in any of 2001:db8:0:2::/64"),
    ("ipv6-prefix", "2001:db8:0:3:7a1c::/80", "not in any of 2001:db8:0:2::/64"),
]


@pytest.mark.parametrize(("key", "value", "message"), REFUSED)
def test_nonsense_is_refused_naming_the_key(key: str, value: str, message: str) -> None:
    with pytest.raises(MetadataError) as info:
        parse_eni(MAC, raw(**{key.replace("-", "_"): value}))
    assert info.value.key == key, info.value
    assert message in str(info.value)
    assert MAC in str(info.value) and "\n" not in str(info.value)


def test_subnet_mismatch_names_the_address_key_and_the_subnet_key() -> None:
    with pytest.raises(MetadataError) as info:
        parse_eni(MAC, raw(subnet_ipv4_cidr_block="10.0.7.0/24"))
    assert info.value.key == "local-ipv4s"
    assert "10.0.2.41 is not in any of 10.0.7.0/24 (subnet-ipv4-cidr-block)" in str(info.value)


@pytest.mark.parametrize(
    ("key", "address", "prefix"),
    [
        ("ipv4-prefix", "10.0.2.0", 4),
        ("ipv6-prefix", "2001:db8:0:2::", 6),
        ("subnet-ipv4-cidr-block", "10.0.0.0", 4),
        ("subnet-ipv6-cidr-blocks", "2001:db8::", 6),
    ],
)
def test_prefix_length_bounds_per_key(key: str, address: str, prefix: int) -> None:
    """Exactly the documented lengths are accepted; every real EC2 value among them."""
    accepted = []
    for length in range(0, (32 if prefix == 4 else 128) + 1):
        net = ipaddress.ip_network(f"{address}/{length}", strict=False)
        # Alone on the ENI (no subnet, addresses or prefixes to be consistent with), so that
        # only the length can be refused.
        values: dict[str, str | None] = dict.fromkeys(PREFIX_LENGTHS)
        values.update({"local-ipv4s": None, "ipv6s": None, key: str(net)})
        try:
            parse_eni(MAC, {**raw(), **values})
        except MetadataError as exc:
            assert exc.key == key or key in exc.reason, exc
            continue
        accepted.append(length)
    shortest, longest = PREFIX_LENGTHS[key]
    assert accepted == list(range(shortest, longest + 1))
    real = {"ipv4-prefix": [28], "ipv6-prefix": [80]}.get(key) or (
        list(range(16, 29)) if prefix == 4 else list(range(44, 65, 4))
    )
    assert set(real) <= set(accepted)


def _addresses(key: str, count: int) -> str:
    if key == "local-ipv4s":
        return "\n".join(f"10.0.2.{n}" for n in range(10, 10 + count))
    if key == "ipv6s":
        return "\n".join(f"2001:db8:0:2::{n:x}" for n in range(1, 1 + count))
    if key == "ipv4-prefix":
        return "\n".join(f"10.0.{n // 16}.{n % 16 * 16}/28" for n in range(count))
    if key == "ipv6-prefix":
        return "\n".join(f"2001:db8:0:2:{n:x}::/80" for n in range(1, 1 + count))
    return "\n".join(f"2001:db8:0:{n:x}::/64" for n in range(2, 2 + count))


@pytest.mark.parametrize("key", sorted(MAX_ENTRIES))
def test_entry_count_cap_per_key(key: str) -> None:
    cap = MAX_ENTRIES[key]
    assert cap == (8 if key == "subnet-ipv6-cidr-blocks" else 64)
    # No subnet keys: the counts are what is tested, not the subnet fit.
    base = raw(subnet_ipv4_cidr_block=None, subnet_ipv6_cidr_blocks=None)
    if key == "subnet-ipv6-cidr-blocks":
        base["ipv6s"] = base["ipv6-prefix"] = None
    ok = parse_eni(MAC, {**base, key: _addresses(key, cap)})
    assert ok.has_addresses
    with pytest.raises(MetadataError) as info:
        parse_eni(MAC, {**base, key: _addresses(key, cap + 1)})
    assert info.value.key == key
    assert f"{cap + 1} entries, more than the {cap} accepted" in str(info.value)


def test_readme_states_the_bounds_and_caps() -> None:
    text = README.read_text()
    section = text[text.index("### Which metadata is refused") :]
    section = section[: section.index("\n## ")]
    for key, (shortest, longest) in PREFIX_LENGTHS.items():
        assert re.search(rf"`{key}`[^\n]*\| /{shortest}\.\./{longest} \|", section), key
    for key, cap in MAX_ENTRIES.items():
        assert re.search(rf"`{key}`[^\n]*\|\s*{cap}\s*\|", section), key


# -- two ENIs with one (network card, device number) ---------------------------------------------

CLASH = "0e:00:00:00:00:c1"


def _with_clash(device: int = 1) -> dict[str, object]:
    snap = example("dual-stack")
    other = eni(CLASH, device, ipv4s=["10.0.3.7"], subnet4="10.0.3.0/24")
    snap["meta-data"]["network"]["interfaces"]["macs"][CLASH] = other
    return snap


def test_read_enis_refuses_both_enis_of_one_slot() -> None:
    results = read_enis(SnapshotSource(_with_clash()), [PRIMARY, SECONDARY, CLASH], PRIMARY)
    assert not isinstance(results[PRIMARY], Exception)
    for mac, other in ((SECONDARY, CLASH), (CLASH, SECONDARY)):
        error = results[mac]
        assert isinstance(error, MetadataError) and error.key == "device-number"
        assert f"card 0 device 1 is also claimed by ENI {other}" in str(error)


def test_render_refuses_both_enis_of_one_slot(tmp_path: Path) -> None:
    out = tmp_path / "out"
    messages: list[str] = []
    code = commands.render_snapshot(SnapshotSource(_with_clash()), out, None, messages.append)
    assert code == 1
    files = read_tree(out)
    assert files and all(path.startswith("70-eth0.") for path in files), sorted(files)
    assert len([m for m in messages if "(written)" in m]) == len(files)


def test_setup_all_refuses_both_and_keeps_their_files(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    before = ec2net.tree()
    ec2net.mock.set_snapshot(_with_clash())
    add_link(ec2net.root, "eth2", CLASH)
    run = ec2net("setup", "--all")
    assert run.code == 1
    assert ec2net.tree() == before, "eth1 keeps its files, eth2 gets none"
    assert f"eth1: ENI {SECONDARY}: metadata key 'device-number': card 0 device 1 is also " in (
        run.log
    )
    assert f"claimed by ENI {CLASH}" in run.log and f"claimed by ENI {SECONDARY}" in run.log


def test_hotplug_of_one_eni_sees_the_clash_with_a_configured_one(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    assert ec2net.tree() == golden("dual-stack")
    ec2net.mock.set_snapshot(_with_clash())
    add_link(ec2net.root, "eth2", CLASH)

    run = ec2net("setup", "eth2")  # what udev starts: only eth2 is read in full
    assert run.code == 1
    assert f"eth2: ENI {CLASH}: metadata key 'device-number'" in run.log
    assert f"also claimed by ENI {SECONDARY}" in run.log
    assert ec2net.tree() == golden("dual-stack")

    # And the other way round: eth1's refresh refuses eth1 too, keeping its files.
    run = ec2net("refresh", "eth1")
    assert run.code == 1
    assert f"also claimed by ENI {CLASH}" in run.log
    assert ec2net.tree() == golden("dual-stack")

    # Once IMDS moves eth2 to device 2 both are configured again.
    node = eni_node(_with_clash(), CLASH)
    node["device-number"] = "2"
    ec2net.mock.set(f"{MACS}/{CLASH}", node)
    assert ec2net("setup", "eth2").code == 0
    assert "Table=10002" in ec2net.tree()["70-eth2.network.d/eni.conf"]
