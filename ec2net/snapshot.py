"""Offline metadata source: a JSON snapshot of the IMDS tree (for `render` and tests).

Format: {"meta-data": {...}} where an object is a directory (its listing is its keys,
sub-directories with a trailing '/'), a list is a multi-line value joined by newlines and a
string is the value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from . import safeio
from .errors import UsageError, quote_path
from .inputs import parse_json

EXAMPLES_PACKAGE = "ec2net.examples"
# The IMDS tree of an instance with 50 ENIs is well under a megabyte.
MAX_SNAPSHOT_BYTES = 4 << 20


def _check(node: Any, path: str) -> None:
    if isinstance(node, str):
        return
    if isinstance(node, list):
        if not all(isinstance(item, str) for item in node):
            raise UsageError(f"snapshot: {path or '/'}: a list may only hold strings")
        return
    if isinstance(node, dict):
        for key, child in node.items():
            if not key or "/" in key:
                raise UsageError(f"snapshot: {path}/{key}: invalid key")
            _check(child, f"{path}/{key}")
        return
    raise UsageError(f"snapshot: {path or '/'}: unsupported value of type {type(node).__name__}")


class SnapshotSource:
    """Answers meta-data paths from a snapshot; never fails transiently."""

    def __init__(self, snapshot: Mapping[str, Any]) -> None:
        tree = snapshot.get("meta-data") if isinstance(snapshot, Mapping) else None
        if not isinstance(tree, dict):
            raise UsageError('snapshot: expected a JSON object with a "meta-data" object')
        _check(tree, "")
        self._tree: dict[str, Any] = tree

    @classmethod
    def from_file(cls, path: Path) -> SnapshotSource:
        """A snapshot file: a regular UTF-8 file of at most MAX_SNAPSHOT_BYTES holding JSON
        with short numbers and shallow nesting; anything else is a one-line UsageError."""
        where = quote_path(path)
        try:
            data = safeio.read_bytes(path, MAX_SNAPSHOT_BYTES, follow_symlinks=True)
            if data is None:
                raise UsageError(f"cannot read metadata snapshot {where}: no such file")
            snapshot = parse_json(data.decode("utf-8-sig"))
        except safeio.UnreadableFile as exc:
            raise UsageError(f"cannot read metadata snapshot {where}: {exc.reason}") from None
        except UnicodeDecodeError as exc:
            raise UsageError(f"metadata snapshot {where}: not UTF-8 (byte {exc.start})") from None
        except ValueError as exc:
            raise UsageError(f"metadata snapshot {where}: {exc}") from None
        return cls(snapshot)

    @classmethod
    def from_example(cls, name: str) -> SnapshotSource:
        if name not in list_examples():
            known = ", ".join(list_examples())
            raise UsageError(f"no example instance named {name!r} (known: {known})")
        text = resources.files(EXAMPLES_PACKAGE).joinpath(f"{name}.json").read_text("utf-8")
        return cls(json.loads(text))

    def _node(self, path: str) -> Any:
        node: Any = self._tree
        for part in (p for p in path.split("/") if p):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def get(self, path: str, *, fresh: bool = False) -> str | None:
        node = self._node(path)
        if node is None:
            return None
        if isinstance(node, dict):
            return "\n".join(k + "/" if isinstance(v, dict) else k for k, v in node.items())
        if isinstance(node, list):
            return "\n".join(node)
        return str(node)

    def listing(self, path: str, *, fresh: bool = False) -> list[str] | None:
        node = self._node(path)
        if not isinstance(node, dict):
            return None
        text = self.get(path)
        return text.split("\n") if text else []

    def remaining(self) -> float:
        # No deadline: a snapshot never changes, so read_enis never asks it again and
        # "not yet propagated" is final (an error for that ENI) offline.
        return float("inf")


def list_examples() -> list[str]:
    """Names of the example instances shipped inside the package."""
    files = resources.files(EXAMPLES_PACKAGE).iterdir()
    return sorted(f.name.removesuffix(".json") for f in files if f.name.endswith(".json"))
