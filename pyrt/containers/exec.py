"""`docker exec`: another process in a running container.

    inst = create_exec(handle, ExecConfig.from_api({"Cmd": ["sh", "-c", "id"],
                                                     "AttachStdout": True}))
    run = start_exec(handle, inst)            # pipes made for the attached streams
    out = os.read(run.stdout, 4096)
    code = run.wait()                         # also recorded in inst (ExitCode, Running)
    inst.inspect()                            # docker's ExecInspect document

The OCI process starts as a copy of the container's own (rlimits, noNewPrivileges,
capabilities...) and then takes the exec's command, env (the container's env with the
exec's Env applied by key, plus TERM=xterm for a tty), user (the exec's User or the
container's, resolved against the container's /etc/passwd and /etc/group), working
directory and terminal; Privileged gives every capability the engine holds.

With a tty the process's pty master comes back through a console socket this module
listens on (a private AF_UNIX socket in a 0700 temporary directory); `run.pty` is that
master, `run.resize(h, w)` sets its window size.

A command that cannot be started is reported as docker does: exit code 127 when it does
not exist (ENOENT/ENOTDIR from the runtime), 126 when it cannot be executed (EACCES,
EPERM, ENOEXEC); `start_exec` then returns an already finished run whose `error` holds the
runtime's message. Any other runtime failure raises.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import os
import re
import secrets
import shutil
import socket
import struct
import tempfile
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyrt.containers.specgen import all_caps, merge_env
from pyrt.containers.userdb import resolve_user
from pyrt.errors import Conflict, FailedPrecondition, InvalidArgument, PyrtError

if TYPE_CHECKING:
    from pyrt.containers.handle import ContainerHandle

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
_ENV_KEY = re.compile(r"[^=\s]+")
_CTRL_KEYS = "abcdefghijklmnopqrstuvwxyz@[\\]^_"
#: ctrl-a..ctrl-z are 1..26; ctrl-@ is NUL, ctrl-[ ESC (27) up to ctrl-_ (31)
_CTRL_CODES = {c: i + 1 for i, c in enumerate(_CTRL_KEYS[:26])} | {
    "@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}

#: errnos from the runtime that mean "the command does not exist" / "cannot be executed"
_NOT_FOUND = (errno.ENOENT, errno.ENOTDIR)
_NOT_EXECUTABLE = (errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR)


def parse_detach_keys(spec: str, where: str = "DetachKeys") -> bytes:
    """docker's detach key sequence ("ctrl-p,ctrl-q", "a,ctrl-@") -> the bytes it matches."""
    if not spec:
        raise InvalidArgument(f"{where}: empty key sequence")
    out = bytearray()
    for part in spec.split(","):
        if len(part) == 1:
            out.append(ord(part))
            continue
        low = part.lower()
        if low.startswith("ctrl-") and len(low) == 6 and low[5] in _CTRL_KEYS:
            out.append(_CTRL_CODES[low[5]])
            continue
        raise InvalidArgument(f"{where}: invalid detach key {part!r} in {spec!r} "
                              "(a single character or ctrl-<a-z @ [ \\ ] ^ _>)")
    return bytes(out)


