"""ec2-net-utils-generator: decisions from local facts, outputs, and never failing the boot."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import types
from pathlib import Path
from typing import Any

import pytest

# Imported before pyfakefs starts: the generator imports it from the package.
from ec2net import facts

SOURCE = Path(__file__).resolve().parents[1] / "generator/ec2-net-utils-generator.in"
UNIT_DIR = "/usr/lib/systemd/system"
WANTS = "/gen/systemd-networkd.service.wants/ec2-net-utils.service"
FLAG = "/" + facts.ACTIVE_FLAG


def load_generator(path: Path = SOURCE) -> types.ModuleType:
    loader = importlib.machinery.SourceFileLoader("ec2_net_utils_generator", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture
def gen(fs: Any) -> types.ModuleType:
    fs.add_real_file(str(SOURCE))
    module = load_generator()
    module.UNIT_DIR = UNIT_DIR  # meson substitutes it at install time
    os.makedirs("/gen")
    os.makedirs("/proc")
    Path("/proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz root=/dev/nvme0n1p1 ro\n")
    return module


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_text(text)


def run(gen: types.ModuleType) -> int:
    code: int = gen.main(["generator", "/gen", "/gen.early", "/gen.late"], root="/")
    return code


def active() -> bool:
    return os.path.exists(FLAG) and os.path.islink(WANTS)


@pytest.mark.parametrize("rel", ["sys/class/dmi/id/sys_vendor", "sys/class/dmi/id/board_vendor"])
def test_acts_on_nitro(gen: types.ModuleType, rel: str) -> None:
    write("/" + rel, "Amazon EC2\n")
    assert run(gen) == 0
    assert os.readlink(WANTS) == f"{UNIT_DIR}/ec2-net-utils.service"
    assert Path(FLAG).read_text() == "EC2 instance detected\n"
    assert os.path.isdir("/run/systemd/network")


def test_acts_on_xen_instance(gen: types.ModuleType) -> None:
    write("/sys/hypervisor/uuid", "ec2e1916-9099-7caf-fd21-012345abcdef\n")
    run(gen)
    assert active()


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"/sys/class/dmi/id/sys_vendor": "LENOVO\n"},
        {"/sys/hypervisor/uuid": "1a2b3c4d-0000-0000-0000-000000000000\n"},
        {"/sys/class/dmi/id/sys_vendor": "Amazon EC2 but not really\n"},
    ],
)
def test_stays_out_elsewhere(gen: types.ModuleType, files: dict[str, str]) -> None:
    for path, text in files.items():
        write(path, text)
    assert run(gen) == 0
    assert not os.path.lexists(WANTS)
    assert not os.path.exists(FLAG)
    assert not os.path.exists("/run/systemd/network")


@pytest.mark.parametrize(
    ("cmdline", "config", "expected"),
    [
        ("quiet ec2net=off", None, False),
        ("ec2net=on ec2net=0", None, False),  # the last one wins
        ("quiet", "[Main]\nEnable=no\n", False),
        ("ec2net=on", "[Main]\nEnable=no\n", True),  # kernel command line beats the config
        ("quiet", "[Main]\nEnable=auto\n", True),
        ("quiet", "[Main]\nEnable=bogus\n", False),  # ec2net refuses it: stay out
        ("ec2net=on", "[Main]\nEnable=bogus\n", True),
    ],
)
def test_overrides_on_an_ec2_instance(
    gen: types.ModuleType, cmdline: str, config: str | None, expected: bool
) -> None:
    write("/sys/class/dmi/id/sys_vendor", "Amazon EC2\n")
    write("/proc/cmdline", cmdline + "\n")
    if config is not None:
        write("/etc/ec2-net-utils.conf", config)
    run(gen)
    assert active() is expected


def test_forced_on_elsewhere_and_dropins_win(gen: types.ModuleType) -> None:
    write("/etc/ec2-net-utils.conf", "[Main]\nEnable=no\n")
    write("/etc/ec2-net-utils.conf.d/50-lab.conf", "[Main]\nEnable=yes\n")
    write("/etc/ec2-net-utils.conf.d/README", "not a .conf file\n")
    run(gen)
    assert active()
    assert Path(FLAG).read_text() == "configuration [Main] Enable=yes\n"


def test_switching_off_removes_the_flag_on_daemon_reload(gen: types.ModuleType) -> None:
    write("/sys/class/dmi/id/sys_vendor", "Amazon EC2\n")
    run(gen)
    assert active()
    os.unlink(WANTS)  # systemd empties generator directories before each run
    write("/proc/cmdline", "ec2net=off\n")
    run(gen)
    assert not os.path.exists(FLAG)
    assert not os.path.lexists(WANTS)


def test_hostname_unit_unless_switched_off(gen: types.ModuleType) -> None:
    write("/sys/class/dmi/id/sys_vendor", "Amazon EC2\n")
    run(gen)
    hostname = WANTS.replace("ec2-net-utils.service", "ec2-net-utils-hostname.service")
    assert os.readlink(hostname) == f"{UNIT_DIR}/ec2-net-utils-hostname.service"
    os.unlink(hostname)
    os.unlink(WANTS)
    write("/etc/ec2-net-utils.conf", "[Main]\nSetHostname=no\n")
    run(gen)
    assert active() and not os.path.lexists(hostname)


def test_a_config_ec2net_refuses_keeps_it_out(
    gen: types.ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """ec2net exits 2 on such a file, so every unit would fail; and it may say Enable=no."""
    write("/sys/class/dmi/id/sys_vendor", "Amazon EC2\n")
    run(gen)
    assert active()
    os.unlink(WANTS)
    write("/etc/ec2-net-utils.conf", "Enable=yes without a section\n")
    assert run(gen) == 0
    assert not active() and not os.path.exists(FLAG), "a daemon-reload also switches off"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "configuration rejected" in err and "stays inactive" in err


def test_never_fails_the_boot(gen: types.ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    write("/sys/class/dmi/id/sys_vendor", "Amazon EC2\n")
    write("/" + facts.RUN_DIR, "a file where a directory belongs")
    assert run(gen) == 0
    assert "error, ec2-net-utils stays inactive" in capsys.readouterr().err
    assert gen.main(["generator"]) == 0, "wrong arguments: still exit 0"
