"""Values that come from outside the tool: command line, environment, configuration files.

Each has exactly one parser here, shared by every place that accepts it (an endpoint from
--imds-endpoint, $EC2NET_IMDS_ENDPOINT or [IMDS] Endpoint=), so the same text is accepted or
refused the same way everywhere. Standard library only and cheap to import: the timer's early
exit (entry.py) checks its arguments with these before anything heavy is loaded.
"""

from __future__ import annotations

import os

from .errors import UsageError, one_line, quote

# Not typing.TYPE_CHECKING: importing typing would double the early exit's import time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Kernel limit IFNAMSIZ (16) includes the terminating NUL.
MAX_IFNAME_BYTES = 15
# What the kernel's isspace() is true for: ASCII white space and 0xA0 (Latin-1 no-break
# space; lib/ctype.c). dev_valid_name() looks at bytes, so 0xA0 inside a UTF-8 sequence
# (U+00A0, or 'à' = C3 A0) is refused by the kernel too.
_KERNEL_SPACE = frozenset(b" \t\n\v\f\r\xa0")


def _ifname_problem(name: str) -> str | None:
    """Why `name` is not an interface name we can manage, or None when it is one."""
    try:
        # A name from os.listdir or sys.argv keeps bytes that are not UTF-8 as surrogate
        # escapes; fsencode gives back those bytes, which are what the kernel checks.
        raw = os.fsencode(name)
    except UnicodeEncodeError:
        return "not a valid file name (not UTF-8)"
    # The kernel's own rules (net/core/dev.c, dev_valid_name).
    if not raw:
        return "empty"
    if len(raw) > MAX_IFNAME_BYTES:
        return f"longer than {MAX_IFNAME_BYTES} bytes"
    if raw in (b".", b".."):
        return "'.' and '..' are not interface names"
    if b"/" in raw or b":" in raw:
        return "contains '/' or ':'"
    if any(byte in _KERNEL_SPACE for byte in raw) or any(c.isspace() for c in name):
        return "contains white space"
    # Ours: the name goes into networkd file names and contents, and into log lines.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    if not text.isprintable():
        return "contains a control or unprintable character"
    return None


def check_ifname(name: str) -> str:
    """Return `name` if it is a valid interface name that we can write files for, else
    UsageError naming it escaped.

    Names end up in file paths, so this is what keeps '../x' or 'a/b' out of them.
    """
    problem = _ifname_problem(name)
    if problem is not None:
        raise UsageError(f"invalid interface name {quote(name)}: {problem}")
    return name


def _host_problem(host: str) -> str | None:
    if host.startswith("["):
        if not host.endswith("]") or "%" in host:
            return "not a bracketed IPv6 address"
        import ipaddress  # only for an IPv6 literal: keeps the early exit light

        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return "not a valid IPv6 address"
        return None
    labels = host.split(".")
    if not host or len(host) > 253 or not all(_is_label(label) for label in labels):
        return "not a host name or IP address"
    if all(label.isdigit() for label in labels):
        import ipaddress

        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "not a valid IPv4 address"
    return None


_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def _is_label(label: str) -> bool:
    return (
        0 < len(label) <= 63
        and all(c in _LABEL_CHARS for c in label)
        and not label.startswith("-")
        and not label.endswith("-")
    )


def is_ascii_digits(text: str) -> bool:
    # str.isdigit() also accepts e.g. Arabic-Indic or superscript digits.
    return bool(text) and all("0" <= c <= "9" for c in text)


def parse_endpoint(value: str) -> str:
    """`http://HOST[:PORT][/]` (HOST a name, an IPv4 address or a bracketed IPv6 address,
    PORT 1-65535) as a base URL without the trailing slash; ValueError otherwise."""
    expected = f"expected http://HOST[:PORT] with a port from 1 to 65535, got {quote(value)}"
    text = value.strip()
    if not text.startswith("http://"):
        raise ValueError(expected)
    rest = text[len("http://") :]
    rest = rest[:-1] if rest.endswith("/") else rest
    if rest.startswith("["):
        host, sep, port = rest.partition("]")
        host += sep
    else:
        host, sep, port = rest.partition(":")
        port = sep + port
    problem = _host_problem(host)
    if problem is None and port:
        digits = port[1:]
        if not port.startswith(":") or not is_ascii_digits(digits) or len(digits) > 5:
            problem = "not a port number"
        elif not 1 <= int(digits) <= 65535:
            problem = "port out of range"
    if problem is not None:
        raise ValueError(f"{expected} ({problem})")
    return "http://" + rest


MAX_SECONDS = 3600.0


def parse_seconds(value: str) -> float:
    """A duration: a plain decimal number (ASCII digits, at most one '.') above 0 and at most
    MAX_SECONDS; ValueError otherwise (also for nan, inf, 1e3, 1_000 that float() takes)."""
    text = value.strip()
    whole, _, fraction = text.partition(".")
    digits = whole + fraction
    if (
        not digits
        or not is_ascii_digits(digits)
        or len(digits) > 20
        or not 0 < float(text) <= MAX_SECONDS
    ):
        raise ValueError(f"expected seconds between 0 and {MAX_SECONDS:.0f}, got {quote(value)}")
    return float(text)


# JSON from a file (a metadata snapshot): far deeper than any IMDS tree (6 levels), far
# longer numbers than any it holds.
MAX_JSON_DEPTH = 32
MAX_JSON_NUMBER = 40


def parse_json(text: str) -> Any:
    """json.loads with bounds: numbers of at most MAX_JSON_NUMBER characters (int() of a
    million digits takes quadratic time, or is refused since 3.11) and nesting of at most
    MAX_JSON_DEPTH levels; ValueError in one line otherwise."""
    import json

    def number(text: str) -> str:
        if len(text) > MAX_JSON_NUMBER:
            raise ValueError(f"a number longer than {MAX_JSON_NUMBER} characters")
        return text

    try:
        value = json.loads(
            text,
            parse_int=lambda t: int(number(t)),
            parse_float=lambda t: float(number(t)),
        )
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"not valid JSON: {one_line(exc.msg)} (line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth(node: Any) -> int:
    """Nesting depth of parsed JSON, without recursion, stopping just past the bound."""
    deepest = 0
    pending = [(node, 1)]
    while pending and deepest <= MAX_JSON_DEPTH:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            pending += [(child, depth + 1) for child in node.values()]
        elif isinstance(node, list):
            pending += [(child, depth + 1) for child in node]
    return deepest
