"""Whatever lies in /run/systemd/network (and in networkd's and udev's state) never hangs a run,
never raises, never stops a healthy ENI, and nothing we cannot call ours is touched.

The property test draws random mixes of our files, foreign files, bytes that are not UTF-8,
directories where files belong, FIFOs, symbolic links (to /dev/zero, to nowhere, to a file of
ours) and huge files, on a real temporary root (pyfakefs has no FIFOs), and runs
`setup --all` then `refresh --all` in-process, each bounded by its deadline + 1 s.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import read_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imds_mock import ImdsMock
from instance_builder import example
from robust_util import RealCli, bounded, make_fifo, make_root, temp_files

from ec2net import layout

GOLDEN = read_tree(Path(__file__).parent / "golden/dual-stack")
MARKER = layout.MARKER.encode() + b"\n"
HUGE = 2 * 1024 * 1024
ENIS = ("eth0", "eth1")  # present, known to IMDS
GONE = "eth9"  # not present: what is ours of it goes, nothing else
DROPIN_NAMES = (*layout.DROPINS, "zz-cni.conf")
OURS = {"ours-old", "ours-huge", "ours-binary"}
KINDS = (
    "ours-old",
    "ours-huge",
    "ours-binary",
    "foreign",
    "foreign-binary",
    "foreign-huge",
    "empty",
    "dir",
    "fifo",
    "zero-link",
    "dangling-link",
    "link-to-ours",
)


def slots() -> list[str]:
    paths = ["10-netplan-eth0.network", "zz-other.network", ".hidden.conf"]
    for ifname in (*ENIS, GONE):
        paths.append(layout.network_file(ifname))
        paths += [layout.dropin(ifname, name) for name in DROPIN_NAMES]
    return paths


SLOTS = slots()
# A drop-in directory itself can be something else than a directory.
DIR_KINDS = ("dir", "file", "fifo", "zero-link", "dangling-link")


def create(path: Path, kind: str, outside: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "ours-old":
        path.write_bytes(MARKER + b"[Network]\nDHCP=no\n")
    elif kind == "ours-huge":
        path.write_bytes(MARKER + b"#" * HUGE)
    elif kind == "ours-binary":
        path.write_bytes(MARKER + b"\xff\xfe\x00\x80")
    elif kind == "foreign":
        path.write_bytes(b"[Match]\nName=other*\n")
    elif kind == "foreign-binary":
        path.write_bytes(b"\xff\xfe\x00garbage\x80")
    elif kind in ("foreign-huge", "file"):
        path.write_bytes(b"a" * HUGE)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "dir":
        path.mkdir()
        (path / "inside").write_text("x")
    elif kind == "fifo":
        make_fifo(path)
    elif kind == "zero-link":
        path.symlink_to("/dev/zero")
    elif kind == "dangling-link":
        path.symlink_to(outside / "missing")
    elif kind == "link-to-ours":
        target = outside / f"ours-{hashlib.sha1(str(path).encode()).hexdigest()}"
        target.write_bytes(MARKER)
        path.symlink_to(target)
    else:
        raise AssertionError(kind)


def fingerprint(path: Path) -> tuple[str, str] | None:
    """What a path is, without following or reading anything that could block."""
    try:
        st_ = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st_.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISREG(st_.st_mode):
        return ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    if stat.S_ISDIR(st_.st_mode):
        return ("dir", ",".join(sorted(os.listdir(path))))
    return ("other", oct(stat.S_IFMT(st_.st_mode)))


def owner(slot: str) -> str | None:
    for ifname in (*ENIS, GONE):
        if slot == layout.network_file(ifname) or slot.startswith(layout.dropin_dir(ifname) + "/"):
            return ifname
    return None


def blocked(ifname: str, contents: dict[str, str], dirs: dict[str, str]) -> bool:
    """Something that is not ours sits where one of the ENI's files must go."""
    if dirs.get(ifname, "dir") != "dir":
        return True
    wanted = [rel for rel in GOLDEN if owner(rel) == ifname]
    return any(contents.get(rel, "absent") not in OURS | {"absent"} for rel in wanted)


@pytest.fixture(scope="module")
def mock() -> Iterator[ImdsMock]:
    with ImdsMock(example("dual-stack")) as server:
        yield server


layouts = st.tuples(
    st.dictionaries(st.sampled_from(SLOTS), st.sampled_from(KINDS), max_size=10),
    st.dictionaries(st.sampled_from((*ENIS, GONE)), st.sampled_from(DIR_KINDS), max_size=2),
)


