"""pyrtd's container endpoints over raw HTTP on its socket: create/list/inspect, the
lifecycle with docker's status codes, wait (headers at once), logs frames, attach and exec
hijacks, archive/export/changes/commit/top/stats, bad requests.

A busybox image is imported (POST /images/create?fromSrc=-) from a rootfs made of
/bin/busybox. `CtDaemon` is shared with tests/compat/test_docker_cli_containers.py.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import tarfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_api_system import PyrtdProcess

IMAGE = "ctbb:latest"
APPLETS = ("sh", "echo", "sleep", "cat", "ls", "ps", "id", "pwd", "env", "true", "false",
           "stty")


def busybox_rootfs() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for d in ("bin", "tmp", "etc", "proc", "sys", "dev", "root"):
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o1777 if d == "tmp" else 0o755
            tf.addfile(ti)
        data = Path("/bin/busybox").read_bytes()
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode = len(data), 0o755
        tf.addfile(ti, io.BytesIO(data))
        for name in APPLETS:
            ti = tarfile.TarInfo(f"bin/{name}")
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            tf.addfile(ti)
    return buf.getvalue()


class CtDaemon(PyrtdProcess):
    """A pyrtd with the busybox image; cleanup() removes every container first."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        image_id = self.client().import_image(io.BytesIO(busybox_rootfs()), repo="ctbb",
                                              tag="latest", changes=['CMD ["sh"]'])
        assert image_id.startswith("sha256:")

    def api(self, method: str, path: str, body: Any = None, raw: bytes | None = None
            ) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        status, h, out = self.request(method, path, data,
                                      {"Content-Type": "application/json"} if data else {})
        if h.get("content-type") == "application/json" and out.strip():
            return status, json.loads(out)
        return status, out

    def create(self, cmd: list[str], name: str | None = None, **cfg: Any) -> str:
        q = f"?name={name}" if name else ""
        status, out = self.api("POST", f"/containers/create{q}",
                               {"Image": IMAGE, "Cmd": cmd, **cfg})
        assert status == 201, out
        return str(out["Id"])

    def remove_all(self) -> None:
        status, out = self.api("GET", "/containers/json?all=1")
        for c in out if status == 200 else []:
            self.api("DELETE", f"/containers/{c['Id']}?force=1")

    def cleanup(self) -> None:
        try:
            if self.proc.poll() is None:
                self.remove_all()
        finally:
            super().cleanup()
        mounts = Path("/proc/mounts").read_text()
        assert str(self.tmp) not in mounts, "mounts left behind"


@pytest.fixture(scope="module")
def ctd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CtDaemon]:
    d = CtDaemon(tmp_path_factory.mktemp("ctapi") / "d")
    try:
        yield d
    finally:
        d.cleanup()


def uname() -> str:
    return f"ct-{uuid.uuid4().hex[:8]}"


def frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        stream, size = struct.unpack(">BxxxL", data[:8])
        out.append((stream, data[8:8 + size]))
        data = data[8 + size:]
    return out


