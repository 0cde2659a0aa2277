"""The C front end of the `pyrt` CLI (csrc/cli/main.c) against the Python CLI it stands in for.

Each command runs three ways: the C binary (`front`), `python -m pyrt.cli.app` (`python`),
and the C binary unable to hand anything to Python (`native`: PYRT_CLI_PYTHON=/bin/false,
so a delegation exits 1 silently). The first two must print the same stdout and stderr
and exit with the same status; `native` shows whether the C binary answered itself.

Two daemons: a fake one (a Unix socket server here) that records every request, so the
bytes each CLI sends are compared exactly (request lines, headers, the create body's JSON)
and the daemon's answers can be scripted (errors, a start that fails); and a real pyrtd
with a busybox image, for the containers' output, exit statuses and --rm.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.bundle import pyrt_pythonpath
from tests.integration.test_api_system import PyrtdProcess
from tests.integration.test_pyrt_cli import _remove_all_containers, make_rootfs_tar

REPO = Path(__file__).resolve().parents[2]
CID = "c0ffee" + "0" * 58
#: an image no registry here has: its pull goes to 127.0.0.1:9 (nothing listens there)
UNKNOWN_IMAGE = "127.0.0.1:9/nosuch/image:1"


def _front_binary() -> tuple[Path, dict[str, str]]:
    """The C pyrt: the venv's (installed, next to its pyrt-py), else the dev build's with
    this Python."""
    installed = Path(sys.prefix) / "bin" / "pyrt"
    if installed.is_file() and installed.read_bytes()[:4] == b"\x7fELF":
        return installed, {}
    dev = REPO / "build" / "dev" / "pyrt"
    if dev.is_file():
        return dev, {"PYRT_CLI_PYTHON": sys.executable}
    pytest.fail("no C pyrt: pip install . (venv bin/pyrt) or run scripts/devbuild")


@dataclass
class Res:
    code: int
    out: bytes
    err: bytes

    def triple(self) -> tuple[int, bytes, bytes]:
        return self.code, self.out, self.err


class Both:
    """Runs `pyrt ARGS` through the C binary, Python, or the C binary alone."""

    def __init__(self, host: str, env: dict[str, str] | None = None) -> None:
        self.exe, extra = _front_binary()
        self.env = {**os.environ, "PYTHONPATH": pyrt_pythonpath(), "PYRT_HOST": host,
                    "PYRT_NO_AUTOSTART": "1", **extra, **(env or {})}
        self.env.pop("PYRT_CLI_NO_FAST", None)

    def _run(self, argv: list[str], env: dict[str, str], timeout: float) -> Res:
        p = subprocess.run(argv, capture_output=True, env=env, timeout=timeout,
                           stdin=subprocess.DEVNULL, cwd="/", check=False)
        return Res(p.returncode, p.stdout, p.stderr)

    def front(self, *args: str, timeout: float = 60, **env: str) -> Res:
        return self._run([str(self.exe), *args], {**self.env, **env}, timeout)

    def python(self, *args: str, timeout: float = 60, **env: str) -> Res:
        e = {k: v for k, v in {**self.env, **env}.items() if k != "PYRT_CLI_PYTHON"}
        return self._run([sys.executable, "-m", "pyrt.cli.app", *args], e, timeout)

    def native(self, *args: str, timeout: float = 60, **env: str) -> Res:
        """The C binary with delegation made impossible (a delegation exits 1, silently)."""
        return self._run([str(self.exe), *args],
                         {**self.env, **env, "PYRT_CLI_PYTHON": "/bin/false"}, timeout)

    def argv_env(self, runner: str) -> tuple[list[str], dict[str, str]]:
        """The command and environment of `runner`: "native" (the C binary, delegation
        impossible) or "python"."""
        if runner == "native":
            return [str(self.exe)], {**self.env, "PYRT_CLI_PYTHON": "/bin/false"}
        return ([sys.executable, "-m", "pyrt.cli.app"],
                {k: v for k, v in self.env.items() if k != "PYRT_CLI_PYTHON"})

    def delegated(self, *args: str, **env: str) -> None:
        """Asserts that the C binary hands `args` to Python."""
        assert self.native(*args, **env).triple() == (1, b"", b""), args


# -- a fake daemon that records requests --------------------------------------------------------


@dataclass
class Request:
    line: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Script:
    """What the fake daemon answers: (status, JSON body) per step; the attach stream's
    frames ((stream, data)); the wait's answer, sent once the start has been answered."""

    create: tuple[int, object] = (201, {"Id": CID, "Warnings": []})
    start: tuple[int, object] = (204, None)
    frames: list[tuple[int, bytes]] = field(
        default_factory=lambda: [(1, b"out 1\n"), (2, b"err \xc3\xa9\n"), (1, b"out 2\n")])
    wait: object = field(default_factory=lambda: {"StatusCode": 3, "Error": None})
    hold_until_kill: bool = False  # the wait answers only once a kill has come


