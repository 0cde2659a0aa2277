"""cgroups for the runtime: v1, v2 and hybrid hosts.

The layout is read from /proc/self/mountinfo (never assumed):

- "v2": only the unified hierarchy (cgroup2) is mounted, controllers live there;
- "v1": one cgroup (v1) mount per controller or controller group;
- "hybrid": v1 controllers plus a cgroup2 mount (usually /sys/fs/cgroup/unified) which
  holds at most a few controllers (here: hugetlb).

`open_cgroup()` turns the OCI spec's linux.cgroupsPath into a manager for this host:
`V1Manager` (which also covers hybrid: v1 controllers, plus the unified directory for
whatever only v2 offers) or `V2Manager`. `FakeManager` is the in-memory stand-in for unit
tests. Every manager follows the `CgroupManager` protocol and can be saved with
`to_state()` and reopened by a later process with `CgroupManager.from_state()`.

`apply()` takes linux.resources exactly as the OCI runtime spec names it, validates it
(InvalidArgument names the field), turns it into (file, value) writes and hands the whole
set to the C core in one call (pyrt._cc.cgroup_write_many). On v2 the device rules
become an eBPF program (pyrt._cc.cgroup_device_filter); on v1 and hybrid the v1 devices
controller is used.
"""

from __future__ import annotations

import os
import posixpath
import time

# the ABCs themselves, without the collections package (collections.abc re-exports these)
from _collections_abc import Mapping

from pyrt import _core
from pyrt.errors import FailedPrecondition, InvalidArgument, SystemError_
from pyrt.runtime.state import suppress

# pyrt-runc create imports this module in a fresh interpreter for every container, so it
# avoids typing, dataclasses, re, signal and contextlib at import time: plain classes with
# __slots__, string methods instead of regular expressions, signal numbers as ints.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, ClassVar, Literal
    from typing import Protocol as _Protocol
    from typing import runtime_checkable as _runtime_checkable

    LayoutKind = Literal["v1", "v2", "hybrid"]
    FreezerState = Literal["FROZEN", "THAWED"]
else:

    class _ProtocolMeta(type):
        """isinstance(x, CgroupManager) without typing: x has every method of the protocol."""

        def __instancecheck__(cls, obj: object) -> bool:
            return all(hasattr(obj, m) for m in cls.__dict__.get("_members", ()))

    class _Protocol(metaclass=_ProtocolMeta):
        pass

    def _runtime_checkable(cls: type) -> type:
        cls._members = tuple(k for k in vars(cls) if not k.startswith("_"))
        return cls


SIGKILL = 9  # the same number on every Linux architecture (signal.SIGKILL)


class _CoreCgroup(_Protocol):
    """The cgroup part of pyrt._core (csrc/bind/bind_cgroup.cpp), typed here so this
    module checks whether or not _core.pyi lists these functions yet."""

    def cgroup_write(self, path: str, value: str) -> None: ...
    def cgroup_write_many(self, writes: list[tuple[str, str]]) -> None: ...
    def cgroup_mkdir(self, path: str) -> None: ...
    def cgroup_rmdir(self, path: str, retries: int = 50, delay_ms: int = 20) -> None: ...
    def cgroup_device_filter(
        self, cgroup_dir: str, rules: list[tuple[str, int, int, str, bool]]
    ) -> None: ...
    def cgroup_device_filter_count(self, cgroup_dir: str) -> int: ...


_cc: _CoreCgroup = _core

Stats = dict[str, dict[str, int]]

# v1 subsystems pyrt knows (a mount's super options also name "rw", "relatime"...)
V1_SUBSYSTEMS = frozenset(
    {
        "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory",
        "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma",
    }
)  # fmt: skip

_UNLIMITED_V1 = 0x7FFFFFFFFFFFF000  # v1 reports "no limit" as a page-rounded LONG_MAX
_FREEZE_TIMEOUT = 5.0
_KILL_TIMEOUT = 5.0


# ---- value classes -------------------------------------------------------------------


class _Value:
    """Base of the small immutable records below: equality, hash and repr over the fields
    (__slots__), and no assignment after __init__ (as a frozen dataclass)."""

    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, _Value)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({inner})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def _init(self, **values: object) -> None:
        for k, v in values.items():
            object.__setattr__(self, k, v)


# ---- layout --------------------------------------------------------------------------


class Hierarchy(_Value):
    """One mounted cgroup hierarchy."""

    __slots__ = ("mountpoint", "root", "controllers")
    mountpoint: str
    root: str  # the mount's root inside the hierarchy ("/" unless bind-mounted)
    controllers: frozenset[str]  # v1: subsystems and "name=..."; v2: cgroup.controllers

    def __init__(self, mountpoint: str, root: str, controllers: frozenset[str]) -> None:
        self._init(mountpoint=mountpoint, root=root, controllers=controllers)


class CgroupLayout(_Value):
    __slots__ = ("kind", "v1", "unified")
    kind: LayoutKind
    v1: dict[str, Hierarchy]  # controller -> hierarchy
    unified: Hierarchy | None

    def __init__(
        self, kind: LayoutKind, v1: dict[str, Hierarchy] | None = None,
        unified: Hierarchy | None = None,
    ) -> None:  # fmt: skip
        self._init(kind=kind, v1={} if v1 is None else v1, unified=unified)


class MountEntry(_Value):
    __slots__ = ("root", "mountpoint", "fstype", "super_options")
    root: str
    mountpoint: str
    fstype: str
    super_options: tuple[str, ...]

    def __init__(
        self, root: str, mountpoint: str, fstype: str, super_options: tuple[str, ...]
    ) -> None:
        self._init(root=root, mountpoint=mountpoint, fstype=fstype, super_options=super_options)


_OCTAL = frozenset("01234567")


