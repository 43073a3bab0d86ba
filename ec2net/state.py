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

from . import __version__, layout
from .model import Eni, RenderOptions

STATE_DIR = "run/ec2-net-utils/state"


def digest(eni: Eni, ifname: str, primary: bool, options: RenderOptions) -> str:
    templates = layout.templates_dir()
    stamps = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in templates.iterdir())
    text = repr((__version__, ifname, primary, eni, options, stamps))
    return hashlib.sha256(text.encode()).hexdigest()


def _identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _record_path(root: Path, ifname: str) -> Path:
    return root / STATE_DIR / f"{ifname}.json"


def unchanged(root: Path, netdir: Path, ifname: str, wanted: str) -> bool:
    """True if the files of `ifname` are still exactly those rendered from `wanted`."""
    try:
        record = json.loads(_record_path(root, ifname).read_text(encoding="utf-8"))
        if record["digest"] != wanted:
            return False
        return all(_identity(netdir / rel) == ident for rel, ident in record["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def save(root: Path, netdir: Path, ifname: str, wanted: str, files: list[str]) -> None:
    from .apply import atomic_write

    record = {"digest": wanted, "files": {rel: _identity(netdir / rel) for rel in files}}
    atomic_write(_record_path(root, ifname), json.dumps(record, sort_keys=True))


def forget(root: Path, ifname: str) -> None:
    path = _record_path(root, ifname)
    if path.exists():
        os.unlink(path)
