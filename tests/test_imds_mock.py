"""Tests of the IMDS mock itself: if the mock lies, every test built on it lies too."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from imds_mock import ImdsMock, MockControl, RequestRecord

MAC = "0e:49:61:0f:c3:11"
MAC_DIR = f"network/interfaces/macs/{MAC}"
META = "/latest/meta-data"
IPS_PATH = f"{META}/{MAC_DIR}/local-ipv4s"
TOKEN_PATH = "/latest/api/token"
TTL = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN = "X-aws-ec2-metadata-token"
MOCK_SCRIPT = Path(__file__).with_name("imds_mock.py")

SNAPSHOT: dict[str, Any] = {
    "meta-data": {
        "mac": MAC,
        "local-ipv4": "10.0.0.5",
        "network": {
            "interfaces": {
                "macs": {
                    MAC: {
                        "device-number": "0",
                        "interface-id": "eni-0123456789abcdef0",
                        "local-ipv4s": ["10.0.0.5", "10.0.0.6"],
                        "subnet-ipv4-cidr-block": "10.0.0.0/24",
                    }
                }
            }
        },
    }
}


def _session() -> requests.Session:
    s = requests.Session()
    # Proxy variables in a CI environment must not reroute requests meant for the loopback mock.
    s.trust_env = False
    return s


@pytest.fixture
def mock() -> Iterator[ImdsMock]:
    with ImdsMock(SNAPSHOT) as m:
        yield m


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with _session() as s:
        yield s


def get_token(http: requests.Session, url: str, ttl: str = "60") -> str:
    r = http.put(f"{url}{TOKEN_PATH}", headers={TTL: ttl}, timeout=5)
    assert r.status_code == 200, r.text
    return r.text


class Imds:
    """A session with a token already fetched, to keep the tests about the mock's behaviour."""

    def __init__(self, http: requests.Session, url: str) -> None:
        self.http = http
        self.url = url
        self.token = get_token(http, url)

    def get(self, path: str, token: str | None = "auto") -> requests.Response:
        headers = {} if token is None else {TOKEN: self.token if token == "auto" else token}
        return self.http.get(f"{self.url}{path}", headers=headers, timeout=5)


@pytest.fixture
def imds(mock: ImdsMock, http: requests.Session) -> Imds:
    return Imds(http, mock.url)


# -- serving the tree ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [f"{META}/", META])
def test_top_listing(imds: Imds, path: str) -> None:
    r = imds.get(path)
    assert r.status_code == 200
    assert r.text == "mac\nlocal-ipv4\nnetwork/"
    assert r.headers["Content-Type"] == "text/plain"


@pytest.mark.parametrize("slash", ["", "/"])
def test_directory_listing_with_and_without_slash(imds: Imds, slash: str) -> None:
    assert imds.get(f"{META}/network/interfaces/macs{slash}").text == f"{MAC}/"
    assert imds.get(f"{META}/{MAC_DIR}{slash}").text == (
        "device-number\ninterface-id\nlocal-ipv4s\nsubnet-ipv4-cidr-block"
    )


def test_values_and_lists(imds: Imds) -> None:
    r = imds.get(f"{META}/mac")
    assert (r.status_code, r.text) == (200, MAC)
    assert imds.get(f"{META}/{MAC_DIR}/interface-id").text == "eni-0123456789abcdef0"
    r = imds.get(IPS_PATH)
    assert r.text == "10.0.0.5\n10.0.0.6"
    assert r.headers["Content-Length"] == str(len(r.content))


@pytest.mark.parametrize(
    "path",
    [
        f"{META}/nope",
        f"{META}/mac/",  # trailing-slash leniency is for directories only
        f"{META}/mac/extra",
        f"{META}/network/interfaces/macs/ff:ff:ff:ff:ff:ff/",
        f"{META}//mac",
        "/latest/user-data",
        "/latest/dynamic/instance-identity/document",
    ],
)
def test_unknown_paths_are_404(imds: Imds, path: str) -> None:
    assert imds.get(path).status_code == 404


