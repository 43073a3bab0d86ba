"""The apply layer never loses or half-applies configuration.

- A failed (or never reached) `networkctl reload` is made good by the next run, even a no-op.
- A write failure leaves every file of the interface old, never a mix.
- Broken records (state, refresh walk, locks, reload debts) never stop the other ENIs.
- Drop-ins of other tools in our drop-in directories are never deleted.
- Cleaning up after killed runs never deletes a temporary file a live run is writing.
- A detached interface leaves nothing behind, and the lock files that go with it still exclude.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import del_link, read_tree
from imds_mock import ImdsMock
from instance_builder import eni_node, example
from robust_util import (
    ROOT_ONLY,
    SECONDARY,
    RealCli,
    bounded,
    immutable,
    make_root,
    temp_files,
)

from ec2net import facts, refresh_walk

GOLDEN = Path(__file__).parent / "golden"
STATE = facts.APPLIED_STATE_DIR
LOCKS = facts.LOCK_DIR
PENDING = facts.PENDING_DIR


def reload_owed(root: Path) -> bool:
    """A record of a reload still owed (by a run that changed files) is there."""
    directory = root / PENDING
    return directory.is_dir() and bool(os.listdir(directory))


def golden() -> dict[str, str]:
    return read_tree(GOLDEN / "dual-stack")


def moved_secondary() -> dict[str, Any]:
    """eth1 becomes device 2: new metric in 70-eth1.network and new table in every drop-in."""
    snap = example("dual-stack")
    eni_node(snap, SECONDARY)["device-number"] = "2"
    return snap


@pytest.fixture
def cli(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[RealCli]:
    root = tmp_path / "root"
    make_root(root)
    with ImdsMock(example("dual-stack")) as mock:
        yield RealCli(mock=mock, root=root, caplog=caplog, extra=["--deadline", "3"])


# 1. Nothing written is ever left unapplied ---------------------------------------------------


@pytest.mark.parametrize(
    "then",
    [
        ("refresh", "--all"),
        ("refresh", "eth0"),
        ("setup", "eth0"),
        ("remove", "eth9"),
        ("refresh", "--coalesce", "eth0"),
    ],
)
def test_failed_reload_is_made_good_by_the_next_run(cli: RealCli, then: tuple[str, ...]) -> None:
    cli.fail_reloads = 1
    first = cli("setup", "--all")
    assert first.code == 1 and "reload: networkctl reload failed" in first.log
    assert cli.tree() == golden() and cli.reloads == 0

    second = cli(*then)  # changes nothing itself
    assert second.code == 0, second.log
    assert cli.reloads == 1, "the owed reload was not retried"
    assert "earlier run(s) whose changes it never got" in second.log
    assert "wrote" not in second.log

    third = cli(*then)
    assert third.code == 0 and cli.reloads == 1, "a settled debt is not reloaded again"
    assert not reload_owed(cli.root)


def test_reload_failing_again_keeps_the_debt(cli: RealCli) -> None:
    cli.fail_reloads = 2
    assert cli("setup", "--all").code == 1
    assert cli("refresh", "--all").code == 1
    assert reload_owed(cli.root)
    assert cli("refresh", "--all").code == 0
    assert (cli.attempts, cli.reloads) == (3, 1)


def test_no_reload_leaves_the_debt_as_it_is(cli: RealCli) -> None:
    cli.fail_reloads = 1
    assert cli("setup", "--all").code == 1
    assert cli("--no-reload", "refresh", "--all").code == 0
    assert cli("--no-reload", "remove", "eth9").code == 0
    assert cli.attempts == 1 and reload_owed(cli.root)
    assert cli("refresh", "eth1").code == 0
    assert cli.reloads == 1 and not reload_owed(cli.root)


def test_a_no_reload_run_owes_nothing(cli: RealCli) -> None:
    assert cli("--no-reload", "setup", "--all").code == 0
    assert cli.tree() == golden()
    assert not reload_owed(cli.root)
    assert cli("refresh", "--all").code == 0 and cli.attempts == 0


def test_failed_walk_reload_voids_the_timer_shortcut(cli: RealCli) -> None:
    """The timer's early exit must not answer "covered" while the walk's reload is owed."""
    assert cli("setup", "--all").code == 0
    cli.mock.set_snapshot(moved_secondary())
    cli.fail_reloads = 1
    assert cli("refresh", "--coalesce", "eth0").code == 1
    assert refresh_walk.covered(str(cli.root), "eth1") is None
    assert refresh_walk.covered(str(cli.root), "eth1", unless_reload_owed=False) == 0
    requests = cli.mock.count()
    run = cli("refresh", "--coalesce", "eth1")
    assert run.code == 0 and cli.reloads == 2, "setup's and the owed one"
    assert cli.mock.count() == requests, "the walk still serves eth1: no IMDS request"
    assert refresh_walk.covered(str(cli.root), "eth1") == 0


FAKE_NETWORKCTL = """#!/bin/sh
# The first call kills the ec2net process that ran it: files written, reload never done.
if [ ! -e "{flag}" ]; then : > "{flag}"; kill -9 "$PPID"; exit 1; fi
echo "$*" >> "{calls}"
"""


def test_run_killed_between_write_and_reload(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_root(root)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    fake = bindir / "networkctl"
    fake.write_text(FAKE_NETWORKCTL.format(flag=tmp_path / "killed", calls=calls))
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
    env.pop("JOURNAL_STREAM", None)
    with ImdsMock(example("dual-stack")) as mock:

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            argv = [sys.executable, "-m", "ec2net", "--root", str(root)]
            argv += ["--imds-endpoint", mock.url, "--deadline", "5", *args]
            return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

        assert run("setup", "--all").returncode == -9
        assert read_tree(root / "run/systemd/network") == golden()
        assert not calls.exists()
        again = run("refresh", "--all")
        assert again.returncode == 0, again.stderr
        assert calls.read_text().splitlines() == ["reload"]
        assert run("refresh", "--all").returncode == 0
        assert calls.read_text().splitlines() == ["reload"]


HOLD_RECORD = """
import sys
from pathlib import Path
from typing import Any
from ec2net import pending
pending.mark(Path(sys.argv[1]))
print("marked", flush=True)
sys.stdin.readline()
"""


def test_a_live_runs_record_is_never_settled_by_another(tmp_path: Path) -> None:
    """A run that marked its debt and is still writing must settle it itself."""
    from ec2net import pending

    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_RECORD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline() == "marked\n"
    assert pending.records_present(tmp_path)
    assert pending.owed(tmp_path, []) == [], "the owner is alive"
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.wait(timeout=30) == 0
    owed = pending.owed(tmp_path, [])
    assert len(owed) == 1, "its owner ended without a reload: owed"
    assert pending.owed(tmp_path, []) == [], "held by us now"
    pending.settle(owed)
    assert not pending.records_present(tmp_path)


@ROOT_ONLY
def test_write_failure_leaves_all_files_old(cli: RealCli) -> None:
    """A drop-in directory that refuses writes: 70-eth1.network must not get the new metric
    alone."""
    assert cli("setup", "--all").code == 0
    before = cli.tree()
    cli.mock.set_snapshot(moved_secondary())
    with immutable(cli.netdir / "70-eth1.network.d"):
        run = cli("refresh", "--all")
    assert run.code == 1 and "eth1:" in run.log
    assert cli.tree() == before, "an interface's files are all old or all new"
    assert temp_files(cli.root) == []
    assert cli.reloads == 1
    assert cli("refresh", "--all").code == 0
    assert "RouteMetric=514" in cli.tree()["70-eth1.network"]
    assert "Table=10002" in cli.tree()["70-eth1.network.d/eni.conf"]


@ROOT_ONLY
def test_full_file_system_leaves_all_files_old(cli: RealCli) -> None:
    """ENOSPC (a tmpfs out of inodes) after the first staged file: nothing renamed."""
    cli.netdir.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", str(cli.netdir)], check=True)
    try:
        assert cli("setup", "--all").code == 0
        before = cli.tree()
        used = os.statvfs(cli.netdir)
        in_use = used.f_files - used.f_ffree
        opts = f"remount,nr_inodes={in_use + 1}"
        subprocess.run(["mount", "-o", opts, str(cli.netdir)], check=True)
        cli.mock.set_snapshot(moved_secondary())
        run = cli("refresh", "--all")
        assert run.code == 1 and "No space left on device" in run.log
        assert cli.tree() == before
        assert temp_files(cli.netdir) == []
        subprocess.run(["mount", "-o", "remount,nr_inodes=1000", str(cli.netdir)], check=True)
        assert cli("refresh", "--all").code == 0
        assert "RouteMetric=514" in cli.tree()["70-eth1.network"]
    finally:
        subprocess.run(["umount", str(cli.netdir)], check=True)


# 2. Broken records never stop the others, never a traceback ----------------------------------


def _zero_link(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _directory(path: Path) -> None:
    path.mkdir()
    (path / "x").write_text("x")


def _garbage(path: Path) -> None:
    path.write_bytes(b"\xff\xfe[" * 200_000)


def _nested(path: Path) -> None:
    path.write_text('{"digest": ' + "[" * 200_000)


BROKEN = {
    "fifo": os.mkfifo,
    "zero-link": _zero_link,
    "directory": _directory,
    "garbage": _garbage,
    "nested": _nested,
}
# What cannot be replaced by a file of ours (a directory) makes the run report a failure.
UNWRITABLE = {"directory"}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_state_record(cli: RealCli, kind: str) -> None:
    assert cli("setup", "--all").code == 0
    record = cli.root / STATE / "eth1.json"
    record.unlink()
    BROKEN[kind](record)
    cli.mock.set_snapshot(moved_secondary())
    run = cli("refresh", "--all")
    assert run.code == (1 if kind in UNWRITABLE else 0), run.log
    assert "RouteMetric=514" in cli.tree()["70-eth1.network"], "the config is written anyway"
    assert cli.reloads == 2
    if kind in UNWRITABLE:
        assert "cannot write the state record" in run.log
        assert len([line for line in run.log.splitlines() if "state record" in line]) == 1
    else:
        assert (cli.root / STATE / "eth1.json").is_file()
        assert cli("refresh", "--all").code == 0
    # remove: the record is forgotten (or reported), the files go either way
    del_link(cli.root, "eth1")
    removed = cli("remove", "eth1")
    assert removed.code == (1 if kind in UNWRITABLE else 0)
    assert not [p for p in cli.tree() if "eth1" in p]


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_walk_record(cli: RealCli, kind: str) -> None:
    assert cli("setup", "--all").code == 0
    record = cli.root / refresh_walk.WALK_FILE
    BROKEN[kind](record)
    with bounded(2):
        assert refresh_walk.covered(str(cli.root), "eth0") is None  # the timer's early exit
    cli.mock.set_snapshot(moved_secondary())
    run = cli("refresh", "--coalesce", "eth0")
    assert run.code == (1 if kind in UNWRITABLE else 0), run.log
    assert "RouteMetric=514" in cli.tree()["70-eth1.network"]
    assert cli.reloads == 2
    if kind in UNWRITABLE:
        assert "cannot write the refresh-walk record" in run.log
    else:
        assert refresh_walk.covered(str(cli.root), "eth1") == 0


@ROOT_ONLY
def test_read_only_state_directory(cli: RealCli) -> None:
    assert cli("setup", "--all").code == 0
    cli.mock.set_snapshot(moved_secondary())
    with immutable(cli.root / STATE):
        run = cli("refresh", "--all")
    assert run.code == 1 and "eth1: cannot write the state record" in run.log
    assert "RouteMetric=514" in cli.tree()["70-eth1.network"]
    assert cli.reloads == 2


@pytest.mark.parametrize("kind", ["fifo", "zero-link", "directory"])
def test_broken_lock_file_stops_only_its_interface(cli: RealCli, kind: str) -> None:
    (cli.root / LOCKS).mkdir(parents=True)
    BROKEN[kind](cli.root / LOCKS / "eth1.lock")
    run = cli("setup", "--all")
    assert run.code == 1
    assert "eth1: " in run.log and "eth1.lock" in run.log, run.log
    assert sorted(cli.tree()) == sorted(k for k in golden() if "eth0" in k)


def test_pending_record_cannot_be_made(cli: RealCli) -> None:
    """Nowhere to record the debt: the files are still written and reloaded, and it is said."""
    (cli.root / facts.RUN_DIR).mkdir(parents=True)
    (cli.root / PENDING).write_text("in the way")
    run = cli("setup", "--all")
    assert run.code == 1 and "reload: cannot record the pending reload" in run.log
    assert cli.tree() == golden() and cli.reloads == 1


def test_networkctl_that_cannot_run_is_an_error_not_a_traceback(
    cli: RealCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ec2net import networkd

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "networkctl").write_bytes(b"\x7fELF not really")
    (bindir / "networkctl").chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(networkd.ApplyError, match="cannot run"):
        networkd.reload()


# 3. Other tools' drop-ins in our drop-in directories -----------------------------------------

CNI = "[Network]\nDNS=192.0.2.53\n"


@pytest.mark.parametrize("how", ["refresh", "remove", "vanished"])
@pytest.mark.parametrize("name", ["zz-cni.conf", "ec2net_alias.conf"])
def test_foreign_dropin_is_never_deleted(cli: RealCli, name: str, how: str) -> None:
    """Only the marker makes a file ours: a foreign drop-in, even one named like ours, stays
    through a refresh that removes our stale drop-ins, through `remove`, and through
    `setup --all` after the link vanished."""
    assert cli("setup", "--all").code == 0
    dropins = cli.netdir / "70-eth1.network.d"
    foreign = dropins / name
    if name == "ec2net_alias.conf":
        (dropins / "ec2net_alias.conf").unlink()
        snap = example("dual-stack")
        eni_node(snap, SECONDARY)["local-ipv4s"] = ["10.0.2.41"]  # we want no alias file
        cli.mock.set_snapshot(snap)
        assert cli("refresh", "--all").code == 0
    foreign.write_text(CNI)
    if how == "refresh":
        # Secondary IPs unassigned (our alias drop-in becomes stale and is removed), and a
        # new device number, so that every file of eth1 changes.
        snap = moved_secondary()
        eni_node(snap, SECONDARY)["local-ipv4s"] = ["10.0.2.41"]
        cli.mock.set_snapshot(snap)
        run = cli("refresh", "--all")
        assert run.code == 0, run.log
        assert sorted(os.listdir(dropins)) == sorted(
            [name, "eni.conf", "ec2net_policy_4.conf", "ec2net_policy_6.conf"]
        )
    elif how == "remove":
        assert cli("remove", "eth1").code == 0
        assert os.listdir(dropins) == [name]
    else:
        del_link(cli.root, "eth1")  # detached
        assert cli("setup", "--all").code == 0
        assert os.listdir(dropins) == [name]
    assert foreign.read_text() == CNI


# 4. Cleaning up after killed runs never touches a live writer's temporary file --------------

PAUSED_WRITER = """
import os, sys
real_fsync = os.fsync
paused = []
def fsync(fd):
    try:
        name = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        name = ""
    if name.endswith(".ec2net-tmp") and not paused:
        paused.append(name)
        print("paused", name, flush=True)
        sys.stdin.readline()
    real_fsync(fd)
