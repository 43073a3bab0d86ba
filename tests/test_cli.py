"""The installed `ec2net` command as a subprocess: real files, a recording fake networkctl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import add_link, read_tree
from imds_mock import ImdsMock
from instance_builder import eni_node, example

GOLDEN = Path(__file__).parent / "golden"
SHARED_FIXTURE = (
    Path(__file__).resolve().parents[2] / "shared/fixtures/aemm-metadata-default-values.json"
)


class Instance:
    def __init__(self, root: Path, mock: ImdsMock, bindir: Path) -> None:
        self.root, self.mock, self.bindir = root, mock, bindir
        self.calls = bindir / "networkctl.calls"

    def run_env(self) -> dict[str, str]:
        env = dict(os.environ, PATH=f"{self.bindir}:{os.environ['PATH']}")
        env.pop("JOURNAL_STREAM", None)
        return env

    def run(self, *args: str, check_code: int | None = 0) -> subprocess.CompletedProcess[str]:
        env = self.run_env()
        cmd = [sys.executable, "-m", "ec2net", "--root", str(self.root)]
        cmd += ["--imds-endpoint", self.mock.url, "--deadline", "5", *args]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        if check_code is not None:
            assert result.returncode == check_code, result.stderr
        return result

    def networkctl_calls(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    @property
    def netdir(self) -> Path:
        return self.root / "run/systemd/network"

    def snapshot_stats(self) -> dict[str, tuple[int, int]]:
        """inode and mtime of every file and directory: a write or rename changes one."""
        return {
            str(p): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in [self.netdir, *self.netdir.rglob("*")]
        }


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Instance]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "networkctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {bindir}/networkctl.calls\n')
    fake.chmod(0o755)
    root = tmp_path / "root"
    add_link(root, "eth0", "0e:49:61:0f:c3:11")
    add_link(root, "eth1", "0e:8c:2d:7a:41:b3")
    with ImdsMock(example("dual-stack")) as mock:
        yield Instance(root, mock, bindir)


def test_noop_refresh_writes_nothing_and_never_calls_networkctl(instance: Instance) -> None:
    instance.run("setup", "--all")
    assert instance.networkctl_calls() == ["reload"]
    assert read_tree(instance.netdir) == read_tree(GOLDEN / "dual-stack")
    before = instance.snapshot_stats()
    for args in (["refresh", "--all"], ["refresh", "eth0"], ["refresh", "eth1"]):
        result = instance.run(*args)
        assert result.stderr == "", "a no-op refresh is silent at the default level"
    assert instance.snapshot_stats() == before
    assert instance.networkctl_calls() == ["reload"]
    assert not list(instance.netdir.rglob("*.ec2net-tmp"))


def test_changed_refresh_reloads_exactly_once(instance: Instance) -> None:
    instance.run("setup", "--all")
    node = eni_node(snap := example("dual-stack"), "0e:8c:2d:7a:41:b3")
    node["local-ipv4s"].append("10.0.2.99")
    eni_node(snap, "0e:49:61:0f:c3:11")["local-ipv4s"].append("10.0.1.99")
    instance.mock.set_snapshot(snap)
    result = instance.run("refresh", "--all")
    assert instance.networkctl_calls() == ["reload", "reload"]
    assert "eth0: wrote 70-eth0.network.d/ec2net_alias.conf" in result.stderr
    assert "eth1: wrote 70-eth1.network.d/ec2net_policy_4.conf" in result.stderr


def test_no_reload_flag(instance: Instance) -> None:
    instance.run("--no-reload", "setup", "--all")
    assert instance.networkctl_calls() == []
    assert (instance.netdir / "70-eth1.network").exists()


def test_failed_reload_is_exit_1(instance: Instance) -> None:
    (instance.bindir / "networkctl").write_text("#!/bin/sh\necho 'bus error' >&2\nexit 1\n")
    result = instance.run("setup", "--all", check_code=1)
    assert "networkctl reload failed (exit 1): bus error" in result.stderr


def test_stale_temp_files_are_cleaned(instance: Instance) -> None:
    instance.run("setup", "--all")
    left = instance.netdir / "70-eth1.network.d" / ".eni.conf.abc123.ec2net-tmp"
    left.write_text("half")
    instance.run("refresh", "--all")
    assert not left.exists()


def test_show_json(instance: Instance) -> None:
    instance.run("setup", "--all")
    data = json.loads(instance.run("show", "--json").stdout)
    eth0, eth1 = data["interfaces"]
    assert eth0["primary"] is True and eth0["rule_priority"] is None
    assert eth1["interface"] == "eth1" and eth1["table"] == 10001 and eth1["metric"] == 513
    assert eth1["rule_priority"] == 10001
    assert eth1["ipv4_prefixes"] == ["10.0.2.208/28"]
    assert len(eth1["generated_files"]) == 5
    admin = instance.root / "etc/systemd/network/70-eth1.network.d"
    admin.mkdir(parents=True)
    (admin / "ec2net_alias.conf").write_text("")
    text = instance.run("show", "eth1").stdout
    assert "table 10001" in text and "rule priority 10001" in text
    assert f"admin override: {admin / 'ec2net_alias.conf'}" in text


def test_usage_errors_exit_2(instance: Instance) -> None:
    assert "--all" in instance.run("setup", check_code=2).stderr
    assert "invalid interface name" in instance.run("remove", "a/b", check_code=2).stderr
    result = instance.run("render", "--metadata", "/nonexistent.json", "--out", "x", check_code=2)
    assert "cannot read metadata snapshot '/nonexistent.json'" in result.stderr
    result = instance.run("--deadline", "0", "refresh", "--all", check_code=2)
    assert "--deadline: expected seconds between 0 and 3600" in result.stderr


def test_render_example_from_anywhere(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "ec2net", "render", "--example", "dual-stack", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert read_tree(out) == read_tree(GOLDEN / "dual-stack")
    assert f"{out}/70-eth1.network.d/ec2net_policy_6.conf (written)" in result.stdout
    assert result.stdout.count("(written)") == 8


def test_render_metadata_file_with_links(tmp_path: Path) -> None:
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps(example("dual-stack")))
    out = tmp_path / "out"
    links = ["--link", "ens5=0e:49:61:0f:c3:11", "--link", "ens6=0E:8C:2D:7A:41:B3"]
    cmd = [sys.executable, "-m", "ec2net", "render", "--metadata", str(snap), "--out", str(out)]
    subprocess.run([*cmd, *links], check=True, capture_output=True)
    tree = read_tree(out)
    assert sorted(tree) == sorted(
        k.replace("eth0", "ens5").replace("eth1", "ens6") for k in read_tree(GOLDEN / "dual-stack")
    )
    bad = subprocess.run([*cmd, "--link", "ens5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "expected NAME=MAC" in bad.stderr


def test_render_rejects_malformed_snapshot(tmp_path: Path) -> None:
    snap = tmp_path / "snap.json"
    snap.write_text('{"meta-data": {"mac": 5}}')
    cmd = [sys.executable, "-m", "ec2net", "render", "--metadata", str(snap), "--out", "o"]
    bad = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "snapshot: /mac: unsupported value of type int" in bad.stderr


@pytest.mark.skipif(not SHARED_FIXTURE.exists(), reason="shared/fixtures not beside the repo")
def test_render_real_world_fixture(tmp_path: Path) -> None:
    """The metadata mock's published defaults, converted into our snapshot format."""
    data = json.loads(SHARED_FIXTURE.read_text())["metadata"]
    tree: dict[str, Any] = {}
    # Longest paths first: where a listing path is also a leaf elsewhere, the directory wins.
    for key, path in sorted(data["paths"].items(), key=lambda kv: -kv[1].count("/")):
        node = tree
        parts = path.removeprefix("/latest/meta-data/").split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if key in data["values"] and isinstance(node, dict) and parts[-1] not in node:
            node[parts[-1]] = data["values"][key]
    snap = tmp_path / "aemm.json"
    snap.write_text(json.dumps({"meta-data": tree}))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ec2net", "render", "--metadata", str(snap), "--out", str(out)]
    # Its defaults are inconsistent: local-ipv4s 172.16.34.43 in subnet 192.0.2.0/24. That is
    # refused (README "Which metadata is refused") with one line naming key and address ...
    mac = data["values"]["mac"]
    refused = subprocess.run(cmd, capture_output=True, text=True)
    assert refused.returncode == 1 and not read_tree(out)
    assert (
        f"ENI {mac}: metadata key 'local-ipv4s': 172.16.34.43 is not in any of 192.0.2.0/24"
        in refused.stderr
    )
    # ... and with that one value made consistent, the rest renders.
    eni = tree["network"]["interfaces"]["macs"][mac]
    eni["local-ipv4s"] = "192.0.2.43"
    snap.write_text(json.dumps({"meta-data": tree}))
    subprocess.run(cmd, check=True, capture_output=True)
    files = read_tree(out)
    assert f"MACAddress={mac}" in files["70-eth0.network"]
    assert (
        "Destination=" + data["values"]["mac-subnet-ipv4-cidr-block"]
        in files["70-eth0.network.d/eni.conf"]
    )


def test_journal_priorities_and_verbose_requests(instance: Instance) -> None:
    env = dict(instance.run_env(), JOURNAL_STREAM="8:12345")
    base = [sys.executable, "-m", "ec2net", "--root", str(instance.root)]
    base += ["--imds-endpoint", instance.mock.url]
    result = subprocess.run([*base, "setup", "--all"], capture_output=True, text=True, env=env)
    lines = result.stderr.splitlines()
    assert "<6>eth1: wrote 70-eth1.network" in lines, "info lines carry priority 6"
    quiet = subprocess.run([*base, "refresh", "--all"], capture_output=True, text=True, env=env)
    assert quiet.stderr == "", "a no-op refresh logs nothing at the default level"
    verbose = subprocess.run(
        [*base, "-v", "refresh", "eth1"], capture_output=True, text=True, env=env
    )
    assert any(line.startswith("<7>GET http://127.0.0.1:") for line in verbose.stderr.split("\n"))
    assert "<7>eth1: metadata unchanged since the files were written" in verbose.stderr
    failed = subprocess.run(
        [*base, "--deadline", "1", "setup", "eth9"], capture_output=True, text=True, env=env
    )
    assert "<3>eth9: no such interface" in failed.stderr
