"""Start a pyrt-shim for a container and talk to it.

    shim = ShimProcess.launch(ShimConfig(
        container_id="web", bundle=bundle_dir, state_dir=state_dir,
        runtime=runtime_path, runtime_root=runtime_root, log_path=state_dir / "json.log"))
    client = shim.client()            # or, after an engine restart: ShimClient(state_dir)
    stream = client.attach(stdin=True)
    client.start()
    stream.write(b"hi\\n"); stream.close_stdin()
    for frame in stream: ...         # Frame(stream=1|2|3, data=bytes)
    status = client.wait(timeout=10)  # ExitStatus(code, signal, oom_killed, time, pid)

The shim (csrc/shim/shim.c) is a detached C program, one per container: it runs the
runtime's `create` with its own pipes (or a pty) as the container's stdio, writes docker's
json-file log, serves attach and commands on <state_dir>/shim.sock, and writes
<state_dir>/exit.json (tmp + rename) when the container has exited, then exits itself.
Everything the engine needs after a restart is in the state directory; this client keeps
no other state. The wire protocol is described at the top of shim.c.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal as _signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyrt.errors import FailedPrecondition, InvalidArgument, NotFound, SystemError_, Unavailable

SOCKET_NAME = "shim.sock"
EXIT_FILE = "exit.json"
SHIM_PID_FILE = "shim.pid"  # written by pyrt-shim before 2026-11 (removed with the rest)
INIT_PID_FILE = "init.pid"
SHIM_LOG = "shim.log"
CONSOLE_SOCKET = "console.sock"
#: what a shim (and its runtime's --pid-file) writes in its state directory, temp files too
STATE_FILES = (SOCKET_NAME, EXIT_FILE, SHIM_PID_FILE, INIT_PID_FILE, SHIM_LOG, CONSOLE_SOCKET,
               f"{EXIT_FILE}.tmp", f"{SHIM_PID_FILE}.tmp", f"{INIT_PID_FILE}.tmp")  # fmt: skip

# frame types (1 byte type, 4 bytes big-endian length, payload)
STDIN, STDOUT, STDERR, EXIT, RESIZE, CLOSE_STDIN = 0, 1, 2, 3, 4, 5
_HDR = struct.Struct(">BI")
_UNIX_PATH_MAX = 107


# ------------------------------------------------------------------ locating the binaries


def _find_binary(name: str, env: str) -> Path:
    """$env, else the copy installed in the package (pyrt/bin), else build/dev of a tree."""
    given = os.environ.get(env)
    if given:
        p = Path(given)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise NotFound(f"{env}={given}: not an executable file")
        return p
    pkg = Path(__file__).resolve().parent.parent
    for cand in (pkg / "bin" / name, pkg.parent / "build" / "dev" / name):
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    raise NotFound(
        f"{name}: not found in {pkg / 'bin'} nor build/dev; build it (scripts/devbuild) "
        f"or set {env}"
    )


def find_shim() -> Path:
    """The pyrt-shim executable ($PYRT_SHIM_PATH, pyrt/bin/, build/dev/)."""
    return _find_binary("pyrt-shim", "PYRT_SHIM_PATH")


def find_runc() -> Path | None:
    """The pyrt-runc C front end built with this package ($PYRT_RUNC_PATH, pyrt/bin/,
    build/dev/ of a source tree, the scripts directory this package was installed with),
    or None."""
    import sysconfig

    given = os.environ.get("PYRT_RUNC_PATH")
    if given:
        return Path(given) if os.access(given, os.X_OK) else None
    pkg = Path(__file__).resolve().parent.parent
    for cand in (pkg / "bin" / "pyrt-runc", pkg.parent / "build" / "dev" / "pyrt-runc",
                 Path(sysconfig.get_path("scripts")) / "pyrt-runc"):  # fmt: skip
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def find_init() -> Path:
    """The pyrt-init executable ($PYRT_INIT_PATH, pyrt/bin/, build/dev/)."""
    return _find_binary("pyrt-init", "PYRT_INIT_PATH")


# ------------------------------------------------------------------ values


@dataclass(frozen=True)
class ExitStatus:
    """How a container's init ended. code is the shell-style status (128+signal when it
    was killed); signal is 0 when it exited by itself."""

    code: int
    signal: int
    oom_killed: bool
    time: str  # RFC 3339, UTC, nanoseconds
    pid: int
    exit_code: int = 0  # the exit(2) argument (0 when killed)
    core_dumped: bool = False

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ExitStatus:
        try:
            return cls(
                code=int(doc["status"]),
                signal=int(doc["signal"]),
                oom_killed=bool(doc.get("oom_killed", False)),
                time=str(doc["time"]),
                pid=int(doc["pid"]),
                exit_code=int(doc.get("exit_code", 0)),
                core_dumped=bool(doc.get("core_dumped", False)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SystemError_(f"shim exit record {doc!r}: bad field: {e}") from None


@dataclass(frozen=True)
class ShimStatus:
    id: str
    status: str  # created, running, stopped
    pid: int
    shim_pid: int
    tty: bool
    stdin_open: bool
    exit: ExitStatus | None


@dataclass(frozen=True)
class Frame:
    stream: int  # STDOUT, STDERR or EXIT
    data: bytes


@dataclass(frozen=True)
class ShimConfig:
    container_id: str
    bundle: Path
    state_dir: Path
    runtime: Path  # an executable speaking runc's command line (pyrt-runc, runc, crun)
    runtime_root: Path
    log_path: Path | None = None
    log_max_size: int = 0  # bytes; 0: no rotation
    log_max_file: int = 1
    tty: bool = False
    stdin: bool = False
    drain_timeout: float = 2.0  # seconds to wait for output after the init exited
    no_sync: bool = False  # exit.json not fsync'ed: a container that does not outlive a crash

    def argv(self, shim: Path) -> list[str]:
        if not self.container_id:
            raise InvalidArgument("shim: container_id must not be empty")
        if self.log_max_size < 0:
            raise InvalidArgument(f"shim: log_max_size must be >= 0, got {self.log_max_size}")
        if not 1 <= self.log_max_file <= 1000:
            raise InvalidArgument(f"shim: log_max_file must be 1..1000, got {self.log_max_file}")
        if not (self.bundle / "config.json").is_file():
            raise InvalidArgument(f"shim: bundle {self.bundle}: no config.json")
        if not (self.runtime.is_file() and os.access(self.runtime, os.X_OK)):
            raise InvalidArgument(f"shim: runtime {self.runtime}: not an executable file")
        args = [
            str(shim),
            "--id", self.container_id,
            "--bundle", str(self.bundle.resolve()),
            "--runtime", str(self.runtime.resolve()),
            "--root", str(Path(self.runtime_root).resolve()),
            "--state-dir", str(self.state_dir.resolve()),
            "--drain-timeout", str(int(self.drain_timeout * 1000)),
        ]  # fmt: skip
        if self.log_path is not None:
            args += ["--log-path", str(Path(self.log_path).resolve())]
            args += ["--log-max-size", str(self.log_max_size)]
            args += ["--log-max-file", str(self.log_max_file)]
        if self.tty:
            args.append("--tty")
        if self.stdin:
            args.append("--stdin")
        if self.no_sync:
            args.append("--no-sync")
        return args


def reset_state_dir(state_dir: Path) -> None:
    """Ready state_dir for a new shim: made if missing, and a previous shim's files removed.
    Only those: the directory may be shared (the engine's bundle, config.json, is there)."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in STATE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(state_dir / name)


# ------------------------------------------------------------------ launching


@dataclass
class ShimProcess:
    """A shim started by ShimProcess.launch: its pid, the container's init pid."""

    state_dir: Path
    shim_pid: int
    init_pid: int

    @classmethod
    def launch(
        cls, config: ShimConfig, *, shim: Path | None = None, timeout: float = 60.0
    ) -> ShimProcess:
        """Start a detached shim; return once it reports the container created.

        Raises SystemError_ with the runtime's own message when create fails.
        """
        exe = shim or find_shim()
        argv = config.argv(exe)
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        rfd, wfd = os.pipe2(os.O_CLOEXEC)
        argv += ["--ready-fd", str(wfd)]
        try:
            with open(config.state_dir / SHIM_LOG, "ab") as log:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(wfd,),
                    cwd="/", start_new_session=True,
                )  # fmt: skip
        except OSError as e:
            os.close(rfd)
            os.close(wfd)
            raise SystemError_(f"shim: cannot run {exe}: {e.strerror}", e.errno) from None
        os.close(wfd)
        try:
            message = _read_until_eof(rfd, timeout)
        finally:
            os.close(rfd)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)  # the first of the double fork exits at once
        text = message.decode(errors="replace").strip()
        if text.startswith("created "):
            try:
                init_pid = int(text.split()[1])
            except (IndexError, ValueError):
                raise SystemError_(f"shim: bad ready message {text!r}") from None
            shim_pid = ShimClient(config.state_dir).shim_pid()
            return cls(config.state_dir, shim_pid, init_pid)
        if text.startswith("error "):
            raise SystemError_(f"container '{config.container_id}': {text[6:]}")
        detail = _tail(config.state_dir / SHIM_LOG)
        raise SystemError_(
            f"container '{config.container_id}': the shim ended without a ready message"
            + (f" (within {timeout:.0f}s)" if not text else f": {text!r}")
            + (f"; shim.log: {detail}" if detail else "")
        )

    def client(self) -> ShimClient:
        return ShimClient(self.state_dir)


