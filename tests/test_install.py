"""meson install: the exact file list, the installed tool working, units passing
`systemd-analyze verify`, and the udev rule checked with `udevadm test`."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import read_tree
from test_generator import load_generator

from ec2net import facts

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
UNITS = [
    "ec2-net-utils.service",
    "ec2-net-utils@.service",
    "ec2-net-utils-refresh@.service",
    "ec2-net-utils-refresh@.timer",
    "ec2-net-utils-hostname.service",
]
# Our udev rule.
RULE = "99-vpc-policy-routes.rules"
# What the EKS AL2023 AMI masks in /etc/udev/rules.d to turn amazon-ec2-net-utils off. Ours has
# the same name so that the mask turns it off too.
AMAZON_RULE = "99-vpc-policy-routes.rules"
# Everything but the Python package, whose files are checked against the repository below.
SYSTEM_FILES = [
    "bin/ec2net",
    "lib/systemd/network/80-ec2.network",
    "lib/systemd/networkd.conf.d/ec2-net-utils.conf",
    "lib/systemd/system-generators/ec2-net-utils-generator",
    *(f"lib/systemd/system/{unit}" for unit in UNITS),
    f"lib/udev/rules.d/{RULE}",
    "lib/sysctl.d/60-ec2-net-utils.conf",
    "libexec/ec2-net-utils/package-hook",
    "share/bash-completion/completions/ec2net.bash",
    "share/man/man5/ec2-net-utils.conf.5",
    "share/man/man8/ec2-net-utils-generator.8",
    "share/man/man8/ec2-net-utils@.service.8",
    "share/man/man8/ec2net.8",
]


def tool(name: str) -> str:
    path = shutil.which(name, path=f"{BIN}:{os.environ['PATH']}")
    if path is None:
        pytest.fail(f"{name} not found: tests/run.sh installs it")
    return path


def package_files() -> list[str]:
    """Files of the Python package as git tracks them, by their installed relative path."""
    out = subprocess.run(
        ["git", "ls-files", "ec2net", "templates/*.j2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # ec2net/docs.py renders man pages and completion at build time: it and its templates
    # are not installed.
    build_only = ("ec2net/docs.py", "templates/man/", "templates/ec2net.bash.j2")
    return sorted(
        "site/" + f.replace("templates/", "ec2net/templates/")
        for f in out
        if not f.startswith(build_only)
    )


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real (not DESTDIR) install below a temporary prefix, so ExecStart= paths exist."""
    base = tmp_path_factory.mktemp("meson")
    prefix = base / "prefix"
    build = base / "build"
    setup = [tool("meson"), "setup", str(build), str(REPO), f"-Dprefix={prefix}"]
    setup += ["-Dpython.purelibdir=site", "-Dpython.bytecompile=-1", f"-Dpython={sys.executable}"]
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    subprocess.run(setup, check=True, capture_output=True, env=env)
    subprocess.run(
        [tool("meson"), "install", "-C", str(build), "--quiet"],
        check=True,
        capture_output=True,
        env=env,
    )
    yield prefix


def installed(prefix: Path) -> list[str]:
    return sorted(
        str(p.relative_to(prefix)) for p in prefix.rglob("*") if p.is_file() or p.is_symlink()
    )


def test_installed_file_list(prefix: Path) -> None:
    assert installed(prefix) == sorted(SYSTEM_FILES + package_files())
    for rel in ("bin/ec2net", "lib/systemd/system-generators/ec2-net-utils-generator"):
        assert os.access(prefix / rel, os.X_OK)


def test_installed_tool_renders_with_installed_templates(prefix: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(prefix / "site"))
    out = tmp_path / "out"
    cmd = [str(prefix / "bin/ec2net"), "render", "--example", "dual-stack", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=tmp_path)
    assert read_tree(out) == read_tree(REPO / "tests/golden/dual-stack")
    script = (prefix / "bin/ec2net").read_text()
    assert script.startswith(f"#!{sys.executable}\n")


def test_installed_units_and_generator_are_substituted(prefix: Path) -> None:
    unitdir = prefix / "lib/systemd/system"
    for unit in UNITS:
        text = (unitdir / unit).read_text()
        assert "@" + "BINDIR@" not in text and "@HARDENING@" not in text
    service = (unitdir / "ec2-net-utils@.service").read_text()
    assert f"ExecStart={prefix}/bin/ec2net setup -- %I" in service
    assert "CapabilityBoundingSet=CAP_NET_ADMIN" in service
    generator = load_generator(prefix / "lib/systemd/system-generators/ec2-net-utils-generator")
    unit_dir: str = generator.UNIT_DIR
    assert unit_dir == str(unitdir)


