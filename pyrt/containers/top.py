"""`docker top`: the host's `ps` output, cut down to the container's processes.

    top(handle, "-ef")  # {"Titles": ["UID", "PID", ...], "Processes": [["root", "4242", ...]]}

`ps` runs on the host with the given arguments (split like a shell would); the column
titled PID is matched against the pids in the container's cgroup (Runtime.ps). The last
column keeps its spaces (a command line), the others are split on whitespace. ps failing
on the arguments, or an output without a PID column, is InvalidArgument; a container that
is not running is Conflict, as docker has it.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from pyrt.errors import Conflict, InvalidArgument, SystemError_

if TYPE_CHECKING:
    from pyrt.containers.handle import ContainerHandle

PS_TIMEOUT = 30.0


def parse_ps(output: str, pids: set[int]) -> dict[str, Any]:
    """ps output -> docker's ContainerTopResponse, keeping the rows whose PID is in pids."""
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        raise InvalidArgument("ps printed nothing: no header to find the PID column in")
    titles = lines[0].split()
    try:
        pid_col = titles.index("PID")
    except ValueError:
        raise InvalidArgument(f"couldn't find PID field in ps output (titles: "
                              f"{' '.join(titles)})") from None
    processes: list[list[str]] = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) <= pid_col:
            continue
        try:
            pid = int(fields[pid_col])
        except ValueError:
            raise InvalidArgument(f"unexpected pid {fields[pid_col]!r} in ps output line "
                                  f"{line!r}") from None
        if pid not in pids:
            continue
        n = len(titles)
        row = fields[: n - 1] + [" ".join(fields[n - 1:])] if len(fields) >= n else fields
        processes.append(row)
    return {"Titles": titles, "Processes": processes}


def top(handle: ContainerHandle, ps_args: str = "-ef") -> dict[str, Any]:
    status = handle.status()
    if status not in ("running", "paused", "restarting"):
        raise Conflict(f"container {handle.id} is not running")
    try:
        args = shlex.split(ps_args or "-ef")
    except ValueError as e:
        raise InvalidArgument(f"ps_args {ps_args!r}: {e}") from None
    ps = shutil.which("ps")
    if ps is None:
        raise SystemError_("top: the host has no ps command")
    pids = set(handle.runtime.ps(handle.runtime_id))
    try:
        proc = subprocess.run([ps, *args], capture_output=True, text=True,
                              timeout=PS_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SystemError_(f"top: ps {ps_args} did not finish within {PS_TIMEOUT:.0f}s") from None
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise InvalidArgument(f"ps_args {ps_args!r}: ps failed (exit status "
                              f"{proc.returncode}): {msg[0] if msg else 'no output'}")
    return parse_ps(proc.stdout, pids)


__all__ = ["parse_ps", "top"]
