"""/etc/ec2-net-utils.conf: parsing, precedence, and interfaces left alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Cli, add_link
from test_setup_tree import PRIMARY, SECONDARY, attach_dual_stack, golden

from ec2net import cli, config
from ec2net.errors import UsageError


def write_conf(root: Path, text: str, name: str | None = None) -> None:
    path = root / ("etc/ec2-net-utils.conf" if name is None else f"etc/ec2-net-utils.conf.d/{name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_defaults_without_files(tmp_path: Path) -> None:
    assert config.load(tmp_path) == config.Config()


def test_full_config_and_dropin_order(tmp_path: Path) -> None:
    write_conf(
        tmp_path,
        "[Interfaces]\nUnmanaged=eth9 0E:8C:2D:7A:41:B3 eni-0123456789abcdef0 ens*\n"
        "ManageSecondaryIPs=no\nMTU=1500\nRefresh=off\n"
        "[IMDS]\nEndpoint=http://127.0.0.1:8080/\nDeadline=12.5\n",
    )
    write_conf(tmp_path, "[Interfaces]\nMTU=9001\n", "20-jumbo.conf")
    write_conf(tmp_path, "[Interfaces]\nMTU=1280\n", "10-small.conf")
    write_conf(tmp_path, "[Interfaces]\nMTU=1\n", "30-ignored.conf.disabled")
    conf = config.load(tmp_path)
    assert conf.mtu == 9001, "drop-ins in lexical order, the last one wins"
    assert conf.unmanaged.macs == {SECONDARY}
    assert conf.unmanaged.eni_ids == {"eni-0123456789abcdef0"}
    assert conf.unmanaged.globs == ("eth9", "ens*")
    assert conf.unmanaged.matches("ens5", "02:00:00:00:00:01") == "ens*"
    assert conf.unmanaged.matches("eth0", "02:00:00:00:00:01", "eni-0123456789abcdef0")
    assert conf.unmanaged.matches("eth0", "02:00:00:00:00:01") is None
    assert not conf.manage_secondary_ips and not conf.refresh
    assert conf.imds_endpoint == "http://127.0.0.1:8080"
    assert conf.deadline == 12.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[Interfaces]\nMTU=jumbo\n", "[Interfaces] MTU=: expected an MTU"),
        ("[Interfaces]\nRefresh=maybe\n", "[Interfaces] Refresh=: expected yes or no"),
        ("[IMDS]\nDeadline=-1\n", "[IMDS] Deadline=: expected seconds"),
        ("[IMDS]\nDeadline=nan\n", "[IMDS] Deadline=: expected seconds"),
        ("[IMDS]\nEndpoint=https://x/latest\n", "[IMDS] Endpoint=: expected http://HOST"),
        ("[Interfaces]\nUnmanaged=0e:8c:2d:7a:41:zz\n", "not a MAC address"),
        ("MTU=1500\n", "line 1: 'MTU=1500': a key before any [section]"),
    ],
)
def test_invalid_values(tmp_path: Path, text: str, message: str) -> None:
    write_conf(tmp_path, text)
    with pytest.raises(UsageError) as info:
        config.load(tmp_path)
    assert message in str(info.value)


def test_unknown_keys_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_conf(tmp_path, "[Interfaces]\nMtu=1500\n[Future]\nX=1\n")
    assert config.load(tmp_path) == config.Config()
    assert "unknown key Mtu= in [Interfaces] ignored" in caplog.text
    assert "unknown section [Future] ignored" in caplog.text


def test_invalid_config_changes_nothing(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    write_conf(ec2net.root, "[Interfaces]\nMTU=huge\n")
    ec2net.mock.clear_log()
    ec2net.mock.set(f"network/interfaces/macs/{SECONDARY}/local-ipv4s", ["10.0.2.41"])
    run = ec2net("refresh", "--all")
    assert run.code == 2
    assert "MTU=: expected an MTU" in run.log
    assert ec2net.tree() == golden("dual-stack")
    assert ec2net.mock.count() == 0, "no IMDS request either"


@pytest.mark.parametrize("entry", ["eth1", "eth[1-9]", SECONDARY.upper(), "eni-07b2c9d8e1f0a3456"])
def test_unmanaged_interface_is_left_alone_and_cleaned(ec2net: Cli, entry: str) -> None:
    attach_dual_stack(ec2net)
    assert ec2net("setup", "--all").code == 0
    write_conf(ec2net.root, f"[Interfaces]\nUnmanaged={entry}\n")
    run = ec2net("refresh", "--all")
    assert run.code == 0
    assert "eth1: left alone (Unmanaged=" in run.log
    assert sorted(ec2net.tree()) == sorted(k for k in golden("dual-stack") if "eth0" in k)
    assert ec2net.reloads == 2
    assert ec2net("setup", "eth1").code == 0
    assert not [k for k in ec2net.tree() if "eth1" in k]
    assert ec2net.reloads == 2, "nothing to remove the second time"


def test_interface_managed_by_another_tool(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    for name, ifindex in (("eth0", 2), ("eth1", 3)):
        (ec2net.root / f"sys/class/net/{name}/ifindex").write_text(f"{ifindex}\n")
    data = ec2net.root / "run/udev/data"
    data.mkdir(parents=True)
    (data / "n2").write_text("I:123\nE:ID_NET_MANAGED_BY=io.systemd.Network\nG:systemd\n")
    (data / "n3").write_text("I:123\nE:ID_NET_DRIVER=ena\nE:ID_NET_MANAGED_BY=org.example.cni\n")
    run = ec2net("-v", "setup", "--all")
    assert run.code == 0
    assert "eth1: left alone (udev ID_NET_MANAGED_BY=org.example.cni)" in run.log
    assert sorted(ec2net.tree()) == sorted(k for k in golden("dual-stack") if "eth0" in k)


def test_mtu_and_secondary_ip_switch(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    write_conf(ec2net.root, "[Interfaces]\nMTU=1500\nManageSecondaryIPs=no\n")
    assert ec2net("setup", "--all").code == 0
    tree = ec2net.tree()
    assert "[Link]\nMTUBytes=1500\n" in tree["70-eth1.network"]
    assert "UseMTU=no" in tree["70-eth1.network"]
    assert not [k for k in tree if "alias" in k]
    rules = tree["70-eth1.network.d/ec2net_policy_4.conf"]
    assert rules.count("[RoutingPolicyRule]") == 1 and "From=10.0.2.41/32" in rules
    assert tree["70-eth1.network.d/ec2net_policy_6.conf"].count("[RoutingPolicyRule]") == 2


def test_refresh_switched_off(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    write_conf(ec2net.root, "[Interfaces]\nRefresh=no\n")
    assert ec2net("refresh", "--all").code == 0
    assert ec2net.tree() == {} and ec2net.mock.count() == 0
    assert ec2net("setup", "--all").code == 0, "setup (boot, hotplug) still works"
    assert ec2net.tree() == golden("dual-stack")


def test_endpoint_precedence(ec2net: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """--imds-endpoint, then $EC2NET_IMDS_ENDPOINT, then [IMDS] Endpoint=."""
    add_link(ec2net.root, "eth0", PRIMARY)
    dead = "http://127.0.0.1:9"  # the discard port: nobody listens
    write_conf(ec2net.root, f"[IMDS]\nEndpoint={ec2net.endpoint}\nDeadline=1\n")

    def setup(*endpoint: str) -> int:
        argv = ["--root", str(ec2net.root), *endpoint, "setup", "eth0"]
        return cli.main(argv, reloader=lambda: None)

    monkeypatch.delenv("EC2NET_IMDS_ENDPOINT", raising=False)
    assert setup() == 0, "the configured endpoint is used"
    assert setup("--imds-endpoint", dead) == 1, "the command line wins"
    monkeypatch.setenv("EC2NET_IMDS_ENDPOINT", dead)
    assert setup() == 1, "the environment wins over the configuration"
    assert setup("--imds-endpoint", ec2net.endpoint) == 0
