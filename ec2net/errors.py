"""Exceptions shared by the layers; each names what was wrong so a log line is actionable."""

from __future__ import annotations


class Ec2NetError(Exception):
    """Base class for every error this tool reports instead of a traceback."""


class UsageError(Ec2NetError):
    """Bad command line or configuration: exit code 2, nothing was changed."""


class MetadataError(Ec2NetError):
    """A metadata value for one ENI is missing or does not parse."""

    def __init__(self, mac: str, key: str, reason: str) -> None:
        super().__init__(f"ENI {mac}: metadata key {key!r}: {reason}")
        self.mac = mac
        self.key = key
        self.reason = reason


class NotPropagated(MetadataError):
    """IMDS does not (yet) describe this ENI consistently; worth asking again later.

    After a hot-attach the metadata service lags behind the kernel for a few seconds:
    the MAC may be missing, or show device-number 0 although it is a secondary ENI.
    """


class ImdsError(Ec2NetError):
    """The metadata service could not answer for a path within the deadline."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"IMDS {path}: {reason}")
        self.path = path
        self.reason = reason


class ApplyError(Ec2NetError):
    """Generated configuration could not be written or removed."""


# Outside values (file contents, IMDS answers, argv, interface names) can be megabytes long or
# hold newlines and control characters; a log line echoes at most this much of one, escaped.
QUOTE_LIMIT = 80


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """`value` for a message: repr-escaped (no newline, control character or lone surrogate gets
    through raw) and cut to `limit` characters, saying how long it really was."""
    text = value if isinstance(value, (str, bytes)) else str(value)
    if len(text) <= limit:
        return repr(text)
    unit = "bytes" if isinstance(text, bytes) else "characters"
    return f"{text[:limit]!r}... ({len(text)} {unit})"


def one_line(text: str, limit: int = 400) -> str:
    """A whole message (ours, the library's or the kernel's) as one printable line of at most
    about `limit` characters: what is not printable is shown escaped, as repr would."""
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def quote_path(path: object) -> str:
    """A file name for a message: escaped like `quote`, cut only when absurdly long (a real
    path is far shorter; a path must be shown whole to be of use)."""
    return quote(str(path), 256)
