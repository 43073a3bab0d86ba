"""Hostile command lines and sysfs trees: never a traceback, exit codes 0/1/2, a usage error is
exactly one line and changes nothing, interface names are checked by the kernel's rules."""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import add_link, del_link
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from imds_mock import ImdsMock
from instance_builder import example as instance_example

from ec2net import cli, commands, entry, hostname, refresh_walk, sysfs
from ec2net.docs import _subcommands
from ec2net.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
PRIMARY = "0e:49:61:0f:c3:11"
SECONDARY = "0e:8c:2d:7a:41:b3"


@pytest.fixture(scope="module")
def mock() -> Iterator[ImdsMock]:
    with ImdsMock(instance_example("dual-stack")) as server:
        yield server


def tree_state(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every path below root (not following links): its type, mode and content or target."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st_ = os.lstat(path)
            if os.path.islink(path):
                body = os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as handle:
                    body = handle.read()
            else:
                body = b""
            state[os.fsdecode(path)] = (oct(st_.st_mode), st_.st_mtime_ns, body)
    return state


class InProcess:
    """`ec2net.cli.main` in-process: its exit code, stdout and stderr (the real log lines)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.capsys = capsys
        self.hostnames: list[str] = []
        # Whatever the arguments, never the live hostname (the old code set it under --root).
        monkeypatch.setattr(hostname, "set_transient", self.hostnames.append)
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        monkeypatch.delenv("EC2NET_IMDS_ENDPOINT", raising=False)

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main(list(argv), reloader=lambda: None)
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> InProcess:
    return InProcess(capsys, monkeypatch)


def assert_one_line_usage_error(code: int, out: str, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    assert err.startswith("ec2net: ERROR: "), err


# --- usage errors: one line, exit 2, nothing changed ---------------------------------------

BAD_ENDPOINTS = [
    "ftp://127.0.0.1",
    "https://127.0.0.1",
    "http://127.0.0.1:0",
    "http://127.0.0.1:65536",
    "http://127.0.0.1:99999999999999999999",
    "http://127.0.0.1:8o",
    "http://127.0.0.1:\u0668\u0660",  # Arabic-Indic digits: int() takes them
    "http://user@127.0.0.1",
    "http://127.0.0.1/latest",
    "http://127.0.0.1?x=1",
    "http://[::1",
    "http://[not:an:address]",
    "http://999.1.1.1",
    "http://",
    "http://a\nb",
    "",
]


def usage_cases(root: Path, afile: Path) -> list[list[str]]:
    base = ["--root", str(root), "--no-reload"]
    render = ["render", "--example", "dual-stack", "--out"]
    return [
        *([*base, "--imds-endpoint", value, "setup", "--all"] for value in BAD_ENDPOINTS),
        *(
            [*base, "--deadline", value, "setup", "--all"]
            for value in ("nan", "NaN", "inf", "-1", "0", "3601", "1e3", "1_0", "\u0663", "9" * 500)
        ),
        ["--root", str(root / "nonexistent"), "setup", "--all"],
        ["--root", str(afile), "setup", "--all"],
        ["--root", str(root) + "\0x", "setup", "--all"],
        [*base, *render, str(afile)],
        [*base, *render, str(afile / "below")],
        [*base, *render, str(root / "out\0")],
        [*base, "setup", "a/b"],
        [*base, "setup", "eth:0"],
        [*base, "setup", "e\udcffx"],  # not UTF-8 (a surrogate escape from argv)
        [*base, "setup", "\ud800"],
        [*base, "setup", "x" * 16],
        [*base, "setup", "e\u00e0"],  # 'à' is C3 A0; the kernel's isspace() is true for A0
        [*base, "remove", "--if-gone", "--", ".."],
        [*base, "refresh", "--coalesce", "eth0", "eth1"],
        [*base, "setup", "--all", "eth0"],
        [*base, "--bogus", "setup", "--all"],
        [*base, "frobnicate"],
        [*base],
        [*base, "render", "--example", "dual-stack", "--out", str(root / "o"), "--link", "a"],
        [*base, *render, str(root / "o"), "--link", f"a={PRIMARY}", "--link", f"a={SECONDARY}"],
        [*base, *render, str(root / "o"), "--link", f"a={PRIMARY}", "--link", f"b={PRIMARY}"],
    ]


def test_usage_errors_are_one_line_and_change_nothing(
    run: InProcess, mock: ImdsMock, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    add_link(root, "eth0", PRIMARY)
    add_link(root, "eth1", SECONDARY)
    assert run("--root", str(root), "--imds-endpoint", mock.url, "setup", "--all")[0] == 0
    afile = tmp_path / "a-file"
    afile.write_text("x")
    before = tree_state(tmp_path)
    for argv in usage_cases(root, afile):
        code, out, err = run(*argv)
        assert_one_line_usage_error(code, out, err)
        assert tree_state(tmp_path) == before, argv
    assert mock.count(method="PUT") == 1, "only the first setup asked IMDS"


def test_endpoint_from_the_environment_is_checked_too(
    run: InProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EC2NET_IMDS_ENDPOINT", "http://127.0.0.1:0")
    code, out, err = run("--root", str(tmp_path), "setup", "--all")
    assert_one_line_usage_error(code, out, err)
    assert "$EC2NET_IMDS_ENDPOINT: expected http://HOST[:PORT]" in err
    assert os.listdir(tmp_path) == []
    for value in ("http://127.0.0.1:1", "http://127.0.0.1:65535/", "http://[::1]:80", "http://h"):
        args = cli.build_parser().parse_args(["--imds-endpoint", value, "examples"])
        assert args.imds_endpoint == value.rstrip("/"), "good endpoints are taken as they are"


def test_help_and_version_exit_0(run: InProcess) -> None:
    code, out, err = run("remove", "-h")
    assert code == 0 and "--if-gone" in out and err == ""
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("ec2net ")


# --- render --metadata: only regular, bounded, sane JSON ----------------------------------


def render_in_subprocess(snapshot: str, out: Path) -> subprocess.CompletedProcess[str]:
    """Bounded in time and memory: the old code read /dev/zero forever and waited on a FIFO."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    cmd = [sys.executable, "-m", "ec2net", "render", "--metadata", snapshot, "--out", str(out)]
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=30, preexec_fn=limit_memory
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"render --metadata {snapshot} did not finish")


