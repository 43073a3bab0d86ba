"""Rapid attach/detach of one ENI under systemd 252 as PID 1 (container hosts: ECS awsvpc).

A container host attaches and detaches ENIs within seconds, and the kernel hands the same
name (here eth2) to each new one. The per-ENI units must neither pile up processes nor leave
anything behind, whatever the order of udev events, unit starts and stops, Restart= back-off
and refresh timers. The instance (pid1lab.py: real systemd, udevd, networkd, the installed
units) boots with eth0 (primary) and eth1 (secondary, stays attached throughout), then:

1. churn: eth2 is attached and detached :data:`CYCLES` times (veth created and deleted; the
   IMDS mock lists the ENI while it is attached and drops it on detach, as EC2 does), with
   seeded random gaps (``EC2NET_LAB_SEED`` to replay; the seed is printed). Some cycles make
   IMDS refuse the ENI's keys, so that its setup fails, and detach at a random moment of the
   unit's Restart= back-off; the others detach while setup runs or just after, and the refresh
   timer (every 2 s here, a lab drop-in) fires in between. All the while ``ec2net``
   processes in the instance are counted every 50 ms;
2. settle (bounded), then nothing may be left for eth2: no unit or timer loaded, active or
   failed, no file under /run/systemd/network, no lock or state record under
   the run directory, no policy rule or route of its table 10002; eth1's (and eth0's)
   files are byte-identical and their DHCP addresses were never deleted;
3. one more attach is configured completely (no start limit refuses it), and its detach
   again leaves nothing behind.

Every finding is collected and reported at once, so one run lists everything left behind.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netlab import NEEDS_ROOT, VPC_SUBNET, LabError, _kill_popen
from pid1lab import Pid1Lab, lab_fallback, meson_destdir

from ec2net import facts

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from instance_builder import MACS, eni, eni_path, instance  # noqa: E402

NETDIR = "/run/systemd/network"
STATEDIR = "/" + facts.RUN_DIR
ETH0 = eni("02:00:00:00:00:10", 0, ipv4s=["192.0.2.10"], subnet4=VPC_SUBNET)
ETH1 = eni("02:00:00:00:00:11", 1, ipv4s=["192.0.2.11", "192.0.2.21"], subnet4=VPC_SUBNET)
ETH2 = eni("02:00:00:00:00:12", 2, ipv4s=["192.0.2.12"], subnet4=VPC_SUBNET)
CHURN, TABLE = "eth2", 10002
CHURN_FILES = {
    "70-eth2.network",
    "70-eth2.network.d/eni.conf",
    "70-eth2.network.d/ec2net_policy_4.conf",
}
# Addresses that must never be deleted while eth2 churns: eth0's and eth1's DHCP leases and
# eth1's secondary IP.
STAYING_ADDRESSES = ("192.0.2.10", "192.0.2.11", "192.0.2.21")

CYCLES = 50
# One cycle in FAILING_EVERY: IMDS refuses the ENI's keys (403), setup fails within a second
# and the unit waits RestartSec=5 before its next try; the detach lands in that back-off.
FAILING_EVERY = 12
ATTACHED_SECONDS = (0.0, 1.0)  # normal cycles: detach while setup or the refresh runs, or after
BACKOFF_SECONDS = (0.0, 3.0)  # failing cycles: this long into RestartSec=5 (after the failure)
DETACHED_SECONDS = (0.0, 0.4)
IMDS_LAG_SECONDS = (0.0, 0.2)  # IMDS and the kernel do not change at the same moment

# Bound on concurrent ec2net processes in the instance. Each unit runs one process at a
# time (ExecStart/ExecStop/ExecStopPost are sequential), and at any moment at most these
# can have one: ec2-net-utils@eth2.service (setup or remove), ec2-net-utils-refresh@eth2,
# ec2-net-utils-refresh@eth1 and ec2-net-utils-refresh@eth0 (the boot unit and eth0's/eth1's
# setup units finished before the churn). More means processes outlive their units or pile
# up behind each other.
MAX_PROCESSES = 4
SAMPLE_SECONDS = 0.05
SETTLE_SECONDS = 90  # longest legitimate tail: a lock wait (deadline + 15 s) plus a run

# Lab-only: the refresh timer every 2 s instead of every minute, so that it fires during
# the churn (an empty OnActiveSec= resets all the unit's monotonic timers).
FAST_REFRESH = """\
[Timer]
OnActiveSec=
OnActiveSec=1
OnUnitActiveSec=2
RandomizedDelaySec=0
AccuracySec=100ms
"""
# A short IMDS deadline: a setup that waits for a MAC IMDS no longer lists (detach) gives up
# within seconds, as it would after 30 s in production.
CONFIG = "[Main]\nEnable=yes\n[IMDS]\nDeadline=3\n"

# Drives the IMDS mock (in the VPC netns) over one long-lived process: a python start per
# change would dominate the cycle time. One JSON [verb, args, kwargs] per line, "ok" back.
CONTROL_LOOP = """
import json, sys
sys.path.insert(0, sys.argv[1])
from imds_mock import MockControl
mock = MockControl("http://169.254.169.254")
for line in sys.stdin:
    verb, args, kwargs = json.loads(line)
    getattr(mock, verb)(*args, **kwargs)
    print("ok", flush=True)
