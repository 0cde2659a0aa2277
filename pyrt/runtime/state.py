"""On-disk state of pyrt-runc containers: one directory per container under the root.

    <root>/<id>/state.json   written atomically (temp file, fsync, rename)
    <root>/<id>/exec.fifo    present between create and start

The status is never trusted from disk alone: it is computed from the process (alive, and
the same process: its start time is recorded to detect pid reuse), the fifo and the
freezer.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from pyrt.errors import InvalidArgument, NotFound

STATE_FILE = "state.json"
FIFO_FILE = "exec.fifo"

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_MAX_ID_LEN = 1024


def validate_id(container_id: str) -> None:
    """Refuse a container id that is not [A-Za-z0-9][A-Za-z0-9_.-]* (so no '/', '.', '..')."""
    if not container_id:
        raise InvalidArgument("invalid container id: it must not be empty")
    if container_id in (".", ".."):
        raise InvalidArgument(f"invalid container id {container_id!r}: '.' and '..' are reserved")
    if "/" in container_id:
        raise InvalidArgument(f"invalid container id {container_id!r}: it must not contain '/'")
    if len(container_id) > _MAX_ID_LEN:
        raise InvalidArgument(f"invalid container id: longer than {_MAX_ID_LEN} characters")
    if not _ID_RE.match(container_id):
        raise InvalidArgument(
            f"invalid container id {container_id!r}: it must match [A-Za-z0-9][A-Za-z0-9_.-]*"
        )


def now_rfc3339() -> str:
    """The current time as RFC 3339 with nanosecond-style fraction, UTC ('Z')."""
    t = datetime.now(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def _proc_stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (index 0 is the state), or None if no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError as e:
        if e.errno in (errno.ESRCH, errno.ENOENT):
            return None
        raise
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    end = data.rfind(")")
    return data[end + 2 :].split()


def pid_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), or None if pid is gone."""
    fields = _proc_stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def process_alive(pid: int, start_time: int | None) -> bool:
    """True if pid exists, is not a zombie, and (if given) started at start_time."""
    if pid <= 0:
        return False
    fields = _proc_stat_fields(pid)
    if fields is None or len(fields) < 20:
        return False
    if fields[0] in ("Z", "X", "x"):
        return False
    return start_time is None or int(fields[19]) == start_time


def atomic_write(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write data to path atomically: temp file in the same directory, fsync, rename."""
    d = os.path.dirname(path) or "."
    tmp = os.path.join(d, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)


class ContainerDir:
    """The state directory of one container."""

    def __init__(self, root: str, container_id: str) -> None:
        validate_id(container_id)
        self.id = container_id
        self.root = root
        self.path = os.path.join(root, container_id)

    @property
    def state_path(self) -> str:
        return os.path.join(self.path, STATE_FILE)

    @property
    def fifo_path(self) -> str:
        return os.path.join(self.path, FIFO_FILE)

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def make(self) -> bool:
        """Create the directory; False if it already exists (nothing is touched then)."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        try:
            os.mkdir(self.path, 0o711)
        except FileExistsError:
            return False
        return True

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive flock on the container directory."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"container '{self.id}' does not exist") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                # unlock explicitly: a child spawned meanwhile shares this open file
                # description until it execs, and closing our fd alone would not release it
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def read(self) -> dict[str, Any]:
        try:
            with open(self.state_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise NotFound(f"container '{self.id}' does not exist") from None
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise NotFound(f"container '{self.id}': state file is corrupt: {e}") from None
        if not isinstance(data, dict):
            raise NotFound(f"container '{self.id}': state file is corrupt")
        return data

    def write(self, state: dict[str, Any]) -> None:
        atomic_write(self.state_path, json.dumps(state, separators=(",", ":")).encode(), 0o600)

    def fifo_exists(self) -> bool:
        return os.path.exists(self.fifo_path)


def compute_status(
    cdir: ContainerDir,
    record: dict[str, Any],
    freezer_state: Callable[[], str] | None = None,
) -> str:
    """The live status: creating, created, running, paused or stopped."""
    if record.get("status") == "creating":
        return "creating"
    pid = int(record.get("pid") or 0)
    start = record.get("pid_start")
    if not process_alive(pid, int(start) if start is not None else None):
        return "stopped"
    if cdir.fifo_exists():
        return "created"
    if freezer_state is not None:
        try:
            if freezer_state() == "FROZEN":
                return "paused"
        except OSError:
            pass
    return "running"


def list_ids(root: str) -> list[str]:
    """The ids of the containers under root (directories with a valid id), sorted."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        if _ID_RE.match(n) and os.path.isdir(os.path.join(root, n)):
            out.append(n)
    return sorted(out)
