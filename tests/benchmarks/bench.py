#!/usr/bin/env python3
"""End-to-end benchmark of the `ec2net` CLI and the systemd generator (not part of pytest).

    .venv/bin/python tests/benchmarks/bench.py [--runs 7] [--quick] [--json OUT.json]
    .venv/bin/python tests/benchmarks/bench.py --importtime

Every measured command is a real child process (`python -m ec2net --root ROOT ...`) talking to
the in-repo IMDSv2 mock (tests/imds_mock.py) on 127.0.0.1, which runs in this process. Time, CPU
and peak RSS come from os.wait4() on that child alone, so the harness and the mock's threads are
not counted (the mock's latency is, in wall time: that is what the child waits for). See
README.md next to this file for the cases, the reset between runs and the budgets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
GENERATOR = REPO / "generator" / "ec2-net-utils-generator.in"
# The mock and the snapshot builder live in tests/ (not a package); the suite imports them the
# same way through pytest's rootdir-relative sys.path.
sys.path.insert(0, str(TESTS))
# Importing them must not leave .pyc files in tests/ (this tool only writes to its temp dir).
sys.dont_write_bytecode = True

from imds_mock import ImdsMock  # noqa: E402
from instance_builder import eni, instance  # noqa: E402

from ec2net import facts  # noqa: E402

FULL_NS = (1, 4, 16, 64)
FULL_KS = (1, 10, 50)
QUICK_NS = (1, 16)
QUICK_KS = (10,)
QUICK_RUNS = 3
# A healthy child finishes in well under a second; this only stops a hung one from hanging the
# benchmark (the CLI's own --deadline bounds its IMDS conversation first).
CHILD_TIMEOUT_S = 60.0
CLI_DEADLINE_S = "10"
SWEEP_MAX = 16
MACS = "network/interfaces/macs"
NETDIR_PREFIX = "run/systemd/network/"
NETWORKCTL_LOG = "networkctl.log"


def _gnu_time() -> str | None:
    """GNU time, the launcher that makes the RSS figure the child's own.

    ru_maxrss survives execve(): a child forked (or vforked) from this ~25 MB harness reports
    at least the harness's peak, whatever it uses itself. GNU time is a ~2 MB process that
    forks the real child and reports that child's own peak (%M). Without it (Debian package
    "time") the RSS column is only an upper bound.
    """
    path = shutil.which("time", path="/usr/bin:/bin")
    if path is None:
        return None
    probe = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return path if "GNU" in probe.stdout + probe.stderr else None


GNU_TIME = _gnu_time()


# -- synthetic instances -------------------------------------------------------------------------


def mac_of(index: int) -> str:
    return f"0e:be:00:00:{index >> 8:02x}:{index & 0xFF:02x}"


def placement(index: int, n: int) -> tuple[int, int]:
    """(network card, device number) of ENI `index` on an N-ENI instance.

    From 16 ENIs on, half of them sit on card 1 with device numbers restarting at 0 there, as
    on multi-card instance types; device numbers stay far below the card stride of 100.
    """
    if n >= 16:
        half = n // 2
        return (0, index) if index < half else (1, index - half)
    return 0, index


def eni_node(index: int, card: int, device: int, k: int) -> dict[str, Any]:
    """ENI `index` with K private IPv4s; secondaries also get a /28 prefix and two IPv6s.

    Documentation/VPC-like strings only: nothing is routed, they are only rendered.
    """
    ipv4s = [f"10.0.{index}.{10 + j}" for j in range(k)]
    if index == 0:
        return eni(mac_of(index), device, card=card, ipv4s=ipv4s, subnet4=f"10.0.{index}.0/24")
    return eni(
        mac_of(index),
        device,
        card=card,
        ipv4s=ipv4s,
        subnet4=f"10.0.{index}.0/24",
        ipv6s=[f"2001:db8:0:{index:x}::a", f"2001:db8:0:{index:x}::b"],
        subnet6=[f"2001:db8:0:{index:x}::/64"],
        prefixes4=[f"10.0.{index}.208/28"],
    )


def build_instance(n: int, k: int) -> dict[str, Any]:
    nodes = [eni_node(i, *placement(i, n), k) for i in range(n)]
    return instance(mac_of(0), *nodes)


def hotplug_node(n: int, k: int) -> dict[str, Any]:
    """The extra ENI attached to an N-ENI instance: next free device number on card 0."""
    return eni_node(n, 0, n // 2 if n >= 16 else n, k)


def add_link(root: Path, name: str, mac: str, driver: str = "ena") -> None:
    """A /sys/class/net entry: the same layout as tests/conftest.add_link.

    Not imported from there: conftest pulls in pytest and the pyfakefs fixtures.
    """
    base = root / "sys/class/net" / name
    base.mkdir(parents=True)
    (base / "address").write_text(mac + "\n")
    (base / "device").mkdir()
    os.symlink(f"../../../../bus/pci/drivers/{driver}", base / "device" / "driver")


def remove_generated(root: Path, ifname: str) -> None:
    netdir = root / "run/systemd/network"
    (netdir / f"70-{ifname}.network").unlink(missing_ok=True)
    shutil.rmtree(netdir / f"70-{ifname}.network.d", ignore_errors=True)


# -- measurement ---------------------------------------------------------------------------------


def tree_digest(top: Path) -> str:
    """sha256 over the relative paths and contents of the copied sources: which code ran."""
    digest = hashlib.sha256()
    for path in sorted(p for p in top.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(top)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def git_head() -> str | None:
    """HEAD commit, read-only (no `git status`: it may rewrite the index)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


