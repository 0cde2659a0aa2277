"""pyrt.api.client.Client: the Engine API over a Unix socket, for the CLI and programs.

    c = Client()                                  # $PYRT_HOST, $DOCKER_HOST, else the default
    c.ping(); c.version(); c.info()
    for msg in c.pull("busybox:latest"): ...      # docker's JSON progress messages
    c.images(); c.inspect_image("busybox"); c.tag("busybox", "me/bb", "1")
    with open("bb.tar", "wb") as f: c.save(["busybox"], f)
    c.load(open("bb.tar", "rb"))                  # ["Loaded image: busybox:latest"]

Error responses raise the pyrt error of their status (404 NotFound, 409 Conflict, 400
InvalidArgument, 503 Unavailable, else SystemError_) with the daemon's message; an error
inside a progress stream raises the same way. Imports only the standard library.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping

from pyrt.api import API_VERSION
from pyrt.api.errors import error_for_status
from pyrt.errors import InvalidArgument, Unavailable

# typing costs ~5 ms of imports on every CLI command: annotations only need it for mypy
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

DEFAULT_HOST = "unix:///run/pyrt/pyrt.sock"

# HTTP/1.1 is spoken here directly on the socket: http.client (with the email and ssl
# packages it imports) costs ~30 ms on every CLI command, more than the request itself.
_RECV = 1 << 16
_MAX_HEAD = 1 << 20
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def _quote(text: str, safe: str = "") -> str:
    """Percent-encode `text` as urllib.parse.quote(text, safe) does (UTF-8)."""
    keep = _SAFE | frozenset(safe.encode())
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in text.encode())


def _urlencode(query: Mapping[str, Any]) -> str:
    """urllib.parse.urlencode(query, doseq=True): a list or tuple value repeats its key."""
    parts = []
    for k, v in query.items():
        for item in v if isinstance(v, list | tuple) else [v]:
            parts.append(f"{_quote(str(k), ' ')}={_quote(str(item), ' ')}".replace(" ", "+"))
    return "&".join(parts)


def _read_head(sock: socket.socket, what: str) -> tuple[int, str, list[tuple[str, str]], bytes]:
    """Read a response's status line and headers: (status, reason, headers, bytes read past
    them). Unavailable when the connection ends first or the head is not HTTP/1.x."""
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(buf) > _MAX_HEAD:
            raise Unavailable(f"{what}: response headers larger than {_MAX_HEAD} bytes")
        chunk = sock.recv(_RECV)
        if not chunk:
            raise Unavailable(f"{what}: connection closed before the response")
        buf += chunk
    lines = buf[:end].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise Unavailable(f"{what}: not an HTTP/1.1 response: {lines[0][:100]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    return int(code), reason.strip(), headers, buf[end + 4:]


class _Response:
    """One response, read from its own connection: status, headers and the body, framed
    by Content-Length, chunked transfer encoding, or the end of the connection. The
    connection is the response's: close() closes it."""

    def __init__(self, sock: socket.socket, method: str, what: str) -> None:
        self.sock = sock
        self.what = what
        self.status, self.reason, self.headers, self._raw = _read_head(sock, what)
        self._fields: dict[str, str] = {}
        for name, value in self.headers:
            key = name.lower()
            self._fields[key] = f"{self._fields[key]}, {value}" if key in self._fields \
                else value
        self._pending = b""  # body bytes read from the wire, not yet returned
        self._chunked = "chunked" in self._fields.get("transfer-encoding", "").lower()
        self._left: int | None = None  # bytes left: the whole body, or the current chunk
        self._done = method == "HEAD" or self.status in (204, 304) or self.status < 200
        if not self._chunked and not self._done and "content-length" in self._fields:
            try:
                self._left = int(self._fields["content-length"])
            except ValueError:
                raise Unavailable(f"{what}: bad Content-Length "
                                  f"{self._fields['content-length']!r}") from None
            self._done = self._left == 0
        self._chunk_started = False

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self._fields.get(name.lower(), default)

    def getheaders(self) -> list[tuple[str, str]]:
        return list(self.headers)

    def close(self) -> None:
        self.sock.close()

    def take_buffered(self) -> bytes:
        """What was read past the headers and not returned yet (an upgraded connection's
        first bytes: the socket is then the caller's)."""
        data, self._pending, self._raw = self._pending + self._raw, b"", b""
        return data

    # the wire ----------------------------------------------------------------------------
    def _fill(self) -> bool:
        chunk = self.sock.recv(_RECV)
        self._raw += chunk
        return bool(chunk)

    def _line(self) -> bytes:
        while b"\r\n" not in self._raw:
            if not self._fill():
                raise Unavailable(f"{self.what}: connection closed inside a chunked body")
        line, _, self._raw = self._raw.partition(b"\r\n")
        return line

    def _next(self, n: int) -> bytes:
        """Up to `n` bytes of body from the wire (b"" at its end)."""
        if self._done:
            return b""
        if self._chunked and not self._left:
            if self._chunk_started:
                self._line()  # the CRLF that ends the previous chunk's data
            self._chunk_started = True
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                self._left = int(size_text, 16)
            except ValueError:
                raise Unavailable(f"{self.what}: bad chunk size {size_text[:20]!r}") from None
            if self._left == 0:
                while self._line():  # trailer fields, up to the empty line
                    pass
                self._done = True
                return b""
        if not self._raw and not self._fill():
            if self._left is not None:
                raise Unavailable(f"{self.what}: connection closed {self._left} bytes before "
                                  "the end of the body")
            self._done = True
            return b""
        take = min(n, len(self._raw)) if self._left is None else min(n, len(self._raw),
                                                                      self._left)
        data, self._raw = self._raw[:take], self._raw[take:]
        if self._left is not None:
            self._left -= take
            if self._left == 0 and not self._chunked:
                self._done = True
        return data

    # reading the body --------------------------------------------------------------------
    def read(self, n: int = -1) -> bytes:
        """`n` < 0: the rest of the body; else up to `n` bytes (b"" only at its end)."""
        if n < 0:
            parts = [self._pending]
            self._pending = b""
            while True:
                data = self._next(_RECV)
                if not data:
                    return b"".join(parts)
                parts.append(data)
        if not self._pending:
            return self._next(n)
        data, self._pending = self._pending[:n], self._pending[n:]
        return data

    def readline(self) -> bytes:
        while b"\n" not in self._pending:
            data = self._next(_RECV)
            if not data:
                line, self._pending = self._pending, b""
                return line
            self._pending += data
        line, _, self._pending = self._pending.partition(b"\n")
        return line + b"\n"


