"""The platform matrix: the project's suites run inside Debian roots built with debootstrap.

Usage (as root): tests/platforms/run [run] [ROOT...]     every suite of each root (default: all)
                 tests/platforms/run build ROOT...       build (or check) the cached roots only
                 tests/platforms/run shell ROOT [-- CMD...] a shell (or CMD) inside ROOT at /src
See tests/platforms/README.md.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# Bump when the way a root is built changes: every cached root is rebuilt.
HARNESS_VERSION = "1"
REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("EC2NET_ROOTS_CACHE", "/var/cache/ec2net-roots"))
WORK = Path(os.environ.get("EC2NET_PLATFORMS_WORK", "/var/tmp/ec2net-platforms"))
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
STAMP = ".ec2net-root-complete"

# What every root needs: its own systemd, networkd, udev and Python; the namespace lab's tools;
# the man pages' man-db; git for the install lists; and the packaging tests' tool chain.
COMMON_PACKAGES = (
    "build-essential",
    "ca-certificates",
    "dbus",
    "debhelper",
    "debootstrap",
    "dh-python",
    "dnsmasq-base",
    "git",
    "iproute2",
    "iputils-ping",
    "lintian",
    "man-db",
    "meson",
    "ninja-build",
    "pkg-config",
    "procps",
    "python3",
    "python3-all",
    "python3-jinja2",
    "python3-venv",
    "rpm",
    "shellcheck",
    "systemd",
    "systemd-container",
    "udev",
)
ALL_SUITES = ("unit", "lab", "pid1", "packaging")


@dataclass(frozen=True)
class Root:
    name: str
    suite: str  # a suite name the mirror always resolves (never a future codename)
    extra: tuple[str, ...]
    suites: tuple[str, ...]  # which of ALL_SUITES make sense there
    # sid's Release is often past its Valid-Until on mirrors and snapshots.
    ignore_valid_until: bool = False

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(sorted({*COMMON_PACKAGES, *self.extra}))


ROOTS = {
    r.name: r
    for r in (
        # Debian 13: systemd 257, Python 3.13; resolved is its own package.
        # systemd.pc and udev.pc are in systemd-dev from Debian 13 on (a build dependency).
        Root("trixie", "trixie", ("systemd-dev", "systemd-resolved"), ALL_SUITES),
        # Debian unstable: systemd 262, Python 3.14, and the systemd-imds package.
        Root("sid", "sid", ("systemd-dev", "systemd-resolved", "systemd-imds"), ALL_SUITES, True),
        # Debian 11: Python 3.9.2, standing in for Amazon Linux 2023's Python 3.9. Its systemd
        # (247) is older than any we support (252), so only the unit suite runs there.
        Root("bullseye", "bullseye", (), ("unit",)),
    )
}


def log(message: str) -> None:
    print(f"platforms: {message}", file=sys.stderr, flush=True)


def host_mirror() -> str:
    """The URI of the host's main Debian archive (its own codename's entry), from APT's
    sources in either format; deb.debian.org when the host has none (e.g. Ubuntu)."""
    codename = ""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            codename = line.split("=", 1)[1].strip('"')
    sources = [Path("/etc/apt/sources.list")]
    sources += sorted(Path("/etc/apt/sources.list.d").glob("*"))
    for path in sources:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        text = path.read_text()
        for stanza in re.split(r"\n\s*\n", text):  # deb822
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if re.match(r"^\w[\w-]*:", line)
            )
            if (
                "deb" in fields.get("Types", "").split()
                and codename in fields.get("Suites", "").split()
            ):
                return fields["URIs"].split()[0].rstrip("/")
        for line in text.splitlines():  # one-line format
            words = line.split("#", 1)[0].split()
            if len(words) >= 3 and words[0] == "deb" and codename in words:
                return next(w for w in words[1:] if "://" in w).rstrip("/")
    return FALLBACK_MIRROR


def root_key(root: Root, mirror: str) -> str:
    text = "\n".join([HARNESS_VERSION, root.suite, mirror, *root.packages])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run(cmd: list[str], timeout: float = 3600, **kwargs: object) -> None:
    env = {"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8", "HOME": "/root"}
    subprocess.run(cmd, check=True, timeout=timeout, env=env, **kwargs)  # type: ignore[call-overload]


def enter_argv(path: Path, src: Path | None, argv: list[str]) -> list[str]:
    """argv run inside the root at path: a new mount and PID namespace, the root bound onto
    itself and made / with pivot_root (not chroot, which setns into a lab namespace escapes)."""
    cmd = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child"]
    return [*cmd, "bash", str(HERE / "enter.sh"), str(path), str(src or ""), *argv]


def healthy(path: Path) -> bool:
    """A complete build whose Python and systemd still run (a broken root gets rebuilt)."""
    if not (path / STAMP).exists():
        return False
    probe = "python3 -c 'import venv' && systemctl --version >/dev/null"
    probe += " && test -x /lib/systemd/systemd-networkd"
    result = subprocess.run(
        enter_argv(path, None, ["sh", "-c", probe]),
        capture_output=True,
        timeout=120,
        env={"PATH": SYSTEM_PATH},
        check=False,
    )
    return result.returncode == 0


def build(root: Root) -> Path:
    """The cached root for this harness version, mirror and package list: reused when it is
    complete and healthy, else (re)built from scratch; stale builds of the same root go."""
    mirror = host_mirror()
    key = root_key(root, mirror)
    path = CACHE / f"{root.name}-{key}"
    if healthy(path):
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob(f"{root.name}-*"):
        log(f"removing {old}")
        shutil.rmtree(old, ignore_errors=True)
    started = time.monotonic()
    log(f"building {root.name} ({root.suite} from {mirror}) in {path}")
    run(["debootstrap", "--variant=minbase", root.suite, str(path), mirror], timeout=1800)
    apt_conf = path / "etc/apt/apt.conf.d"
    (apt_conf / "90ec2net-no-recommends").write_text('APT::Install-Recommends "false";\n')
    if root.ignore_valid_until:
        (apt_conf / "90ec2net-valid-until").write_text('Acquire::Check-Valid-Until "false";\n')
    install = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
    install += " ".join(root.packages) + " && apt-get clean"
    run(enter_argv(path, None, ["sh", "-ec", install]), timeout=2400)
    (path / STAMP).write_text(key + "\n")
    log(f"built {root.name} in {time.monotonic() - started:.0f} s")
    return path


def snapshot(name: str) -> Path:
    """What a clean clone of the checkout holds (tracked and untracked-not-ignored files, as
    test_packaging packages them), as a fresh git repository: the root gets a copy it may
    write into, whatever the checkout's .git is (a worktree's points outside)."""
    dest = WORK / name / "src"
    shutil.rmtree(dest.parent, ignore_errors=True)
    dest.mkdir(parents=True)
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for rel in sorted(f for f in out.split("\0") if f):
        source = REPO / rel
        if not os.path.lexists(source):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    # shared/ beside the checkout (as CI lays it out) goes beside the snapshot: the root then
    # has it at /shared, beside /src.
    shared = REPO.parent / "shared"
    if shared.is_dir():
        shutil.copytree(shared, dest.parent / "shared", symlinks=True)
    git = ["git", "-c", "user.name=platforms", "-c", "user.email=platforms@localhost"]
    run([*git, "init", "-q"], cwd=dest)
    run([*git, "add", "-A"], cwd=dest)
    run([*git, "commit", "-q", "-m", "snapshot"], cwd=dest)
    return dest


@dataclass
class Result:
    root: str
    suite: str
    code: int
    seconds: float
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def ok(self) -> bool:
        # Exit code 5 (nothing collected) and a suite that ran nothing are failures too.
        return self.code == 0 and self.passed > 0


def counts(junit: Path) -> tuple[int, int, int]:
    if not junit.exists():
        return 0, 0, 0
    total = failed = skipped = 0
    for suite in ET.parse(junit).getroot().iter("testsuite"):
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return total - failed - skipped, failed, skipped


def build_all(roots: list[Root]) -> dict[str, Path]:
    """Every root, missing ones built at the same time: debootstrap and apt mostly wait for
    the mirror, so a cold run takes about as long as its slowest root, not their sum."""
    with ThreadPoolExecutor(max_workers=len(roots)) as pool:
        return dict(zip((r.name for r in roots), pool.map(build, roots)))


def run_root(root: Root, path: Path, suites: list[str]) -> list[Result]:
    src = snapshot(root.name)
    results = []
    for suite in suites:
        if suite not in root.suites:
            continue
        log(f"{root.name}: {suite}")
        started = time.monotonic()
        argv = ["bash", "/src/tests/platforms/inside.sh", suite]
        code = subprocess.run(enter_argv(path, src, argv), env={"PATH": SYSTEM_PATH}).returncode
        passed, failed, skipped = counts(src / f".platform-results/{suite}.xml")
        result = Result(root.name, suite, code, time.monotonic() - started)
        result.passed, result.failed, result.skipped = passed, failed, skipped
        results.append(result)
        log(f"{root.name}: {suite}: exit {code}")
    return results


def report(results: list[Result]) -> None:
    print("\nplatform  suite      result  passed failed skipped  seconds")
    for r in results:
        verdict = "ok" if r.ok else f"FAIL({r.code})"
        print(
            f"{r.root:9} {r.suite:10} {verdict:7} {r.passed:6} {r.failed:6} {r.skipped:7}"
            f" {r.seconds:8.0f}"
        )
    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results)
    skipped = sum(r.skipped for r in results)
    # The plain closing line CI reads.
    print(f"platforms: {passed} passed, {failed} failed, {skipped} skipped")


def main(argv: list[str]) -> int:
    if argv and argv[0] not in ("run", "build", "shell") and not argv[0].startswith("-"):
        argv = ["run", *argv]  # `run` may be left out before the root names
    parser = argparse.ArgumentParser(prog="tests/platforms/run")
    parser.add_argument("command", nargs="?", default="run", choices=["run", "build", "shell"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--suite", action="append", choices=ALL_SUITES)
    ns = parser.parse_args(argv)
    if os.geteuid() != 0:
        log("needs root (debootstrap, mount namespaces)")
        return 2
    if ns.command == "shell":
        if not ns.args or ns.args[0] not in ROOTS:
            log(f"shell ROOT [CMD...], ROOT one of {', '.join(ROOTS)}")
            return 2
        root = ROOTS[ns.args[0]]
        cmd = ns.args[1:] or ["bash", "-l"]
        # Its own snapshot: a run of the same root may be using the other one.
        src = snapshot(f"{root.name}-shell")
        return subprocess.run(enter_argv(build(root), src, cmd)).returncode
    names = ns.args or list(ROOTS)
    unknown = [n for n in names if n not in ROOTS]
    if unknown:
        log(f"unknown root {unknown[0]!r}: one of {', '.join(ROOTS)}")
        return 2
    # One run or build at a time: a rebuild removes the root another run may be using.
    CACHE.mkdir(parents=True, exist_ok=True)
    lock = open(CACHE / ".lock", "w")  # noqa: SIM115 (held until the process exits)
    fcntl.flock(lock, fcntl.LOCK_EX)
    if ns.command == "build":
        build_all([ROOTS[name] for name in names])
        return 0
    paths = build_all([ROOTS[name] for name in names])
    results: list[Result] = []
    for name in names:
        results += run_root(ROOTS[name], paths[name], ns.suite or list(ALL_SUITES))
    report(results)
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
