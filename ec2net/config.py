"""The tool's own configuration: /etc/ec2-net-utils.conf and /etc/ec2-net-utils.conf.d/*.conf.

INI files read with configparser in order (main file, then drop-ins in lexical order; a later
file wins key by key). Unknown sections or keys are warned about and ignored, so a newer config
does not break an older tool; a value that does not parse is a UsageError (exit 2) and nothing
is changed.
"""

from __future__ import annotations

import configparser
import fnmatch
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .errors import UsageError
from .model import parse_mac

log = logging.getLogger(__name__)

CONFIG_FILE = "etc/ec2-net-utils.conf"
CONFIG_DROPIN_DIR = "etc/ec2-net-utils.conf.d"
T = TypeVar("T")

_TRUE = frozenset({"1", "yes", "true", "on"})
_FALSE = frozenset({"0", "no", "false", "off"})
MIN_MTU, MAX_MTU = 576, 9216


@dataclass(frozen=True)
class Unmanaged:
    """Interfaces to leave alone: by MAC, by ENI id, or by interface-name glob."""

    macs: frozenset[str] = frozenset()
    eni_ids: frozenset[str] = frozenset()
    globs: tuple[str, ...] = ()

    def matches(self, ifname: str, mac: str, eni_id: str | None = None) -> str | None:
        """The configured entry that makes this interface unmanaged, or None."""
        if mac in self.macs:
            return mac
        if eni_id is not None and eni_id in self.eni_ids:
            return eni_id
        return next((g for g in self.globs if fnmatch.fnmatchcase(ifname, g)), None)


@dataclass(frozen=True)
class Config:
    enable: bool | None = None  # None = auto-detect (read by the generator)
    set_hostname: bool = True
    unmanaged: Unmanaged = Unmanaged()
    manage_secondary_ips: bool = True
    mtu: int | None = None
    refresh: bool = True
    altnames: bool = True
    imds_endpoint: str | None = None
    deadline: float | None = None
    connect_timeout: float = 1.0
    read_timeout: float = 2.0


def _bool(value: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected yes or no, got {value!r}")


def _auto_bool(value: str) -> bool | None:
    return None if value.strip().lower() == "auto" else _bool(value)


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if not math.isfinite(number) or not 0 < number <= 3600:
        raise ValueError(f"expected seconds between 0 and 3600, got {value!r}")
    return number


def _mtu(value: str) -> int | None:
    if value.strip() == "":
        return None
    if not value.strip().isdigit() or not MIN_MTU <= int(value) <= MAX_MTU:
        raise ValueError(f"expected an MTU from {MIN_MTU} to {MAX_MTU}, got {value!r}")
    return int(value)


def _endpoint(value: str) -> str | None:
    if value.strip() == "":
        return None
    parts = urlsplit(value.strip())
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"expected http://HOST[:PORT], got {value!r}")
    return value.strip().rstrip("/")


def _unmanaged(value: str) -> Unmanaged:
    macs, eni_ids, globs = set(), set(), []
    for word in value.split():
        if word.startswith("eni-"):
            eni_ids.add(word)
        elif word.count(":") == 5 and not any(c in word for c in "*?["):
            macs.add(parse_mac(word))
        else:
            globs.append(word)
    return Unmanaged(frozenset(macs), frozenset(eni_ids), tuple(globs))


# section -> key -> (Config field, parser)
_SCHEMA: dict[str, dict[str, tuple[str, Callable[[str], Any]]]] = {
    "Main": {"Enable": ("enable", _auto_bool), "SetHostname": ("set_hostname", _bool)},
    "Interfaces": {
        "Unmanaged": ("unmanaged", _unmanaged),
        "ManageSecondaryIPs": ("manage_secondary_ips", _bool),
        "MTU": ("mtu", _mtu),
        "Refresh": ("refresh", _bool),
        "AlternativeNames": ("altnames", _bool),
    },
    "IMDS": {
        "Endpoint": ("imds_endpoint", _endpoint),
        "Deadline": ("deadline", _seconds),
        "ConnectTimeout": ("connect_timeout", _seconds),
        "ReadTimeout": ("read_timeout", _seconds),
    },
}


def config_paths(root: Path) -> list[Path]:
    paths = [root / CONFIG_FILE]
    dropins = root / CONFIG_DROPIN_DIR
    if dropins.is_dir():
        paths += sorted(p for p in dropins.iterdir() if p.name.endswith(".conf"))
    return [p for p in paths if p.is_file()]


def load(root: Path) -> Config:
    """Read the configuration below `root`; defaults when there is none."""
    paths = config_paths(root)
    if not paths:
        return Config()
    # Option names stay case-sensitive, as in systemd's own INI files.
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read(paths, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise UsageError(f"configuration: {exc}") from None
    values: dict[str, Any] = {}
    for section in parser.sections():
        known = _SCHEMA.get(section)
        if known is None:
            log.warning("configuration: unknown section [%s] ignored", section)
            continue
        for key, raw in parser.items(section):
            if key not in known:
                log.warning("configuration: unknown key %s= in [%s] ignored", key, section)
                continue
            field, parse = known[key]
            try:
                values[field] = parse(raw)
            except ValueError as exc:
                where = ", ".join(str(p) for p in paths)
                raise UsageError(f"configuration [{section}] {key}=: {exc} (in {where})") from None
    return Config(**values)
