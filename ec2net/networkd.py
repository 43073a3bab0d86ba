"""What systemd-networkd does with our files: reload it, and see which file a link uses."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from . import layout, linkstate
from .errors import ApplyError

log = logging.getLogger(__name__)

NETWORKCTL_TIMEOUT = 30.0


def reload() -> None:
    """Ask systemd-networkd to re-read its configuration (`networkctl reload`)."""
    networkctl = shutil.which("networkctl")
    if networkctl is None:
        raise ApplyError("networkctl not found on PATH; cannot reload systemd-networkd")
    try:
        result = subprocess.run(
            [networkctl, "reload"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=NETWORKCTL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ApplyError(
            f"networkctl reload did not finish in {NETWORKCTL_TIMEOUT:.0f} s"
        ) from None
    except OSError as exc:  # not executable, not a program, ...
        raise ApplyError(f"cannot run {networkctl}: {exc.strerror or exc}") from None
    if result.returncode != 0:
        # One log line, however much it printed.
        detail = " ".join((result.stderr or result.stdout).split())[:200]
        raise ApplyError(f"networkctl reload failed (exit {result.returncode}): {detail}")
    log.debug("networkctl reload done")


def applied_network_file(root: Path, ifname: str) -> str | None:
    """The .network file networkd applies to the link, as its state file records it."""
    return linkstate.link_record(root, ifname, linkstate.NETWORKD_LINKS, "", "NETWORK_FILE")


def shadowing_file(root: Path, ifname: str) -> str | None:
    """A .network file that sorts before our 70-IF.network and so hides it and its drop-ins.

    networkd applies the first matching file in lexical order of file names. A file of the
    same name is ours or an admin's override in /etc (intended); one sorting after ours (the
    80-ec2.network fallback) only means networkd has not been reloaded yet.
    """
    current = applied_network_file(root, ifname)
    if current is None:
        return None
    name = os.path.basename(current)
    return current if name < layout.network_file(ifname) else None