def readable(fd: int, seconds: float) -> bool:
    """Whether fd has input (or EOF) within seconds. poll(), not select(), which refuses
    fds above 1023: an engine running many containers at once gets there."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(seconds, 0.0) * 1000))


def _read_until_eof(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    out = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out
        if not readable(fd, left):
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return out
        out += chunk


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError) as e:
        raise SystemError_(f"{path}: cannot read a pid: {e}") from None


def _tail(path: Path, n: int = 2000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-n:].decode(errors="replace").strip()


# ------------------------------------------------------------------ the client


def _connect(path: Path, timeout: float | None) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    target = str(path)
    dfd = -1
    try:
        if len(target.encode()) > _UNIX_PATH_MAX:  # long temp paths: go through the dir fd
            dfd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            target = f"/proc/self/fd/{dfd}/{path.name}"
        s.connect(target)
    except BaseException:
        s.close()
        raise
    finally:
        if dfd >= 0:
            os.close(dfd)
    return s


class ShimClient:
    """Talks to the shim of one container through its state directory alone."""

    def __init__(self, state_dir: Path | str, timeout: float = 30.0) -> None:
        self.state_dir = Path(state_dir)
        self.timeout = timeout
        if not self.state_dir.is_dir():
            raise NotFound(f"shim state directory {self.state_dir} does not exist")

    @property
    def socket_path(self) -> Path:
        return self.state_dir / SOCKET_NAME

    # -- plumbing

    def _open(self, timeout: float | None) -> socket.socket:
        try:
            return _connect(self.socket_path, timeout)
        except (FileNotFoundError, ConnectionRefusedError):
            if self.exit_status() is not None:
                raise FailedPrecondition(
                    f"container of {self.state_dir}: it has exited (the shim is gone)"
                ) from None
            raise Unavailable(
                f"shim of {self.state_dir}: not reachable and no exit record; it died"
            ) from None

    def _call(self, command: str, timeout: float | None = None) -> str:
        """One command, one reply line: the text after 'ok', or an error for 'err'."""
        s = self._open(self.timeout if timeout is None else timeout)
        try:
            s.sendall(command.encode() + b"\n")
            reply = _read_line(s)
        except TimeoutError:
            raise Unavailable(f"shim of {self.state_dir}: no answer to {command!r}") from None
        except ConnectionError:
            reply = b""  # the shim was exiting when we connected
        finally:
            s.close()
        if not reply and self.exit_status() is not None:
            raise FailedPrecondition(f"container of {self.state_dir}: it has exited")
        return _check_reply(command, reply)

    # -- state on disk

    def exit_status(self) -> ExitStatus | None:
        """The recorded exit, or None while the container has not exited."""
        try:
            data = (self.state_dir / EXIT_FILE).read_bytes()
        except FileNotFoundError:
            return None
        return ExitStatus.from_json(json.loads(data))

    def shim_pid(self) -> int:
        """The shim's pid, from its status (0 once it has stopped listening: exited)."""
        return self.status().shim_pid

    def init_pid(self) -> int:
        """The container's init: init.pid, the pid file of a runtime other than pyrt-runc
        (which hands the shim its pid through a pipe), else the shim's status."""
        path = self.state_dir / INIT_PID_FILE
        return _read_int(path) if path.exists() else self.status().pid

    def shim_alive(self) -> bool:
        """True while the shim of this state directory serves it: its socket takes a
        connection (the shim listens from the container's create until exit.json is
        written; a dead shim's socket file refuses). No pid file: one inode less per
        container."""
        try:
            s = _connect(self.socket_path, 5.0)
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        except OSError:
            return True  # a backlog full for 5 s: busy, not dead (a dead one refuses)
        s.close()
        return True

    # -- commands

    def status(self) -> ShimStatus:
        try:
            doc = json.loads(self._call("status"))
        except FailedPrecondition:
            ex = self.exit_status()
            assert ex is not None
            return ShimStatus(
                id="", status="stopped", pid=ex.pid, shim_pid=0, tty=False,
                stdin_open=False, exit=ex,
            )  # fmt: skip
        ex = doc.get("exit")
        return ShimStatus(
            id=str(doc["id"]), status=str(doc["status"]), pid=int(doc["pid"]),
            shim_pid=int(doc["shim_pid"]), tty=bool(doc["tty"]),
            stdin_open=bool(doc["stdin_open"]),
            exit=ExitStatus.from_json(ex) if ex else None,
        )  # fmt: skip

    def start(self) -> None:
        """Start the created container (the shim runs `<runtime> start <id>`)."""
        self._call("start")

    def kill(self, sig: int = _signal.SIGTERM, all: bool = False) -> None:
        """Signal the container's init (all: every process of it, through the runtime)."""
        n = int(sig)
        if not 1 <= n <= 64:
            raise InvalidArgument(f"kill: signal {n} out of range 1..64")
        self._call(f"kill {n}" + (" all" if all else ""))

    def resize(self, rows: int, cols: int) -> None:
        if not (1 <= rows <= 65535 and 1 <= cols <= 65535):
            raise InvalidArgument(f"resize: {rows}x{cols}: rows and cols must be 1..65535")
        self._call(f"resize {rows} {cols}")

    def close_stdin(self) -> None:
        self._call("close-stdin")

    def wait(self, timeout: float | None = None) -> ExitStatus:
        """Block until the container has exited; its exit status. TimeoutError after
        `timeout` seconds (None: no limit)."""
        ex = self.exit_status()
        if ex is not None:
            return ex
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            s = self._open(timeout)
        except FailedPrecondition:
            ex = self.exit_status()
            assert ex is not None
            return ex
        try:
            with contextlib.suppress(ConnectionError):
                s.sendall(b"wait\n")
            s.settimeout(timeout)
            try:
                reply = _read_line(s)
            except TimeoutError:
                raise TimeoutError(f"container of {self.state_dir}: still running") from None
            except ConnectionError:
                reply = b""  # the shim was exiting when we connected
        finally:
            s.close()
        if not reply:  # the shim went away between our connect and its reply
            while True:
                ex = self.exit_status()
                if ex is not None:
                    return ex
                if not self.shim_alive():
                    raise Unavailable(f"shim of {self.state_dir} died without an exit record")
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"container of {self.state_dir}: still running")
                time.sleep(0.02)
        return ExitStatus.from_json(json.loads(_check_reply("wait", reply)))

    def attach(self, stdin: bool = False) -> AttachStream:
        """A live stream of the container's output (and its stdin when stdin=True)."""
        s = self._open(self.timeout)
        try:
            try:
                s.sendall(b"attach stdin\n" if stdin else b"attach\n")
                reply = _read_line(s)
            except ConnectionError:
                reply = b""
            if not reply and self.exit_status() is not None:
                raise FailedPrecondition(f"container of {self.state_dir}: it has exited")
            _check_reply("attach", reply)
        except BaseException:
            s.close()
            raise
        s.settimeout(None)
        return AttachStream(s)