def _bool(d: dict[str, Any], key: str) -> bool:
    v = d.get(key, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise InvalidArgument(f"{key}: expected a boolean, got {type(v).__name__}")
    return v


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise InvalidArgument(f"{key}: expected a string, got {type(v).__name__}")
    return v


def _strlist(d: dict[str, Any], key: str) -> list[str]:
    v = d.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InvalidArgument(f"{key}: expected a list of strings")
    return list(v)


@dataclass(frozen=True)
class ExecConfig:
    """The body of POST /containers/{id}/exec."""

    Cmd: list[str]
    Env: list[str] = field(default_factory=list)
    User: str = ""
    WorkingDir: str = ""
    Tty: bool = False
    AttachStdin: bool = False
    AttachStdout: bool = False
    AttachStderr: bool = False
    Privileged: bool = False
    DetachKeys: str = ""
    ConsoleSize: tuple[int, int] | None = None  # (height, width)

    def __post_init__(self) -> None:
        if not self.Cmd:
            raise InvalidArgument("Cmd: no exec command specified")
        if not all(isinstance(a, str) for a in self.Cmd) or not self.Cmd[0]:
            raise InvalidArgument("Cmd: the command must be non-empty strings")
        for i, item in enumerate(self.Env):
            key = item.partition("=")[0]
            if not _ENV_KEY.fullmatch(key):
                raise InvalidArgument(f"Env[{i}]: invalid environment variable {item!r}")
        if self.WorkingDir and not self.WorkingDir.startswith("/"):
            raise InvalidArgument(f"WorkingDir: the working directory '{self.WorkingDir}' "
                                  "is invalid, it needs to be an absolute path")
        if self.DetachKeys:
            parse_detach_keys(self.DetachKeys)
        if self.ConsoleSize is not None:
            h, w = self.ConsoleSize
            if h < 0 or w < 0 or h > 0xFFFF or w > 0xFFFF:
                raise InvalidArgument(f"ConsoleSize: {h}x{w} is out of range")

    @classmethod
    def from_api(cls, raw: object) -> ExecConfig:
        if not isinstance(raw, dict):
            raise InvalidArgument("exec config: expected a JSON object")
        cmd = _strlist(raw, "Cmd")
        size = raw.get("ConsoleSize")
        console: tuple[int, int] | None = None
        if size is not None:
            if (not isinstance(size, list) or len(size) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in size)):
                raise InvalidArgument("ConsoleSize: expected [height, width]")
            console = (size[0], size[1])
        return cls(
            Cmd=cmd, Env=_strlist(raw, "Env"), User=_str(raw, "User"),
            WorkingDir=_str(raw, "WorkingDir"), Tty=_bool(raw, "Tty"),
            AttachStdin=_bool(raw, "AttachStdin"), AttachStdout=_bool(raw, "AttachStdout"),
            AttachStderr=_bool(raw, "AttachStderr"), Privileged=_bool(raw, "Privileged"),
            DetachKeys=_str(raw, "DetachKeys"), ConsoleSize=console,
        )  # fmt: skip


@dataclass
class ExecInstance:
    """One exec: what docker's ExecInspect shows."""

    id: str
    container_id: str
    config: ExecConfig
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    can_remove: bool = False
    started: bool = False
    error: str = ""

    def inspect(self) -> dict[str, Any]:
        c = self.config
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {
                "tty": c.Tty,
                "entrypoint": c.Cmd[0],
                "arguments": list(c.Cmd[1:]),
                "privileged": c.Privileged,
                "user": c.User,
            },
            "OpenStdin": c.AttachStdin,
            "OpenStderr": c.AttachStderr,
            "OpenStdout": c.AttachStdout,
            "CanRemove": self.can_remove,
            "ContainerID": self.container_id,
            "DetachKeys": c.DetachKeys,
            "Pid": self.pid,
        }


def _require_running(handle: ContainerHandle) -> None:
    status = handle.status()
    if status == "paused":
        raise Conflict(f"container {handle.id} is paused, unpause the container before exec")
    if status != "running":
        raise Conflict(f"container {handle.id} is not running")


def create_exec(handle: ContainerHandle, config: ExecConfig) -> ExecInstance:
    """A new exec instance for a running container (Conflict when it is not running)."""
    _require_running(handle)
    return ExecInstance(id=secrets.token_hex(32), container_id=handle.id, config=config)