"""


class ImdsControl:
    def __init__(self, lab: Pid1Lab) -> None:
        self.log = lab.workdir / "imds-control.log"
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                lab.vpc_argv([sys.executable, "-c", CONTROL_LOOP, str(REPO / "tests")]),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
            )

    def call(self, verb: str, *args: Any, **kwargs: Any) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps([verb, args, kwargs]) + "\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ok":
            raise LabError(f"IMDS control {verb}{args} failed: {self.log.read_text()[-2000:]}")

    def attach(self, node: dict[str, Any]) -> None:
        self.call("set", f"{MACS}/{node['mac']}", node)

    def detach(self, node: dict[str, Any]) -> None:
        self.call("clear_faults")
        self.call("set", f"{MACS}/{node['mac']}", None)

    def refuse(self, node: dict[str, Any]) -> None:
        """Every read of the ENI's directory gets 403 (an error for that ENI, no retry)."""
        self.call("add_fault", eni_path(node["mac"]), status=403, count=None)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        _kill_popen(self.proc)


class ProcessSampler(threading.Thread):
    """Counts ``ec2net`` processes in the instance's cgroup tree every ``interval`` s."""

    def __init__(self, cgroup: Path, interval: float = SAMPLE_SECONDS) -> None:
        super().__init__(name="ec2net-process-sampler", daemon=True)
        self.cgroup = cgroup
        self.interval = interval
        self.stopping = threading.Event()
        self.samples = 0
        self.maximum = 0
        self.at_maximum: list[str] = []

    def current(self) -> list[str]:
        found: dict[str, str] = {}  # by PID: a forked child moves from init.scope to its unit
        for dirpath, _dirs, _files in os.walk(self.cgroup):
            try:
                pids = Path(dirpath, "cgroup.procs").read_text().split()
            except OSError:
                continue  # the unit's cgroup went away between walk and read
            for pid in pids:
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                # Also counts PID 1's forked child before exec: it is named "(ec2net)".
                if b"ec2net" in argv:
                    command = argv.replace(b"\0", b" ").decode(errors="replace").strip()
                    found[pid] = f"{os.path.basename(dirpath)}: {pid} {command}"
        return sorted(found.values())

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            found = self.current()
            self.samples += 1
            if len(found) > self.maximum:
                self.maximum, self.at_maximum = len(found), found

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


@pytest.fixture(scope="module")
def destdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT)
    return meson_destdir(tmp_path_factory.mktemp("rapid-meson"))


