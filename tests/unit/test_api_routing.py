"""pyrt.api.routing and pyrt.api.server in process: templates, versions, matching, and a
server on a temp Unix socket with test routes (errors -> status, JSON bodies, chunked
request and response bodies, 413, hijack with 101 UPGRADED)."""

from __future__ import annotations

import http.client
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyrt.api.errors import HTTPError, PageNotFound, error_for_status, status_of
from pyrt.api.params import get_field
from pyrt.api.routing import (
    App,
    Request,
    Response,
    Router,
    StreamResponse,
    check_version,
    compile_template,
    json_response,
    split_version,
)
from pyrt.api.server import APIServer, default_router
from pyrt.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SystemError_,
    Unavailable,
)


def test_templates_and_versions() -> None:
    p = compile_template("/images/{name:.+}/json")
    m = p.match("/images/127.0.0.1:5000/lib/bb:1/json")
    assert m is not None and m.group("name") == "127.0.0.1:5000/lib/bb:1"
    assert compile_template("/containers/{id}/start").match("/containers/a/b/start") is None
    assert split_version("/v1.44/images/json") == ("1.44", "/images/json")
    assert split_version("/v1.24") == ("1.24", "/")
    assert split_version("/images/json") == (None, "/images/json")
    assert split_version("/vx/images") == (None, "/vx/images")
    assert check_version(None) == "1.44" and check_version("1.30") == "1.30"
    with pytest.raises(HTTPError, match="^client version 1.45 is too new. Maximum supported "
                                        "API version is 1.44$"):
        check_version("1.45")
    with pytest.raises(HTTPError, match="too old. Minimum supported API version is 1.24, "
                                        "please upgrade your client to a newer version$"):
        check_version("1.9")


def test_router_match_order_and_duplicates() -> None:
    r = Router()

    def h(req: Request) -> Response:
        return json_response({})

    r.add("GET", "/images/json", h)
    r.add("GET", "/images/{name:.+}/json", h)
    route, params = r.match("GET", "/images/json")
    assert route.template == "/images/json" and params == {}
    route, params = r.match("GET", "/images/a/b/json")
    assert params == {"name": "a/b"}
    with pytest.raises(PageNotFound):
        r.match("POST", "/images/json")
    with pytest.raises(ValueError, match="twice"):
        r.add("GET", "/images/json", h)


def test_status_mapping_both_ways() -> None:
    assert [status_of(e) for e in (NotFound("x"), Conflict("x"), FailedPrecondition("x"),
                                   InvalidArgument("x"), Unavailable("x"), SystemError_("x"),
                                   RuntimeError("x"))] == [404, 409, 409, 400, 503, 500, 500]
    assert isinstance(error_for_status(404, "m"), NotFound)
    assert isinstance(error_for_status(409, "m"), Conflict)
    assert isinstance(error_for_status(400, "m"), InvalidArgument)
    assert isinstance(error_for_status(503, "m"), Unavailable)
    assert isinstance(error_for_status(500, "m"), SystemError_)


def test_default_router_has_each_resource() -> None:
    templates = {(r.method, r.template) for r in default_router().routes()}
    assert ("HEAD", "/_ping") in templates and ("GET", "/images/json") in templates
    assert ("DELETE", "/images/{name:.+}") in templates


# -- a live server with test routes -------------------------------------------------------


def _routes() -> Router:
    r = Router()

    def echo(req: Request) -> Response:
        body = req.json()
        name = get_field(body, "Name", str)
        return json_response({"Name": name, "version": req.api_version}, 201)

    def fail(req: Request) -> Response:
        kind = req.params["kind"]
        raise {"nf": NotFound("no such thing"), "conflict": Conflict("in use"),
               "bad": InvalidArgument("bad input"), "down": Unavailable("registry down"),
               "boom": RuntimeError("unexpected")}[kind]

    def count(req: Request) -> Response:
        data = req.stream().read()
        return json_response({"bytes": len(data)})

    def stream(req: Request) -> StreamResponse:
        return StreamResponse(chunks=iter([b'{"n": 1}\n', b'{"n": 2}\n']))

    def stream_fails_early(req: Request) -> StreamResponse:
        def gen() -> Iterator[bytes]:
            raise NotFound("nothing to stream")
            yield b""  # pragma: no cover

        return StreamResponse(chunks=gen())

    def hijack(req: Request) -> None:
        h = req.hijack()
        data = h.rfile.read(5)
        h.wfile.write(data.upper())
        h.wfile.flush()

    r.add("POST", "/echo", echo, max_body=1024)
    r.add("GET", "/fail/{kind}", fail)
    r.add("POST", "/count", count, max_body=-1)
    r.add("GET", "/stream", stream)
    r.add("GET", "/stream-fails", stream_fails_early)
    r.add("POST", "/hijack", hijack)
    return r


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / f"api-{uuid.uuid4().hex[:6]}.sock")
    srv = APIServer(_routes(), App(engine=None))
    srv.listen_unix(path, group=None)
    srv.start()
    try:
        yield path
    finally:
        srv.shutdown(grace=2)
    assert not Path(path).exists()


