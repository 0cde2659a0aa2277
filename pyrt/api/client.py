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

import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

from pyrt.api import API_VERSION
from pyrt.api.errors import error_for_status
from pyrt.errors import InvalidArgument, Unavailable

DEFAULT_HOST = "unix:///run/pyrt/pyrt.sock"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError as e:
            s.close()
            raise Unavailable(f"cannot connect to the pyrt daemon at unix://{self._path}: "
                              f"{e.strerror}") from None
        self.sock = s


def _raise_for(resp: http.client.HTTPResponse, data: bytes | None = None) -> None:
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
    def _request(self, method: str, path: str, query: Mapping[str, Any] | None = None,
                 body: bytes | IO[bytes] | None = None, headers: Mapping[str, str] | None = None,
                 timeout: float | None | bool = True) -> tuple[_UnixConnection,
                                                             http.client.HTTPResponse]:
        q = {k: v for k, v in (query or {}).items() if v is not None}
        for k, v in list(q.items()):
            if isinstance(v, bool):
                q[k] = "1" if v else "0"
            elif isinstance(v, dict):
                q[k] = json.dumps(v)
        url = self.prefix + urllib.parse.quote(path, safe="/:@")
        if q:
            url += "?" + urllib.parse.urlencode(q, doseq=True)
        conn = _UnixConnection(self.path, self.timeout if timeout is True else
                               (None if timeout is False else timeout))
        hdrs = dict(headers or {})
        try:
            if body is not None and not isinstance(body, bytes):
                conn.putrequest(method, url)
                for k, v in hdrs.items():
                    conn.putheader(k, v)
                conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                while True:
                    chunk = body.read(1 << 16)
                    if not chunk:
                        break
                    conn.send(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                conn.send(b"0\r\n\r\n")
            else:
                conn.request(method, url, body=body, headers=hdrs)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            if isinstance(e, Unavailable):
                raise
            raise Unavailable(f"pyrt daemon at unix://{self.path}: {e}") from None
        except Exception:
            conn.close()
            raise
        return conn, resp

    def _json(self, method: str, path: str, query: Mapping[str, Any] | None = None,
              body: Any = None, timeout: float | None | bool = True) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn, resp = self._request(method, path, query, data, headers,
                                   timeout=False if timeout is None else timeout)
        try:
            raw = resp.read()
            _raise_for(resp, raw)
            return json.loads(raw) if raw.strip() else None
        finally:
            conn.close()

    def _stream(self, method: str, path: str, query: Mapping[str, Any] | None = None,
                body: bytes | IO[bytes] | None = None, headers: Mapping[str, str] | None = None
                ) -> Iterator[dict[str, Any]]:
        conn, resp = self._request(method, path, query, body, headers, timeout=False)
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
            conn.close()

    # system ------------------------------------------------------------------------------
    def ping(self) -> bool:
        conn, resp = self._request("GET", "/_ping")
        try:
            data = resp.read()
            _raise_for(resp, data)
            return data == b"OK"
        finally:
            conn.close()

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

    def save(self, names: list[str], out: IO[bytes]) -> int:
        """Write the tar of `names` to `out`; returns the bytes written."""
        conn, resp = self._request("GET", "/images/get", {"names": names}, timeout=False)
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
            conn.close()

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
        conn, resp = self._request("POST", f"/containers/{cid}/wait",
                                   {"condition": condition}, timeout=False)
        try:
            _raise_for(resp)
        except BaseException:
            conn.close()
            raise

        def result() -> dict[str, Any]:
            try:
                return dict(json.loads(resp.read()))
            finally:
                conn.close()

        return result

    def exec_start_detached(self, eid: str) -> None:
        self._json("POST", f"/exec/{eid}/start", body={"Detach": True, "Tty": False})

    def logs(self, cid: str, *, follow: bool = False, tail: str | int | None = None,
             timestamps: bool = False, since: str | None = None, until: str | None = None,
             stdout: bool = True, stderr: bool = True) -> Iterator[tuple[int, bytes]]:
        """(stream, data) pairs: 1 stdout, 2 stderr (a TTY container's output is all 1)."""
        conn, resp = self._request("GET", f"/containers/{cid}/logs", {
            "follow": follow, "tail": None if tail is None else str(tail),
            "timestamps": timestamps, "since": since, "until": until,
            "stdout": stdout, "stderr": stderr}, timeout=False)
        try:
            _raise_for(resp)
            mux = "multiplexed" in (resp.getheader("Content-Type") or "")
            yield from demux(resp.read, mux)
        finally:
            conn.close()

    def hijack(self, method: str, path: str, query: Mapping[str, Any] | None = None,
               body: Any = None) -> tuple[socket.socket, bytes, bool]:
        """An upgraded (hijacked) connection for attach and exec start: returns the socket,
        the bytes already read past the headers, and whether the stream is multiplexed."""
        q = {k: ("1" if v is True else "0" if v is False else v)
             for k, v in (query or {}).items() if v is not None}
        url = self.prefix + urllib.parse.quote(path, safe="/:@")
        if q:
            url += "?" + urllib.parse.urlencode(q)
        data = json.dumps(body).encode() if body is not None else b""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.path)
        except OSError as e:
            s.close()
            raise Unavailable(f"cannot connect to the pyrt daemon at unix://{self.path}: "
                              f"{e.strerror}") from None
        head = (f"{method} {url} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
                f"Upgrade: tcp\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        buf = b""
        try:
            s.sendall(head + data)
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise Unavailable(f"pyrt daemon at unix://{self.path}: connection closed "
                                      f"before the response to {method} {path}")
                buf += chunk
        except OSError as e:
            s.close()
            raise Unavailable(f"pyrt daemon at unix://{self.path}: {e}") from None
        header, rest = buf.split(b"\r\n\r\n", 1)
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in
                  (ln.partition(":") for ln in lines[1:])}
        if status >= 400:
            n = int(fields.get("content-length", "0") or 0)
            s.settimeout(10)
            try:
                while len(rest) < n:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    rest += chunk
            finally:
                s.close()
            try:
                msg = json.loads(rest).get("message") or rest.decode(errors="replace")
            except (ValueError, AttributeError):
                msg = rest.decode(errors="replace").strip() or lines[0]
            raise error_for_status(status, str(msg))
        return s, rest, "multiplexed" in fields.get("content-type", "")

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
        conn, resp = self._request("GET", path, query, timeout=False)
        try:
            _raise_for(resp)
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    return {k.lower(): v for k, v in resp.getheaders()}
                out.write(chunk)
        finally:
            conn.close()

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

        conn, resp = self._request("HEAD", f"/containers/{cid}/archive", {"path": path})
        try:
            resp.read()
            _raise_for(resp, b"")
            raw = resp.getheader("X-Docker-Container-Path-Stat") or ""
            return dict(json.loads(base64.b64decode(raw))) if raw else {}
        finally:
            conn.close()

    def put_archive(self, cid: str, path: str, src: IO[bytes],
                    no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False
                    ) -> None:
        conn, resp = self._request("PUT", f"/containers/{cid}/archive", {
            "path": path, "noOverwriteDirNonDir": no_overwrite_dir_non_dir,
            "copyUIDGID": copy_uid_gid}, body=src,
            headers={"Content-Type": "application/x-tar"}, timeout=False)
        try:
            _raise_for(resp)
            resp.read()
        finally:
            conn.close()


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
