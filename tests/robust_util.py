"""Helpers for the apply-layer robustness tests: a CLI on a real temporary root (FIFOs,
symbolic links to /dev/zero and flocks are real there, unlike under pyfakefs), a watchdog that
turns a hang into a test failure, and a flaky reloader."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import pytest
from conftest import Cli, add_link

from ec2net.errors import ApplyError

PRIMARY = "0e:49:61:0f:c3:11"
SECONDARY = "0e:8c:2d:7a:41:b3"
DEADLINE = 3.0
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount)")


class Hang(Exception):
    pass


@contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging forever) if the block takes longer than `seconds`."""

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise Hang(f"did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# Address space a run may add: a read without bounds (of /dev/zero, say) then fails with
# MemoryError inside the test instead of exhausting the machine's memory.
MEMORY_HEADROOM = 2 << 30


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """`watchdog(seconds)`, and at most MEMORY_HEADROOM more address space."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as handle:
        in_use = int(handle.read().split()[0]) * resource.getpagesize()
    limit = in_use + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        with watchdog(seconds):
            yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@dataclass
class RealCli(Cli):
    """`Cli` on a real directory; `fail_reloads` makes the next reloads fail; every run is
    bounded by deadline + 1 s."""

    fail_reloads: int = 0
    attempts: int = 0

    def _reload(self) -> None:
        self.attempts += 1
        if self.fail_reloads:
            self.fail_reloads -= 1
            raise ApplyError("networkctl reload failed (exit 1): injected")
        self.reloads += 1

    def __call__(self, *args: str):  # type: ignore[no-untyped-def]
        with bounded(DEADLINE + 1):
            return super().__call__(*args)


def make_root(root: Path) -> None:
    """Two ENIs of the dual-stack example; alternative names off (no kernel links here)."""
    add_link(root, "eth0", PRIMARY)
    add_link(root, "eth1", SECONDARY)
    dropin = root / "etc/ec2-net-utils.conf.d/00-tests.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Interfaces]\nAlternativeNames=no\n")


def temp_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.ec2net-tmp"))


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """`path` bound read-only onto itself: nothing can be created, renamed or deleted in it
    (a real EROFS). A bind mount works on every file system, tmpfs included, where
    `chattr +i` does not (the platform roots run their tests in a tmpfs /tmp)."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def make_fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
