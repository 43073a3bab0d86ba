"""Command line front end: argument parsing, logging and exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__, commands, config
from .errors import Ec2NetError, UsageError

log = logging.getLogger("ec2net")

# syslog priorities understood by journald on stderr ("<N>message").
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelno, 3)}>{record.getMessage()}"


def setup_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    # Under systemd stderr goes to the journal; the "<N>" prefix sets each line's priority.
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("ec2net: %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ec2net",
        description="Configure systemd-networkd for the elastic network interfaces (ENIs) of an "
        "EC2 instance from the instance metadata service (IMDSv2).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        metavar="DIR",
        help="treat DIR as / for every file read or written (sysfs, /run, /etc)",
    )
    parser.add_argument(
        "--imds-endpoint",
        metavar="URL",
        default=os.environ.get("EC2NET_IMDS_ENDPOINT"),
        help="metadata service base URL (default: $EC2NET_IMDS_ENDPOINT, else [IMDS] Endpoint= "
        "from the configuration, else http://169.254.169.254 then http://[fd00:ec2::254])",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        metavar="SECONDS",
        help="give up on the metadata service after this long in total (default: [IMDS] "
        f"Deadline= from the configuration, else {commands.DEFAULT_DEADLINE:.0f})",
    )
    parser.add_argument(
        "--no-reload", action="store_true", help="write files but never call networkctl"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log requests too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, text in (
        ("setup", "configure the named interfaces, or every ENI present (--all)"),
        ("refresh", "re-read IMDS and update what changed (periodic; no change, no reload)"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        target = cmd.add_mutually_exclusive_group(required=True)
        target.add_argument("--all", action="store_true", help="every ENI found in sysfs")
        target.add_argument(
            "interfaces", nargs="*", default=[], metavar="IF", help="interfaces, by name"
        )
        if name == "refresh":
            cmd.add_argument(
                "--coalesce",
                action="store_true",
                help="for the per-ENI timer: do nothing if a walk of all ENIs refreshed IF "
                "less than a minute ago, else walk all ENIs we manage",
            )

    cmd = sub.add_parser(
        "remove", help="delete generated config of detached interfaces, then reload once"
    )
    cmd.add_argument(
        "--if-gone",
        action="store_true",
        help="only for interfaces that no longer exist (the unit's stop action: a stop at "
        "shutdown or by hand keeps the config)",
    )
    cmd.add_argument("interfaces", nargs="+", metavar="IF", help="interfaces, by name")

    cmd = sub.add_parser(
        "render",
        help="offline: render the config for a metadata snapshot into a directory",
        description="Render the networkd files for a metadata snapshot (no IMDS, no sysfs, "
        "no reload). Without --link, ENIs are named eth0, eth1, ... in (network card, "
        "device number) order.",
    )
    source = cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--metadata", type=Path, metavar="FILE", help="JSON snapshot file")
    source.add_argument("--example", metavar="NAME", help="a bundled example instance")
    cmd.add_argument("--out", type=Path, required=True, metavar="DIR")
    cmd.add_argument("--link", action="append", default=[], metavar="NAME=MAC")

    cmd = sub.add_parser("show", help="what IMDS says per ENI and which files we generated")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    cmd.add_argument("interfaces", nargs="*", metavar="IF", help="interfaces (default: all ENIs)")

    cmd = sub.add_parser(
        "check",
        help="self-test: compare IMDS, our files, networkd and the kernel for each ENI",
        description="For every ENI (or the named interfaces), compare what IMDS says with the "
        "generated files, the .network file networkd applies, and the kernel's addresses, "
        "policy rules and routes. Exit 0 when everything holds, 1 otherwise.",
    )
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    cmd.add_argument("interfaces", nargs="*", metavar="IF", help="interfaces (default: all ENIs)")

    sub.add_parser(
        "set-hostname",
        help="set the hostname from IMDS local-hostname unless a static hostname is configured",
    )
    sub.add_parser("examples", help="list the bundled example instances")
    return parser


def _interfaces(args: argparse.Namespace) -> list[str] | None:
    if getattr(args, "all", False):
        return None
    if not args.interfaces:
        raise UsageError(f"{args.command}: name interfaces or use --all")
    return list(args.interfaces)


def run(args: argparse.Namespace, opts: commands.Options) -> int:
    from .snapshot import SnapshotSource, list_examples

    if args.command == "setup":
        return commands.setup(opts, _interfaces(args))
    if args.command == "refresh":
        return commands.refresh(opts, _interfaces(args), coalesce=args.coalesce)
    if args.command == "remove":
        return commands.remove(opts, args.interfaces, only_if_gone=args.if_gone)
    if args.command == "show":
        return commands.show(opts, args.interfaces or None, args.json, print)
    if args.command == "check":
        return commands.check(opts, args.interfaces or None, args.json, print)
    if args.command == "set-hostname":
        return commands.set_hostname(opts)
    if args.command == "examples":
        for name in list_examples():
            print(name)
        return commands.EXIT_OK
    if args.command == "render":
        if args.example:
            source = SnapshotSource.from_example(args.example)
        else:
            source = SnapshotSource.from_file(args.metadata)
        links = commands.parse_link_args(args.link)
        return commands.render_snapshot(source, args.out, links or None, print, opts.render_options)
    raise UsageError(f"unknown command {args.command!r}")


def main(argv: Sequence[str] | None = None, **overrides: object) -> int:
    """Entry point; `overrides` replace Options fields (tests inject a reloader or source)."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        if args.deadline is not None and not 0 < args.deadline <= 3600:
            raise UsageError("--deadline must be between 0 and 3600 seconds")
        # render is offline and reads no configuration of this machine.
        conf = config.Config() if args.command == "render" else config.load(args.root)
        endpoint = args.imds_endpoint or conf.imds_endpoint
        opts = commands.Options(
            root=args.root,
            endpoints=(endpoint,) if endpoint else (),
            deadline=args.deadline or conf.deadline or commands.DEFAULT_DEADLINE,
            reload=not args.no_reload,
            config=conf,
            **overrides,  # type: ignore[arg-type]
        )
        return run(args, opts)
    except UsageError as exc:
        log.error("%s", exc)
        return commands.EXIT_USAGE
    except Ec2NetError as exc:
        log.error("%s", exc)
        return commands.EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