def build_process(handle: ContainerHandle, config: ExecConfig) -> dict[str, Any]:
    """The OCI process for Runtime.exec (see the module doc)."""
    base = handle.spec.get("process")
    if not isinstance(base, dict):
        raise FailedPrecondition(f"container {handle.id}: its spec has no process")
    proc: dict[str, Any] = copy.deepcopy(base)
    proc["args"] = list(config.Cmd)
    env = merge_env(list(base.get("env") or []), config.Env)
    if config.Tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    proc["env"] = env
    proc["terminal"] = config.Tty
    proc.pop("consoleSize", None)
    if config.ConsoleSize is not None:
        proc["consoleSize"] = {"height": config.ConsoleSize[0], "width": config.ConsoleSize[1]}
    proc["cwd"] = config.WorkingDir or base.get("cwd") or "/"
    user = config.User or handle.config.User
    if user:
        resolved = resolve_user(handle.rootfs, user, list(handle.host_config.GroupAdd))
        u: dict[str, Any] = {"uid": resolved.uid, "gid": resolved.gid}
        if resolved.additional_gids:
            u["additionalGids"] = list(resolved.additional_gids)
        proc["user"] = u
    if config.Privileged:
        caps = all_caps()
        proc["capabilities"] = {"bounding": list(caps), "effective": list(caps),
                                "permitted": list(caps), "inheritable": [], "ambient": []}
    return proc