def test_installed_files_carry_the_facts(prefix: Path) -> None:
    """meson substituted every @NAME@, with ec2net.facts' values (tests/test_facts.py checks
    that no file spells them out)."""
    values = facts.meson_values()
    texts = {rel: (prefix / rel).read_text() for rel in SYSTEM_FILES if "/man" not in rel}
    for rel, text in texts.items():
        assert re.search(r"@[A-Z_]+@", text) is None, rel
    for unit in UNITS[:3] + UNITS[4:]:
        text = texts[f"lib/systemd/system/{unit}"]
        assert f"\nConditionPathExists={values['ACTIVE_FLAG']}\n" in text, unit
        if "@HARDENING@" in (REPO / f"units/{unit}.in").read_text():
            assert f" -{values['RUN_DIR']}\n" in text, unit  # ReadWritePaths=
    rule = texts[f"lib/udev/rules.d/{RULE}"]
    assert f'ENV{{ID_NET_DRIVER}}!="{values["ENI_DRIVERS_UDEV"]}"' in rule
    hook = texts["libexec/ec2-net-utils/package-hook"]
    for name in ("RUN_DIR", "ACTIVE_FLAG", "PACKAGE_STATE_DIR", "LEFT_MARKER"):
        assert f"\n{name}='{values[name]}'\n" in hook, name
    assert f"\nDRIVERS='{values['ENI_DRIVERS']}'\n" in hook
    assert f"\nGENERATED_MARKER='{values['MARKER']}'\n" in hook