TreeState = dict[str, tuple[int, int, int]]


def tree_state(top: Path) -> TreeState:
    """(inode, mtime_ns, size) of every non-directory below `top`, except the fake sysfs/proc.

    Atomic writes rename a new inode into place, so a rewrite with identical content and size
    is still seen as a modification.
    """
    state: TreeState = {}

    def walk(directory: Path, rel: str) -> None:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return
        for entry in entries:
            name = f"{rel}{entry.name}"
            if not rel and entry.name in ("sys", "proc"):
                continue
            if entry.is_dir(follow_symlinks=False):
                walk(Path(entry.path), name + "/")
            else:
                st = entry.stat(follow_symlinks=False)
                state[name] = (st.st_ino, st.st_mtime_ns, st.st_size)

    walk(top, "")
    return state


@dataclass
class Sample:
    wall_ms: float
    user_ms: float
    sys_ms: float
    maxrss_kb: int
    imds_requests: int = 0
    created: int = 0
    modified: int = 0
    removed: int = 0
    networkctl: int = 0
    exit_code: int = 0
    invocations: int = 1
    # Changed paths relative to the root, by kind: says what the counts are made of.
    paths: dict[str, list[str]] = field(default_factory=dict)

    @property
    def outside_netdir(self) -> int:
        """Changes outside run/systemd/network (e.g. lock files), included in `files`."""
        return sum(1 for ps in self.paths.values() for p in ps if not p.startswith(NETDIR_PREFIX))

    @property
    def cpu_ms(self) -> float:
        return self.user_ms + self.sys_ms

    @property
    def files(self) -> int:
        return self.created + self.modified + self.removed

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "cpu_ms": round(self.cpu_ms, 3),
            "files": self.files,
            "outside_netdir": self.outside_netdir,
        }


def combine(samples: Sequence[Sample]) -> Sample:
    """One sample for a sequence of invocations: totals, except RSS (the largest)."""
    return Sample(
        wall_ms=sum(s.wall_ms for s in samples),
        user_ms=sum(s.user_ms for s in samples),
        sys_ms=sum(s.sys_ms for s in samples),
        maxrss_kb=max(s.maxrss_kb for s in samples),
        imds_requests=sum(s.imds_requests for s in samples),
        created=sum(s.created for s in samples),
        modified=sum(s.modified for s in samples),
        removed=sum(s.removed for s in samples),
        networkctl=sum(s.networkctl for s in samples),
        exit_code=max(s.exit_code for s in samples),
        invocations=sum(s.invocations for s in samples),
        paths={
            kind: [p for s in samples for p in s.paths.get(kind, [])]
            for kind in ("created", "modified", "removed")
        },
    )


