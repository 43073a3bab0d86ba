"""`ec2net set-hostname`: the hostname from IMDS `local-hostname`, unless the admin set one.

A static hostname (/etc/hostname, other than a placeholder such as "localhost") always wins:
then nothing is asked from IMDS and nothing is changed. Otherwise the transient (kernel)
hostname is set, through systemd-hostnamed when `hostnamectl` is there so that it knows.
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from .errors import ApplyError, MetadataError

log = logging.getLogger(__name__)

HOSTNAME_FILE = "etc/hostname"
PLACEHOLDERS = frozenset({"localhost", "localhost.localdomain", "localhost6"})
# RFC 1123 labels; the kernel keeps at most 64 characters.
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_KERNEL_HOSTNAME = 64


def static_hostname(root: Path) -> str | None:
    """The configured static hostname, or None when there is none (or only a placeholder)."""
    try:
        text = (root / HOSTNAME_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
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
        raise MetadataError("instance", "local-hostname", f"not a valid hostname: {value!r}")
    return name if len(name) <= MAX_KERNEL_HOSTNAME else labels[0]


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


def apply(
    root: Path,
    read_local_hostname: Callable[[], str | None],
    current: Callable[[], str] = socket.gethostname,
    setter: Callable[[str], None] = set_transient,
) -> bool:
    """Set the hostname from IMDS if no static one is configured; True if it changed."""
    static = static_hostname(root)
    if static is not None:
        log.debug("static hostname %s is configured; leaving the hostname alone", static)
        return False
    value = read_local_hostname()
    if value is None:
        raise MetadataError("instance", "local-hostname", "missing")
    name = parse_hostname(value)
    if current() == name:
        log.debug("hostname is already %s", name)
        return False
    setter(name)
    log.info("set the hostname to %s (IMDS local-hostname)", name)
    return True
