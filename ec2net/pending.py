"""Reloads owed to systemd-networkd: changed files must never stay unapplied.

Every run that changes generated files first creates a record of its own in PENDING_DIR and
holds a flock on it until it exits; after its `networkctl reload` succeeded it deletes the
record. So a record nobody holds belongs to a run that ended (its reload failed, or it was
killed or crashed) after its changes were on disk: the next run that can reload does so for it,
even if it changed nothing itself, and deletes the record only once that reload succeeded.
A record still held belongs to a live run whose writes may not be finished: that run reloads
for itself, and nobody else may settle it.

/run is empty after a boot, and so is the list of debts. Only `records_present` is used on the
refresh timer's early exit: it must stay cheap (standard library, no logging).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from . import facts

PENDING_DIR = facts.PENDING_DIR


@dataclass(frozen=True)
class Record:
    """A record this process holds locked (its own, or one of an ended run's)."""

    path: Path
    fd: int


def records_present(root: str | Path) -> bool:
    """Is any record there (held or not)? Cheap: one directory read, no file opened."""
    try:
        with os.scandir(os.path.join(root, PENDING_DIR)) as entries:
            return any(entry.is_file(follow_symlinks=False) for entry in entries)
    except OSError:
        return False


def mark(root: Path) -> Record:
    """Create and lock this run's record (before its first change); ApplyError if impossible."""
    from . import safeio
    from .apply import ensure_dir
    from .errors import ApplyError
    from .locks import LockError, try_lock

    directory = root / PENDING_DIR
    try:
        ensure_dir(directory)
    except OSError as exc:
        raise ApplyError(
            f"cannot record the pending reload in {safeio.shown(directory)}: {exc.strerror}"
        ) from None
    for _ in range(100):
        path = directory / f"{os.getpid()}.{secrets.token_hex(4)}"
        try:
            fd = try_lock(path)
        except LockError as exc:
            raise ApplyError(f"cannot record the pending reload: {exc}") from None
        if fd is not None:
            return Record(path, fd)
        # Another run took it for an ended run's record in the instant before we locked it.
    raise ApplyError(f"cannot record the pending reload in {safeio.shown(directory)}")


def owed(root: Path, own: list[Record]) -> list[Record]:
    """Lock and return the records of runs that ended without a successful reload (other
    than this run's `own`)."""
    import logging

    from . import safeio
    from .locks import LockError, try_lock

    directory = root / PENDING_DIR
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as exc:
        logging.getLogger(__name__).warning(
            "cannot list %s: %s", safeio.shown(directory), exc.strerror
        )
        return []
    records = []
    mine = {record.path for record in own}
    for name in names:
        path = directory / name
        if path in mine:
            continue
        try:
            fd = try_lock(path, create=False)
        except LockError as exc:
            logging.getLogger(__name__).warning("ignoring %s", exc)
            continue
        if fd is not None:
            records.append(Record(path, fd))
    return records


def settle(records: list[Record]) -> None:
    """The reload they owed succeeded: delete the records (while still holding them)."""
    from .locks import release

    for record in records:
        release(record.path, record.fd)


def keep(records: list[Record]) -> None:
    """The reload failed: let go of the records, so that a later run reloads for them."""
    for record in records:
        os.close(record.fd)
