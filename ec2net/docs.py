"""Man pages and bash completion, generated at build time from the argparse definition and the
configuration schema, so that they cannot drift from `ec2net --help` or from what the config
parser accepts. `python3 -m ec2net.docs OUTDIR` writes them all (meson runs it).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import jinja2

from . import __version__, config, facts, layout
from .cli import build_parser

PAGES = {
    "ec2net.8": "man/ec2net.8.j2",
    "ec2-net-utils.conf.5": "man/ec2-net-utils.conf.5.j2",
    "ec2-net-utils-generator.8": "man/ec2-net-utils-generator.8.j2",
    "ec2-net-utils@.service.8": "man/ec2-net-utils@.service.8.j2",
}
COMPLETION = "ec2net.bash"


def roff(text: str) -> str:
    """Escape text for roff: backslashes, and a leading dot or quote that would be a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[dict[str, str]]:
    """Each option/positional as {"synopsis", "help"}, from the parser itself."""
    out = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            names = ", ".join(action.option_strings)
            if action.nargs != 0:
                names += " " + str(action.metavar or action.dest.upper())
        else:
            names = str(action.metavar or action.dest)
        out.append({"synopsis": names, "help": (action.help or "") % {"prog": "ec2net"}})
    return out


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().split()[1:])


def context() -> dict[str, object]:
    parser = build_parser()
    commands = [
        {
            "name": name,
            "usage": _usage(sub),
            "description": sub.description or "",
            "options": _options(sub),
        }
        for name, sub in _subcommands(parser).items()
    ]
    schema = [
        {"section": section, "keys": sorted(keys)} for section, keys in config._SCHEMA.items()
    ]
    return {
        "version": __version__,
        "date": date.today().isoformat(),
        "description": parser.description or "",
        "global_options": _options(parser),
        "commands": commands,
        "schema": schema,
        "marker": layout.MARKER,
        "active_flag": "/" + facts.ACTIVE_FLAG,
        "run_dir": "/" + facts.RUN_DIR,
        "eni_drivers": ", ".join(facts.ENI_DRIVERS[:-1]) + " or " + facts.ENI_DRIVERS[-1],
    }


def render_all(outdir: Path) -> list[Path]:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(layout.templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["roff"] = roff
    values = context()
    written = []
    for name, template in {**PAGES, COMPLETION: "ec2net.bash.j2"}.items():
        path = outdir / name
        path.write_text(env.get_template(template).render(**values), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in render_all(Path(sys.argv[1])):
        print(written_path)
