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
from collections.abc import Iterator, Mapping
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
              body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn, resp = self._request(method, path, query, data, headers)
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


__all__ = ["DEFAULT_HOST", "Client"]