class FakeDaemon:
    """A Unix socket server speaking just enough of the Engine API for `pyrt run`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.script = Script()
        self.requests: list[Request] = []
        self.started = threading.Event()
        self.killed = threading.Event()
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(16)
        self.threads: list[threading.Thread] = []
        self.closing = False
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def reset(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.requests = []
        self.started = threading.Event()
        self.killed = threading.Event()

    def close(self) -> None:
        self.closing = True
        with contextlib.suppress(OSError):
            self.srv.shutdown(socket.SHUT_RDWR)
        self.srv.close()
        self.acceptor.join(5)
        for t in self.threads:
            t.join(5)

    def _accept(self) -> None:
        while not self.closing:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    @staticmethod
    def _read_request(conn: socket.socket) -> Request | None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return None  # a connection that only probes (Python's answers())
            buf += data
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = [(k, v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:])]
        length = int(dict((k.lower(), v) for k, v in headers).get("content-length", "0"))
        while len(body) < length:
            data = conn.recv(65536)
            assert data, "request body cut short"
            body += data
        return Request(lines[0], headers, body)

    @staticmethod
    def _answer(conn: socket.socket, status: int, obj: object) -> None:
        body = obj if isinstance(obj, bytes) else b"" if obj is None else json.dumps(obj).encode()
        reason = {200: "OK", 201: "Created", 204: "No Content"}.get(status, "Error")
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        if status != 204:
            head += f"Content-Length: {len(body)}\r\n"
        conn.sendall(head.encode() + b"\r\n" + body)

    def _serve(self, conn: socket.socket) -> None:
        try:
            req = self._read_request(conn)
            if req is None:
                return
            self.requests.append(req)
            path = req.line.split(" ")[1].split("?")[0]
            s = self.script
            if path.endswith("/containers/create"):
                self._answer(conn, *s.create)
            elif path.endswith("/start"):
                self._answer(conn, *s.start)
                self.started.set()  # a failed start too: the attach and wait then end
            elif path.endswith("/attach"):
                conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/"
                             b"vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\n"
                             b"Upgrade: tcp\r\n\r\n")
                if self.started.wait(30):
                    for stream, data in s.frames:
                        conn.sendall(bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big")
                                     + data)
            elif path.endswith("/wait"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                if self.started.wait(30) and (not s.hold_until_kill or self.killed.wait(30)):
                    time.sleep(0.05)  # after the output, as a real exit
                    data = json.dumps(s.wait).encode() + b"\n"
                    conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
            elif path.endswith("/kill"):
                self._answer(conn, 204, None)
                self.killed.set()
            elif req.line.startswith("DELETE "):
                self._answer(conn, 204, None)
            else:
                self._answer(conn, 404, {"message": "page not found"})
        except OSError:
            pass
        finally:
            conn.close()


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeDaemon]:
    d = FakeDaemon(Path(f"/tmp/pyrt-fake-{uuid.uuid4().hex[:10]}.sock"))
    try:
        yield d
    finally:
        d.close()
        d.path.unlink(missing_ok=True)


def _both_requests(fake: FakeDaemon, args: list[str], script: Script | None = None,
                   **env: str) -> tuple[Res, list[Request], Res, list[Request]]:
    """Runs args through Python and through the C binary (natively) against the fake
    daemon: (python's result, its requests, C's result, its requests)."""
    both = Both(f"unix://{fake.path}", env)
    fake.reset(script)
    py = both.python(*args)
    py_reqs = fake.requests
    fake.reset(script)
    c = both.native(*args)
    return py, py_reqs, c, fake.requests


# every option parse_run takes that the C binary handles itself, in the forms people use
NATIVE_ARGS: list[list[str]] = [
    ["run", "--rm", "img"],
    ["run", "img", "sh", "-c", "echo 'a b' \"$X\""],
    ["run", "-d", "--name", "web 1/é", "img"],
    ["run", "--name=", "--detach", "img", "true"],
    ["run", "-e", "A=1", "-eB=2", "--env", "C=", "--env=D=é\t\"q\\\x7f\x01 \U0001f600",
     "-e", "FROM_ENV", "-e", "NOT_SET_ANYWHERE", "img"],
    ["run", "-w", "/tmp", "-u", "nobody:nogroup", "--entrypoint", "/bin/sh", "-h", "box",
     "img", "-c", "id"],
    ["run", "--entrypoint", "", "-w", "", "-u", "", "--hostname=", "img"],
    ["run", "-l", "a=1", "--label", "b", "-l", "a=2", "-lc=x=y", "img"],
    ["run", "--restart", "on-failure:3", "--restart=always", "img"],
    ["run", "--restart", "on-failure", "img"],
    ["run", "-v", "/a:/b:ro", "--volume", "vol:/c", "--tmpfs", "/t:size=1m", "--tmpfs", "/u",
     "--tmpfs", "/t:mode=1777", "--volumes-from", "other:ro", "img"],
    ["run", "-m", "512m", "img"],
    ["run", "--memory=1GB", "img"],
    ["run", "-m", "123", "img"],
    ["run", "-p", "8080:80", "-p", "127.0.0.1:8081:80/udp", "-p", "90", "-p", "9000-9001:90-91",
     "-p", "[::1]:7:7", "--publish=8082:80", "-P", "img"],
    ["run", "--network", "none", "img"],
    ["run", "--net=mynet", "--ip", "10.1.2.3", "--network-alias", "a", "--network-alias", "b",
     "img"],
    ["run", "--network-alias", "x", "--dns", "1.1.1.1", "--dns=8.8.8.8", "img"],
    ["run", "--ip", "10.9.9.9", "img"],
    ["run", "-dq", "--rm", "img"],
    ["run", "-de", "X=1", "img"],
    ["run", "--", "img", "--rm"],
    ["-H", "unix:///nonexistent/ignored.sock", "--host", "{fake}", "run", "img"],
    ["--host={fake}", "run", "img"],
]


@pytest.mark.parametrize("args", NATIVE_ARGS, ids=lambda a: " ".join(a)[:60])
def test_same_requests_and_output_natively(fake: FakeDaemon, args: list[str]) -> None:
    args = [a.replace("{fake}", f"unix://{fake.path}") for a in args]
    py, py_reqs, c, c_reqs = _both_requests(fake, args, FROM_ENV="from env é")
    assert c.triple() == py.triple()
    detach = any(a in ("-d", "--detach", "-dq", "-de") for a in args)
    if detach:
        assert py.triple() == (0, CID.encode() + b"\n", b"")
    else:
        assert py.triple() == (3, b"out 1\nout 2\n", "err é\n".encode())
    assert [r.line for r in c_reqs] == [r.line for r in py_reqs]
    assert [r.headers for r in c_reqs] == [r.headers for r in py_reqs]
    assert [r.body for r in c_reqs] == [r.body for r in py_reqs]
    kinds = [r.line.split(" ")[1].split("?")[0].rsplit("/", 1)[-1] for r in c_reqs]
    assert kinds == (["create", "start"] if detach else ["create", "attach", "wait", "start"])


def test_create_body_is_what_build_config_makes(fake: FakeDaemon) -> None:
    """The body is compared with Python's above; here it is read back, so a drift in
    both (or in the fake) cannot pass unseen."""
    _, _, c, reqs = _both_requests(
        fake, ["run", "--rm", "-e", "A=é\n", "-l", "k=v", "-p", "80", "--network", "n", "--ip",
               "10.0.0.2", "img", "echo", "hi"])
    assert c.code == 3
    create = reqs[0]
    assert create.line == "POST /v1.44/containers/create HTTP/1.1"
    body = json.loads(create.body)
    assert body["Image"] == "img" and body["Cmd"] == ["echo", "hi"]
    assert body["Env"] == ["A=é\n"] and body["Labels"] == {"k": "v"}
    assert body["HostConfig"] == {"AutoRemove": True, "PortBindings": {
        "80/tcp": [{"HostIp": "", "HostPort": ""}]}, "NetworkMode": "n"}
    assert body["ExposedPorts"] == {"80/tcp": {}}
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"n": {
        "IPAMConfig": {"IPv4Address": "10.0.0.2"}}}}
    assert body["AttachStdout"] is True and body["Tty"] is False
    assert b"\\u00e9" in create.body  # json.dumps' ASCII escapes
    assert reqs[2].line.startswith(f"POST /v1.44/containers/{CID}/wait?condition=removed ")


@pytest.mark.parametrize("script, code, err", [
    # the daemon refuses the create: 125 and docker's message
    (Script(create=(409, {"message": 'Conflict. The container name "/x" is already in use'})),
     125, b'Error response from daemon: Conflict. The container name "/x" is already in use\n'),
    (Script(create=(400, {"message": "invalid reference format"})), 125,
     b"Error response from daemon: invalid reference format\n"),
    # a start that cannot find or invoke the command: 127 / 126
    (Script(start=(500, {"message": 'exec: "x": executable file not found in $PATH'})), 127,
     b'Error response from daemon: exec: "x": executable file not found in $PATH\n'),
    (Script(start=(500, {"message": "exec /etc/passwd: Permission Denied"})), 126,
     b"Error response from daemon: exec /etc/passwd: Permission Denied\n"),
    (Script(start=(500, {"message": "cgroup: no space"})), 125,
     b"Error response from daemon: cgroup: no space\n"),
    # error bodies that are not {"message": "..."}: client.py's _raise_for
    (Script(start=(500, b"  boom: exec format error \n")), 126,
     b"Error response from daemon: boom: exec format error\n"),
    (Script(start=(500, {"message": ""})), 125,
     b'Error response from daemon: {"message": ""}\n'),
    (Script(start=(500, b"")), 125, b"Error response from daemon: Error\n"),
    (Script(create=(503, {"message": "pyrt daemon at x: shutting down"})), 125,
     b"pyrt: pyrt daemon at x: shutting down\n"),
    # the wait reports an error with the status
    (Script(wait={"StatusCode": 0, "Error": {"Message": "could not remove"}}), 0,
     b"err \xc3\xa9\nError: could not remove\n"),
    (Script(wait={"StatusCode": 300}), 300 & 0xFF, "err é\n".encode()),
    (Script(wait={}), 125, "err é\n".encode()),
])
def test_daemon_errors_same_as_python(fake: FakeDaemon, script: Script, code: int,
                                      err: bytes) -> None:
    py, py_reqs, c, c_reqs = _both_requests(fake, ["run", "--rm", "img"], script)
    assert c.triple() == py.triple()
    assert (py.code, py.err) == (code, err)
    assert [(r.line, r.body) for r in c_reqs] == [(r.line, r.body) for r in py_reqs]
    if script.start[0] >= 400:  # --rm: the created container is removed
        assert c_reqs[-1].line == f"DELETE /v1.44/containers/{CID}?force=1&v=0 HTTP/1.1"


def test_create_error_it_does_not_read_goes_to_python(fake: FakeDaemon) -> None:
    """A refused create whose body is not {"message": "..."}: nothing was created, so the
    C binary lets Python say what it makes of it."""
    script = Script(create=(500, b"<html>proxy error</html>"))
    both = Both(f"unix://{fake.path}")
    fake.reset(script)
    assert both.native("run", "img").triple() == (1, b"", b"")
    fake.reset(script)
    c = both.front("run", "img")
    assert c.triple() == both.python("run", "img").triple() == (
        125, b"", b"Error response from daemon: <html>proxy error</html>\n")


def test_signal_forwarded_with_the_same_request(fake: FakeDaemon) -> None:
    """A signal the CLI gets while attached becomes POST /containers/{id}/kill?signal=...
    (the fake daemon answers the wait only after it)."""
    import signal

    both = Both(f"unix://{fake.path}")
    seen = []
    for runner in ("python", "native"):
        fake.reset(Script(hold_until_kill=True))
        exe, env = both.argv_env(runner)
        p = subprocess.Popen([*exe, "run", "img"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert fake.started.wait(30)
        time.sleep(0.3)  # the CLI is in its stream loop
        p.send_signal(signal.SIGUSR2)
        out, err = p.communicate(timeout=30)
        assert (p.returncode, out, err) == (3, b"out 1\nout 2\n", "err é\n".encode()), runner
        seen.append([(r.line, r.headers, r.body) for r in fake.requests])
    assert seen[0] == seen[1]
    assert seen[0][-1][0] == f"POST /v1.44/containers/{CID}/kill?signal=SIGUSR2 HTTP/1.1"


def test_detached_start_failure(fake: FakeDaemon) -> None:
    script = Script(start=(500, {"message": "no such file or directory"}))
    py, py_reqs, c, c_reqs = _both_requests(fake, ["run", "-d", "--rm", "img"], script)
    assert c.triple() == py.triple() == (
        127, b"", b"Error response from daemon: no such file or directory\n")
    assert [r.line for r in c_reqs] == [r.line for r in py_reqs]
    assert len(c_reqs) == 2  # create, start: -d removes nothing


def test_no_such_image_goes_to_python_before_anything_else(fake: FakeDaemon) -> None:
    both = Both(f"unix://{fake.path}")
    fake.reset(Script(create=(404, {"message": "No such image: img:latest"})))
    assert both.native("run", "--rm", "img").triple() == (1, b"", b"")
    assert [r.line.split(" ")[1] for r in fake.requests] == ["/v1.44/containers/create"]
    # another 404 (a network, say) is the daemon refusing: reported natively
    fake.reset(Script(create=(404, {"message": "network n not found"})))
    res = both.native("run", "--rm", "img")
    assert res.triple() == (125, b"", b"Error response from daemon: network n not found\n")


@pytest.mark.parametrize("args", [
    ["run", "-i", "img"], ["run", "-t", "img"], ["run", "-it", "img"], ["run", "-d", "-ti", "img"],
    ["run", "--interactive", "img"], ["run", "--tty=1", "img"], ["run", "--env-file", "f", "img"],
    ["run", "--mount", "type=tmpfs,target=/t", "img"], ["run", "--detach-keys", "ctrl-a", "img"],
    ["run", "--help"], ["run", "--rm", "--help", "img"], ["run"], ["run", "--rm"],
    ["run", "--bogus", "img"], ["run", "-x", "img"], ["run", "--rm=1", "img"],
    ["run", "--name"], ["run", "-e"], ["run", "--restart", "sometimes", "img"],
    ["run", "--restart", "on-failure:+3", "img"], ["run", "-m", "1.5g", "img"],
    ["run", "-m", "lots", "img"], ["run", "-p", "http", "img"], ["run", "-p", "80-", "img"],
    ["run", "-p", "a:80", "img"], ["run", "-p", "٨٠", "img"],
    ["run", "img", "\udcff"],  # not UTF-8 on the command line
    ["ps"], ["version"], ["images"], ["-H"], ["-H", "run"], ["--host", "x"], ["--help"], [],
    ["-H", "tcp://127.0.0.1:1", "run", "img"], ["--host=ssh://x", "run", "img"],
    ["container", "run", "img"], ["--debug", "run", "img"],
])
def test_everything_else_goes_to_python(fake: FakeDaemon, args: list[str]) -> None:
    both = Both(f"unix://{fake.path}")
    fake.reset()
    argv = [os.fsencode(a).decode("utf-8", "surrogateescape") for a in args]
    assert both.native(*argv).triple() == (1, b"", b"")
    assert fake.requests == [], "the C binary sent a request before handing over"


def test_bad_flags_same_message_and_status(fake: FakeDaemon) -> None:
    both = Both(f"unix://{fake.path}")
    for args in (["run", "--bogus", "img"], ["run", "--name"], ["run", "--rm"], ["run", "-x"]):
        c, py = both.front(*args), both.python(*args)
        assert c.triple() == py.triple() and c.code == 125 and b"pyrt run --help" in c.err


def test_environment_host_and_unix_only(fake: FakeDaemon, tmp_path: Path) -> None:
    both = Both(str(tmp_path / "unused"))
    # PYRT_HOST names the daemon when -H does not
    fake.reset()
    res = both.native("run", "img", PYRT_HOST=f"unix://{fake.path}")
    assert res.code == 3 and len(fake.requests) == 4
    # an empty -H falls through to PYRT_HOST, as in Python (STATE.host or PYRT_HOST)
    fake.reset()
    res = both.native("-H", "", "run", "img", PYRT_HOST=f"unix://{fake.path}")
    assert res.code == 3 and len(fake.requests) == 4


def test_no_daemon_goes_to_python(tmp_path: Path) -> None:
    both = Both(f"unix://{tmp_path}/nothing.sock")
    both.delegated("run", "--rm", "img")
    c, py = both.front("run", "--rm", "img"), both.python("run", "--rm", "img")
    assert c.triple() == py.triple()
    assert c.code == 125 and b"Cannot connect to the pyrt daemon" in c.err


def test_run_options_table_matches_python() -> None:
    """csrc/cli/main.c's OPTS table is RUN_OPTIONS (flags and kinds, in order)."""
    import re

    from pyrt.cli.app import RUN_OPTIONS

    src = (REPO / "csrc" / "cli" / "main.c").read_text()
    table = src[src.index("OPTS[N_OPTS] = {"):]
    table = table[:table.index("};")]
    rows = re.findall(r'\[O_(\w+)\] = \{\{([^}]*)\}, (FLAG|STR|LIST), [01]\}', table)
    kinds = {"FLAG": "flag", "STR": "str", "LIST": "list"}
    c_opts = [(name.lower(), tuple(f.strip().strip('"') for f in flags.split(",")), kinds[k])
              for name, flags, k in rows]
    py_opts = [(dest.rstrip("_"), flags, kind) for dest, flags, kind in RUN_OPTIONS]
    assert c_opts == py_opts


