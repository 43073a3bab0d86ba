"""IMDSv2 client: one session token, bounded retries, one request per key and run.

Every wait (connect, read, back-off, Retry-After) is bounded by one deadline for the whole
process, so a unit using this never hangs a boot or piles up behind a dead metadata service.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from . import __version__
from .errors import ImdsError

log = logging.getLogger(__name__)

DEFAULT_ENDPOINTS: tuple[str, ...] = ("http://169.254.169.254", "http://[fd00:ec2::254]")
TOKEN_PATH = "/latest/api/token"
METADATA_PREFIX = "/latest/meta-data/"
# A run needs the token for seconds; a short TTL limits what a leaked token is worth.
TOKEN_TTL_SECONDS = 300
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MIN_ATTEMPT_SECONDS = 0.2


class DeadlineRetry(Retry):
    """urllib3 Retry whose back-offs and Retry-After waits never pass an absolute deadline.

    The back-off cap and jitter are applied here rather than through Retry's `backoff_max`
    and `backoff_jitter` arguments, which urllib3 1.26 (Debian 12, Amazon Linux 2023) lacks.
    """

    BACKOFF_CAP = 2.0
    BACKOFF_JITTER = 0.2

    def __init__(self, *args: Any, deadline: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def new(self, **kw: Any) -> DeadlineRetry:
        kw.setdefault("deadline", self.deadline)
        return super().new(**kw)

    def _remaining(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def is_exhausted(self) -> bool:
        return super().is_exhausted() or self._remaining() <= 0

    def get_backoff_time(self) -> float:
        backoff = super().get_backoff_time()
        if backoff > 0:
            backoff = min(backoff, self.BACKOFF_CAP) + random.uniform(0, self.BACKOFF_JITTER)
        return max(0.0, min(backoff, self._remaining()))

    def get_retry_after(self, response: Any) -> float | None:
        retry_after = super().get_retry_after(response)
        if retry_after is None:
            return None
        return max(0.0, min(retry_after, self._remaining()))


class ImdsClient:
    """Reads /latest/meta-data/ paths; a path is requested at most once per client."""

    def __init__(
        self,
        endpoints: Sequence[str] = DEFAULT_ENDPOINTS,
        *,
        deadline: float = 30.0,
        connect_timeout: float = 1.0,
        read_timeout: float = 2.0,
    ) -> None:
        if not endpoints:
            raise ValueError("no IMDS endpoint")
        self._endpoints = tuple(e.rstrip("/") for e in endpoints)
        self._deadline_at = time.monotonic() + deadline
        self._timeouts = (connect_timeout, read_timeout)
        self._endpoint: str | None = None
        self._token: str | None = None
        self._cache: dict[str, str | None] = {}
        self.request_count = 0
        self._session = requests.Session()
        # IMDS is link-local: a proxy from the environment would only break it.
        self._session.trust_env = False
        self._session.headers["User-Agent"] = f"ec2-net-utils/{__version__}"
        # Retries are counted per request as well as bounded by the deadline, so that one
        # persistently failing path cannot use up the time the other ENIs need.
        retry = DeadlineRetry(
            total=6,
            connect=3,
            read=3,
            status=5,
            other=0,
            redirect=0,
            allowed_methods=frozenset({"GET", "PUT"}),
            status_forcelist=RETRY_STATUSES,
            backoff_factor=0.1,
            respect_retry_after_header=True,
            raise_on_status=False,
            deadline=self._deadline_at,
        )
        self._session.mount("http://", HTTPAdapter(max_retries=retry, pool_maxsize=1))
        # Token requests do not retry connection failures themselves: _fetch_token rotates
        # through the endpoints instead, so an unreachable IPv4 endpoint on an IPv6-only
        # instance costs one connect timeout per round, not the whole deadline.
        token_retry = retry.new(connect=0)
        for endpoint in self._endpoints:
            self._session.mount(endpoint + TOKEN_PATH, HTTPAdapter(max_retries=token_retry))

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ImdsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def remaining(self) -> float:
        return self._deadline_at - time.monotonic()

    def get(self, path: str, *, fresh: bool = False) -> str | None:
        """Value of a meta-data path, or None when IMDS says 404 (the key is absent)."""
        if not fresh and path in self._cache:
            return self._cache[path]
        value = self._get(METADATA_PREFIX + path)
        self._cache[path] = value
        return value

    def listing(self, path: str, *, fresh: bool = False) -> list[str] | None:
        """Entries of a meta-data directory (sub-directories end in '/'), None if absent."""
        text = self.get(path.rstrip("/") + "/", fresh=fresh)
        if text is None:
            return None
        return [line for line in text.split("\n") if line]

    def _timeout(self) -> tuple[float, float]:
        remaining = self.remaining()
        if remaining <= 0:
            raise TimeoutError
        connect, read = self._timeouts
        return (min(connect, remaining), min(read, remaining))

    def _request(self, method: str, url: str, headers: dict[str, str]) -> requests.Response:
        self.request_count += 1
        started = time.monotonic()
        try:
            response = self._session.request(
                method, url, headers=headers, timeout=self._timeout(), allow_redirects=False
            )
        except TimeoutError:
            raise ImdsError(url, "deadline reached") from None
        except requests.RequestException as exc:
            raise ImdsError(url, _describe(exc)) from None
        log.debug(
            "%s %s -> %d (%.0f ms)",
            method,
            url,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _fetch_token(self) -> None:
        """Get a session token, trying each endpoint in turn until the deadline."""
        headers = {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)}
        candidates = (self._endpoint,) if self._endpoint else self._endpoints
        last_error = "no endpoint answered"
        delay = 0.2
        while True:
            for endpoint in candidates:
                # An attempt squeezed into the last moments would only report its own timeout
                # instead of the real cause of the earlier failures.
                if self.remaining() < MIN_ATTEMPT_SECONDS:
                    break
                try:
                    response = self._request("PUT", endpoint + TOKEN_PATH, headers)
                except ImdsError as exc:
                    last_error = exc.reason
                    continue
                if response.status_code == 200 and response.text.strip():
                    self._endpoint, self._token = endpoint, response.text.strip()
                    return
                reason = f"token request answered HTTP {response.status_code}"
                if response.status_code == 403:
                    reason += " (IMDS disabled, or the request was not allowed)"
                raise ImdsError(TOKEN_PATH, reason)
            remaining = self.remaining()
            if remaining < MIN_ATTEMPT_SECONDS:
                raise ImdsError(TOKEN_PATH, f"{last_error}; gave up at the deadline")
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)

    def _authorized_get(self, path: str) -> requests.Response:
        if self._token is None:
            self._fetch_token()
        assert self._endpoint is not None and self._token is not None
        return self._request(
            "GET", self._endpoint + path, {"X-aws-ec2-metadata-token": self._token}
        )

    def _get(self, path: str) -> str | None:
        response = self._authorized_get(path)
        if response.status_code == 401:
            # The token expired or IMDS restarted: get one new token and try once more.
            log.debug("token rejected, requesting a new one")
            self._token = None
            response = self._authorized_get(path)
            if response.status_code == 401:
                raise ImdsError(path, "token rejected twice (HTTP 401)")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ImdsError(path, f"HTTP {response.status_code}")
        try:
            return response.content.decode("utf-8")
        except UnicodeDecodeError:
            raise ImdsError(path, "response is not UTF-8 text") from None


def _describe(exc: requests.RequestException) -> str:
    """A short cause for the log line; requests wraps urllib3's error of the last attempt."""
    cause: object = exc.args[0] if exc.args else exc
    cause = getattr(cause, "reason", cause)  # MaxRetryError -> the last attempt's error
    # NewConnectionError subclasses ConnectTimeoutError in urllib3: test it first.
    if isinstance(cause, NewConnectionError):
        return f"connection failed: {str(cause).rpartition(': ')[2]}"
    if isinstance(exc, requests.ConnectTimeout) or isinstance(cause, ConnectTimeoutError):
        return "connection timed out"
    if isinstance(exc, requests.ReadTimeout) or isinstance(cause, ReadTimeoutError):
        return "read timed out"
    if isinstance(exc, requests.ConnectionError):
        return f"connection failed: {cause}"
    return f"{type(exc).__name__}: {cause}"
