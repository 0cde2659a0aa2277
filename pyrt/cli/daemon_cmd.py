"""pyrt daemon start|stop|status: the pyrtd serving the CLI's host (-H / $PYRT_HOST).

The daemon's pid is read from its socket (SO_PEERCRED), so no pid file is needed."""

from __future__ import annotations

import os
import signal
import sys
import time

from pyrt.cli import client, daemon_pid, fail, host, socket_path, start_daemon


def _path() -> str:
    path = socket_path(host())
    if path is None:
        fail(f"daemon commands manage a local pyrtd: {host()} is not a unix:// host", 1)
    return path


def start_command(flags: list[str]) -> None:
    path = _path()
    pid = daemon_pid(path)
    if pid is not None:
        fail(f"pyrtd is already running on {host()} (pid {pid})", 1)
    pid = start_daemon(host(), flags)
    sys.stdout.write(f"pyrt: started pyrtd on {host()} (pid {pid})\n")


def stop_command(timeout: float) -> None:
    path = _path()
    pid = daemon_pid(path)
    if pid is None:
        fail(f"pyrtd is not running on {host()}", 1)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        if daemon_pid(path) is None:
            break
        time.sleep(0.05)
    else:
        fail(f"pyrtd (pid {pid}) did not stop within {timeout:.0f}s", 1)
    sys.stdout.write(f"pyrt: stopped pyrtd on {host()} (pid {pid})\n")


def status_command() -> int:
    path = _path()
    pid = daemon_pid(path)
    if pid is None:
        sys.stdout.write(f"pyrtd is not running on {host()}\n")
        return 3  # LSB: program is not running
    v = client(autostart=False).version()
    sys.stdout.write(f"pyrtd is running on {host()} (pid {pid}, version "
                     f"{v.get('Version', '?')}, API {v.get('ApiVersion', '?')})\n")
    return 0


__all__ = ["start_command", "status_command", "stop_command"]
