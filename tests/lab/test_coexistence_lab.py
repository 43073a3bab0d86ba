"""Coexistence on real networkd: other owners' routes and rules survive our reloads, and a
.network file that shadows ours is reported."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from netlab import Lab
from test_ec2net_lab import ETH0, ETH1, REPO, attach, ec2net, imds_set, lab, rules

pytestmark = pytest.mark.lab
__all__ = ["lab"]  # the fixture, imported for this module

DROPIN = REPO / "templates/networkd.conf.d-ec2-net-utils.conf"
CONTAINER_NET = "203.0.113.0/24"
FOREIGN_RULE = "from 203.0.113.5 lookup 500"


def ip_rule_text(lab: Lab) -> str:
    return lab.inst(["ip", "rule", "show"]).stdout


def container_bridge(lab: Lab) -> None:
    """What docker or a CNI plugin does: a bridge-like link, a main-table route, a rule."""
    lab.inst(["ip", "link", "add", "ctr0", "type", "veth", "peer", "name", "ctr1"])
    lab.inst(["ip", "link", "set", "ctr0", "up"])
    lab.inst(["ip", "link", "set", "ctr1", "up"])
    lab.inst(["ip", "route", "add", CONTAINER_NET, "dev", "ctr0"])
    lab.inst(["ip", "rule", "add", "from", "203.0.113.5", "table", "500", "priority", "500"])
    lab.inst(["ip", "route", "add", "default", "dev", "ctr0", "table", "500"])


def foreign_state(lab: Lab) -> tuple[bool, bool, bool]:
    routes = {r["dst"] for r in lab.routes("main")}
    table_500 = lab.routes(500)
    return (FOREIGN_RULE in ip_rule_text(lab), CONTAINER_NET in routes, bool(table_500))


def change_secondary_ips(lab: Lab, ips: list[str]) -> None:
    imds_set(lab, f"network/interfaces/macs/{ETH1['mac']}/local-ipv4s", ips)
    ec2net(lab, "refresh", "eth1")


@pytest.mark.parametrize("with_dropin", [True, False])
def test_foreign_routes_and_rules_survive_a_changing_refresh(
    lab: Lab, with_dropin: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    if with_dropin:
        lab.write("/run/systemd/networkd.conf.d/ec2-net-utils.conf", DROPIN.read_text())
        lab.restart_networkd()  # networkd reads networkd.conf.d only at start
    attach(lab, "eth0", ETH0)
    attach(lab, "eth1", ETH1)
    ec2net(lab, "setup", "eth0", "eth1")
    lab.wait_for(lambda: len(rules(lab)) == 4, 15, "our policy rules")
    container_bridge(lab)
    before = ip_rule_text(lab)
    assert foreign_state(lab) == (True, True, True)

    change_secondary_ips(lab, ["192.0.2.11", "192.0.2.21", "192.0.2.22", "192.0.2.23"])
    lab.wait_for(lambda: len(rules(lab)) == 5, 15, "the new policy rule")
    after = ip_rule_text(lab)
    with capsys.disabled():
        print(f"\n--- ip rule before the refresh (drop-in: {with_dropin}) ---\n{before}")
        print(f"--- ip rule after the refresh ---\n{after}")
    if with_dropin:
        assert foreign_state(lab) == (True, True, True), after
    else:
        # The control: without our networkd.conf.d drop-in, networkd 252 deletes them.
        assert foreign_state(lab) != (True, True, True), after


def test_shadowing_network_file_is_reported(lab: Lab) -> None:
    shadow = "/run/systemd/network/10-netplan-eth1.network"
    lab.write(shadow, "[Match]\nName=eth1\n\n[Network]\nDHCP=yes\n")
    lab.reload()
    attach(lab, "eth0", ETH0)
    attach(lab, "eth1", ETH1)
    stderr = ec2net(lab, "setup", "eth0", "eth1")
    assert (
        f"eth1: networkd applies {shadow}, which sorts before "
        "/run/systemd/network/70-eth1.network and hides it and its drop-ins"
    ) in stderr
    assert "eth0: networkd applies" not in stderr
    show = ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "ec2net", "show", "--json"]

    def shown() -> list[dict[str, Any]]:
        out = lab.inst([*show, "eth0", "eth1"], check=False).stdout
        interfaces: list[dict[str, Any]] = json.loads(out)["interfaces"]
        return interfaces

    ours = "/run/systemd/network/70-eth0.network"
    lab.wait_for(lambda: shown()[0]["network_file"] == ours, 15, "eth0 to use our file")
    eth0, eth1 = shown()
    assert eth1["shadowed_by"] == shadow and eth1["network_file"] == shadow
    assert eth0["shadowed_by"] is None
    assert not any(r[1] == "192.0.2.11" for r in rules(lab)), "shadowed: our rules not applied"
    assert Path(lab.path("/run/systemd/network/70-eth1.network")).exists()
