#!/usr/bin/env python3
"""A fake EC2 instance metadata service (IMDSv2) for tests, the namespace lab and benchmarks.

Stdlib only, so the lab can run it with a bare interpreter inside a network namespace.

Snapshot format: ``{"meta-data": {...}}`` where the ``meta-data`` object mirrors the tree under
``/latest/meta-data/``: an object is a directory (listed as its keys in order, sub-directories
with a trailing ``/``), a list is a multi-line value joined by ``"\\n"``, a string is the value.

In-process use::

    with ImdsMock(snapshot) as mock:
        client = Client(base_url=mock.url)
        mock.add_fault("/latest/api/token", status=500, count=2)

Standalone (another process)::

    python3 tests/imds_mock.py --snapshot FILE [--host H] [--port P] [--port-file F]

and drive it with ``MockControl(url)``, which mirrors the in-process API over ``/_mock/``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import ipaddress
import json
import os
import secrets
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

__all__ = ["ImdsMock", "MockControl", "RequestRecord", "main"]

TOKEN_PATH = "/latest/api/token"
META_PREFIX = "/latest/meta-data"
CONTROL_PREFIX = "/_mock/"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
MAX_TTL = 21600
# Bodies are only read so the keep-alive stream stays in sync; anything bigger is a broken client.
MAX_BODY = 16 * 1024 * 1024
FAULT_KEYS = frozenset(
    {"path", "status", "count", "delay", "body", "headers", "close", "method", "body_b64"}
)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the mock saw it.

    ``status`` is None when a ``close`` fault dropped the connection without any response.
    ``client_port`` is excluded from equality so tests can compare against the four contract
    fields; it exists to tell whether two requests shared one keep-alive connection.
    """

    method: str
    path: str
    status: int | None
    had_valid_token: bool
    client_port: int = field(default=0, compare=False)


@dataclass
class _Fault:
    method: str
    path: str
    status: int | None
    remaining: int | None
    delay: float
    body: bytes | None
    headers: dict[str, str]
    close: bool


@dataclass
class _Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def _norm_path(path: str) -> str:
    """Path used for fault/count matching: no query string, no trailing slash."""
    path = urlsplit(path).path
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def _split_rel(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    if any(p == "" for p in parts):
        raise ValueError(f"bad meta-data path {path!r}")
    return parts


def _validate_tree(node: Any, where: str) -> None:
    # Catch snapshot typos (numbers, nulls, nested lists) when they are loaded rather than as a
    # confusing response in the middle of some unrelated test.
    if isinstance(node, str):
        return
    if isinstance(node, list):
        for item in node:
            if not isinstance(item, str):
                raise TypeError(f"{where}: list items must be strings, got {item!r}")
        return
    if isinstance(node, dict):
        for key, child in node.items():
            if not isinstance(key, str) or not key or "/" in key:
                raise ValueError(f"{where}: bad key {key!r}")
            _validate_tree(child, f"{where}/{key}")
        return
    raise TypeError(f"{where}: values must be str, list of str or object, got {node!r}")


def _render(node: Any) -> str:
    if isinstance(node, dict):
        return "\n".join(f"{k}/" if isinstance(v, dict) else k for k, v in node.items())
    if isinstance(node, list):
        return "\n".join(node)
    return cast(str, node)


def _family_for(host: str) -> socket.AddressFamily:
    if not host:
        return socket.AF_INET
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        return infos[0][0]
    return socket.AF_INET6 if addr.version == 6 else socket.AF_INET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 makes a concurrent benchmark hit SYN retransmits (1 s stalls).
    request_queue_size = 128

    def __init__(self, mock: ImdsMock, address: tuple[str, int]) -> None:
        # TCPServer.__init__ creates the socket from self.address_family, so set it first.
        self.address_family = _family_for(address[0])
        self.mock = mock
        self.conn_lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can stall
        # for seconds in a sandbox or network namespace without a resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-request are routine in fault tests; only real bugs are shown.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        # Idle keep-alive connections would otherwise keep handler threads (and clients) hanging
        # on after stop().
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "EC2ws"
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; with Nagle on, the second waits for the
        # client's delayed ACK and every response costs ~40 ms.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.conn_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.conn_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.mock.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self._send(_Response(411, b"Length Required"))
            self.close_connection = True
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._send(_Response(400, b"Bad Content-Length"))
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = urlsplit(self.path).path
        if path.startswith(CONTROL_PREFIX):
            self._send(self.server.mock._control(self.command, path, body))
            return
        self._serve_imds(path)

    def _serve_imds(self, path: str) -> None:
        mock = self.server.mock
        method = self.command
        token = self.headers.get(TOKEN_HEADER)
        had_valid = mock._token_valid(token)
        port = int(self.client_address[1])
        is_token_put = method == "PUT" and _norm_path(path) == TOKEN_PATH

        fault: _Fault | None = None
        if is_token_put:
            # Token faults come first: a client must cope with a failing PUT whatever it sends.
            fault = mock._take_fault(method, path)
            if fault is not None and self._pre_fault(fault, port, had_valid):
                return
        resp = mock._imds_response(method, path, self.headers, had_valid)
        if not is_token_put and resp.status != 401:
            # Only after the token check, so a fault can never mask a missing/expired token.
            fault = mock._take_fault(method, path)
            if fault is not None and self._pre_fault(fault, port, had_valid):
                return
        if fault is not None:
            resp = _apply_fault(resp, fault)
        mock._record(RequestRecord(method, self.path, resp.status, had_valid, port))
        self._send(resp)

    def _pre_fault(self, fault: _Fault, port: int, had_valid: bool) -> bool:
        """Delay, then drop the connection if asked; True when nothing more is to be sent."""
        mock = self.server.mock
        # An Event rather than sleep() so stop() is not held up by a long fault delay; a request
        # still delayed when the server stops gets no answer, as from a server that went away.
        stopped = fault.delay > 0 and mock._stopping.wait(fault.delay)
        if stopped:
            self.close_connection = True
            return True
        if not fault.close:
            return False
        mock._record(RequestRecord(self.command, self.path, None, had_valid, port))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        return True

    def _send(self, resp: _Response) -> None:
        self.send_response(resp.status)
        names = {name.lower() for name, _ in resp.headers}
        if "content-type" not in names:
            self.send_header("Content-Type", "text/plain")
        for name, value in resp.headers:
            self.send_header(name, value)
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(resp.body)))
        else:
            declared = next(v for n, v in resp.headers if n.lower() == "content-length")
            if declared.strip() != str(len(resp.body)):
                # A deliberately wrong length desynchronises the stream; the connection is
                # unusable after it, just as with a real server cut off mid-response.
                self.close_connection = True
        try:
            self.end_headers()
            self.wfile.write(resp.body)
            self.wfile.flush()
        except OSError:
            # The client gave up (e.g. its timeout was shorter than a fault delay) or stop()
            # cut the connection; neither is an error of the mock.
            self.close_connection = True