def test_proxied_signals_match_python() -> None:
    """csrc/cli/main.c forwards the signals pyrt/cli/containers.py does."""
    import re

    from pyrt.cli.containers import PROXIED_SIGNALS

    src = (REPO / "csrc" / "cli" / "main.c").read_text()
    table = src[src.index("} PROXIED[] = {"):]
    table = table[:table.index("};")]
    pairs = re.findall(r'\{(SIG\w+), "(SIG\w+)"\}', table)
    assert all(a == b for a, b in pairs)
    assert tuple(a for a, _ in pairs) == PROXIED_SIGNALS


# -- against a real pyrtd -----------------------------------------------------------------------


@dataclass
class Real:
    daemon: PyrtdProcess
    both: Both
    image: str

    def containers(self) -> set[str]:
        return {c["Id"] for c in self.daemon.client().containers(all=True)}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Real]:
    tmp = tmp_path_factory.mktemp("clifront")
    d = PyrtdProcess(tmp / "d")
    try:
        both = Both(f"unix://{d.sock}")
        image = f"bb-{uuid.uuid4().hex[:6]}:1"
        tar = make_rootfs_tar(tmp)
        r = both.python("import", "-c", 'CMD ["/bin/sh"]', str(tar), image)
        assert r.code == 0 and r.out.startswith(b"sha256:"), r
        yield Real(d, both, image)
    finally:
        _remove_all_containers(d)
        d.cleanup()