def raw_request(ctd: CtDaemon, text: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(str(ctd.sock))
    s.sendall(text.encode())
    return s


def read_head(s: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, f"connection closed in the headers: {buf!r}"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def read_all(s: socket.socket, rest: bytes = b"") -> bytes:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return rest
        rest += chunk


# -- create / errors --------------------------------------------------------------------------


def test_bad_requests_and_the_daemon_lives(ctd: CtDaemon) -> None:
    status, out = ctd.api("POST", "/containers/create", raw=b'{"Image": ')
    assert status == 400 and "malformed JSON" in out["message"]
    status, out = ctd.api("POST", "/containers/create", {"Image": "nope:1"})
    assert (status, out) == (404, {"message": "No such image: nope:1"})
    status, out = ctd.api("POST", "/containers/create", {"Image": IMAGE, "Tty": "yes"})
    assert status == 400 and "Tty" in out["message"]
    for method, path in (("GET", "/containers/nosuch/json"), ("POST", "/containers/nosuch/start"),
                         ("POST", "/containers/nosuch/stop"), ("DELETE", "/containers/nosuch"),
                         ("GET", "/containers/nosuch/logs?stdout=1"),
                         ("POST", "/containers/nosuch/wait"),
                         ("POST", "/containers/nosuch/attach?stream=1&stdout=1")):
        status, out = ctd.api(method, path)
        assert (status, out) == (404, {"message": "No such container: nosuch"}), path
    name = uname()
    cid = ctd.create(["true"], name=name)
    status, out = ctd.api("POST", f"/containers/create?name={name}", {"Image": IMAGE})
    assert status == 409 and f'"/{name}" is already in use by container "{cid}"' in out["message"]
    status, out = ctd.api("POST", f"/containers/{cid}/wait?condition=bogus")
    assert status == 400 and "bogus" in out["message"]
    status, out = ctd.api("GET", f"/containers/{cid}/logs")
    assert status == 400 and "at least one stream" in out["message"]
    status, out = ctd.api("POST", f"/containers/{cid}/kill")
    assert status == 409 and "is not running" in out["message"]
    status, out = ctd.api("POST", f"/containers/{cid}/rename")
    assert status == 400 and "name" in out["message"]
    status, out = ctd.api("POST", f"/containers/{cid}/exec", {"Cmd": ["true"]})
    assert status == 409 and "not running" in out["message"]
    assert ctd.api("POST", "/exec/nosuch/start", {"Detach": False})[1] == {
        "message": "No such exec instance: nosuch"}
    status, out = ctd.api("POST", "/exec/nosuch/start", raw=b"{bad")
    assert status == 400
    status, out = ctd.api("GET", f"/containers/{cid}/archive")
    assert status == 400 and "path" in out["message"]
    status, out = ctd.api("POST", "/commit")
    assert status == 400 and "container" in out["message"]
    status, out = ctd.api("GET", "/containers/json?limit=x")
    assert status == 400 and "limit" in out["message"]
    running = ctd.create(["sleep", "60"])
    assert ctd.api("POST", f"/containers/{running}/start")[0] == 204
    status, out = ctd.api("POST", f"/containers/{running}/kill?signal=BOGUS")
    assert status == 400 and "BOGUS" in out["message"]
    assert ctd.api("POST", f"/containers/{running}/stop?signal=SIGKILL&t=30")[0] == 204
    assert ctd.api("GET", f"/containers/{running}/json")[1]["State"]["ExitCode"] == 137
    assert ctd.api("DELETE", f"/containers/{running}")[0] == 204
    assert ctd.api("DELETE", f"/containers/{cid}")[0] == 204
    assert ctd.client().ping() and ctd.proc.poll() is None


def test_lifecycle_status_codes(ctd: CtDaemon) -> None:
    name = uname()
    status, out = ctd.api("POST", f"/containers/create?name={name}",
                          {"Image": IMAGE, "Cmd": ["sleep", "60"], "Labels": {"t": name}})
    assert status == 201 and set(out) == {"Id", "Warnings"} and out["Warnings"] == []
    cid = out["Id"]
    status, out = ctd.api("GET", f"/containers/{name}/json")
    assert status == 200 and out["Id"] == cid and out["Name"] == f"/{name}"
    assert out["State"]["Status"] == "created" and out["Config"]["Cmd"] == ["sleep", "60"]
    assert "SizeRw" not in out
    sized = ctd.api("GET", f"/containers/{name}/json?size=1")[1]
    assert sized["SizeRw"] >= 0 and sized["SizeRootFs"] >= len(Path("/bin/busybox").read_bytes())
    flt = urllib.parse.quote(json.dumps({"label": [f"t={name}"]}))
    status, out = ctd.api("GET", f"/containers/json?filters={flt}")
    assert (status, out) == (200, [])  # not running: only with all=1
    status, out = ctd.api("GET", f"/containers/json?all=1&size=1&filters={flt}")
    assert [c["Id"] for c in out] == [cid] and out[0]["State"] == "created"
    assert "SizeRw" in out[0]
    assert ctd.api("POST", f"/containers/{cid}/start")[0] == 204
    assert ctd.api("POST", f"/containers/{cid}/start")[0] == 304
    status, out = ctd.api("GET", f"/containers/json?filters={flt}")
    assert [c["Names"] for c in out] == [[f"/{name}"]] and out[0]["State"] == "running"
    assert ctd.api("POST", f"/containers/{cid}/pause")[0] == 204
    assert ctd.api("GET", f"/containers/{cid}/json")[1]["State"]["Paused"] is True
    assert ctd.api("POST", f"/containers/{cid}/pause")[0] == 409
    assert ctd.api("POST", f"/containers/{cid}/unpause")[0] == 204
    status, out = ctd.api("DELETE", f"/containers/{cid}")
    assert status == 409 and "Stop the container" in out["message"]
    new = uname()
    assert ctd.api("POST", f"/containers/{cid}/rename?name={new}")[0] == 204
    assert ctd.api("GET", f"/containers/{new}/json")[1]["Id"] == cid
    assert ctd.api("POST", f"/containers/{cid}/stop?t=1")[0] == 204
    assert ctd.api("POST", f"/containers/{cid}/stop?t=1")[0] == 304
    state = ctd.api("GET", f"/containers/{cid}/json")[1]["State"]
    # sleep as the namespace's init has no SIGTERM handler: killed after t=1
    assert state["Status"] == "exited" and state["ExitCode"] == 137
    assert ctd.api("POST", f"/containers/{cid}/restart?t=1")[0] == 204
    assert ctd.api("GET", f"/containers/{cid}/json")[1]["State"]["Running"] is True
    assert ctd.api("POST", f"/containers/{cid}/kill?signal=SIGKILL")[0] == 204
    status, out = ctd.api("POST", f"/containers/{cid}/wait")
    assert (status, out) == (200, {"StatusCode": 137})
    assert ctd.api("DELETE", f"/containers/{cid}?force=1&v=1")[0] == 204
    status, out = ctd.api("GET", f"/containers/{cid}/json")
    assert (status, out) == (404, {"message": f"No such container: {cid}"})


def test_wait_sends_headers_at_once(ctd: CtDaemon) -> None:
    cid = ctd.create(["sleep", "60"])
    assert ctd.api("POST", f"/containers/{cid}/start")[0] == 204
    s = raw_request(ctd, f"POST /v1.44/containers/{cid}/wait?condition=not-running HTTP/1.1\r\n"
                         "Host: x\r\nContent-Length: 0\r\n\r\n")
    try:
        s.settimeout(5)
        head, rest = read_head(s)  # while the container still runs
        assert head.startswith(b"HTTP/1.1 200")
        assert b"transfer-encoding: chunked" in head.lower()
        assert ctd.api("GET", f"/containers/{cid}/json")[1]["State"]["Running"] is True
        assert ctd.api("POST", f"/containers/{cid}/kill?signal=9")[0] == 204
        s.settimeout(20)
        body = rest
        while not body.endswith(b"0\r\n\r\n"):
            chunk = s.recv(4096)
            assert chunk
            body += chunk
        size, payload = body.split(b"\r\n", 1)
        assert json.loads(payload[:int(size, 16)]) == {"StatusCode": 137}
    finally:
        s.close()
    ctd.api("DELETE", f"/containers/{cid}")


def test_logs_frames_tty_raw_and_params(ctd: CtDaemon) -> None:
    cid = ctd.create(["sh", "-c", "echo out1; echo err1 >&2; echo out2"])
    assert ctd.api("POST", f"/containers/{cid}/start")[0] == 204
    assert ctd.api("POST", f"/containers/{cid}/wait")[1]["StatusCode"] == 0
    status, h, body = ctd.request("GET", f"/containers/{cid}/logs?stdout=1&stderr=1")
    assert status == 200 and h["content-type"] == "application/vnd.docker.multiplexed-stream"
    got = frames(body)
    assert sorted(got) == sorted([(1, b"out1\n"), (2, b"err1\n"), (1, b"out2\n")])
    assert frames(ctd.request("GET", f"/containers/{cid}/logs?stdout=1")[2]) == [
        (1, b"out1\n"), (1, b"out2\n")]
    assert frames(ctd.request("GET", f"/containers/{cid}/logs?stderr=1")[2]) == [(2, b"err1\n")]
    assert frames(ctd.request("GET", f"/containers/{cid}/logs?stdout=1&tail=1")[2]) == [
        (1, b"out2\n")]
    ts = frames(ctd.request("GET", f"/containers/{cid}/logs?stderr=1&timestamps=1")[2])
    assert ts[0][1].endswith(b"Z err1\n") and ts[0][1][:4].isdigit()
    future = int(time.time()) + 3600
    assert ctd.request("GET", f"/containers/{cid}/logs?stdout=1&since={future}")[2] == b""
    # a TTY container's log is raw
    tid = ctd.create(["sh", "-c", "echo tty-out"], Tty=True)
    assert ctd.api("POST", f"/containers/{tid}/start")[0] == 204
    assert ctd.api("POST", f"/containers/{tid}/wait")[1]["StatusCode"] == 0
    status, h, body = ctd.request("GET", f"/containers/{tid}/logs?stdout=1&stderr=1")
    assert h["content-type"] == "application/vnd.docker.raw-stream"
    assert body.replace(b"\r\n", b"\n") == b"tty-out\n"
    for c in (cid, tid):
        assert ctd.api("DELETE", f"/containers/{c}")[0] == 204


def test_logs_follow_ends_with_the_container(ctd: CtDaemon) -> None:
    cid = ctd.create(["sh", "-c", "echo a; sleep 1; echo b"])
    assert ctd.api("POST", f"/containers/{cid}/start")[0] == 204
    started = time.monotonic()
    body = ctd.request("GET", f"/containers/{cid}/logs?stdout=1&follow=1")[2]
    assert frames(body) == [(1, b"a\n"), (1, b"b\n")]
    assert time.monotonic() - started >= 0.5
    ctd.api("DELETE", f"/containers/{cid}?force=1")


def test_attach_before_start_with_stdin_upgrade(ctd: CtDaemon) -> None:
    cid = ctd.create(["cat"], OpenStdin=True, StdinOnce=True, AttachStdin=True)
    s = raw_request(ctd, f"POST /v1.44/containers/{cid}/attach?stream=1&stdin=1&stdout=1"
                         "&stderr=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                         "Upgrade: tcp\r\n\r\n")
    try:
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 101 UPGRADED")
        assert b"application/vnd.docker.multiplexed-stream" in head
        s.sendall(b"sent before start\n")  # buffered until the container runs
        assert ctd.api("POST", f"/containers/{cid}/start")[0] == 204
        s.sendall(b"and after\n")
        s.shutdown(socket.SHUT_WR)  # stdin's EOF ends cat
        got = frames(read_all(s, rest))
        assert b"".join(d for _, d in got) == b"sent before start\nand after\n"
        assert {st for st, _ in got} == {1}
    finally:
        s.close()
    assert ctd.api("POST", f"/containers/{cid}/wait")[1] == {"StatusCode": 0}
    ctd.api("DELETE", f"/containers/{cid}")


def test_attach_running_and_logs_replay(ctd: CtDaemon) -> None:
    cid = ctd.create(["sh", "-c", "echo first; sleep 1; echo second >&2"])
    assert ctd.api("POST", f"/containers/{cid}/start")[0] == 204
    time.sleep(0.4)
    s = raw_request(ctd, f"POST /containers/{cid}/attach?stream=1&logs=1&stdout=1&stderr=1 "
                         "HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 200")  # no upgrade asked
        assert frames(read_all(s, rest)) == [(1, b"first\n"), (2, b"second\n")]
    finally:
        s.close()
    ctd.api("DELETE", f"/containers/{cid}?force=1")


def test_exec_api(ctd: CtDaemon) -> None:
    cid = ctd.create(["sleep", "60"])
    assert ctd.api("POST", f"/containers/{cid}/start")[0] == 204
    status, out = ctd.api("POST", f"/containers/{cid}/exec",
                          {"Cmd": ["sh", "-c", "echo o; echo e >&2; exit 5"],
                           "AttachStdout": True, "AttachStderr": True})
    assert status == 201 and set(out) == {"Id"}
    eid = out["Id"]
    s = raw_request(ctd, f"POST /exec/{eid}/start HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                         "Upgrade: tcp\r\nContent-Type: application/json\r\n"
                         "Content-Length: 16\r\n\r\n{\"Detach\":false}")
    try:
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 101")
        assert sorted(frames(read_all(s, rest))) == [(1, b"o\n"), (2, b"e\n")]
    finally:
        s.close()
    status, out = ctd.api("GET", f"/exec/{eid}/json")
    assert status == 200 and out["ExitCode"] == 5 and out["Running"] is False
    status, out = ctd.api("POST", f"/exec/{eid}/start", {"Detach": False})
    assert status == 409
    assert ctd.api("GET", "/exec/nosuch/json")[0] == 404
    status, out = ctd.api("POST", f"/containers/{cid}/exec", {"Cmd": ["sh", "-c", "exit 2"]})
    did = out["Id"]
    status, body = ctd.api("POST", f"/exec/{did}/start", {"Detach": True})
    assert status == 200
    deadline = time.monotonic() + 10
    while ctd.api("GET", f"/exec/{did}/json")[1].get("ExitCode") is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert ctd.api("GET", f"/exec/{did}/json")[1]["ExitCode"] == 2
    status, out = ctd.api("POST", f"/containers/{cid}/exec", {"Cmd": "nolist"})
    assert status == 400
    ctd.api("DELETE", f"/containers/{cid}?force=1")


def test_archive_export_changes_commit_top_stats(ctd: CtDaemon) -> None:
    cid = ctd.create(["sh", "-c", "echo data > /tmp/made; sleep 60"], Env=["MINE=1", "A=0"])
    assert ctd.api("POST", f"/containers/{cid}/start")[0] == 204
    deadline = time.monotonic() + 10
    while ctd.request("HEAD", f"/containers/{cid}/archive?path=/tmp/made")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status, h, _ = ctd.request("HEAD", f"/containers/{cid}/archive?path=/tmp/made")
    st = json.loads(base64.b64decode(h["x-docker-container-path-stat"]))
    assert st["name"] == "made" and st["size"] == 5
    status, h, body = ctd.request("GET", f"/containers/{cid}/archive?path=/tmp/made")
    assert status == 200 and h["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(body)) as tf:
        f = tf.extractfile("made")
        assert f is not None and f.read() == b"data\n"
    assert ctd.request("HEAD", f"/containers/{cid}/archive?path=/nope")[0] == 404
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("put.txt")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"put"))
    status, _, _ = ctd.request("PUT", f"/containers/{cid}/archive?path=/root",
                               buf.getvalue(), {"Content-Type": "application/x-tar"})
    assert status == 200
    status, out = ctd.api("GET", f"/containers/{cid}/changes")
    assert {"Path": "/root/put.txt", "Kind": 1} in out and {"Path": "/tmp/made", "Kind": 1} in out
    status, h, body = ctd.request("GET", f"/containers/{cid}/export")
    with tarfile.open(fileobj=io.BytesIO(body)) as tf:
        names = set(tf.getnames())
    assert {"bin/busybox", "root/put.txt", "tmp/made"} <= {n.lstrip("./") for n in names}
    status, out = ctd.api("GET", f"/containers/{cid}/top")
    assert status == 200 and "PID" in out["Titles"]
    assert any("sleep 60" in " ".join(p) for p in out["Processes"])
    status, out = ctd.api("GET", f"/containers/{cid}/stats?stream=false")
    assert status == 200 and out["id"] == cid and out["pids_stats"]["current"] >= 1
    status, h, body = ctd.request("GET", f"/containers/{cid}/stats?stream=true&one-shot=true")
    assert status == 400
    status, out = ctd.api("POST", f"/commit?container={cid}&repo=ctcommit&tag=v1"
                                  "&comment=hello&changes=ENV%20A%3Db")
    assert status == 201 and out["Id"].startswith("sha256:")
    img = ctd.client().inspect_image("ctcommit:v1")
    assert img["Id"] == out["Id"] and "A=b" in img["Config"]["Env"]
    assert ctd.client().history("ctcommit:v1")[0]["Comment"] == "hello"
    assert ctd.api("POST", "/commit?container=nosuch")[0] == 404
    # a container Config in the body: the changes apply on top, the container fills the rest
    status, out = ctd.api("POST", f"/commit?container={cid}&repo=ctcommit&tag=v2"
                                  "&changes=ENV%20B%3D2", {"Cmd": ["echo", "hi"], "Env": ["A=1"],
                                                        "Labels": {"k": "v"}, "Tty": True})
    assert status == 201, out
    cfg = ctd.client().inspect_image("ctcommit:v2")["Config"]
    assert cfg["Cmd"] == ["echo", "hi"] and cfg["Labels"] == {"k": "v"}
    assert cfg["Env"] == ["A=1", "B=2", "MINE=1"]  # the body's, the change's, the container's
    before = len(ctd.client().images())
    for bad, field in (({"Cmd": 5}, "Cmd"), ({"Bogus": 1}, "Bogus"), ([1], "JSON object")):
        status, out = ctd.api("POST", f"/commit?container={cid}&repo=ctcommit&tag=bad", bad)
        assert status == 400 and field in out["message"], out
    assert len(ctd.client().images()) == before
    ctd.client().remove_image("ctcommit:v2")
    ctd.api("DELETE", f"/containers/{cid}?force=1")
    ctd.client().remove_image("ctcommit:v1")


def test_tty_attach_resize_and_exec_resize(ctd: CtDaemon) -> None:
    cid = ctd.create(["sh"], Tty=True, OpenStdin=True, AttachStdin=True)
    assert ctd.api("POST", f"/containers/{cid}/start")[0] == 204
    status, out = ctd.api("POST", f"/containers/{cid}/resize?h=30&w=100")
    assert status == 200
    assert ctd.api("POST", f"/containers/{cid}/resize?h=-1&w=5")[0] == 400
    s = raw_request(ctd, f"POST /containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1 "
                         "HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    try:
        head, rest = read_head(s)
        assert b"application/vnd.docker.raw-stream" in head
        s.sendall(b"stty size; exit 7\n")
        body = read_all(s, rest)  # raw: no frame headers with a tty
        assert b"30 100" in body and not body.startswith(b"\x01\x00")
    finally:
        s.close()
    assert ctd.api("POST", f"/containers/{cid}/wait")[1] == {"StatusCode": 7}
    # an exec with a tty, resized while it runs
    cid2 = ctd.create(["sleep", "60"])
    assert ctd.api("POST", f"/containers/{cid2}/start")[0] == 204
    status, out = ctd.api("POST", f"/containers/{cid2}/exec",
                          {"Cmd": ["sh", "-c", "sleep 0.5; stty size"], "Tty": True,
                           "AttachStdout": True})
    eid = out["Id"]
    s = raw_request(ctd, f"POST /exec/{eid}/start HTTP/1.1\r\nHost: x\r\n"
                         "Content-Type: application/json\r\nContent-Length: 27\r\n\r\n"
                         '{"Detach":false,"Tty":true}')
    try:
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 200") and b"raw-stream" in head
        assert ctd.api("POST", f"/exec/{eid}/resize?h=20&w=70")[0] == 200
        assert b"20 70" in read_all(s, rest)
    finally:
        s.close()
    assert ctd.api("GET", f"/exec/{eid}/json")[1]["ExitCode"] == 0
    assert ctd.api("POST", "/exec/nosuch/resize?h=1&w=1")[0] == 404
    for c in (cid, cid2):
        ctd.api("DELETE", f"/containers/{c}?force=1")


def test_stats_stream(ctd: CtDaemon) -> None:
    cid = ctd.create(["sleep", "60"])
    assert ctd.api("POST", f"/containers/{cid}/start")[0] == 204
    c = ctd.conn()
    try:
        c.request("GET", f"/containers/{cid}/stats?stream=1")
        r = c.getresponse()
        assert r.status == 200
        first, second = json.loads(r.readline()), json.loads(r.readline())
        assert first["id"] == second["id"] == cid
        assert second["precpu_stats"] == first["cpu_stats"]
    finally:
        c.close()
    assert ctd.api("POST", f"/containers/{cid}/kill")[0] == 204
    # kill only sends the signal: the empty sample is for a container that has exited
    assert ctd.api("POST", f"/containers/{cid}/wait")[1]["StatusCode"] == 137
    assert ctd.api("GET", f"/containers/{cid}/stats?stream=false")[1]["read"] == \
        "0001-01-01T00:00:00Z"
    ctd.api("DELETE", f"/containers/{cid}")


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_client_hangup_frees_attach_and_exec(ctd: CtDaemon) -> None:
    cid = ctd.create(["sleep", "60"])
    assert ctd.api("POST", f"/containers/{cid}/start")[0] == 204
    status, out = ctd.api("POST", f"/containers/{cid}/exec",
                          {"Cmd": ["sleep", "30"], "AttachStdout": True})
    eid = out["Id"]
    time.sleep(0.5)
    before = _threads(ctd.proc.pid)
    a = raw_request(ctd, f"POST /containers/{cid}/attach?stream=1&stdout=1 HTTP/1.1\r\n"
                         "Host: x\r\n\r\n")
    e = raw_request(ctd, f"POST /exec/{eid}/start HTTP/1.1\r\nHost: x\r\n"
                         "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    for s in (a, e):
        assert read_head(s)[0].startswith(b"HTTP/1.1 200")
    assert _threads(ctd.proc.pid) > before
    c = ctd.conn()  # logs -f of a quiet container, then the client leaves
    c.request("GET", f"/containers/{cid}/logs?stdout=1&follow=1")
    assert c.getresponse().status == 200
    assert _threads(ctd.proc.pid) > before
    a.close()
    e.close()
    c.close()
    deadline = time.monotonic() + 10
    while _threads(ctd.proc.pid) > before + 1:  # + the exec's waiter, until sleep 30 ends
        assert time.monotonic() < deadline, (
            f"handlers still busy after the client left: {before} threads before, "
            f"{_threads(ctd.proc.pid)} now")
        time.sleep(0.1)
    assert ctd.api("GET", f"/exec/{eid}/json")[1]["Running"] is True
    assert ctd.api("DELETE", f"/containers/{cid}?force=1")[0] == 204


def test_prune(ctd: CtDaemon) -> None:
    tag = uname()
    running = ctd.create(["sleep", "60"], Labels={"p": tag})
    assert ctd.api("POST", f"/containers/{running}/start")[0] == 204
    exited = ctd.create(["true"], Labels={"p": tag})
    assert ctd.api("POST", f"/containers/{exited}/start")[0] == 204
    assert ctd.api("POST", f"/containers/{exited}/wait")[1]["StatusCode"] == 0
    created = ctd.create(["true"], Labels={"p": tag})
    other = ctd.create(["true"], Labels={"p": "other-" + tag})
    flt = urllib.parse.quote(json.dumps({"label": [f"p={tag}"]}))
    status, out = ctd.api("POST", f"/containers/prune?filters={flt}")
    assert status == 200 and sorted(out["ContainersDeleted"]) == sorted([exited, created])
    assert isinstance(out["SpaceReclaimed"], int)
    for cid, code in ((exited, 404), (created, 404), (running, 200), (other, 200)):
        assert ctd.api("GET", f"/containers/{cid}/json")[0] == code
    old = urllib.parse.quote(json.dumps({"until": ["1000000000"]}))
    status, out = ctd.api("POST", f"/containers/prune?filters={old}")
    assert (status, out["ContainersDeleted"]) == (200, [])
    assert ctd.api("GET", f"/containers/{other}/json")[0] == 200
    bad = urllib.parse.quote(json.dumps({"bogus": ["1"]}))
    status, out = ctd.api("POST", f"/containers/prune?filters={bad}")
    assert status == 400 and "bogus" in out["message"]
    for cid in (running, other):
        ctd.api("DELETE", f"/containers/{cid}?force=1")


def test_wait_next_exit_then_start_at_once(ctd: CtDaemon) -> None:
    """As `docker run`: wait?condition=next-exit, start as soon as its headers are in; the
    exit of a container that ends at once is never missed."""
    for i in range(15):
        cid = ctd.create(["sh", "-c", f"exit {i}"])
        s = raw_request(ctd, f"POST /containers/{cid}/wait?condition=next-exit HTTP/1.1\r\n"
                             "Host: x\r\nContent-Length: 0\r\n\r\n")
        try:
            head, rest = read_head(s)
            assert head.startswith(b"HTTP/1.1 200")
            assert ctd.api("POST", f"/containers/{cid}/start")[0] == 204
            s.settimeout(10)
            body = rest
            while not body.endswith(b"0\r\n\r\n"):
                chunk = s.recv(4096)
                assert chunk
                body += chunk
            size, payload = body.split(b"\r\n", 1)
            assert json.loads(payload[:int(size, 16)]) == {"StatusCode": i}
        finally:
            s.close()
        assert ctd.api("DELETE", f"/containers/{cid}")[0] == 204


def test_detach_keys(ctd: CtDaemon) -> None:
    from pyrt.api.routes_containers import parse_detach_keys

    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("a,ctrl-@,ctrl-]") == b"a\x00\x1d"
    cid = ctd.create(["cat"], OpenStdin=True, Tty=True)
    assert ctd.api("POST", f"/containers/{cid}/start")[0] == 204
    status, out = ctd.api("POST", f"/containers/{cid}/attach?stream=1&stdin=1&detachKeys=ctrl-")
    assert status == 400 and "detachKeys" in out["message"]
    s = raw_request(ctd, f"POST /containers/{cid}/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\n"
                         "Host: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    try:
        head, rest = read_head(s)
        s.sendall(b"before\n\x10")  # ctrl-p held back, then ctrl-q in another read
        body = rest
        while b"before" not in body:
            chunk = s.recv(4096)
            assert chunk, body
            body += chunk
        s.sendall(b"\x11after\n")
        body += read_all(s)  # the stream ends at the keys; the container goes on
        assert b"after" not in body and b"\x10" not in body and b"^P" not in body
    finally:
        s.close()
    assert ctd.api("GET", f"/containers/{cid}/json")[1]["State"]["Running"] is True
    # a custom sequence, on a second attach: stdin stayed open
    s = raw_request(ctd, f"POST /containers/{cid}/attach?stream=1&stdin=1&stdout=1"
                         "&detachKeys=x,y HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        head, rest = read_head(s)
        s.sendall(b"again\n")
        body = rest
        while b"again" not in body:
            chunk = s.recv(4096)
            assert chunk, body
            body += chunk
        s.sendall(b"xy")
        read_all(s)  # ends at the keys
    finally:
        s.close()
    assert ctd.api("GET", f"/containers/{cid}/json")[1]["State"]["Running"] is True
    ctd.api("DELETE", f"/containers/{cid}?force=1")
