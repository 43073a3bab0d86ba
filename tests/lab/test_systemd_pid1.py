"""ec2-net-utils under systemd 252 as PID 1: generator, boot oneshot, udev hotplug, detach.

The instance of the namespace lab boots ``/lib/systemd/systemd`` as PID 1 (pid1lab.py) with
systemd-journald, systemd-udevd, dbus and systemd-networkd, and ec2-net-utils installed by
``meson install`` (prefix /usr/local, the Debian system python). Nothing is started by hand:

1. the generator wires ``ec2-net-utils.service`` into ``systemd-networkd.service``; it runs
   at boot and finishes before ``network-online.target``, configuring eth0 and eth1;
2. a hot-added eth2 is picked up by udev (our rule's ``SYSTEMD_WANTS``), which starts
   ``ec2-net-utils@eth2.service`` and through it ``ec2-net-utils-refresh@eth2.timer``;
3. deleting eth2 removes its device unit, so ``BindsTo=`` stops the unit, whose
   ``ExecStopPost=`` deletes the 70-eth2 files; eth0 and eth1 are untouched.

All of it with the units' full hardening (units/hardening.conf). On failure the instance's
journal is printed and the lab's workdir (console log, dnsmasq, IMDS logs) kept.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netlab import NEEDS_ROOT, REMOTE_PEER, VPC_GATEWAY, VPC_SUBNET, LabError, _netns_list
from pid1lab import INSTALL_PREFIX, SYSTEM_PYTHON, Pid1Lab, lab_fallback, meson_destdir

from ec2net import facts

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from instance_builder import eni, instance  # noqa: E402

NETDIR = "/run/systemd/network"
ETH0 = eni("02:00:00:00:00:10", 0, ipv4s=["192.0.2.10"], subnet4=VPC_SUBNET)
ETH1 = eni("02:00:00:00:00:11", 1, ipv4s=["192.0.2.11", "192.0.2.21"], subnet4=VPC_SUBNET)
ETH2 = eni("02:00:00:00:00:12", 2, ipv4s=["192.0.2.12"], subnet4=VPC_SUBNET)
DHCP = {"eth0": "192.0.2.10", "eth1": "192.0.2.11", "eth2": "192.0.2.12"}
BOOT_FILES = {
    "70-eth0.network",
    "70-eth0.network.d/eni.conf",
    "70-eth1.network",
    "70-eth1.network.d/eni.conf",
    "70-eth1.network.d/ec2net_alias.conf",
    "70-eth1.network.d/ec2net_policy_4.conf",
}


@pytest.fixture(scope="module")
def destdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``meson install --destdir`` of the tree, prefix /usr/local, for the system python."""
    if os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT)
    return meson_destdir(tmp_path_factory.mktemp("pid1-meson"))


@pytest.fixture(scope="module")
def booted(destdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pid1Lab]:
    """One boot for the module: eth0 (primary) and eth1 present, IMDS knows eth0..eth1."""
    snapshot = tmp_path_factory.mktemp("pid1-imds") / "snapshot.json"
    snapshot.write_text(json.dumps(instance(ETH0["mac"], ETH0, ETH1)))
    lab = Pid1Lab(destdir, lab_fallback(destdir))
    with lab:
        lab.start_imds(snapshot)
        lab.add_eni("eth0", ETH0["mac"], ipv4=DHCP["eth0"])
        lab.add_eni("eth1", ETH1["mac"], ipv4=DHCP["eth1"])
        try:
            lab.boot(timeout=60)
        except LabError:
            lab.keep_workdir = True
            print(_diagnostics(lab))
            raise
        yield lab
    # Cleanup discipline: nothing of this lab is left on the host.
    assert not lab.cgroup.exists(), lab.cgroup
    assert not {lab.inst_ns, lab.vpc_ns} & set(_netns_list())
    assert lab.pid1 is not None and not Path(f"/proc/{lab.pid1}").exists()


def _diagnostics(lab: Pid1Lab) -> str:
    return "\n".join(
        [
            f"---- instance journal (tail; workdir {lab.workdir}) ----",
            "\n".join(lab.journal().splitlines()[-200:]),
            "---- console (tail) ----",
            "\n".join(lab.console().splitlines()[-40:]),
        ]
    )


@pytest.fixture
def lab(booted: Pid1Lab, request: pytest.FixtureRequest) -> Iterator[Pid1Lab]:
    failed_before = request.session.testsfailed
    yield booted
    if request.session.testsfailed > failed_before:
        booted.keep_workdir = True
        print(_diagnostics(booted))


# ---------------------------------------------------------------------- helpers


def show(lab: Pid1Lab, unit: str, *props: str) -> dict[str, str]:
    return lab.show(unit, *props)


def stamp(lab: Pid1Lab, unit: str, prop: str) -> int:
    value = int(show(lab, unit, prop)[prop])
    assert value > 0, f"{unit} has no {prop}"
    return value