def _read_line(s: socket.socket) -> bytes:
    """Bytes up to and including the first newline, nothing after it consumed (an attach
    stream follows); b'' if the peer closed first. It peeks at what has arrived and then
    takes exactly the line: two system calls per chunk, where reading byte by byte made
    one per byte, each giving up and retaking the GIL (slow with many threads busy)."""
    out = bytearray()
    while True:
        seen = s.recv(4096, socket.MSG_PEEK)
        if not seen:
            return bytes(out)
        end = seen.find(b"\n")
        # we are the socket's only reader: what was peeked is there to take
        got = s.recv(len(seen) if end < 0 else end + 1)
        out += got
        if end >= 0 and len(got) == end + 1:
            return bytes(out)


def _check_reply(command: str, reply: bytes) -> str:
    text = reply.decode(errors="replace").rstrip("\n")
    if text == "ok" or text.startswith("ok "):
        return text[3:]
    verb = command.split()[0] if command.split() else command
    if text.startswith("err "):
        msg = text[4:]
        if "has exited" in msg or "already started" in msg or "no terminal" in msg:
            raise FailedPrecondition(f"shim {verb}: {msg}")
        if "between" in msg or "unknown command" in msg:
            raise InvalidArgument(f"shim {verb}: {msg}")
        raise SystemError_(f"shim {verb}: {msg}")
    if not text:
        raise Unavailable(f"shim {verb}: the shim closed the connection without an answer")
    raise SystemError_(f"shim {verb}: unexpected answer {text!r}")