@pytest.mark.parametrize("path", ["/", "/foo", "/2009-04-04/meta-data/", "/latestx/meta-data/"])
def test_outside_latest_is_404_even_without_token(imds: Imds, path: str) -> None:
    assert imds.get(path, token=None).status_code == 404


# -- IMDSv2 tokens -------------------------------------------------------------------------------


def test_get_without_or_with_bad_token_is_401(mock: ImdsMock, imds: Imds) -> None:
    assert imds.get(f"{META}/mac", token=None).status_code == 401
    assert imds.get(f"{META}/mac", token="not-a-token").status_code == 401
    assert imds.get(f"{META}/nope", token=None).status_code == 401  # 401 before 404
    assert imds.get(f"{META}/mac").status_code == 200
    assert [(r.status, r.had_valid_token) for r in mock.requests[1:]] == [
        (401, False),
        (401, False),
        (401, False),
        (200, True),
    ]


def test_token_expires_after_its_ttl(imds: Imds) -> None:
    short = get_token(imds.http, imds.url, ttl="1")
    assert imds.get(f"{META}/mac", token=short).status_code == 200
    time.sleep(1.1)
    assert imds.get(f"{META}/mac", token=short).status_code == 401
    assert imds.get(f"{META}/mac").status_code == 200  # the 60 s token is unaffected


@pytest.mark.parametrize("ttl", [None, "", "0", "21601", "-1", "abc", "1.5", "1e3", "\u00b2"])
def test_bad_ttl_is_400(http: requests.Session, mock: ImdsMock, ttl: str | None) -> None:
    headers = {} if ttl is None else {TTL: ttl}
    r = http.put(f"{mock.url}{TOKEN_PATH}", headers=headers, timeout=5)
    assert r.status_code == 400


@pytest.mark.parametrize("ttl", ["1", "21600"])
def test_ttl_bounds_accepted(http: requests.Session, mock: ImdsMock, ttl: str) -> None:
    r = http.put(f"{mock.url}{TOKEN_PATH}", headers={TTL: ttl}, timeout=5)
    assert r.status_code == 200
    assert r.headers[TTL] == ttl
    assert len(r.text) >= 40
    assert get_token(http, mock.url) != r.text  # fresh every time


def test_token_put_with_x_forwarded_for_is_403(http: requests.Session, mock: ImdsMock) -> None:
    r = http.put(
        f"{mock.url}{TOKEN_PATH}", headers={TTL: "60", "X-Forwarded-For": "1.2.3.4"}, timeout=5
    )
    assert r.status_code == 403
    assert mock.requests[-1] == RequestRecord("PUT", TOKEN_PATH, 403, False)


def test_token_path_only_accepts_put(imds: Imds) -> None:
    assert imds.get(TOKEN_PATH).status_code == 405
    r = imds.http.post(f"{imds.url}{TOKEN_PATH}", headers={TTL: "60"}, timeout=5)
    assert r.status_code == 405


def test_expire_tokens(mock: ImdsMock, imds: Imds) -> None:
    other = get_token(imds.http, imds.url)
    mock.expire_tokens()
    assert imds.get(f"{META}/mac").status_code == 401
    assert imds.get(f"{META}/mac", token=other).status_code == 401
    fresh = get_token(imds.http, imds.url)
    assert imds.get(f"{META}/mac", token=fresh).text == MAC


# -- changing the content ------------------------------------------------------------------------