class Bench:
    """Temp area, fake networkctl, child environment and the IMDS mock."""

    def __init__(self, workdir: Path, mock: ImdsMock) -> None:
        self.workdir = workdir
        self.mock = mock
        bindir = workdir / "bin"
        bindir.mkdir()
        self.networkctl_log = workdir / NETWORKCTL_LOG
        self.networkctl_log.touch()
        script = bindir / "networkctl"
        # Records the call and succeeds, like `networkctl reload` on a healthy networkd.
        script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{self.networkctl_log}'\n")
        script.chmod(0o755)
        # The code under test is copied once, at the start: other people edit the working
        # tree while this runs, and a template changed halfway through a sweep shows up as
        # "no-op refresh wrote 13 files". The copy comes first on sys.path (setuptools'
        # editable finder is appended to sys.meta_path, after the path finder).
        self.src = workdir / "src"
        skip = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(REPO / "ec2net", self.src / "ec2net", ignore=skip)
        shutil.copytree(REPO / "templates", self.src / "templates", ignore=skip)
        self.generator = self.src / GENERATOR.name
        # As meson installs it: the generator imports ec2net.facts from the copy.
        text = GENERATOR.read_text().replace("@PYTHON_PACKAGE_PARENT@", str(self.src))
        self.generator.write_text(text)
        self.source_digest = tree_digest(self.src)
        # A minimal, fixed environment: no proxies, no EC2NET_* or JOURNAL_STREAM from the
        # caller. Bytecode goes to a private cache so the benchmark never writes into the
        # repository and measures warm .pyc files (filled by the warm-up runs), as on a host.
        self.env = {
            "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LANG": "C.UTF-8",
            "HOME": str(workdir),
            "PYTHONPYCACHEPREFIX": str(workdir / "pycache"),
            "PYTHONPATH": str(self.src),
        }
        self.failures: list[str] = []
        probe = subprocess.run(
            [
                child_python(),
                "-c",
                "import ec2net, ec2net.render as r; print(ec2net.__file__);"
                "print(r.layout.templates_dir())",
            ],
            env=self.env,
            # As for every child: -c and -m put the working directory first on sys.path.
            cwd=workdir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if not all(Path(p).is_relative_to(self.src) for p in probe):
            raise RuntimeError(f"children would not run the copied sources: {probe}")

    def networkctl_calls(self) -> int:
        with self.networkctl_log.open() as handle:
            return sum(1 for _ in handle)

    def ec2net(self, root: Path, *args: str) -> list[str]:
        return [
            child_python(),
            "-m",
            "ec2net",
            "--root",
            str(root),
            "--imds-endpoint",
            self.mock.url,
            "--deadline",
            CLI_DEADLINE_S,
            *args,
        ]

    def measure(
        self, argv: Sequence[str], tree: Path | None = None, env: dict[str, str] | None = None
    ) -> Sample:
        """Run one child and account for it alone: its own rusage, none of the harness's."""
        before = tree_state(tree) if tree is not None else {}
        calls = self.networkctl_calls()
        self.mock.clear_log()
        rss_file = self.workdir / "rss.out"
        rss_file.unlink(missing_ok=True)
        command = list(argv)
        if GNU_TIME is not None:
            command = [GNU_TIME, "-f", "rss_kb=%M", "-o", str(rss_file), "--", *command]
        with tempfile.TemporaryFile() as err:
            started = time.perf_counter()
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env if env is not None else self.env,
                cwd=self.workdir,
            )
            watchdog = threading.Timer(CHILD_TIMEOUT_S, proc.kill)
            watchdog.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                watchdog.cancel()
            wall = time.perf_counter() - started
            # Popen must not try to reap the child a second time.
            proc.returncode = code = os.waitstatus_to_exitcode(status)
            if code != 0:
                err.seek(0)
                tail = err.read().decode(errors="replace").strip().splitlines()[-5:]
                self.failures.append(f"exit {code}: {' '.join(argv[2:])}: {' | '.join(tail)}")
        maxrss = usage.ru_maxrss
        if GNU_TIME is not None:
            found = re.findall(r"rss_kb=(\d+)", rss_file.read_text())
            maxrss = int(found[-1]) if found else -1
        after = tree_state(tree) if tree is not None else {}
        paths = {
            "created": sorted(after.keys() - before.keys()),
            "modified": sorted(p for p in before.keys() & after.keys() if before[p] != after[p]),
            "removed": sorted(before.keys() - after.keys()),
        }
        return Sample(
            wall_ms=wall * 1000,
            # On Linux a child's rusage includes the children it reaped: the python process
            # (under GNU time) and its networkctl. GNU time itself adds ~1-2 ms, reported
            # separately as the "launcher" baseline.
            user_ms=usage.ru_utime * 1000,
            sys_ms=usage.ru_stime * 1000,
            maxrss_kb=maxrss,
            imds_requests=len(self.mock.requests),
            created=len(paths["created"]),
            modified=len(paths["modified"]),
            removed=len(paths["removed"]),
            networkctl=self.networkctl_calls() - calls,
            exit_code=code,
            paths=paths,
        )

    def run_quiet(self, argv: Sequence[str]) -> None:
        """A setup/reset step outside the measurement; it must succeed."""
        result = subprocess.run(
            list(argv),
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()[-500:]}")


