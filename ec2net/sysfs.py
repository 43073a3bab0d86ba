"""Network interfaces as the kernel lists them in /sys/class/net (under --root)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from . import facts, safeio
from .errors import Ec2NetError, UsageError

# The one check of interface names (argv and sysfs listings) lives in inputs.
from .inputs import check_ifname as check_ifname
from .model import parse_mac

log = logging.getLogger(__name__)

ENI_DRIVERS = frozenset(facts.ENI_DRIVERS)
SYS_CLASS_NET = "sys/class/net"


@dataclass(frozen=True)
class Link:
    name: str
    mac: str
    driver: str | None

    @property
    def is_eni(self) -> bool:
        return self.driver in ENI_DRIVERS


def _read_link(root: Path, name: str) -> Link | None:
    base = root / SYS_CLASS_NET / name
    try:
        # Bounded and regular files only: under --root, anything may sit there.
        mac = parse_mac(safeio.read_text(base / "address", 64) or "")
    except (Ec2NetError, ValueError):
        return None  # gone meanwhile, or not an Ethernet-like link
    try:
        driver: str | None = os.path.basename(os.readlink(base / "device" / "driver"))
    except OSError:
        driver = None  # virtual interfaces have no device
    return Link(name=name, mac=mac, driver=driver)


def link_exists(root: Path, name: str) -> bool:
    return os.path.lexists(root / SYS_CLASS_NET / check_ifname(name))


def get_link(root: Path, name: str) -> Link | None:
    return _read_link(root, check_ifname(name))


def list_links(root: Path) -> list[Link]:
    """Every link with a MAC address, sorted by name; Ec2NetError if sysfs cannot be listed.

    An unlistable /sys/class/net is an environment problem, never "no links": callers delete
    files of vanished links, so it must not look like an empty listing. Entries that cannot
    be read are left out (see link_exists to tell them from absent ones).
    """
    directory = root / SYS_CLASS_NET
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise Ec2NetError(f"cannot list {directory}: {exc.strerror or exc}") from None
    links = []
    for name in names:
        try:
            check_ifname(name)
        except UsageError as exc:
            # A name we cannot write into a networkd file name safely (not UTF-8, say):
            # that link is skipped, the others are still configured.
            log.warning("%s; skipping that link", exc)
            continue
        link = _read_link(root, name)
        if link is not None:
            links.append(link)
    return links
