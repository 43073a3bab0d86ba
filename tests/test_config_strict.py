"""/etc/ec2-net-utils.conf read strictly: duplicates, [DEFAULT], one file named per error, one
line per error, BOM, ASCII digits only, non-UTF-8 and non-regular files, bounded messages."""

from __future__ import annotations

import io
import os
import threading
from contextlib import redirect_stderr
from pathlib import Path

import pytest
from test_generator import SOURCE, load_generator

from ec2net import config, facts
from ec2net.errors import UsageError

MAIN = "etc/ec2-net-utils.conf"


def write(root: Path, text: str | bytes, name: str | None = None) -> Path:
    path = root / (MAIN if name is None else f"etc/ec2-net-utils.conf.d/{name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def load_error(root: Path) -> str:
    with pytest.raises(UsageError) as info:
        config.load(root)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("[Interfaces]\nMTU=1500\nRefresh=no\nMTU=9001\n", 4, "key MTU= appears twice"),
        ("[Main]\nEnable=yes\n[IMDS]\nDeadline=5\n[Main]\nEnable=no\n", 5, "section [Main]"),
    ],
)
def test_duplicates_within_one_file_name_file_and_line(
    tmp_path: Path, text: str, line: int, what: str
) -> None:
    path = write(tmp_path, text, "50-dup.conf")
    message = load_error(tmp_path)
    assert f"configuration '{path}': line {line}: " in message
    assert what in message


def test_the_same_section_in_two_files_is_fine(tmp_path: Path) -> None:
    write(tmp_path, "[Interfaces]\nMTU=1500\nRefresh=no\n")
    write(tmp_path, "[Interfaces]\nMTU=9001\n", "10-jumbo.conf")
    conf = config.load(tmp_path)
    assert (conf.mtu, conf.refresh) == (9001, False), "a later file wins key by key"


def test_default_section_is_not_special(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, "[DEFAULT]\nMTU=1500\nRefresh=no\n[Interfaces]\nManageSecondaryIPs=no\n")
    conf = config.load(tmp_path)
    assert conf.mtu is None and conf.refresh, "[DEFAULT] keys reach no other section"
    assert not conf.manage_secondary_ips
    assert "unknown section [DEFAULT] ignored" in caplog.text


def test_error_names_only_the_file_with_the_bad_value(tmp_path: Path) -> None:
    main = write(tmp_path, "[Interfaces]\nMTU=1500\n")
    first = write(tmp_path, "[Interfaces]\nRefresh=yes\n", "10-first.conf")
    bad = write(tmp_path, "[Interfaces]\nMTU=huge\n", "20-bad.conf")
    write(tmp_path, "[IMDS]\nDeadline=5\n", "30-last.conf")
    message = load_error(tmp_path)
    assert f"configuration '{bad}': [Interfaces] MTU=: expected an MTU" in message
    assert f"'{main}'" not in message and str(first) not in message


@pytest.mark.parametrize(
    "text",
    [
        "[Interfaces]\nMTU=1500\n  = x\n[broken\nnot a key line\nanother one\n",
        "[Interfaces\nMTU=1500\n",
        "MTU=1500\n[Interfaces]\n",
        "\n\n[Interfaces]\n[Interfaces]\n",
    ],
)
def test_parse_errors_are_one_line(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert f"configuration '{path}': line " in load_error(tmp_path)


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    text = "[Interfaces]\r\nMTU= 9001 \r\n[IMDS]\r\nDeadline=.5\r\nReadTimeout=3.\r\n"
    write(tmp_path, b"\xef\xbb\xbf" + text.encode())
    conf = config.load(tmp_path)
    assert (conf.mtu, conf.deadline, conf.read_timeout) == (9001, 0.5, 3.0)


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("[Interfaces]\nMTU=\u0661\u0665\u0660\u0660\n", "MTU=: expected an MTU"),  # Arabic-Indic
        ("[Interfaces]\nMTU=\uff11\uff15\uff10\uff10\n", "MTU=: expected an MTU"),  # full width
        ("[IMDS]\nDeadline=1_0\n", "Deadline=: expected seconds"),
        ("[IMDS]\nDeadline=\u0663\n", "Deadline=: expected seconds"),
        ("[IMDS]\nReadTimeout=1e1\n", "ReadTimeout=: expected seconds"),
        ("[IMDS]\nEndpoint=http://127.0.0.1:0\n", "Endpoint=: expected http://HOST[:PORT]"),
        ("[IMDS]\nEndpoint=http://127.0.0.1:65536\n", "Endpoint=: expected http://HOST[:PORT]"),
        ("[IMDS]\nEndpoint=http://u:p@127.0.0.1\n", "Endpoint=: expected http://HOST[:PORT]"),
    ],
)
def test_only_ascii_digits_and_one_endpoint_grammar(tmp_path: Path, text: str, what: str) -> None:
    write(tmp_path, text)
    assert what in load_error(tmp_path)


