"""IMDSv2 client: one session token, bounded retries, one request per key and run.

Every wait (connect, read, back-off, Retry-After) is bounded by one deadline for the whole
process, so a unit using this never hangs a boot or piles up behind a dead metadata service.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Mapping, Sequence

from . import __version__
from .errors import ImdsError
from .transport import Connection, Reply, TransportError

log = logging.getLogger(__name__)

DEFAULT_ENDPOINTS: tuple[str, ...] = ("http://169.254.169.254", "http://[fd00:ec2::254]")
TOKEN_PATH = "/latest/api/token"
METADATA_PREFIX = "/latest/meta-data/"
# A run needs the token for seconds; a short TTL limits what a leaked token is worth.
TOKEN_TTL_SECONDS = 300
MAX_TOKEN_CHARS = 4096
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_STATUSES = frozenset({429, 503})
MIN_ATTEMPT_SECONDS = 0.2
# Back-off before the n-th retry of a request: 0.1 s doubling, capped, plus jitter.
BACKOFF_FIRST = 0.1
BACKOFF_CAP = 2.0
BACKOFF_JITTER = 0.2
USER_AGENT = f"ec2-net-utils/{__version__}"


class _Retries:
    """What one request may still retry: counted per kind and in total, as well as bounded by
    the deadline, so that one persistently failing path cannot use up the time the other ENIs
    need."""

    def __init__(self, *, connect: int = 3) -> None:
        self.left = {"connect": connect, "read": 3, "status": 5}
        self.total = 6
        self.done = 0

    def take(self, kind: str) -> bool:
        if self.done >= self.total or self.left[kind] <= 0:
            return False
        self.left[kind] -= 1
        self.done += 1
        return True

    def backoff(self) -> float:
        delay = min(BACKOFF_FIRST * 2.0 ** (self.done - 1), BACKOFF_CAP)
        return delay + random.uniform(0, BACKOFF_JITTER)


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
        self._deadline_at = time.monotonic() + deadline
        # One keep-alive connection per endpoint. Proxy variables are never looked at: IMDS is
        # link-local, and a proxy would only break it.
        self._connections = {
            url: Connection(
                url,
                deadline_at=self._deadline_at,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            )
            for url in (e.rstrip("/") for e in endpoints)
        }
        self._endpoint: str | None = None
        self._token: str | None = None
        self._cache: dict[str, str | None] = {}
        self.request_count = 0

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()

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

    def _request(
        self,
        method: str,
        endpoint: str,
        path: str,
        headers: Mapping[str, str],
        retries: _Retries,
    ) -> Reply:
        """One request with its retries; the last answer once retrying is over."""
        url = endpoint + path
        headers = {"User-Agent": USER_AGENT, **headers}
        self.request_count += 1
        failure = "deadline reached"
        while self.remaining() > 0:
            started = time.monotonic()
            try:
                reply = self._connections[endpoint].exchange(method, path, headers)
            except TransportError as exc:
                log.debug("%s %s: %s", method, url, exc.reason)
                if exc.retry is None or not retries.take(exc.retry):
                    raise ImdsError(url, exc.reason) from None
                failure = exc.reason
                self._pause(retries.backoff())
                continue
            elapsed_ms = (time.monotonic() - started) * 1000
            log.debug("%s %s -> %d (%.0f ms)", method, url, reply.status, elapsed_ms)
            if reply.status not in RETRY_STATUSES or not retries.take("status"):
                return reply
            wait = _retry_after(reply) if reply.status in RETRY_AFTER_STATUSES else None
            self._pause(retries.backoff() if wait is None else wait)
            if self.remaining() <= 0:
                return reply
        raise ImdsError(url, failure)

    def _pause(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self.remaining())))

    def _fetch_token(self) -> None:
        """Get a session token, trying each endpoint in turn until the deadline."""
        headers = {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)}
        candidates = (self._endpoint,) if self._endpoint else tuple(self._connections)
        last_error = "no endpoint answered"
        delay = 0.2
        while True:
            for endpoint in candidates:
                # An attempt squeezed into the last moments would only report its own timeout
                # instead of the real cause of the earlier failures.
                if self.remaining() < MIN_ATTEMPT_SECONDS:
                    break
                # Connection failures are not retried per request here: the endpoints are
                # rotated instead, so an unreachable IPv4 endpoint on an IPv6-only instance
                # costs one connect timeout per round, not the whole deadline.
                try:
                    reply = self._request("PUT", endpoint, TOKEN_PATH, headers, _Retries(connect=0))
                except ImdsError as exc:
                    last_error = exc.reason
                    continue
                if reply.status == 200:
                    self._endpoint, self._token = endpoint, _token(reply.body)
                    return
                reason = f"token request answered HTTP {reply.status}"
                if reply.status == 403:
                    reason += " (IMDS disabled, or the request was not allowed)"
                raise ImdsError(TOKEN_PATH, reason)
            remaining = self.remaining()
            if remaining < MIN_ATTEMPT_SECONDS:
                raise ImdsError(TOKEN_PATH, f"{last_error}; gave up at the deadline")
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, BACKOFF_CAP)

    def _authorized_get(self, path: str) -> Reply:
        if self._token is None:
            self._fetch_token()
        assert self._endpoint is not None and self._token is not None
        headers = {"X-aws-ec2-metadata-token": self._token}
        return self._request("GET", self._endpoint, path, headers, _Retries())

    def _get(self, path: str) -> str | None:
        reply = self._authorized_get(path)
        if reply.status == 401:
            # The token expired or IMDS restarted: get one new token and try once more.
            log.debug("token rejected, requesting a new one")
            self._token = None
            reply = self._authorized_get(path)
            if reply.status == 401:
                raise ImdsError(path, "token rejected twice (HTTP 401)")
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise ImdsError(path, f"HTTP {reply.status}")
        try:
            return reply.body.decode("utf-8")
        except UnicodeDecodeError:
            raise ImdsError(path, "response is not UTF-8 text") from None


def _token(body: bytes) -> str:
    """The session token from a 200 answer, checked before it is ever sent as a header."""
    text = body.strip().decode("ascii", "replace")
    if not text:
        raise ImdsError(TOKEN_PATH, "empty token")
    if len(text) > MAX_TOKEN_CHARS:
        raise ImdsError(TOKEN_PATH, f"token of {len(text)} characters is too long")
    if not text.isprintable() or not text.isascii() or " " in text:
        raise ImdsError(TOKEN_PATH, "token is not printable ASCII without spaces")
    return text


def _retry_after(reply: Reply) -> float | None:
    """Seconds a Retry-After header asks to wait (delta-seconds or HTTP-date); None if absent
    or unreadable, in which case the usual back-off applies."""
    value = (reply.retry_after or "").strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else email.utils.mktime_tz(parsed) - time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
