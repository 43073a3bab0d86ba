"""networkd 252 behaviour the "no blip" design relies on (see tests/lab/README.md).

* With ``KeepConfiguration=dhcp`` in both the fallback and the 70-IF.network file,
  neither the fallback -> 70 switch nor later drop-in changes (``networkctl reload``)
  delete the DHCPv4 address, and an alias removed from the drop-in is still removed.
* Hand-added rules/routes are removed when a link is reconfigured, unless
  networkd.conf sets ``ManageForeignRoutingPolicyRules=no`` / ``ManageForeignRoutes=no``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from netlab import Lab, pytest_lab
from planned_config import FALLBACK_PATH, fallback_file, write_eni_config

pytestmark = pytest.mark.lab

KEEP = "KeepConfiguration=dhcp"
ENIS = {  # name: (mac, DHCP address, device number)
    "eth0": ("02:00:00:00:00:10", "192.0.2.10", 0),
    "eth1": ("02:00:00:00:00:11", "192.0.2.11", 1),
}
SETTLE = 0.5  # seconds to keep recording after the expected state is reached


def _addresses(lab: Lab, dev: str) -> set[str]:
    return {str(a["local"]) for a in lab.addresses(dev)}


def _reload_until(lab: Lab, done: str, check: Callable[[], bool]) -> None:
    lab.reload()
    lab.wait_for(check, 15, done)
    for name in lab.enis:
        lab.wait_configured(name)
    time.sleep(SETTLE)


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    yield from pytest_lab(request, start_networkd=False)


def test_keep_configuration_dhcp_keeps_the_lease(lab: Lab) -> None:
    lab.start_networkd()
    lab.write(FALLBACK_PATH, fallback_file(KEEP))
    lab.reload()
    for name, (mac, ip, _) in ENIS.items():
        lab.add_eni(name, mac, ipv4=ip)
    for name in ENIS:
        lab.wait_dhcp(name)
        lab.wait_configured(name)

    def write(secondary: list[str]) -> None:
        for name, (mac, ip, dev) in ENIS.items():
            alias = secondary if dev else []
            policy = [ip, *alias] if dev else []
            write_eni_config(lab, name, mac, dev, alias, policy, extra_network=KEEP)

    with lab.monitor_addresses() as monitor:
        write(["192.0.2.21"])  # (a) fallback -> 70 file + drop-ins
        _reload_until(
            lab,
            "policy rules",
            lambda: len([r for r in lab.rules() if r.get("priority") == 10001]) == 2,
        )
        write(["192.0.2.21", "192.0.2.22"])  # (b) a drop-in change: one more alias
        _reload_until(lab, "alias .22", lambda: "192.0.2.22" in _addresses(lab, "eth1"))
        write(["192.0.2.21"])  # (c) the alias goes away again
        _reload_until(lab, "alias .22 gone", lambda: "192.0.2.22" not in _addresses(lab, "eth1"))

    for _, ip, _ in ENIS.values():
        assert monitor.deleted(ip) == [], monitor.text()
    assert monitor.deleted("192.0.2.22"), "a removed alias must be deleted"
    assert {"192.0.2.11", "192.0.2.21"} <= _addresses(lab, "eth1")
    assert lab.config_warnings() == []


@pytest.mark.parametrize("manage_foreign", [True, False], ids=["default", "manage-foreign-no"])
def test_foreign_rules_and_routes_on_reload(lab: Lab, manage_foreign: bool) -> None:
    if not manage_foreign:
        lab.write(
            "/run/systemd/networkd.conf.d/50-ec2net.conf",
            "[Network]\nManageForeignRoutingPolicyRules=no\nManageForeignRoutes=no\n",
        )
    lab.start_networkd()  # networkd reads networkd.conf only at start
    mac, ip, dev = ENIS["eth1"]
    write_eni_config(lab, "eth1", mac, dev, ["192.0.2.21"], [ip], extra_network=KEEP)
    lab.reload()
    lab.add_eni("eth1", mac, ipv4=ip)
    lab.wait_dhcp("eth1")
    lab.wait_configured("eth1")
    lab.inst(["ip", "rule", "add", "from", "203.0.113.5", "table", "500", "priority", "500"])
    lab.inst(["ip", "route", "add", "203.0.113.0/24", "dev", "eth1"])

    write_eni_config(lab, "eth1", mac, dev, ["192.0.2.21", "192.0.2.22"], [ip], KEEP)
    _reload_until(lab, "alias .22", lambda: "192.0.2.22" in _addresses(lab, "eth1"))

    rule_kept = any(r.get("priority") == 500 for r in lab.rules())
    route_kept = any(r["dst"] == "203.0.113.0/24" for r in lab.routes("main"))
    assert (rule_kept, route_kept) == (not manage_foreign, not manage_foreign)