def test_non_utf8_file_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    write(tmp_path, "[Interfaces]\nMTU=1500\n")
    bad = write(tmp_path, b"[Interfaces]\nUnmanaged=caf\xe9\n", "20-latin1.conf")
    assert f"configuration '{bad}': not UTF-8" in load_error(tmp_path)


def load_in_thread(root: Path) -> str:
    """config.load, failing the test instead of hanging when it blocks (the old code would on
    a FIFO it opened)."""
    outcome: list[str] = []

    def target() -> None:
        try:
            config.load(root)
            outcome.append("loaded")
        except UsageError as exc:
            outcome.append(str(exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert outcome, "config.load blocked"
    return outcome[0]


def test_fifo_and_device_dropins_are_refused_without_blocking(tmp_path: Path) -> None:
    dropins = tmp_path / "etc/ec2-net-utils.conf.d"
    dropins.mkdir(parents=True)
    os.mkfifo(dropins / "10-fifo.conf")
    assert load_in_thread(tmp_path) == (f"configuration '{dropins / '10-fifo.conf'}': a FIFO")
    os.unlink(dropins / "10-fifo.conf")
    os.symlink("/dev/zero", dropins / "20-zero.conf")
    assert load_in_thread(tmp_path).endswith("20-zero.conf': a character device")
    os.unlink(dropins / "20-zero.conf")
    (dropins / "30-dir.conf").mkdir()
    assert load_in_thread(tmp_path).endswith("30-dir.conf': a directory")
    (dropins / "30-dir.conf").rmdir()
    with open(dropins / "40-big.conf", "wb") as handle:
        handle.truncate(config.MAX_CONFIG_BYTES + 1)
    assert "40-big.conf': larger than" in load_in_thread(tmp_path)
    os.unlink(dropins / "40-big.conf")
    # systemd's way to mask a file, and a dangling link: no file, no error.
    os.symlink("/dev/null", dropins / "50-masked.conf")
    os.symlink("nowhere", dropins / "60-dangling.conf")
    assert load_in_thread(tmp_path) == "loaded"


def test_huge_values_are_quoted_short(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, "[Interfaces]\n" + "K" * 300_000 + "=1\n[" + "S" * 300_000 + "]\n")
    config.load(tmp_path)
    assert caplog.records and all(len(r.getMessage()) < 400 for r in caplog.records)
    write(tmp_path, "[Interfaces]\nRefresh=" + "\n ".join(["y" * 1000] * 500) + "\n")
    message = load_error(tmp_path)
    assert "Refresh=: expected yes or no, got 'yyyy" in message and "characters)" in message
    write(tmp_path, "[Interfaces]\nUnmanaged=" + "a:b:c:d:e:" + "f" * 500_000 + "\n")
    assert "not a MAC address" in load_error(tmp_path)


def run_generator(root: Path) -> tuple[str | None, str]:
    """The generator, as systemd runs it, on an EC2 instance below `root`: (flag, stderr)."""
    dmi = root / "sys/class/dmi/id/sys_vendor"
    dmi.parent.mkdir(parents=True, exist_ok=True)
    dmi.write_text("Amazon EC2\n")
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        assert load_generator(SOURCE).main(["generator", str(root / "gen")], str(root)) == 0
    flag = root / facts.ACTIVE_FLAG
    return (flag.read_text() if flag.exists() else None), stderr.getvalue()


@pytest.mark.parametrize(
    "text",
    [
        "[Main]\nEnable=yes\n[Main]\nEnable=no\n",
        "[Main]\nEnable=no\n[IMDS]\nDeadline=5\n[Main]\nSetHostname=no\n",
        "[Main]\nEnable=yes\nEnable=no\n",
        "[Main]\nEnable=maybe\n",
    ],
)
def test_generator_and_tool_agree_on_a_file_ec2net_refuses(tmp_path: Path, text: str) -> None:
    write(tmp_path, "[Main]\nEnable=yes\n", "90-later.conf")  # a later file does not save it
    """Issue 14's bug: the generator used to drop such a file and enable the units anyway on
    an EC2 instance, while ec2net refused to run. Both read it through ec2net.facts now: the
    tool exits 2, the generator stays out (no flag, no wants) and says why in one line."""
    write(tmp_path, text)
    message = load_error(tmp_path)
    flag, err = run_generator(tmp_path)
    assert flag is None and not (tmp_path / "gen").exists()
    assert err.count("\n") == 1 and "configuration rejected" in err, err
    assert ("appears twice" in message) == ("Duplicate" in err or "already exists" in err)


def test_generator_and_tool_agree_on_a_valid_file(tmp_path: Path) -> None:
    write(tmp_path, "[Main]\nEnable=yes\n")
    write(tmp_path, "[Main]\nEnable=no\nSetHostname=no\n", "50-off.conf")
    conf = config.load(tmp_path)
    assert (conf.enable, conf.set_hostname) == (False, False)
    assert run_generator(tmp_path) == (None, "")