@pytest.fixture
def lab(destdir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pid1Lab]:
    snapshot = tmp_path / "snapshot.json"
    snapshot.write_text(json.dumps(instance(ETH0["mac"], ETH0, ETH1)))
    dropins = {"ec2-net-utils-refresh@.timer.d/ec2lab-fast.conf": FAST_REFRESH}
    failed_before = request.session.testsfailed
    with Pid1Lab(destdir, lab_fallback(destdir), config=CONFIG, unit_dropins=dropins) as lab:
        lab.start_imds(snapshot)
        lab.add_eni("eth0", ETH0["mac"], ipv4="192.0.2.10")
        lab.add_eni("eth1", ETH1["mac"], ipv4="192.0.2.11")
        lab.boot(timeout=60)
        yield lab
        if request.session.testsfailed > failed_before:
            lab.keep_workdir = True
            print(f"---- journal of the churned ENI's units (workdir {lab.workdir}) ----")
            journal = lab.journal("-u", f"ec2-net-utils*{CHURN}*", "-o", "short-monotonic")
            print("\n".join(journal.splitlines()[-250:]))


# ---------------------------------------------------------------------- observations


def generated(lab: Pid1Lab) -> dict[str, str]:
    """Every file below /run/systemd/network (hidden ones too), relative path -> content."""
    root = lab.path(NETDIR)
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def units_of(lab: Pid1Lab, name: str) -> list[str]:
    """`UNIT LOAD ACTIVE SUB` of every loaded unit of interface ``name``, and its timers."""
    out = lab.systemctl("list-units", "--all", "--plain", "--no-legend", f"*@{name}.*")
    found = [" ".join(line.split()[:4]) for line in out.splitlines() if line.strip()]
    timers = lab.systemctl("list-timers", "--all", "--plain", "--no-legend")
    found += [f"timer: {line.strip()}" for line in timers.splitlines() if f"@{name}." in line]
    return found


def jobs_of(lab: Pid1Lab, name: str) -> list[str]:
    out = lab.systemctl("list-jobs", "--plain", "--no-legend")
    return [line.strip() for line in out.splitlines() if f"@{name}." in line]


def unit_states(lab: Pid1Lab, *units: str) -> dict[str, str]:
    """unit -> "ActiveState/SubState" in one systemctl call."""
    out = lab.systemctl("show", "-p", "Id,ActiveState,SubState", *units)
    states = {}
    for block in out.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        states[props.get("Id", "?")] = f"{props.get('ActiveState')}/{props.get('SubState')}"
    return states


def leftovers(lab: Pid1Lab, name: str, table: int) -> list[str]:
    """Everything still there for a detached interface."""
    found = [f"unit {u}" for u in units_of(lab, name)]
    found += [f"job {j}" for j in jobs_of(lab, name)]
    found += [f"file {NETDIR}/{rel}" for rel in generated(lab) if f"70-{name}." in rel]
    found += [
        f"{'directory' if p.is_dir() else 'file'} {NETDIR}/{p.relative_to(lab.path(NETDIR))}"
        for p in lab.path(NETDIR).glob(f"70-{name}.network.d")
        if p.is_dir() and not any(p.iterdir())
    ]
    # AFTER B's MERGE: `ec2net remove IF` deletes the interface's lock file and state record
    # (lock/IF.lock, state/IF.json); on the branch point both are left behind.
    state_root = lab.path(STATEDIR)
    found += [
        f"file {STATEDIR}/{p.relative_to(state_root)}"
        for p in state_root.rglob("*")
        if p.is_file() and (p.stem == name or f".{name}." in p.name)
    ]
    for family in ("-4", "-6"):
        rules = lab.inst(["ip", family, "rule", "show"]).stdout.splitlines()
        found += [f"rule {r.strip()}" for r in rules if f"lookup {table}" in r]
        routes = lab.inst(["ip", family, "route", "show", "table", "all"]).stdout.splitlines()
        found += [
            f"route {r.strip()}"
            for r in routes
            if f"table {table}" in r or f"dev {name} " in r + " "
        ]
    return found


