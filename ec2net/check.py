"""`ec2net check`: does the live instance match what IMDS says it should be?

For every ENI it compares three layers and reports where they disagree:
IMDS (expected) -> the files we generated -> what networkd applied and the kernel has
(addresses, policy rules, routes in the ENI's table). Kernel state is read with `ip -j`, the
same view an operator gets by hand.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import apply, layout, networkd, safeio
from .errors import ApplyError
from .model import Eni, RenderOptions, policy_sources

IP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Finding:
    """One disagreement (or notable fact) about one interface."""

    interface: str
    # missing-file, differing-file, stale-file, shadowed, overridden, left-alone, metadata,
    # missing-address, extra-address, missing-rule, extra-rule, missing-route, not-checked
    kind: str
    detail: str
    # "error" fails the check (exit 1); "info" is reported only.
    severity: str = "error"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def ip_json(*args: str) -> list[dict[str, Any]]:
    """`ip -j ARGS`, parsed (iproute2 is a dependency of the package)."""
    ip = shutil.which("ip")
    if ip is None:
        raise ApplyError("ip (iproute2) not found on PATH")
    try:
        result = subprocess.run(
            [ip, "-j", *args], capture_output=True, text=True, timeout=IP_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise ApplyError(f"ip {' '.join(args)} did not answer in {IP_TIMEOUT:.0f} s") from None
    if result.returncode != 0:
        raise ApplyError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    parsed: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    return parsed


def check_files(
    netdir: Path, ifname: str, eni: Eni, primary: bool, options: RenderOptions
) -> list[Finding]:
    """Generated files on disk against what the metadata renders to now."""
    from .render import render_eni

    wanted = render_eni(eni, ifname, primary=primary, options=options)
    findings = []
    for rel, text in wanted.items():
        path = netdir / rel
        try:
            # One byte more than wanted is enough to tell a longer file apart.
            found = safeio.read_bytes(path, len(text.encode()) + 1, truncate=True)
        except safeio.UnreadableFile as exc:
            findings.append(Finding(ifname, "differing-file", str(exc)))
            continue
        if found is None:
            findings.append(Finding(ifname, "missing-file", f"{path} is missing"))
        elif found != text.encode():
            findings.append(Finding(ifname, "differing-file", f"{path} is not what IMDS says"))
    for rel in apply.generated_files(netdir, ifname):
        if rel not in wanted:
            findings.append(Finding(ifname, "stale-file", f"{netdir / rel} should not exist"))
    return findings


def check_networkd(root: Path, ifname: str) -> list[Finding]:
    findings = []
    shadow = networkd.shadowing_file(root, ifname)
    if shadow is not None:
        findings.append(Finding(ifname, "shadowed", f"networkd applies {shadow} instead of ours"))
    admin = root / layout.ADMIN_NETWORK_DIR
    for rel in [layout.network_file(ifname)] + [layout.dropin(ifname, d) for d in layout.DROPINS]:
        if (admin / rel).exists():
            findings.append(Finding(ifname, "overridden", f"{admin / rel} overrides ours", "info"))
    return findings


def _rule_source(rule: dict[str, Any]) -> str:
    src = str(rule.get("src", "all"))
    if src == "all":
        return src
    length = rule.get("srclen")
    if length is None:
        length = 32 if ":" not in src else 128
    return str(ipaddress.ip_network(f"{src}/{length}", strict=False))


def check_kernel(
    ifname: str, eni: Eni, primary: bool, options: RenderOptions, rules: dict[int, list[Any]]
) -> list[Finding]:
    """Addresses, policy rules and table routes of one ENI as the kernel has them."""
    findings: list[Finding] = []
    have = {
        a["local"]
        for link in ip_json("-4", "addr", "show", "dev", ifname)
        for a in link.get("addr_info", [])
    }
    wanted = {str(a) for a in eni.local_ipv4s[: None if options.manage_secondary_ips else 1]}
    for address in sorted(wanted - have, key=ipaddress.ip_address):
        findings.append(Finding(ifname, "missing-address", f"{address} is not on {ifname}"))
    if options.manage_secondary_ips:
        for address in sorted(have - wanted, key=ipaddress.ip_address):
            if not ipaddress.ip_address(address).is_link_local:
                findings.append(Finding(ifname, "extra-address", f"{address} is not in IMDS"))
    for version, has in ((4, eni.has_ipv4), (6, eni.has_ipv6)):
        if not has:
            continue
        ours = [_rule_source(r) for r in rules[version] if r.get("priority") == eni.table]
        expected = set() if primary else set(policy_sources(eni, options, version))
        for source in sorted(expected - set(ours)):
            findings.append(
                Finding(ifname, "missing-rule", f"from {source} lookup {eni.table} (IPv{version})")
            )
        for source in sorted(set(ours) - expected):
            findings.append(
                Finding(ifname, "extra-rule", f"from {source} lookup {eni.table} (IPv{version})")
            )
        routes = ip_json(f"-{version}", "route", "show", "table", str(eni.table))
        if not any(r.get("dst") == "default" and r.get("dev") == ifname for r in routes):
            findings.append(
                Finding(
                    ifname,
                    "missing-route",
                    f"no IPv{version} default route via {ifname} in table {eni.table}",
                )
            )
    return findings


def kernel_rules() -> dict[int, list[Any]]:
    return {4: ip_json("-4", "rule", "show"), 6: ip_json("-6", "rule", "show")}


def render_findings(findings: list[Finding], checked: list[str]) -> str:
    """The human table: one line per finding, or a line saying all holds."""
    errors = [f for f in findings if f.severity == "error"]
    if not errors:
        head = f"OK: {len(checked)} interface(s) checked ({', '.join(checked) or 'none'})"
    else:
        where = ", ".join(sorted({f.interface for f in errors}))
        head = f"PROBLEMS: {len(errors)} finding(s) on {where}"
    if not findings:
        return head
    width = max(len(f.interface) for f in findings)
    kinds = max(len(f.kind) for f in findings)
    lines = [head]
    for f in findings:
        mark = "!" if f.severity == "error" else "-"
        lines.append(f"{mark} {f.interface:<{width}}  {f.kind:<{kinds}}  {f.detail}")
    return "\n".join(lines)