def _conn(path: str) -> http.client.HTTPConnection:
    c = http.client.HTTPConnection("localhost", timeout=10)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    c.sock = s
    return c


def _do(path: str, method: str, url: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    c = _conn(path)
    try:
        c.request(method, url, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read()
    finally:
        c.close()


def test_errors_become_status_and_json(server: str) -> None:
    for kind, status, msg in (("nf", 404, "no such thing"), ("conflict", 409, "in use"),
                              ("bad", 400, "bad input"), ("down", 503, "registry down"),
                              ("boom", 500, "unexpected")):
        st, ctype, body = _do(server, "GET", f"/v1.40/fail/{kind}")
        assert (st, ctype, json.loads(body)) == (status, "application/json",
                                                 {"message": msg})


def test_json_bodies(server: str) -> None:
    st, _, body = _do(server, "POST", "/v1.30/echo", b'{"Name": "x"}')
    assert st == 201 and json.loads(body) == {"Name": "x", "version": "1.30"}
    st, _, body = _do(server, "POST", "/echo", b'{"Name": ')
    assert st == 400 and "malformed JSON" in json.loads(body)["message"]
    st, _, body = _do(server, "POST", "/echo", b'{"Name": 5}')
    assert st == 400 and "'Name' must be a string" in json.loads(body)["message"]
    st, _, body = _do(server, "POST", "/echo", b'{"Name": "' + b"x" * 2000 + b'"}')
    assert st == 413 and "limit" in json.loads(body)["message"]


def test_chunked_request_and_response(server: str) -> None:
    c = _conn(server)
    try:
        c.request("POST", "/count", body=iter([b"a" * 70000, b"b" * 5]),
                  encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
        r = c.getresponse()
        assert json.loads(r.read()) == {"bytes": 70005}
        # the same connection still works (keep-alive)
        c.request("GET", "/stream")
        r = c.getresponse()
        assert r.getheader("Transfer-Encoding") == "chunked"
        assert r.read() == b'{"n": 1}\n{"n": 2}\n'
    finally:
        c.close()
    st, _, body = _do(server, "GET", "/stream-fails")
    assert st == 404 and json.loads(body) == {"message": "nothing to stream"}


def test_hijack_upgrade(server: str) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(server)
    try:
        s.sendall(b"POST /hijack HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                  b"Upgrade: tcp\r\nContent-Length: 0\r\n\r\nhello")
        data = b""
        while b"HELLO" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 UPGRADED")
        assert b"Upgrade: tcp" in head and b"Connection: Upgrade" in head
        assert rest == b"HELLO"
        assert s.recv(10) == b""  # closed when the route returned
    finally:
        s.close()


def test_unparsable_requests_get_json_errors_and_stalled_ones_are_dropped(
        tmp_path: Path) -> None:
    path = str(tmp_path / f"api-{uuid.uuid4().hex[:6]}.sock")
    srv = APIServer(_routes(), App(engine=None), idle_timeout=0.5)
    srv.listen_unix(path, group=None)
    srv.start()
    try:
        # a request line http.server cannot parse: a status line and {"message"}, as for
        # any other error (the stdlib alone sends a bare HTML page)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        s.sendall(b"garbage\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ")
        assert b"\r\nContent-Type: application/json\r\n" in head
        assert json.loads(body) == {"message": "Bad request syntax ('garbage')"}
        # headers that never end: dropped after the idle timeout, not held for ever
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow:")
        started = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - started < 5
        s.close()
    finally:
        srv.shutdown(grace=2)