@dataclass
class CaseResult:
    case: str
    n: int | None
    k: int | None
    command: str
    samples: list[Sample] = field(default_factory=list)
    # refresh-each: the per-ENI invocations of every run, kept for the JSON.
    detail: list[list[Sample]] = field(default_factory=list)

    def values(self, attr: str) -> list[float]:
        """Per-run values; refresh-each sums a sweep of invocations, shown per ENI swept."""
        if self.case != "refresh-each" or attr == "maxrss_kb":
            return [float(getattr(s, attr)) for s in self.samples]
        return [float(getattr(s, attr)) / s.invocations for s in self.samples]

    def median(self, attr: str) -> float:
        return statistics.median(self.values(attr))

    def to_json(self) -> dict[str, Any]:
        summary = {
            attr: {
                "median": self.median(attr),
                "min": min(self.values(attr)),
                "max": max(self.values(attr)),
            }
            for attr in ("wall_ms", "cpu_ms", "maxrss_kb", "imds_requests", "files", "networkctl")
        }
        out: dict[str, Any] = {
            "case": self.case,
            "n": self.n,
            "k": self.k,
            "command": self.command,
            "summary_per_eni" if self.case == "refresh-each" else "summary": summary,
            "runs": [s.to_json() for s in self.samples],
        }
        if self.detail:
            out["invocations"] = [[s.to_json() for s in run] for run in self.detail]
        return out


# -- cases ---------------------------------------------------------------------------------------


def bench_baselines(bench: Bench, runs: int) -> list[CaseResult]:
    """The machine's yardstick (same interpreter, same environment) and the generator."""
    launcher = CaseResult("launcher: true", None, None, "true (GNU time overhead)")
    pass_case = CaseResult("python -c pass", None, None, "python -c pass")
    import_case = CaseResult(
        "python: import requests, jinja2", None, None, 'python -c "import requests, jinja2"'
    )
    gen_case = CaseResult("generator", None, None, "python3 -IS ec2-net-utils-generator.in")
    groot = bench.workdir / "genroot"
    outdir = bench.workdir / "genroot/gen-out"
    dmi = groot / "sys/class/dmi/id"
    dmi.mkdir(parents=True)
    (dmi / "sys_vendor").write_text("Amazon EC2\n")
    (groot / "proc").mkdir()
    (groot / "proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz root=/dev/nvme0n1p1 ro quiet\n")
    # -I ignores PYTHON* variables anyway; the generator gets what systemd gives it plus the
    # root override, which it honours for every file it reads or writes.
    gen_env = {"PATH": "/usr/bin:/bin", "EC2NET_GENERATOR_ROOT": str(groot)}
    gen_argv = [child_python(), "-IS", str(bench.generator), *([str(outdir)] * 3)]
    py_pass = [child_python(), "-c", "pass"]
    py_imports = [child_python(), "-c", "import requests, jinja2"]
    for _ in range(2):  # warm-up: page cache and the private bytecode cache
        bench.run_quiet(py_imports)
    for _ in range(runs):
        # Interleaved, so drift in machine load spreads over all three equally.
        launcher.samples.append(bench.measure(["true"]))
        pass_case.samples.append(bench.measure(py_pass))
        import_case.samples.append(bench.measure(py_imports))
        # Each run starts from a first boot: nothing generated yet.
        shutil.rmtree(groot / "run", ignore_errors=True)
        shutil.rmtree(outdir, ignore_errors=True)
        outdir.mkdir()
        gen_case.samples.append(bench.measure(gen_argv, tree=groot, env=gen_env))
        if not (groot / facts.ACTIVE_FLAG).is_file():
            raise SystemExit("the generator did not act on the benchmark's EC2 root")
    return [launcher, pass_case, import_case, gen_case]


