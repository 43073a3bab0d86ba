"""A transient answer never shrinks configuration: a listed key answering 404, a key listed as
a directory, a sysfs that shows no links, and offline sources that can never catch up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Cli, add_link, del_link
from instance_builder import eni, eni_path, example
from test_setup_tree import PRIMARY, SECONDARY, attach_dual_stack, golden

from ec2net import refresh_walk
from ec2net.errors import MetadataError, NotPropagated
from ec2net.inventory import read_enis
from ec2net.snapshot import SnapshotSource

MACS = "network/interfaces/macs"
DEADLINE = 2.0
# Keys of an ENI's directory that, once listed, must never be read as "absent".
LISTED_KEYS = [
    "local-ipv4s",
    "ipv4-prefix",
    "ipv6s",
    "ipv6-prefix",
    "subnet-ipv4-cidr-block",
    "subnet-ipv6-cidr-blocks",
    "interface-id",
    "network-card",
    "device-number",
]


def configured(ec2net: Cli) -> dict[str, str]:
    """The dual-stack instance configured, with the short deadline of these tests."""
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    assert ec2net.tree() == golden("dual-stack")
    ec2net.extra = ["--deadline", str(DEADLINE)]
    return ec2net.tree()


@pytest.mark.parametrize("command", ["setup", "refresh"])
@pytest.mark.parametrize("key", LISTED_KEYS)
def test_listed_key_answering_404_keeps_the_files(ec2net: Cli, key: str, command: str) -> None:
    before = configured(ec2net)
    ec2net.mock.add_fault(eni_path(SECONDARY, key), status=404, count=None)
    ec2net.mock.clear_log()
    reloads = ec2net.reloads

    started = time.monotonic()
    run = ec2net(command, "--all")
    elapsed = time.monotonic() - started

    assert run.code == 1, run.log
    assert ec2net.tree() == before, "old files must stay byte-identical"
    assert f"eth1: ENI {SECONDARY}: metadata key '{key}': missing: listed, but answered 404" in (
        run.log
    )
    assert ec2net.reloads == reloads, "nothing changed, nothing to reload"
    assert elapsed <= DEADLINE + 1.0
    # Asked again within the run: the retry loop treats it as not yet propagated.
    assert ec2net.mock.count(eni_path(SECONDARY, key)) >= 2


def test_listed_key_answering_404_once_is_asked_again(ec2net: Cli) -> None:
    configured(ec2net)
    ec2net.extra = ["--deadline", "10"]  # room for the second round on a busy machine
    ec2net.mock.clear_log()
    ec2net.mock.set(f"{MACS}/{SECONDARY}/local-ipv4s", ["10.0.2.41", "10.0.2.99"])
    ec2net.mock.add_fault(eni_path(SECONDARY, "local-ipv4s"), status=404, count=1)
    run = ec2net("refresh", "--all")
    assert run.code == 0, run.log
    assert "Address=10.0.2.99/32" in ec2net.tree()["70-eth1.network.d/ec2net_alias.conf"]
    assert ec2net.mock.count(eni_path(SECONDARY, "local-ipv4s")) == 2


@pytest.mark.parametrize("key", ["local-ipv4s", "ipv4-prefix", "ipv6s", "subnet-ipv4-cidr-block"])
def test_key_listed_as_a_directory_keeps_the_files(ec2net: Cli, key: str) -> None:
    before = configured(ec2net)
    ec2net.mock.set(f"{MACS}/{SECONDARY}/{key}", {"unexpected": "value"})
    run = ec2net("refresh", "--all")
    assert run.code == 1, run.log
    assert ec2net.tree() == before
    assert f"metadata key '{key}': listed as a directory where a value is expected" in run.log


def _empty_sysfs(root: Path) -> None:
    for name in ("eth0", "eth1"):
        del_link(root, name)


def _sysfs_unreadable_links(root: Path) -> None:
    # Listed, but nothing about them can be read (no address file).
    for name in ("eth0", "eth1"):
        (root / "sys/class/net" / name / "address").unlink()


def _sysfs_only_loopback(root: Path) -> None:
    _empty_sysfs(root)
    add_link(root, "lo", "00:00:00:00:00:00", driver=None)


def _sysfs_missing(root: Path) -> None:
    _empty_sysfs(root)
    (root / "sys/class/net").rmdir()


def _sysfs_not_a_directory(root: Path) -> None:
    _sysfs_missing(root)
    (root / "sys/class/net").write_text("")


SYSFS_FAULTS = {
    "no links": _empty_sysfs,
    "links unreadable": _sysfs_unreadable_links,
    "only loopback": _sysfs_only_loopback,
    "no /sys/class/net": _sysfs_missing,
    "/sys/class/net is a file": _sysfs_not_a_directory,
}


@pytest.mark.parametrize("argv", [["setup", "--all"], ["refresh", "--all"]])
@pytest.mark.parametrize("fault", list(SYSFS_FAULTS), ids=list(SYSFS_FAULTS))
def test_sysfs_without_links_changes_nothing(ec2net: Cli, fault: str, argv: list[str]) -> None:
    before = configured(ec2net)
    SYSFS_FAULTS[fault](ec2net.root)
    reloads = ec2net.reloads
    run = ec2net(*argv)
    assert run.code == 1, run.log
    assert ec2net.tree() == before, "the primary's files and every other file stay"
    assert ec2net.reloads == reloads
    errors = [line for line in run.log.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "sys/class/net" in errors[0], run.log
    assert "Traceback" not in run.log


@pytest.mark.parametrize("fault", ["no links", "no /sys/class/net"])
def test_coalesced_walk_without_links_changes_nothing(ec2net: Cli, fault: str) -> None:
    before = configured(ec2net)
    SYSFS_FAULTS[fault](ec2net.root)
    run = ec2net("refresh", "--coalesce", "eth1")
    assert run.code == 1, run.log
    assert "sys/class/net" in run.log
    assert ec2net.tree() == before
    walked = refresh_walk.covered(str(ec2net.root), "eth1")
    assert walked is None, "an untrusted walk is not recorded"


def test_listed_but_unreadable_link_is_not_gone(ec2net: Cli) -> None:
    before = configured(ec2net)
    (ec2net.root / "sys/class/net/eth1/address").unlink()
    run = ec2net("setup", "--all")
    assert run.code == 0, run.log
    assert ec2net.tree() == before, "eth1 is still listed: its files stay"
    # Positive evidence: eth1 no longer listed at all while eth0 is.
    del_link(ec2net.root, "eth1")
    assert ec2net("setup", "--all").code == 0
    assert not [p for p in ec2net.tree() if p.startswith("70-eth1")]


def test_check_reports_no_stale_files_without_trustworthy_sysfs(ec2net: Cli) -> None:
    configured(ec2net)
    _empty_sysfs(ec2net.root)
    run = ec2net("check", "--json")
    report = json.loads(run.stdout)
    kinds = {(f["interface"], f["kind"]) for f in report["findings"]}
    assert ("*", "not-checked") in kinds
    assert not [k for k in kinds if k[1] == "stale-file"], kinds
    assert run.code == 1


# -- offline sources always end ---------------------------------------------------------------


def _snapshot_file(tmp_path: Path, snapshot: dict[str, object]) -> Path:
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(snapshot))
    return path


def _render(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A subprocess with a bound: the old code spun forever here.
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.run(
        [sys.executable, "-m", "ec2net", "render", "--out", str(tmp_path / "out"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def test_render_with_a_link_missing_from_the_snapshot_ends(tmp_path: Path) -> None:
    snap = _snapshot_file(tmp_path, example("dual-stack"))
    try:
        result = _render(
            tmp_path,
            "--metadata",
            str(snap),
            "--link",
            f"eth0={PRIMARY}",
            "--link",
            "eth9=0e:00:00:00:00:99",
        )
    except subprocess.TimeoutExpired:
        pytest.fail("render did not end")
    assert result.returncode == 1, result.stderr
    assert "0e:00:00:00:00:99" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "out/70-eth0.network").exists()


def test_render_with_a_secondary_at_device_0_ends(tmp_path: Path) -> None:
    snapshot = example("dual-stack")
    extra = eni("0e:00:00:00:00:98", 0, ipv4s=["10.0.3.5"], subnet4="10.0.3.0/24")
    snapshot["meta-data"]["network"]["interfaces"]["macs"][extra["mac"]] = extra
    try:
        result = _render(tmp_path, "--metadata", str(_snapshot_file(tmp_path, snapshot)))
    except subprocess.TimeoutExpired:
        pytest.fail("render did not end")
    assert result.returncode == 1, result.stderr
    assert "'device-number': 0 on a secondary ENI" in result.stderr
    assert (tmp_path / "out/70-eth0.network").exists()


class _Forever:
    """A source that never catches up, with a given deadline."""

    def __init__(self, remaining: float) -> None:
        self._remaining = remaining

    def get(self, path: str, *, fresh: bool = False) -> str | None:
        return None

    def listing(self, path: str, *, fresh: bool = False) -> list[str] | None:
        return None  # the MAC is not known (yet)

    def remaining(self) -> float:
        return self._remaining


@pytest.mark.parametrize(
    ("remaining", "interval"), [(float("inf"), 1.0), (float("inf"), 0.0), (10.0, 0.0)]
)
def test_retry_loop_never_spins_and_never_waits_without_a_deadline(
    remaining: float, interval: float
) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) > 3:
            raise AssertionError(f"retry loop keeps going: slept {sleeps}")

    results = read_enis(
        _Forever(remaining), [SECONDARY], PRIMARY, retry_interval=interval, sleep=sleep
    )
    assert sleeps == []
    assert isinstance(results[SECONDARY], NotPropagated)


def test_offline_snapshot_is_never_asked_again() -> None:
    snapshot = example("dual-stack")
    del snapshot["meta-data"]["network"]["interfaces"]["macs"][SECONDARY]["device-number"]
    source = SnapshotSource(snapshot)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        raise AssertionError("an offline snapshot never changes: no retry")

    results = read_enis(source, [PRIMARY, SECONDARY], PRIMARY, retry_interval=0, sleep=sleep)
    assert isinstance(results[SECONDARY], MetadataError) and sleeps == []
    assert not isinstance(results[PRIMARY], Exception)