def hostile_snapshots(tmp_path: Path) -> dict[str, str]:
    files = {
        "huge-number": '{"meta-data": {"mac": ' + "9" * 100_000 + "}}",
        "huge-float": '{"meta-data": {"mac": 1' + "0" * 100_000 + ".5}}",
        "deep-lists": '{"meta-data": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "deep-objects": '{"meta-data": ' + '{"a": ' * 5000 + "{}" + "}" * 5000 + "}",
        "not-json": '{"meta-data": \n\n {"mac": "\x00',
        "empty": "",
    }
    paths = {}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        paths[name] = str(tmp_path / name)
    (tmp_path / "latin1").write_bytes(b'{"meta-data": {"mac": "\xe9"}}')
    paths["latin1"] = str(tmp_path / "latin1")
    big = tmp_path / "big"
    with open(big, "wb") as handle:
        handle.truncate(4 * 1024 * 1024 + 1)  # sparse
    paths["big"] = str(big)
    os.mkfifo(tmp_path / "fifo")
    paths["fifo"] = str(tmp_path / "fifo")
    paths["directory"] = str(tmp_path)
    paths["dev-zero"] = "/dev/zero"
    os.symlink("/dev/zero", tmp_path / "zero-link")
    paths["link-to-dev-zero"] = str(tmp_path / "zero-link")
    return paths


def test_render_hostile_metadata_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for name, path in hostile_snapshots(tmp_path).items():
        result = render_in_subprocess(path, out)
        assert result.returncode == 2, (name, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
        assert len(result.stderr.splitlines()) == 1, (name, result.stderr[:2000])
        assert len(result.stderr) < 600, name
        assert not out.exists(), name


def test_render_snapshot_with_bom_is_read(tmp_path: Path) -> None:
    snapshot = tmp_path / "bom.json"
    text = (REPO / "ec2net/examples/dual-stack.json").read_text()
    snapshot.write_bytes(b"\xef\xbb\xbf" + text.encode())
    result = render_in_subprocess(str(snapshot), tmp_path / "out")
    assert result.returncode == 0, result.stderr


# --- the guard: any exception is one line; ^C; broken pipe ---------------------------------


def test_internal_error_is_one_line_exit_1(
    run: InProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def boom(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("first line\nsecond line " + "x" * 10_000)

    monkeypatch.setattr(commands, "setup", boom)
    code, _, err = run("--root", str(tmp_path), "setup", "--all")
    assert code == 1
    assert err.splitlines() == [
        "ec2net: ERROR: internal error: RuntimeError: 'first line\\nsecond line "
        + "x" * 57
        + "'... (10023 characters); please report"
    ]
    code, _, err = run("-v", "--root", str(tmp_path), "setup", "--all")
    assert code == 1
    assert "internal error: RuntimeError" in err.splitlines()[0]
    assert "Traceback" in err, "-v adds the traceback at debug level"


def test_keyboard_interrupt_is_130(
    run: InProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "setup", interrupted)
    assert run("--root", str(tmp_path), "setup", "--all") == (130, "", "")


def test_closed_stdout_is_not_a_traceback(tmp_path: Path) -> None:
    """`ec2net examples | head -0`: the reader is gone before anything is written."""
    for argv in (["examples"], ["--help"], ["render", "--example", "dual-stack", "--out", "o"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "ec2net", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) in (0, 1), err
        assert err == "", argv


EARLY_EXIT = """
import os, sys
from ec2net import entry, refresh_walk
def covered(root, ifname):
    if not os.path.isdir(root):
        return None  # as refresh_walk.covered: no record there
    if ifname == "boom":
        raise RuntimeError("walk record\\nunreadable")
    if ifname == "intr":
        raise KeyboardInterrupt
    return {"eth1": 0, "-h": 0}.get(ifname)
refresh_walk.covered = covered
sys.argv = ["ec2net", *sys.argv[1:]]
code = entry.main()
print(code, "ec2net.cli" in sys.modules)
"""


@pytest.mark.parametrize(
    ("argv", "stdout", "stderr"),
    [
        # The units' form, also with a name that looks like an option.
        (["refresh", "--coalesce", "--", "eth1"], "0 False", ""),
        (["refresh", "--coalesce", "--", "-h"], "0 False", ""),
        (["refresh", "--coalesce", "-h"], "", None),  # help from the full CLI
        # Values the full CLI refuses never take the early exit.
        (["--deadline", "nan", "refresh", "--coalesce", "eth1"], "2 True", "ERROR"),
        (["--imds-endpoint", "http://h:0", "refresh", "--coalesce", "eth1"], "2 True", "ERROR"),
        (["--root", "MISSING", "refresh", "--coalesce", "eth1"], "2 True", "ERROR"),
        # The fast path's own guard.
        (["refresh", "--coalesce", "--", "boom"], "1 False", "internal error: RuntimeError"),
        (["refresh", "--coalesce", "--", "intr"], "130 False", ""),
    ],
)
def test_early_exit_takes_the_units_form_and_only_valid_values(
    argv: list[str], stdout: str, stderr: str | None, tmp_path: Path
) -> None:
    # A directory that does not exist (the old code created it, lock directory and all).
    argv = [str(tmp_path / "missing") if arg == "MISSING" else arg for arg in argv]
    result = subprocess.run(
        [sys.executable, "-c", EARLY_EXIT, *argv], capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in result.stderr
    if stderr is None:
        assert "--coalesce" in result.stdout and result.stdout.endswith("0 True\n")
        return
    assert result.stdout.strip() == stdout
    if stderr:
        assert stderr in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    else:
        assert result.stderr == ""


def test_early_exit_options_in_step_with_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """entry.py reads argv before argparse: its options must be the parser's, with the same
    arity, every other global option must reach the full CLI, and `--` (the units' form)
    separates the name as it does for argparse."""
    parser = cli.build_parser()
    globals_ = {
        option: action
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        for option in action.option_strings
    }
    full_cli_only = {"-h", "--help", "--version", "-v", "--verbose"}
    assert set(globals_) == entry._VALUED | entry._FLAGS | full_cli_only
    for option in entry._VALUED:
        assert globals_[option].nargs is None, option  # exactly one value
    for option in entry._FLAGS:
        assert globals_[option].nargs == 0, option
    refresh = _subcommands(parser)["refresh"]
    assert "--coalesce" in {s for a in refresh._actions for s in a.option_strings}
    for option in full_cli_only:
        assert entry._covered_by_last_walk([option, "refresh", "--coalesce", "eth1"]) is None
    asked: list[str] = []
    monkeypatch.setattr(refresh_walk, "covered", lambda root, ifname: asked.append(ifname) or 0)
    assert entry._covered_by_last_walk(["refresh", "--coalesce", "--", "-h"]) == 0
    assert entry._covered_by_last_walk(["refresh", "--coalesce", "--", "eth1"]) == 0
    assert asked == ["-h", "eth1"]


# --- units pass the interface name after "--" ----------------------------------------------


def exec_lines() -> list[tuple[str, str]]:
    lines = []
    for unit in sorted((REPO / "units").glob("*.in")):
        for line in unit.read_text().splitlines():
            if re.match(r"Exec(Start|Stop|Reload)\w*=", line):
                lines.append((unit.name, line))
    return lines


def test_units_pass_the_interface_after_double_dash() -> None:
    with_name = [(unit, line) for unit, line in exec_lines() if "%I" in line or "%i" in line]
    assert len(with_name) == 3, with_name
    for unit, line in with_name:
        words = line.split()
        assert words[-2:] == ["--", "%I"], (unit, line)
        assert "%I" not in words[:-1] and "%i" not in line, (unit, line)


def unit_argv(unit: str, key: str, ifname: str) -> list[str]:
    line = next(text for name, text in exec_lines() if name == unit and text.startswith(key))
    words = line.split("=", 1)[1].split()
    assert words[0] == "@BINDIR@/ec2net"
    return [ifname if word == "%I" else word for word in words[1:]]


def test_unit_removes_files_of_a_gone_link_named_dash_h(
    run: InProcess, mock: ImdsMock, tmp_path: Path
) -> None:
    """What the per-ENI unit runs, for a link named "-h": setup, then (gone) remove."""
    add_link(tmp_path, "eth0", PRIMARY)
    add_link(tmp_path, "-h", SECONDARY)
    base = ["--root", str(tmp_path), "--imds-endpoint", mock.url]
    code, _, err = run(*base, *unit_argv("ec2-net-utils@.service.in", "ExecStart=", "-h"))
    assert code == 0, err
    netdir = tmp_path / "run/systemd/network"
    assert (netdir / "70--h.network").exists()
    stop = unit_argv("ec2-net-utils@.service.in", "ExecStopPost=", "-h")
    assert run(*base, *stop)[0] == 0
    assert (netdir / "70--h.network").exists(), "the link is still there: config kept"
    del_link(tmp_path, "-h")
    code, out, err = run(*base, *stop)
    assert code == 0 and out == "", (out, err)
    assert not list(netdir.glob("70--h*")), "the files of the gone link are removed"


# --- interface names ------------------------------------------------------------------------

KERNEL_SPACE = b" \t\n\v\f\r\xa0"  # isspace() of the kernel's lib/ctype.c


def kernel_dev_valid_name(raw: bytes) -> bool:
    """net/core/dev.c dev_valid_name(), on the bytes the kernel sees."""
    if not raw or b"\0" in raw or len(raw) >= 16 or raw in (b".", b".."):
        return False
    return not any(byte in b"/:" or byte in KERNEL_SPACE for byte in raw)


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(min_size=0, max_size=18))
@example(raw="e\u00e0".encode())
@example(raw=b"eth\xa0")
@example(raw=b"\xff\xfe")
@example(raw=b"-h")
@example(raw=b"eth0:1")
def test_check_ifname_accepts_only_kernel_valid_names(raw: bytes) -> None:
    name = os.fsdecode(raw)
    try:
        checked = sysfs.check_ifname(name)
    except UsageError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 200
        return
    assert kernel_dev_valid_name(raw), raw
    assert checked == name and checked.encode("utf-8") == raw and checked.isprintable()


def test_non_utf8_link_in_sysfs_is_skipped_with_one_warning(
    run: InProcess, mock: ImdsMock, tmp_path: Path
) -> None:
    add_link(tmp_path, "eth0", PRIMARY)
    add_link(tmp_path, "e\udcffx", SECONDARY)  # the kernel allows any byte but / : space
    base = ["--root", str(tmp_path), "--imds-endpoint", mock.url, "--deadline", "3"]
    code, out, err = run(*base, "setup", "--all")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    assert warnings == [
        "ec2net: WARNING: invalid interface name 'e\\udcffx': not UTF-8; skipping that link"
    ]
    assert sorted(os.listdir(tmp_path / "run/systemd/network")) == [
        "70-eth0.network",
        "70-eth0.network.d",
    ]
    code, out, err = run(*base, "setup", "e\udcffx")
    assert_one_line_usage_error(code, out, err)
    assert "invalid interface name 'e\\udcffx': not UTF-8" in err


# --- set-hostname under --root --------------------------------------------------------------


def test_set_hostname_under_root_leaves_the_live_system_alone(
    run: InProcess, mock: ImdsMock, tmp_path: Path
) -> None:
    code, _, err = run("--root", str(tmp_path), "--imds-endpoint", mock.url, "set-hostname")
    assert code == 0, err
    assert run.hostnames == []
    assert "would set the hostname to ip-10-0-1-23.ec2.internal" in err


# --- property tests: random command lines, random sysfs trees -------------------------------

OPTIONS = [
    "--no-reload",
    "-v",
    "--version",
    "-h",
    "--help",
    "--",
    "--all",
    "--coalesce",
    "--if-gone",
    "--json",
    "--link",
    "--metadata",
    "--example",
    "--out",
    "--deadline",
    "--imds-endpoint",
]
COMMANDS = ["setup", "refresh", "remove", "render", "show", "check", "examples", "set-hostname"]
VALUES = [
    "eth0",
    "eth1",
    "-h",
    "dual-stack",
    f"eth7={PRIMARY}",
    f"eth8={PRIMARY}",
    "nan",
    "inf",
    "-1",
    "0.5",
    "1e999",
    "9" * 400,
    "http://127.0.0.1:0",
    "http://[::1",
    "",
]
# Global options that could point a run at the real system or at the network: never drawn
# at random (any abbreviation of --root, --imds-endpoint, --deadline counts).
UNSAFE_PREFIXES = ("--r", "--i", "--d")
TEXT = st.text(
    st.characters(blacklist_categories=())
    | st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF),
    max_size=20,
)
TOKEN = st.one_of(
    st.sampled_from(OPTIONS + COMMANDS + VALUES),
    TEXT,
    st.integers().map(str),
    st.binary(max_size=12).map(os.fsdecode),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(argv=st.lists(TOKEN, max_size=8))
@example(argv=["remove", "--if-gone", "-h"])
@example(argv=["setup", "--", "-h"])
@example(argv=["show", "--json"])
@example(argv=["render", "--example", "dual-stack", "--out", "OUT", "--link", "x=" + PRIMARY])
def test_random_command_lines(
    argv: list[str], run: InProcess, mock: ImdsMock, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assume(not any(token.startswith(UNSAFE_PREFIXES) for token in argv))
    # Nor a path outside the test's directory (--out / would write into the real /).
    assume(not any(token.startswith(("/", "~")) or ".." in token for token in argv))
    base = tmp_path_factory.mktemp("argv")
    root = base / "root"
    add_link(root, "eth0", PRIMARY)
    add_link(root, "eth1", SECONDARY)
    argv = [str(base / "out") if token == "OUT" else token for token in argv]
    before = tree_state(base)
    cwd = os.getcwd()
    os.chdir(base)  # a relative --out lands in the test's directory
    try:
        code, _, err = run(
            "--root", str(root), "--imds-endpoint", mock.url, "--deadline", "2", *argv
        )
    finally:
        os.chdir(cwd)
    assert code in (0, 1, 2), (argv, code)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    if code == 2:
        assert len(err.splitlines()) == 1, (argv, err)
        assert tree_state(base) == before, argv
    assert run.hostnames == []


ADDRESS = st.one_of(
    st.sampled_from([PRIMARY + "\n", SECONDARY + "\n", "", "00:00:00:00:00:00\n"]),
    st.binary(max_size=40),
)
NAME = st.one_of(
    st.sampled_from(["eth0", "eth1", "-h", "--all", "e\u00e0", ".x", "lo"]),
    st.binary(min_size=1, max_size=17).filter(lambda b: b"/" not in b and b"\0" not in b),
)
LINK = st.tuples(NAME, ADDRESS, st.sampled_from([None, "ena", "virtio_net", "../../../x"]))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(links=st.lists(LINK, max_size=4), command=st.sampled_from(["setup", "check", "show"]))
def test_random_sysfs_trees(
    links: list[tuple[Any, bytes | str, str | None]],
    command: str,
    run: InProcess,
    mock: ImdsMock,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("sysfs")
    net = os.path.join(os.fsencode(root), b"sys", b"class", b"net")
    os.makedirs(net)
    for raw_name, address, driver in links:
        raw = raw_name if isinstance(raw_name, bytes) else raw_name.encode()
        base = os.path.join(net, raw)
        if raw in (b".", b"..") or os.path.lexists(base):
            continue
        os.mkdir(base)
        with open(os.path.join(base, b"address"), "wb") as handle:
            handle.write(address if isinstance(address, bytes) else address.encode())
        if driver:
            os.mkdir(os.path.join(base, b"device"))
            os.symlink(
                f"../../../../bus/pci/drivers/{driver}", os.path.join(base, b"device", b"driver")
            )
    argv = ["--root", str(root), "--imds-endpoint", mock.url, "--deadline", "1", command]
    code, _, err = run(*argv, *(["--all"] if command == "setup" else []))
    assert code in (0, 1), (links, err)
    assert "Traceback" not in err and "internal error" not in err, (links, err)
    for line in err.splitlines():
        assert len(line) < 2100
