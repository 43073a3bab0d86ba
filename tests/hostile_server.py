"""A raw-socket HTTP "server" on loopback that answers each request with scripted bytes: slowly,
endlessly, as garbage, or not at all. Bounded in time (until stop(), at most LIFETIME seconds)
and in bytes (MAX_BYTES per connection), so a client that never gives up cannot hang a test run
or fill the memory."""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType

LIFETIME = 30.0
MAX_BYTES = 32 * 1024 * 1024
MAX_REQUEST_HEAD = 64 * 1024


@dataclass(frozen=True)
class Script:
    """What to send for each request: `data`, then `repeat` again and again if given (up to
    MAX_BYTES), pausing `interval` seconds before each piece - or before each byte with `drip` -
    and then "keep" (read the next request), "close", "reset" (TCP RST) or "hang" (silence until
    stop)."""

    data: bytes
    repeat: bytes = b""
    interval: float = 0.0
    drip: bool = False
    then: str = "close"

    def pieces(self) -> Iterator[bytes]:
        parts = itertools.chain([self.data], itertools.repeat(self.repeat) if self.repeat else [])
        if not self.drip:
            return parts
        return (part[i : i + 1] for part in parts for i in range(len(part)))


def response(status: str = "200 OK", body: bytes = b"", *headers: str) -> bytes:
    """A well-formed response with a Content-Length (unless a header already sets framing)."""
    framed = any(h.lower().startswith(("content-length:", "transfer-encoding:")) for h in headers)
    lines = [f"HTTP/1.1 {status}", *headers]
    if not framed:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def send(data: bytes, then: str = "close") -> Script:
    return Script(data, then=then)


TOKEN = "/latest/api/token"
GOOD_TOKEN = b"AQAEAHostileServerToken=="


def healthy(method: str, path: str) -> Script:
    if method == "PUT" and path == TOKEN:
        return send(response(body=GOOD_TOKEN), then="keep")
    return send(response(body=b"value"), then="keep")


@dataclass
class Request:
    method: str
    path: str
    head: bytes


@dataclass
class HostileServer:
    """`respond(method, path)` decides each answer; every request is recorded in `requests`."""

    respond: Callable[[str, str], Script] = healthy
    host: str = "127.0.0.1"
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.bind((self.host, 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def connections(self) -> int:
        return len(self._conns)

    @property
    def url(self) -> str:
        port = self._listener.getsockname()[1]
        return f"http://[{self.host}]:{port}" if ":" in self.host else f"http://{self.host}:{port}"

    def stop(self) -> None:
        self._stop.set()
        for conn in list(self._conns):
            # Wakes a client still waiting on this connection (it sees the end of the stream).
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _accept(self) -> None:
        timer = threading.Timer(LIFETIME, self._stop.set)
        timer.daemon = True
        timer.start()
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()
        timer.cancel()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client may go away
            conn.settimeout(LIFETIME)
            pending = b""
            sent = 0
            while not self._stop.is_set():
                while b"\r\n\r\n" not in pending and len(pending) < MAX_REQUEST_HEAD:
                    data = conn.recv(4096)
                    if not data:
                        return
                    pending += data
                head, _, pending = pending.partition(b"\r\n\r\n")
                words = head.split(b"\r\n")[0].decode("latin-1").split(" ")
                method, path = [*words, ""][:2]
                self.requests.append(Request(method, path, head))
                script = self.respond(method, path)
                for piece in script.pieces():
                    if (script.interval and self._stop.wait(script.interval)) or sent > MAX_BYTES:
                        return
                    conn.sendall(piece)
                    sent += len(piece)
                if script.then == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                if script.then == "hang":
                    self._stop.wait()
                if script.then != "keep":
                    return