os.fsync = fsync
from ec2net.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("other", [("setup", "eth0"), ("refresh", "--coalesce", "eth0")])
def test_cleanup_never_deletes_a_temp_file_being_written(
    tmp_path: Path, other: tuple[str, ...]
) -> None:
    """A run paused in the middle of writing eth1's first file; another run starts and
    finishes meanwhile. The writer's temporary file must survive, and the writer succeed."""
    root = tmp_path / "root"
    make_root(root)
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    with ImdsMock(example("dual-stack")) as mock:
        argv = ["--root", str(root), "--imds-endpoint", mock.url, "--no-reload"]
        writer = subprocess.Popen(
            [sys.executable, "-c", PAUSED_WRITER, *argv, "setup", "eth1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert writer.stdout is not None and writer.stdin is not None
        ready, _, _ = select.select([writer.stdout], [], [], 60)
        assert ready, "the writer never got to its first write"
        line = writer.stdout.readline().split()
        assert line[0] == "paused", line
        temp = Path(line[1])
        assert temp.exists()

        cmd = [sys.executable, "-m", "ec2net", *argv, *other]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        assert temp.exists(), "another run deleted a temporary file that was being written"

        writer.stdin.write("\n")
        writer.stdin.flush()
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err
    tree = read_tree(root / "run/systemd/network")
    assert tree == golden()
    assert temp_files(root) == []


def test_leftovers_of_killed_runs_are_removed_per_interface(cli: RealCli) -> None:
    """Temporary files of eth1 go when eth1 is set up or removed; those of another interface
    whose name merely starts alike stay until that one is."""
    assert cli("setup", "--all").code == 0
    mine = [
        cli.netdir / ".70-eth1.network.a1b2c3d4.ec2net-tmp",
        cli.netdir / "70-eth1.network.d/.eni.conf.0f0f0f0f.ec2net-tmp",
        cli.root / STATE / ".eth1.json.12345678.ec2net-tmp",
    ]
    theirs = [
        cli.netdir / ".70-eth1.network.x.network.a1b2c3d4.ec2net-tmp",
        cli.netdir / ".70-eth0.network.a1b2c3d4.ec2net-tmp",
        cli.root / STATE / ".eth1.json.x.json.12345678.ec2net-tmp",
    ]
    for path in mine + theirs:
        path.write_text("half")
    run = cli("setup", "eth1")
    assert run.code == 0
    assert [p for p in mine if p.exists()] == []
    assert [p for p in theirs if p.exists()] == theirs
    assert "left behind by an interrupted run" in run.log
    for path in mine:
        path.write_text("half")
    del_link(cli.root, "eth1")
    assert cli("remove", "eth1").code == 0
    assert [p for p in mine if p.exists()] == []


# 5. Rapid attach/detach leaves nothing behind; the locks still exclude -----------------------


def test_detach_leaves_nothing_behind(cli: RealCli) -> None:
    for _ in range(3):
        assert cli("setup", "eth1").code == 0
        assert (cli.root / STATE / "eth1.json").exists()
        assert cli("remove", "eth1").code == 0
        assert not [p for p in cli.tree() if "eth1" in p]
        assert not (cli.netdir / "70-eth1.network.d").exists()
        assert not (cli.root / STATE / "eth1.json").exists()
        assert not (cli.root / LOCKS / "eth1.lock").exists()
    assert os.listdir(cli.root / LOCKS) == []
    assert cli("setup", "--all").code == 0
    assert cli("refresh", "--coalesce", "eth0").code == 0
    assert os.listdir(cli.root / LOCKS) == [], "no run leaves its lock files"


LOCK_WORKER = """
import os, sys, time
from pathlib import Path
from typing import Any
from ec2net.locks import interface_locks
root, rounds = Path(sys.argv[1]), int(sys.argv[2])
def failed(name, exc):
    raise SystemExit(f"{name}: {exc}")
for _ in range(rounds):
    with interface_locks(root, ["eth1"], 120, failed) as held:
        assert held == ["eth1"]
        # Two holders at once would collide here (O_EXCL) or lose an increment.
        inside = os.open(root / "inside", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        counter = root / "counter"
        value = int(counter.read_text()) if counter.exists() else 0
        time.sleep(0.0005)
        counter.write_text(str(value + 1))
        os.close(inside)
        os.unlink(root / "inside")
"""


def test_lock_files_deleted_on_release_still_exclude(tmp_path: Path) -> None:
    workers, rounds = 6, 60
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOCK_WORKER, str(tmp_path), str(rounds)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert (tmp_path / "counter").read_text() == str(workers * rounds)
    assert os.listdir(tmp_path / LOCKS) == []


def test_concurrent_attach_detach_runs(tmp_path: Path) -> None:
    """setup and remove of the same interface racing, then a last remove: no file, lock file,
    state record or temporary file of eth1 is left over."""
    root = tmp_path / "root"
    make_root(root)
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    with ImdsMock(example("dual-stack")) as mock:
        argv = [sys.executable, "-m", "ec2net", "--root", str(root), "--no-reload"]
        argv += ["--imds-endpoint", mock.url, "--deadline", "20"]
        runs = [("setup", "eth1") if n % 2 else ("remove", "eth1") for n in range(10)]
        procs = [
            subprocess.Popen([*argv, *args], stderr=subprocess.PIPE, text=True, env=env)
            for args in runs
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        final = subprocess.run([*argv, "remove", "eth1"], env=env, timeout=60)
        assert final.returncode == 0
    assert not [p for p in read_tree(root / "run/systemd/network") if "eth1" in p]
    assert os.listdir(root / LOCKS) == []
    assert not (root / STATE / "eth1.json").exists()
    assert temp_files(root) == []
