"""The Engine API's HTTP/1.1 server: a thread per connection, on a Unix socket (or TCP
with mutual TLS), stdlib only.

    router = default_router()
    server = APIServer(router, app, logger=log)
    server.listen_unix("/run/pyrt/pyrt.sock", mode=0o660, group="docker")
    server.serve_forever()          # from another thread: server.shutdown()

What it does for every route:
- keep-alive (HTTP/1.1), an idle connection closed after `idle_timeout` seconds;
- request bodies by Content-Length or chunked transfer encoding; a route reads its body
  whole up to its limit (larger: 413 and the connection closes) or as a stream;
- the API version prefix (/v1.24 ... /v1.44, or none), moby's 400 outside it;
- errors as {"message": ...} with Content-Type application/json, the status from the
  pyrt error kind; 404 "page not found" for unknown routes;
- chunked streaming responses (pull progress, events, save), flushed per chunk;
- hijack: 101 UPGRADED (or 200 raw-stream), then the route owns the raw socket;
- API-Version, OSType, Docker-Experimental and Server headers on every answer.
"""

from __future__ import annotations

import contextlib
import grp
import http.client
import http.server
import importlib
import io
import logging
import os
import select
import socket
import socketserver
import ssl
import stat
import threading
import time
import urllib.parse
from collections.abc import Iterable
from typing import IO, Any, BinaryIO, cast

from pyrt import __version__
from pyrt.api import API_VERSION
from pyrt.api.errors import (
    JSON_CONTENT_TYPE,
    BodyTooLarge,
    HTTPError,
    body_of,
    message_of,
    status_of,
)
from pyrt.api.params import parse_query
from pyrt.api.routing import (
    STREAM_BODY,
    Hijacked,
    Request,
    Response,
    Router,
    StreamResponse,
    check_version,
    split_version,
)
from pyrt.errors import Conflict, InvalidArgument, PyrtError, SystemError_

log = logging.getLogger("pyrt.api")

#: the modules whose routes a daemon serves; each has register(router). A module not
#: (yet) in the tree is left out: each resource's routes land with their service.
ROUTE_MODULES = ("pyrt.api.routes_system", "pyrt.api.routes_images",
                 "pyrt.api.routes_containers", "pyrt.api.routes_volumes",
                 "pyrt.api.routes_networks")
DEFAULT_IDLE_TIMEOUT = 300.0
_DRAIN_LIMIT = 1 << 20


def default_router(modules: Iterable[str] = ROUTE_MODULES) -> Router:
    router = Router()
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                log.info("routes module %s not present: its endpoints are not served", name)
                continue
            raise
        mod.register(router)
    return router


# -- body readers -----------------------------------------------------------------------------


class _LengthReader(io.RawIOBase):
    """At most `length` bytes of `src`."""

    def __init__(self, src: IO[bytes], length: int) -> None:
        super().__init__()
        self._src = src
        self.left = length

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.left <= 0:
            return 0
        n = min(len(b), self.left)
        data = self._src.read(n) if n > 0 else b""
        if not data:
            raise InvalidArgument("request body ended before its Content-Length")
        b[:len(data)] = data
        self.left -= len(data)
        return len(data)

    @property
    def finished(self) -> bool:
        return self.left <= 0


