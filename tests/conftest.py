"""Shared fixtures: an IMDS mock on 127.0.0.1, fake sysfs links and an in-process CLI."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from imds_mock import ImdsMock
from instance_builder import example

from ec2net import cli, imds, render  # noqa: F401 (loaded before pyfakefs starts, see below)
from ec2net.layout import templates_dir

# ec2net imports its IMDS client (http.client) and jinja2 lazily. Modules first imported while
# pyfakefs is active are unloaded again when it stops, and a package half re-imported in the
# next test breaks in odd ways; importing them here, up front, avoids that.

EXAMPLES_DIR = Path(cli.__file__).parent / "examples"
# Resolved before pyfakefs hides the real file system.
TEMPLATES_DIR = templates_dir()
GOLDEN_DIR = Path(__file__).parent / "golden"


def add_link(root: Path, name: str, mac: str, driver: str | None = "ena") -> None:
    """A /sys/class/net entry as the kernel shows it: address file and driver symlink."""
    base = root / "sys/class/net" / name
    base.mkdir(parents=True)
    (base / "address").write_text(mac + "\n")
    if driver:
        (base / "device").mkdir()
        os.symlink(f"../../../../bus/pci/drivers/{driver}", base / "device" / "driver")


def del_link(root: Path, name: str) -> None:
    base = root / "sys/class/net" / name
    for path in sorted(base.rglob("*"), reverse=True):
        if path.is_symlink() or path.is_file():
            path.unlink()
        else:
            path.rmdir()
    base.rmdir()


def read_tree(directory: Path) -> dict[str, str]:
    """Every file below `directory`, by relative path."""
    if not directory.exists():
        return {}
    return {
        str(p.relative_to(directory)): p.read_text()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@dataclass
class Run:
    code: int
    stdout: str
    log: str


@dataclass
class Cli:
    """Runs `ec2net` in-process against a mock, counting networkd reloads."""

    mock: ImdsMock
    root: Path
    caplog: pytest.LogCaptureFixture
    reloads: int = 0
    extra: list[str] = field(default_factory=list)
    endpoint: str = ""

    def __post_init__(self) -> None:
        # Kept, so that a test can stop the mock and still point the tool at the dead port.
        self.endpoint = self.mock.url

    def _reload(self) -> None:
        self.reloads += 1

    def __call__(self, *args: str) -> Run:
        self.caplog.clear()
        out = io.StringIO()
        argv = ["--root", str(self.root), "--imds-endpoint", self.endpoint, *self.extra, *args]
        with redirect_stdout(out), self.caplog.at_level(logging.DEBUG, logger="ec2net"):
            code = cli.main(argv, reloader=self._reload)
        return Run(code, out.getvalue(), self.caplog.text)

    @property
    def netdir(self) -> Path:
        return self.root / "run/systemd/network"

    def tree(self) -> dict[str, str]:
        return read_tree(self.netdir)


@pytest.fixture
def mock() -> Iterator[ImdsMock]:
    with ImdsMock(example("dual-stack")) as server:
        yield server


@pytest.fixture
def fake_root(fs: Any) -> Path:
    """pyfakefs file system standing in for /; templates, examples and golden files visible."""
    fs.add_real_directory(str(TEMPLATES_DIR))
    fs.add_real_directory(str(EXAMPLES_DIR))
    fs.add_real_directory(str(GOLDEN_DIR))
    return Path("/")


@pytest.fixture
def ec2net(mock: ImdsMock, fake_root: Path, caplog: pytest.LogCaptureFixture) -> Cli:
    # The fake root is "/": alternative names would be given to the real host's links.
    # They are tested in the namespace lab instead.
    dropin = fake_root / "etc/ec2-net-utils.conf.d/00-tests.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Interfaces]\nAlternativeNames=no\n")
    # A short deadline keeps failure cases quick; healthy runs finish far below it.
    return Cli(mock=mock, root=fake_root, caplog=caplog, extra=["--deadline", "3"])
