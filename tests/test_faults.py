"""IMDS fault matrix: for every fault, on boot (`setup --all`) and on `refresh --all`, the tree
on disk is exactly right, the log names key and cause, the exit code says whether something
could not be done, and the run stays within its deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, add_link, read_tree
from imds_mock import ImdsMock
from instance_builder import eni_node, eni_path, example
from test_setup_tree import PRIMARY, SECONDARY, attach_dual_stack

from ec2net import commands
from ec2net.snapshot import SnapshotSource

TOKEN = "/latest/api/token"
DEADLINE = 3.0
# Short read timeout so that slow-response cases finish quickly.
CONFIG = "[IMDS]\nReadTimeout=0.3\n"


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[ImdsMock], None]
    failed: tuple[str, ...] = ()  # interfaces that cannot be configured
    log: str = ""  # must appear in the log (key and cause)
    extra_link: bool = False  # a third interface whose MAC IMDS does not know
    check: Callable[[ImdsMock], None] | None = None
    tags: tuple[str, ...] = field(default=())


def later(seconds: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()


def fault(path: str, **kw: Any) -> Callable[[ImdsMock], None]:
    return lambda mock: mock.add_fault(path, **kw)


def no_keys_yet(recover: bool) -> Callable[[ImdsMock], None]:
    def inject(mock: ImdsMock) -> None:
        node = eni_node(changed_snapshot(), SECONDARY)
        mock.set(f"network/interfaces/macs/{SECONDARY}", {})
        if recover:
            later(0.8, lambda: mock.set(f"network/interfaces/macs/{SECONDARY}", node))

    return inject


BOTH = ("eth0", "eth1")
FAULTS = [
    Fault("token 403", fault(TOKEN, method="PUT", status=403, count=None), BOTH, "HTTP 403"),
    Fault("token 401", fault(TOKEN, method="PUT", status=401, count=None), BOTH, "HTTP 401"),
    Fault("token 503", fault(TOKEN, method="PUT", status=503, count=None), BOTH, "HTTP 503"),
    Fault("token 503 x2", fault(TOKEN, method="PUT", status=503, count=2)),
    Fault("token timeout", fault(TOKEN, method="PUT", delay=1, count=None), BOTH, "timed out"),
    Fault(
        "token expires mid-run",
        fault(eni_path(SECONDARY, "local-ipv4s"), status=401, count=1),
        check=lambda mock: _assert_equal(mock.count(TOKEN, "PUT"), 2),
    ),
    Fault("429 Retry-After", fault(eni_path(SECONDARY), status=429, headers={"Retry-After": "1"})),
    Fault("503 burst recovers", fault(eni_path(SECONDARY, "ipv6s"), status=503, count=3)),
    Fault(
        "500 persists",
        fault(eni_path(SECONDARY, "ipv4-prefix"), status=500, count=None),
        ("eth1",),
        "ipv4-prefix: HTTP 500",
    ),
    Fault("slow once", fault(eni_path(PRIMARY, "local-ipv4s"), delay=0.6, count=1)),
    Fault(
        "slow always",
        fault(eni_path(PRIMARY, "local-ipv4s"), delay=0.6, count=None),
        ("eth0",),
        "read timed out",
    ),
    Fault("dropped connection", fault(eni_path(SECONDARY, "local-ipv4s"), close=True, count=2)),
    Fault(
        "truncated body",
        fault(eni_path(SECONDARY, "local-ipv4s"), body="10.0.2.41\n10.0.2.", count=None),
        ("eth1",),
        "metadata key 'local-ipv4s': '10.0.2.' does not appear to be an IPv4 or IPv6 address",
    ),
    Fault(
        "empty body",
        fault(eni_path(SECONDARY, "subnet-ipv4-cidr-block"), body="", count=None),
        ("eth1",),
        "metadata key 'subnet-ipv4-cidr-block': empty value",
    ),
    Fault(
        "device-number 404",
        fault(eni_path(SECONDARY, "device-number"), status=404, count=None),
        ("eth1",),
        "metadata key 'device-number': missing",
    ),
    Fault(
        "mac 404",
        fault("/latest/meta-data/mac", status=404, count=None),
        BOTH,
        "metadata key 'mac': missing",
    ),
    Fault(
        "MAC without keys",
        no_keys_yet(recover=False),
        ("eth1",),
        "'device-number': missing (ENI not fully described yet)",
    ),
    Fault("MAC without keys, then complete", no_keys_yet(recover=True)),
    Fault(
        "device-number 0 on a secondary",
        fault(eni_path(SECONDARY, "device-number"), body="0", count=None),
        ("eth1",),
        "'device-number': 0 on a secondary ENI",
    ),
    Fault(
        "device-number 0, then right",
        fault(eni_path(SECONDARY, "device-number"), body="0", count=1),
    ),
    Fault(
        "network-card empty, then set",
        fault(eni_path(SECONDARY, "network-card"), body="", count=1),
    ),
    Fault(
        "network-card stays empty",
        fault(eni_path(SECONDARY, "network-card"), body="", count=None),
        ("eth1",),
        "'network-card': empty",
    ),
    Fault(
        "MAC unknown to IMDS",
        lambda mock: None,
        ("eth2",),
        "eth2: ENI 0e:00:00:00:00:99: metadata key 'network/interfaces/macs/': MAC not known",
        extra_link=True,
    ),
]


def _assert_equal(a: object, b: object) -> None:
    assert a == b


def changed_snapshot() -> dict[str, Any]:
    """The dual-stack instance after a secondary IP was added to each ENI."""
    snap = example("dual-stack")
    eni_node(snap, PRIMARY)["local-ipv4s"].append("10.0.1.99")
    eni_node(snap, SECONDARY)["local-ipv4s"].append("10.0.2.99")
    return snap


def rendered(snapshot: dict[str, Any], out: Path) -> dict[str, str]:
    links = {"eth0": PRIMARY, "eth1": SECONDARY}
    commands.render_snapshot(SnapshotSource(snapshot), out, links, lambda _: None)
    return read_tree(out)


def for_interfaces(tree: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in tree.items() if any(k.startswith(f"70-{n}.") for n in names)}


@pytest.mark.parametrize("phase", ["boot", "refresh"])
@pytest.mark.parametrize("case", FAULTS, ids=[f.name for f in FAULTS])
def test_fault(ec2net: Cli, case: Fault, phase: str) -> None:
    attach_dual_stack(ec2net)
    if case.extra_link:
        add_link(ec2net.root, "eth2", "0e:00:00:00:00:99")
    conf = ec2net.root / "etc/ec2-net-utils.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(CONFIG)
    ec2net.extra = ["--deadline", str(DEADLINE)]
    if phase == "refresh":
        assert ec2net("setup", "eth0", "eth1").code == 0
    before = ec2net.tree()
    new = rendered(changed_snapshot(), Path("/expected"))
    ec2net.mock.set_snapshot(changed_snapshot())
    ec2net.mock.clear_log()
    case.inject(ec2net.mock)
    reloads = ec2net.reloads

    started = time.monotonic()
    run = ec2net("setup" if phase == "boot" else "refresh", "--all")
    elapsed = time.monotonic() - started

    ok = ("eth0", "eth1")
    ok = tuple(n for n in ok if n not in case.failed)
    failed = tuple(n for n in ("eth0", "eth1") if n in case.failed)
    expected = for_interfaces(new, ok) | for_interfaces(before, failed)
    assert ec2net.tree() == expected
    assert run.code == (1 if case.failed else 0), run.log
    assert case.log in run.log
    for name in case.failed:
        assert "ERROR    ec2net.commands:commands.py" in run.log and f"{name}: " in run.log
    assert ec2net.reloads == reloads + (1 if ok else 0)
    assert elapsed <= DEADLINE + 1.0, f"took {elapsed:.1f} s with a {DEADLINE} s deadline"
    assert not list(Path("/run/systemd/network").rglob("*.ec2net-tmp"))
    if case.check is not None:
        case.check(ec2net.mock)
