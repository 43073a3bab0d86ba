"""The `ec2net` console entry point.

The per-ENI refresh timer runs `ec2net refresh --coalesce IF` every minute for every ENI; most
of those runs find that a walk of all ENIs refreshed IF moments ago. That answer is given here,
before argparse, logging, requests or jinja2 are imported; anything else goes to the full CLI.
"""

from __future__ import annotations

import sys

from . import walk

# Global options that do not change the answer (each followed by its value), or flags.
_VALUED = frozenset({"--root", "--imds-endpoint", "--deadline"})
_FLAGS = frozenset({"--no-reload"})


def _covered_by_last_walk(args: list[str]) -> int | None:
    """For `[global options] refresh --coalesce IF`: the outcome of a recent walk that covered
    IF (0 or 1), else None."""
    root = "/"
    rest = list(args)
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        if option in _FLAGS:
            continue
        if option not in _VALUED or not rest:
            return None  # -v, --help, --opt=value, ...: the full CLI answers
        value = rest.pop(0)
        if option == "--root":
            root = value
    if len(rest) != 3 or rest[:2] != ["refresh", "--coalesce"] or rest[2].startswith("-"):
        return None
    code = walk.covered(root, rest[2])
    if code:
        sys.stderr.write(
            f"<3>ec2net: {rest[2]}: the refresh walk of all ENIs failed for it less than a "
            "minute ago (see that run's log); not asking IMDS again yet\n"
        )
    return code


def main() -> int:
    code = _covered_by_last_walk(sys.argv[1:])
    if code is not None:
        return code
    from .cli import main as cli_main

    return cli_main()
