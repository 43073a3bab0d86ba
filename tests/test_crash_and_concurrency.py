"""Crash safety and concurrency of the real CLI (subprocesses on a temporary root).

- SIGKILL of `setup --all`, at random times and at chosen points of the write phase: every file
  is the complete old or the complete new version, and the next run converges to exactly the
  right tree.
- 16 concurrent runs (setup, refresh, remove on the same and on different interfaces) converge,
  and no process calls `networkctl reload` more than once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import add_link, read_tree
from imds_mock import ImdsMock
from instance_builder import eni, eni_node, example, instance

from ec2net import commands
from ec2net.snapshot import SnapshotSource

KILL_RUNS = int(os.environ.get("EC2NET_KILL_RUNS", "200"))
# Runs the CLI with a Python audit hook (no product code involved) that counts the changes to
# files below KILL_DIR (os.replace raises "os.rename", unlink "os.remove"; hooks run before the
# operation) and SIGKILLs the process at the KILL_AT-th: a staged temporary file is written and
# fsynced but not renamed yet, and every earlier change is done. The count goes to KILL_COUNT.
KILL_WRAPPER = """
import atexit, os, runpy, signal, sys
kill_dir, count_file = os.environ["KILL_DIR"], os.environ["KILL_COUNT"]
kill_at = int(os.environ["KILL_AT"])
seen = 0
def hook(event, args):
    global seen
    if event in ("os.rename", "os.remove") and os.fspath(args[0]).startswith(kill_dir):
        seen += 1
        if seen == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
def record():
    with open(count_file, "w") as f:
        f.write(str(seen))