def test_installed_generator_imports_the_installed_package(prefix: Path, tmp_path: Path) -> None:
    """As systemd runs it (python -I -S: no site directory, no PYTHONPATH), it finds
    ec2net.facts where meson installed it; without the package it logs one line, exit 0."""
    generator = prefix / "lib/systemd/system-generators/ec2-net-utils-generator"
    dmi = tmp_path / "sys/class/dmi/id/sys_vendor"
    dmi.parent.mkdir(parents=True)
    dmi.write_text("Amazon EC2\n")
    env = {"EC2NET_GENERATOR_ROOT": str(tmp_path), "PATH": os.environ["PATH"]}
    result = subprocess.run(
        [str(generator), str(tmp_path / "gen")], capture_output=True, text=True, env=env
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert (tmp_path / facts.ACTIVE_FLAG).read_text() == "EC2 instance detected\n"

    hidden = prefix / "site/ec2net"
    hidden.rename(prefix / "site/ec2net.hidden")
    try:
        (tmp_path / facts.ACTIVE_FLAG).unlink()
        result = subprocess.run(
            [str(generator), str(tmp_path / "gen")], capture_output=True, text=True, env=env
        )
    finally:
        (prefix / "site/ec2net.hidden").rename(hidden)
    assert result.returncode == 0
    assert result.stderr.count("\n") == 1 and "ModuleNotFoundError" in result.stderr
    assert not (tmp_path / facts.ACTIVE_FLAG).exists()


def systemd_version() -> int:
    out = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True)
    return int(out.stdout.split()[1])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_verify(prefix: Path, tmp_path: Path) -> None:
    if systemd_version() < 252:
        # Debian 11's 247 (the platform matrix's Python 3.9 root) logs debug lines on stderr.
        pytest.skip("systemd older than 252, the oldest we support")
    unitdir = prefix / "lib/systemd/system"
    instances = []
    for template, name in [
        ("ec2-net-utils@.service", "ec2-net-utils@eth1.service"),
        ("ec2-net-utils@.service", "ec2-net-utils@eth\\x2d1.service"),
        ("ec2-net-utils-refresh@.service", "ec2-net-utils-refresh@eth1.service"),
        ("ec2-net-utils-refresh@.timer", "ec2-net-utils-refresh@eth1.timer"),
    ]:
        link = tmp_path / name
        shutil.copy(unitdir / template, tmp_path / template)
        link.symlink_to(template)
        instances.append(str(link))
    plain = ["ec2-net-utils.service", "ec2-net-utils-hostname.service"]
    for unit in plain:
        shutil.copy(unitdir / unit, tmp_path)
    # Documentation= man pages are looked up in the installed tree; no warning of any kind.
    cmd = ["systemd-analyze", "verify", *(str(tmp_path / u) for u in plain)]
    env = dict(os.environ, MANPATH=str(prefix / "share/man"))
    result = subprocess.run([*cmd, *instances], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


UDEV_TEST = r"""
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/udev
mount -t tmpfs tmpfs /etc/udev/rules.d
# Installed like a package installs it: below /etc in precedence, so /etc/udev/rules.d can mask it
# (/run/udev/rules.d stands in for /usr/lib/udev/rules.d, which holds udev's own rules).
mkdir -p /run/udev/rules.d
cp "$RULES" /run/udev/rules.d/
# The opt-out of the EKS AMIs: an empty file or a /dev/null symlink of the same name in /etc.
case "$MASK" in
    empty) : > "/etc/udev/rules.d/$AMAZON_RULE" ;;
    devnull) ln -s /dev/null "/etc/udev/rules.d/$AMAZON_RULE" ;;
esac
# veth cannot have the ena driver: this rule, ordered after 80-net-setup-link.rules and before
# ours, gives devices named ena-* the property the kernel driver would give them.
echo 'SUBSYSTEM=="net", KERNEL=="ena-*", ENV{ID_NET_DRIVER}="ena"' > /etc/udev/rules.d/85-fake.rules
# udevadm test prints the properties as KEY=value lines in systemd 252, indented under
# "Properties:" in 257 and 262. 262's does not run PROGRAM= (it logs "skipping execution of
# 'CMD'"): such lines are passed on as "SKIPPED CMD".
for dev in ena-fake1 plainveth; do
    echo "== $dev"
    udevadm test --action=add /sys/class/net/$dev 2>&1 | sed -nE \
        -e 's/^ *((ID_NET_DRIVER|SYSTEMD_WANTS)=)/\1/p' \
        -e "s/.*skipping execution of '([^']*systemd-escape[^']*)'.*/SKIPPED \\1/p"
done
"""


def udev_test(prefix: Path, mask: str) -> list[str]:
    """`udevadm test` of an ena-driver and a plain veth with the installed rule, in a private
    network and mount namespace (tmpfs over /run and /etc/udev/rules.d: the host is untouched).
    mask: "" (none), "empty" or "devnull", the file put at /etc/udev/rules.d/AMAZON_RULE."""
    if shutil.which("udevadm") is None:
        pytest.fail("udevadm not found: tests/run.sh installs the udev package")
    netns = f"ec2net-udev-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(
            ["ip", "-n", netns, "link", "add", "ena-fake1", "type", "veth", "peer", "plainveth"],
            check=True,
        )
        result = subprocess.run(
            ["ip", "netns", "exec", netns, "unshare", "-m", "sh", "-c", UDEV_TEST],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(
                os.environ,
                RULES=str(prefix / "lib/udev/rules.d" / RULE),
                MASK=mask,
                AMAZON_RULE=AMAZON_RULE,
            ),
        )
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    skipped = [line for line in lines if line.startswith("SKIPPED ")]
    if skipped:
        # The rule's PROGRAM= was not run: check the command it would run, and run it here.
        assert skipped == ["SKIPPED /usr/bin/systemd-escape -- ena-fake1"], lines
        escaped = subprocess.run(
            ["/usr/bin/systemd-escape", "--", "ena-fake1"], capture_output=True, text=True
        ).stdout.strip()
        lines = [
            f"SYSTEMD_WANTS=ec2-net-utils@{escaped}.service"
            if line == "SYSTEMD_WANTS=ec2-net-utils@.service"
            else line
            for line in lines
            if not line.startswith("SKIPPED ")
        ]
    return lines


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network and mount namespace")
def test_udev_rule_wants_the_unit_for_ena_only(prefix: Path) -> None:
    lines = udev_test(prefix, "")
    assert lines == [
        "== ena-fake1",
        "ID_NET_DRIVER=ena",
        "SYSTEMD_WANTS=ec2-net-utils@ena\\x2dfake1.service",
        "== plainveth",
        "ID_NET_DRIVER=veth",
        "",
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network and mount namespace")
@pytest.mark.parametrize("mask", ["empty", "devnull"])
def test_udev_rule_masked_like_amazons_wants_nothing(prefix: Path, mask: str) -> None:
    # The EKS AL2023 AMI turns amazon-ec2-net-utils off this way; it must turn us off as well.
    assert udev_test(prefix, mask) == [
        "== ena-fake1",
        "ID_NET_DRIVER=ena",
        "== plainveth",
        "ID_NET_DRIVER=veth",
        "",
    ]


def test_fallback_network_can_be_disabled_like_amazons(prefix: Path) -> None:
    # The EKS AMIs turn amazon-ec2-net-utils' fallback off with a drop-in
    # 80-ec2.network.d/10-eks-disable.conf holding "[Match] Name=none": networkd adds a drop-in's
    # [Match] conditions to the file's, and no link is called "none". That works for ours only if
    # ours has the same name and matches by a [Match] condition other than Name= (which the
    # drop-in would add to instead of narrowing).
    network = prefix / "lib/systemd/network/80-ec2.network"
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(network.read_text())
    assert dict(parser["Match"]) == {"Driver": " ".join(facts.ENI_DRIVERS)}
