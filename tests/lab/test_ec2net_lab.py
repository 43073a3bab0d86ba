"""The real `ec2net` against the real systemd-networkd 252 in the namespace lab.

A "VPC" namespace serves DHCP (dnsmasq) and IMDS (tests/imds_mock.py on 169.254.169.254:80);
the "instance" namespace runs networkd with the packaged fallback 80-ec2.network (matching
eth* here: veth has no ena driver). ec2net runs inside the instance exactly as the units run
it, with default IMDS endpoints, and we assert the kernel state with `ip -j`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netlab import REMOTE_PEER, VPC_GATEWAY, VPC_SUBNET, Lab, pytest_lab

from ec2net import facts

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from instance_builder import eni, instance  # noqa: E402

BIN = "/run/ec2net-lab/bin"
CALLS = "/run/ec2net-lab/networkctl.calls"
ETH0 = eni("02:00:00:00:00:10", 0, ipv4s=["192.0.2.10"], subnet4=VPC_SUBNET)
ETH1 = eni(
    "02:00:00:00:00:11",
    1,
    ipv4s=["192.0.2.11", "192.0.2.21", "192.0.2.22"],
    subnet4=VPC_SUBNET,
    prefixes4=["192.0.2.208/28"],
)
ETH2 = eni("02:00:00:00:00:12", 2, ipv4s=["192.0.2.12"], subnet4=VPC_SUBNET)
DHCP_ADDRESSES = {"eth0": "192.0.2.10", "eth1": "192.0.2.11", "eth2": "192.0.2.12"}


@pytest.fixture
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    for the_lab in pytest_lab(request, ipv6=False):
        fallback = (REPO / "templates/80-ec2.network.in").read_text()
        the_lab.write(
            "/usr/lib/systemd/network/80-ec2.network",
            fallback.replace("Driver=@ENI_DRIVERS@", "Name=eth*"),
        )
        # networkctl on PATH records each call, then does the real thing.
        the_lab.write(
            f"{BIN}/networkctl",
            f'#!/bin/sh\necho "$*" >> {CALLS}\nexec /usr/bin/networkctl "$@"\n',
        )
        the_lab.path(f"{BIN}/networkctl").chmod(0o755)
        the_lab.reload()
        snapshot = tmp_path / "snapshot.json"
        snapshot.write_text(json.dumps(instance(ETH0["mac"], ETH0, ETH1)))
        the_lab.start_imds(snapshot)
        yield the_lab


def ec2net(lab: Lab, *args: str, code: int = 0) -> str:
    env = ["env", f"PATH={BIN}:/usr/sbin:/usr/bin:/sbin:/bin", f"PYTHONPATH={REPO}"]
    result = lab.inst([*env, sys.executable, "-m", "ec2net", *args], check=False, timeout=90)
    if result.returncode != code:
        routes = lab.inst(["ip", "route", "show", "table", "all"], check=False).stdout
        addrs = lab.inst(["ip", "-brief", "addr"], check=False).stdout
        state = f"{addrs}\n{routes}"
        pytest.fail(f"ec2net {' '.join(args)}: exit {result.returncode}\n{result.stderr}\n{state}")
    return result.stderr


def reloads(lab: Lab) -> int:
    calls = lab.path(CALLS)
    return calls.read_text().count("reload") if calls.exists() else 0


def imds_set(lab: Lab, path: str, value: Any) -> None:
    """Change the mock's metadata through its control API (it runs in the VPC namespace)."""
    code = (
        f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); from imds_mock import "
        f"MockControl; MockControl('http://169.254.169.254').set({path!r}, {value!r})"
    )
    lab.vpc([sys.executable, "-c", code])


def attach(lab: Lab, name: str, node: dict[str, Any]) -> None:
    lab.add_eni(name, node["mac"], ipv4=DHCP_ADDRESSES[name])
    assert lab.wait_dhcp(name) == DHCP_ADDRESSES[name]


def rules(lab: Lab) -> set[tuple[int, str, str]]:
    return {
        (r["priority"], r["src"] + ("/" + str(r["srclen"]) if "srclen" in r else ""), r["table"])
        for r in lab.rules()
        if r.get("priority", 0) >= 10000 and r.get("table") not in ("main", "default")
    }


def table(lab: Lab, number: int) -> set[tuple[str, str | None, str]]:
    return {(r["dst"], r.get("gateway"), r["dev"]) for r in lab.routes(number)}


