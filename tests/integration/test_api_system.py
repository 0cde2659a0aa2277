"""pyrtd as a subprocess on a temp socket, data root and exec root: the server core and
the system endpoints, over raw HTTP, pyrt.api.client.Client and the real docker CLI.

`PyrtdProcess` is shared with test_api_images.py.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyrt.api.client import Client
from tests.bundle import pyrt_pythonpath, suite_cgroup_parent

DOCKER = Path("/usr/local/bin/docker")


class PyrtdProcess:
    """A pyrtd run from the dev tree; stop() sends SIGTERM and waits."""

    def __init__(self, tmp: Path, *extra: str, sock: Path | None = None,
                 wait: bool = True) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        if not (tmp / "daemon.json").exists():  # containers never ask the host's nameserver
            (tmp / "daemon.json").write_text('{"dns": ["127.0.0.1"]}')
        self.shared_sock = sock is not None
        self.sock = sock or Path(f"/tmp/pyrtd-test-{uuid.uuid4().hex[:10]}.sock")
        self.data_root = tmp / "root"
        self.exec_root = tmp / "run"
        self.pidfile = tmp / "pyrtd.pid"
        self.log = tmp / f"pyrtd-{uuid.uuid4().hex[:6]}.log"
        self._logf = open(self.log, "wb")  # noqa: SIM115
        env = dict(os.environ, PYTHONPATH=pyrt_pythonpath())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyrt.daemon", "--data-root", str(self.data_root),
             "--exec-root", str(self.exec_root), "-H", f"unix://{self.sock}",
             "--pidfile", str(self.pidfile), "--config-file", str(tmp / "daemon.json"),
             "--cgroup-parent", suite_cgroup_parent(),
             *extra],
            stdin=subprocess.DEVNULL, stdout=self._logf, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pyrtd exited {self.proc.returncode}: {self.output()}")
            with contextlib.suppress(Exception):
                if self.client().ping():
                    return
            time.sleep(0.1)
        # a daemon that never answered must not outlive the test (no fixture teardown runs)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        raise RuntimeError(f"pyrtd not ready: {self.output()}")

    def output(self) -> str:
        if not self._logf.closed:
            self._logf.flush()
        return self.log.read_text(errors="replace")

    def client(self) -> Client:
        return Client(f"unix://{self.sock}", timeout=30)

    def conn(self) -> http.client.HTTPConnection:
        c = http.client.HTTPConnection("localhost", timeout=30)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(str(self.sock))
        c.sock = s
        return c

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        c = self.conn()
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def docker(self, *args: str, input: bytes | None = None, timeout: float = 120
               ) -> subprocess.CompletedProcess[bytes]:
        env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}",
                   DOCKER_CONFIG=str(self.tmp / "docker-config"))
        return subprocess.run([str(DOCKER), *args], input=input, capture_output=True,
                              env=env, timeout=timeout, check=False)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._logf.close()
        return self.proc.returncode

    def cleanup(self) -> None:
        self.stop()
        with contextlib.suppress(FileNotFoundError):
            if self.sock.is_socket() and not self.shared_sock:
                self.sock.unlink()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[PyrtdProcess]:
    d = PyrtdProcess(tmp_path / "d")
    try:
        yield d
    finally:
        d.cleanup()


# -- the server core ------------------------------------------------------------------------


def test_ping_get_and_head(daemon: PyrtdProcess) -> None:
    for path in ("/_ping", "/v1.44/_ping", "/v1.24/_ping"):
        status, h, body = daemon.request("GET", path)
        assert (status, body) == (200, b"OK")
        assert h["api-version"] == "1.44"
        assert h["docker-experimental"] == "false"
        assert h["ostype"] == "linux"
        assert h["cache-control"].startswith("no-cache")
        assert h["pragma"] == "no-cache"
        assert "builder-version" in h
    status, h, body = daemon.request("HEAD", "/_ping")
    assert (status, body) == (200, b"")
    assert h["api-version"] == "1.44"


def test_version_and_info(daemon: PyrtdProcess) -> None:
    v = daemon.client().version()
    assert v["ApiVersion"] == "1.44" and v["MinAPIVersion"] == "1.24"
    assert v["Os"] == "linux" and v["KernelVersion"] == os.uname().release
    assert v["Components"][0]["Name"] == "Engine"
    assert v["Components"][0]["Version"] == v["Version"]
    assert v["GoVersion"].startswith("python3.")
    info = daemon.client().info()
    assert info["Driver"] == "overlay2" and info["CgroupDriver"] == "cgroupfs"
    assert info["DockerRootDir"] == str(daemon.data_root)
    assert info["CgroupVersion"] in ("1", "2")
    assert info["NCPU"] == os.cpu_count()
    assert info["MemTotal"] > 0 and info["LiveRestoreEnabled"] is True
    assert info["Warnings"] == [] and info["Images"] == 0 and info["Containers"] == 0
    assert info["ID"] and info["RegistryConfig"]["IndexConfigs"]["docker.io"]["Official"]
    # the id is kept across restarts
    assert (daemon.data_root / "engine-id").read_text().strip() == info["ID"]


def test_bad_versions_unknown_routes_and_errors(daemon: PyrtdProcess) -> None:
    status, h, body = daemon.request("GET", "/v1.45/version")
    assert status == 400 and h["content-type"] == "application/json"
    assert json.loads(body) == {"message": "client version 1.45 is too new. Maximum "
                                           "supported API version is 1.44"}
    status, _, body = daemon.request("GET", "/v1.12/info")
    assert status == 400
    assert json.loads(body) == {"message": "client version 1.12 is too old. Minimum "
                                           "supported API version is 1.24, please upgrade "
                                           "your client to a newer version"}
    for method, path in (("GET", "/nope"), ("GET", "/v1.44/nope"), ("POST", "/_ping"),
                         ("GET", "/images/x/bogus")):
        status, h, body = daemon.request(method, path)
        assert status == 404, path
        assert h["content-type"] == "application/json"
        assert json.loads(body) == {"message": "page not found"}
    status, _, body = daemon.request("GET", "/images/no-such-image:1/json")
    assert status == 404 and json.loads(body) == {"message": "No such image: "
                                                              "no-such-image:1"}
    status, _, body = daemon.request("GET", "/images/json?all=maybe")
    assert status == 400 and "'all'" in json.loads(body)["message"]
    status, _, body = daemon.request("GET", "/images/json?filters=%7Bnot-json")
    assert status == 400 and "filters" in json.loads(body)["message"]


def test_huge_body_413_and_keepalive(daemon: PyrtdProcess) -> None:
    c = daemon.conn()
    try:
        c.putrequest("POST", "/images/prune")
        c.putheader("Content-Length", str(1 << 30))
        c.endheaders()
        c.send(b"x" * 4096)
        r = c.getresponse()
        assert r.status == 413
        assert r.getheader("Content-Type") == "application/json"
        assert "too large" in json.loads(r.read())["message"]
    finally:
        c.close()
    # several requests on one connection
    c = daemon.conn()
    try:
        for _ in range(3):
            c.request("GET", "/_ping")
            r = c.getresponse()
            assert r.read() == b"OK"
        c.request("GET", "/version")
        assert json.loads(c.getresponse().read())["ApiVersion"] == "1.44"
    finally:
        c.close()


def test_concurrent_requests(daemon: PyrtdProcess) -> None:
    # an /events stream stays open while other requests are answered
    c = daemon.conn()
    c.request("GET", "/events")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Transfer-Encoding") == "chunked"
    results: list[int] = []

    def ping() -> None:
        results.append(daemon.request("GET", "/_ping")[0])

    ts = [threading.Thread(target=ping) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert results == [200] * 8
    c.close()


def test_socket_mode_pidfile_second_daemon_refused_and_sigterm(tmp_path: Path) -> None:
    d = PyrtdProcess(tmp_path / "a")
    try:
        st = d.sock.stat()
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_uid == 0
        assert int(d.pidfile.read_text()) == d.proc.pid
        second = PyrtdProcess(tmp_path / "b", sock=d.sock, wait=False)
        assert second.proc.wait(timeout=30) == 1
        second.stop()
        assert "another daemon is answering on" in second.output()
        assert d.client().ping()  # the first one is untouched
    finally:
        rc = d.stop()
    assert rc == 0
    assert not d.sock.exists() and not d.pidfile.exists()
    out = d.output()
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert any(x["msg"] == "pyrtd stopped; containers keep running" for x in lines)


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    sock = Path(f"/tmp/pyrtd-test-{uuid.uuid4().hex[:10]}.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock))
    s.close()  # a socket file nobody listens on
    d = PyrtdProcess(tmp_path / "d", sock=sock)
    try:
        assert d.client().ping()
        assert "removed stale socket" in d.output()
    finally:
        d.cleanup()


def test_tcp_without_tls_refused_and_bad_config(tmp_path: Path) -> None:
    d = PyrtdProcess(tmp_path / "t", "-H", "tcp://127.0.0.1:2399", wait=False)
    assert d.proc.wait(timeout=30) == 1
    d.stop()
    assert "without mutual TLS" in d.output()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "daemon.json").write_text('{"registry-mirrors": ["ftp://x"]}')
    d = PyrtdProcess(tmp_path / "c", wait=False)
    assert d.proc.wait(timeout=30) == 1
    d.stop()
    assert "invalid mirror" in d.output()


def test_events_stream_and_since(daemon: PyrtdProcess) -> None:
    start = time.time()
    c = daemon.conn()
    c.request("GET", "/events?filters=" + urllib.parse.quote(json.dumps({"type": ["image"]})))
    r = c.getresponse()
    assert r.status == 200
    # a tag publishes an image event; import one first
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("hello.txt")
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"hi"))
    buf.seek(0)
    image_id = daemon.client().import_image(buf, repo="ev/imported", tag="1")
    assert image_id.startswith("sha256:")
    ev = json.loads(r.readline())
    assert ev["Type"] == "image" and ev["Action"] == "import"
    assert ev["Actor"]["ID"] == image_id
    c.close()
    # since/until replay the history and end
    evs = list(daemon.client().events(since=start - 1, until=time.time() + 0.5))
    assert [e["Action"] for e in evs] == ["import"]
    bogus = urllib.parse.quote(json.dumps({"bogus": ["x"]}))
    status, _, body = daemon.request("GET", "/events?filters=" + bogus)
    assert status == 400 and "bogus" in json.loads(body)["message"]


def test_system_df(daemon: PyrtdProcess) -> None:
    df = daemon.client().df()
    assert df["Images"] == [] and df["Containers"] == [] and df["Volumes"] == []
    assert df["BuildCache"] == [] and df["LayersSize"] == 0


@pytest.mark.skipif(not DOCKER.is_file(), reason="docker CLI missing")
def test_docker_cli_version_and_info(daemon: PyrtdProcess) -> None:
    p = daemon.docker("version")
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "Server: pyrt" in out and "API version:      1.44 (minimum version 1.24)" in out
    p = daemon.docker("info", "--format", "{{json .}}")
    assert p.returncode == 0, p.stderr
    info: dict[str, Any] = json.loads(p.stdout)
    assert info["Driver"] == "overlay2" and info["DockerRootDir"] == str(daemon.data_root)
    p = daemon.docker("info")
    assert p.returncode == 0 and b"Storage Driver: overlay2" in p.stdout


def test_sighup_reloads_registry_config(daemon: PyrtdProcess) -> None:
    (daemon.tmp / "daemon.json").write_text(json.dumps({
        "insecure-registries": ["reg.test:5000", "10.9.0.0/16"],
        "registry-mirrors": ["https://mirror.test"]}))
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rc = daemon.client().info()["RegistryConfig"]
        if rc["Mirrors"]:
            break
        time.sleep(0.1)
    assert rc["Mirrors"] == ["https://mirror.test"]
    assert "10.9.0.0/16" in rc["InsecureRegistryCIDRs"]
    assert rc["IndexConfigs"]["reg.test:5000"]["Secure"] is False
    # a broken file keeps the running configuration
    (daemon.tmp / "daemon.json").write_text("{broken")
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while "configuration reload failed" not in daemon.output():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert daemon.client().info()["RegistryConfig"]["Mirrors"] == ["https://mirror.test"]
