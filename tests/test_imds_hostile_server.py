"""ImdsClient against a server that misbehaves byte by byte (tests/hostile_server.py): whatever
it sends, the client ends with a value or a one-line ImdsError, within its deadline + 1 s and in
bounded memory, and so does a whole `ec2net setup --all` process.

Every client call runs in a thread that must end within deadline + 1 s, so a client that hangs
shows as a failed test, not as a stuck suite (the server stops at the end of the test, which
lets such a thread finish)."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import add_link
from hostile_server import (
    GOOD_TOKEN,
    TOKEN,
    HostileServer,
    Script,
    healthy,
    response,
    send,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ec2net.errors import ImdsError
from ec2net.imds import ImdsClient

DEADLINE = 2.0
MAC_PATH = "/latest/meta-data/mac"
MEMORY_LIMIT = 8 * 1024 * 1024  # a response is capped at 1 MiB; allow for the client's copies
OK_HEAD = b"HTTP/1.1 200 OK\r\n"


def on_value(script: Script) -> Callable[[str, str], Script]:
    """A good token, then `script` for every metadata request."""
    return lambda method, path: healthy(method, path) if path == TOKEN else script


def on_token(script: Script) -> Callable[[str, str], Script]:
    return lambda method, path: script if path == TOKEN else healthy(method, path)


def outcome(server: HostileServer, deadline: float = DEADLINE) -> object:
    """`get("mac")` in a thread that must end within deadline + 1 s: the value or exception."""
    result: list[object] = []

    def run() -> None:
        try:
            with ImdsClient([server.url], deadline=deadline) as imds:
                result.append(imds.get("mac"))
        except Exception as exc:  # the tests look at which one
            result.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(deadline + 1.0)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"still running {elapsed:.1f} s after a {deadline} s deadline"
    return result[0]


def imds_error(server: HostileServer, deadline: float = DEADLINE) -> ImdsError:
    result = outcome(server, deadline)
    assert isinstance(result, ImdsError), repr(result)
    assert "\n" not in str(result) and "\r" not in str(result)
    return result


# --- slow drip: the deadline bounds reading, not only connecting ---------------------------

DRIPS = {
    "status line": Script(response(body=b"value"), interval=0.3, drip=True, then="hang"),
    "headers": Script(OK_HEAD + b"X-Slow: ", repeat=b"a", interval=0.3, drip=True),
    "body": Script(OK_HEAD + b"Content-Length: 100000\r\n\r\n", repeat=b"v", interval=0.3),
    "chunked body": Script(
        OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n",
        repeat=b"1\r\nv\r\n",
        interval=0.3,
        drip=True,
    ),
}


@pytest.mark.parametrize("request_kind", ["token", "value"])
@pytest.mark.parametrize("where", list(DRIPS))
def test_slow_drip_ends_at_the_deadline(where: str, request_kind: str) -> None:
    route = on_token if request_kind == "token" else on_value
    with HostileServer(route(DRIPS[where])) as server:
        error = imds_error(server)
    assert "read timed out" in error.reason


def test_slow_drip_cli_setup_all_exits_within_the_deadline(tmp_path: Path) -> None:
    add_link(tmp_path, "eth0", "0e:49:61:0f:c3:11")
    dropin = tmp_path / "etc/ec2-net-utils.conf.d/00-tests.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Interfaces]\nAlternativeNames=no\n")
    env = {
        k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "EC2NET_IMDS_ENDPOINT")
    }
    with HostileServer(on_value(DRIPS["headers"])) as server:
        cmd = [sys.executable, "-m", "ec2net", "--deadline", str(DEADLINE), "--root", str(tmp_path)]
        cmd += ["--imds-endpoint", server.url, "--no-reload", "setup", "--all"]
        started = time.monotonic()
        child = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        try:
            _, stderr = child.communicate(timeout=DEADLINE + 1.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            pytest.fail(
                f"ec2net still running {DEADLINE + 1.0} s after start (--deadline {DEADLINE})"
            )
        elapsed = time.monotonic() - started
    assert child.returncode == 1, stderr
    assert elapsed <= DEADLINE + 1.0
    assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert "read timed out" in stderr
    assert not list((tmp_path / "run/systemd/network").glob("70-*"))


# --- caps: sizes, headers, compression --------------------------------------------------------

CHUNK = b"v" * 65536
CAPPED = {
    "Content-Length huge, never sent": (
        send(OK_HEAD + b"Content-Length: 10000000000\r\n\r\nvalue", then="hang"),
        "Content-Length 10000000000 is over 1 MiB",
    ),
    "Content-Length 2 MiB": (
        Script(OK_HEAD + b"Content-Length: 2097152\r\n\r\n", CHUNK),
        "Content-Length 2097152 is over 1 MiB",
    ),
    "chunked without end": (
        Script(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n", b"10000\r\n" + CHUNK + b"\r\n"),
        "response body over 1 MiB",
    ),
    "no length, never closed": (Script(OK_HEAD + b"\r\n", CHUNK), "response body over 1 MiB"),
    "many headers": (
        Script(OK_HEAD, b"X-Flood: a\r\n"),
        "invalid response: 'got more than 100 headers'",
    ),
    "long headers": (
        Script(OK_HEAD, b"X-Flood: " + b"a" * 4000 + b"\r\n"),
        "status line and headers over 64 KiB",
    ),
    "status line without end": (Script(b"HTTP/1.1 200 ", CHUNK), "status line and headers"),
    # Python 3.14's http.client stops after 100 interim responses itself ("got more than 100
    # interim responses", an invalid response); before 3.14 our head cap stops it.
    "100 Continue flood": (
        Script(b"", b"HTTP/1.1 100 Continue\r\n\r\n"),
        "status line and headers over 64 KiB"
        if sys.version_info < (3, 14)
        else "more than 100 interim responses",
    ),
    "gzip body": (
        send(response("200 OK", gzip.compress(b"\0" * (20 << 20)), "Content-Encoding: gzip")),
        "Content-Encoding 'gzip' not supported",
    ),
    "compressed transfer coding": (
        send(response("200 OK", b"", "Transfer-Encoding: gzip, chunked")),
        "Transfer-Encoding 'gzip, chunked' not supported",
    ),
}


@pytest.mark.parametrize("case", list(CAPPED))
def test_oversized_or_compressed_response_is_refused(case: str) -> None:
    script, reason = CAPPED[case]
    with HostileServer(on_value(script)) as server:
        tracemalloc.start()
        try:
            error = imds_error(server)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert reason in error.reason
    assert MAC_PATH in str(error)
    assert peak < MEMORY_LIMIT, f"{peak / 2**20:.1f} MiB allocated"
    if "invalid response" not in error.reason:  # http.client's own limits are retried
        assert sum(r.method == "GET" for r in server.requests) == 1, "a cap is final, not retried"


# --- the session token is checked before it is used ------------------------------------------

BAD_TOKENS = {
    "non-latin-1": ("токен".encode(), "not printable ASCII"),
    "latin-1 high byte": (b"tok\xe9n", "not printable ASCII"),
    "control character": (b"tok\x01en", "not printable ASCII"),
    "CR LF inside": (b"tok\r\nX-Injected: yes", "not printable ASCII"),
    "NUL": (b"tok\0en", "not printable ASCII"),
    "10 kB": (b"A" * 10_000, "token of 10000 characters is too long"),
    "empty": (b"", "empty token"),
    "whitespace only": (b" \r\n\t ", "empty token"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_token_is_refused_before_use(case: str) -> None:
    body, reason = BAD_TOKENS[case]
    with HostileServer(on_token(send(response(body=body), then="keep"))) as server:
        error = imds_error(server)
    assert error.path == TOKEN and reason in error.reason
    assert [r.method for r in server.requests] == ["PUT"], "never sent, never retried"


# --- garbage from the server ------------------------------------------------------------------

GARBAGE = {
    "invalid status line": (send(b"garbage\r\n\r\n"), "invalid status line 'garbage"),
    "invalid status code": (send(b"HTTP/1.1 2x0 OK\r\n\r\n"), "invalid status line"),
    "HTTP/0.9 (no status line)": (send(b"10.0.1.5\n"), "invalid status line '10.0.1.5"),
    "no answer at all": (send(b""), "connection closed without a response"),
    "103 before the answer": (
        send(b"HTTP/1.1 103 Early Hints\r\n\r\n" + response(body=b"value")),
        "unexpected interim response HTTP 103",
    ),
    "301": (send(response("301 Moved", b"", "Location: /latest/x")), "HTTP 301"),
    "302": (send(response("302 Found", b"", "Location: http://127.0.0.2/")), "HTTP 302"),
    "closed mid-body": (
        send(OK_HEAD + b"Content-Length: 100\r\n\r\nvalue"),
        "connection closed in the middle of the response",
    ),
    "reset mid-body": (
        Script(OK_HEAD + b"Content-Length: 100\r\n\r\nvalue", then="reset"),
        "connection ",
    ),
    "invalid chunk size": (
        send(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nvalue\r\n0\r\n\r\n"),
        "connection closed in the middle of the response",
    ),
    "negative chunk size": (
        send(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nvalue\r\n0\r\n\r\n"),
        "invalid response|connection closed in the middle",  # Python 3.9: the latter
    ),
    "chunk shorter than announced": (
        send(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n10\r\nabc"),
        "connection closed in the middle of the response",
    ),
}


@pytest.mark.parametrize("case", list(GARBAGE))
def test_garbage_is_a_one_line_error(case: str) -> None:
    script, reason = GARBAGE[case]
    with HostileServer(on_value(script)) as server:
        error = imds_error(server)
    assert re.search(reason, error.reason), error.reason
    assert MAC_PATH in str(error)
    assert {r.path for r in server.requests} == {TOKEN, MAC_PATH}, "no redirect followed"


# --- what the client sends --------------------------------------------------------------------


def test_requests_on_one_connection_without_accept_encoding() -> None:
    with HostileServer() as server, ImdsClient([server.url], deadline=DEADLINE) as imds:
        assert imds.get("mac") == "value"
        assert imds.get("instance-id") == "value"
    put, *gets = [r.head.decode("latin-1").lower() for r in server.requests]
    assert put.startswith("put /latest/api/token http/1.1\r\n")
    assert "\r\nx-aws-ec2-metadata-token-ttl-seconds: 300" in put
    assert "\r\ncontent-length: 0" in put
    for head in (put, *gets):
        assert "accept-encoding" not in head, "a compressed answer is never asked for"
        assert "\r\nuser-agent: ec2-net-utils/" in head
    assert all(f"x-aws-ec2-metadata-token: {GOOD_TOKEN.decode().lower()}" in h for h in gets)
    assert server.connections == 1, "one keep-alive connection"


def test_ipv6_literal_endpoint() -> None:
    try:
        server = HostileServer(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    port = server.url.rpartition(":")[2]
    with server, ImdsClient([server.url], deadline=DEADLINE) as imds:
        assert imds.get("mac") == "value"
    assert f"\r\nhost: [::1]:{port}\r\n" in server.requests[0].head.decode().lower()


# --- anything at all --------------------------------------------------------------------------

STATUS_LINES = st.sampled_from(
    [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.0 200 OK",
        b"HTTP/1.1 404 Not Found",
        b"HTTP/1.1 401 No",
        b"HTTP/1.1 503 Slow Down",
        b"HTTP/1.1 429 Wait",
        b"HTTP/1.1 100 Continue",
        b"HTTP/1.1 301 Moved",
        b"HTTP/1.1 999 What",
        b"HTTP/2 200",
        b"ICY 200 OK",
    ]
) | st.binary(max_size=40)
HEADERS = st.sampled_from(
    [
        b"Content-Length: 5",
        b"Content-Length: 99999999999",
        b"Content-Length: -1",
        b"Content-Length: x",
        b"Transfer-Encoding: chunked",
        b"Content-Encoding: gzip",
        b"Retry-After: 1",
        b"Retry-After: Wed, 21 Oct 2015 07:28:00 GMT",
        b"Retry-After: \xff",
        b"Retry-After: 99999999999999999999999",
        b"Retry-After: Thu, 01 Jan 9999 00:00:00 GMT",
        b"Connection: close",
        b"X-Odd: \xff\xfe\x00",
        b" folded",
        b"no colon",
    ]
) | st.binary(max_size=40)
BODIES = st.sampled_from(
    [b"", b"value", b"5\r\nvalue\r\n0\r\n\r\n", b"ffffffff\r\n", b"\xff"]
) | st.binary(max_size=200)


@st.composite
def raw_responses(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=400))
    lines = [draw(STATUS_LINES), *draw(st.lists(HEADERS, max_size=4))]
    return b"\r\n".join(lines) + b"\r\n\r\n" + draw(BODIES)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=raw_responses(),
    request_kind=st.sampled_from(["token", "value"]),
    then=st.sampled_from(["close", "reset", "hang", "keep"]),
)
@example(raw=response(body="токен".encode()), request_kind="token", then="close")
def test_any_bytes_give_a_value_or_imds_error(raw: bytes, request_kind: str, then: str) -> None:
    route = on_token if request_kind == "token" else on_value
    with HostileServer(route(Script(raw, then=then))) as server:
        result = outcome(server, deadline=0.5)
    assert result is None or isinstance(result, (str, ImdsError)), repr(result)
    if isinstance(result, ImdsError):
        assert "\n" not in str(result) and "\r" not in str(result)
    if isinstance(result, str):
        assert len(result) <= 1024 * 1024
        assert request_kind == "value" or result == "value", (
            "a token, whatever it is, is not a value"
        )