def assert_table(lab: Lab, number: int, dev: str) -> None:
    """The ENI's table holds its default route via the VPC gateway and its subnet route, and
    nothing else but, from systemd 262 on, a host route to that gateway on the same link
    (networkd adds it for Gateway=_dhcp4; harmless: the route the default route already
    implies). What the routes do is asserted separately with `ip route get`."""
    routes = table(lab, number)
    assert {("default", VPC_GATEWAY, dev), (VPC_SUBNET, None, dev)} <= routes, routes
    extra = routes - {("default", VPC_GATEWAY, dev), (VPC_SUBNET, None, dev)}
    allowed = {(VPC_GATEWAY, None, dev)} if lab_systemd_version() >= 262 else set()
    assert extra <= allowed, f"unexpected routes in table {number}: {sorted(extra, key=str)}"


def lab_systemd_version() -> int:
    out = subprocess.run(["networkctl", "--version"], capture_output=True, text=True).stdout
    return int(out.split()[1])


def addresses(lab: Lab, dev: str) -> set[str]:
    return {f"{a['local']}/{a['prefixlen']}" for a in lab.addresses(dev)}


def out_dev(lab: Lab, dst: str, src: str) -> str:
    dev: str = lab.route_get(dst, src)["dev"]
    return dev


def test_setup_refresh_without_a_blip(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    attach(lab, "eth0", ETH0)
    attach(lab, "eth1", ETH1)
    with lab.monitor_addresses() as monitor:
        # Named interfaces are configured whatever their driver (veth here).
        ec2net(lab, "setup", "eth0", "eth1")
        assert reloads(lab) == 1
        for name in ("eth0", "eth1"):
            lab.wait_configured(name)
        lab.wait_for(lambda: len(rules(lab)) == 4, 15, "the policy rules")

        assert rules(lab) == {
            (10001, "192.0.2.11", "10001"),
            (10001, "192.0.2.21", "10001"),
            (10001, "192.0.2.22", "10001"),
            (10001, "192.0.2.208/28", "10001"),
        }, "secondary ENI only; the primary's traffic uses the main table"
        assert_table(lab, 10001, "eth1")
        assert ("default", VPC_GATEWAY, "eth0") in table(lab, 10000)
        assert {"192.0.2.21/32", "192.0.2.22/32", "192.0.2.11/24"} <= addresses(lab, "eth1")
        assert out_dev(lab, REMOTE_PEER, "192.0.2.21") == "eth1"
        assert out_dev(lab, REMOTE_PEER, "192.0.2.11") == "eth1"
        assert out_dev(lab, REMOTE_PEER, "192.0.2.10") == "eth0"
        assert out_dev(lab, "192.0.2.99", "192.0.2.10") == "eth0", "primary wins its subnet"
        assert lab.config_warnings() == []
        with capsys.disabled():
            for cmd in (["ip", "rule"], ["ip", "route", "show", "table", "10001"]):
                print(f"\n--- {' '.join(cmd)} ---\n{lab.inst(cmd).stdout}", end="")

        # A secondary IP added in IMDS appears after a refresh, with its rule.
        imds_set(
            lab,
            f"network/interfaces/macs/{ETH1['mac']}/local-ipv4s",
            ["192.0.2.11", "192.0.2.21", "192.0.2.22", "192.0.2.23"],
        )
        ec2net(lab, "refresh", "eth1")
        assert reloads(lab) == 2
        lab.wait_for(lambda: "192.0.2.23/32" in addresses(lab, "eth1"), 15, "the new alias")
        lab.wait_for(lambda: len(rules(lab)) == 5, 15, "the new rule")
        assert out_dev(lab, REMOTE_PEER, "192.0.2.23") == "eth1"

        # ... and one removed disappears.
        imds_set(
            lab, f"network/interfaces/macs/{ETH1['mac']}/local-ipv4s", ["192.0.2.11", "192.0.2.21"]
        )
        ec2net(lab, "refresh", "eth1")
        lab.wait_for(lambda: "192.0.2.22/32" not in addresses(lab, "eth1"), 15, "alias removal")
        lab.wait_for(lambda: len(rules(lab)) == 3, 15, "rule removal")

        # Nothing changed: no write, no reload.
        ec2net(lab, "refresh", "eth0", "eth1")
        assert reloads(lab) == 3

    for name in ("eth0", "eth1"):
        deleted = monitor.deleted(DHCP_ADDRESSES[name])
        assert deleted == [], f"{name} lost its DHCP address:\n" + "\n".join(deleted)


def test_hotplug_and_detach_leave_other_enis_alone(lab: Lab) -> None:
    attach(lab, "eth0", ETH0)
    attach(lab, "eth1", ETH1)
    ec2net(lab, "setup", "eth0", "eth1")
    lab.wait_for(lambda: len(rules(lab)) == 4, 15, "the policy rules")
    before = {name: addresses(lab, name) for name in ("eth0", "eth1")}

    with lab.monitor_addresses() as monitor:
        imds_set(lab, f"network/interfaces/macs/{ETH2['mac']}", ETH2)
        attach(lab, "eth2", ETH2)
        ec2net(lab, "setup", "eth2")
        lab.wait_configured("eth2")
        lab.wait_for(lambda: (10002, "192.0.2.12", "10002") in rules(lab), 15, "eth2's rule")
        assert_table(lab, 10002, "eth2")
        assert out_dev(lab, REMOTE_PEER, "192.0.2.12") == "eth2"
        assert lab.path("/run/systemd/network/70-eth2.network").exists()

        # Detach: the link goes, then the unit's stop action removes our files.
        calls = reloads(lab)
        lab.del_eni("eth2")
        ec2net(lab, "remove", "--if-gone", "eth2")
        assert reloads(lab) == calls + 1
        assert not lab.path("/run/systemd/network/70-eth2.network").exists()
        assert not lab.path("/run/systemd/network/70-eth2.network.d").exists()
        lab.wait_for(lambda: not any(r[0] == 10002 for r in rules(lab)), 15, "eth2's rules gone")

    for name in ("eth0", "eth1"):
        assert monitor.deleted(DHCP_ADDRESSES[name]) == [], f"{name} was disturbed"
        assert addresses(lab, name) == before[name]
    assert len(rules(lab)) == 4


def test_check_healthy_and_broken(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    attach(lab, "eth0", ETH0)
    attach(lab, "eth1", ETH1)
    ec2net(lab, "setup", "eth0", "eth1")
    for name in ("eth0", "eth1"):
        lab.wait_configured(name)
    lab.wait_for(lambda: len(rules(lab)) == 4, 15, "the policy rules")
    check = ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "ec2net", "check"]
    healthy = lab.inst([*check, "eth0", "eth1"], check=False)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.startswith("OK: 2 interface(s) checked (eth0, eth1)")

    # Break it: a rule deleted by hand, an alias removed, a stale file of a gone link.
    lab.inst(["ip", "rule", "del", "from", "192.0.2.21", "table", "10001", "priority", "10001"])
    lab.inst(["ip", "addr", "del", "192.0.2.22/32", "dev", "eth1"])
    stale = "/run/systemd/network/70-eth7.network"
    lab.write(stale, f"{facts.MARKER} for eth7 (test).\n[Match]\nName=eth7\n")
    broken = lab.inst([*check, "eth0", "eth1"], check=False)
    assert broken.returncode == 1
    for expected in (
        "eth1  missing-rule     from 192.0.2.21/32 lookup 10001 (IPv4)",
        "eth1  missing-address  192.0.2.22 is not on eth1",
        "eth7  stale-file       files for a link that is gone",
    ):
        assert expected in broken.stdout, broken.stdout
    report = json.loads(lab.inst([*check, "--json", "eth0", "eth1"], check=False).stdout)
    assert report["ok"] is False
    assert {"interface": "eth1", "kind": "missing-rule", "severity": "error"}.items() <= next(
        f for f in report["findings"] if f["kind"] == "missing-rule"
    ).items()
    with capsys.disabled():
        print(f"\n--- ec2net check, healthy ---\n{healthy.stdout}")
        print(f"--- ec2net check, broken ---\n{broken.stdout}")


def altnames(lab: Lab, dev: str) -> list[str]:
    names: list[str] = lab.ip_json("link", "show", "dev", dev)[0].get("altnames", [])
    return names


def test_alternative_names(lab: Lab) -> None:
    attach(lab, "eth0", ETH0)
    attach(lab, "eth1", ETH1)
    # Another link already holds eth1's device-number name: it must not be taken from it.
    lab.inst(["ip", "link", "property", "add", "dev", "eth0", "altname", "device-number-1.0"])
    stderr = ec2net(lab, "setup", "eth0", "eth1")
    assert altnames(lab, "eth1") == [str(ETH1["interface-id"])]
    assert sorted(altnames(lab, "eth0")) == sorted(
        ["device-number-1.0", str(ETH0["interface-id"]), "device-number-0.0"]
    )
    assert "eth1: alternative name device-number-1.0 is held by eth0; not taking it" in stderr
    assert "eth0: alternative name device-number-0.0" not in stderr
    # Idempotent: a second setup adds nothing and fails nothing.
    lab.inst(["ip", "link", "property", "del", "dev", "eth0", "altname", "device-number-1.0"])
    stderr = ec2net(lab, "setup", "eth0", "eth1")
    assert "added alternative name device-number-1.0" in stderr
    assert sorted(altnames(lab, "eth1")) == sorted([str(ETH1["interface-id"]), "device-number-1.0"])
    assert "added alternative name" not in ec2net(lab, "setup", "eth0", "eth1")
    assert lab.inst(["ip", "-brief", "addr", "show", "dev", "device-number-1.0"]).stdout.startswith(
        "eth1"
    )