def _unescape(s: str) -> str:
    """Undo mountinfo's octal escapes (\\040 for a space...)."""
    if "\\" not in s:
        return s
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        digits = s[i + 1 : i + 4]
        if c == "\\" and len(digits) == 3 and _OCTAL.issuperset(digits):
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """The cgroup and cgroup2 mounts of a /proc/<pid>/mountinfo text."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            sep = fields.index("-", 6)
            root, mountpoint = fields[3], fields[4]
            fstype = fields[sep + 1]
            opts = fields[sep + 3] if len(fields) > sep + 3 else ""
        except (ValueError, IndexError):
            raise InvalidArgument(f"mountinfo line {lineno}: malformed: {line!r}") from None
        if fstype in ("cgroup", "cgroup2"):
            out.append(
                MountEntry(_unescape(root), _unescape(mountpoint), fstype, tuple(opts.split(",")))
            )
    return out


def layout_from_mountinfo(
    text: str, read_controllers: Callable[[str], frozenset[str]]
) -> CgroupLayout:
    """Classify a host from its mountinfo; read_controllers(mountpoint) lists a cgroup2
    mount's cgroup.controllers."""
    v1: dict[str, Hierarchy] = {}
    unified: Hierarchy | None = None
    for m in parse_mountinfo(text):
        if m.fstype == "cgroup2":
            if unified is None:
                unified = Hierarchy(m.mountpoint, m.root, read_controllers(m.mountpoint))
            continue
        ctrls = frozenset(o for o in m.super_options if o in V1_SUBSYSTEMS or o.startswith("name="))
        if not ctrls:
            continue
        h = Hierarchy(m.mountpoint, m.root, ctrls)
        for c in ctrls:
            v1.setdefault(c, h)  # the first mount of a hierarchy wins over bind mounts
    has_v1 = any(not c.startswith("name=") for c in v1)
    if has_v1:
        return CgroupLayout("hybrid" if unified is not None else "v1", v1, unified)
    if unified is not None:
        return CgroupLayout("v2", {}, unified)
    raise FailedPrecondition("no cgroup hierarchy is mounted (mountinfo lists none)")


def _read_controllers(path: str) -> frozenset[str]:
    try:
        with open(path) as f:
            return frozenset(f.read().split())
    except OSError:
        return frozenset()


# the host's layout and the mountinfo text it was read from: reused while that is unchanged
_host_layout: tuple[str, CgroupLayout] | None = None


def detect_layout(root: str = "/") -> CgroupLayout:
    """The cgroup layout of this host; root prefixes every path read (for tests)."""
    global _host_layout
    try:
        with open(os.path.join(root, "proc/self/mountinfo")) as f:
            text = f.read()
    except OSError as e:
        raise SystemError_(f"read mountinfo: {e}", e.errno) from None
    cached = _host_layout
    if root == "/" and cached is not None and cached[0] == text:
        return cached[1]
    layout = layout_from_mountinfo(
        text,
        lambda mp: _read_controllers(os.path.join(root, mp.lstrip("/"), "cgroup.controllers")),
    )
    if root == "/":
        _host_layout = (text, layout)
    return layout


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup as {controller: path}; the v2 entry has the key ""."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrls, path = parts
        if ctrls == "":
            out[""] = path
        for c in ctrls.split(","):
            if c:
                out[c] = path
    return out


# ---- cgroupsPath ---------------------------------------------------------------------


def parse_cgroups_path(cgroups_path: str | None, container_id: str) -> tuple[bool, str]:
    """(absolute, relative path without leading "/") for linux.cgroupsPath."""
    if cgroups_path is None or cgroups_path == "":
        if not container_id or "/" in container_id or container_id in (".", ".."):
            raise InvalidArgument(f"container id {container_id!r}: not usable as a cgroup name")
        return True, f"pyrt/{container_id}"
    if not isinstance(cgroups_path, str):
        raise InvalidArgument("linux.cgroupsPath: must be a string")
    if ":" in cgroups_path:
        raise InvalidArgument(
            f"linux.cgroupsPath {cgroups_path!r}: the systemd form 'slice:prefix:name' needs "
            "--systemd-cgroup, which pyrt does not support"
        )
    if "\0" in cgroups_path or "\n" in cgroups_path:
        raise InvalidArgument("linux.cgroupsPath: contains a NUL or newline")
    parts = [p for p in cgroups_path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"linux.cgroupsPath {cgroups_path!r}: must not contain '..'")
    if not parts:
        raise InvalidArgument(
            f"linux.cgroupsPath {cgroups_path!r}: must name a cgroup below the root"
        )
    return cgroups_path.startswith("/"), "/".join(parts)


def _fs_path(h: Hierarchy, own: str, absolute: bool, rel: str) -> str:
    cg = "/" + rel if absolute else posixpath.join(own or "/", rel)
    cg = posixpath.normpath(cg)
    if h.root != "/" and (cg == h.root or cg.startswith(h.root.rstrip("/") + "/")):
        cg = cg[len(h.root.rstrip("/")) :] or "/"
    return posixpath.join(h.mountpoint, cg.lstrip("/")).rstrip("/")


def open_cgroup(
    cgroups_path: str | None,
    container_id: str,
    layout: CgroupLayout | None = None,
    proc_root: str = "/",
) -> CgroupManager:
    """The manager for linux.cgroupsPath: "/a/b" from the hierarchy root, "a/b" below the
    caller's own cgroup, None: "/pyrt/<container_id>". Nothing is created yet."""
    absolute, rel = parse_cgroups_path(cgroups_path, container_id)
    if layout is None:
        layout = detect_layout(proc_root)
    own: dict[str, str] = {}
    if not absolute:
        try:
            with open(os.path.join(proc_root, "proc/self/cgroup")) as f:
                own = parse_proc_cgroup(f.read())
        except OSError as e:
            raise SystemError_(f"read /proc/self/cgroup: {e}", e.errno) from None
    if layout.kind == "v2":
        assert layout.unified is not None
        return V2Manager(
            _fs_path(layout.unified, own.get("", "/"), absolute, rel), layout.unified.mountpoint
        )
    paths = {c: _fs_path(h, own.get(c, "/"), absolute, rel) for c, h in layout.v1.items()}
    unified = None
    unified_mount = None
    if layout.unified is not None:
        unified = _fs_path(layout.unified, own.get("", "/"), absolute, rel)
        unified_mount = layout.unified.mountpoint
    return V1Manager(paths, unified, unified_mount)


# ---- resources: validation -----------------------------------------------------------


class DeviceRule(_Value):
    __slots__ = ("allow", "type", "major", "minor", "access")
    allow: bool
    type: str  # a, b, c
    major: int  # -1: any
    minor: int
    access: str

    def __init__(
        self, allow: bool, type: str = "a", major: int = -1, minor: int = -1,
        access: str = "rwm",
    ) -> None:  # fmt: skip
        self._init(allow=allow, type=type, major=major, minor=minor, access=access)

    def v1_line(self) -> str:
        if self.type == "a":
            return "a"
        maj = "*" if self.major < 0 else str(self.major)
        mnr = "*" if self.minor < 0 else str(self.minor)
        return f"{self.type} {maj}:{mnr} {self.access}"

    def as_tuple(self) -> tuple[str, int, int, str, bool]:
        return (self.type, self.major, self.minor, self.access, self.allow)


