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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import facts, safeio
from .errors import UsageError, one_line, quote, quote_path
from .inputs import is_ascii_digits, parse_endpoint, parse_seconds
from .model import parse_mac

log = logging.getLogger(__name__)

CONFIG_FILE = facts.CONFIG_FILE
CONFIG_DROPIN_DIR = facts.CONFIG_DROPIN_DIR
T = TypeVar("T")

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
    decision = facts.switch(value)
    if decision is not None:
        return decision
    raise ValueError(f"expected yes or no, got {quote(value)}")


def _auto_bool(value: str) -> bool | None:
    return None if value.strip().lower() == "auto" else _bool(value)


def _mtu(value: str) -> int | None:
    text = value.strip()
    if text == "":
        return None
    # ASCII digits only: int() would also take e.g. Arabic-Indic digits or "1_500".
    if not (len(text) <= 5 and is_ascii_digits(text) and MIN_MTU <= int(text) <= MAX_MTU):
        raise ValueError(f"expected an MTU from {MIN_MTU} to {MAX_MTU}, got {quote(value)}")
    return int(text)


def _endpoint(value: str) -> str | None:
    return None if value.strip() == "" else parse_endpoint(value)


def _unmanaged(value: str) -> Unmanaged:
    macs, eni_ids, globs = set(), set(), []
    for word in value.split():
        if word.startswith("eni-"):
            eni_ids.add(word)
        elif word.count(":") == 5 and not any(c in word for c in "*?["):
            try:
                macs.add(parse_mac(word))
            except ValueError:
                raise ValueError(f"not a MAC address: {quote(word)}") from None
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
        "Deadline": ("deadline", parse_seconds),
        "ConnectTimeout": ("connect_timeout", parse_seconds),
        "ReadTimeout": ("read_timeout", parse_seconds),
    },
}


def config_paths(root: Path) -> list[Path]:
    """The main file and the drop-ins (lexical order) that exist; each is read by `load`."""
    dropins = root / CONFIG_DROPIN_DIR
    try:
        return [Path(p) for p in facts.config_paths(str(root))]
    except NotADirectoryError:
        raise UsageError(f"configuration: {quote_path(dropins)} is not a directory") from None
    except OSError as exc:
        raise UsageError(
            f"configuration: cannot list {quote_path(dropins)}: {exc.strerror}"
        ) from None


MAX_CONFIG_BYTES = facts.MAX_CONFIG_BYTES


def _parse_file(path: Path) -> configparser.ConfigParser:
    """One file, strictly: a duplicate section or key within it is an error naming its line."""
    where = quote_path(path)
    try:
        data = safeio.read_bytes(path, MAX_CONFIG_BYTES, follow_symlinks=True)
        text = facts.decode_config(data or b"")
    except safeio.UnreadableFile as exc:
        raise UsageError(f"configuration {where}: {exc.reason}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"configuration {where}: not UTF-8 (at byte {exc.start})") from None
    try:
        # The same strictness as the generator's reading (facts.parse_config says why).
        return facts.parse_config(text, str(path))
    except configparser.Error as exc:
        raise UsageError(f"configuration {where}: {_describe(exc)}") from None


def _describe(exc: configparser.Error) -> str:
    """configparser's message as one line (its parsing errors list every bad line)."""
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"line {exc.lineno}: section [{one_line(exc.section, 80)}] appears twice"
    if isinstance(exc, configparser.DuplicateOptionError):
        key = one_line(exc.option, 80)
        return f"line {exc.lineno}: key {key}= appears twice in [{one_line(exc.section, 80)}]"
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno}: {quote(exc.line.rstrip())}: a key before any [section]"
    if isinstance(exc, configparser.ParsingError) and exc.errors:
        lineno, line = exc.errors[0]
        more = f" (and {len(exc.errors) - 1} more)" if len(exc.errors) > 1 else ""
        return f"line {lineno}: {quote(line.rstrip())}: not a [section] or key=value line{more}"
    return one_line(str(exc))


def load(root: Path) -> Config:
    """Read the configuration below `root`; defaults when there is none.

    Files are read one by one, so that an error names the one file that holds the bad value;
    a later file wins key by key.
    """
    values: dict[str, Any] = {}
    for path in config_paths(root):
        parser = _parse_file(path)
        for section in parser.sections():
            known = _SCHEMA.get(section)
            if known is None:
                log.warning(
                    "configuration %s: unknown section [%s] ignored",
                    quote_path(path),
                    one_line(section, 80),
                )
                continue
            for key, raw in parser.items(section):
                if key not in known:
                    log.warning(
                        "configuration %s: unknown key %s= in [%s] ignored",
                        quote_path(path),
                        one_line(key, 80),
                        section,
                    )
                    continue
                field, parse = known[key]
                try:
                    values[field] = parse(raw)
                except ValueError as exc:
                    raise UsageError(
                        f"configuration {quote_path(path)}: [{section}] {key}=: {exc}"
                    ) from None
    return Config(**values)
