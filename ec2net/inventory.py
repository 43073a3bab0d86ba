"""Read the ENIs of this instance from a metadata source into validated model objects.

The source is the live IMDS client or an offline snapshot; both answer `get`/`listing`.
Per-ENI failures are returned, not raised, so one bad ENI never stops the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol, Union

from .errors import Ec2NetError, MetadataError, NotPropagated
from .model import ENI_KEYS, NETWORK_CARD_ALIASES, Eni, parse_eni, parse_mac

log = logging.getLogger(__name__)

MACS_PATH = "network/interfaces/macs/"
EniResult = Union[Eni, Ec2NetError]  # a runtime alias: Python 3.9 has no X | Y


class MetadataSource(Protocol):
    def get(self, path: str, *, fresh: bool = False) -> str | None: ...

    def listing(self, path: str, *, fresh: bool = False) -> list[str] | None: ...

    def remaining(self) -> float: ...


def read_primary_mac(source: MetadataSource) -> str:
    value = source.get("mac")
    if value is None:
        raise MetadataError("instance", "mac", "missing")
    try:
        return parse_mac(value)
    except ValueError as exc:
        raise MetadataError("instance", "mac", str(exc)) from None


def list_macs(source: MetadataSource) -> list[str]:
    """MACs of all ENIs IMDS knows, in listing order."""
    entries = source.listing(MACS_PATH) or []
    macs = []
    for entry in entries:
        try:
            macs.append(parse_mac(entry.rstrip("/")))
        except ValueError as exc:
            raise MetadataError("instance", MACS_PATH, str(exc)) from None
    return macs


def read_eni(source: MetadataSource, mac: str, primary_mac: str, *, fresh: bool = False) -> Eni:
    """Read and validate one ENI; NotPropagated means "ask again shortly"."""
    base = f"{MACS_PATH}{mac}/"
    entries = source.listing(base, fresh=fresh)
    if entries is None:
        raise NotPropagated(mac, MACS_PATH, "MAC not known to IMDS (yet)")
    # The listing tells which keys exist, so absent keys cost no request.
    present = {entry for entry in entries if not entry.endswith("/")}
    raw = {
        key: source.get(base + key, fresh=fresh) if key in present else None
        for key in (*ENI_KEYS, *NETWORK_CARD_ALIASES[1:])
    }
    if raw["device-number"] is None:
        raise NotPropagated(mac, "device-number", "missing (ENI not fully described yet)")
    for key in NETWORK_CARD_ALIASES:
        value = raw.get(key)
        if value is not None and not value.strip():
            raise NotPropagated(mac, key, "empty (ENI not fully described yet)")
    eni = parse_eni(mac, raw)
    if mac != primary_mac and eni.network_card == 0 and eni.device_number == 0:
        # Only the primary ENI can be device 0 on card 0; IMDS lags after a hot-attach.
        raise NotPropagated(mac, "device-number", "0 on a secondary ENI (IMDS still updating)")
    return eni


def read_enis(
    source: MetadataSource,
    macs: Iterable[str],
    primary_mac: str,
    *,
    retry_interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, EniResult]:
    """Read every MAC; ENIs IMDS has not caught up with are asked again until the deadline."""
    results: dict[str, EniResult] = {}
    pending = list(dict.fromkeys(macs))
    fresh = False
    while pending:
        lagging = []
        for mac in pending:
            try:
                results[mac] = read_eni(source, mac, primary_mac, fresh=fresh)
            except NotPropagated as exc:
                results[mac] = exc
                lagging.append(mac)
            except Ec2NetError as exc:
                results[mac] = exc
        if not lagging or source.remaining() <= retry_interval:
            break
        for mac in lagging:
            log.debug("%s; asking again in %.1f s", results[mac], retry_interval)
        sleep(retry_interval)
        pending, fresh = lagging, True
    return results