# What the OCI spec says every container gets (/dev/null, zero, full, random, urandom,
# tty, ptmx, and the pty slaves); the runtime appends these after the spec's rules.
DEFAULT_DEVICE_RULES: tuple[DeviceRule, ...] = (
    DeviceRule(True, "c", 1, 3, "rwm"),
    DeviceRule(True, "c", 1, 5, "rwm"),
    DeviceRule(True, "c", 1, 7, "rwm"),
    DeviceRule(True, "c", 1, 8, "rwm"),
    DeviceRule(True, "c", 1, 9, "rwm"),
    DeviceRule(True, "c", 5, 0, "rwm"),
    DeviceRule(True, "c", 5, 2, "rwm"),
    DeviceRule(True, "c", 136, -1, "rwm"),
)


class Resources:
    """linux.resources, validated. None: leave the setting alone."""

    __slots__ = (
        "memory_limit", "memory_reservation", "memory_swap", "memory_swappiness",
        "disable_oom_killer", "cpu_shares", "cpu_quota", "cpu_period", "cpu_burst",
        "cpu_rt_runtime", "cpu_rt_period", "cpu_idle", "cpus", "mems", "pids_limit",
        "devices", "hugepages", "unified",
    )  # fmt: skip

    def __init__(
        self,
        memory_limit: int | None = None,
        memory_reservation: int | None = None,
        memory_swap: int | None = None,
        memory_swappiness: int | None = None,
        disable_oom_killer: bool | None = None,
        cpu_shares: int | None = None,
        cpu_quota: int | None = None,
        cpu_period: int | None = None,
        cpu_burst: int | None = None,
        cpu_rt_runtime: int | None = None,
        cpu_rt_period: int | None = None,
        cpu_idle: int | None = None,
        cpus: str | None = None,
        mems: str | None = None,
        pids_limit: int | None = None,
        devices: list[DeviceRule] | None = None,
        hugepages: list[tuple[str, int]] | None = None,
        unified: dict[str, str] | None = None,
    ) -> None:
        self.memory_limit = memory_limit
        self.memory_reservation = memory_reservation
        self.memory_swap = memory_swap
        self.memory_swappiness = memory_swappiness
        self.disable_oom_killer = disable_oom_killer
        self.cpu_shares = cpu_shares
        self.cpu_quota = cpu_quota
        self.cpu_period = cpu_period
        self.cpu_burst = cpu_burst
        self.cpu_rt_runtime = cpu_rt_runtime
        self.cpu_rt_period = cpu_rt_period
        self.cpu_idle = cpu_idle
        self.cpus = cpus
        self.mems = mems
        self.pids_limit = pids_limit
        self.devices = devices
        self.hugepages: list[tuple[str, int]] = [] if hugepages is None else hugepages
        self.unified: dict[str, str] = {} if unified is None else unified

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"Resources({inner})"


_MEMORY_KEYS = {"limit", "reservation", "swap", "swappiness", "disableOOMKiller"}
_MEMORY_IGNORED = {"kernel", "kernelTCP", "useHierarchy", "checkBeforeUpdate"}
_CPU_KEYS = {"shares", "quota", "period", "burst", "realtimeRuntime", "realtimePeriod",
             "cpus", "mems", "idle"}  # fmt: skip
_UNSUPPORTED = {"blockIO", "network", "rdma"}
_TOP_KEYS = {"memory", "cpu", "pids", "devices", "hugepageLimits", "unified"} | _UNSUPPORTED
# The three checks below are what the regular expressions ^\d+(-\d+)?(,\d+(-\d+)?)*$,
# ^\d+[KMG]B$ and ^[a-z_]+\.[A-Za-z0-9_.]+$ accept (re's \d is str.isdecimal, and its $
# also matches before a final newline), written with string methods.
_KEY_HEAD = frozenset("abcdefghijklmnopqrstuvwxyz_")
_KEY_TAIL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.")


def _before_final_newline(s: str) -> str:
    return s[:-1] if s.endswith("\n") else s


def _is_cpu_list(s: str) -> bool:
    """'0-3,5' and the like."""
    for part in _before_final_newline(s).split(","):
        lo, dash, hi = part.partition("-")
        if not (lo.isdecimal() and (not dash or hi.isdecimal())):
            return False
    return True


def _is_page_size(s: str) -> bool:
    """'2MB', '1GB', '64KB'..."""
    s = _before_final_newline(s)
    return len(s) >= 3 and s[-1] == "B" and s[-2] in "KMG" and s[:-2].isdecimal()


def _is_unified_key(s: str) -> bool:
    """'memory.max', 'io.bfq.weight'...: controller, dot, file name."""
    head, dot, tail = _before_final_newline(s).partition(".")
    return bool(head and dot and tail) and _KEY_HEAD.issuperset(head) and _KEY_TAIL.issuperset(tail)


def _int(
    d: Mapping[str, Any], key: str, where: str, lo: int | None = None, hi: int | None = None,
    *, also: Iterable[int] = (), what: str = "",
) -> int | None:  # fmt: skip
    v = d.get(key)
    if v is None:
        return None
    name = f"{where}.{key}"
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidArgument(f"{name}: must be an integer, not {v!r}")
    if v in also:
        return v
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InvalidArgument(f"{name}: {what or f'must be between {lo} and {hi}'}, not {v}")
    return v


