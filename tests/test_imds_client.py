"""ImdsClient against the HTTP mock: IMDSv2 token handling, retries, deadlines, fallback."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from imds_mock import ImdsMock
from instance_builder import example

from ec2net.errors import ImdsError
from ec2net.imds import ImdsClient

TOKEN = "/latest/api/token"
MAC = "/latest/meta-data/mac"


@pytest.fixture
def mock() -> Iterator[ImdsMock]:
    with ImdsMock(example("primary-only")) as server:
        yield server


def client(mock: ImdsMock, deadline: float = 5.0, **kw: float) -> ImdsClient:
    return ImdsClient([mock.url], deadline=deadline, **kw)


def dead_endpoint() -> str:
    """A loopback URL nobody listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_one_token_and_one_request_per_path(mock: ImdsMock) -> None:
    with client(mock) as imds:
        assert imds.get("mac") == "0e:49:61:0f:c3:11"
        assert imds.get("mac") == "0e:49:61:0f:c3:11"
        assert imds.get("instance-id") == "i-0123456789abcdef0"
        assert imds.get("no-such-key") is None
        assert imds.get("no-such-key") is None
        assert imds.listing("network/interfaces/macs") == ["0e:49:61:0f:c3:11/"]
        assert imds.request_count == 5
    assert mock.count(TOKEN, "PUT") == 1
    assert mock.count(MAC) == 1
    assert all(r.had_valid_token for r in mock.requests if r.method == "GET")


def test_fresh_bypasses_the_cache(mock: ImdsMock) -> None:
    with client(mock) as imds:
        imds.get("mac")
        mock.set("mac", "0e:00:00:00:00:01")
        assert imds.get("mac") == "0e:49:61:0f:c3:11"
        assert imds.get("mac", fresh=True) == "0e:00:00:00:00:01"
    assert mock.count(MAC) == 2


def test_expired_token_is_replaced_once(mock: ImdsMock) -> None:
    with client(mock) as imds:
        imds.get("mac")
        mock.expire_tokens()
        assert imds.get("instance-id") == "i-0123456789abcdef0"
    assert mock.count(TOKEN, "PUT") == 2


def test_persistent_401_is_an_error_not_a_loop(mock: ImdsMock) -> None:
    with client(mock) as imds:
        imds.get("mac")
        # every token is rejected: expire them as soon as they are issued
        mock.add_fault(TOKEN, method="PUT", body="not-a-valid-token", count=None)
        mock.expire_tokens()
        with pytest.raises(ImdsError, match="token rejected twice"):
            imds.get("instance-id")
    assert mock.count(TOKEN, "PUT") == 2


@pytest.mark.parametrize("status", [401, 403])
def test_token_refused(mock: ImdsMock, status: int) -> None:
    mock.add_fault(TOKEN, method="PUT", status=status, count=None)
    with client(mock) as imds, pytest.raises(ImdsError, match=f"HTTP {status}"):
        imds.get("mac")
    assert mock.count(TOKEN) == 1, "a refusal is final, not retried"


def test_token_5xx_is_retried(mock: ImdsMock) -> None:
    mock.add_fault(TOKEN, method="PUT", status=503, count=2)
    with client(mock) as imds:
        assert imds.get("mac") == "0e:49:61:0f:c3:11"
    assert mock.count(TOKEN) == 3


def test_429_honours_retry_after_within_deadline(mock: ImdsMock) -> None:
    mock.add_fault(MAC, status=429, headers={"Retry-After": "1"}, count=1)
    started = time.monotonic()
    with client(mock) as imds:
        assert imds.get("mac") == "0e:49:61:0f:c3:11"
    assert time.monotonic() - started >= 0.9
    assert mock.count(MAC) == 2


def test_retry_after_never_passes_the_deadline(mock: ImdsMock) -> None:
    mock.add_fault(MAC, status=429, headers={"Retry-After": "30"}, count=None)
    started = time.monotonic()
    with client(mock, deadline=1.0) as imds, pytest.raises(ImdsError, match="HTTP 429"):
        imds.get("mac")
    assert time.monotonic() - started < 5


def test_5xx_burst_longer_than_deadline_fails(mock: ImdsMock) -> None:
    mock.add_fault(MAC, status=500, count=None)
    with client(mock, deadline=1.0) as imds, pytest.raises(ImdsError, match="HTTP 500"):
        imds.get("mac")
    assert mock.count(MAC) >= 3, "retried with back-off until the deadline"


def test_read_timeout_is_retried(mock: ImdsMock) -> None:
    mock.add_fault(MAC, delay=1.0, count=1)
    with client(mock, read_timeout=0.3) as imds:
        assert imds.get("mac") == "0e:49:61:0f:c3:11"
    time.sleep(1.0)  # the mock logs the slow request once its delay is over
    assert mock.count(MAC) == 2


def test_closed_connection_is_retried(mock: ImdsMock) -> None:
    mock.add_fault(MAC, close=True, count=1)
    with client(mock) as imds:
        assert imds.get("mac") == "0e:49:61:0f:c3:11"


def test_unreachable_service_gives_up_at_the_deadline() -> None:
    started = time.monotonic()
    with (
        ImdsClient([dead_endpoint()], deadline=1.0) as imds,
        pytest.raises(ImdsError, match="connection failed"),
    ):
        imds.get("mac")
    assert 0.8 <= time.monotonic() - started < 4


def test_falls_back_to_second_endpoint(mock: ImdsMock) -> None:
    with ImdsClient([dead_endpoint(), mock.url], deadline=5.0) as imds:
        assert imds.get("mac") == "0e:49:61:0f:c3:11"
        assert imds.get("instance-id") == "i-0123456789abcdef0"
    assert mock.count(TOKEN) == 1


def test_non_utf8_body_is_an_error(mock: ImdsMock) -> None:
    mock.add_fault(MAC, body=b"\xff\xfe", count=1)
    with client(mock) as imds, pytest.raises(ImdsError, match="not UTF-8"):
        imds.get("mac")


def test_proxy_environment_is_ignored(mock: ImdsMock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", dead_endpoint())
    monkeypatch.setenv("HTTP_PROXY", dead_endpoint())
    with client(mock) as imds:
        assert imds.get("mac") == "0e:49:61:0f:c3:11"


def test_status_retries_are_counted_per_request(mock: ImdsMock) -> None:
    """5 retries of a persistent 500, then its answer; the next path gets its own 5."""
    mock.add_fault(MAC, status=500, count=None)
    with client(mock, deadline=20.0) as imds:
        with pytest.raises(ImdsError, match="mac: HTTP 500"):
            imds.get("mac")
        assert mock.count(MAC) == 6
        assert imds.get("instance-id") == "i-0123456789abcdef0"


def test_dropped_connections_are_retried_three_times(mock: ImdsMock) -> None:
    mock.add_fault(MAC, close=True, count=None)
    with client(mock) as imds, pytest.raises(ImdsError, match="connection closed"):
        imds.get("mac")
    assert mock.count(MAC) == 4
