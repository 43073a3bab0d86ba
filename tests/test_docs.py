"""Man pages and bash completion are generated from the argparse definition and the config
schema: every command and option is documented, the pages render without warnings, and the
completion completes."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ec2net import config, docs
from ec2net.cli import build_parser


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    docs.render_all(out)
    return out


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s != "-h" and s != "--help"}


def text_of(page: Path) -> str:
    return page.read_text().replace("\\-", "-").replace("\\e", "\\")


def test_every_command_and_option_is_in_the_man_page(generated: Path) -> None:
    parser = build_parser()
    page = text_of(generated / "ec2net.8")
    subcommands = docs._subcommands(parser)
    assert set(subcommands) >= {"setup", "refresh", "remove", "render", "show", "check"}
    for name, sub in subcommands.items():
        assert f".SS {name}\n" in page
        for option in option_strings(sub):
            assert option in page, (name, option)
    for option in option_strings(parser):
        assert option in page, option


def test_every_config_key_is_in_the_conf_page(generated: Path) -> None:
    page = text_of(generated / "ec2-net-utils.conf.5")
    for section, keys in config._SCHEMA.items():
        assert f".SH [{section}]" in page
        for key in keys:
            assert f".B {key}=" in page, key


@pytest.mark.parametrize("name", sorted(docs.PAGES))
def test_pages_render_without_warnings(generated: Path, name: str) -> None:
    if shutil.which("man") is None:
        pytest.fail("man not found: tests/run.sh installs man-db")
    result = subprocess.run(
        ["man", "--warnings", "-E", "UTF-8", "-l", str(generated / name)],
        capture_output=True,
        text=True,
        env={"MANWIDTH": "80", "LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) > 15


def complete(generated: Path, *words: str) -> list[str]:
    script = (
        f"source {generated / 'ec2net.bash'}; COMP_WORDS=({' '.join(words)}); "
        f"COMP_CWORD={len(words) - 1}; _ec2net; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}  # where `ec2net` is
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, env=env
    )
    return out.stdout.split()


def test_bash_completion(generated: Path) -> None:
    assert complete(generated, "ec2net", "re") == ["refresh", "remove", "render"]
    assert complete(generated, "ec2net", "--no") == ["--no-reload"]
    assert complete(generated, "ec2net", "refresh", "--") == ["--all", "--coalesce"]
    assert complete(generated, "ec2net", "render", "--ex") == ["--example"]
    assert "dual-stack" in complete(generated, "ec2net", "render", "--example", "''")
    assert "lo" in complete(generated, "ec2net", "setup", "l")