def bench_instance(
    bench: Bench, n: int, k: int, runs: int, log: Callable[[str], None]
) -> list[CaseResult]:
    root = bench.workdir / f"root-n{n}-k{k}"
    netdir = root / "run/systemd/network"
    for i in range(n):
        add_link(root, f"eth{i}", mac_of(i))
    snapshot = build_instance(n, k)
    bench.mock.set_snapshot(snapshot)
    cli = bench.ec2net

    one = 1 if n > 1 else 0  # "refresh eth1": on a 1-ENI instance only eth0 exists
    one_if = f"eth{one}"
    one_ips_path = f"{MACS}/{mac_of(one)}/local-ipv4s"
    one_ips: list[str] = list(
        snapshot["meta-data"]["network"]["interfaces"]["macs"][mac_of(one)]["local-ipv4s"]
    )
    extra_if, extra_mac = f"eth{n}", mac_of(n)

    boot = CaseResult("boot", n, k, "setup --all")
    refresh_one = CaseResult("refresh-one", n, k, f"refresh {one_if}")
    refresh_all = CaseResult("refresh-all", n, k, "refresh --all")
    # The per-ENI timers of one refresh interval: `refresh --coalesce ethI` for every ENI, the
    # first of which walks all ENIs while the others find their ENI covered by that walk.
    swept = range(n)
    refresh_each = CaseResult("refresh-each", n, k, f"refresh --coalesce ethI for I < {n}")
    changed = CaseResult("changed-refresh", n, k, f"refresh {one_if} (+1 IPv4)")
    hotplug = CaseResult("hotplug", n, k, f"setup {extra_if}")

    # Warm-up (unmeasured): the code paths' bytecode and the page cache.
    bench.run_quiet(cli(root, "setup", "--all"))
    bench.run_quiet(cli(root, "refresh", one_if))

    for run in range(runs):
        # boot: an empty /run, except the network directory the generator creates at boot.
        shutil.rmtree(root / "run", ignore_errors=True)
        netdir.mkdir(parents=True)
        boot.samples.append(bench.measure(cli(root, "setup", "--all"), root))

        # no-op refreshes on the instance boot just configured.
        refresh_one.samples.append(bench.measure(cli(root, "refresh", one_if), root))
        refresh_all.samples.append(bench.measure(cli(root, "refresh", "--all"), root))
        (root / facts.REFRESH_WALK_FILE).unlink(missing_ok=True)  # a new interval
        each = [bench.measure(cli(root, "refresh", "--coalesce", f"eth{i}"), root) for i in swept]
        refresh_each.detail.append(each)
        refresh_each.samples.append(combine(each))

        # changed refresh: one more secondary IPv4 on one ENI, then put it back unmeasured so
        # the next run sees the same change again.
        bench.mock.set(one_ips_path, [*one_ips, f"10.0.{one}.200"])
        changed.samples.append(bench.measure(cli(root, "refresh", one_if), root))
        bench.mock.set(one_ips_path, one_ips)
        bench.run_quiet(cli(root, "refresh", one_if))

        # hotplug: attach one more ENI (IMDS first, then the kernel), configure only it, then
        # detach it again so the next run's boot sees N ENIs.
        bench.mock.set(f"{MACS}/{extra_mac}", hotplug_node(n, k))
        add_link(root, extra_if, extra_mac)
        sample = bench.measure(cli(root, "setup", extra_if), root)
        hotplug.samples.append(sample)
        shutil.rmtree(root / "sys/class/net" / extra_if)
        bench.mock.set(f"{MACS}/{extra_mac}", None)
        remove_generated(root, extra_if)
        for rel in sample.paths["created"]:  # e.g. its lock file: the next run creates it too
            (root / rel).unlink(missing_ok=True)
        log(f"  N={n} K={k} run {run + 1}/{runs} done")

    shutil.rmtree(root)  # N=64 x K=50 trees are small, but no reason to keep them
    return [boot, refresh_one, refresh_all, refresh_each, changed, hotplug]


# -- report --------------------------------------------------------------------------------------


def fmt_count(case: CaseResult, attr: str) -> str:
    vals = case.values(attr)
    lo, hi, med = min(vals), max(vals), statistics.median(vals)
    text = f"{med:g}" if float(med).is_integer() else f"{med:.1f}"
    return text if lo == hi else f"{text} [{lo:g}-{hi:g}]"


