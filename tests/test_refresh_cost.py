"""The cheap paths of the periodic refresh: coalesced walks, the early exit before any heavy
import, and skipping rendering when the validated metadata did not change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Cli, del_link
from test_cli import Instance, instance  # noqa: F401 (fixture)
from test_setup_tree import SECONDARY, attach_dual_stack, golden

from ec2net import refresh_walk


def test_coalesced_refresh_walks_once_per_window(
    ec2net: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    clock = [1000.0]
    monkeypatch.setattr(refresh_walk, "now", lambda: clock[0])
    ec2net.mock.clear_log()

    assert ec2net("refresh", "--coalesce", "eth0").code == 0
    walked = ec2net.mock.count()
    assert walked == 20, "the first timer walks both ENIs"
    assert ec2net("refresh", "--coalesce", "eth1").code == 0
    assert ec2net.mock.count() == walked, "eth1's timer is served by that walk"

    key = f"network/interfaces/macs/{SECONDARY}/local-ipv4s"
    ec2net.mock.set(key, ["10.0.2.41", "10.0.2.140", "10.0.2.77", "10.0.2.99"])
    clock[0] += refresh_walk.WINDOW_SECONDS + 1
    assert ec2net("refresh", "--coalesce", "eth1").code == 0
    assert ec2net.mock.count() == 2 * walked
    assert "Address=10.0.2.99/32" in ec2net.tree()["70-eth1.network.d/ec2net_alias.conf"]
    assert ec2net.reloads == 2

    # A refresh by hand is never skipped.
    ec2net.mock.set(key, ["10.0.2.41"])
    assert ec2net("refresh", "eth1").code == 0
    assert "70-eth1.network.d/ec2net_alias.conf" not in ec2net.tree()


def test_coalesced_walk_reports_only_its_own_interface(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    ec2net.mock.add_fault(
        f"/latest/meta-data/network/interfaces/macs/{SECONDARY}/", status=500, count=None
    )
    run = ec2net("refresh", "--coalesce", "eth0")
    assert run.code == 0, "eth0's unit is fine; eth1's error is logged"
    assert "eth1: IMDS" in run.log
    requests = ec2net.mock.count()
    run = ec2net("refresh", "--coalesce", "eth1")
    assert run.code == 1, "eth1's unit reports the failure of that walk"
    assert "eth1: covered by a walk of all ENIs less than a minute ago that failed" in run.log
    assert ec2net.mock.count() == requests, "without asking the failing IMDS again"
    assert ec2net.tree() == golden("dual-stack")
    assert ec2net("refresh", "--coalesce", "eth0", "eth1").code == 2


EARLY_EXIT = """
import sys
from ec2net import entry, refresh_walk
expected_root = sys.argv[1]
codes = {"eth1": 0, "eth2": 1}
refresh_walk.covered = lambda root, ifname: codes.get(ifname) if root == expected_root else None
sys.argv = ["ec2net", *sys.argv[2:]]
code = entry.main()
heavy = ("ec2net.cli", "argparse", "logging", "http.client", "jinja2")
heavy = [m for m in heavy if m in sys.modules]
print(code, heavy)
"""


@pytest.mark.parametrize(
    ("argv", "root", "early"),
    [
        (["refresh", "--coalesce", "eth1"], "/", True),
        (["--root", "/x", "--no-reload", "refresh", "--coalesce", "eth1"], "/x", True),
        (["--imds-endpoint", "http://h", "refresh", "--coalesce", "eth1"], "/", True),
        (["refresh", "--coalesce", "eth0"], "/", False),  # not covered
        (["refresh", "--coalesce", "eth2"], "/", "failed"),  # covered by a failed walk
        (["-v", "refresh", "--coalesce", "eth1"], "/", False),  # wants the log line
        (["refresh", "eth1"], "/", False),  # by hand: never skipped
        (["--root=/x", "refresh", "--coalesce", "eth1"], "/x", False),
    ],
)
def test_timer_early_exit_imports_nothing_heavy(
    argv: list[str], root: str, early: bool | str
) -> None:
    """Whatever does not take the early exit reaches the full CLI (here: exit 2 or 1)."""
    result = subprocess.run(
        [sys.executable, "-c", EARLY_EXIT, root, *argv], capture_output=True, text=True
    )
    if early == "failed":
        assert result.stdout.strip() == "1 []"
        assert "eth2: the refresh walk of all ENIs failed for it" in result.stderr
    elif early:
        assert result.stdout.strip() == "0 []"
    else:
        assert "ec2net.cli" in result.stdout or result.returncode != 0


NOOP_REFRESH = """
import sys
from ec2net import cli
code = cli.main(sys.argv[1:])
print(code, "jinja2" in sys.modules)
"""


def test_unchanged_metadata_skips_rendering(instance: Instance) -> None:  # noqa: F811
    instance.run("setup", "--all")

    def refresh() -> str:
        argv = ["--root", str(instance.root), "--imds-endpoint", instance.mock.url]
        result = subprocess.run(
            [sys.executable, "-c", NOOP_REFRESH, *argv, "refresh", "--all"],
            capture_output=True,
            text=True,
            env=instance.run_env(),
            check=True,
        )
        return result.stdout.strip()

    assert refresh() == "0 False", "no jinja2 when nothing changed"
    # Someone edits a generated file: the next refresh renders and restores it.
    path = instance.netdir / "70-eth1.network.d/ec2net_alias.conf"
    path.write_text(path.read_text().replace("10.0.2.77", "10.0.2.78"))
    assert refresh() == "0 True"
    assert (instance.netdir / "70-eth1.network.d/ec2net_alias.conf").read_text() == (
        Path(__file__).parent / "golden/dual-stack/70-eth1.network.d/ec2net_alias.conf"
    ).read_text()
    assert instance.networkctl_calls() == ["reload", "reload"]


def test_timer_of_a_detached_link_records_no_failure(
    ec2net: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timer that fires just after its ENI was detached walks nothing and records nothing:
    a re-attach within the window must not inherit a failure of the link that was gone."""
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    monkeypatch.setattr(refresh_walk, "now", lambda: 1000.0)
    del_link(ec2net.root, "eth1")
    ec2net.mock.clear_log()
    run = ec2net("refresh", "--coalesce", "eth1")
    assert run.code == 0, run.log
    assert ec2net.mock.count() == 0
    assert refresh_walk.covered("/", "eth1") is None


def test_link_gone_while_waiting_for_its_lock_gets_no_files(
    ec2net: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Links are listed before the locks are taken; one that went meanwhile (its unit's stop
    removed its files under the lock) must not get them back."""
    from ec2net import commands

    attach_dual_stack(ec2net)
    real_locks = commands.interface_locks

    def detach_then_lock(*args: object, **kwargs: object) -> object:
        del_link(ec2net.root, "eth1")
        return real_locks(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(commands, "interface_locks", detach_then_lock)
    run = ec2net("setup", "eth0", "eth1")
    assert run.code == 0, run.log
    assert "eth1: gone or changed while waiting for its lock" in run.log
    assert not [rel for rel in ec2net.tree() if "eth1" in rel]
    assert "70-eth0.network" in ec2net.tree()
