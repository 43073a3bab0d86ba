"""Bounded reads of files we do not control: the one way this tool reads /run and /etc.

Anything may sit where we expect a small text file: a FIFO (an ordinary open would wait for
a writer forever), a directory, a symbolic link to /dev/zero (an endless read), a file of
gigabytes, bytes that are not UTF-8. Every read here opens without following a final symbolic
link and without blocking, accepts only a regular file, and reads at most a fixed number of
bytes; whatever else is found becomes one `UnreadableFile` error that names the path (escaped
and shortened, fit for one log line) and the reason.

Standard library only: the early exit of the refresh timer imports this.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import ApplyError

# No file this tool reads legitimately comes near this (the largest are a few KiB).
MAX_BYTES = 1 << 20
# Longest path shown in a log line; the middle of a longer one is elided.
SHOWN_CHARS = 160

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class UnreadableFile(ApplyError):
    """Something is at `path` but it is not a regular file we can read within the bounds."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{shown(path)}: {reason}")
        self.path = Path(path)
        self.reason = reason


def shown(path: Path | str) -> str:
    """`path` for a log line: control characters and undecodable bytes escaped, at most
    SHOWN_CHARS characters (file names in /run and /etc are chosen by others)."""
    text = repr(os.fspath(path))[1:-1]
    if len(text) > SHOWN_CHARS:
        half = SHOWN_CHARS // 2
        text = f"{text[:half]}...{text[-half:]}"
    return text


def kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(
    path: Path | str,
    limit: int = MAX_BYTES,
    *,
    truncate: bool = False,
    follow_symlinks: bool = False,
) -> bytes | None:
    """The content of the regular file at `path`, or None when nothing is there.

    More than `limit` bytes is an error, unless `truncate`: then the first `limit` bytes are
    returned (enough to look for a marker, or to tell that a file differs from `limit - 1`
    expected bytes). `follow_symlinks` is for admin files in /etc, where a link is a normal
    way to share or mask a file; what it points to must still be a regular file.
    """
    flags = _OPEN_FLAGS & ~os.O_NOFOLLOW if follow_symlinks else _OPEN_FLAGS
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnreadableFile(path, "a symbolic link (not followed)") from None
        raise UnreadableFile(path, exc.strerror or str(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableFile(path, kind(mode))
        chunks = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise UnreadableFile(path, exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        if not truncate:
            raise UnreadableFile(path, f"larger than {limit} bytes")
        data = data[:limit]
    return data


def read_text(path: Path | str, limit: int = MAX_BYTES) -> str | None:
    """`read_bytes`, decoded as UTF-8 (anything else is an error naming the path)."""
    data = read_bytes(path, limit)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(path, f"not UTF-8 (byte {exc.start})") from None
