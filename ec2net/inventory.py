"""Read the ENIs of this instance from a metadata source into validated model objects.

The source is the live IMDS client or an offline snapshot; both answer `get`/`listing`.
Per-ENI failures are returned, not raised, so one bad ENI never stops the others.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, Union

from .errors import Ec2NetError, MetadataError, NotPropagated
from .model import ENI_KEYS, NETWORK_CARD_ALIASES, Eni, Slot, parse_eni, parse_mac, parse_slot

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


def _read_listed(
    source: MetadataSource, mac: str, keys: Iterable[str], *, fresh: bool = False
) -> dict[str, str | None]:
    """The values of `keys` of one ENI; None only for a key its directory listing lacks.

    The listing tells which keys exist, so absent keys cost no request. A listed key that
    then answers 404 is IMDS mid-update, never "absent": an ENI read that way would lose its
    addresses and rules. It is NotPropagated (asked again until the deadline, then an error
    that keeps the ENI's files).
    """
    base = f"{MACS_PATH}{mac}/"
    entries = source.listing(base, fresh=fresh)
    if entries is None:
        raise NotPropagated(mac, MACS_PATH, "MAC not known to IMDS (yet)")
    listed = set(entries)
    raw: dict[str, str | None] = {}
    for key in keys:
        if key + "/" in listed:
            raise MetadataError(mac, key, "listed as a directory where a value is expected")
        if key not in listed:
            raw[key] = None
            continue
        value = source.get(base + key, fresh=fresh)
        if value is None:
            raise NotPropagated(mac, key, "missing: listed, but answered 404 (IMDS updating?)")
        raw[key] = value
    return raw


def read_eni(source: MetadataSource, mac: str, primary_mac: str, *, fresh: bool = False) -> Eni:
    """Read and validate one ENI; NotPropagated means "ask again shortly"."""
    raw = _read_listed(source, mac, (*ENI_KEYS, *NETWORK_CARD_ALIASES[1:]), fresh=fresh)
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


def read_slot(source: MetadataSource, mac: str) -> Slot:
    """(network card, device number) of an ENI that is not read in full: 1 listing and at
    most 2 values, enough to see whether it holds the table another ENI claims."""
    raw = _read_listed(source, mac, ("device-number", *NETWORK_CARD_ALIASES))
    return parse_slot(mac, raw)


def refuse_shared_slots(results: dict[str, EniResult], peers: Mapping[str, Slot]) -> None:
    """Two ENIs with one (network card, device number) would share a routing table and rule
    priority. Neither may take the other's: every ENI read in `results` that shares its slot
    with another (read in full, or a peer read with `read_slot`) becomes an error naming the
    other MACs, so its existing files are kept."""
    claims: dict[Slot, list[str]] = {}
    for mac, result in results.items():
        if isinstance(result, Eni):
            claims.setdefault((result.network_card, result.device_number), []).append(mac)
    for mac, slot in peers.items():
        if mac not in results:
            claims.setdefault(slot, []).append(mac)
    for (card, device), macs in claims.items():
        for mac in macs if len(macs) > 1 else ():
            if mac in results:
                others = ", ".join(m for m in macs if m != mac)
                results[mac] = MetadataError(
                    mac,
                    "device-number",
                    f"card {card} device {device} is also claimed by ENI {others} "
                    "(refused: they would share a routing table)",
                )


def read_enis(
    source: MetadataSource,
    macs: Iterable[str],
    primary_mac: str,
    *,
    peers: Iterable[str] = (),
    retry_interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, EniResult]:
    """Read every MAC; ENIs IMDS has not caught up with are asked again until the deadline.

    `peers`: MACs of other links that hold or may take a table; only their slots are read, so
    that an ENI claiming one of them is refused (see refuse_shared_slots).
    """
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
        if not lagging or not _can_wait(source, retry_interval):
            break
        for mac in lagging:
            log.debug("%s; asking again in %.1f s", results[mac], retry_interval)
        sleep(retry_interval)
        pending, fresh = lagging, True
    refuse_shared_slots(results, _read_slots(source, peers, results))
    return results


def _can_wait(source: MetadataSource, interval: float) -> bool:
    """Whether asking again after `interval` seconds still ends before the source's deadline.

    A retry loop must end and must not spin: a source without a finite deadline (an offline
    snapshot, which never changes) or an interval that is not positive means no retry.
    """
    remaining = source.remaining()
    return interval > 0 and math.isfinite(remaining) and remaining > interval


def _read_slots(
    source: MetadataSource, peers: Iterable[str], results: Mapping[str, EniResult]
) -> dict[str, Slot]:
    slots = {}
    for mac in dict.fromkeys(peers):
        if mac in results:
            continue
        try:
            slots[mac] = read_slot(source, mac)
        except Ec2NetError as exc:
            # That ENI's own run reads it in full and sees any clash with ours.
            log.debug("not comparing device numbers with %s: %s", mac, exc)
    return slots
