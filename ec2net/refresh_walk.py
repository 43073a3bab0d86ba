"""The last refresh walk: which interfaces one IMDS walk refreshed, and when.

Every ENI has its own refresh timer (about once a minute). Rather than each timer reading IMDS
for its own ENI, the first timer to fire walks all ENIs we manage and records it here; the
other ENIs' timers within the window find their interface listed and stop at once. Standard
library only, and cheap to import: it runs before anything else on that path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from . import facts, pending, safeio
from .errors import ApplyError

WALK_FILE = facts.REFRESH_WALK_FILE
# Timers fire every 60 s (plus up to 10 s of randomised delay): one walk serves the minute.
WINDOW_SECONDS = 55.0
# The record lists interface names, one a line: far below this even for hundreds of ENIs.
MAX_RECORD_BYTES = 64 * 1024


def now() -> float:
    # CLOCK_BOOTTIME: immune to wall-clock steps, and counts time spent suspended.
    return time.clock_gettime(time.CLOCK_BOOTTIME)


# Marks an interface the walk could not refresh: its timers within the window report the
# failure at once instead of asking a failing IMDS again (16 ENIs must not mean 16 walks).
FAILED = "!"


def covered(
    root: str, ifname: str, window: float = WINDOW_SECONDS, *, unless_reload_owed: bool = True
) -> int | None:
    """Exit code of a walk that started less than `window` seconds ago and covered `ifname`
    (0 refreshed, 1 failed), or None when no recent walk covered it.

    Also None while a networkd reload may be owed (`unless_reload_owed`): a walk's changes
    whose reload failed are not done, and the full command settles the debt.
    """
    if unless_reload_owed and pending.records_present(root):
        return None
    try:
        text = safeio.read_text(Path(root) / WALK_FILE, MAX_RECORD_BYTES)
        if text is None:
            return None
        started, *names = text.split("\n")
        age = now() - float(started)
    except (ApplyError, ValueError):
        return None  # no record we can read: walk again (and rewrite it)
    if not 0 <= age < window:
        return None
    if ifname in names:
        return 0
    return 1 if FAILED + ifname in names else None


def record(root: str, started: float, refreshed: Iterable[str], failed: Iterable[str]) -> None:
    """Remember a walk that started at `started` (see `now`) and its outcome per interface.

    Call it holding the walk lock (its leftovers are cleaned here); ApplyError if impossible.
    """
    from .apply import atomic_write, remove_temp_files  # only on the walking path

    path = Path(root) / WALK_FILE
    lines = [repr(started), *sorted(refreshed), *sorted(FAILED + name for name in failed)]
    try:
        remove_temp_files(path.parent, path.name)
        atomic_write(path, "\n".join(lines))
    except OSError as exc:
        raise ApplyError(
            f"cannot write the refresh-walk record {safeio.shown(path)}: {exc.strerror or exc}"
        ) from None
