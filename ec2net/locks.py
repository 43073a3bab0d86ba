"""Per-interface locks (flock under /run) so concurrent runs never interleave on one ENI."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .apply import ensure_dir
from .errors import Ec2NetError

LOCK_DIR = "run/ec2-net-utils/lock"
POLL_SECONDS = 0.05


class LockTimeout(Ec2NetError):
    pass


@contextmanager
def interface_locks(root: Path, names: Iterable[str], timeout: float) -> Iterator[None]:
    """Hold an exclusive lock per interface name; give up after `timeout` seconds in total.

    Locks are taken in sorted order, so two runs wanting overlapping sets cannot deadlock.
    The kernel drops a flock when its holder dies, so a killed run never blocks the next.
    """
    directory = root / LOCK_DIR
    ensure_dir(directory)
    give_up_at = time.monotonic() + timeout
    fds: list[int] = []
    try:
        for name in sorted(set(names)):
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(directory / f"{name}.lock", flags, 0o644)
            fds.append(fd)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= give_up_at:
                        raise LockTimeout(
                            f"{name}: another ec2net run held its lock for {timeout:.0f} s"
                        ) from None
                    time.sleep(POLL_SECONDS)
        yield
    finally:
        for fd in fds:
            os.close(fd)
