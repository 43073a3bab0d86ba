"""The `ec2net` console entry point.

The per-ENI refresh timer runs `ec2net refresh --coalesce -- IF` every minute for every ENI;
most of those runs find that a walk of all ENIs refreshed IF moments ago. That answer is given
here, before argparse, logging, the HTTP client or jinja2 are imported; anything else goes to
the full CLI. The arguments are checked with the full CLI's own parsers (inputs), so a value it
would refuse never takes this early exit.
"""

from __future__ import annotations

import sys

from . import refresh_walk

# Global options that do not change the answer (each followed by its value), or flags. Kept
# in step with cli.build_parser by tests/test_cli_robustness.py.
_VALUED = frozenset({"--root", "--imds-endpoint", "--deadline"})
_FLAGS = frozenset({"--no-reload"})
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def _valid(option: str, value: str) -> bool:
    """Whether the full CLI would accept `value` for `option` (else it reports the error)."""
    from .errors import UsageError
    from .inputs import check_ifname, parse_endpoint, parse_seconds

    try:
        if option == "--imds-endpoint":
            parse_endpoint(value)
        elif option == "--deadline":
            parse_seconds(value)
        elif option == "IF":
            check_ifname(value)
    except (ValueError, UsageError):
        return False
    return True


def _covered_by_last_walk(args: list[str]) -> int | None:
    """For `[global options] refresh --coalesce [--] IF`: the outcome of a recent walk that
    covered IF (0 or 1), else None."""
    root = "/"
    rest = list(args)
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        if option in _FLAGS:
            continue
        if option not in _VALUED or not rest:
            return None  # -v, --help, --opt=value, ...: the full CLI answers
        value = rest.pop(0)
        if not _valid(option, value):
            return None
        if option == "--root":
            root = value
    if rest[:3] == ["refresh", "--coalesce", "--"]:
        del rest[2]  # the units' form: whatever follows is the name, even "-h"
    elif len(rest) == 3 and rest[2].startswith("-"):
        return None
    if len(rest) != 3 or rest[:2] != ["refresh", "--coalesce"] or not _valid("IF", rest[2]):
        return None
    # --root must be a directory for the full CLI; a walk record found below it implies one.
    code = refresh_walk.covered(root, rest[2])
    if code:
        sys.stderr.write(
            f"<3>ec2net: {rest[2]}: the refresh walk of all ENIs failed for it less than a "
            "minute ago (see that run's log); not asking IMDS again yet\n"
        )
    return code


def main() -> int:
    # The same guard as cli.main's, for what runs before it exists: never a traceback.
    try:
        code = _covered_by_last_walk(sys.argv[1:])
        if code is not None:
            return code
        from .cli import main as cli_main
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        from .errors import quote

        name = type(exc).__name__
        sys.stderr.write(f"ec2net: internal error: {name}: {quote(str(exc))}; please report\n")
        return EXIT_FAILED
    return cli_main()
