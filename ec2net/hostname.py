"""`ec2net set-hostname`: the hostname from IMDS `local-hostname`, unless the admin set one.

A static hostname (/etc/hostname, other than a placeholder such as "localhost") always wins:
then nothing is asked from IMDS and nothing is changed. Otherwise the transient (kernel)
hostname is set, through systemd-hostnamed when `hostnamectl` is there so that it knows.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from . import safeio
from .errors import ApplyError, Ec2NetError, MetadataError, quote, quote_path

log = logging.getLogger(__name__)

HOSTNAME_FILE = "etc/hostname"
PLACEHOLDERS = frozenset({"localhost", "localhost.localdomain", "localhost6"})
# RFC 1123 labels; the kernel keeps at most 64 characters.
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_KERNEL_HOSTNAME = 64
# /etc/hostname holds one name (and maybe comments); more is not a hostname file.
MAX_HOSTNAME_FILE = 4096


def static_hostname(root: Path) -> str | None:
    """The configured static hostname, or None when there is none (or only a placeholder)."""
    try:
        data = safeio.read_bytes(root / HOSTNAME_FILE, MAX_HOSTNAME_FILE, follow_symlinks=True)
        text = (data or b"").decode("utf-8")
    except (Ec2NetError, ValueError):
        return None  # missing, unreadable, not UTF-8, a FIFO, ...: no usable static hostname
    for line in text.splitlines():
        name = line.strip()
        if name and not name.startswith("#"):
            return None if name.lower() in PLACEHOLDERS else name
    return None


def parse_hostname(value: str) -> str:
    """Validate IMDS local-hostname; an FQDN too long for the kernel keeps its first label."""
    name = value.strip().lower().rstrip(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise MetadataError("instance", "local-hostname", f"not a valid hostname: {quote(value)}")
    return name if len(name) <= MAX_KERNEL_HOSTNAME else labels[0]


def is_live_root(root: Path) -> bool:
    """Whether `root` is this system's / (a --root tree is not, whatever it holds)."""
    try:
        return os.path.samefile(root, "/")
    except (OSError, ValueError):
        return False


def set_transient(name: str) -> None:
    hostnamectl = shutil.which("hostnamectl")
    if hostnamectl is None:
        socket.sethostname(name)
        return
    result = subprocess.run(
        [hostnamectl, "set-hostname", "--transient", name],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise ApplyError(f"hostnamectl set-hostname failed: {result.stderr.strip()}")


def set_from_imds(
    root: Path,
    read_local_hostname: Callable[[], str | None],
    current: Callable[[], str] = socket.gethostname,
    setter: Callable[[str], None] = set_transient,
) -> bool:
    """Set the hostname from IMDS if no static one is configured; True if it changed.

    With a `root` other than / (a --root tree) only what would be set is logged: the
    hostname is the running system's, which that tree is not.
    """
    static = static_hostname(root)
    if static is not None:
        log.debug("static hostname %s is configured; leaving the hostname alone", static)
        return False
    value = read_local_hostname()
    if value is None:
        raise MetadataError("instance", "local-hostname", "missing")
    name = parse_hostname(value)
    if not is_live_root(root):
        log.info(
            "would set the hostname to %s (IMDS local-hostname); not for --root %s",
            name,
            quote_path(root),
        )
        return False
    if current() == name:
        log.debug("hostname is already %s", name)
        return False
    setter(name)
    log.info("set the hostname to %s (IMDS local-hostname)", name)
    return True