def _same(real: Real, *args: str) -> Res:
    """Runs `pyrt run --rm IMAGE args` natively and through Python: the same result, and
    no container left by either."""
    before = real.containers()
    argv = ["run", "--rm", real.image, *args]
    c, py = real.both.native(*argv), real.both.python(*argv)
    assert _no_ids(c) == _no_ids(py), (args, c, py)
    assert real.containers() == before
    return c


def _no_ids(res: Res) -> tuple[int, bytes, bytes]:
    """The result with container ids (which differ from run to run) replaced."""
    import re

    return res.code, re.sub(rb"[0-9a-f]{64}", b"<id>", res.out), \
        re.sub(rb"[0-9a-f]{64}", b"<id>", res.err)


@pytest.mark.parametrize("script, code", [
    ("echo out; echo err >&2; echo out2; exit 42", 42),
    ("true", 0),
    ("exit 1", 1),
    ("sh -c 'kill -9 $$'; exit $?", 137),
    ("sh -c 'kill -15 $$'; exit $?", 143),
    ("head -c 300000 /dev/zero | tr '\\0' x; echo; head -c 70000 /dev/zero >&2", 0),
    ("for i in 1 2 3 4 5; do echo o$i; echo e$i >&2; done", 0),
    ("printf 'no newline \\303\\251 \\377'; printf '\\001\\033[0m' >&2", 0),
])
def test_real_output_and_status(real: Real, script: str, code: int) -> None:
    res = _same(real, "sh", "-c", script)
    assert res.code == code
    if script.startswith("echo out"):
        assert (res.out, res.err) == (b"out\nout2\n", b"err\n")
    if script.startswith("head"):
        assert res.out == b"x" * 300000 + b"\n" and res.err == b"\0" * 70000