def fmt_files(case: CaseResult) -> str:
    """created/modified/removed of the median run by total (counts are normally constant)."""
    ranked = sorted(case.samples, key=lambda s: s.files)
    s = ranked[len(ranked) // 2]
    text = f"{s.files} ({s.created}c/{s.modified}m/{s.removed}r)"
    if s.outside_netdir:
        text += f" {s.outside_netdir}*"
    lo, hi = ranked[0].files, ranked[-1].files
    return text if lo == hi else f"{text} [{lo}-{hi}]"


def table(results: Iterable[CaseResult]) -> str:
    header = (
        f"{'case':<32} {'N':>3} {'K':>3}  {'wall ms median [min-max]':<26} {'CPU ms':>7} "
        f"{'RSS MB':>6}  {'IMDS req':<10} {'files (created/mod/rm)':<24} networkctl"
    )
    lines = [header, "-" * len(header)]
    for c in results:
        walls = c.values("wall_ms")
        wall = f"{statistics.median(walls):7.1f} [{min(walls):.1f}-{max(walls):.1f}]"
        rss = max(c.values("maxrss_kb")) / 1024
        name = c.case
        if c.case == "refresh-each":
            swept = c.samples[0].invocations
            name += " (per ENI)" if swept == c.n else f" (per ENI, {swept} swept)"
        lines.append(
            f"{name:<32} {c.n if c.n is not None else '-':>3} {c.k if c.k is not None else '-':>3}"
            f"  {wall:<26} {c.median('cpu_ms'):7.1f} {rss:6.1f}  "
            f"{fmt_count(c, 'imds_requests'):<10} {fmt_files(c):<24} {fmt_count(c, 'networkctl')}"
        )
    return "\n".join(lines)


@dataclass
class Verdict:
    budget: str
    ok: bool
    measured: str


def budgets(results: Sequence[CaseResult], failures: Sequence[str]) -> list[Verdict]:
    """Counts must hold for every run; times are judged on the median of the runs."""

    def cases(*names: str) -> list[CaseResult]:
        return [c for c in results if c.case in names]

    def where(c: CaseResult) -> str:
        return f"N={c.n} K={c.k}"

    out: list[Verdict] = []
    noop = cases("refresh-one", "refresh-all", "refresh-each")

    def config_files(sample: Sample) -> int:
        return sample.files - sample.outside_netdir

    worst_files = max(noop, key=lambda c: max(config_files(s) for s in c.samples))
    n_files = max(config_files(s) for s in worst_files.samples)
    n_state = max(s.outside_netdir for c in noop for s in c.samples)
    out.append(
        Verdict(
            "no-op refresh writes 0 networkd files",
            n_files == 0,
            f"max {n_files} ({worst_files.case} {where(worst_files)}); outside "
            f"run/systemd/network at most {n_state} (the refresh-walk record and its lock)",
        )
    )
    worst_nc = max(noop, key=lambda c: max(s.networkctl for s in c.samples))
    n_nc = max(s.networkctl for s in worst_nc.samples)
    out.append(
        Verdict(
            "no-op refresh: 0 networkctl calls",
            n_nc == 0,
            f"max {n_nc} ({worst_nc.case} {where(worst_nc)})",
        )
    )

    def req_per_eni(c: CaseResult) -> float:
        checked = {"refresh-all": c.n or 1, "refresh-one": 1}
        return max(s.imds_requests / checked.get(c.case, s.invocations) for s in c.samples)

    worst_req = max(noop, key=req_per_eni)
    out.append(
        Verdict(
            "no-op refresh: <= 12 IMDS requests per ENI checked",
            req_per_eni(worst_req) <= 12,
            f"max {req_per_eni(worst_req):.2f}/ENI ({worst_req.case} {where(worst_req)})",
        )
    )
    for n, limit in ((16, 40.0), (1, 200.0)):
        for c in (c for c in cases("refresh-each") if c.n == n):
            cpu = c.median("cpu_ms")
            # For comparison only: the same interval served by one `refresh --all` process.
            alt = [a for a in cases("refresh-all") if a.n == c.n and a.k == c.k]
            alt_text = f"; one `refresh --all` instead: {alt[0].median('cpu_ms') / n:.1f} ms/ENI"
            out.append(
                Verdict(
                    f"CPU per ENI per refresh interval, {n}-ENI instance (K={c.k}) <= {limit:g} ms",
                    cpu <= limit,
                    f"{cpu:.1f} ms (median of {len(c.samples)} sweeps of `refresh ethI`)"
                    + (alt_text if alt else ""),
                )
            )

    boots = cases("boot")
    over = [(c, max(s.imds_requests for s in c.samples), 3 + 10 * (c.n or 0)) for c in boots]
    worst_boot = max(over, key=lambda t: t[1] - t[2])
    out.append(
        Verdict(
            "setup --all: IMDS requests <= 3 + 10*N",
            all(m <= lim for _, m, lim in over),
            "; ".join(f"N={c.n}: {m}/{lim}" for c, m, lim in over if c.k == boots[0].k)
            + f" (worst over K: {worst_boot[1]}/{worst_boot[2]} at {where(worst_boot[0])})",
        )
    )
    for c in (c for c in boots if c.n == 16 and c.k == 10):
        wall = c.median("wall_ms")
        out.append(
            Verdict("setup --all wall, N=16 K=10 <= 1 s", wall <= 1000, f"{wall:.1f} ms (median)")
        )
    calls = sorted({s.networkctl for c in boots for s in c.samples})
    out.append(
        Verdict(
            "setup --all: exactly one networkctl call",
            calls == [1],
            f"calls per run seen: {calls}",
        )
    )
    hot = cases("hotplug")
    worst_hot = max(hot, key=lambda c: c.median("wall_ms"))
    out.append(
        Verdict(
            "hotplug setup IF wall <= 300 ms (every N, K)",
            worst_hot.median("wall_ms") <= 300,
            f"worst median {worst_hot.median('wall_ms'):.1f} ms ({where(worst_hot)}); best "
            f"{min(c.median('wall_ms') for c in hot):.1f} ms",
        )
    )
    for c in cases("generator"):
        out.append(
            Verdict(
                "generator wall <= 30 ms",
                c.median("wall_ms") <= 30,
                f"{c.median('wall_ms'):.1f} ms (median)",
            )
        )
    measured = [c for c in results if not c.case.startswith(("python", "launcher"))]
    worst_rss = max(measured, key=lambda c: max(s.maxrss_kb for s in c.samples))
    rss_mb = max(s.maxrss_kb for s in worst_rss.samples) / 1024
    out.append(
        Verdict(
            "peak RSS <= 40 MB (MiB) in every case",
            rss_mb <= 40,
            f"max {rss_mb:.1f} MiB ({worst_rss.case} {where(worst_rss)})",
        )
    )
    out.append(
        Verdict("every measured command exited 0", not failures, f"{len(failures)} failures")
    )
    return out


# -- importtime ----------------------------------------------------------------------------------

IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def importtime(bench: Bench, runs: int, top: int = 15) -> dict[str, Any]:
    """`python -X importtime` per command path; median self/cumulative µs over `runs`."""
    n, k = 4, 10
    root = bench.workdir / "importtime-root"
    for i in range(n):
        add_link(root, f"eth{i}", mac_of(i))
    bench.mock.set_snapshot(build_instance(n, k))
    bench.mock.set(f"{MACS}/{mac_of(n)}", hotplug_node(n, k))
    cli = bench.ec2net
    bench.run_quiet(cli(root, "setup", "--all"))
    add_link(root, f"eth{n}", mac_of(n))
    out_dir = bench.workdir / "importtime-render"
    paths: dict[str, tuple[list[str], Callable[[], None]]] = {
        f"setup eth{n} (hotplug)": (
            cli(root, "setup", f"eth{n}"),
            lambda: remove_generated(root, f"eth{n}"),
        ),
        "refresh eth1 (no-op)": (cli(root, "refresh", "eth1"), lambda: None),
        "render --example dual-stack": (
            [
                child_python(),
                "-m",
                "ec2net",
                "render",
                "--example",
                "dual-stack",
                "--out",
                str(out_dir),
            ],
            lambda: shutil.rmtree(out_dir, ignore_errors=True),
        ),
    }
    report: dict[str, Any] = {}
    for label, (argv, reset) in paths.items():
        reset()
        bench.run_quiet(argv)  # warm-up
        per_module: dict[str, list[tuple[int, int, int]]] = {}
        totals: list[int] = []
        for _ in range(runs):
            reset()
            result = subprocess.run(
                [argv[0], "-X", "importtime", *argv[1:]],
                env=bench.env,
                cwd=bench.workdir,
                capture_output=True,
                text=True,
                timeout=CHILD_TIMEOUT_S,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"{label}: exit {result.returncode}: {result.stderr[-500:]}")
            total = 0
            for match in IMPORT_LINE.finditer(result.stderr):
                self_us, cum_us, indent, name = match.groups()
                depth = len(indent) // 2
                per_module.setdefault(name, []).append((int(self_us), int(cum_us), depth))
                total += int(self_us)
            totals.append(total)
        rows: list[dict[str, Any]] = [
            {
                "module": name,
                "depth": vals[0][2],
                "self_us": statistics.median(v[0] for v in vals),
                "cumulative_us": statistics.median(v[1] for v in vals),
            }
            for name, vals in per_module.items()
        ]
        rows.sort(key=lambda r: -r["cumulative_us"])
        # Cumulative times nest; self times summed per top-level package say who pays.
        packages: dict[str, float] = {}
        for row in rows:
            top_name = row["module"].split(".")[0]
            packages[top_name] = packages.get(top_name, 0.0) + row["self_us"]
        report[label] = {
            "command": " ".join(argv[1:]),
            "total_import_self_us_median": statistics.median(totals),
            "modules_imported": len(per_module),
            "top": rows[:top],
            "self_us_by_package": dict(sorted(packages.items(), key=lambda kv: -kv[1])),
        }
    for _, reset in paths.values():
        reset()
    return report


def print_importtime(report: dict[str, Any]) -> None:
    for label, data in report.items():
        print(
            f"\n== {label}: {data['modules_imported']} modules, sum of self import time "
            f"{data['total_import_self_us_median'] / 1000:.1f} ms (median) =="
        )
        print(f"{'cumulative ms':>13} {'self ms':>8}  module (indent = import depth)")
        for row in data["top"]:
            print(
                f"{row['cumulative_us'] / 1000:13.1f} {row['self_us'] / 1000:8.2f}  "
                f"{'  ' * row['depth']}{row['module']}"
            )
        by_package = list(data["self_us_by_package"].items())[:12]
        print(
            "self time by top-level package: "
            + ", ".join(f"{name} {us / 1000:.1f}" for name, us in by_package)
            + " (ms)"
        )


# -- main ----------------------------------------------------------------------------------------


def work_parent() -> str | None:
    """/dev/shm when it is a tmpfs: the real /run is one, so fsync() costs what it does there.

    On a disk file system every atomic write's two fsync() calls would dominate `setup --all`
    and say more about the disk than about the tool.
    """
    try:
        with open("/proc/mounts") as mounts:
            tmpfs = any(
                line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in mounts if line.strip()
            )
    except OSError:
        return None
    return "/dev/shm" if tmpfs and os.access("/dev/shm", os.W_OK) else None


@contextmanager
def bench_env() -> Iterator[Bench]:
    parent = work_parent()
    with tempfile.TemporaryDirectory(prefix="ec2net-bench-", dir=parent) as tmp:
        # An empty snapshot until a case installs its own.
        mock = ImdsMock({"meta-data": {}}).start()
        try:
            yield Bench(Path(tmp), mock)
        finally:
            mock.stop()


def machine_info() -> dict[str, Any]:
    return {
        "python": sys.version,
        "executable": child_python(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


_CHILD_PYTHON: list[str] = []
BENCH_VENV = REPO / ".bench-venv"


def child_python() -> str:
    """The interpreter measured: set by main() (--python, or a plain venv, see there)."""
    return _CHILD_PYTHON[0] if _CHILD_PYTHON else sys.executable


def plain_venv() -> str:
    """A venv holding only the runtime dependencies, as on an instance: no editable-install
    finder in site-packages (the test venv's costs every process ~12 ms at startup)."""
    python = BENCH_VENV / "bin/python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "requests", "jinja2"]
        subprocess.run(pip, check=True)
    return str(python)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per case (default 7)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: N in {QUICK_NS}, K in {QUICK_KS}, {QUICK_RUNS} runs",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write all raw numbers here")
    parser.add_argument(
        "--importtime",
        action="store_true",
        help="only print `python -X importtime` top imports for setup IF, refresh IF, render",
    )
    parser.add_argument(
        "--python",
        metavar="PATH",
        help=f"interpreter to measure (default: {BENCH_VENV.name}/, a venv with only requests "
        "and jinja2, created on first use)",
    )
    args = parser.parse_args(argv)
    _CHILD_PYTHON[:] = [args.python or plain_venv()]
    runs = QUICK_RUNS if args.quick else args.runs
    if not 1 <= runs <= 100:
        parser.error("--runs must be 1..100")  # bounded: each run is hundreds of processes
    ns, ks = (QUICK_NS, QUICK_KS) if args.quick else (FULL_NS, FULL_KS)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.monotonic()
    machine = machine_info()
    with bench_env() as bench:
        if args.importtime:
            report = importtime(bench, max(runs, 5) if not args.quick else 3)
            print_importtime(report)
            if args.json:
                args.json.write_text(json.dumps({"importtime": report}, indent=1) + "\n")
            return 0
        log(f"baselines and generator, {runs} runs")
        results = bench_baselines(bench, runs)
        for n in ns:
            for k in ks:
                log(f"N={n} K={k}: {runs} runs")
                results += bench_instance(bench, n, k, runs, log)
        failures = list(bench.failures)
        source_digest = bench.source_digest

    elapsed = time.monotonic() - started
    print(
        f"\n{runs} runs per case; wall/CPU/RSS of the child process alone (os.wait4"
        f"{', RSS via GNU time' if GNU_TIME else '; RSS is an upper bound: no GNU time'}).\n"
        f"refresh-each rows are per ENI: sum over the sweep / ENIs swept (all of them up to "
        f"{SWEEP_MAX}, else every (N/{SWEEP_MAX})th); RSS is the largest. Fake roots on "
        f"{work_parent() or tempfile.gettempdir()}.\n"
        "files: median run; N* = N of them outside run/systemd/network (lock files).\n"
        f"Code: copy of the working tree at start (HEAD {(git_head() or '?')[:12]}, sources "
        f"sha256 {source_digest[:12]}).\n"
    )
    print(table(results))
    verdicts = budgets(results, failures)
    print("\nBudgets (times: median of runs; counts: every run)")
    for v in verdicts:
        print(f"  {'PASS' if v.ok else 'FAIL'}  {v.budget}: {v.measured}")
    for failure in failures[:20]:
        print(f"  failure: {failure}")
    print(
        f"\ntotal benchmark time {elapsed:.0f} s; load average now "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if args.json:
        payload = {
            "machine": {**machine, "loadavg_end": os.getloadavg()},
            "runs": runs,
            "matrix": {"n": list(ns), "k": list(ks)},
            "git_head": git_head(),
            # The working tree may differ from HEAD: this identifies the code that was run.
            "sources_sha256": source_digest,
            "rss_method": "GNU time %M" if GNU_TIME else "wait4 ru_maxrss (upper bound)",
            "root_on": work_parent() or tempfile.gettempdir(),
            "sweep_max": SWEEP_MAX,
            "elapsed_s": elapsed,
            "cases": [c.to_json() for c in results],
            "budgets": [asdict(v) for v in verdicts],
            "failures": failures,
        }
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"raw numbers: {args.json}")
    return 0 if all(v.ok for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
