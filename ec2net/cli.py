"""Command line front end: argument parsing, logging and exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from . import __version__, commands, config
from .errors import Ec2NetError, UsageError, one_line, quote, quote_path
from .inputs import check_ifname, parse_endpoint, parse_seconds

ENDPOINT_ENV = "EC2NET_IMDS_ENDPOINT"
# Exit status of a run interrupted by SIGINT (Ctrl-C), as a shell reports it: 128 + 2.
EXIT_INTERRUPTED = 130
T = TypeVar("T")

log = logging.getLogger("ec2net")

# syslog priorities understood by journald on stderr ("<N>message").
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}


class _OneLineFormatter(logging.Formatter):
    """Every message is one line, whatever outside text it echoes (a value with a newline
    must not forge a second log line); only a traceback (-v) spans lines."""

    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        message = one_line(record.getMessage(), 2000)
        if self.journal:
            # Under systemd stderr goes to the journal; "<N>" sets each line's priority.
            line = f"<{_PRIORITY.get(record.levelno, 3)}>{message}"
        else:
            line = f"ec2net: {record.levelname}: {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one log line and exit code 2 (argparse prints the
    usage and the message on several lines); sub-command parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _arg(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse `type` from one of our parsers: its ValueError message, not argparse's
    generic "invalid value", names what is wrong."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except (ValueError, UsageError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def _directory(text: str) -> Path:
    """--root: an existing directory (never created: a typo must not grow a tree)."""
    path = Path(text)
    if "\0" in text or not path.is_dir():
        raise ValueError(f"{quote_path(text)} is not an existing directory")
    return path


def _output_directory(text: str) -> Path:
    """--out: a directory, or a path that can become one (no file in its way)."""
    if "\0" in text:
        raise ValueError(f"{quote_path(text)} contains a NUL character")
    path = Path(text)
    try:
        for ancestor in (path, *path.parents):
            if os.path.lexists(ancestor):
                if not ancestor.is_dir():
                    raise ValueError(f"{quote_path(ancestor)} exists and is not a directory")
                break
    except OSError as exc:
        raise ValueError(f"{quote_path(text)}: {exc.strerror}") from None
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ec2net",
        description="Configure systemd-networkd for the elastic network interfaces (ENIs) of an "
        "EC2 instance from the instance metadata service (IMDSv2).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--root",
        type=_arg(_directory),
        default=Path("/"),
        metavar="DIR",
        help="treat DIR as / for every file read or written (sysfs, /run, /etc)",
    )
    parser.add_argument(
        "--imds-endpoint",
        metavar="URL",
        type=_arg(parse_endpoint),
        help="metadata service base URL (default: $EC2NET_IMDS_ENDPOINT, else [IMDS] Endpoint= "
        "from the configuration, else http://169.254.169.254 then http://[fd00:ec2::254])",
    )
    parser.add_argument(
        "--deadline",
        type=_arg(parse_seconds),
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
            "interfaces",
            nargs="*",
            default=[],
            type=_arg(check_ifname),
            metavar="IF",
            help="interfaces, by name",
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
    cmd.add_argument(
        "interfaces", nargs="+", type=_arg(check_ifname), metavar="IF", help="interfaces, by name"
    )

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
    cmd.add_argument("--out", type=_arg(_output_directory), required=True, metavar="DIR")
    cmd.add_argument("--link", action="append", default=[], metavar="NAME=MAC")

    reports = (
        sub.add_parser("show", help="what IMDS says per ENI and which files we generated"),
        sub.add_parser(
            "check",
            help="self-test: compare IMDS, our files, networkd and the kernel for each ENI",
            description="For every ENI (or the named interfaces), compare what IMDS says with "
            "the generated files, the .network file networkd applies, and the kernel's "
            "addresses, policy rules and routes. Exit 0 when everything holds, 1 otherwise.",
        ),
    )
    for cmd in reports:
        cmd.add_argument("--json", action="store_true", help="machine-readable output")
        cmd.add_argument(
            "interfaces",
            nargs="*",
            type=_arg(check_ifname),
            metavar="IF",
            help="interfaces (default: all ENIs)",
        )

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
        raise UsageError(f"{args.command}: name interfaces or use --all (see ec2net --help)")
    return list(dict.fromkeys(args.interfaces))  # each once, in the order given


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


def _endpoint(args: argparse.Namespace, conf: config.Config) -> str | None:
    """--imds-endpoint, else $EC2NET_IMDS_ENDPOINT (empty: unset), else [IMDS] Endpoint=."""
    if args.imds_endpoint is not None:
        return str(args.imds_endpoint)
    value = os.environ.get(ENDPOINT_ENV, "")
    if value.strip():
        try:
            return parse_endpoint(value)
        except ValueError as exc:
            raise UsageError(f"${ENDPOINT_ENV}: {exc}") from None
    return conf.imds_endpoint


def _main(argv: Sequence[str] | None, overrides: dict[str, object]) -> int:
    # Logging first, at the default level: a usage error is logged like everything else.
    setup_logging(0)
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    # render is offline and reads no configuration of this machine.
    conf = config.Config() if args.command == "render" else config.load(args.root)
    endpoint = _endpoint(args, conf)
    opts = commands.Options(
        root=args.root,
        endpoints=(endpoint,) if endpoint else (),
        deadline=args.deadline or conf.deadline or commands.DEFAULT_DEADLINE,
        reload=not args.no_reload,
        config=conf,
        **overrides,  # type: ignore[arg-type]
    )
    return run(args, opts)


def _quiet_stdout() -> None:
    """After a broken pipe: send what is still buffered for stdout nowhere, so that the
    interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # stdout is no file (a test's StringIO), or already gone: nothing to flush


def main(argv: Sequence[str] | None = None, **overrides: object) -> int:
    """Entry point; `overrides` replace Options fields (tests inject a reloader or source).

    The one place where every outcome becomes an exit code: nothing, whatever the input,
    ends in a traceback.
    """
    overrides.setdefault("started", time.monotonic())
    code = _guarded(argv, overrides)
    # Written now: a closed pipe (`ec2net show | head -1`) is found here rather than at
    # interpreter exit, where it could only be reported with a traceback.
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
    except (OSError, ValueError):
        pass  # stdout closed or failing: nothing more can be said there
    return code


def _guarded(argv: Sequence[str] | None, overrides: dict[str, object]) -> int:
    try:
        return _main(argv, overrides)
    except UsageError as exc:
        log.error("%s", exc)
        return commands.EXIT_USAGE
    except Ec2NetError as exc:
        log.error("%s", exc)
        return commands.EXIT_FAILED
    except SystemExit as exc:  # --help, --version: argparse has printed and wants to exit
        return exc.code if isinstance(exc.code, int) else commands.EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Whoever read our output stopped reading (`| head`): not worth a message.
        _quiet_stdout()
        return commands.EXIT_FAILED
    except Exception as exc:
        log.error("internal error: %s: %s; please report", type(exc).__name__, quote(str(exc)))
        log.debug("traceback of the internal error", exc_info=True)
        return commands.EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