def test_real_cannot_invoke_and_not_found(real: Real) -> None:
    res = _same(real, "nosuchcmd")
    assert res.code == 127 and res.err.startswith(b"Error response from daemon: ")
    assert _same(real, "/etc/passwd").code == 126


def test_real_env_workdir_user_entrypoint_hostname(real: Real) -> None:
    argv = ["run", "--rm", "-e", "A=1 2", "-e", "FROM_ENV", "-e", "UNSET_HERE", "-w", "/tmp",
            "-u", "nobody", "--entrypoint", "/bin/sh", "-h", "boxname", "-l", "x=y",
            real.image, "-c", 'echo "$A|$FROM_ENV|${UNSET_HERE-unset}"; pwd; id -u; hostname']
    c = real.both.native(*argv, FROM_ENV="é")
    py = real.both.python(*argv, FROM_ENV="é")
    assert c.triple() == py.triple()
    assert c.out.decode() == "1 2|é|unset\n/tmp\n65534\nboxname\n" and c.code == 0


def test_real_network_default_and_none(real: Real) -> None:
    """The interfaces the container sees: the same both ways; only lo with --network none."""
    def ifaces(res: Res) -> list[str]:
        assert res.code == 0 and res.err == b"", res
        return [ln.split(":")[0].strip() for ln in res.out.decode().splitlines()[2:]]

    seen = {}
    for mode in ([], ["--network", "none"]):
        argv = ["run", "--rm", *mode, real.image, "cat", "/proc/net/dev"]
        c, py = ifaces(real.both.native(*argv)), ifaces(real.both.python(*argv))
        assert c == py
        seen[bool(mode)] = sorted(c)
    assert seen[True] == ["lo"] and "eth0" in seen[False], seen