class AttachStream:
    """One attach connection: output frames in, stdin/resize/close-stdin frames out."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self.exit: ExitStatus | None = None
        self.closed = False

    def fileno(self) -> int:
        return self._sock.fileno()

    def read_frame(self, timeout: float | None = None) -> Frame | None:
        """The next frame; None at the end of the stream. TimeoutError if none arrived
        within timeout seconds. An EXIT frame carries the exit json (also in .exit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if len(self._buf) >= _HDR.size:
                kind, length = _HDR.unpack_from(self._buf)
                if len(self._buf) >= _HDR.size + length:
                    data = bytes(self._buf[_HDR.size : _HDR.size + length])
                    del self._buf[: _HDR.size + length]
                    if kind == EXIT:
                        self.exit = ExitStatus.from_json(json.loads(data))
                    return Frame(kind, data)
            if self.closed:
                return None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("attach: no frame in time")
                self._sock.settimeout(left)
            else:
                self._sock.settimeout(None)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("attach: no frame in time") from None
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                continue
            self._buf += chunk

    def __iter__(self) -> Iterator[Frame]:
        while True:
            f = self.read_frame()
            if f is None:
                return
            yield f

    def read_all(self, timeout: float = 30.0) -> dict[int, bytes]:
        """Everything until the exit frame: {STDOUT: b"...", STDERR: b"..."}."""
        out: dict[int, bytes] = {STDOUT: b"", STDERR: b""}
        deadline = time.monotonic() + timeout
        while True:
            f = self.read_frame(timeout=max(0.0, deadline - time.monotonic()))
            if f is None or f.stream == EXIT:
                return out
            out[f.stream] = out.get(f.stream, b"") + f.data

    def _send(self, kind: int, payload: bytes) -> None:
        self._sock.settimeout(30)
        self._sock.sendall(_HDR.pack(kind, len(payload)) + payload)

    def write(self, data: bytes) -> None:
        """Send data to the container's stdin (attach(stdin=True) only)."""
        for i in range(0, len(data), 65536):
            self._send(STDIN, data[i : i + 65536])

    def resize(self, rows: int, cols: int) -> None:
        if not (1 <= rows <= 65535 and 1 <= cols <= 65535):
            raise InvalidArgument(f"resize: {rows}x{cols}: rows and cols must be 1..65535")
        self._send(RESIZE, struct.pack(">HH", rows, cols))

    def close_stdin(self) -> None:
        self._send(CLOSE_STDIN, b"")

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> AttachStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