def test_set_value_list_directory_and_delete(mock: ImdsMock, imds: Imds) -> None:
    mock.set(f"{MAC_DIR}/local-ipv4s", ["10.0.0.5", "10.0.0.6", "10.0.0.7"])
    assert imds.get(IPS_PATH).text == "10.0.0.5\n10.0.0.6\n10.0.0.7"

    mock.set("local-ipv4", "10.0.0.9")
    assert imds.get(f"{META}/local-ipv4").text == "10.0.0.9"

    # Intermediate directories appear, new keys go last in the listing.
    mock.set("network/interfaces/macs/0e:00:00:00:00:02/device-number", "1")
    assert imds.get(f"{META}/network/interfaces/macs/").text == f"{MAC}/\n0e:00:00:00:00:02/"
    assert imds.get(f"{META}/network/interfaces/macs/0e:00:00:00:00:02/").text == "device-number"

    mock.set(f"{MAC_DIR}/local-ipv4s", None)
    assert imds.get(IPS_PATH).status_code == 404
    assert "local-ipv4s" not in imds.get(f"{META}/{MAC_DIR}/").text.split("\n")
    mock.set("no/such/thing", None)  # deleting what is not there is not an error
    assert imds.get(f"{META}/").text == "mac\nlocal-ipv4\nnetwork/"


def test_set_snapshot_replaces_everything_and_is_copied(mock: ImdsMock, imds: Imds) -> None:
    snap = {"meta-data": {"instance-id": "i-0abc", "mac": "0e:00:00:00:00:01"}}
    mock.set_snapshot(snap)
    snap["meta-data"]["mac"] = "changed after the fact"
    assert imds.get(f"{META}/").text == "instance-id\nmac"
    assert imds.get(f"{META}/mac").text == "0e:00:00:00:00:01"
    assert imds.get(IPS_PATH).status_code == 404