class _ChunkedReader(io.RawIOBase):
    """The decoded body of a chunked request."""

    def __init__(self, src: IO[bytes]) -> None:
        super().__init__()
        self._src = src
        self._chunk_left = 0
        self.finished = False

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> None:
        line = self._src.readline(1024)
        if not line.endswith(b"\n"):
            raise InvalidArgument("malformed chunked request body: bad chunk size line")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise InvalidArgument("malformed chunked request body: bad chunk size") from None
        if size < 0:
            raise InvalidArgument("malformed chunked request body: negative chunk size")
        if size == 0:
            while True:  # trailers, up to the empty line
                t = self._src.readline(8192)
                if t in (b"\r\n", b"\n", b""):
                    break
            self.finished = True
        self._chunk_left = size

    def readinto(self, b: Any) -> int:
        if self.finished:
            return 0
        if self._chunk_left == 0:
            self._next_chunk()
            if self.finished:
                return 0
        n = min(len(b), self._chunk_left)
        data = self._src.read(n)
        if not data:
            raise InvalidArgument("request body ended inside a chunk")
        b[:len(data)] = data
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            crlf = self._src.readline(8)
            if crlf not in (b"\r\n", b"\n"):
                raise InvalidArgument("malformed chunked request body: no CRLF after chunk")
        return len(data)


class _ChunkedWriter:
    """Writes a chunked body; the status and headers go out before the first chunk."""

    def __init__(self, handler: _Handler, resp: StreamResponse, head: bool) -> None:
        self._h = handler
        self._resp = resp
        self._head = head
        self.started = False
        self.chunked = handler.request_version == "HTTP/1.1"

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        h = self._h
        h.send_response(self._resp.status)
        h.send_common_headers()
        h.send_header("Content-Type", self._resp.content_type)
        for k, v in self._resp.headers.items():
            h.send_header(k, v)
        if self.chunked:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.close_connection = True
        h.end_headers()
        h.wfile.flush()

    def write(self, data: bytes) -> int:
        if not data:
            return 0
        self.start()
        if self._head:
            return len(data)
        w = self._h.wfile
        if self.chunked:
            w.write(b"%x\r\n" % len(data) + bytes(data) + b"\r\n")
        else:
            w.write(data)
        w.flush()
        return len(data)

    def flush(self) -> None:
        self._h.wfile.flush()

    def finish(self) -> None:
        self.start()
        if self.chunked and not self._head:
            self._h.wfile.write(b"0\r\n\r\n")
        self._h.wfile.flush()


