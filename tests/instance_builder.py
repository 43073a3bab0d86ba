"""Build metadata snapshots (the JSON format `ec2net render` and the IMDS mock read)."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

MACS = "network/interfaces/macs"


def example(name: str) -> dict[str, Any]:
    """A deep copy of a snapshot bundled with the package."""
    text = resources.files("ec2net.examples").joinpath(f"{name}.json").read_text("utf-8")
    return dict(json.loads(text))


def eni(
    mac: str,
    device: int,
    *,
    card: int | None = 0,
    eni_id: str | None = None,
    ipv4s: Sequence[str] = (),
    subnet4: str | None = None,
    ipv6s: Sequence[str] = (),
    subnet6: Sequence[str] = (),
    prefixes4: Sequence[str] = (),
    prefixes6: Sequence[str] = (),
) -> dict[str, Any]:
    """The meta-data directory of one ENI; empty sequences leave the key out, as IMDS does."""
    node: dict[str, Any] = {"device-number": str(device), "mac": mac}
    node["interface-id"] = eni_id or "eni-" + mac.replace(":", "") + "00000"
    if card is not None:
        node["network-card"] = str(card)
    optional = {
        "local-ipv4s": list(ipv4s),
        "subnet-ipv4-cidr-block": subnet4,
        "ipv6s": list(ipv6s),
        "subnet-ipv6-cidr-blocks": list(subnet6),
        "ipv4-prefix": list(prefixes4),
        "ipv6-prefix": list(prefixes6),
    }
    node.update({k: v for k, v in optional.items() if v})
    return node


def instance(primary_mac: str, *enis: dict[str, Any]) -> dict[str, Any]:
    return {
        "meta-data": {
            "instance-id": "i-0123456789abcdef0",
            "mac": primary_mac,
            "network": {"interfaces": {"macs": {e["mac"]: copy.deepcopy(e) for e in enis}}},
        }
    }


def eni_node(snapshot: dict[str, Any], mac: str) -> dict[str, Any]:
    node: dict[str, Any] = snapshot["meta-data"]["network"]["interfaces"]["macs"][mac]
    return node


def eni_path(mac: str, key: str = "") -> str:
    """Full request path of an ENI key, as the mock logs it."""
    return f"/latest/meta-data/{MACS}/{mac}/{key}"
