"""What we last generated per interface, so that a refresh with unchanged metadata stops
before rendering (no jinja2 import, no template compilation, no file reads).

The record holds a digest of everything the files are rendered from (the validated ENI, the
interface name, its role, the options, the tool version and the templates) and the identity
(inode, size, mtime) of each file written. If both still match, the files on disk are exactly
what rendering would produce; if anyone touched a file, it is rendered and compared as usual.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from . import __version__, facts, layout, safeio
from .errors import ApplyError
from .model import Eni, RenderOptions


def digest(eni: Eni, ifname: str, primary: bool, options: RenderOptions) -> str:
    templates = layout.templates_dir()
    stamps = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in templates.iterdir())
    text = repr((__version__, ifname, primary, eni, options, stamps))
    return hashlib.sha256(text.encode()).hexdigest()


def _identity(path: Path) -> list[int]:
    st = os.stat(path, follow_symlinks=False)
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _record_path(root: Path, ifname: str) -> Path:
    return root / facts.APPLIED_STATE_DIR / f"{ifname}.json"


def unchanged(root: Path, netdir: Path, ifname: str, wanted: str) -> bool:
    """True if the files of `ifname` are still exactly those rendered from `wanted`."""
    # Whatever is wrong with the record (not a regular file, garbage, too large) only means
    # that the files are rendered and compared, and the record rewritten.
    try:
        text = safeio.read_text(_record_path(root, ifname))
        if text is None:
            return False
        record = json.loads(text)
        if record["digest"] != wanted:
            return False
        return all(_identity(netdir / rel) == ident for rel, ident in record["files"].items())
    except (OSError, ApplyError, ValueError, KeyError, TypeError, RecursionError):
        return False


def save(root: Path, netdir: Path, ifname: str, wanted: str, files: list[str]) -> None:
    """Record what was rendered for `ifname` (hold its lock); ApplyError if impossible."""
    from .apply import atomic_write

    path = _record_path(root, ifname)
    try:
        record = {"digest": wanted, "files": {rel: _identity(netdir / rel) for rel in files}}
        atomic_write(path, json.dumps(record, sort_keys=True))
    except OSError as exc:
        raise ApplyError(
            f"cannot write the state record {safeio.shown(path)}: {exc.strerror or exc}"
        ) from None


def forget(root: Path, ifname: str) -> None:
    """Drop the record of `ifname`; ApplyError if something else is in its place."""
    path = _record_path(root, ifname)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ApplyError(
            f"cannot delete the state record {safeio.shown(path)}: {exc.strerror}"
        ) from None


def remove_temp_files(root: Path, ifname: str) -> list[Path]:
    """Temporary files of the record of `ifname` left by a killed run (hold its lock)."""
    from .apply import remove_temp_files

    return remove_temp_files(root / facts.APPLIED_STATE_DIR, f"{ifname}.json")