def _apply_fault(resp: _Response, fault: _Fault) -> _Response:
    status = fault.status if fault.status is not None else resp.status
    body = fault.body if fault.body is not None else resp.body
    overridden = {name.lower() for name in fault.headers}
    headers = [(n, v) for n, v in resp.headers if n.lower() not in overridden]
    headers.extend(fault.headers.items())
    return _Response(status, body, headers)


class ImdsMock:
    """An IMDSv2 server on a real socket, serving a snapshot, with scriptable faults."""

    def __init__(
        self,
        snapshot: dict[str, Any],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        verbose: bool = False,
    ) -> None:
        self.host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        self.port = port
        self.verbose = verbose
        self._lock = threading.Lock()
        self._meta: dict[str, Any] = {}
        self._tokens: dict[str, float] = {}
        self._faults: list[_Fault] = []
        self._log: list[RequestRecord] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.set_snapshot(snapshot)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ImdsMock:
        if self._server is not None:
            raise RuntimeError("ImdsMock already started")
        self._stopping.clear()
        server = _Server(self, (self.host, self.port))
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            # stop() waits up to one poll interval; at 0.5 s (the default) that would dominate a
            # test suite that starts a mock per test.
            kwargs={"poll_interval": 0.01},
            daemon=True,
            name=f"imds-mock-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ImdsMock:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("ImdsMock not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- content -----------------------------------------------------------------------------

    def set_snapshot(self, snapshot: dict[str, Any]) -> None:
        if not isinstance(snapshot, dict) or not isinstance(snapshot.get("meta-data"), dict):
            raise ValueError('snapshot must be an object with a "meta-data" object')
        meta = copy.deepcopy(snapshot["meta-data"])
        _validate_tree(meta, "meta-data")
        with self._lock:
            self._meta = meta

    def set(self, path: str, value: str | list[str] | dict[str, Any] | None) -> None:
        """Set (or with None delete) one node; missing intermediate directories are created."""
        parts = _split_rel(path)
        if value is not None:
            value = copy.deepcopy(value)
            _validate_tree(value, path)
        with self._lock:
            node = self._meta
            for i, part in enumerate(parts[:-1]):
                child = node.get(part)
                if child is None:
                    if value is None:
                        return
                    child = node[part] = {}
                elif not isinstance(child, dict):
                    raise ValueError(f"{'/'.join(parts[: i + 1])} is a value, not a directory")
                node = child
            if value is None:
                node.pop(parts[-1], None)
            else:
                node[parts[-1]] = value

    # -- faults ------------------------------------------------------------------------------

    def add_fault(
        self,
        path: str,
        *,
        status: int | None = None,
        count: int | None = 1,
        delay: float = 0.0,
        body: str | bytes | None = None,
        headers: dict[str, str] | None = None,
        close: bool = False,
        method: str = "GET",
    ) -> None:
        """Make the next ``count`` (None: every) matching request misbehave.

        ``path`` is the full request path; a trailing slash does not matter. The fault applies
        after the token check for GETs and before it for ``PUT /latest/api/token``.
        """
        if not path.startswith("/"):
            raise ValueError(f"fault path must be a full request path, got {path!r}")
        if status is not None and not 100 <= status <= 599:
            raise ValueError(f"bad status {status!r}")
        if count is not None and count < 1:
            raise ValueError(f"count must be >= 1 or None, got {count!r}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay!r}")
        fault = _Fault(
            method=method.upper(),
            path=_norm_path(path),
            status=status,
            remaining=count,
            delay=float(delay),
            body=body.encode() if isinstance(body, str) else body,
            headers=dict(headers or {}),
            close=bool(close),
        )
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        key = _norm_path(path)
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.method == method and fault.path == key:
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            del self._faults[i]
                    return fault
        return None

    # -- tokens ------------------------------------------------------------------------------

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def _token_valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            expiry = self._tokens.get(token)
            if expiry is None:
                return False
            if time.monotonic() >= expiry:
                del self._tokens[token]
                return False
            return True

    def _issue_token(self, ttl: int) -> str:
        token = secrets.token_urlsafe(42)
        with self._lock:
            now = time.monotonic()
            # Drop dead tokens here so a long benchmark does not grow the table without bound.
            self._tokens = {t: e for t, e in self._tokens.items() if e > now}
            self._tokens[token] = now + ttl
        return token

    # -- request log -------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def count(self, path: str | None = None, method: str | None = None) -> int:
        return _count(self.requests, path, method)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def _record(self, record: RequestRecord) -> None:
        # Recorded before the response is written, so a client that has its answer can rely
        # on finding the request in the log.
        with self._lock:
            self._log.append(record)

    # -- request handling --------------------------------------------------------------------

    def _imds_response(
        self, method: str, path: str, headers: Any, had_valid_token: bool
    ) -> _Response:
        if _norm_path(path) == TOKEN_PATH:
            if method != "PUT":
                if method == "GET" and not had_valid_token:
                    return _Response(401, b"Unauthorized")
                return _Response(405, b"Method Not Allowed", [("Allow", "PUT")])
            if headers.get("X-Forwarded-For") is not None:
                return _Response(403, b"Forbidden")
            raw = (headers.get(TTL_HEADER) or "").strip()
            if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_TTL:
                return _Response(400, b"Bad Request")
            ttl = int(raw)
            return _Response(200, self._issue_token(ttl).encode(), [(TTL_HEADER, str(ttl))])

        if not (path == "/latest" or path.startswith("/latest/")):
            return _Response(404, b"Not Found")
        if method != "GET":
            return _Response(405, b"Method Not Allowed", [("Allow", "GET")])
        if not had_valid_token:
            return _Response(401, b"Unauthorized")
        if path != META_PREFIX and not path.startswith(META_PREFIX + "/"):
            return _Response(404, b"Not Found")

        rel = path[len(META_PREFIX) :]
        trailing = rel.endswith("/")
        # Only one trailing slash is forgiven; "//" inside a path is a client URL-building bug
        # that the real service would not paper over either.
        rel = rel[1:-1] if trailing else rel[1:]
        with self._lock:
            node: Any = self._meta
            if rel:
                for part in rel.split("/"):
                    if not isinstance(node, dict) or part not in node:
                        return _Response(404, b"Not Found")
                    node = node[part]
            # The trailing-slash leniency is for directories only, as the contract says.
            if trailing and not isinstance(node, dict):
                return _Response(404, b"Not Found")
            text = _render(node)
        return _Response(200, text.encode())

    def _control(self, method: str, path: str, body: bytes) -> _Response:
        name = path[len(CONTROL_PREFIX) :].strip("/")
        routes: dict[str, tuple[str, Any]] = {
            "snapshot": ("PUT", lambda arg: self.set_snapshot(arg)),
            "set": ("POST", lambda arg: self.set(arg["path"], arg.get("value"))),
            "fault": ("POST", lambda arg: self.add_fault(**_fault_kwargs(arg))),
            "clear-faults": ("POST", lambda arg: self.clear_faults()),
            "expire-tokens": ("POST", lambda arg: self.expire_tokens()),
            "clear-log": ("POST", lambda arg: self.clear_log()),
            "log": ("GET", lambda arg: [asdict(r) for r in self.requests]),
        }
        if name not in routes:
            return _json_response(404, {"error": f"unknown control endpoint {name!r}"})
        want, action = routes[name]
        if method != want:
            return _json_response(405, {"error": f"use {want} for {name}"})
        try:
            arg = json.loads(body) if body.strip() else {}
            result = action(arg)
        except (ValueError, TypeError, KeyError) as exc:
            return _json_response(400, {"error": f"{type(exc).__name__}: {exc}"})
        return _json_response(200, result if result is not None else {"ok": True})


