"""Where generated files live and how they are recognised; shared by render, apply and show.

Kept free of heavy imports: the no-op refresh path needs these names but not jinja2.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

# First line of every file we generate. A file without it is not ours: never touched.
from .facts import MARKER as MARKER

# Relative to --root. Generated config is ephemeral (/run): it is rebuilt at every boot.
RUN_NETWORK_DIR = PurePosixPath("run/systemd/network")
# Admin config; networkd gives it precedence. We read it, we never write it.
ADMIN_NETWORK_DIR = PurePosixPath("etc/systemd/network")


# Drop-in names are part of the interface: admins mask one by creating the same name.
DROPIN_ENI = "eni.conf"
DROPIN_ALIAS = "ec2net_alias.conf"
DROPIN_POLICY_4 = "ec2net_policy_4.conf"
DROPIN_POLICY_6 = "ec2net_policy_6.conf"
DROPINS: tuple[str, ...] = (DROPIN_ENI, DROPIN_ALIAS, DROPIN_POLICY_4, DROPIN_POLICY_6)


# Our files sort before the 80-ec2.network fallback, which they replace for their link.
PREFIX = "70-"


def network_file(ifname: str) -> str:
    return f"{PREFIX}{ifname}.network"


def dropin_dir(ifname: str) -> str:
    return f"{PREFIX}{ifname}.network.d"


def interface_of(name: str) -> str | None:
    """The interface a name `network_file` or `dropin_dir` gives is for; None for others."""
    for suffix in (".network", ".network.d"):
        if name.startswith(PREFIX) and name.endswith(suffix):
            return name[len(PREFIX) : -len(suffix)]
    return None


def dropin(ifname: str, name: str) -> str:
    return f"{dropin_dir(ifname)}/{name}"


def is_generated(text: str) -> bool:
    return text.startswith(MARKER)


def templates_dir() -> Path:
    """The single templates/ directory: packaged next to the code, or the source tree's."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "70-eni.network.j2").is_file():
            return candidate
    raise FileNotFoundError(f"templates directory not found near {here}")
