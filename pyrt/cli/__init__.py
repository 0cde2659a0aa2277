"""pyrt: the command-line client of pyrtd (the Docker Engine API over a Unix socket).

The daemon is found through -H/--host, else $PYRT_HOST, else unix:///run/pyrt/pyrt.sock.
When nothing answers on a Unix socket, `pyrt` starts `pyrtd -H <that socket>` detached
(extra daemon flags from $PYRT_DAEMON_FLAGS; its log in <data-root>/pyrtd.log when the
flags name a data root, else /var/log/pyrt/pyrtd.log), says so on stderr and goes on;
$PYRT_NO_AUTOSTART=1 turns that off. Errors from the daemon print "Error response from
daemon: ..." and exit 125, as docker does.

This package imports only the standard library and pyrt.api.client: it is on the path of
every command (typer is loaded by pyrt.cli.app only for commands that need it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import time

from pyrt.api.client import DEFAULT_HOST, Client
from pyrt.errors import PyrtError, Unavailable

# typing costs ~5 ms of imports on every CLI command: annotations only need it for mypy
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any, BinaryIO, NoReturn

#: docker's exit statuses: a command that fails exits 1; `run` (and a bad flag, anywhere)
#: exits 125 when the failure is not the container's own
EXIT_ERROR = 1
EXIT_DAEMON = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127

DEFAULT_LOG = "/var/log/pyrt/pyrtd.log"
START_TIMEOUT_S = 30.0


class CLIError(Exception):
    """An error the CLI reports itself: message on stderr, then exit `code` (None: the
    running command's status for a failure, STATE.error_code)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class _State:
    host: str | None = None
    #: what a failure exits with: 1, as docker's commands; `run` makes it 125
    error_code: int = EXIT_ERROR


STATE = _State()


def host() -> str:
    return STATE.host or os.environ.get("PYRT_HOST") or DEFAULT_HOST


def socket_path(h: str) -> str | None:
    return h[len("unix://"):] if h.startswith("unix://") else None


def answers(path: str) -> bool:
    """True when something accepts connections on the Unix socket `path`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
            return False
        raise CLIError(f"cannot connect to the pyrt daemon at unix://{path}: "
                       f"{e.strerror}") from None
    finally:
        s.close()
    return True


def daemon_pid(path: str) -> int | None:
    """The pid of the process serving the Unix socket (SO_PEERCRED), None if none does."""
    import struct

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    finally:
        s.close()
    pid, _uid, _gid = struct.unpack("3i", creds)
    return int(pid)


def daemon_command(h: str, extra: list[str] | None = None) -> list[str]:
    """How to run pyrtd for host `h`: the pyrtd beside this interpreter when there is one,
    else this interpreter with -m pyrt.daemon (the same pyrt either way)."""
    import shlex
    from pathlib import Path

    flags = shlex.split(os.environ.get("PYRT_DAEMON_FLAGS", "")) + list(extra or [])
    beside = Path(sys.executable).parent / "pyrtd"
    exe = [str(beside)] if beside.is_file() else [sys.executable, "-m", "pyrt.daemon"]
    return [*exe, "-H", h, *flags]


def log_path(cmd: list[str]) -> Path:
    from pathlib import Path

    for i, arg in enumerate(cmd):
        if arg == "--data-root" and i + 1 < len(cmd):
            return Path(cmd[i + 1]) / "pyrtd.log"
        if arg.startswith("--data-root="):
            return Path(arg.split("=", 1)[1]) / "pyrtd.log"
    return Path(DEFAULT_LOG)


def start_daemon(h: str, extra: list[str] | None = None,
                 timeout: float = START_TIMEOUT_S) -> int:
    """Start pyrtd on `h` detached (its own session, output to its log) and wait until it
    answers; returns its pid. CLIError when it cannot start or exits."""
    import subprocess

    path = socket_path(h)
    if path is None:
        raise CLIError(f"cannot start a daemon for {h}: only unix:// hosts are started")
    cmd = daemon_command(h, extra)
    log = log_path(cmd)
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        logf = open(log, "ab")  # noqa: SIM115 - handed to the child
    except OSError as e:
        raise CLIError(f"cannot start pyrtd: its log {log}: {e.strerror}") from None
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True)
    except OSError as e:
        raise CLIError(f"cannot start pyrtd ({cmd[0]}): {e.strerror}") from None
    finally:
        logf.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            tail = ""
            with contextlib.suppress(OSError):
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
            raise CLIError(f"cannot start pyrtd on {h}: it exited with status {code} "
                           f"(log {log}):\n{tail}")
        with contextlib.suppress(PyrtError, OSError):
            if Client(h, timeout=2).ping():
                return proc.pid
        time.sleep(0.05)
    raise CLIError(f"cannot start pyrtd on {h}: no answer after {timeout:.0f}s (log {log})")


def client(timeout: float | None = 60.0, autostart: bool = True) -> Client:
    """A Client of the daemon at host(); starts one when nothing answers (see above)."""
    h = host()
    try:
        c = Client(h, timeout=timeout)
    except PyrtError as e:
        raise CLIError(str(e)) from None
    path = socket_path(h)
    if path is not None and not answers(path):
        if not autostart or os.environ.get("PYRT_NO_AUTOSTART") in ("1", "true"):
            raise CLIError(f"Cannot connect to the pyrt daemon at {h}. "
                           "Is the pyrt daemon running?")
        start_daemon(h)
        sys.stderr.write(f"pyrt: started pyrtd on {h}\n")
    return c


def fail(message: str, code: int | None = None) -> NoReturn:
    raise CLIError(message, code)


def write_archive(output: str | None, produce: Callable[[BinaryIO], object]) -> None:
    """Write what `produce` streams (save, export) to -o's file, atomically, or to stdout
    when it is not a terminal, as docker does."""
    if output:
        tmp = f"{output}.pyrt-tmp"
        try:
            with open(tmp, "wb") as f:
                produce(f)
            os.replace(tmp, output)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return
    if sys.stdout.isatty():
        fail("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    produce(sys.stdout.buffer)
    sys.stdout.buffer.flush()


def report(exc: BaseException) -> int:
    """Print an error as docker does; returns the exit status."""
    if isinstance(exc, CLIError):
        sys.stderr.write(f"pyrt: {exc}\n" if not str(exc).startswith(("Error", "Cannot",
                                                                        "Unable"))
                         else f"{exc}\n")
        return exc.code if exc.code is not None else STATE.error_code
    from pyrt.cli.output import TemplateError

    if isinstance(exc, TemplateError) or (isinstance(exc, Unavailable)
                                          and "pyrt daemon" in str(exc)):  # fmt: skip
        sys.stderr.write(f"pyrt: {exc}\n")
    else:
        sys.stderr.write(f"Error response from daemon: {exc}\n")
    return STATE.error_code


def inspect_each(get: Callable[[str], Any], names: list[str], fmt: str | None) -> int:
    """docker's `X inspect A B...`: each object got (an error reported for a missing one),
    printed as one JSON list, or each through the template; the exit status."""
    from pyrt.cli.output import print_object

    found: list[Any] = []
    status = 0
    for n in names:
        try:
            found.append(get(n))
        except Exception as e:
            status = report(e)
    if fmt and fmt != "json":
        for obj in found:
            print_object(obj, fmt)
    else:
        print_object(found, None)
    return status


__all__ = ["CLIError", "EXIT_CANNOT_INVOKE", "EXIT_DAEMON", "EXIT_ERROR", "EXIT_NOT_FOUND",
           "STATE", "client", "daemon_pid", "fail", "host", "inspect_each", "report",
           "start_daemon"]
