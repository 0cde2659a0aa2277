"""On-disk state of pyrt-runc containers: one directory per container under the root.

    <root>/<id>/state.json   the record as JSON on one line; once the container is
                             created, the lines of fast_state_text follow it: the same
                             facts for the C front end (csrc/runc/main.c)
    <root>/<id>/exec.fifo    present between create and start

state.json is written atomically (temp file, rename), but for pyrt-runc's native create
(csrc/runc/create.c), which writes the "creating" record's line and then appends the
created record's line and fast lines to that file: one file, one new inode per container
(each write through a temp file is a new inode, and on a journal-less ext4 every new inode
costs a scan past the recently freed ones). A reader takes the last whole record line
before the fast lines (record_of): while the append is under way that is the creating
record, as before the rename of a second file. Files of older pyrt are read too: a record
alone (fast lines in a fast.state of their own, which is now ignored), or fast lines first
and the record last.

Runtime state is not fsync'ed: it describes processes, which do not outlive a reboot, and
the rename alone keeps every reader from seeing a half-written file.

The status is never trusted from disk alone: it is computed from the process (alive, and
the same process: its start time is recorded to detect pid reuse), the fifo and the
freezer.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from pyrt.errors import InvalidArgument, NotFound

# pyrt-runc create runs this module in a fresh interpreter for every container: no typing,
# contextlib or json package at import (together ~20 ms on a 2-CPU machine); see json_loads.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import Any

# signal numbers the runtime sends, the same on every Linux architecture (the signal
# module would import enum)
SIGKILL = 9
SIGTERM = 15

STATE_FILE = "state.json"
FIFO_FILE = "exec.fifo"
FAST_MAGIC = "pyrt-fast 1"
_FAST_MAGIC_B = FAST_MAGIC.encode()

_ID_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_ID_CHARS = _ID_FIRST | frozenset("_.-")
_MAX_ID_LEN = 1024


# ---- JSON without the json package's import cost ---------------------------------------
#
# `import json` compiles a handful of regular expressions and pulls in re, enum, functools
# and collections. The parsing and the compact encoding are done by CPython's C accelerator
# _json either way; these helpers call it directly and hand every case they do not cover
# (bad input, odd encodings, a missing _json, non-JSON types) to the json package, so the
# results and the errors are exactly json.loads'/json.dumps'.

_WS = " \t\n\r"


class _DecodeContext:
    """What _json.make_scanner reads from a json.JSONDecoder (default settings)."""

    __slots__ = ("memo", "object_hook", "object_pairs_hook", "parse_constant", "parse_float",
                 "parse_int", "strict")  # fmt: skip

    def __init__(self) -> None:
        nan = float("nan")
        inf = float("inf")
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = None
        self.parse_float = float
        self.parse_int = int
        self.parse_constant = {"NaN": nan, "Infinity": inf, "-Infinity": -inf}.__getitem__
        self.memo: dict[str, str] = {}


def _not_serializable(o: object) -> object:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


try:
    import _json as _cjson

    _scan: Callable[[str, int], tuple[Any, int]] | None = _cjson.make_scanner(
        _DecodeContext()  # type: ignore[arg-type]  # duck-typed: the attributes it reads
    )
    _quote: Callable[[str], str] | None = _cjson.encode_basestring_ascii
except (ImportError, AttributeError, TypeError):  # pragma: no cover - CPython always has it
    _scan = _quote = None


class _Fallback(Exception):
    """A value the fast paths leave to the json package."""


def json_loads(data: str | bytes) -> Any:
    """json.loads(data), without importing json unless data is not plain UTF-8 JSON."""
    if _scan is not None:
        try:
            s = data.decode("utf-8", "surrogatepass") if isinstance(data, bytes) else data
            idx = len(s) - len(s.lstrip(_WS))
            obj, end = _scan(s, idx)
            if not s[end:].strip(_WS):
                return obj
        except Exception:  # noqa: BLE001 - json.loads below says what is wrong (the scanner's
            pass  # own errors need json.decoder, which is imported only then)
    import json

    return json.loads(data)


def json_dumps(
    obj: object, *, indent: int | None = None, separators: tuple[str, str] | None = None
) -> str:
    """json.dumps(obj, indent=indent, separators=separators) (other arguments: defaults)."""
    item_sep, key_sep = separators or ((", ", ": ") if indent is None else (",", ": "))
    if _quote is not None:
        try:
            if indent is None:
                enc = _cjson.make_encoder(
                    {}, _not_serializable, _quote, None, key_sep, item_sep, False, False, True
                )
                return "".join(enc(obj, 0))
            out: list[str] = []
            _pretty(obj, out, "\n", " " * indent, item_sep, key_sep)
            return "".join(out)
        except (_Fallback, TypeError, ValueError, RecursionError):
            pass
    import json

    return json.dumps(obj, indent=indent, separators=separators)


def _pretty(o: object, out: list[str], nl: str, step: str, item_sep: str, key_sep: str) -> None:
    """json.dumps(indent=...) for dicts with str keys, lists, str, int, bool and None."""
    assert _quote is not None
    if isinstance(o, str):
        out.append(_quote(o))
    elif o is None:
        out.append("null")
    elif o is True:
        out.append("true")
    elif o is False:
        out.append("false")
    elif type(o) is int:
        out.append(int.__repr__(o))
    elif isinstance(o, dict):
        if not o:
            out.append("{}")
            return
        inner = nl + step
        out.append("{")
        first = True
        for k, v in o.items():
            if type(k) is not str:
                raise _Fallback
            out.append(inner if first else item_sep + inner)
            first = False
            out.append(_quote(k))
            out.append(key_sep)
            _pretty(v, out, inner, step, item_sep, key_sep)
        out.append(nl + "}")
    elif isinstance(o, list | tuple):
        if not o:
            out.append("[]")
            return
        inner = nl + step
        out.append("[")
        for i, v in enumerate(o):
            out.append(inner if i == 0 else item_sep + inner)
            _pretty(v, out, inner, step, item_sep, key_sep)
        out.append(nl + "]")
    else:
        raise _Fallback


class suppress:  # noqa: N801 - stands in for contextlib.suppress
    """contextlib.suppress without importing contextlib."""

    __slots__ = ("_exceptions",)

    def __init__(self, *exceptions: type[BaseException]) -> None:
        self._exceptions = exceptions

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return exc_type is not None and issubclass(exc_type, self._exceptions)


def _id_ok(name: str) -> bool:
    """name matches [A-Za-z0-9][A-Za-z0-9_.-]* (ASCII only)."""
    return bool(name) and name[0] in _ID_FIRST and all(c in _ID_CHARS for c in name)


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
    if not _id_ok(container_id):
        raise InvalidArgument(
            f"invalid container id {container_id!r}: it must match [A-Za-z0-9][A-Za-z0-9_.-]*"
        )


def now_rfc3339() -> str:
    """The current time as RFC 3339 with nanosecond-style fraction, UTC ('Z')."""
    ns = time.time_ns()
    secs, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(secs)) + f"{rest // 1000:06d}000Z"


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


def atomic_write(path: str, data: bytes, mode: int = 0o644, *, durable: bool = False) -> None:
    """Write data to path atomically: temp file in the same directory, rename. With durable
    the data is fsync'ed before the rename: for files that must survive a crash (a bundle's
    config.json), not for runtime state or pid files, which describe live processes."""
    d = os.path.dirname(path) or "."
    tmp = os.path.join(d, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with suppress(OSError):
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

    def locked(self) -> _DirLock:
        """Hold an exclusive flock on the container directory (a context manager)."""
        return _DirLock(self)

    def read(self) -> dict[str, Any]:
        try:
            with open(self.state_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise NotFound(f"container '{self.id}' does not exist") from None
        try:
            data = json_loads(record_of(raw))
        except ValueError as e:
            raise NotFound(f"container '{self.id}': state file is corrupt: {e}") from None
        if not isinstance(data, dict):
            raise NotFound(f"container '{self.id}': state file is corrupt")
        return data

    def write(self, state: dict[str, Any]) -> None:
        """Write state.json: the record's line, then the C front end's (fast_state_text).

        While the record says "creating" there are no fast lines: without them the C front
        end hands every command to Python, which is what "creating 1" would make it do."""
        text = json_dumps(state, separators=(",", ":")) + "\n"  # one line: no raw newline
        if state.get("status") != "creating":
            text += fast_state_text(state)
        atomic_write(self.state_path, text.encode(), 0o600)

    def fifo_exists(self) -> bool:
        return os.path.exists(self.fifo_path)


def record_of(raw: bytes) -> bytes:
    """The current record's JSON in a state.json's bytes (see the module doc): the last
    whole line of the record lines it starts with, or the file when it is a record alone."""
    if raw.startswith(_FAST_MAGIC_B):  # fast lines first, the record last
        return raw[raw.rfind(b"\n") + 1 :]
    record, pos = raw, 0
    while raw.startswith(b"{", pos):
        nl = raw.find(b"\n", pos)
        if nl < 0:  # a record alone; or an appended one not yet whole: the one before
            return raw if pos == 0 else record
        record, pos = raw[pos:nl], nl + 1
    return record


class _DirLock:
    """ContainerDir.locked(): an exclusive flock on the directory while the block runs."""

    __slots__ = ("_cdir", "_fd")

    def __init__(self, cdir: ContainerDir) -> None:
        self._cdir = cdir
        self._fd = -1

    def __enter__(self) -> None:
        try:
            fd = os.open(self._cdir.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"container '{self._cdir.id}' does not exist") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        fd, self._fd = self._fd, -1
        try:
            # unlock explicitly: a child spawned meanwhile shares this open file
            # description until it execs, and closing our fd alone would not release it
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


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
        if _id_ok(n) and os.path.isdir(os.path.join(root, n)):
            out.append(n)
    return sorted(out)


# ---- the C front end's state file ------------------------------------------------------


def oci_state(record: dict[str, Any], status: str) -> dict[str, Any]:
    """The OCI state of a record (as Runtime.state returns it) for a given live status."""
    st: dict[str, Any] = {
        "ociVersion": record.get("ociVersion", "1.2.0"),
        "id": record["id"],
        "pid": int(record.get("pid") or 0) if status != "stopped" else 0,
        "status": status,
        "bundle": record.get("bundle", ""),
        "rootfs": record.get("rootfs", ""),
        "created": record.get("created", ""),
        "owner": record.get("owner", ""),
    }
    ann = record.get("annotations")
    if ann:
        st["annotations"] = ann
    return st


_PID_MARK = '"pid": 0,\n  "status": "\\u0000"'


def fast_state_text(record: dict[str, Any]) -> str:
    """The lines after state.json's record: what csrc/runc/main.c needs to answer
    start/state/kill/delete alone.

    csrc/runc/create.c writes the same text (and the same state.json) for a container it
    creates natively; tests/integration/test_runc_fastpath.py checks that they agree.

    pyrt-fast 1
    usable 0|1           0: the C front end hands every command to Python
    creating 0|1         record status "creating"
    pid <n>
    start <n>|-          start time of pid (/proc/<pid>/stat field 22), "-" unknown
    poststart 0|1        poststart hooks present (start is left to Python)
    poststop 0|1         poststop hooks present (delete is left to Python)
    freezer none|v1 <file>|v2 <dir>
    cgroups <n>          then n lines: the cgroup directories delete removes, in order
    head <len>           then <len> bytes: the state JSON (indent 2) before the pid
    tail <len>           then <len> bytes: the state JSON after the status value
    """
    usable = True
    poststart = poststop = False
    spec = record.get("config") or {}
    try:
        from pyrt.runtime.hooks import hooks_of

        poststart = bool(hooks_of(spec, "poststart"))
    except Exception:
        usable = False  # Python reports the problem, the C side must not guess
    try:
        poststop = bool(hooks_of(spec, "poststop"))
    except Exception:
        poststop = False  # Runtime.delete ignores malformed poststop hooks too
    freezer = "none"
    dirs: list[str] = []
    cg = record.get("cgroup")
    if cg:
        try:
            from pyrt.runtime import cgroups

            mgr = cgroups.from_state(cg)
        except Exception:
            mgr = None  # Runtime._cgroup fails the same way: no freezer, no destroy
        if isinstance(mgr, cgroups.V1Manager):
            d = mgr.paths.get("freezer")
            if d is None:
                usable = False  # freezer_state raises: leave that to Python
            else:
                freezer = "v1 " + os.path.join(d, "freezer.state")
            dirs = mgr._dirs()
        elif isinstance(mgr, cgroups.V2Manager):
            freezer = "v2 " + mgr.path
            dirs = [mgr.path]
        elif mgr is not None:
            usable = False  # the fake manager: in-memory, Python only
    pid = record.get("pid")
    start = record.get("pid_start")
    head = tail = ""
    try:
        if not isinstance(pid, int) or not (start is None or isinstance(start, int)):
            raise ValueError("pid")
        text = json_dumps(oci_state({**record, "pid": 0}, "\0"), indent=2)
        head, mark, tail = text.partition(_PID_MARK)
        if not mark:
            raise ValueError("layout")
        head += '"pid": '
    except (ValueError, TypeError, KeyError):
        usable = False
        head = tail = ""
    if any("\n" in d for d in dirs):
        usable = False
    lines = [
        FAST_MAGIC,
        f"usable {int(usable)}",
        f"creating {int(record.get('status') == 'creating')}",
        f"pid {pid if isinstance(pid, int) else 0}",
        f"start {start if isinstance(start, int) else '-'}",
        f"poststart {int(poststart)}",
        f"poststop {int(poststop)}",
        f"freezer {freezer}",
        f"cgroups {len(dirs) if usable else 0}",
        *(dirs if usable else []),
    ]
    hb, tb = head.encode(), tail.encode()
    return "\n".join(lines) + f"\nhead {len(hb)}\n{head}\ntail {len(tb)}\n{tail}\n"