def _dict(d: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    v = d.get(key)
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise InvalidArgument(f"{where}.{key}: must be an object")
    return v


def _check_keys(d: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for k in d:
        if k not in allowed:
            raise InvalidArgument(f"{where}.{k}: unknown field")


def validate_resources(resources: Mapping[str, Any]) -> Resources:
    """Check linux.resources; InvalidArgument names the field and the cause."""
    w = "linux.resources"
    if not isinstance(resources, Mapping):
        raise InvalidArgument(f"{w}: must be an object")
    _check_keys(resources, _TOP_KEYS, w)
    r = Resources()
    for k in sorted(_UNSUPPORTED):
        v = resources.get(k)
        if v and (not isinstance(v, Mapping) or any(x is not None for x in v.values())):
            raise InvalidArgument(f"{w}.{k}: not supported by pyrt")

    mem = _dict(resources, "memory", w)
    wm = f"{w}.memory"
    _check_keys(mem, _MEMORY_KEYS | _MEMORY_IGNORED, wm)
    r.memory_limit = _int(mem, "limit", wm, 1, also=(-1,), what="must be positive or -1")
    r.memory_reservation = _int(
        mem, "reservation", wm, 0, also=(-1,), what="must be non-negative or -1"
    )
    r.memory_swap = _int(mem, "swap", wm, 1, also=(-1,), what="must be positive or -1")
    if (
        r.memory_swap is not None and r.memory_swap != -1
        and r.memory_limit is not None and r.memory_limit != -1
        and r.memory_swap < r.memory_limit
    ):  # fmt: skip
        raise InvalidArgument(
            f"{wm}.swap: must be at least memory.limit ({r.memory_limit}): it counts memory "
            f"plus swap, not {r.memory_swap}"
        )
    r.memory_swappiness = _int(mem, "swappiness", wm, 0, 100)
    oom = mem.get("disableOOMKiller")
    if oom is not None and not isinstance(oom, bool):
        raise InvalidArgument(f"{wm}.disableOOMKiller: must be a boolean")
    r.disable_oom_killer = oom

    cpu = _dict(resources, "cpu", w)
    wc = f"{w}.cpu"
    _check_keys(cpu, _CPU_KEYS, wc)
    r.cpu_shares = _int(cpu, "shares", wc, 2, 262144)
    r.cpu_quota = _int(cpu, "quota", wc, 1000, also=(-1,), what="must be -1 or at least 1000")
    r.cpu_period = _int(cpu, "period", wc, 1000, 1000000)
    r.cpu_burst = _int(cpu, "burst", wc, 0, what="must be non-negative")
    r.cpu_rt_runtime = _int(cpu, "realtimeRuntime", wc, 0, also=(-1,), what="must be >= -1")
    r.cpu_rt_period = _int(cpu, "realtimePeriod", wc, 1, what="must be positive")
    r.cpu_idle = _int(cpu, "idle", wc, 0, 1)
    for key in ("cpus", "mems"):
        v = cpu.get(key)
        if v is None or v == "":
            continue
        if not isinstance(v, str) or not _is_cpu_list(v):
            raise InvalidArgument(f"{wc}.{key}: must be a list like '0-3,5', not {v!r}")
        setattr(r, key, v)

    pids = _dict(resources, "pids", w)
    _check_keys(pids, {"limit"}, f"{w}.pids")
    r.pids_limit = _int(pids, "limit", f"{w}.pids", 0, also=(-1,), what="must be >= -1")

    devs = resources.get("devices")
    if devs is not None:
        if not isinstance(devs, list):
            raise InvalidArgument(f"{w}.devices: must be a list")
        r.devices = [_device_rule(d, f"{w}.devices[{i}]") for i, d in enumerate(devs)]

    huge = resources.get("hugepageLimits")
    if huge is not None:
        if not isinstance(huge, list):
            raise InvalidArgument(f"{w}.hugepageLimits: must be a list")
        for i, h in enumerate(huge):
            wh = f"{w}.hugepageLimits[{i}]"
            if not isinstance(h, Mapping):
                raise InvalidArgument(f"{wh}: must be an object")
            size = h.get("pageSize")
            if not isinstance(size, str) or not _is_page_size(size):
                raise InvalidArgument(f"{wh}.pageSize: must look like '2MB', not {size!r}")
            limit = _int(h, "limit", wh, 0, what="must be non-negative")
            if limit is None:
                raise InvalidArgument(f"{wh}.limit: missing")
            r.hugepages.append((size, limit))

    uni = resources.get("unified")
    if uni is not None:
        if not isinstance(uni, Mapping):
            raise InvalidArgument(f"{w}.unified: must be an object")
        for k, v in uni.items():
            if not isinstance(k, str) or not _is_unified_key(k) or k.startswith("cgroup."):
                raise InvalidArgument(f"{w}.unified.{k}: not a controller file name")
            if not isinstance(v, str):
                raise InvalidArgument(f"{w}.unified.{k}: value must be a string")
            r.unified[k] = v
    return r


def _device_rule(d: Any, where: str) -> DeviceRule:
    if not isinstance(d, Mapping):
        raise InvalidArgument(f"{where}: must be an object")
    _check_keys(d, {"allow", "type", "major", "minor", "access"}, where)
    allow = d.get("allow")
    if not isinstance(allow, bool):
        raise InvalidArgument(f"{where}.allow: must be a boolean")
    typ = d.get("type") or "a"
    if typ not in ("a", "b", "c"):
        raise InvalidArgument(f"{where}.type: must be 'a', 'b' or 'c', not {typ!r}")
    major = _int(d, "major", where, -1, 0xFFF) if d.get("major") is not None else -1
    minor = _int(d, "minor", where, -1, 0xFFFFF) if d.get("minor") is not None else -1
    access = d.get("access") or "rwm"
    if not isinstance(access, str) or not access or set(access) - set("rwm"):
        raise InvalidArgument(f"{where}.access: must be made of r, w, m, not {access!r}")
    access = "".join(c for c in "rwm" if c in access)
    assert major is not None and minor is not None
    return DeviceRule(allow, typ, major, minor, access)


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) to cgroup v2 cpu.weight (1..10000), as runc documents."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


# ---- the protocol --------------------------------------------------------------------


@_runtime_checkable
class CgroupManager(_Protocol):
    """One container's cgroup, in every hierarchy the host has."""

    def create(self) -> None: ...
    def procs_files(self) -> list[str]: ...
    def apply(self, resources: Mapping[str, Any]) -> None: ...
    def freeze(self) -> None: ...
    def thaw(self) -> None: ...
    def freezer_state(self) -> FreezerState: ...
    def pids(self) -> list[int]: ...
    def kill_all(self, sig: int = SIGKILL) -> None: ...
    def stats(self) -> Stats: ...
    def oom_killed(self) -> bool: ...
    def destroy(self) -> None: ...
    def to_state(self) -> dict[str, Any]: ...

    @staticmethod
    def from_state(state: Mapping[str, Any]) -> CgroupManager:
        """Reopen the cgroup a to_state() described (in another process)."""
        return from_state(state)


def from_state(state: Mapping[str, Any]) -> CgroupManager:
    if not isinstance(state, Mapping):
        raise InvalidArgument("cgroup state: must be an object")
    kind = state.get("kind")
    if kind == "v1":
        return V1Manager.from_state(state)
    if kind == "v2":
        return V2Manager.from_state(state)
    if kind == "fake":
        return FakeManager.from_state(state)
    raise InvalidArgument(f"cgroup state: unknown kind {kind!r}")


# ---- helpers shared by the real managers ---------------------------------------------


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _read_int(path: str, default: int = 0) -> int:
    try:
        v = _read(path)
    except FileNotFoundError:
        return default
    if v == "max":
        return -1
    return int(v)


def _read_kv(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = _read(path)
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _procs_under(top: str) -> list[int]:
    pids: list[int] = []
    for dirpath, _dirs, _files in os.walk(top):
        try:
            text = _read(os.path.join(dirpath, "cgroup.procs"))
        except (FileNotFoundError, NotADirectoryError):
            continue
        pids.extend(int(x) for x in text.split())
    return sorted(set(pids))


def _remove_tree(top: str) -> None:
    """rmdir top and every cgroup below it, deepest first; missing is fine."""
    if not os.path.isdir(top):
        return
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        _core_call(_cc.cgroup_rmdir, dirpath)


def _core_call(fn: Callable[..., Any], *args: Any, field_name: str = "") -> Any:
    try:
        return fn(*args)
    except _core.CoreError as e:
        prefix = f"{field_name}: " if field_name else ""
        raise SystemError_(f"{prefix}{e.strerror or e}", e.errno) from None


def _enable_controllers(mount: str, path: str, wanted: Iterable[str] | None) -> None:
    """Write "+ctrl" to cgroup.subtree_control from the mount down to path's parent, for
    the wanted controllers (None: all available) each level offers."""
    rel = posixpath.relpath(path, mount)
    if rel.startswith(".."):
        return
    parts = [] if rel == "." else rel.split("/")
    cur = mount
    for part in parts:
        avail = _read_controllers(os.path.join(cur, "cgroup.controllers"))
        try:
            enabled = set(_read(os.path.join(cur, "cgroup.subtree_control")).split())
        except FileNotFoundError:
            enabled = set()
        need = sorted((avail if wanted is None else avail & set(wanted)) - enabled)
        if need:
            value = " ".join("+" + c for c in need)
            _core_call(
                _cc.cgroup_write, os.path.join(cur, "cgroup.subtree_control"), value,
                field_name=f"enable controllers in {cur}",
            )  # fmt: skip
        cur = os.path.join(cur, part)


class _Plan:
    """The writes apply() will make, each with the spec field it comes from."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str, str]] = []  # (field, path, value)

    def add(self, fieldname: str, path: str, value: object) -> None:
        self.writes.append((fieldname, path, str(value)))

    def check_files(self) -> None:
        for f, path, _ in self.writes:
            if not os.path.exists(path):
                ctrl = os.path.basename(path).split(".", 1)[0]
                raise InvalidArgument(
                    f"{f}: this host cannot do it: {path} does not exist "
                    f"({ctrl} controller not available?)"
                )

    def run(self) -> None:
        if not self.writes:
            return
        try:
            _cc.cgroup_write_many([(p, v) for _, p, v in self.writes])
        except _core.CoreError as e:
            text = e.strerror or str(e)
            fname = next((f for f, p, v in self.writes if f"'{v}' to {p}:" in text), "")
            prefix = f"{fname}: " if fname else ""
            raise SystemError_(f"{prefix}{text}", e.errno) from None


def _wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not check():
        if time.monotonic() > deadline:
            raise SystemError_(f"{what}: timed out after {timeout:g}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)


# ---- cgroup v1 (and hybrid) ----------------------------------------------------------


class V1Manager:
    """A cgroup in every v1 hierarchy; on a hybrid host also in the unified hierarchy,
    which serves only what v1 lacks (hugetlb). Devices use the v1 devices controller."""

    def __init__(
        self, paths: Mapping[str, str], unified: str | None = None,
        unified_mount: str | None = None,
    ) -> None:  # fmt: skip
        if not paths:
            raise InvalidArgument("cgroup v1: no hierarchy given")
        self.paths = dict(paths)
        self.unified = unified
        self.unified_mount = unified_mount

    def _dirs(self) -> list[str]:
        out: list[str] = []
        for d in self.paths.values():
            if d not in out:
                out.append(d)
        if self.unified is not None and self.unified not in out:
            out.append(self.unified)
        return out

    def _dir(self, ctrl: str) -> str | None:
        return self.paths.get(ctrl)

    def _need(self, ctrl: str, what: str) -> str:
        d = self.paths.get(ctrl)
        if d is None:
            raise FailedPrecondition(f"{what}: the {ctrl} controller is not mounted")
        return d

    def create(self) -> None:
        for d in self._dirs():
            _core_call(_cc.cgroup_mkdir, d)
        cpuset = self._dir("cpuset")
        if cpuset is not None:
            self._populate_cpuset(cpuset)

    @staticmethod
    def _populate_cpuset(leaf: str) -> None:
        """A new v1 cpuset has empty cpus/mems and refuses tasks: copy the parent's down."""
        chain = [leaf]
        cur = leaf
        while True:
            parent = os.path.dirname(cur)
            if parent == cur or not os.path.exists(os.path.join(parent, "cpuset.cpus")):
                break
            chain.append(parent)
            cur = parent
        chain.reverse()
        for parent, child in zip(chain, chain[1:], strict=False):
            for f in ("cpuset.cpus", "cpuset.mems"):
                if _read(os.path.join(child, f)) == "":
                    v = _read(os.path.join(parent, f))
                    _core_call(_cc.cgroup_write, os.path.join(child, f), v, field_name=f)

    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self._dirs()]

    def apply(self, resources: Mapping[str, Any]) -> None:
        r = validate_resources(resources)
        plan = self._plan(r)
        plan.check_files()
        plan.run()

    def _plan(self, r: Resources) -> _Plan:
        w = "linux.resources"
        p = _Plan()
        mem = self._dir("memory")

        def need(ctrl: str, fieldname: str) -> str:
            d = self.paths.get(ctrl)
            if d is None:
                raise InvalidArgument(f"{fieldname}: the {ctrl} controller is not mounted")
            return d

        if r.memory_limit is not None or r.memory_swap is not None:
            mem = need("memory", f"{w}.memory")
            limit_w = (f"{w}.memory.limit", os.path.join(mem, "memory.limit_in_bytes"))
            memsw = os.path.join(mem, "memory.memsw.limit_in_bytes")
            if r.memory_swap is not None and not os.path.exists(memsw):
                raise InvalidArgument(
                    f"{w}.memory.swap: this kernel has no swap accounting (memory.memsw.*)"
                )
            if r.memory_swap is None:
                p.add(*limit_w, r.memory_limit)
            else:
                # memory+swap must never drop below memory: raise memsw first, lower it last
                cur = _read_int(memsw, -1)
                cur = -1 if cur >= _UNLIMITED_V1 else cur
                swap_first = r.memory_swap == -1 or (cur != -1 and r.memory_swap >= cur)
                if swap_first:
                    p.add(f"{w}.memory.swap", memsw, r.memory_swap)
                if r.memory_limit is not None:
                    p.add(*limit_w, r.memory_limit)
                if not swap_first:
                    p.add(f"{w}.memory.swap", memsw, r.memory_swap)
        if r.memory_reservation is not None:
            mem = need("memory", f"{w}.memory.reservation")
            p.add(f"{w}.memory.reservation", os.path.join(mem, "memory.soft_limit_in_bytes"),
                  r.memory_reservation)  # fmt: skip
        if r.memory_swappiness is not None:
            mem = need("memory", f"{w}.memory.swappiness")
            p.add(f"{w}.memory.swappiness", os.path.join(mem, "memory.swappiness"),
                  r.memory_swappiness)  # fmt: skip
        if r.disable_oom_killer is not None:
            mem = need("memory", f"{w}.memory.disableOOMKiller")
            p.add(f"{w}.memory.disableOOMKiller", os.path.join(mem, "memory.oom_control"),
                  1 if r.disable_oom_killer else 0)  # fmt: skip

        wc = f"{w}.cpu"
        if r.cpu_shares is not None:
            p.add(f"{wc}.shares", os.path.join(need("cpu", f"{wc}.shares"), "cpu.shares"),
                  r.cpu_shares)  # fmt: skip
        if r.cpu_period is not None:
            p.add(
                f"{wc}.period",
                os.path.join(need("cpu", f"{wc}.period"), "cpu.cfs_period_us"),
                r.cpu_period,
            )
        if r.cpu_quota is not None:
            p.add(
                f"{wc}.quota",
                os.path.join(need("cpu", f"{wc}.quota"), "cpu.cfs_quota_us"),
                r.cpu_quota,
            )
        if r.cpu_burst is not None:
            p.add(
                f"{wc}.burst",
                os.path.join(need("cpu", f"{wc}.burst"), "cpu.cfs_burst_us"),
                r.cpu_burst,
            )
        if r.cpu_rt_period is not None:
            p.add(f"{wc}.realtimePeriod",
                  os.path.join(need("cpu", f"{wc}.realtimePeriod"), "cpu.rt_period_us"),
                  r.cpu_rt_period)  # fmt: skip
        if r.cpu_rt_runtime is not None:
            p.add(f"{wc}.realtimeRuntime",
                  os.path.join(need("cpu", f"{wc}.realtimeRuntime"), "cpu.rt_runtime_us"),
                  r.cpu_rt_runtime)  # fmt: skip
        if r.cpu_idle is not None:
            p.add(f"{wc}.idle", os.path.join(need("cpu", f"{wc}.idle"), "cpu.idle"), r.cpu_idle)
        if r.cpus is not None:
            p.add(f"{wc}.cpus", os.path.join(need("cpuset", f"{wc}.cpus"), "cpuset.cpus"), r.cpus)
        if r.mems is not None:
            p.add(f"{wc}.mems", os.path.join(need("cpuset", f"{wc}.mems"), "cpuset.mems"), r.mems)

        if r.pids_limit is not None:
            d = need("pids", f"{w}.pids.limit")
            p.add(f"{w}.pids.limit", os.path.join(d, "pids.max"),
                  r.pids_limit if r.pids_limit > 0 else "max")  # fmt: skip

        if r.devices is not None:
            d = need("devices", f"{w}.devices")
            p.add(f"{w}.devices", os.path.join(d, "devices.deny"), "a")
            for i, rule in enumerate(r.devices):
                f = "devices.allow" if rule.allow else "devices.deny"
                p.add(f"{w}.devices[{i}]", os.path.join(d, f), rule.v1_line())

        for i, (size, limit) in enumerate(r.hugepages):
            fname = f"{w}.hugepageLimits[{i}]"
            hd = self._dir("hugetlb")
            if hd is not None:
                path = os.path.join(hd, f"hugetlb.{size}.limit_in_bytes")
            elif self.unified is not None and self.unified_mount is not None:
                _enable_controllers(self.unified_mount, self.unified, ["hugetlb"])
                path = os.path.join(self.unified, f"hugetlb.{size}.max")
            else:
                raise InvalidArgument(f"{fname}: the hugetlb controller is not available")
            if not os.path.exists(path):
                raise InvalidArgument(
                    f"{fname}.pageSize: page size {size} is not supported here ({path} missing)"
                )
            p.add(fname, path, limit)

        if r.unified:
            if self.unified is None:
                raise InvalidArgument(f"{w}.unified: needs cgroup v2; this host has only v1")
            for k, v in r.unified.items():
                p.add(f"{w}.unified.{k}", os.path.join(self.unified, k), v)
        return p

    # -- freezer
    def freeze(self) -> None:
        d = self._need("freezer", "freeze")
        state = os.path.join(d, "freezer.state")

        def frozen() -> bool:
            if _read(state) == "FROZEN":
                return True
            _core_call(_cc.cgroup_write, state, "FROZEN")  # nudge a stuck FREEZING
            return False

        _core_call(_cc.cgroup_write, state, "FROZEN")
        try:
            _wait_until(frozen, _FREEZE_TIMEOUT, f"freeze {d}")
        except SystemError_:
            _core_call(_cc.cgroup_write, state, "THAWED")
            raise

    def thaw(self) -> None:
        d = self._need("freezer", "thaw")
        state = os.path.join(d, "freezer.state")
        _core_call(_cc.cgroup_write, state, "THAWED")
        _wait_until(lambda: _read(state) == "THAWED", _FREEZE_TIMEOUT, f"thaw {d}")

    def freezer_state(self) -> FreezerState:
        d = self._need("freezer", "freezer state")
        return "FROZEN" if _read(os.path.join(d, "freezer.state")) == "FROZEN" else "THAWED"

    def pids(self) -> list[int]:
        for c in ("pids", "freezer", "memory", "devices", "cpu", "cpuset"):
            if c in self.paths:
                return _procs_under(self.paths[c])
        return _procs_under(self._dirs()[0])

    def kill_all(self, sig: int = SIGKILL) -> None:
        can_freeze = "freezer" in self.paths and os.path.isdir(self.paths["freezer"])
        if can_freeze:
            self.freeze()
        try:
            _signal_all(self.pids(), sig)
        finally:
            if can_freeze:
                self.thaw()
        if sig == SIGKILL:
            _wait_until(lambda: not self.pids(), _KILL_TIMEOUT, "kill every process in cgroup")

    def stats(self) -> Stats:
        out: Stats = {}
        mem = self._dir("memory")
        if mem is not None:

            def m(f: str) -> int:
                v = _read_int(os.path.join(mem, f))
                return -1 if v >= _UNLIMITED_V1 else v

            oom = _read_kv(os.path.join(mem, "memory.oom_control"))
            out["memory"] = {
                "usage": m("memory.usage_in_bytes"),
                "limit": m("memory.limit_in_bytes"),
                "max_usage": m("memory.max_usage_in_bytes"),
                "failcnt": m("memory.failcnt"),
                "oom_kill": oom.get("oom_kill", 0),
            }
        acct = self._dir("cpuacct")
        cpu = self._dir("cpu")
        if acct is not None or cpu is not None:
            c: dict[str, int] = {}
            if acct is not None:
                c["usage_total"] = _read_int(os.path.join(acct, "cpuacct.usage"))
                c["usage_user"] = _read_int(os.path.join(acct, "cpuacct.usage_user"))
                c["usage_system"] = _read_int(os.path.join(acct, "cpuacct.usage_sys"))
            if cpu is not None:
                st = _read_kv(os.path.join(cpu, "cpu.stat"))
                c["nr_periods"] = st.get("nr_periods", 0)
                c["nr_throttled"] = st.get("nr_throttled", 0)
                c["throttled_time"] = st.get("throttled_time", 0)
            out["cpu"] = c
        pids = self._dir("pids")
        if pids is not None:
            out["pids"] = {
                "current": _read_int(os.path.join(pids, "pids.current")),
                "limit": _read_int(os.path.join(pids, "pids.max"), -1),
            }
        return out

    def oom_killed(self) -> bool:
        mem = self._dir("memory")
        if mem is None:
            return False
        return _read_kv(os.path.join(mem, "memory.oom_control")).get("oom_kill", 0) > 0

    def destroy(self) -> None:
        for d in self._dirs():
            _remove_tree(d)

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "v1", "paths": dict(self.paths), "unified": self.unified,
            "unified_mount": self.unified_mount,
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> V1Manager:
        paths = state.get("paths")
        if not isinstance(paths, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in paths.items()
        ):
            raise InvalidArgument("cgroup state: paths must map controllers to directories")
        return cls(paths, state.get("unified"), state.get("unified_mount"))


# ---- cgroup v2 -----------------------------------------------------------------------


class V2Manager:
    """A cgroup in the unified hierarchy. Devices are an eBPF program attached to it."""

    def __init__(self, path: str, mount: str | None = None) -> None:
        if not path.startswith("/"):
            raise InvalidArgument(f"cgroup v2 path {path!r}: must be absolute")
        self.path = path
        self.mount = mount

    def _f(self, name: str) -> str:
        return os.path.join(self.path, name)

    def create(self) -> None:
        _core_call(_cc.cgroup_mkdir, self.path)
        if self.mount is not None:
            _enable_controllers(self.mount, self.path, None)

    def procs_files(self) -> list[str]:
        return [self._f("cgroup.procs")]

    def apply(self, resources: Mapping[str, Any]) -> None:
        r = validate_resources(resources)
        plan = self._plan(r)
        plan.check_files()
        if r.devices is not None:
            rules = [d.as_tuple() for d in r.devices]
            _core_call(_cc.cgroup_device_filter, self.path, rules,
                       field_name="linux.resources.devices")  # fmt: skip
        plan.run()

    def _plan(self, r: Resources) -> _Plan:
        w = "linux.resources"
        p = _Plan()
        v2_cannot = [
            (r.memory_swappiness, "memory.swappiness"),
            (r.cpu_rt_runtime, "cpu.realtimeRuntime"),
            (r.cpu_rt_period, "cpu.realtimePeriod"),
        ]
        for value, name in v2_cannot:
            if value is not None:
                raise InvalidArgument(f"{w}.{name}: not available on cgroup v2")
        if r.disable_oom_killer:
            raise InvalidArgument(f"{w}.memory.disableOOMKiller: not available on cgroup v2")

        def lim(v: int) -> str:
            return "max" if v == -1 else str(v)

        if r.memory_limit is not None:
            p.add(f"{w}.memory.limit", self._f("memory.max"), lim(r.memory_limit))
        if r.memory_reservation is not None:
            p.add(f"{w}.memory.reservation", self._f("memory.low"),
                  lim(r.memory_reservation))  # fmt: skip
        if r.memory_swap is not None:
            # OCI swap counts memory plus swap; v2's memory.swap.max counts swap only
            if r.memory_swap == -1:
                swap = "max"
            else:
                limit = r.memory_limit
                if limit is None:
                    cur = _read_int(self._f("memory.max"), -1)
                    limit = cur
                if limit == -1:
                    raise InvalidArgument(
                        f"{w}.memory.swap: needs memory.limit on cgroup v2 (swap = limit + swap)"
                    )
                swap = str(r.memory_swap - limit)
            p.add(f"{w}.memory.swap", self._f("memory.swap.max"), swap)

        wc = f"{w}.cpu"
        if r.cpu_shares is not None:
            p.add(f"{wc}.shares", self._f("cpu.weight"), shares_to_weight(r.cpu_shares))
        if r.cpu_quota is not None or r.cpu_period is not None:
            quota, period = "max", "100000"
            with suppress(FileNotFoundError, ValueError):
                quota, period = _read(self._f("cpu.max")).split()
            if r.cpu_quota is not None:
                quota = lim(r.cpu_quota)
            if r.cpu_period is not None:
                period = str(r.cpu_period)
            p.add(f"{wc}.quota" if r.cpu_quota is not None else f"{wc}.period",
                  self._f("cpu.max"), f"{quota} {period}")  # fmt: skip
        if r.cpu_burst is not None:
            p.add(f"{wc}.burst", self._f("cpu.max.burst"), r.cpu_burst)
        if r.cpu_idle is not None:
            p.add(f"{wc}.idle", self._f("cpu.idle"), r.cpu_idle)
        if r.cpus is not None:
            p.add(f"{wc}.cpus", self._f("cpuset.cpus"), r.cpus)
        if r.mems is not None:
            p.add(f"{wc}.mems", self._f("cpuset.mems"), r.mems)
        if r.pids_limit is not None:
            p.add(f"{w}.pids.limit", self._f("pids.max"),
                  r.pids_limit if r.pids_limit > 0 else "max")  # fmt: skip
        for i, (size, limit) in enumerate(r.hugepages):
            p.add(f"{w}.hugepageLimits[{i}]", self._f(f"hugetlb.{size}.max"), limit)
        for k, v in r.unified.items():
            p.add(f"{w}.unified.{k}", self._f(k), v)
        return p

    def _events(self) -> dict[str, int]:
        return _read_kv(self._f("cgroup.events"))

    def freeze(self) -> None:
        _core_call(_cc.cgroup_write, self._f("cgroup.freeze"), "1", field_name="freeze")
        try:
            _wait_until(lambda: self._events().get("frozen") == 1, _FREEZE_TIMEOUT,
                        f"freeze {self.path}")  # fmt: skip
        except SystemError_:
            _core_call(_cc.cgroup_write, self._f("cgroup.freeze"), "0")
            raise

    def thaw(self) -> None:
        _core_call(_cc.cgroup_write, self._f("cgroup.freeze"), "0", field_name="thaw")
        _wait_until(lambda: self._events().get("frozen") == 0, _FREEZE_TIMEOUT,
                    f"thaw {self.path}")  # fmt: skip

    def freezer_state(self) -> FreezerState:
        if not os.path.isdir(self.path):
            raise FailedPrecondition(f"cgroup {self.path} does not exist")
        return "FROZEN" if self._events().get("frozen") == 1 else "THAWED"

    def pids(self) -> list[int]:
        return _procs_under(self.path)

    def kill_all(self, sig: int = SIGKILL) -> None:
        if sig == SIGKILL and os.path.exists(self._f("cgroup.kill")):
            _core_call(_cc.cgroup_write, self._f("cgroup.kill"), "1", field_name="kill")
        else:
            self.freeze()
            try:
                _signal_all(self.pids(), sig)
            finally:
                self.thaw()
        if sig == SIGKILL:
            _wait_until(lambda: not self.pids(), _KILL_TIMEOUT, "kill every process in cgroup")

    def stats(self) -> Stats:
        out: Stats = {}
        if os.path.exists(self._f("memory.current")):
            ev = _read_kv(self._f("memory.events"))
            out["memory"] = {
                "usage": _read_int(self._f("memory.current")),
                "limit": _read_int(self._f("memory.max"), -1),
                "max_usage": _read_int(self._f("memory.peak")),
                "failcnt": ev.get("max", 0),
                "oom_kill": ev.get("oom_kill", 0),
            }
        st = _read_kv(self._f("cpu.stat"))
        if st:
            out["cpu"] = {
                "usage_total": st.get("usage_usec", 0) * 1000,
                "usage_user": st.get("user_usec", 0) * 1000,
                "usage_system": st.get("system_usec", 0) * 1000,
                "nr_periods": st.get("nr_periods", 0),
                "nr_throttled": st.get("nr_throttled", 0),
                "throttled_time": st.get("throttled_usec", 0) * 1000,
            }
        if os.path.exists(self._f("pids.current")):
            out["pids"] = {
                "current": _read_int(self._f("pids.current")),
                "limit": _read_int(self._f("pids.max"), -1),
            }
        return out

    def oom_killed(self) -> bool:
        return _read_kv(self._f("memory.events")).get("oom_kill", 0) > 0

    def destroy(self) -> None:
        _remove_tree(self.path)

    def to_state(self) -> dict[str, Any]:
        return {"kind": "v2", "path": self.path, "mount": self.mount}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> V2Manager:
        path = state.get("path")
        if not isinstance(path, str):
            raise InvalidArgument("cgroup state: path must be a string")
        mount = state.get("mount")
        return cls(path, mount if isinstance(mount, str) else None)


# ---- the fake ------------------------------------------------------------------------


class FakeManager:
    """In-memory cgroup for unit tests: validates like the real ones, records what it
    was asked, and lets a test add pids or raise an OOM."""

    registry: ClassVar[dict[str, FakeManager]] = {}

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.created = False
        self.destroyed = False
        self.applied: list[Resources] = []
        self.frozen = False
        self.procs: list[int] = []
        self.signals: list[tuple[int, int]] = []
        self.oom = False
        FakeManager.registry[name] = self

    def create(self) -> None:
        self.created = True
        self.destroyed = False

    def procs_files(self) -> list[str]:
        return [f"/fake-cgroup/{self.name}/cgroup.procs"]

    def apply(self, resources: Mapping[str, Any]) -> None:
        self._alive("apply")
        self.applied.append(validate_resources(resources))

    def _alive(self, what: str) -> None:
        if not self.created or self.destroyed:
            raise FailedPrecondition(f"{what}: cgroup {self.name} does not exist")

    def freeze(self) -> None:
        self._alive("freeze")
        self.frozen = True

    def thaw(self) -> None:
        self._alive("thaw")
        self.frozen = False

    def freezer_state(self) -> FreezerState:
        self._alive("freezer state")
        return "FROZEN" if self.frozen else "THAWED"

    def pids(self) -> list[int]:
        return sorted(self.procs)

    def kill_all(self, sig: int = SIGKILL) -> None:
        self._alive("kill")
        self.signals.extend((p, sig) for p in self.procs)
        if sig == SIGKILL:
            self.procs = []

    def _limit(self, attr: str) -> int:
        for r in reversed(self.applied):
            v = getattr(r, attr)
            if v is not None:
                return int(v)
        return -1

    def stats(self) -> Stats:
        return {
            "memory": {
                "usage": 0, "limit": self._limit("memory_limit"), "max_usage": 0,
                "failcnt": 0, "oom_kill": 1 if self.oom else 0,
            },
            "pids": {"current": len(self.procs), "limit": self._limit("pids_limit")},
        }  # fmt: skip

    def oom_killed(self) -> bool:
        return self.oom

    def destroy(self) -> None:
        if self.procs:
            raise SystemError_(f"remove cgroup {self.name}: Device or resource busy", 16)
        self.destroyed = True

    def to_state(self) -> dict[str, Any]:
        return {"kind": "fake", "name": self.name}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> FakeManager:
        name = state.get("name")
        if not isinstance(name, str) or name not in cls.registry:
            raise InvalidArgument(f"cgroup state: no fake cgroup named {name!r}")
        return cls.registry[name]


__all__ = [
    "DEFAULT_DEVICE_RULES",
    "CgroupLayout",
    "CgroupManager",
    "DeviceRule",
    "FakeManager",
    "Hierarchy",
    "Resources",
    "V1Manager",
    "V2Manager",
    "detect_layout",
    "from_state",
    "layout_from_mountinfo",
    "open_cgroup",
    "parse_cgroups_path",
    "parse_mountinfo",
    "parse_proc_cgroup",
    "shares_to_weight",
    "validate_resources",
]