def test_real_detach_prints_the_id(real: Real) -> None:
    c = real.both.native("run", "-d", real.image, "sleep", "30")
    py = real.both.python("run", "-d", real.image, "sleep", "30")
    client = real.daemon.client()
    try:
        for res in (c, py):
            assert res.code == 0 and res.err == b"", res
            cid = res.out.decode().strip()
            assert len(cid) == 64 and res.out == cid.encode() + b"\n"
            assert client.inspect_container(cid)["State"]["Running"] is True
    finally:
        for res in (c, py):
            with contextlib.suppress(Exception):
                client.remove_container(res.out.decode().strip(), force=True)


def test_real_name_conflict(real: Real) -> None:
    name = f"clifront-{uuid.uuid4().hex[:6]}"
    client = real.daemon.client()
    first = real.both.native("run", "-d", "--name", name, real.image, "sleep", "30")
    assert first.code == 0, first
    try:
        argv = ["run", "--rm", "--name", name, real.image, "true"]
        c, py = real.both.native(*argv), real.both.python(*argv)
        assert c.triple() == py.triple()
        assert c.code == 125 and c.out == b""
        assert c.err.startswith(b"Error response from daemon: Conflict. The container name "
                                b'"/' + name.encode() + b'" is already in use'), c.err
    finally:
        client.remove_container(name, force=True)