def _fault_kwargs(arg: Any) -> dict[str, Any]:
    if not isinstance(arg, dict):
        raise TypeError("fault must be a JSON object")
    unknown = set(arg) - FAULT_KEYS
    if unknown:
        raise ValueError(f"unknown fault keys {sorted(unknown)}")
    kwargs = dict(arg)
    # JSON cannot carry bytes, so MockControl ships a bytes body as base64.
    if "body_b64" in kwargs:
        kwargs["body"] = base64.b64decode(kwargs.pop("body_b64"))
    return kwargs


def _json_response(status: int, payload: Any) -> _Response:
    return _Response(status, json.dumps(payload).encode(), [("Content-Type", "application/json")])


def _count(records: list[RequestRecord], path: str | None, method: str | None) -> int:
    key = _norm_path(path) if path is not None else None
    verb = method.upper() if method is not None else None
    return sum(
        1
        for r in records
        if (key is None or _norm_path(r.path) == key) and (verb is None or r.method == verb)
    )


class MockControl:
    """Drives an ImdsMock in another process through its ``/_mock/`` API."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # The lab may run with proxy variables set; the mock is always reached directly.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, name: str, payload: Any = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else b""
        req = urllib.request.Request(
            f"{self.base_url}{CONTROL_PREFIX}{name}",
            data=data if method != "GET" else None,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError):
                detail = json.loads(detail).get("error", detail)
            if exc.code == 400:
                raise ValueError(detail) from None
            raise

    def set_snapshot(self, snapshot: dict[str, Any]) -> None:
        self._call("PUT", "snapshot", snapshot)

    def set(self, path: str, value: str | list[str] | dict[str, Any] | None) -> None:
        self._call("POST", "set", {"path": path, "value": value})

    def add_fault(
        self,
        path: str,
        *,
        status: int | None = None,
        count: int | None = 1,
        delay: float = 0.0,
        body: str | bytes | None = None,
        headers: dict[str, str] | None = None,
        close: bool = False,
        method: str = "GET",
    ) -> None:
        payload: dict[str, Any] = {
            "path": path,
            "status": status,
            "count": count,
            "delay": delay,
            "headers": headers,
            "close": close,
            "method": method,
        }
        if isinstance(body, bytes):
            payload["body_b64"] = base64.b64encode(body).decode()
        else:
            payload["body"] = body
        self._call("POST", "fault", payload)

    def clear_faults(self) -> None:
        self._call("POST", "clear-faults")

    def expire_tokens(self) -> None:
        self._call("POST", "expire-tokens")

    @property
    def requests(self) -> list[RequestRecord]:
        return [RequestRecord(**r) for r in self._call("GET", "log")]

    def count(self, path: str | None = None, method: str | None = None) -> int:
        return _count(self.requests, path, method)

    def clear_log(self) -> None:
        self._call("POST", "clear-log")


@contextlib.contextmanager
def _signals_set(event: threading.Event) -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        event.set()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, prev in old.items():
            signal.signal(sig, prev)


def _write_port_file(path: str, port: int) -> None:
    # Written then renamed, so a poller never reads a half-written (empty) file.
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(f"{port}\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve an IMDSv2 snapshot until SIGTERM.")
    parser.add_argument("--snapshot", required=True, help="snapshot JSON file")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (IPv4 or IPv6)")
    parser.add_argument("--port", type=int, default=0, help="port, 0 for an ephemeral one")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)

    with open(args.snapshot) as fh:
        snapshot = json.load(fh)
    done = threading.Event()
    with _signals_set(done):
        mock = ImdsMock(snapshot, args.host, args.port, verbose=args.verbose)
        try:
            mock.start()
        except OSError as exc:
            print(f"imds_mock: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1
        try:
            if args.port_file:
                _write_port_file(args.port_file, mock.port)
            print(f"imds_mock: serving {mock.url}", file=sys.stderr, flush=True)
            # A timed wait keeps the main thread returning to the interpreter, so signal
            # handlers run promptly.
            while not done.wait(0.2):
                pass
        finally:
            mock.stop()
            if args.port_file:
                with contextlib.suppress(OSError):
                    os.unlink(args.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
