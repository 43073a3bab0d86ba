"""`ec2net set-hostname`: IMDS local-hostname only where no static hostname is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Cli

from ec2net import commands, hostname
from ec2net.config import Config

HOST = "/latest/meta-data/local-hostname"


def run(ec2net: Cli, **config: object) -> tuple[int, list[str]]:
    calls: list[str] = []
    opts = commands.Options(
        root=ec2net.root,
        endpoints=(ec2net.endpoint,),
        deadline=3,
        config=Config(**config),  # type: ignore[arg-type]
    )
    return commands.set_hostname(opts, setter=calls.append), calls


@pytest.mark.parametrize("text", [None, "", "# comment only\n", "localhost\n"])
def test_sets_imds_hostname_without_static_one(ec2net: Cli, text: str | None) -> None:
    if text is not None:
        path = ec2net.root / "etc/hostname"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    code, calls = run(ec2net)
    assert (code, calls) == (0, ["ip-10-0-1-23.ec2.internal"])
    assert ec2net.mock.count(HOST) == 1


def test_static_hostname_wins_and_imds_is_not_asked(ec2net: Cli) -> None:
    path = ec2net.root / "etc/hostname"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("db-primary\n")
    assert run(ec2net) == (0, [])
    assert ec2net.mock.count() == 0


def test_switched_off(ec2net: Cli) -> None:
    assert run(ec2net, set_hostname=False) == (0, [])
    assert ec2net.mock.count() == 0


@pytest.mark.parametrize(
    "value", ["evil;rm -rf /", "-starts-with-dash.example", "a" * 300, "under_score"]
)
def test_invalid_imds_hostname_is_an_error(
    ec2net: Cli, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    ec2net.mock.set("local-hostname", value)
    assert run(ec2net) == (1, [])
    assert "'local-hostname': not a valid hostname" in caplog.text


def test_missing_local_hostname(ec2net: Cli, caplog: pytest.LogCaptureFixture) -> None:
    ec2net.mock.set("local-hostname", None)
    assert run(ec2net) == (1, [])
    assert "'local-hostname': missing" in caplog.text


def test_unchanged_hostname_is_not_set_again(tmp_path: Path) -> None:
    calls: list[str] = []
    changed = hostname.set_from_imds(
        tmp_path,
        lambda: "ip-10-0-1-23.ec2.internal",
        lambda: "ip-10-0-1-23.ec2.internal",
        calls.append,
    )
    assert (changed, calls) == (False, [])


def test_long_fqdn_keeps_first_label() -> None:
    long_name = "ip-10-0-1-23." + "sub." * 15 + "example"
    assert len(long_name) > 64
    assert hostname.parse_hostname(long_name) == "ip-10-0-1-23"
    assert hostname.parse_hostname("IP-10-0-1-23.EC2.Internal.") == "ip-10-0-1-23.ec2.internal"
