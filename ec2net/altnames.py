"""Alternative interface names from IMDS: the ENI id and device-number-<dev>.<card>.

They let an operator (and scripts) say `ip addr show eni-0123...` or `device-number-1.0`
whatever the kernel named the link. Added idempotently with `ip link property add`; a name
another link already holds is never taken from it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess

from .errors import ApplyError
from .model import Eni

log = logging.getLogger(__name__)
IP_TIMEOUT = 10.0


def wanted(eni: Eni) -> list[str]:
    names = [f"device-number-{eni.device_number}.{eni.network_card}"]
    if eni.interface_id:
        names.insert(0, eni.interface_id)
    return names


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    ip = shutil.which("ip")
    if ip is None:
        raise ApplyError("ip (iproute2) not found on PATH; cannot set alternative names")
    try:
        return subprocess.run(
            [ip, *args], capture_output=True, text=True, timeout=IP_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise ApplyError(f"ip {' '.join(args)} did not answer in {IP_TIMEOUT:.0f} s") from None


def holders() -> dict[str, str]:
    """Every name in use (interface names and alternative names) -> the link holding it."""
    import json

    result = _ip("-j", "link", "show")
    if result.returncode != 0:
        raise ApplyError(f"ip link show failed: {result.stderr.strip()}")
    names: dict[str, str] = {}
    for link in json.loads(result.stdout or "[]"):
        names[link["ifname"]] = link["ifname"]
        for alt in link.get("altnames", []):
            names[alt] = link["ifname"]
    return names


def ensure(ifname: str, names: list[str], taken: dict[str, str]) -> list[str]:
    """Give `ifname` the alternative `names` it lacks; returns those added."""
    added = []
    for name in names:
        holder = taken.get(name)
        if holder == ifname:
            continue
        if holder is not None:
            log.warning(
                "%s: alternative name %s is held by %s; not taking it", ifname, name, holder
            )
            continue
        result = _ip("link", "property", "add", "dev", ifname, "altname", name)
        if result.returncode != 0:
            raise ApplyError(f"cannot add alternative name {name}: {result.stderr.strip()}")
        taken[name] = ifname
        added.append(name)
        log.info("%s: added alternative name %s", ifname, name)
    return added
