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

WALK_FILE = "run/ec2-net-utils/refresh-walk"
LOCK_FILE = "run/ec2-net-utils/refresh-walk.lock"
# Timers fire every 60 s (plus up to 10 s of randomised delay): one walk serves the minute.
WINDOW_SECONDS = 55.0


def now() -> float:
    # CLOCK_BOOTTIME: immune to wall-clock steps, and counts time spent suspended.
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def covered(root: str, ifname: str, window: float = WINDOW_SECONDS) -> bool:
    """True if a walk that started less than `window` seconds ago refreshed `ifname`."""
    try:
        with open(os.path.join(root, WALK_FILE), encoding="utf-8") as handle:
            started, *names = handle.read().split("\n")
        age = now() - float(started)
    except (OSError, ValueError):
        return False
    return 0 <= age < window and ifname in names


def record(root: str, started: float, names: Iterable[str]) -> None:
    """Remember a walk that started at `started` (see `now`) and refreshed `names`."""
    path = os.path.join(root, WALK_FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("\n".join([repr(started), *sorted(names)]))
    os.replace(tmp, path)