def _raise_for(resp: _Response, data: bytes | None = None) -> None:
    if resp.status < 400:
        return
    body = resp.read() if data is None else data
    try:
        msg = json.loads(body).get("message") or body.decode(errors="replace")
    except (ValueError, AttributeError):
        msg = body.decode(errors="replace").strip() or resp.reason
    raise error_for_status(resp.status, str(msg))


class Client:
    def __init__(self, host: str | None = None, *, timeout: float | None = 60.0,
                 version: str = API_VERSION) -> None:
        host = host or os.environ.get("PYRT_HOST") or os.environ.get("DOCKER_HOST") \
            or DEFAULT_HOST
        if not host.startswith("unix://"):
            raise InvalidArgument(f"client host {host!r}: only unix:// sockets are supported")
        self.path = host[len("unix://"):]
        self.timeout = timeout
        self.prefix = f"/v{version}"

    # plumbing ----------------------------------------------------------------------------
    def _connect(self, timeout: float | None) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.path)
        except OSError as e:
            s.close()
            raise Unavailable(f"cannot connect to the pyrt daemon at unix://{self.path}: "
                              f"{e.strerror}") from None
        return s

    def _url(self, path: str, query: Mapping[str, Any] | None) -> str:
        q = {k: v for k, v in (query or {}).items() if v is not None}
        for k, v in list(q.items()):
            if isinstance(v, bool):
                q[k] = "1" if v else "0"
            elif isinstance(v, dict):
                q[k] = json.dumps(v)
        url = self.prefix + _quote(path, safe="/:@")
        return f"{url}?{_urlencode(q)}" if q else url

    def _request(self, method: str, path: str, query: Mapping[str, Any] | None = None,
                 body: bytes | IO[bytes] | None = None, headers: Mapping[str, str] | None = None,
                 timeout: float | None | bool = True) -> _Response:
        url = self._url(path, query)
        sock = self._connect(self.timeout if timeout is True else
                             (None if timeout is False else timeout))
        head = [f"{method} {url} HTTP/1.1", "Host: localhost", "Connection: close"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        data = body if isinstance(body, bytes) else None
        if body is not None and data is None:
            head.append("Transfer-Encoding: chunked")
        elif data is not None or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(data or b'')}")
        what = f"pyrt daemon at unix://{self.path}"
        try:
            first = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
            sock.sendall(first + (data or b""))
            if body is not None and not isinstance(body, bytes):
                while True:
                    chunk = body.read(1 << 16)
                    if not chunk:
                        break
                    sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            return _Response(sock, method, what)
        except OSError as e:
            sock.close()
            raise Unavailable(f"{what}: {e}") from None
        except BaseException:
            sock.close()
            raise

    def _json(self, method: str, path: str, query: Mapping[str, Any] | None = None,
              body: Any = None, timeout: float | None | bool = True) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        resp = self._request(method, path, query, data, headers,
                                   timeout=False if timeout is None else timeout)
        try:
            raw = resp.read()
            _raise_for(resp, raw)
            return json.loads(raw) if raw.strip() else None
        finally:
            resp.close()

    def _stream(self, method: str, path: str, query: Mapping[str, Any] | None = None,
                body: bytes | IO[bytes] | None = None, headers: Mapping[str, str] | None = None
                ) -> Iterator[dict[str, Any]]:
        resp = self._request(method, path, query, body, headers, timeout=False)
        try:
            _raise_for(resp)
            while True:
                line = resp.readline()
                if not line:
                    return
                if not line.strip():
                    continue
                msg = json.loads(line)
                if isinstance(msg, dict) and msg.get("error"):
                    raise error_for_status(500, str(msg["error"]))
                yield msg
        finally:
            resp.close()

    # system ------------------------------------------------------------------------------
    def ping(self) -> bool:
        resp = self._request("GET", "/_ping")
        try:
            data = resp.read()
            _raise_for(resp, data)
            return data == b"OK"
        finally:
            resp.close()

    def version(self) -> dict[str, Any]:
        return dict(self._json("GET", "/version"))

    def info(self) -> dict[str, Any]:
        return dict(self._json("GET", "/info"))

    def df(self) -> dict[str, Any]:
        return dict(self._json("GET", "/system/df"))

    def events(self, filters: Mapping[str, list[str]] | None = None,
               since: str | float | None = None, until: str | float | None = None
               ) -> Iterator[dict[str, Any]]:
        q = {"filters": dict(filters) if filters else None,
             "since": None if since is None else str(since),
             "until": None if until is None else str(until)}
        return self._stream("GET", "/events", q)

    # images ------------------------------------------------------------------------------
    def pull(self, image: str, tag: str = "", platform: str | None = None
             ) -> Iterator[dict[str, Any]]:
        return self._stream("POST", "/images/create",
                            {"fromImage": image, "tag": tag or None, "platform": platform})

    def import_image(self, src: IO[bytes], repo: str = "", tag: str = "",
                     changes: list[str] | None = None, message: str = "") -> str:
        msgs = list(self._stream("POST", "/images/create", {
            "fromSrc": "-", "repo": repo or None, "tag": tag or None,
            "changes": changes or None, "message": message or None}, body=src,
            headers={"Content-Type": "application/x-tar"}))
        return str(msgs[-1]["status"])

    def images(self, all: bool = False,  # noqa: A002 - docker's parameter name
               filters: Mapping[str, list[str]] | None = None) -> list[dict[str, Any]]:
        return list(self._json("GET", "/images/json",
                               {"all": all, "filters": dict(filters) if filters else None}))

    def inspect_image(self, name: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/images/{name}/json"))

    def history(self, name: str) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/images/{name}/history"))

    def tag(self, name: str, repo: str, tag: str = "") -> None:
        self._json("POST", f"/images/{name}/tag", {"repo": repo, "tag": tag or None})

    def push(self, name: str, tag: str = "") -> Iterator[dict[str, Any]]:
        return self._stream("POST", f"/images/{name}/push", {"tag": tag or None},
                            headers={"X-Registry-Auth": "e30="})

    def remove_image(self, name: str, force: bool = False, noprune: bool = False
                     ) -> list[dict[str, str]]:
        return list(self._json("DELETE", f"/images/{name}",
                               {"force": force, "noprune": noprune}))

    def prune_images(self, filters: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
        return dict(self._json("POST", "/images/prune",
                               {"filters": dict(filters) if filters else None}))

    # -- volumes

    def create_volume(self, name: str | None = None, driver: str = "local",
                      driver_opts: Mapping[str, str] | None = None,
                      labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"Name": name or "", "Driver": driver,
                                "Labels": dict(labels or {})}
        if driver_opts is not None:
            body["DriverOpts"] = dict(driver_opts)
        return dict(self._json("POST", "/volumes/create", body=body))

    def volumes(self, filters: Mapping[str, list[str]] | None = None) -> list[dict[str, Any]]:
        out = self._json("GET", "/volumes", {"filters": dict(filters) if filters else None})
        return list(out.get("Volumes") or [])

    def inspect_volume(self, name: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/volumes/{name}"))

    def remove_volume(self, name: str, force: bool = False) -> None:
        self._json("DELETE", f"/volumes/{name}", {"force": force})

    def prune_volumes(self, filters: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
        return dict(self._json("POST", "/volumes/prune",
                               {"filters": dict(filters) if filters else None}))

    def save(self, names: list[str], out: IO[bytes]) -> int:
        """Write the tar of `names` to `out`; returns the bytes written."""
        resp = self._request("GET", "/images/get", {"names": names}, timeout=False)
        try:
            _raise_for(resp)
            n = 0
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    return n
                out.write(chunk)
                n += len(chunk)
        finally:
            resp.close()

    def load(self, src: IO[bytes], quiet: bool = False) -> list[str]:
        """Load a docker-archive or OCI layout tar; returns docker's "Loaded image..." lines."""
        msgs = self._stream("POST", "/images/load", {"quiet": quiet}, body=src,
                            headers={"Content-Type": "application/x-tar"})
        return [str(m["stream"]).strip() for m in msgs if "stream" in m]

    # containers (added for the pyrt CLI) -------------------------------------------------
    def containers(self, all: bool = False,  # noqa: A002 - docker's parameter name
                   filters: Mapping[str, list[str]] | None = None, size: bool = False,
                   limit: int | None = None) -> list[dict[str, Any]]:
        return list(self._json("GET", "/containers/json", {
            "all": all, "size": size, "limit": limit,
            "filters": dict(filters) if filters else None}))

    def create_container(self, config: Mapping[str, Any], name: str | None = None
                         ) -> dict[str, Any]:
        return dict(self._json("POST", "/containers/create", {"name": name or None},
                               body=dict(config)))

    def inspect_container(self, cid: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/containers/{cid}/json"))

    def start(self, cid: str) -> None:
        self._json("POST", f"/containers/{cid}/start")

    def stop(self, cid: str, timeout: int | None = None, signal: str | None = None) -> None:
        self._json("POST", f"/containers/{cid}/stop", {"t": timeout, "signal": signal},
                   timeout=None)

    def restart(self, cid: str, timeout: int | None = None, signal: str | None = None
                ) -> None:
        self._json("POST", f"/containers/{cid}/restart", {"t": timeout, "signal": signal},
                   timeout=None)

    def kill(self, cid: str, signal: str | None = None) -> None:
        self._json("POST", f"/containers/{cid}/kill", {"signal": signal})

    def pause(self, cid: str) -> None:
        self._json("POST", f"/containers/{cid}/pause")

    def unpause(self, cid: str) -> None:
        self._json("POST", f"/containers/{cid}/unpause")

    def remove_container(self, cid: str, force: bool = False, volumes: bool = False) -> None:
        self._json("DELETE", f"/containers/{cid}", {"force": force, "v": volumes},
                   timeout=None)

    def rename(self, cid: str, name: str) -> None:
        self._json("POST", f"/containers/{cid}/rename", {"name": name})

    def resize(self, cid: str, height: int, width: int) -> None:
        self._json("POST", f"/containers/{cid}/resize", {"h": height, "w": width})

    def wait(self, cid: str, condition: str | None = None) -> dict[str, Any]:
        """Blocks until the condition (not-running, next-exit, removed); {"StatusCode"...}."""
        return dict(self._json("POST", f"/containers/{cid}/wait", {"condition": condition},
                               timeout=None))

    def wait_begin(self, cid: str, condition: str | None = None
                   ) -> Callable[[], dict[str, Any]]:
        """Send the wait now (the daemon is waiting once this returns); the returned
        function blocks for the result. `docker run` waits like this before the start."""
        resp = self._request("POST", f"/containers/{cid}/wait",
                                   {"condition": condition}, timeout=False)
        try:
            _raise_for(resp)
        except BaseException:
            resp.close()
            raise

        def result() -> dict[str, Any]:
            try:
                return dict(json.loads(resp.read()))
            finally:
                resp.close()

        return result

    def exec_start_detached(self, eid: str) -> None:
        self._json("POST", f"/exec/{eid}/start", body={"Detach": True, "Tty": False})

    def logs(self, cid: str, *, follow: bool = False, tail: str | int | None = None,
             timestamps: bool = False, since: str | None = None, until: str | None = None,
             stdout: bool = True, stderr: bool = True) -> Iterator[tuple[int, bytes]]:
        """(stream, data) pairs: 1 stdout, 2 stderr (a TTY container's output is all 1)."""
        resp = self._request("GET", f"/containers/{cid}/logs", {
            "follow": follow, "tail": None if tail is None else str(tail),
            "timestamps": timestamps, "since": since, "until": until,
            "stdout": stdout, "stderr": stderr}, timeout=False)
        try:
            _raise_for(resp)
            mux = "multiplexed" in (resp.getheader("Content-Type") or "")
            yield from demux(resp.read, mux)
        finally:
            resp.close()

    def hijack(self, method: str, path: str, query: Mapping[str, Any] | None = None,
               body: Any = None) -> tuple[socket.socket, bytes, bool]:
        """An upgraded (hijacked) connection for attach and exec start: returns the socket,
        the bytes already read past the headers, and whether the stream is multiplexed."""
        data = json.dumps(body).encode() if body is not None else b""
        s = self._connect(None)
        head = (f"{method} {self._url(path, query)} HTTP/1.1\r\nHost: localhost\r\n"
                f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        what = f"pyrt daemon at unix://{self.path}"
        try:
            s.sendall(head + data)
            resp = _Response(s, method, f"{what}, {method} {path}")
            if resp.status >= 400:
                s.settimeout(10)
                _raise_for(resp)
        except OSError as e:
            s.close()
            raise Unavailable(f"{what}: {e}") from None
        except BaseException:
            s.close()
            raise
        return s, resp.take_buffered(), "multiplexed" in (resp.getheader("Content-Type") or "")

    def attach(self, cid: str, *, stdin: bool = False, stdout: bool = True,
               stderr: bool = True, logs: bool = False, stream: bool = True
               ) -> tuple[socket.socket, bytes, bool]:
        return self.hijack("POST", f"/containers/{cid}/attach", {
            "stdin": stdin, "stdout": stdout, "stderr": stderr, "logs": logs,
            "stream": stream})

    def exec_create(self, cid: str, config: Mapping[str, Any]) -> str:
        return str(self._json("POST", f"/containers/{cid}/exec", body=dict(config))["Id"])

    def exec_start(self, eid: str, tty: bool = False,
                   console_size: tuple[int, int] | None = None
                   ) -> tuple[socket.socket, bytes, bool]:
        body: dict[str, Any] = {"Detach": False, "Tty": tty}
        if console_size:
            body["ConsoleSize"] = list(console_size)
        return self.hijack("POST", f"/exec/{eid}/start", body=body)

    def exec_inspect(self, eid: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/exec/{eid}/json"))

    def exec_resize(self, eid: str, height: int, width: int) -> None:
        self._json("POST", f"/exec/{eid}/resize", {"h": height, "w": width})

    def top(self, cid: str, ps_args: str | None = None) -> dict[str, Any]:
        return dict(self._json("GET", f"/containers/{cid}/top", {"ps_args": ps_args}))

    def stats(self, cid: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/containers/{cid}/stats", {"stream": False}))

    def changes(self, cid: str) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/containers/{cid}/changes") or [])

    def commit(self, cid: str, repo: str = "", tag: str = "", author: str = "",
               comment: str = "", changes: list[str] | None = None, pause: bool = True
               ) -> str:
        return str(self._json("POST", "/commit", {
            "container": cid, "repo": repo or None, "tag": tag or None,
            "author": author or None, "comment": comment or None,
            "changes": changes or None, "pause": pause})["Id"])

    def _download(self, path: str, query: Mapping[str, Any] | None, out: IO[bytes]
                  ) -> dict[str, str]:
        resp = self._request("GET", path, query, timeout=False)
        try:
            _raise_for(resp)
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    return {k.lower(): v for k, v in resp.getheaders()}
                out.write(chunk)
        finally:
            resp.close()

    def export(self, cid: str, out: IO[bytes]) -> None:
        self._download(f"/containers/{cid}/export", None, out)

    def get_archive(self, cid: str, path: str, out: IO[bytes]) -> dict[str, Any]:
        """Write the tar of `path` to `out`; returns its stat (docker's PathStat)."""
        import base64

        headers = self._download(f"/containers/{cid}/archive", {"path": path}, out)
        raw = headers.get("x-docker-container-path-stat", "")
        return dict(json.loads(base64.b64decode(raw))) if raw else {}

    def stat_path(self, cid: str, path: str) -> dict[str, Any]:
        import base64

        resp = self._request("HEAD", f"/containers/{cid}/archive", {"path": path})
        try:
            resp.read()
            _raise_for(resp, b"")
            raw = resp.getheader("X-Docker-Container-Path-Stat") or ""
            return dict(json.loads(base64.b64decode(raw))) if raw else {}
        finally:
            resp.close()

    def put_archive(self, cid: str, path: str, src: IO[bytes],
                    no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False
                    ) -> None:
        resp = self._request("PUT", f"/containers/{cid}/archive", {
            "path": path, "noOverwriteDirNonDir": no_overwrite_dir_non_dir,
            "copyUIDGID": copy_uid_gid}, body=src,
            headers={"Content-Type": "application/x-tar"}, timeout=False)
        try:
            _raise_for(resp)
            resp.read()
        finally:
            resp.close()

    # -- networks --------------------------------------------------------------------------

    def networks(self, filters: Mapping[str, list[str]] | None = None
                 ) -> list[dict[str, Any]]:
        return list(self._json("GET", "/networks",
                               {"filters": dict(filters) if filters else None}))

    def inspect_network(self, net: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/networks/{net}"))

    def create_network(self, name: str, *, driver: str = "bridge", subnet: str = "",
                       gateway: str = "", ip_range: str = "", internal: bool = False,
                       attachable: bool = False, options: Mapping[str, str] | None = None,
                       labels: Mapping[str, str] | None = None) -> str:
        """docker network create; the network's id."""
        cfg = {k: v for k, v in (("Subnet", subnet), ("Gateway", gateway),
                                 ("IPRange", ip_range)) if v}  # fmt: skip
        body = {"Name": name, "Driver": driver, "Internal": internal, "Attachable": attachable,
                "Options": dict(options or {}), "Labels": dict(labels or {}),
                "IPAM": {"Driver": "default", "Config": [cfg] if cfg else []}}  # fmt: skip
        return str(self._json("POST", "/networks/create", body=body)["Id"])

    def remove_network(self, net: str) -> None:
        self._json("DELETE", f"/networks/{net}")

    def connect_network(self, net: str, container: str, aliases: list[str] | None = None,
                        ip: str = "") -> None:
        cfg: dict[str, Any] = {}
        if aliases:
            cfg["Aliases"] = list(aliases)
        if ip:
            cfg["IPAMConfig"] = {"IPv4Address": ip}
        self._json("POST", f"/networks/{net}/connect",
                   body={"Container": container, "EndpointConfig": cfg})

    def disconnect_network(self, net: str, container: str, force: bool = False) -> None:
        self._json("POST", f"/networks/{net}/disconnect",
                   body={"Container": container, "Force": force})

    def prune_networks(self, filters: Mapping[str, list[str]] | None = None
                       ) -> dict[str, Any]:
        return dict(self._json("POST", "/networks/prune",
                               {"filters": dict(filters) if filters else None}))


def demux(read: Any, multiplexed: bool) -> Iterator[tuple[int, bytes]]:
    """(stream, data) from a reader (read(n) -> bytes): docker's 8-byte frames
    [stream, 0, 0, 0, size big-endian] when multiplexed, else raw data on stream 1."""
    if not multiplexed:
        while True:
            data = read(1 << 16)
            if not data:
                return
            yield 1, data
    while True:
        head = _read_exact(read, 8)
        if len(head) < 8:
            return
        size = int.from_bytes(head[4:8], "big")
        data = _read_exact(read, size)
        yield head[0], data
        if len(data) < size:
            return


def _read_exact(read: Any, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        chunk = read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


__all__ = ["DEFAULT_HOST", "Client", "demux"]