@settings(
    max_examples=int(os.environ.get("EC2NET_HOSTILE_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=layouts)
def test_hostile_network_dir(
    drawn: tuple[dict[str, str], dict[str, str]],
    mock: ImdsMock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    contents, dirs = drawn
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        _check_layout(base, mock, caplog, contents, dirs)
    finally:
        shutil.rmtree(base)


def _check_layout(
    base: Path,
    mock: ImdsMock,
    caplog: pytest.LogCaptureFixture,
    contents: dict[str, str],
    dirs: dict[str, str],
) -> None:
    root, outside = base / "root", base / "outside"
    outside.mkdir()
    make_root(root)
    netdir = root / "run/systemd/network"
    netdir.mkdir(parents=True)
    for ifname, kind in dirs.items():
        if kind != "dir":
            create(netdir / layout.dropin_dir(ifname), kind, outside)
    contents = {
        rel: kind for rel, kind in contents.items() if dirs.get(owner(rel) or "", "dir") == "dir"
    }
    for rel, kind in contents.items():
        create(netdir / rel, kind, outside)
    before = {rel: fingerprint(netdir / rel) for rel in contents}
    before_dirs = {i: fingerprint(netdir / layout.dropin_dir(i)) for i in dirs}

    cli = RealCli(mock=mock, root=root, caplog=caplog, extra=["--deadline", "3"])
    run = cli("setup", "--all")  # raises on a traceback, fails on a hang (deadline + 1 s)
    failed = {ifname for ifname in ENIS if blocked(ifname, contents, dirs)}
    assert run.code == (1 if failed else 0), (contents, dirs, run.log)
    for line in run.log.splitlines():
        assert "Traceback" not in line

    for ifname in ENIS:
        mine = {rel: text for rel, text in GOLDEN.items() if owner(rel) == ifname}
        if ifname in failed:
            # Not one file of a blocked ENI changed: all old.
            for rel, was in before.items():
                if owner(rel) == ifname:
                    assert fingerprint(netdir / rel) == was, (rel, contents, dirs)
            continue
        for rel, text in mine.items():
            assert (netdir / rel).read_text() == text, (rel, contents, dirs)
    for rel, kind in contents.items():
        who = owner(rel)
        path = netdir / rel
        if (
            kind in OURS
            and who is not None
            and who not in failed
            and rel.endswith((".network", ".conf"))
        ):
            if rel not in GOLDEN:
                assert fingerprint(path) is None, f"stale file of ours kept: {rel}"
        elif kind not in OURS or who is None:
            # Not ours (or not in a place of ours): exactly as it was, never read to the end.
            assert fingerprint(path) == before[rel], (rel, kind, contents, dirs)
    for ifname, was in before_dirs.items():
        if dirs[ifname] != "dir":
            assert fingerprint(netdir / layout.dropin_dir(ifname)) == was
    assert temp_files(root) == []

    # Stable: a second run changes nothing and says the same.
    after = read_tree_safe(netdir)
    again = cli("refresh", "--all")
    assert again.code == run.code, again.log
    assert read_tree_safe(netdir) == after


def read_tree_safe(directory: Path) -> dict[str, tuple[str, str] | None]:
    return {str(p.relative_to(directory)): fingerprint(p) for p in sorted(directory.rglob("*"))}


# networkd's and udev's per-link state, and sysfs' ifindex -----------------------------------

STATE_FILES = {
    "networkd link state": "run/systemd/netif/links/3",
    "udev database": "run/udev/data/n3",
    "ifindex": "sys/class/net/eth1/ifindex",
}
STATE_KINDS = ("fifo", "zero-link", "foreign-binary", "foreign-huge", "dir")


@pytest.mark.parametrize("kind", STATE_KINDS)
@pytest.mark.parametrize("which", sorted(STATE_FILES))
def test_hostile_link_state(
    which: str, kind: str, mock: ImdsMock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "root"
    make_root(root)
    for name, rel in STATE_FILES.items():
        if name != which and name != "ifindex":
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text("NETWORK_FILE=/run/systemd/network/70-eth1.network\n")
    if which != "ifindex":
        (root / STATE_FILES["ifindex"]).write_text("3\n")
    else:
        (root / STATE_FILES["ifindex"]).unlink(missing_ok=True)
    create(root / STATE_FILES[which], kind, tmp_path)
    cli = RealCli(mock=mock, root=root, caplog=caplog, extra=["--deadline", "3"])
    run = cli("setup", "--all")
    assert run.code == 0, run.log
    assert cli.tree() == GOLDEN
    shown = cli("show", "eth1")
    assert shown.code == 0 and "generated:" in shown.stdout


def test_unreadable_foreign_file_is_named_on_one_line(
    mock: ImdsMock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "root"
    make_root(root)
    netdir = root / "run/systemd/network"
    make_fifo(netdir / "70-eth1.network.d" / "evil\nname\x1b[31m.conf")
    make_fifo(netdir / "70-eth0.network")
    with bounded(10):
        cli = RealCli(mock=mock, root=root, caplog=caplog, extra=["--deadline", "3"])
        run = cli("setup", "--all")
    assert run.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "WARNING")]
    assert any("70-eth0.network: a FIFO" in m and "not overwriting" in m for m in errors), errors
    assert any("evil\\nname\\x1b[31m.conf: a FIFO" in m for m in errors), errors
    assert all("\n" not in m for m in errors)
    assert stat.S_ISFIFO(os.lstat(netdir / "70-eth0.network").st_mode)
    assert (netdir / "70-eth1.network").read_text() == GOLDEN["70-eth1.network"]


def test_fifo_address_and_generated_file_never_hang(tmp_path: Path) -> None:
    """A FIFO where sysfs has a link's address, or where `check` compares a generated file:
    each is reported (or the link skipped), and the run ends."""
    import subprocess
    import sys

    from conftest import add_link
    from imds_mock import ImdsMock
    from instance_builder import example

    with ImdsMock(example("dual-stack")) as mock:
        add_link(tmp_path, "eth0", "0e:49:61:0f:c3:11")
        add_link(tmp_path, "eth1", "0e:00:00:00:00:99")
        (tmp_path / "sys/class/net/eth1/address").unlink()
        os.mkfifo(tmp_path / "sys/class/net/eth1/address")
        base = [sys.executable, "-m", "ec2net", "--root", str(tmp_path)]
        base += ["--imds-endpoint", mock.url, "--no-reload", "--deadline", "3"]
        setup = subprocess.run(
            [*base, "setup", "--all"], capture_output=True, text=True, timeout=30
        )
        assert "Traceback" not in setup.stderr
        network = tmp_path / "run/systemd/network/70-eth0.network"
        network.unlink()
        os.mkfifo(network)
        check = subprocess.run([*base, "check", "eth0"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 1, check.stderr
        assert "a FIFO" in check.stdout, check.stdout
        assert "Traceback" not in check.stderr