def settle(lab: Pid1Lab, name: str, sampler: ProcessSampler | None = None) -> float:
    """Wait until nothing runs or waits for interface ``name``; seconds waited."""
    started = time.monotonic()

    def quiet() -> bool:
        busy = jobs_of(lab, name)
        for unit in units_of(lab, name):
            fields = unit.split()
            if fields[0] != "timer:" and fields[2] not in ("inactive", "failed"):
                busy.append(unit)
        procs = sampler.current() if sampler else []
        return not busy and not [p for p in procs if f"@{name}." in p or p.endswith(f" {name}")]

    lab.wait_for(quiet, SETTLE_SECONDS, f"the units of {name} to settle", interval=0.5)
    time.sleep(1)  # PID 1 unloads unreferenced inactive units on its next GC sweep
    return time.monotonic() - started


# ---------------------------------------------------------------------- the test


def _networkd_257() -> bool:
    try:
        out = subprocess.run(["networkctl", "--version"], capture_output=True, text=True)
        return 257 <= int(out.stdout.split()[1]) < 262
    except (OSError, ValueError, IndexError):
        return False


# Open (platform issue): networkd 257 (Debian 13) leaves the detached ENI's policy rule
# (`from ADDR lookup T`) in the kernel when the link goes away; 252 and 262 remove it. Not
# strict: a pass is reported as XPASS.
@pytest.mark.xfail(
    condition=_networkd_257(),
    reason="networkd 257 leaves a detached ENI's policy rule behind (open)",
    strict=False,
)
def test_rapid_attach_detach(lab: Pid1Lab) -> None:
    seed = int(os.environ.get("EC2NET_LAB_SEED", "0")) or random.SystemRandom().randrange(10**9)
    print(f"seed {seed} (replay: EC2NET_LAB_SEED={seed})")
    rng = random.Random(seed)
    problems: list[str] = []
    unit, refresh = f"ec2-net-utils@{CHURN}.service", f"ec2-net-utils-refresh@{CHURN}.service"

    lab.wait_dhcp("eth0")
    lab.wait_dhcp("eth1")
    staying = {rel: text for rel, text in generated(lab).items() if f"70-{CHURN}." not in rel}
    assert {"70-eth0.network", "70-eth1.network"} <= set(staying), staying
    imds = ImdsControl(lab)
    sampler = ProcessSampler(lab.cgroup)
    landed: Counter[str] = Counter()
    no_backoff: list[str] = []
    try:
        with lab.monitor_addresses() as monitor:
            sampler.start()
            churn_started = time.monotonic()
            for cycle in range(CYCLES):
                failing = cycle % FAILING_EVERY == FAILING_EVERY - 1
                # Attach: IMDS first or the kernel first (IMDS lags after a hot-attach).
                imds_first = rng.random() < 0.5
                if imds_first:
                    imds.attach(ETH2)
                    time.sleep(rng.uniform(*IMDS_LAG_SECONDS))
                if failing:
                    imds.refuse(ETH2)
                lab.add_eni(CHURN, ETH2["mac"], ipv4="192.0.2.12")
                if not imds_first:
                    time.sleep(rng.uniform(*IMDS_LAG_SECONDS))
                    imds.attach(ETH2)
                if failing:
                    # Wait for the failure, then detach somewhere inside the back-off.
                    # (Under heavy load PID 1 was seen to stop the unit instead, its device
                    # unit gone although the link existed; counted and printed, see below.)
                    try:
                        lab.wait_for(
                            lambda: unit_states(lab, unit)[unit] == "activating/auto-restart",
                            10,
                            f"cycle {cycle}: {unit} to fail and wait for its restart",
                        )
                    except LabError as exc:
                        no_backoff.append(f"{exc}: {unit_states(lab, unit)[unit]}")
                    time.sleep(rng.uniform(*BACKOFF_SECONDS))
                else:
                    time.sleep(rng.uniform(*ATTACHED_SECONDS))
                # Where the detach lands: setup running, its back-off, a refresh running, ...
                states = unit_states(lab, unit, refresh)
                landed[f"{unit} {states.get(unit)}, refresh {states.get(refresh)}"] += 1
                # Detach: the kernel first, IMDS a moment later (or the other way round).
                kernel_first = rng.random() < 0.7
                if not kernel_first:
                    imds.detach(ETH2)
                lab.del_eni(CHURN)
                time.sleep(rng.uniform(*IMDS_LAG_SECONDS))
                if kernel_first:
                    imds.detach(ETH2)
                time.sleep(rng.uniform(*DETACHED_SECONDS))
            churn_seconds = time.monotonic() - churn_started
            try:
                settle_seconds = settle(lab, CHURN, sampler)
            except LabError as exc:
                problems.append(f"after the churn: {exc}")
                settle_seconds = float("nan")
            sampler.stop()
            problems += [f"after the churn: left behind: {x}" for x in leftovers(lab, CHURN, TABLE)]

            # 3. One more attach: configured completely, whatever happened before.
            imds.attach(ETH2)
            lab.add_eni(CHURN, ETH2["mac"], ipv4="192.0.2.12")
            try:
                lab.wait_for(
                    lambda: (
                        unit_states(lab, unit)[unit] == "active/exited"
                        and set(generated(lab)) >= CHURN_FILES
                        and any(
                            f"lookup {TABLE}" in r
                            for r in lab.inst(["ip", "rule"]).stdout.splitlines()
                        )
                    ),
                    60,
                    f"{CHURN} to be configured after the churn",
                    interval=0.5,
                )
            except LabError as exc:
                props = lab.show(unit, "ActiveState", "SubState", "Result", "NRestarts")
                problems.append(f"final attach: {exc}: {props}")
            lab.del_eni(CHURN)
            imds.detach(ETH2)
            try:
                settle(lab, CHURN)
            except LabError as exc:
                problems.append(f"after the final detach: {exc}")
            problems += [
                f"after the final detach: left behind: {x}" for x in leftovers(lab, CHURN, TABLE)
            ]
    finally:
        sampler.stop()
        imds.close()

    # The staying ENIs: files byte-identical, addresses never deleted, units fine.
    after = {rel: text for rel, text in generated(lab).items() if f"70-{CHURN}." not in rel}
    if after != staying:
        changed = sorted(
            set(after) ^ set(staying) | {r for r in after if after[r] != staying.get(r)}
        )
        problems.append(f"files of the staying ENIs changed: {changed}")
    for address in STAYING_ADDRESSES:
        problems += [f"{address} deleted: {line}" for line in monitor.deleted(address)]
    for name in ("eth0", "eth1"):
        state = unit_states(lab, f"ec2-net-utils@{name}.service")[f"ec2-net-utils@{name}.service"]
        if state != "active/exited":
            problems.append(f"ec2-net-utils@{name}.service is {state}")
    failed = lab.systemctl("--failed", "--plain", "--no-legend").strip()
    if failed:
        problems.append(f"failed units: {failed}")

    # The bound on processes (see MAX_PROCESSES).
    print(
        f"churn: {CYCLES} cycles in {churn_seconds:.1f} s, settled in {settle_seconds:.1f} s; "
        f"ec2net processes: max {sampler.maximum} in {sampler.samples} samples "
        f"every {SAMPLE_SECONDS * 1000:.0f} ms (bound {MAX_PROCESSES}): {sampler.at_maximum}"
    )
    print("detaches landed on:\n  " + "\n  ".join(f"{n:3d}  {k}" for k, n in landed.most_common()))
    if no_backoff:
        print("failing cycles without a back-off:\n  " + "\n  ".join(no_backoff))
    if sampler.maximum > MAX_PROCESSES:
        problems.append(f"{sampler.maximum} ec2net processes at once: {sampler.at_maximum}")
    # The churn must have produced the orderings it is meant to test.
    if not any("activating/start" in k.split(",")[0] for k in landed):
        problems.append("no detach landed while the setup unit was running")
    if not any("auto-restart" in k for k in landed):
        problems.append("no detach landed in the setup unit's Restart= back-off")
    assert not problems, f"seed {seed}:\n" + "\n".join(problems)
