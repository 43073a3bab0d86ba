"""Whole output trees of `ec2net setup/refresh/remove` on a pyfakefs root against the mock."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Cli, add_link, del_link, read_tree
from instance_builder import eni, eni_node, eni_path, example

GOLDEN = Path(__file__).parent / "golden"
PRIMARY = "0e:49:61:0f:c3:11"
SECONDARY = "0e:8c:2d:7a:41:b3"


def golden(name: str) -> dict[str, str]:
    return read_tree(GOLDEN / name)


def attach_dual_stack(ec2net: Cli) -> None:
    add_link(ec2net.root, "eth0", PRIMARY)
    add_link(ec2net.root, "eth1", SECONDARY)


def test_dual_stack_tree_matches_golden_and_is_stable(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    first = ec2net("setup", "--all")
    assert first.code == 0, first.log
    assert ec2net.tree() == golden("dual-stack")
    assert ec2net.reloads == 1
    assert "eth1: wrote 70-eth1.network.d/ec2net_policy_6.conf" in first.log

    again = ec2net("refresh", "--all")
    assert again.code == 0
    assert ec2net.tree() == golden("dual-stack")
    assert ec2net.reloads == 1, "a refresh without changes must not reload networkd"
    assert "wrote" not in again.log


def test_setup_all_imds_requests(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    log = ec2net.mock.requests
    paths = [r.path for r in log]
    assert ec2net.mock.count(method="PUT") == 1, "one token per process"
    assert len(paths) == len(set(paths)), "no path is requested twice in one run"
    assert ec2net.mock.count("/latest/meta-data/mac") == 1
    # token + mac + (listing + 7 keys) for the primary + (listing + 9 keys) for the secondary
    assert len(log) == 20
    assert len(log) <= 3 + 10 * 2


def test_primary_only(ec2net: Cli) -> None:
    ec2net.mock.set_snapshot(example("primary-only"))
    add_link(ec2net.root, "eth0", PRIMARY)
    assert ec2net("setup", "--all").code == 0
    assert ec2net.tree() == golden("primary-only")
    assert not any("policy" in path for path in ec2net.tree())


def test_two_network_cards_and_ipv6_only_secondary(ec2net: Cli) -> None:
    snap = example("multi-card")
    ec2net.mock.set_snapshot(snap)
    # (card, device) order: primary (0,0), IPv6-only (0,2), card 1 device 0, card 1 device 1
    macs = ["02:1a:2b:3c:4d:01", "02:1a:2b:3c:4d:03", "02:1a:2b:3c:4d:04", "02:1a:2b:3c:4d:02"]
    for i, mac in enumerate(macs):
        add_link(ec2net.root, f"eth{i}", mac)
    assert ec2net("setup", "--all").code == 0
    tree = ec2net.tree()
    assert tree == golden("multi-card")
    assert "Table=10100" in tree["70-eth2.network.d/eni.conf"]
    assert "Priority=10101" in tree["70-eth3.network.d/ec2net_policy_4.conf"]
    assert "RouteMetric=613" in tree["70-eth3.network"]
    # IPv6-only: no IPv4 route, alias or rule of any kind
    assert "_dhcp4" not in tree["70-eth1.network.d/eni.conf"]
    assert "_ipv6ra" in tree["70-eth1.network.d/eni.conf"]
    assert not [p for p in tree if p.startswith("70-eth1") and ("_4" in p or "alias" in p)]


def test_efa_only_eni_is_skipped(ec2net: Cli) -> None:
    snap = example("dual-stack")
    efa = eni("0e:00:00:00:0e:fa", 2)
    snap["meta-data"]["network"]["interfaces"]["macs"][efa["mac"]] = efa
    ec2net.mock.set_snapshot(snap)
    attach_dual_stack(ec2net)
    add_link(ec2net.root, "eth2", efa["mac"])
    run = ec2net("setup", "--all")
    assert run.code == 0
    assert "eth2: ENI 0e:00:00:00:0e:fa has no IP addresses" in run.log
    assert ec2net.tree() == golden("dual-stack")


def test_fifty_secondary_ips_sorted_by_value(ec2net: Cli) -> None:
    ips = [f"10.0.2.{n}" for n in range(200, 150, -1)]  # first is DHCP's, 49 aliases
    eni_node(snap := example("dual-stack"), SECONDARY)["local-ipv4s"] = ips
    ec2net.mock.set_snapshot(snap)
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    aliases = ec2net.tree()["70-eth1.network.d/ec2net_alias.conf"]
    listed = [line.split("=")[1] for line in aliases.splitlines() if line.startswith("Address=")]
    assert listed == [f"10.0.2.{n}/32" for n in range(151, 200)]
    rules = ec2net.tree()["70-eth1.network.d/ec2net_policy_4.conf"]
    assert rules.count("[RoutingPolicyRule]") == 50 + 1  # 50 addresses + the /28 prefix


def test_refresh_picks_up_added_and_removed_secondary_ip(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    key = f"network/interfaces/macs/{SECONDARY}/local-ipv4s"
    ec2net.mock.set(key, ["10.0.2.41", "10.0.2.140", "10.0.2.77", "10.0.2.99"])
    run = ec2net("refresh", "eth1")
    assert run.code == 0
    tree = ec2net.tree()
    assert "Address=10.0.2.99/32" in tree["70-eth1.network.d/ec2net_alias.conf"]
    assert "From=10.0.2.99/32" in tree["70-eth1.network.d/ec2net_policy_4.conf"]
    assert ec2net.reloads == 2
    assert {k: v for k, v in tree.items() if k.startswith("70-eth0")} == {
        k: v for k, v in golden("dual-stack").items() if k.startswith("70-eth0")
    }, "refreshing eth1 must not touch eth0"

    ec2net.mock.set(key, ["10.0.2.41"])
    assert ec2net("refresh", "eth1").code == 0
    tree = ec2net.tree()
    assert "70-eth1.network.d/ec2net_alias.conf" not in tree, "no aliases left: file removed"
    assert "10.0.2.140" not in tree["70-eth1.network.d/ec2net_policy_4.conf"]
    assert ec2net.reloads == 3


@pytest.mark.parametrize("key", ["local-ipv4s", "ipv4-prefix"])
def test_persistent_5xx_changes_nothing(ec2net: Cli, key: str) -> None:
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    before = ec2net.tree()
    ec2net.mock.set(f"network/interfaces/macs/{SECONDARY}/local-ipv4s", ["10.0.2.41"])
    ec2net.mock.add_fault(eni_path(SECONDARY, key), status=500, count=None)
    run = ec2net("refresh", "--all")
    assert run.code == 1
    assert ec2net.tree() == before, "a failed read must not shrink the config"
    assert ec2net.reloads == 1
    assert f"eth1: IMDS /latest/meta-data/network/interfaces/macs/{SECONDARY}/{key}" in run.log
    assert "HTTP 500" in run.log


@pytest.mark.parametrize("key", ["local-ipv4s", "ipv4-prefix"])
def test_transient_5xx_is_retried(ec2net: Cli, key: str) -> None:
    attach_dual_stack(ec2net)
    ec2net.mock.add_fault(eni_path(SECONDARY, key), status=500, count=2)
    assert ec2net("setup", "--all").code == 0
    assert ec2net.tree() == golden("dual-stack")
    assert ec2net.mock.count(eni_path(SECONDARY, key)) == 3


def test_remove_after_detach_leaves_other_enis(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    del_link(ec2net.root, "eth1")
    assert ec2net("remove", "eth1").code == 0
    expected = {k: v for k, v in golden("dual-stack").items() if k.startswith("70-eth0")}
    assert ec2net.tree() == expected
    assert not (ec2net.netdir / "70-eth1.network.d").exists()
    assert ec2net.reloads == 2
    assert ec2net("remove", "eth1").code == 0
    assert ec2net.reloads == 2, "nothing left to remove: no reload"


def test_setup_all_drops_config_of_vanished_interfaces(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    del_link(ec2net.root, "eth1")
    run = ec2net("refresh", "--all")
    assert run.code == 0
    assert sorted(ec2net.tree()) == sorted(k for k in golden("dual-stack") if "eth0" in k)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("local-ipv4s", ["10.0.2.41", "10.0.2.77\n[Route]"], "not an IP address: '[Route]'"),
        ("local-ipv4s", ["10.0.2.41", "10.0.2.77/32\nGateway=1.2.3.4"], "not an IP address"),
        ("local-ipv4s", ["10.0.2.41", "", "10.0.2.77"], "empty line"),
        ("local-ipv4s", ["10.0.2.41", "2001:db8::1"], "not an IPv4 address"),
        ("ipv6s", ["fe80::1%eth0"], "not an IP address"),
        ("ipv4-prefix", ["10.0.2.208/28]"], "not a CIDR block"),
        ("subnet-ipv4-cidr-block", "10.0.2.0/24\n10.0.3.0/24", "expected one value"),
        ("device-number", "1=2", "not a small non-negative integer"),
        ("interface-id", "eni-12[Route]", "not an ENI id"),
    ],
)
def test_malformed_value_writes_nothing_for_that_eni(
    ec2net: Cli, key: str, value: str | list[str], reason: str
) -> None:
    attach_dual_stack(ec2net)
    ec2net.mock.set(f"network/interfaces/macs/{SECONDARY}/{key}", value)
    run = ec2net("setup", "--all")
    assert run.code == 1
    assert f"metadata key {key!r}" in run.log and reason in run.log
    tree = ec2net.tree()
    assert not [p for p in tree if "eth1" in p], "nothing written for the bad ENI"
    assert sorted(tree) == sorted(k for k in golden("dual-stack") if "eth0" in k)
    assert all("[Route]\nGateway=1.2.3.4" not in text for text in tree.values())


def test_malformed_value_keeps_existing_files(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    ec2net.mock.set(f"network/interfaces/macs/{SECONDARY}/local-ipv4s", "10.0.2.41\n\n")
    assert ec2net("refresh", "eth1").code == 1
    assert ec2net.tree() == golden("dual-stack")
    assert ec2net.reloads == 1


def test_foreign_file_in_our_place_is_not_overwritten(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    ec2net.netdir.mkdir(parents=True)
    (ec2net.netdir / "70-eth1.network").write_text("[Match]\nName=eth1\n")
    run = ec2net("setup", "--all")
    assert run.code == 1
    assert "was not generated by ec2-net-utils" in run.log
    assert (ec2net.netdir / "70-eth1.network").read_text() == "[Match]\nName=eth1\n"
    assert "70-eth0.network" in ec2net.tree()


def test_named_interface_without_eni_driver_is_configured(ec2net: Cli) -> None:
    add_link(ec2net.root, "eth0", PRIMARY, driver="veth")
    add_link(ec2net.root, "eth1", SECONDARY, driver=None)
    assert ec2net("setup", "--all").code == 0
    assert ec2net.tree() == {}, "--all keeps the driver filter"
    assert ec2net("setup", "eth0", "eth1").code == 0
    assert ec2net.tree() == golden("dual-stack")


def test_unknown_interface_and_bad_names(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    run = ec2net("setup", "eth0", "eth9")
    assert run.code == 1
    assert "eth9: no such interface" in run.log
    assert "70-eth0.network" in ec2net.tree()
    assert ec2net("setup", "../etc").code == 2
    assert ec2net("remove", "a" * 16).code == 2


def test_mac_in_sysfs_unknown_to_imds_fails_within_deadline(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    add_link(ec2net.root, "eth2", "0e:00:00:00:00:99")
    ec2net.extra = ["--deadline", "1.5"]
    run = ec2net("setup", "--all")
    assert run.code == 1
    assert "eth2: ENI 0e:00:00:00:00:99" in run.log and "not known to IMDS" in run.log
    assert ec2net.tree() == golden("dual-stack")
    assert ec2net.reloads == 1


def test_secondary_reporting_device_zero_is_retried(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    path = eni_path(SECONDARY, "device-number")
    ec2net.mock.add_fault(path, body="0", count=1)
    assert ec2net("setup", "--all").code == 0
    assert ec2net.tree() == golden("dual-stack")
    assert ec2net.mock.count(path) == 2


def test_imds_unreachable_changes_nothing(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    ec2net.mock.stop()
    ec2net.extra = ["--deadline", "1"]
    run = ec2net("refresh", "--all")
    assert run.code == 1
    assert "connection failed" in run.log
    assert ec2net.tree() == golden("dual-stack")


def test_remove_if_gone_keeps_config_of_present_link(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    assert ec2net("remove", "--if-gone", "eth1").code == 0
    assert ec2net.tree() == golden("dual-stack"), "link present (shutdown): config stays"
    assert ec2net.reloads == 1
    del_link(ec2net.root, "eth1")
    assert ec2net("remove", "--if-gone", "eth1").code == 0
    assert not [p for p in ec2net.tree() if "eth1" in p]
    assert ec2net.reloads == 2
