"""Smoke test of the namespace lab with the networkd config ec2net plans to write.

Two ENIs on one VPC subnet: eth0 (device 0, primary) and eth1 (device 1, secondary,
one secondary private IP). The files are hand-written here the way the tool will
write them; networkd 252 must accept every key and set up the lease, the per-ENI
route tables, the alias and the policy rules.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netlab import IMDS_ADDRESS, REMOTE_PEER, VPC_GATEWAY, VPC_SUBNET, Lab, pytest_lab
from planned_config import write_eni_config

pytestmark = pytest.mark.lab


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    yield from pytest_lab(request)


ETH0 = {"mac": "02:00:00:00:00:10", "ipv4": "192.0.2.10", "device": 0}
ETH1 = {"mac": "02:00:00:00:00:11", "ipv4": "192.0.2.11", "device": 1}
ETH1_SECONDARY = "192.0.2.21"

# Runs inside the instance: IMDSv2 token + one GET, from a given source address.
IMDS_CLIENT = """
import http.client, sys
conn = http.client.HTTPConnection(sys.argv[1], 80, timeout=5, source_address=(sys.argv[2], 0))
conn.request("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
token = conn.getresponse().read().decode()
conn.request("GET", "/latest/meta-data/mac", headers={"X-aws-ec2-metadata-token": token})
print(conn.getresponse().read().decode())
"""


def test_two_enis_lease_routes_rules(lab: Lab, tmp_path: Path) -> None:
    started = time.monotonic()
    write_eni_config(lab, "eth0", str(ETH0["mac"]), 0, secondary=[], policy=[])
    write_eni_config(
        lab,
        "eth1",
        str(ETH1["mac"]),
        1,
        secondary=[ETH1_SECONDARY],
        policy=[str(ETH1["ipv4"]), ETH1_SECONDARY],
    )
    lab.reload()
    lab.add_eni("eth0", str(ETH0["mac"]), ipv4=str(ETH0["ipv4"]))
    lab.add_eni("eth1", str(ETH1["mac"]), ipv4=str(ETH1["ipv4"]))

    # DHCP leases arrive, with the per-ENI metric on the prefix route.
    assert lab.wait_dhcp("eth0") == ETH0["ipv4"]
    assert lab.wait_dhcp("eth1") == ETH1["ipv4"]
    for name in ("eth0", "eth1"):
        lab.wait_configured(name)
    eth1_addrs = {(a["local"], a["prefixlen"]): a for a in lab.addresses("eth1")}
    assert (ETH1["ipv4"], 24) in eth1_addrs
    assert eth1_addrs[(ETH1["ipv4"], 24)].get("metric") == 513

    # Secondary private IP as a /32 alias without prefix route.
    assert (ETH1_SECONDARY, 32) in eth1_addrs

    # Per-ENI tables: default via the DHCP gateway + the subnet route (scope link).
    for name, table in (("eth0", 10000), ("eth1", 10001)):
        routes = lab.routes(table)
        assert {"dst": "default", "gateway": VPC_GATEWAY, "dev": name} in [
            {k: r.get(k) for k in ("dst", "gateway", "dev")} for r in routes
        ], routes
        assert any(
            r["dst"] == VPC_SUBNET and r.get("scope") == "link" and r["dev"] == name for r in routes
        ), routes

    # Main table: DHCP default routes with RouteMetric=512+device.
    main = {(r["dev"], r.get("metric")) for r in lab.routes("main") if r["dst"] == "default"}
    assert {("eth0", 512), ("eth1", 513)} <= main

    # Policy rules for the secondary ENI only, priority == table == 10001.
    rules = [(r.get("priority"), r.get("src"), r.get("table")) for r in lab.rules()]
    assert (10001, ETH1["ipv4"], "10001") in rules
    assert (10001, ETH1_SECONDARY, "10001") in rules
    assert not [r for r in rules if r[0] == 10000], rules

    # Source-based routing: traffic from eth1's addresses leaves via eth1.
    for src in (str(ETH1["ipv4"]), ETH1_SECONDARY):
        got = lab.route_get(REMOTE_PEER, src)
        assert got["dev"] == "eth1" and got.get("table") == "10001", got
    assert lab.route_get(REMOTE_PEER, str(ETH0["ipv4"]))["dev"] == "eth0"

    # IMDSv2 through the lab: tests/imds_mock.py on 169.254.169.254:80 in the vpc netns,
    # queried from the secondary IP, so the reply path needs the eth1 policy routing too.
    snapshot = tmp_path / "snapshot.json"
    snapshot.write_text(json.dumps({"meta-data": {"mac": ETH0["mac"]}}))
    lab.start_imds(snapshot)
    fetch = lab.inst([sys.executable, "-c", IMDS_CLIENT, IMDS_ADDRESS, ETH1_SECONDARY])
    assert fetch.stdout.strip() == ETH0["mac"]

    # networkd 252 accepted every key of the planned files.
    assert lab.config_warnings() == []
    assert time.monotonic() - started < 60


def test_hot_detach_and_monitor(lab: Lab) -> None:
    lab.write("/run/systemd/network/80-ec2.network", "[Match]\nName=eth*\n[Network]\nDHCP=yes\n")
    lab.reload()
    lab.add_eni("eth0", "02:00:00:00:00:20", ipv4="192.0.2.30")
    with lab.monitor_addresses() as monitor:
        lab.add_eni("eth1", "02:00:00:00:00:21", ipv4="192.0.2.31")
        assert lab.wait_dhcp("eth1") == "192.0.2.31"
        assert lab.wait_dhcp("eth0") == "192.0.2.30"
        lab.del_eni("eth1")
        lab.wait_for(lambda: _gone(lab), 5, "eth1 to disappear")
    assert monitor.added("192.0.2.31")
    assert not monitor.deleted("192.0.2.30")


def _gone(lab: Lab) -> bool:
    res = lab.inst(["ip", "link", "show", "eth1"], check=False)
    return res.returncode != 0
