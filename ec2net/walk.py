"""The last refresh walk: which interfaces one IMDS walk refreshed, and when.

Every ENI has its own refresh timer (about once a minute). Rather than each timer reading IMDS
for its own ENI, the first timer to fire walks all ENIs we manage and records it here; the
other ENIs' timers within the window find their interface listed and stop at once. Standard
library only, and cheap to import: it runs before anything else on that path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

WALK_DIR = "run/ec2-net-utils"
WALK_FILE = WALK_DIR + "/refresh-walk"
# Timers fire every 60 s (plus up to 10 s of randomised delay): one walk serves the minute.
WINDOW_SECONDS = 55.0


def now() -> float:
    # CLOCK_BOOTTIME: immune to wall-clock steps, and counts time spent suspended.
    return time.clock_gettime(time.CLOCK_BOOTTIME)


# Marks an interface the walk could not refresh: its timers within the window report the
# failure at once instead of asking a failing IMDS again (16 ENIs must not mean 16 walks).
FAILED = "!"


def covered(root: str, ifname: str, window: float = WINDOW_SECONDS) -> int | None:
    """Exit code of a walk that started less than `window` seconds ago and covered `ifname`
    (0 refreshed, 1 failed), or None when no recent walk covered it."""
    try:
        with open(os.path.join(root, WALK_FILE), encoding="utf-8") as handle:
            started, *names = handle.read().split("\n")
        age = now() - float(started)
    except (OSError, ValueError):
        return None
    if not 0 <= age < window:
        return None
    if ifname in names:
        return 0
    return 1 if FAILED + ifname in names else None


def record(root: str, started: float, refreshed: Iterable[str], failed: Iterable[str]) -> None:
    """Remember a walk that started at `started` (see `now`) and its outcome per interface."""
    from pathlib import Path

    from .apply import atomic_write  # only on the walking path, never the early exit

    lines = [repr(started), *sorted(refreshed), *sorted(FAILED + name for name in failed)]
    atomic_write(Path(root) / WALK_FILE, "\n".join(lines))
