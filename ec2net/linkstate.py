"""What udev and systemd-networkd record about a link under /run (by interface index).

Not sysfs (the kernel's view): these are the two daemons' own per-link files, read to see
which .network file networkd applies and whether another tool claims the link.
"""

from __future__ import annotations

from pathlib import Path

from . import safeio
from .errors import ApplyError
from .sysfs import SYS_CLASS_NET

UDEV_DATA = "run/udev/data"
# networkd's per-link state files; `networkctl status` reads the same ones (via sd-network).
NETWORKD_LINKS = "run/systemd/netif/links"
# networkd's own value of ID_NET_MANAGED_BY; any other value names another manager.
NETWORKD_MANAGER = "io.systemd.Network"


def link_record(root: Path, name: str, directory: str, prefix: str, key: str) -> str | None:
    """`key`'s value in a per-link state file `directory/<prefix><ifindex>` (KEY=value lines).

    udev's database and networkd's link state are both kept that way, by interface index.
    Read with `safeio`'s bounds: whatever is there instead of a small text file means "unknown".
    """
    try:
        ifindex = int(safeio.read_text(root / SYS_CLASS_NET / name / "ifindex") or "")
        text = safeio.read_text(root / directory / f"{prefix}{ifindex}") or ""
    except (ApplyError, ValueError):
        return None
    for line in text.splitlines():
        if line.startswith(key + "="):
            return line.partition("=")[2].strip() or None
    return None


def managed_by(root: Path, name: str) -> str | None:
    """ID_NET_MANAGED_BY from udev's database for this link, if udev set one."""
    return link_record(root, name, UDEV_DATA, "n", "E:ID_NET_MANAGED_BY")
