"""Per-interface locks (flock under /run) so concurrent runs never interleave on one ENI.

A lock file lives only while it is held: the holder deletes it just before letting go, so
nothing is left in facts.LOCK_DIR for an interface that was detached. That is safe
because a lock only counts once its holder has checked that the file it locked is still the one
at the path: a run that opened the file just before it was deleted finds its lock on an orphan
and starts again with the new file.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from . import facts, safeio
from .apply import ensure_dir
from .errors import Ec2NetError

LOCK_DIR = facts.LOCK_DIR
POLL_SECONDS = 0.05


class LockError(Ec2NetError):
    pass


class LockTimeout(LockError):
    pass


def _same_file(fd: int, path: Path) -> bool:
    """Is the open file `fd` still the file at `path`?"""
    held = os.fstat(fd)
    try:
        there = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)


def try_lock(path: Path, *, create: bool = True) -> int | None:
    """Take the flock of the regular file at `path` without waiting: its descriptor, or None
    when another process holds it or the file went away meanwhile (None also when absent and
    not `create`). Close the descriptor to let go."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        if not create:
            return None
        raise LockError(f"{safeio.shown(path)}: its directory is missing") from None
    except OSError as exc:
        raise LockError(f"{safeio.shown(path)}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise LockError(f"{safeio.shown(path)}: {safeio.kind(mode)}, not a lock file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if _same_file(fd, path):
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)  # locked a file that was deleted (or replaced) meanwhile
    return None


def release(path: Path, fd: int) -> None:
    """Delete the lock file while still holding it, then let go (see the module docstring)."""
    with suppress(OSError):
        os.unlink(path)
    os.close(fd)


def _acquire(path: Path, give_up_at: float, timeout: float) -> int:
    while True:
        fd = try_lock(path)
        if fd is not None:
            return fd
        if time.monotonic() >= give_up_at:
            raise LockTimeout(f"another ec2net run held its lock for {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


@contextmanager
def interface_locks(
    root: Path,
    names: Iterable[str],
    timeout: float,
    failed: Callable[[str, Ec2NetError], None],
) -> Iterator[list[str]]:
    """Hold an exclusive lock per interface name; yield the names locked (sorted).

    A name whose lock cannot be had (timeout after `timeout` seconds in total, or something
    that is not a lock file at its path) is reported to `failed` and left out; the others are
    still locked. Locks are taken in sorted order, so two runs wanting overlapping sets cannot
    deadlock. The kernel drops a flock when its holder dies, so a killed run never blocks the
    next.
    """
    directory = root / LOCK_DIR
    wanted = sorted(set(names))
    give_up_at = time.monotonic() + timeout
    held: dict[str, tuple[Path, int]] = {}
    try:
        try:
            ensure_dir(directory)
        except OSError as exc:
            error: LockError | None = LockError(
                f"cannot create {safeio.shown(directory)}: {exc.strerror}"
            )
        else:
            error = None
        for name in wanted:
            path = directory / f"{name}.lock"
            try:
                if error is not None:
                    raise error
                held[name] = (path, _acquire(path, give_up_at, timeout))
            except LockError as exc:
                failed(name, exc)
        yield sorted(held)
    finally:
        for path, fd in held.values():
            release(path, fd)
