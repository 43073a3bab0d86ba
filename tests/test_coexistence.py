"""Living with other owners: shadowing .network files, admin overrides, symlinked dirs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import Cli
from test_setup_tree import attach_dual_stack, golden


def link_state(root: Path, name: str, ifindex: int, network_file: str) -> None:
    (root / f"sys/class/net/{name}/ifindex").write_text(f"{ifindex}\n")
    state = root / "run/systemd/netif/links"
    state.mkdir(parents=True, exist_ok=True)
    (state / str(ifindex)).write_text(f"ADMIN_STATE=configured\nNETWORK_FILE={network_file}\n")


def test_shadowing_network_file_is_reported(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    link_state(ec2net.root, "eth0", 2, "/usr/lib/systemd/network/80-ec2.network")
    link_state(ec2net.root, "eth1", 3, "/run/systemd/network/10-netplan-eth1.network")
    run = ec2net("setup", "--all")
    assert run.code == 0
    assert ec2net.tree() == golden("dual-stack"), "we still write our files"
    warnings = [r.getMessage() for r in ec2net.caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "eth1: networkd applies /run/systemd/network/10-netplan-eth1.network, which sorts "
        "before /run/systemd/network/70-eth1.network and hides it and its drop-ins"
    ], "the fallback (80-ec2.network, not reloaded yet) is no shadow"
    shown = json.loads(ec2net("show", "--json").stdout)["interfaces"]
    assert shown[1]["shadowed_by"] == "/run/systemd/network/10-netplan-eth1.network"
    assert shown[0]["shadowed_by"] is None
    assert shown[0]["network_file"] == "/usr/lib/systemd/network/80-ec2.network"
    assert (
        "WARNING: shadowed by /run/systemd/network/10-netplan-eth1.network"
        in ec2net("show", "eth1").stdout
    )


def test_admin_override_in_etc_is_not_a_shadow(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    admin = ec2net.root / "etc/systemd/network/70-eth1.network"
    admin.parent.mkdir(parents=True)
    admin.write_text("[Match]\nName=eth1\n[Network]\nDHCP=no\n")
    link_state(ec2net.root, "eth1", 3, str(admin))
    run = ec2net("setup", "--all")
    assert run.code == 0 and "WARNING" not in run.log
    assert admin.read_text() == "[Match]\nName=eth1\n[Network]\nDHCP=no\n"
    assert f"admin override: {admin}" in ec2net("show", "eth1").stdout


@pytest.mark.parametrize("which", ["dropin", "netdir"])
def test_refuses_to_write_through_symlinks(ec2net: Cli, which: str) -> None:
    attach_dual_stack(ec2net)
    elsewhere = ec2net.root / "elsewhere"
    elsewhere.mkdir()
    if which == "netdir":
        ec2net.netdir.parent.mkdir(parents=True)
        ec2net.netdir.symlink_to(elsewhere)
    else:
        ec2net.netdir.mkdir(parents=True)
        (ec2net.netdir / "70-eth1.network.d").symlink_to(elsewhere)
    run = ec2net("setup", "--all")
    assert run.code == 1
    assert "refusing to write through symbolic link" in run.log
    assert os.listdir(elsewhere) == []


def test_files_are_0644_and_dirs_0755(ec2net: Cli) -> None:
    attach_dual_stack(ec2net)
    old = os.umask(0o077)
    try:
        assert ec2net("setup", "--all").code == 0
    finally:
        os.umask(old)
    for path in ec2net.netdir.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode == (0o755 if path.is_dir() else 0o644), path