atexit.register(record)
sys.addaudithook(hook)
sys.argv[0] = "ec2net"
runpy.run_module("ec2net", run_name="__main__", alter_sys=True)
"""
PRIMARY = "0e:49:61:0f:c3:11"
SECONDARY = "0e:8c:2d:7a:41:b3"


class Root:
    def __init__(self, base: Path, mock: ImdsMock) -> None:
        self.root = base / "root"
        self.bindir = base / "bin"
        self.bindir.mkdir()
        self.calls = base / "networkctl.calls"
        fake = self.bindir / "networkctl"
        # $PPID is the ec2net process that ran networkctl: one line per call, by process.
        fake.write_text(f'#!/bin/sh\necho "$PPID $*" >> {self.calls}\n')
        fake.chmod(0o755)
        self.mock = mock
        self.kill_count = base / "kill.count"
        self.env = dict(os.environ, PATH=f"{self.bindir}:{os.environ['PATH']}")

    def argv(self, *args: str) -> list[str]:
        cmd = [sys.executable, "-m", "ec2net", "--root", str(self.root)]
        return [*cmd, "--imds-endpoint", self.mock.url, "--deadline", "20", *args]

    def start(self, *args: str, kill_at: int | None = None) -> subprocess.Popen[str]:
        """The CLI in the background; with kill_at, SIGKILLed by KILL_WRAPPER at that change
        (0: never, only counted into self.kill_count)."""
        argv, env = self.argv(*args), self.env
        if kill_at is not None:
            argv = [sys.executable, "-c", KILL_WRAPPER, *argv[3:]]
            env = dict(env, KILL_DIR=str(self.netdir), KILL_AT=str(kill_at))
            env["KILL_COUNT"] = str(self.kill_count)
        return subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str) -> None:
        result = subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr

    @property
    def netdir(self) -> Path:
        return self.root / "run/systemd/network"

    def tree(self) -> dict[str, str]:
        """Generated files only (temporary files of a killed run are listed separately)."""
        return {k: v for k, v in read_tree(self.netdir).items() if not k.endswith(".ec2net-tmp")}

    def temp_files(self) -> list[Path]:
        return list(self.netdir.rglob("*.ec2net-tmp"))


def rendered(snapshot: dict[str, Any], out: Path, links: dict[str, str]) -> dict[str, str]:
    assert commands.render_snapshot(SnapshotSource(snapshot), out, links, lambda _: None) == 0
    return read_tree(out)


@pytest.fixture
def dual_stack(tmp_path: Path) -> Iterator[Root]:
    with ImdsMock(example("dual-stack")) as mock:
        root = Root(tmp_path, mock)
        add_link(root.root, "eth0", PRIMARY)
        add_link(root.root, "eth1", SECONDARY)
        yield root


def version_b() -> dict[str, Any]:
    """Changed metadata touching every kind of file: aliases, rules, routes, and one removal."""
    snap = example("dual-stack")
    eni_node(snap, PRIMARY)["local-ipv4s"] = ["10.0.1.23"]  # alias file goes away
    node = eni_node(snap, SECONDARY)
    node["local-ipv4s"] = ["10.0.2.41", *(f"10.0.2.{n}" for n in range(150, 190))]
    node["ipv4-prefix"] = ["10.0.2.224/28"]
    node["subnet-ipv6-cidr-blocks"] = ["2001:db8:4a3:6902::/64", "2001:db8:4a3:6903::/64"]
    return snap


def test_sigkill_at_random_points(dual_stack: Root, tmp_path: Path) -> None:
    links = {"eth0": PRIMARY, "eth1": SECONDARY}
    versions = [example("dual-stack"), version_b()]
    trees = [rendered(v, tmp_path / f"v{i}", links) for i, v in enumerate(versions)]
    assert trees[0] != trees[1]
    paths = set(trees[0]) | set(trees[1])

    def converge(version: int) -> None:
        dual_stack.mock.set_snapshot(versions[version])
        dual_stack.run("setup", "--all")  # converges from whatever the last kill left
        assert dual_stack.tree() == trees[version], "did not converge"
        assert dual_stack.temp_files() == [], "temporary files left behind"

    # How many file changes each direction makes (for the aimed kills), and how long one
    # uninterrupted (warm) run takes, to spread the timed kills over all of it.
    changes = []
    for old, new in ((0, 1), (1, 0)):
        converge(old)
        dual_stack.mock.set_snapshot(versions[new])
        proc = dual_stack.start("setup", "--all", kill_at=0)
        assert proc.wait(timeout=60) == 0
        changes.append(int(dual_stack.kill_count.read_text()))
    assert min(changes) >= 3, changes
    durations = []
    for n in range(3):
        dual_stack.mock.set_snapshot(versions[(n + 1) % 2])
        started = time.monotonic()
        dual_stack.run("setup", "--all")
        durations.append(time.monotonic() - started)
    duration = sorted(durations)[1]
    rng = random.Random(20261129)
    aimed = aimed_mid_write = 0
    for run in range(KILL_RUNS):
        old, new = run % 2, (run + 1) % 2
        converge(old)
        dual_stack.mock.set_snapshot(versions[new])
        if run % 4 < 2:
            # Aimed: after the first change and before (or at) the last one, so some files
            # are new and the rest old, and one temporary file is staged but not renamed.
            kill_at = rng.randint(2, changes[old])
            proc = dual_stack.start("setup", "--all", kill_at=kill_at)
            aimed += 1
        else:
            # Timed: anywhere in the run (parsing, IMDS, rendering, fsync, between files).
            proc = dual_stack.start("setup", "--all")
            time.sleep(rng.uniform(0.0, 1.1) * duration)
            proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL or run % 4 >= 2, f"run {run}"
        tree = dual_stack.tree()
        for path in paths:
            assert tree.get(path) in (trees[old].get(path), trees[new].get(path)), (
                f"run {run}: {path} is neither the old nor the new version"
            )
        assert set(tree) <= paths
        if run % 4 < 2 and tree not in (trees[old], trees[new]):
            aimed_mid_write += 1
    print(
        f"SIGKILL runs: {KILL_RUNS}; aimed at the write phase: {aimed}, left a mix: "
        f"{aimed_mid_write}; changes per run: {changes}"
    )
    # Every aimed kill hit the write phase (a mix of old and new files), or the test proves
    # nothing: this does not depend on timing.
    assert aimed_mid_write == aimed > 0


def test_sixteen_concurrent_runs_converge(tmp_path: Path) -> None:
    macs = [f"02:00:00:00:07:{n:02x}" for n in range(5)]
    enis = [
        eni(
            mac,
            n,
            ipv4s=[f"10.7.{n}.10", *(f"10.7.{n}.{20 + k}" for k in range(n * 3))],
            subnet4=f"10.7.{n}.0/24",
            prefixes4=[f"10.7.{n}.208/28"] if n else [],
        )
        for n, mac in enumerate(macs)
    ]
    snap = instance(macs[0], *enis)
    with ImdsMock(snap) as mock:
        root = Root(tmp_path, mock)
        for n, mac in enumerate(macs):
            add_link(root.root, f"eth{n}", mac)
        root.run("setup", "eth4")
        # eth4 is detached: its files must go, whoever runs first.
        for path in sorted((root.root / "sys/class/net/eth4").rglob("*"), reverse=True):
            path.unlink() if not path.is_dir() or path.is_symlink() else path.rmdir()
        (root.root / "sys/class/net/eth4").rmdir()

        commands_ = [
            *[("setup", "--all")] * 3,
            *[("refresh", f"eth{n % 4}") for n in range(8)],
            *[("setup", "eth1", "eth2")] * 3,
            *[("remove", "--if-gone", "eth4")] * 2,
        ]
        assert len(commands_) == 16
        procs = [root.start(*args) for args in commands_]
        for proc, args in zip(procs, commands_):
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, (args, err)

    links = {f"eth{n}": mac for n, mac in enumerate(macs[:4])}
    assert root.tree() == rendered(snap, tmp_path / "expected", links)
    assert root.temp_files() == []
    calls = root.calls.read_text().splitlines()
    callers = [line.split()[0] for line in calls]
    assert len(callers) == len(set(callers)), "a process reloaded networkd more than once"
    assert 1 <= len(callers) <= 16
