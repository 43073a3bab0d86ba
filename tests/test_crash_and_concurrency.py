"""Crash safety and concurrency of the real CLI (subprocesses on a temporary root).

- SIGKILL at random points of `setup --all`: every file is the complete old or the complete new
  version, and the next run converges to exactly the right tree (and removes the temporary
  files the killed run staged).
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
        self.env = dict(os.environ, PATH=f"{self.bindir}:{os.environ['PATH']}")

    def argv(self, *args: str) -> list[str]:
        cmd = [sys.executable, "-m", "ec2net", "--root", str(self.root)]
        return [*cmd, "--imds-endpoint", self.mock.url, "--deadline", "20", *args]

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            env=self.env,
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

    # How long one uninterrupted run that changes every interface takes (the kind of run
    # that is killed below), to spread the kills over all of it.
    dual_stack.run("setup", "--all")
    durations = []
    for n in range(3):
        dual_stack.mock.set_snapshot(versions[(n + 1) % 2])
        started = time.monotonic()
        dual_stack.run("setup", "--all")
        durations.append(time.monotonic() - started)
    duration = sorted(durations)[1]
    rng = random.Random(20261129)
    killed_mid_write = 0
    hits: list[float] = []
    for run in range(KILL_RUNS):
        old, new = run % 2, (run + 1) % 2
        dual_stack.mock.set_snapshot(versions[old])
        dual_stack.run("setup", "--all")  # converges from whatever the last kill left
        assert dual_stack.tree() == trees[old], f"run {run}: did not converge"
        assert dual_stack.temp_files() == [], f"run {run}: temporary files left behind"

        dual_stack.mock.set_snapshot(versions[new])
        # A quarter of the kills anywhere; the rest late in the run, where files are written,
        # and once kills have hit the write phase, around the delays that did.
        if run % 4 == 0:
            delay = rng.uniform(0.0, 1.1) * duration
        elif hits and run % 4 != 1:
            delay = rng.uniform(min(hits) - 0.02 * duration, max(hits) + 0.02 * duration)
        else:
            delay = rng.uniform(0.6, 1.1) * duration
        proc = dual_stack.start("setup", "--all")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        tree = dual_stack.tree()
        for path in paths:
            assert tree.get(path) in (trees[old].get(path), trees[new].get(path)), (
                f"run {run}: {path} is neither the old nor the new version"
            )
        assert set(tree) <= paths
        # In the write phase: files staged (temporary files left) or some already renamed.
        if tree not in (trees[old], trees[new]) or dual_stack.temp_files():
            killed_mid_write += 1
            hits.append(delay)
    print(f"SIGKILL runs: {KILL_RUNS}; killed while staging or renaming: {killed_mid_write}")
    # The kills must really have hit the write phase, or the test proves nothing.
    assert killed_mid_write >= KILL_RUNS // 40, f"only {killed_mid_write} kills mid-write"


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