def test_real_unknown_image_goes_to_python_which_pulls(real: Real) -> None:
    argv = ["run", "--rm", UNKNOWN_IMAGE, "true"]
    before = real.containers()
    real.both.delegated(*argv)
    c, py = real.both.front(*argv), real.both.python(*argv)
    assert c.triple() == py.triple()
    assert c.code == 125
    assert c.err.startswith(f"Unable to find image '{UNKNOWN_IMAGE}' locally\n".encode()), c.err
    assert real.containers() == before


def _signalled_run(real: Real, runner: str, script: str, signals: list[int]
                   ) -> tuple[int, bytes, bytes]:
    """`pyrt run --rm IMAGE sh -c SCRIPT` through the C binary (natively) or Python: after
    the container's first line, each signal is sent to the CLI, the next one once the
    container has printed another line; (status, stdout, stderr)."""
    exe, env = real.both.argv_env(runner)
    p = subprocess.Popen([*exe, "run", "--rm", real.image, "sh", "-c", script], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    assert p.stdout is not None
    out = p.stdout.readline()
    for sig in signals:
        p.send_signal(sig)
        out += p.stdout.readline()
    rest, err = p.communicate(timeout=30)
    return p.returncode, out + rest, err


def test_real_signals_are_forwarded_to_the_container(real: Real) -> None:
    """docker's sig-proxy: the CLI's signals reach the container through the kill API."""
    import signal

    script = ('trap "echo got USR1" USR1; trap "echo got HUP" HUP; '
              'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.05; done')
    sigs = [signal.SIGUSR1, signal.SIGHUP, signal.SIGTERM]
    for runner in ("native", "python"):
        assert _signalled_run(real, runner, script, sigs) == (
            3, b"ready\ngot USR1\ngot HUP\ngot TERM\n", b""), runner
    # SIGINT too: the container's answer is the status (here 130, as a shell killed by it)
    script = 'trap "echo got INT; exit 130" INT; echo ready; while :; do sleep 0.05; done'
    for runner in ("native", "python"):
        assert _signalled_run(real, runner, script, [signal.SIGINT]) == (
            130, b"ready\ngot INT\n", b""), runner


def test_real_interrupt_ignored_by_pid_1_goes_on(real: Real) -> None:
    """As with docker: SIGINT goes to the container, whose pid 1 (sleep, no handler)
    ignores it, so the run goes on to the container's own end (and --rm removes it)."""
    import signal

    before = real.containers()
    for runner in ("native", "python"):
        exe, env = real.both.argv_env(runner)
        p = subprocess.Popen([*exe, "run", "--rm", real.image, "sleep", "2"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        # once the container runs, the CLI forwards (both install the proxy before attach)
        _wait_for(lambda: bool(real.daemon.client().containers()))  # running ones
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        assert (p.returncode, out, err) == (0, b"", b""), runner
        assert time.monotonic() - t0 > 0.5, runner  # it waited for the container's end
    _wait_for(lambda: real.containers() == before)


def _wait_for(cond: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")