@pytest.mark.parametrize(
    "snapshot",
    [{}, {"meta-data": "x"}, {"meta-data": {"a": 1}}, {"meta-data": {"a": ["x", None]}}],
)
def test_bad_snapshots_are_rejected(mock: ImdsMock, snapshot: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        mock.set_snapshot(snapshot)


def test_set_through_a_value_is_rejected(mock: ImdsMock) -> None:
    with pytest.raises(ValueError, match="mac"):
        mock.set("mac/sub", "x")


# -- faults --------------------------------------------------------------------------------------


def test_fault_status_count_then_recovery(mock: ImdsMock, imds: Imds) -> None:
    mock.add_fault(IPS_PATH, status=500, count=2)
    first, second, third = (imds.get(IPS_PATH) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (500, 500, 200)
    assert first.text == "10.0.0.5\n10.0.0.6"  # the normal body unless told otherwise
    assert third.text == "10.0.0.5\n10.0.0.6"
    assert imds.get(f"{META}/mac").status_code == 200  # other paths never affected


def test_fault_count_none_lasts_until_cleared(mock: ImdsMock, imds: Imds) -> None:
    mock.add_fault(IPS_PATH, status=503, count=None)
    assert [imds.get(IPS_PATH).status_code for _ in range(4)] == [503] * 4
    mock.clear_faults()
    assert imds.get(IPS_PATH).status_code == 200


def test_faults_queue_in_order_and_match_trailing_slash(mock: ImdsMock, imds: Imds) -> None:
    macs = f"{META}/network/interfaces/macs"
    mock.add_fault(macs + "/", status=500)
    mock.add_fault(macs, status=429)
    assert imds.get(macs).status_code == 500
    assert imds.get(macs + "/").status_code == 429
    assert imds.get(macs).status_code == 200


def test_fault_only_matches_its_method(mock: ImdsMock, imds: Imds) -> None:
    mock.add_fault(IPS_PATH, status=500, method="PUT")
    assert imds.get(IPS_PATH).status_code == 200
    mock.add_fault(TOKEN_PATH, status=500)  # a GET fault on the PUT-only token path
    assert imds.http.put(f"{imds.url}{TOKEN_PATH}", headers={TTL: "5"}, timeout=5).ok


def test_fault_delay_does_not_block_other_requests(mock: ImdsMock, imds: Imds) -> None:
    mock.add_fault(IPS_PATH, delay=0.6)
    result: dict[str, Any] = {}

    def slow() -> None:
        start = time.monotonic()
        with _session() as s:
            r = s.get(f"{imds.url}{IPS_PATH}", headers={TOKEN: imds.token}, timeout=5)
        result.update(status=r.status_code, text=r.text, elapsed=time.monotonic() - start)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.1)
    start = time.monotonic()
    assert imds.get(f"{META}/mac").text == MAC
    assert time.monotonic() - start < 0.3
    t.join(5)
    assert result["status"] == 200
    assert result["text"] == "10.0.0.5\n10.0.0.6"
    assert result["elapsed"] >= 0.6


def test_fault_custom_body(mock: ImdsMock, imds: Imds) -> None:
    mock.add_fault(IPS_PATH, body="10.0.0.")
    mock.add_fault(IPS_PATH, body=b"")
    truncated = imds.get(IPS_PATH)
    assert (truncated.status_code, truncated.text) == (200, "10.0.0.")
    assert truncated.headers["Content-Length"] == "7"
    empty = imds.get(IPS_PATH)
    assert (empty.status_code, empty.content) == (200, b"")
    assert imds.get(IPS_PATH).text == "10.0.0.5\n10.0.0.6"


def test_fault_headers(mock: ImdsMock, imds: Imds) -> None:
    mock.add_fault(
        IPS_PATH,
        status=429,
        body="slow down",
        headers={"Retry-After": "1", "Content-Type": "text/html"},
    )
    r = imds.get(IPS_PATH)
    assert (r.status_code, r.text) == (429, "slow down")
    assert r.headers["Retry-After"] == "1"
    assert r.headers["Content-Type"] == "text/html"
    assert "Retry-After" not in imds.get(IPS_PATH).headers


def test_fault_wrong_content_length_cuts_the_response(mock: ImdsMock, imds: Imds) -> None:
    mock.add_fault(IPS_PATH, body="10.0", headers={"Content-Length": "17"})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        imds.get(IPS_PATH)
    assert imds.get(IPS_PATH).text == "10.0.0.5\n10.0.0.6"


def test_fault_close_gives_connection_error(mock: ImdsMock, imds: Imds) -> None:
    mock.add_fault(IPS_PATH, close=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        imds.get(IPS_PATH)
    assert mock.requests[-1] == RequestRecord("GET", IPS_PATH, None, True)
    assert imds.get(IPS_PATH).status_code == 200


def test_token_put_fault_applies_before_validation(mock: ImdsMock, http: requests.Session) -> None:
    mock.add_fault(TOKEN_PATH, method="PUT", status=503)
    mock.add_fault(TOKEN_PATH, method="PUT", close=True)
    # Even a request the service would reject (no TTL) gets the fault first.
    assert http.put(f"{mock.url}{TOKEN_PATH}", timeout=5).status_code == 503
    with pytest.raises(requests.exceptions.ConnectionError):
        http.put(f"{mock.url}{TOKEN_PATH}", headers={TTL: "60"}, timeout=5)
    assert get_token(http, mock.url)
    assert [r.status for r in mock.requests] == [503, None, 200]


def test_get_fault_never_hides_401(mock: ImdsMock, imds: Imds) -> None:
    mock.add_fault(IPS_PATH, status=500)
    assert imds.get(IPS_PATH, token=None).status_code == 401
    assert imds.get(IPS_PATH).status_code == 500  # the 401 did not use the fault up
    assert imds.get(IPS_PATH).status_code == 200


def test_bad_fault_arguments(mock: ImdsMock) -> None:
    with pytest.raises(ValueError):
        mock.add_fault("latest/meta-data/mac")
    with pytest.raises(ValueError):
        mock.add_fault(IPS_PATH, count=0)
    with pytest.raises(ValueError):
        mock.add_fault(IPS_PATH, status=42)


# -- request log ---------------------------------------------------------------------------------


def test_request_log_and_count(mock: ImdsMock, imds: Imds) -> None:
    imds.get(f"{META}/mac")
    imds.get(f"{META}/network/")
    imds.get(f"{META}/network")
    imds.get(f"{META}/mac", token=None)
    assert mock.requests == [
        RequestRecord("PUT", TOKEN_PATH, 200, False),
        RequestRecord("GET", f"{META}/mac", 200, True),
        RequestRecord("GET", f"{META}/network/", 200, True),
        RequestRecord("GET", f"{META}/network", 200, True),
        RequestRecord("GET", f"{META}/mac", 401, False),
    ]
    assert mock.count() == 5
    assert mock.count(f"{META}/mac") == 2
    assert mock.count(f"{META}/network") == 2
    assert mock.count(f"{META}/network/") == 2
    assert mock.count(method="PUT") == 1
    assert mock.count(TOKEN_PATH, method="GET") == 0

    snapshot = mock.requests
    snapshot.clear()
    assert len(mock.requests) == 5  # callers get a copy

    mock.clear_log()
    assert mock.requests == []
    imds.get(f"{META}/mac")
    assert mock.count() == 1


# -- transport -----------------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(mock: ImdsMock, imds: Imds) -> None:
    r1 = imds.get(f"{META}/mac")
    r2 = imds.get(IPS_PATH)
    assert r1.raw.version == 11
    assert r2.headers["Content-Length"] == "17"
    ports = {r.client_port for r in mock.requests}
    assert len(ports) == 1  # token PUT and both GETs on one connection
    assert ports != {0}

    # The check can tell the difference: separate sessions mean separate connections.
    mock.clear_log()
    for _ in range(2):
        with _session() as s:
            s.get(f"{mock.url}{META}/mac", headers={TOKEN: imds.token}, timeout=5)
    assert len({r.client_port for r in mock.requests}) == 2


def _ipv6_loopback_usable() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback_usable(), reason="no usable ::1")
def test_ipv6_bind(http: requests.Session) -> None:
    with ImdsMock(SNAPSHOT, host="::1") as mock:
        assert mock.url == f"http://[::1]:{mock.port}"
        assert mock.port != 0
        imds = Imds(http, mock.url)
        assert imds.get(f"{META}/mac").text == MAC


def test_stop_closes_server_and_idle_connections(http: requests.Session) -> None:
    mock = ImdsMock(SNAPSHOT).start()
    imds = Imds(http, mock.url)  # leaves an idle keep-alive connection open
    mock.add_fault(f"{META}/mac", delay=30)
    outcome: list[str] = []

    def delayed() -> None:
        with _session() as s:
            try:
                s.get(f"{imds.url}{META}/mac", headers={TOKEN: imds.token}, timeout=10)
                outcome.append("answered")
            except requests.exceptions.ConnectionError:
                outcome.append("connection error")

    t = threading.Thread(target=delayed)
    t.start()
    time.sleep(0.1)
    start = time.monotonic()
    mock.stop()
    t.join(5)
    # Neither the idle connection nor the 30 s fault delay holds stop() up.
    assert time.monotonic() - start < 2
    assert outcome == ["connection error"]
    with pytest.raises(requests.exceptions.ConnectionError):
        imds.get(f"{META}/mac")
    with pytest.raises(RuntimeError):
        _ = mock.url
    mock.stop()  # idempotent


# -- control API ---------------------------------------------------------------------------------


def test_control_api_in_process(mock: ImdsMock, imds: Imds) -> None:
    ctl = MockControl(mock.url)
    ctl.set(f"{MAC_DIR}/local-ipv4s", ["10.0.0.5"])
    assert imds.get(IPS_PATH).text == "10.0.0.5"
    ctl.add_fault(IPS_PATH, status=500, body=b"\x00\xff", headers={"Retry-After": "2"})
    r = imds.get(IPS_PATH)
    assert (r.status_code, r.content, r.headers["Retry-After"]) == (500, b"\x00\xff", "2")
    ctl.add_fault(IPS_PATH, status=502, count=None)
    assert imds.get(IPS_PATH).status_code == 502
    ctl.clear_faults()
    assert imds.get(IPS_PATH).status_code == 200
    ctl.expire_tokens()
    assert imds.get(IPS_PATH).status_code == 401

    # Control traffic is never logged.
    assert [r.status for r in ctl.requests] == [200, 200, 500, 502, 200, 401]
    assert ctl.requests == mock.requests
    assert ctl.count(IPS_PATH) == 5
    assert ctl.count(method="PUT") == 1
    ctl.clear_log()
    assert mock.requests == []

    ctl.set_snapshot({"meta-data": {"only": "this"}})
    imds.token = get_token(imds.http, imds.url)
    assert imds.get(f"{META}/").text == "only"
    with pytest.raises(ValueError, match="count"):
        ctl.add_fault(IPS_PATH, count=0)
    with pytest.raises(ValueError):
        ctl.set_snapshot({"not": "a snapshot"})


def test_control_api_is_not_under_latest(mock: ImdsMock, http: requests.Session) -> None:
    assert http.post(f"{mock.url}/latest/_mock/clear-log", timeout=5).status_code == 405
    assert http.get(f"{mock.url}/_mock/nope", timeout=5).status_code == 404
    assert http.post(f"{mock.url}/_mock/log", timeout=5).status_code == 405
    assert http.get(f"{mock.url}/_mock/log", timeout=5).json() == [
        {"method": "POST", "path": "/latest/_mock/clear-log", "status": 405,
         "had_valid_token": False, "client_port": mock.requests[0].client_port},
    ]  # fmt: skip


# -- standalone mode -----------------------------------------------------------------------------


def _start_standalone(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, int]:
    snap = tmp_path / "snapshot.json"
    snap.write_text(json.dumps(SNAPSHOT))
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, str(MOCK_SCRIPT), "--snapshot", str(snap), "--port", "0",
         "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"standalone mock did not start: {err.decode()}")
        time.sleep(0.02)
    return proc, port_file, int(port_file.read_text())


def _stop_standalone(proc: subprocess.Popen[bytes], sig: int) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_standalone_with_port_file_and_control(tmp_path: Path, http: requests.Session) -> None:
    proc, port_file, port = _start_standalone(tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        imds = Imds(http, url)  # listening by the time the port file exists
        assert imds.get(IPS_PATH).text == "10.0.0.5\n10.0.0.6"
        ctl = MockControl(url)
        ctl.add_fault(IPS_PATH, status=503, headers={"Retry-After": "1"})
        ctl.set("local-ipv4", "10.9.9.9")
        r = imds.get(IPS_PATH)
        assert (r.status_code, r.headers["Retry-After"]) == (503, "1")
        assert imds.get(f"{META}/local-ipv4").text == "10.9.9.9"
        assert ctl.requests[-2:] == [
            RequestRecord("GET", IPS_PATH, 503, True),
            RequestRecord("GET", f"{META}/local-ipv4", 200, True),
        ]
        assert ctl.count() == 4
        ctl.expire_tokens()
        assert imds.get(f"{META}/mac").status_code == 401
    finally:
        rc = _stop_standalone(proc, signal.SIGTERM)
    assert rc == 0
    assert not port_file.exists()


def test_standalone_exits_cleanly_on_sigint(tmp_path: Path, http: requests.Session) -> None:
    proc, _, port = _start_standalone(tmp_path)
    try:
        Imds(http, f"http://127.0.0.1:{port}")  # an idle keep-alive connection must not block
    finally:
        rc = _stop_standalone(proc, signal.SIGINT)
    assert rc == 0
    assert proc.stderr is not None
    assert b"Traceback" not in proc.stderr.read()


def test_standalone_bad_bind_fails(tmp_path: Path) -> None:
    snap = tmp_path / "snapshot.json"
    snap.write_text(json.dumps(SNAPSHOT))
    r = subprocess.run(
        [sys.executable, str(MOCK_SCRIPT), "--snapshot", str(snap), "--host", "192.0.2.1"],
        capture_output=True,
        timeout=10,
    )
    assert r.returncode == 1
    assert b"cannot listen" in r.stderr
