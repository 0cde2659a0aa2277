"""pyrt.api.client's own HTTP/1.1 transport, against a scripted server on a Unix socket:
request lines, query encoding (as urllib.parse), bodies by Content-Length, chunked and
to-EOF, streams, HEAD, errors, the hijack's first bytes, and malformed responses."""

from __future__ import annotations

import io
import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyrt.api.client import Client, _quote, _urlencode
from pyrt.errors import Conflict, NotFound, Unavailable


class Scripted:
    """Accepts connections one at a time; each gets the next canned reply (bytes, sent in
    pieces of `split` bytes to exercise partial reads) after its request was read."""

    def __init__(self, path: Path, replies: list[bytes], split: int = 7) -> None:
        self.path = path
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.split = split
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read_request(self, c: socket.socket) -> bytes:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = c.recv(65536)
            if not chunk:
                return buf
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode().lower().split("\r\n")
        if any(ln.startswith("transfer-encoding: chunked") for ln in lines):
            while not body.endswith(b"0\r\n\r\n"):
                body += c.recv(65536)
        else:
            n = next((int(ln.split(":")[1]) for ln in lines
                      if ln.startswith("content-length:")), 0)
            while len(body) < n:
                body += c.recv(65536)
        return head + b"\r\n\r\n" + body

    def _serve(self) -> None:
        while self.replies:
            c, _ = self.srv.accept()
            with c:
                self.requests.append(self._read_request(c))
                reply = self.replies.pop(0)
                for i in range(0, len(reply), self.split):
                    c.sendall(reply[i:i + self.split])

    def close(self) -> None:
        self.srv.close()


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "d.sock"


def serve(path: Path, *replies: bytes, split: int = 7) -> tuple[Scripted, Client]:
    return Scripted(path, list(replies), split), Client(f"unix://{path}", timeout=10)


def json_reply(status: str, doc: object, extra: str = "") -> bytes:
    body = json.dumps(doc).encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_quote_and_urlencode_match_urllib() -> None:
    for text in ("plain", "a b/c:d@e", "ünïcode/ø", "x?y&z=w#f", "~_.-", "%41"):
        assert _quote(text, "/:@") == urllib.parse.quote(text, safe="/:@")
    q = {"all": "1", "filters": '{"label": ["a=b c"]}', "names": ["x:1", "y/z"], "t": 5}
    assert _urlencode(q) == urllib.parse.urlencode(q, doseq=True)


def test_json_request_line_headers_and_body(sock_path: Path) -> None:
    srv, c = serve(sock_path, json_reply("201 Created", {"Id": "abc", "Warnings": []}))
    try:
        out = c.create_container({"Image": "bb", "Cmd": ["true"]}, name="my box")
    finally:
        srv.close()
    assert out == {"Id": "abc", "Warnings": []}
    head, _, body = srv.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1.44/containers/create?name=my+box HTTP/1.1"
    assert "Content-Type: application/json" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert json.loads(body) == {"Image": "bb", "Cmd": ["true"]}


def test_post_without_body_sends_zero_length(sock_path: Path) -> None:
    srv, c = serve(sock_path, b"HTTP/1.1 204 No Content\r\n\r\n")
    try:
        c.start("abc")
    finally:
        srv.close()
    assert b"Content-Length: 0\r\n" in srv.requests[0]
    assert srv.requests[0].startswith(b"POST /v1.44/containers/abc/start HTTP/1.1\r\n")


def test_chunked_response_and_lines(sock_path: Path) -> None:
    lines = [b'{"status": "one"}\n', b'{"status": "two"}\n\n', b'{"status": "three"}\n']
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(x), x) for x in lines) + b"0\r\nX-T: 1\r\n\r\n"
    srv, c = serve(sock_path, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
                   split=3)
    try:
        got = [m["status"] for m in c.events()]
    finally:
        srv.close()
    assert got == ["one", "two", "three"]


def test_body_to_the_end_of_the_connection(sock_path: Path) -> None:
    data = bytes(range(256)) * 1000
    srv, c = serve(sock_path, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + data,
                   split=4096)
    out = io.BytesIO()
    try:
        assert c.save(["x"], out) == len(data)
    finally:
        srv.close()
    assert out.getvalue() == data


def test_error_statuses_raise_the_pyrt_error(sock_path: Path) -> None:
    srv, c = serve(sock_path, json_reply("404 Not Found", {"message": "No such container: x"}),
                   json_reply("409 Conflict", {"message": "in use"}),
                   b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops")
    try:
        with pytest.raises(NotFound, match="No such container: x"):
            c.inspect_container("x")
        with pytest.raises(Conflict, match="in use"):
            c.remove_container("x")
        with pytest.raises(Exception, match="oops"):
            c.info()
    finally:
        srv.close()


def test_head_has_no_body_and_headers_are_read(sock_path: Path) -> None:
    import base64

    stat = base64.b64encode(json.dumps({"name": "f", "size": 3}).encode()).decode()
    srv, c = serve(sock_path, (f"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n"
                               f"X-Docker-Container-Path-Stat: {stat}\r\n\r\n").encode())
    try:
        assert c.stat_path("x", "/f") == {"name": "f", "size": 3}
    finally:
        srv.close()
    assert srv.requests[0].startswith(b"HEAD /v1.44/containers/x/archive?path=%2Ff HTTP/1.1")


def test_streamed_upload_is_chunked(sock_path: Path) -> None:
    srv, c = serve(sock_path, b'HTTP/1.1 200 OK\r\nContent-Length: 37\r\n\r\n'
                              b'{"stream": "Loaded image: bb:latest"}')
    try:
        assert c.load(io.BytesIO(b"x" * 70000)) == ["Loaded image: bb:latest"]
    finally:
        srv.close()
    head, _, body = srv.requests[0].partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"10000\r\n" + b"x" * 65536 + b"\r\n" + b"1170\r\n" + b"x" * 4464 + \
        b"\r\n0\r\n\r\n"


def test_hijack_returns_the_bytes_after_the_head(sock_path: Path) -> None:
    srv, c = serve(sock_path, b"HTTP/1.1 101 UPGRADED\r\nContent-Type: "
                              b"application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade"
                              b"\r\nUpgrade: tcp\r\n\r\n\x01\x00\x00\x00\x00\x00\x00\x02hi",
                   split=1000)
    try:
        s, rest, mux = c.attach("x")
        rest += s.recv(100)
        s.close()
    finally:
        srv.close()
    assert mux and rest == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    assert b"Connection: Upgrade" in srv.requests[0]


def test_broken_responses_are_unavailable(sock_path: Path) -> None:
    srv, c = serve(sock_path, b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n"
                   b"\r\n{\"a\"", b"")
    try:
        with pytest.raises(Unavailable, match="not an HTTP/1.1 response"):
            c.info()
        with pytest.raises(Unavailable, match="bytes before the end of the body"):
            c.info()
        with pytest.raises(Unavailable, match="connection closed before the response"):
            c.info()
    finally:
        srv.close()


def test_no_daemon_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="cannot connect to the pyrt daemon"):
        Client(f"unix://{tmp_path}/none.sock").ping()
