"""One keep-alive HTTP/1.1 connection whose every wait ends at an absolute deadline.

http.client parses the responses; this module owns the socket underneath it, so that every
send and every recv - in the status line, the headers or the body - waits at most
min(read timeout, time left until the deadline), and a response can never be bigger than a
few caps. A server that drips one byte at a time, never closes, or sends without end costs at
most the deadline and a bounded amount of memory.
"""

from __future__ import annotations

import http.client
import io
import re
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Mapping

    from _typeshed import ReadableBuffer, WriteableBuffer

# An IMDS value is a few hundred bytes; a listing of many ENIs a few kilobytes.
MAX_BODY = 1024 * 1024
# Status line and headers, including any interim (1xx) responses before them; the same again
# is allowed on top of the body for chunk framing and trailers.
MAX_HEAD = 64 * 1024
_BODY_LIMIT = f"{MAX_BODY >> 20} MiB"
_HEAD_LIMIT = f"{MAX_HEAD >> 10} KiB"
# Only these paths are ever sent (meta-data keys, MACs and the token path).
_PATH_RE = re.compile(r"/[A-Za-z0-9/._:~-]*")
_SHOWN_CHARS = 60


class TransportError(Exception):
    """One attempt failed. `retry` names the retry budget the failure may use ("connect" or
    "read"), or is None when asking again cannot help (a response too large, say)."""

    def __init__(self, reason: str, retry: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    retry_after: str | None


def shown(text: str) -> str:
    """`text` quoted, escaped and shortened, for a one-line message."""
    quoted = repr(text[:_SHOWN_CHARS])
    return quoted + "..." if len(text) > _SHOWN_CHARS else quoted


class _Limits:
    """What the current exchange may still spend: time until `deadline_at`, `budget` bytes."""

    def __init__(self, deadline_at: float, read_timeout: float) -> None:
        self.deadline_at = deadline_at
        self.read_timeout = read_timeout
        self.budget = 0
        self.spending = ""  # what the budget is for: the reason given when it runs out

    def timeout(self) -> float:
        left = self.deadline_at - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline reached")
        return min(self.read_timeout, left)


class _Socket:
    """The socket as http.client sees it: each send and recv is bounded by the limits."""

    def __init__(self, sock: socket.socket, limits: _Limits) -> None:
        self._sock = sock
        self._limits = limits
        # Like socket.makefile(): http.client closes the connection while the response is
        # still being read, so the socket is closed only once no reader is left.
        self._readers = 0
        self._closing = False

    def sendall(self, data: ReadableBuffer) -> None:
        self._sock.settimeout(self._limits.timeout())
        self._sock.sendall(data)

    def recv_into(self, buffer: WriteableBuffer) -> int:
        limits = self._limits
        if limits.budget <= 0:
            # Raised through http.client, which lets it pass: the exchange ends here.
            raise TransportError(limits.spending, None)
        self._sock.settimeout(limits.timeout())
        received = self._sock.recv_into(memoryview(buffer).cast("B")[: limits.budget])
        limits.budget -= received
        return received

    def makefile(self, mode: str) -> io.BufferedReader:
        self._readers += 1
        return io.BufferedReader(_Reader(self))

    def release(self) -> None:
        self._readers -= 1
        self._close_when_unused()

    def close(self) -> None:
        self._closing = True
        self._close_when_unused()

    def _close_when_unused(self) -> None:
        if self._closing and self._readers <= 0:
            self._sock.close()


class _Reader(io.RawIOBase):
    def __init__(self, sock: _Socket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._sock.release()
        super().close()


class Connection:
    """Requests to one IMDS base URL (http://HOST[:PORT]) over one keep-alive connection."""

    def __init__(
        self, url: str, *, deadline_at: float, connect_timeout: float, read_timeout: float
    ) -> None:
        self._url = url
        self._limits = _Limits(deadline_at, read_timeout)
        self._connect_timeout = connect_timeout
        self._http: http.client.HTTPConnection | None = None

    def exchange(self, method: str, path: str, headers: Mapping[str, str]) -> Reply:
        """One request and its whole response; TransportError on any failure."""
        if not _PATH_RE.fullmatch(path):
            raise TransportError(f"path {shown(path)} cannot be requested", None)
        conn = self._http or self._connect()
        try:
            return self._exchange(conn, method, path, headers)
        except TransportError:
            self.close()
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # ValueError: http.client does not catch every malformed chunk size itself.
            self.close()
            raise _failure(exc) from None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _connect(self) -> http.client.HTTPConnection:
        try:
            parts = urlsplit(self._url)
            scheme, host, port = parts.scheme, parts.hostname, parts.port or 80
        except ValueError:  # a bad port or IPv6 literal
            scheme, host, port = "", None, 0
        if scheme != "http" or not host:
            raise TransportError(f"endpoint {shown(self._url)} is not http://HOST[:PORT]", None)
        try:
            timeout = min(self._connect_timeout, self._limits.timeout())
            sock = socket.create_connection((host, port), timeout=timeout)
            # Request and response are small: do not let Nagle wait for the delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except socket.timeout:
            raise TransportError("connection timed out", "connect") from None
        except OSError as exc:
            raise TransportError(f"connection failed: {_os_error(exc)}", "connect") from None
        conn = http.client.HTTPConnection(host, port)
        conn.auto_open = 0  # never reconnect behind our back, unbounded
        conn.sock = _Socket(sock, self._limits)
        self._http = conn
        return conn

    def _exchange(
        self, conn: http.client.HTTPConnection, method: str, path: str, headers: Mapping[str, str]
    ) -> Reply:
        limits = self._limits
        limits.budget, limits.spending = MAX_HEAD, f"status line and headers over {_HEAD_LIMIT}"
        # No Accept-Encoding: a compressed body is refused below, never inflated.
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if method == "PUT":
            conn.putheader("Content-Length", "0")
        conn.endheaders()
        # Closed on every way out, so a failed read leaves no socket open for the collector.
        with conn.getresponse() as response:
            return self._read(response)

    def _read(self, response: http.client.HTTPResponse) -> Reply:
        if response.status < 200:
            raise TransportError(f"unexpected interim response HTTP {response.status}", "read")
        _check_coding(response, "Content-Encoding", ("", "identity"))
        _check_coding(response, "Transfer-Encoding", ("", "identity", "chunked"))
        if response.length is not None and response.length > MAX_BODY:
            raise TransportError(f"Content-Length {response.length} is over {_BODY_LIMIT}", None)
        limits = self._limits
        limits.budget += MAX_BODY + MAX_HEAD
        limits.spending = f"response body over {_BODY_LIMIT}"
        body = response.read(MAX_BODY + 1)  # all of it, or what came before the end of stream
        if len(body) > MAX_BODY:
            raise TransportError(limits.spending, None)
        if response.length:  # http.client counts down what Content-Length announced
            raise http.client.IncompleteRead(body, response.length)
        if not response.isclosed():
            self.close()  # bytes left over: the next request gets a fresh connection
        return Reply(response.status, body, response.getheader("Retry-After"))


def _failure(exc: OSError | http.client.HTTPException | ValueError) -> TransportError:
    """The one-line reason for a failed exchange; all of them may be retried as read errors."""
    if isinstance(exc, socket.timeout):
        return TransportError("read timed out", "read")
    # RemoteDisconnected is both a BadStatusLine and a ConnectionResetError: test it first.
    if isinstance(exc, http.client.RemoteDisconnected):
        return TransportError("connection closed without a response", "read")
    if isinstance(exc, http.client.IncompleteRead):
        return TransportError("connection closed in the middle of the response", "read")
    if isinstance(exc, http.client.BadStatusLine):
        line = str(exc.args[0]) if exc.args else ""
        return TransportError(f"invalid status line {shown(line)}", "read")
    if isinstance(exc, OSError):
        return TransportError(f"connection failed: {_os_error(exc)}", "read")
    return TransportError(f"invalid response: {shown(str(exc))}", "read")


def _check_coding(
    response: http.client.HTTPResponse, header: str, accepted: tuple[str, ...]
) -> None:
    value = (response.getheader(header) or "").strip()
    if value.lower() not in accepted:
        raise TransportError(f"{header} {shown(value)} not supported", None)


def _os_error(exc: OSError) -> str:
    if exc.strerror:
        return exc.strerror
    return shown(str(exc)) if str(exc) else type(exc).__name__