# -- the connection handler -------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"pyrt/{__version__} (linux)"
    sys_version = ""
    server: _ServerMixin  # type: ignore[assignment]
    _body: _LengthReader | _ChunkedReader | None = None
    _hijacked = False

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        log.debug("http: " + format, *args)

    def address_string(self) -> str:
        return str(self.client_address or "unix")

    def send_common_headers(self) -> None:
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """http.server's own errors (a request line or headers it cannot parse: 400,
        414, 431, 505) as the API's: {"message"} with Content-Type application/json, and
        an HTTP/1.1 status line even for a request too broken to name its version (the
        stdlib would send a bare HTML page); the connection closes after it."""
        if self.request_version in ("", "HTTP/0.9"):
            self.request_version = "HTTP/1.1"
        self.close_connection = True
        text = message or self.responses.get(code, ("error", ""))[0]
        self._send(Response(code, body_of(HTTPError(code, text)) + b"\n", JSON_CONTENT_TYPE),
                   self.command == "HEAD")

    # one request -------------------------------------------------------------------------
    def handle_one_request(self) -> None:
        try:
            # the idle timeout covers the request line and the headers: a client that
            # stalls in them does not hold its thread for ever
            self.connection.settimeout(self.server.idle_timeout)
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        finally:
            with contextlib.suppress(OSError):
                self.connection.settimeout(None)
        self.server.request_started()
        try:
            self._dispatch()
        finally:
            self.server.request_finished()
        with contextlib.suppress(OSError):
            self.wfile.flush()

    def _body_reader(self) -> _LengthReader | _ChunkedReader:
        if self._body is None:
            te = self.headers.get("Transfer-Encoding", "").lower()
            if "chunked" in te:
                self._body = _ChunkedReader(cast(IO[bytes], self.rfile))
            else:
                self._body = _LengthReader(cast(IO[bytes], self.rfile), self._content_length())
        return self._body

    def _content_length(self) -> int:
        text = self.headers.get("Content-Length")
        if text is None:
            return 0
        try:
            n = int(text)
        except ValueError:
            raise InvalidArgument(f"malformed Content-Length header: {text!r}") from None
        if n < 0:
            raise InvalidArgument(f"malformed Content-Length header: {text!r}")
        return n

    # the Connection protocol (pyrt.api.routing) ----------------------------------------
    def body_stream(self) -> BinaryIO:
        return cast(BinaryIO, io.BufferedReader(self._body_reader(), 1 << 16))

    def read_body(self, limit: int) -> bytes:
        reader = self._body_reader()
        if isinstance(reader, _LengthReader) and reader.left > limit:
            raise BodyTooLarge(limit)
        out = bytearray()
        while True:
            chunk = reader.read(min(1 << 16, limit + 1 - len(out)))
            if not chunk:
                break
            out += chunk
            if len(out) > limit:
                raise BodyTooLarge(limit)
        return bytes(out)

    def hijack(self, content_type: str) -> Hijacked:
        upgrade = ("upgrade" in self.headers.get("Connection", "").lower()
                   and bool(self.headers.get("Upgrade")))
        if upgrade:
            lines = ["HTTP/1.1 101 UPGRADED", f"Content-Type: {content_type}",
                     "Connection: Upgrade", f"Upgrade: {self.headers.get('Upgrade')}"]
        else:
            lines = ["HTTP/1.1 200 OK", f"Content-Type: {content_type}"]
        lines.append(f"Api-Version: {API_VERSION}")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.wfile.flush()
        self._hijacked = True
        self.close_connection = True
        return Hijacked(self.connection, cast(IO[bytes], self.rfile),
                        cast(IO[bytes], self.wfile), upgrade)

    def client_gone(self) -> bool:
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if not r:
                return False
            if isinstance(self.connection, ssl.SSLSocket):
                return False
            return bool(self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"")
        except BlockingIOError:
            return False
        except OSError:
            return True

    # dispatch ----------------------------------------------------------------------------
    def _dispatch(self) -> None:
        self._body = None
        self._hijacked = False
        head = self.command == "HEAD"
        started = time.monotonic()
        status = 0
        writer: _ChunkedWriter | None = None
        try:
            split = urllib.parse.urlsplit(self.path)
            version, path = split_version(urllib.parse.unquote(split.path))
            api_version = check_version(version)
            route, params = self.server.router.match(self.command, path)
            query = parse_query(split.query)
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            if (route.max_body != STREAM_BODY and not chunked
                    and self._content_length() > route.max_body):
                raise BodyTooLarge(route.max_body)
            headers = {k.lower(): v for k, v in self.headers.items()}
            req = Request(self.command, path, query, headers, params, api_version,
                          self.server.app, self, route.max_body)
            result = route.handler(req)
            if result is None:
                if not self._hijacked:
                    raise SystemError_(f"route {route.template} returned no response")
                status = 101
                self._discard_unread()
                return
            if isinstance(result, Response):
                status = result.status
                self._send(result, head)
            else:
                status = result.status
                writer = _ChunkedWriter(self, result, head)
                if result.eager:
                    writer.start()
                if result.chunks is not None:
                    for chunk in result.chunks:
                        writer.write(chunk)
                elif result.writer is not None:
                    result.writer(writer)
                writer.finish()
        except Exception as e:
            if self._hijacked or (writer is not None and writer.started):
                # the status line is gone: all we can do is end the connection
                log.warning("request %s %s failed after its response started: %s",
                            self.command, self.path, message_of(e))
                self.close_connection = True
                return
            status = status_of(e)
            if status >= 500 and not isinstance(e, PyrtError):
                log.exception("request %s %s failed", self.command, self.path)
            refuse_body = isinstance(e, BodyTooLarge | InvalidArgument) and self._body_unread()
            if refuse_body:
                self.close_connection = True
            self._send(Response(status, body_of(e) + b"\n", JSON_CONTENT_TYPE), head)
            if refuse_body:
                self._linger()
        finally:
            if not self._hijacked:
                self._finish_body()
            log.debug("request", extra={"fields": {
                "method": self.command, "path": self.path, "status": status,
                "ms": round((time.monotonic() - started) * 1000, 1)}})

    def _body_unread(self) -> bool:
        te = self.headers.get("Transfer-Encoding", "").lower()
        if self._body is None:
            try:
                return "chunked" in te or self._content_length() > 0
            except InvalidArgument:
                return True
        return not self._body.finished

    def _linger(self) -> None:
        """After answering a request whose body we refuse, let the client finish sending
        before closing: closing at once resets the connection, and a client still
        writing its body never reads the answer (it sees a broken pipe instead)."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(1.0)
            left = _DRAIN_LIMIT
            while left > 0:
                chunk = self.connection.recv(min(1 << 16, left))
                if not chunk:
                    break
                left -= len(chunk)

    def _discard_unread(self) -> None:
        """A hijacked stream is over: read and drop what the client sent that nobody read
        (stdin after the container's exit, say). Closing a Unix socket with unread data
        makes the client's next read fail with ECONNRESET instead of seeing the end, and
        the docker CLI then reports an error for a run that went well."""
        with contextlib.suppress(OSError, ValueError):
            self.connection.shutdown(socket.SHUT_RD)  # the client's later writes fail
            self.connection.setblocking(False)
            left = _DRAIN_LIMIT
            while left > 0:
                chunk = self.connection.recv(min(1 << 16, left))
                if not chunk:
                    break
                left -= len(chunk)

    def _finish_body(self) -> None:
        """Read what the route left of the body (keep-alive), or close the connection."""
        if self.close_connection or not self._body_unread():
            return
        try:
            reader = self._body_reader()
            left = _DRAIN_LIMIT
            while left > 0:
                chunk = reader.read(min(1 << 16, left))
                if not chunk:
                    return
                left -= len(chunk)
        except (OSError, PyrtError):
            pass
        self.close_connection = True

    def _send(self, resp: Response, head: bool) -> None:
        self.send_response(resp.status)
        self.send_common_headers()
        if resp.content_type is not None:
            self.send_header("Content-Type", resp.content_type)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if resp.status not in (204, 304) and not (100 <= resp.status < 200):
            self.send_header("Content-Length", str(len(resp.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head and resp.body and resp.status not in (204, 304):
            self.wfile.write(resp.body)
        self.wfile.flush()


# -- servers ----------------------------------------------------------------------------------


class _ServerMixin(socketserver.ThreadingMixIn):
    daemon_threads = True
    block_on_close = False
    # listen() backlog: socketserver's default of 5 refuses a burst of clients (a connect
    # with a timeout gets EAGAIN on a full Unix socket backlog) while the accept loop is busy
    request_queue_size = 128
    router: Router
    app: Any
    idle_timeout: float

    def init_api(self, router: Router, app: Any, idle_timeout: float) -> None:
        self.router = router
        self.app = app
        self.idle_timeout = idle_timeout
        self._active = 0
        self._active_cv = threading.Condition()

    def request_started(self) -> None:
        with self._active_cv:
            self._active += 1

    def request_finished(self) -> None:
        with self._active_cv:
            self._active -= 1
            self._active_cv.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being handled; False on timeout."""
        with self._active_cv:
            return self._active_cv.wait_for(lambda: self._active == 0, timeout)


class _UnixServer(_ServerMixin, socketserver.UnixStreamServer):
    pass


class _TLSServer(_ServerMixin, socketserver.TCPServer):
    allow_reuse_address = True
    address_family = socket.AF_INET
    ssl_context: ssl.SSLContext

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        return self.ssl_context.wrap_socket(sock, server_side=True,
                                            do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("connection from %s failed", client_address, exc_info=True)


def probe_socket(path: str, timeout: float = 2.0) -> bool:
    """True when a daemon answers GET /_ping on the Unix socket at `path`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except OSError:
        s.close()
        return False
    conn = http.client.HTTPConnection("localhost", timeout=timeout)
    conn.sock = s
    try:
        conn.request("GET", "/_ping")
        resp = conn.getresponse()
        resp.read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def tls_context(ca: str, cert: str, key: str) -> ssl.SSLContext:
    """A server context that demands a client certificate signed by `ca`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(ca)
    except (OSError, ssl.SSLError) as e:
        raise InvalidArgument(f"TLS: cannot load the certificates ({cert}, {key}, {ca}): "
                              f"{e}") from None
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class APIServer:
    """One or more listeners (Unix sockets, TCP+TLS) serving one router."""

    def __init__(self, router: Router, app: Any, *,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
        self.router = router
        self.app = app
        self.idle_timeout = idle_timeout
        self._servers: list[_UnixServer | _TLSServer] = []
        self._threads: list[threading.Thread] = []
        self.unix_paths: list[str] = []

    def listen_unix(self, path: str, *, mode: int = 0o660, group: str | None = "docker"
                    ) -> None:
        """Bind `path`. An existing socket where a daemon answers: Conflict; a stale one is
        replaced; anything else that is not a socket is refused."""
        path = os.path.abspath(path)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                raise Conflict(f"{path} exists and is not a socket: refusing to replace it")
            if probe_socket(path):
                raise Conflict(f"another daemon is answering on {path}: refusing to start")
            os.unlink(path)
            log.info("removed stale socket", extra={"fields": {"path": path}})
        old = os.umask(0o177)
        try:
            srv = _UnixServer(path, _Handler, bind_and_activate=False)
            try:
                srv.server_bind()
                srv.server_activate()
            except OSError as e:
                srv.server_close()
                raise SystemError_(f"listen on {path}: {e.strerror}", e.errno) from None
        finally:
            os.umask(old)
        gid = 0
        if group:
            with contextlib.suppress(KeyError):
                gid = grp.getgrnam(group).gr_gid
        os.chown(path, 0 if os.geteuid() == 0 else -1, gid if os.geteuid() == 0 else -1)
        os.chmod(path, mode)
        srv.init_api(self.router, self.app, self.idle_timeout)
        self._servers.append(srv)
        self.unix_paths.append(path)

    def listen_tcp(self, host: str, port: int, context: ssl.SSLContext) -> tuple[str, int]:
        try:
            srv = _TLSServer((host, port), _Handler)
        except OSError as e:
            raise SystemError_(f"listen on {host}:{port}: {e.strerror}", e.errno) from None
        srv.ssl_context = context
        srv.init_api(self.router, self.app, self.idle_timeout)
        self._servers.append(srv)
        addr = srv.server_address
        return str(addr[0]), int(addr[1])

    def start(self) -> None:
        """Serve every listener, each from a thread of its own."""
        for srv in self._servers:
            t = threading.Thread(target=srv.serve_forever, name="pyrt-api-accept",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def shutdown(self, grace: float = 10.0) -> bool:
        """Stop accepting, wait up to `grace` seconds for requests in flight, close the
        listeners and remove the socket files. True when every request had finished."""
        if self._threads:  # socketserver's shutdown waits for a serve_forever that ran
            for srv in self._servers:
                srv.shutdown()
        for srv in self._servers:
            srv.server_close()
        for p in self.unix_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        deadline = time.monotonic() + grace
        idle = all(srv.wait_idle(max(0.0, deadline - time.monotonic()))
                   for srv in self._servers)
        for t in self._threads:
            t.join(timeout=1)
        return idle


__all__ = ["DEFAULT_IDLE_TIMEOUT", "ROUTE_MODULES", "APIServer", "default_router",
           "probe_socket", "tls_context"]