def generated(lab: Pid1Lab) -> dict[str, str]:
    """Files below /run/systemd/network, relative path -> content."""
    root = lab.path(NETDIR)
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def rules(lab: Pid1Lab) -> set[tuple[int, str, str]]:
    return {
        (r["priority"], r["src"], r["table"])
        for r in lab.rules()
        if r.get("priority", 0) >= 10000 and r.get("table") not in ("main", "default")
    }


def imds_set(lab: Pid1Lab, path: str, value: Any) -> None:
    """Change the mock's metadata through its control API (it runs in the VPC namespace)."""
    code = (
        f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); from imds_mock import "
        f"MockControl; MockControl('http://169.254.169.254').set({path!r}, {value!r})"
    )
    lab.vpc([sys.executable, "-c", code])


def unit_journal(lab: Pid1Lab, unit: str) -> str:
    return lab.journal("-u", unit, "-o", "cat")


# ---------------------------------------------------------------------- tests


def test_boot_oneshot_runs_before_network_online(lab: Pid1Lab) -> None:
    assert lab.inst(["systemctl", "is-system-running"], check=False).stdout.strip() == "running"
    assert lab.systemctl("--failed", "--plain", "--no-legend").strip() == ""

    # The generator decided to act, from /etc/ec2-net-utils.conf, and wired the oneshot in.
    assert lab.path("/" + facts.ACTIVE_FLAG).read_text() == ("configuration [Main] Enable=yes\n")
    wants = lab.path("/run/systemd/generator/systemd-networkd.service.wants/ec2-net-utils.service")
    assert os.readlink(wants) == f"{INSTALL_PREFIX}/lib/systemd/system/ec2-net-utils.service"
    unit = "ec2-net-utils.service"
    props = show(lab, unit, "ActiveState", "SubState", "Result", "WantedBy", "FragmentPath")
    assert props["ActiveState"] == "active" and props["SubState"] == "exited", props
    assert props["Result"] == "success", props
    assert props["WantedBy"] == "systemd-networkd.service", props
    assert props["FragmentPath"] == f"{INSTALL_PREFIX}/lib/systemd/system/{unit}", props

    # Ordering, from PID 1's own timestamps (CLOCK_MONOTONIC, microseconds).
    networkd_up = stamp(lab, "systemd-networkd.service", "ActiveEnterTimestampMonotonic")
    started = stamp(lab, unit, "InactiveExitTimestampMonotonic")
    finished = stamp(lab, unit, "ActiveEnterTimestampMonotonic")
    waiting = stamp(lab, "systemd-networkd-wait-online.service", "InactiveExitTimestampMonotonic")
    online = stamp(lab, "network-online.target", "ActiveEnterTimestampMonotonic")
    order = (networkd_up, started, finished, waiting, online)
    assert networkd_up <= started < finished <= waiting <= online, order

    # It configured both ENIs present at boot, with one reload.
    assert set(generated(lab)) == BOOT_FILES
    log = unit_journal(lab, unit)
    assert re.search(r"reloaded systemd-networkd \(eth0, eth1 changed\)", log), log
    lab.wait_for(
        lambda: {(10001, "192.0.2.11", "10001"), (10001, "192.0.2.21", "10001")} <= rules(lab),
        15,
        "eth1's policy rules",
    )
    assert not any(r[0] == 10000 for r in rules(lab)), "the primary ENI gets no rules"
    assert lab.route_get(REMOTE_PEER, "192.0.2.21")["dev"] == "eth1"
    assert ("default", VPC_GATEWAY) in {(r["dst"], r.get("gateway")) for r in lab.routes(10001)}

    # udev's coldplug started the per-interface units too, after the oneshot (After=).
    for name in ("eth0", "eth1"):
        per_if = f"ec2-net-utils@{name}.service"
        props = show(lab, per_if, "ActiveState", "Result", "WantedBy")
        assert props["ActiveState"] == "active" and props["Result"] == "success", props
        assert f"sys-devices-virtual-net-{name}.device" in props["WantedBy"].split(), props
        assert stamp(lab, per_if, "InactiveExitTimestampMonotonic") >= finished
        assert show(lab, f"ec2-net-utils-refresh@{name}.timer", "ActiveState")["ActiveState"] == (
            "active"
        )
    assert lab.config_warnings() == []