class _ConsoleListener:
    """A private AF_UNIX listener the runtime's spawn hands the pty master to."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="pyrt-exec-console-")
        os.chmod(self.dir, 0o700)
        self.path = os.path.join(self.dir, "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.bind(self.path)
        self.sock.listen(1)

    def receive(self, timeout: float = 10.0) -> int:
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(timeout)
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 4)
        if not fds:
            raise FailedPrecondition("exec: the runtime sent no terminal over the console "
                                     "socket")
        for extra in fds[1:]:
            os.close(extra)
        os.set_inheritable(fds[0], False)
        return fds[0]

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def set_winsize(fd: int, height: int, width: int) -> None:
    if not (0 <= height <= 0xFFFF and 0 <= width <= 0xFFFF):
        raise InvalidArgument(f"resize: {height}x{width} is out of range")
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


class RunningExec:
    """A started exec. `wait()` gives its exit status (the shell's: 128+signal when killed).

    Fds this object made and hands out (`pty`, `stdin`, `stdout`, `stderr`; None when not
    made) belong to the caller once it took them; `close()` closes those still set.
    """

    def __init__(self, inst: ExecInstance, pid: int, *, pty: int | None = None,
                 stdin: int | None = None, stdout: int | None = None,
                 stderr: int | None = None, exit_code: int | None = None) -> None:
        self.instance = inst
        self.pid = pid
        self.pty = pty
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._lock = threading.Lock()
        self._code = exit_code

    @property
    def error(self) -> str:
        return self.instance.error

    def poll(self) -> int | None:
        with self._lock:
            if self._code is None and self.pid > 0:
                try:
                    got, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    got, status = self.pid, 255 << 8
                if got == self.pid:
                    self._finish(status)
            return self._code

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        if timeout is None:
            with self._lock:
                if self._code is None:
                    while True:
                        try:
                            _, status = os.waitpid(self.pid, 0)
                        except InterruptedError:
                            continue
                        except ChildProcessError:
                            status = 255 << 8
                        break
                    self._finish(status)
                return self._code if self._code is not None else 255
        while True:
            code = self.poll()
            if code is not None:
                return code
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"exec {self.instance.id} still running after {timeout}s")
            time.sleep(0.01)

    def _finish(self, status: int) -> None:
        from pyrt.runtime.runtime import exit_status

        self._code = exit_status(status)
        self.instance.exit_code = self._code
        self.instance.running = False
        self.instance.can_remove = True

    def resize(self, height: int, width: int) -> None:
        if self.pty is None:
            raise FailedPrecondition(f"exec {self.instance.id} has no tty to resize")
        set_winsize(self.pty, height, width)

    def close(self) -> None:
        for name in ("pty", "stdin", "stdout", "stderr"):
            fd = getattr(self, name)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, None)


def start_exec(handle: ContainerHandle, inst: ExecInstance,
               stdio: tuple[int, int, int] | None = None,
               before_spawn: Callable[[], None] | None = None) -> RunningExec:
    """Start an exec created by `create_exec` (see the module doc).

    Without a tty, `stdio` are the fds the process gets (the caller keeps them); None
    makes a pipe for each attached stream (and /dev/null for the others). `before_spawn`
    runs once the checks passed, just before the process is made (the API sends its
    response headers there, as dockerd does, so no output can reach the client first).
    """
    if inst.container_id != handle.id:
        raise InvalidArgument(f"exec {inst.id} belongs to container {inst.container_id}, "
                              f"not {handle.id}")
    if inst.started:
        raise Conflict(f"exec {inst.id} has already been started")
    _require_running(handle)
    process = build_process(handle, inst.config)
    if before_spawn is not None:
        before_spawn()
    inst.started = True
    mine: list[int] = []  # fds closed after the spawn (the child has its copies)
    handed: dict[str, int] = {}
    console: _ConsoleListener | None = None
    try:
        if inst.config.Tty:
            console = _ConsoleListener()
            child_stdio = None
        elif stdio is not None:
            child_stdio = stdio
        else:
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            mine.append(null)
            fds = [null, null, null]
            if inst.config.AttachStdin:
                r, w = os.pipe2(os.O_CLOEXEC)
                mine.append(r)
                handed["stdin"] = w
                fds[0] = r
            for i, (flag, name) in enumerate(((inst.config.AttachStdout, "stdout"),
                                              (inst.config.AttachStderr, "stderr")), 1):
                if flag:
                    r, w = os.pipe2(os.O_CLOEXEC)
                    mine.append(w)
                    handed[name] = r
                    fds[i] = w
            child_stdio = (fds[0], fds[1], fds[2])
        try:
            pid = handle.runtime.exec(
                handle.runtime_id, process, detach=True,
                console_socket=console.path if console is not None else None,
                stdio=child_stdio,
            )  # fmt: skip
        except PyrtError as e:
            code = _start_failure_code(e)
            inst.started = True
            inst.running = False
            inst.error = str(e)
            if code is None:
                raise
            inst.exit_code = code
            inst.can_remove = True
            for fd in handed.values():
                os.close(fd)
            handed.clear()
            return RunningExec(inst, 0, exit_code=code)
        pty = None
        if console is not None:
            pty = console.receive()
            if inst.config.ConsoleSize is not None:
                set_winsize(pty, *inst.config.ConsoleSize)
        inst.pid = pid
        inst.running = True
        return RunningExec(inst, pid, pty=pty, stdin=handed.pop("stdin", None),
                           stdout=handed.pop("stdout", None),
                           stderr=handed.pop("stderr", None))
    except BaseException:
        for fd in handed.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        raise
    finally:
        for fd in mine:
            with contextlib.suppress(OSError):
                os.close(fd)
        if console is not None:
            console.close()


def _start_failure_code(e: PyrtError) -> int | None:
    """127/126 for a runtime error that says the command is missing/not executable."""
    err = getattr(e, "errno", None)
    text = str(e)
    if err in _NOT_FOUND or "executable file not found" in text or (
            err is None and "no such file or directory" in text.lower()):
        return 127
    if err in _NOT_EXECUTABLE or (err is None and "permission denied" in text.lower()):
        return 126
    return None


def exec_run(handle: ContainerHandle, config: ExecConfig,
             stdio: tuple[int, int, int] | None = None) -> tuple[ExecInstance, RunningExec]:
    """create_exec + start_exec."""
    inst = create_exec(handle, config)
    return inst, start_exec(handle, inst, stdio)


__all__ = [
    "DEFAULT_DETACH_KEYS",
    "ExecConfig",
    "ExecInstance",
    "RunningExec",
    "build_process",
    "create_exec",
    "exec_run",
    "parse_detach_keys",
    "set_winsize",
    "start_exec",
]
