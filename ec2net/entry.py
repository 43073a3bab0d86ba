"""The `ec2net` console entry point.

The per-ENI refresh timer runs `ec2net refresh --coalesce IF` every minute for every ENI; most
of those runs find that a walk of all ENIs refreshed IF moments ago. That answer is given here,
before argparse, logging, requests or jinja2 are imported; anything else goes to the full CLI.
"""

from __future__ import annotations

import sys

from . import walk


def main() -> int:
    args = sys.argv[1:]
    # Only the exact form the timer uses; anything else means "the full CLI, please".
    timer_form = len(args) == 3 and args[:2] == ["refresh", "--coalesce"]
    if timer_form and not args[2].startswith("-") and walk.covered("/", args[2]):
        return 0
    from .cli import main as cli_main

    return cli_main()