def test_hotplug_then_detach(lab: Pid1Lab) -> None:
    before = generated(lab)
    assert set(before) >= BOOT_FILES
    unit, timer = "ec2-net-utils@eth2.service", "ec2-net-utils-refresh@eth2.timer"
    device = "sys-subsystem-net-devices-eth2.device"

    # Hot-attach: IMDS knows the ENI, the link appears; udev + PID 1 do the rest.
    imds_set(lab, f"network/interfaces/macs/{ETH2['mac']}", ETH2)
    attached = time.monotonic()
    lab.add_eni("eth2", ETH2["mac"], ipv4=DHCP["eth2"])
    lab.wait_for(
        lambda: show(lab, unit, "ActiveState")["ActiveState"] in ("active", "failed"),
        30,
        f"{unit} to be started by udev",
        interval=0.2,
    )
    props = show(lab, unit, "ActiveState", "Result", "WantedBy", "BindsTo", "NRestarts")
    ok = props["ActiveState"] == "active" and props["Result"] == "success"
    assert ok, f"{props}\n{unit_journal(lab, unit)}"
    # udev's SYSTEMD_WANTS lands on the device's sysfs-path unit (the /sys/subsystem alias
    # follows it).
    assert "sys-devices-virtual-net-eth2.device" in props["WantedBy"].split(), props
    assert props["BindsTo"] == device
    assert props["NRestarts"] == "0", props
    timer_props = show(lab, timer, "ActiveState", "NextElapseUSecMonotonic", "BindsTo")
    assert timer_props["ActiveState"] == "active", timer_props
    assert timer_props["BindsTo"] == device
    assert "70-eth2.network" in unit_journal(lab, unit)
    configured = time.monotonic() - attached

    assert {
        "70-eth2.network",
        "70-eth2.network.d/eni.conf",
        "70-eth2.network.d/ec2net_policy_4.conf",
    } <= set(generated(lab))
    lab.wait_for(lambda: (10002, "192.0.2.12", "10002") in rules(lab), 20, "eth2's rule")
    lab.wait_for(
        lambda: lab.route_get(REMOTE_PEER, DHCP["eth2"])["dev"] == "eth2", 20, "eth2's table"
    )

    # Hot-detach: the device unit goes, BindsTo= stops the unit and its timer, ExecStopPost=
    # (`ec2net remove --if-gone eth2`) deletes our files.
    lab.del_eni("eth2")
    lab.wait_for(
        lambda: show(lab, unit, "ActiveState")["ActiveState"] == "inactive",
        30,
        f"{unit} to stop",
        interval=0.2,
    )
    assert show(lab, timer, "ActiveState")["ActiveState"] == "inactive"
    assert show(lab, device, "ActiveState")["ActiveState"] == "inactive"
    after = generated(lab)
    assert not [f for f in after if f.startswith("70-eth2")], after
    assert after == before, "eth0/eth1 files untouched"
    lab.wait_for(lambda: not any(r[0] == 10002 for r in rules(lab)), 15, "eth2's rule gone")
    assert {(10001, "192.0.2.11", "10001"), (10001, "192.0.2.21", "10001")} <= rules(lab)
    for name in ("eth0", "eth1"):
        assert show(lab, f"ec2-net-utils@{name}.service", "ActiveState")["ActiveState"] == (
            "active"
        )
    assert lab.systemctl("--failed", "--plain", "--no-legend").strip() == ""
    print(f"eth2 configured {configured:.1f} s after the link appeared")


def test_installed_units_verify_in_the_instance(lab: Pid1Lab, destdir: Path) -> None:
    """`systemd-analyze verify` of every installed unit, in the instance's real unit path."""
    unitdir = destdir / INSTALL_PREFIX.lstrip("/") / "lib/systemd/system"
    names = sorted(p.name.replace("@.", "@eth1.") for p in unitdir.iterdir())
    assert "ec2-net-utils@eth1.service" in names, names
    result = lab.inst(["systemd-analyze", "verify", "--man=no", *names], check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    # Our units run with their full hardening: the lab's only drop-in on them is the boot
    # unit's sysfs view (see pid1lab.py).
    for name in names:
        dropins = show(lab, name, "DropInPaths")["DropInPaths"]
        if name == "ec2-net-utils.service":
            assert dropins == "/run/systemd/system/ec2-net-utils.service.d/ec2lab.conf"
        else:
            assert dropins == "", (name, dropins)
    # The tool the units run is the one meson installed (the system python, /usr/local).
    where = lab.inst([SYSTEM_PYTHON, "-c", "import ec2net; print(ec2net.__file__)"]).stdout
    assert where.startswith(f"{INSTALL_PREFIX}/lib/"), where


def test_refresh_unit_runs_hardened(lab: Pid1Lab) -> None:
    """What the timer starts every minute, started now: succeeds and changes nothing."""
    before = generated(lab)
    unit = "ec2-net-utils-refresh@eth1.service"
    lab.systemctl("start", unit)  # Type=oneshot: returns when it finished
    props = show(lab, unit, "Result", "ExecMainStatus", "ActiveState")
    assert props["Result"] == "success" and props["ExecMainStatus"] == "0", (
        f"{props}\n{unit_journal(lab, unit)}"
    )
    assert generated(lab) == before
