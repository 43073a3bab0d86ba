"""Pure rendering: validated model -> {relative path: file text}. No I/O beyond templates."""

from __future__ import annotations

from functools import cache

import jinja2

from . import layout
from .model import DEFAULT_RENDER_OPTIONS, Eni, RenderOptions, policy_sources


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(layout.templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # networkd INI, not HTML; values are validated model objects
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _header(ifname: str, eni: Eni, primary: bool) -> str:
    role = "primary ENI" if primary else "secondary ENI"
    ident = f"{eni.interface_id}, " if eni.interface_id else ""
    return (
        f"{layout.MARKER} for {ifname} ({role}, {ident}card {eni.network_card}, "
        f"device {eni.device_number}).\n"
        "# Do not edit: rewritten on every run and gone at reboot. To override, create a file\n"
        "# of the same name under /etc/systemd/network/ (see ec2net(8))."
    )


def _tidy(text: str) -> str:
    """One blank line before each section, none doubled, exactly one final newline."""
    lines: list[str] = []
    for line in text.strip("\n").split("\n"):
        if line.startswith("[") and lines and lines[-1] != "":
            lines.append("")
        if line == "" and (not lines or lines[-1] == ""):
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def render_eni(
    eni: Eni, ifname: str, *, primary: bool, options: RenderOptions = DEFAULT_RENDER_OPTIONS
) -> dict[str, str]:
    """All files for one ENI on interface `ifname`, keyed by path relative to the network dir."""
    env = _environment()
    context = {"eni": eni, "header": _header(ifname, eni, primary), "options": options}

    def text(template: str, **extra: object) -> str:
        return _tidy(env.get_template(template).render(**context, **extra))

    files = {
        layout.network_file(ifname): text("70-eni.network.j2"),
        layout.dropin(ifname, layout.DROPIN_ENI): text("eni.conf.j2"),
    }
    if eni.secondary_ipv4s and options.manage_secondary_ips:
        files[layout.dropin(ifname, layout.DROPIN_ALIAS)] = text("ec2net_alias.conf.j2")
    if not primary:
        # The primary ENI gets no policy rules: its traffic uses the main table, and rules on
        # it broke docker bridge networking with the original tool.
        for dropin, version in ((layout.DROPIN_POLICY_4, 4), (layout.DROPIN_POLICY_6, 6)):
            sources = policy_sources(eni, options, version)
            if sources:
                files[layout.dropin(ifname, dropin)] = text(
                    "ec2net_policy.conf.j2", sources=sources
                )
    return files
