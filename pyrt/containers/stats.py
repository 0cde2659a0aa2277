"""`docker stats`: one sample of a container's resource use, in the Engine API's shape.

    s1 = stats(handle)
    s2 = stats(handle, prev=s1)            # precpu_stats/preread are s1's
    cpu_percent(s2), memory_percent(s2)    # what the docker CLI prints
    for s in stream_stats(handle, interval=1.0): ...

Sources: the runtime's cgroup (Runtime.stats for memory/cpu/pids, then the cgroup's own
files for memory.stat, per-cpu usage, throttling and block I/O, on v1 or v2),
/proc/stat for system_cpu_usage (nanoseconds, as docker computes it), and
/proc/<pid>/net/dev of the container's init for `networks` (its network namespace's
interfaces, loopback excluded; the key is left out when there are none, as docker does
for a container without a network).

A container that is not running gives docker's empty sample: zero times and numbers.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyrt.errors import NotFound, PyrtError

if TYPE_CHECKING:
    from pyrt.containers.handle import ContainerHandle

ZERO_TIME = "0001-01-01T00:00:00Z"
_NS = 1_000_000_000


def now_rfc3339() -> str:
    t = time.time_ns()
    secs, frac = divmod(t, _NS)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _kv(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                out[parts[0]] = int(parts[1])
    return out


def system_cpu_usage(proc_stat: str | None = None) -> int:
    """The host's total CPU time in ns: the first 7 fields of /proc/stat's "cpu" line."""
    text = proc_stat if proc_stat is not None else _read("/proc/stat") or ""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            ticks = sum(int(x) for x in parts[1:8])
            return ticks * _NS // os.sysconf("SC_CLK_TCK")
    return 0


def online_cpus() -> int:
    return int(os.sysconf("SC_NPROCESSORS_ONLN"))


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/dev -> docker's networks map (lo left out)."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        name = name.strip()
        f = rest.split()
        if name == "lo" or len(f) < 16:
            continue
        v = [int(x) for x in f[:16]]
        out[name] = {
            "rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
            "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11],
        }  # fmt: skip
    return out


def parse_blkio_v1(text: str | None) -> list[dict[str, Any]]:
    """blkio.throttle.io_service_bytes_recursive -> docker's entries ("Total" lines dropped)."""
    out: list[dict[str, Any]] = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        with contextlib.suppress(ValueError):
            out.append({"major": int(major), "minor": int(minor), "op": parts[1],
                        "value": int(parts[2])})
    return out


def parse_io_stat_v2(text: str | None) -> list[dict[str, Any]]:
    """cgroup v2 io.stat -> docker's io_service_bytes_recursive (op "read"/"write")."""
    out: list[dict[str, Any]] = []
    for line in (text or "").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for key, op in (("rbytes", "read"), ("wbytes", "write")):
            if key in fields:
                with contextlib.suppress(ValueError):
                    out.append({"major": int(major), "minor": int(minor), "op": op,
                                "value": int(fields[key])})
    return out


def host_memory(meminfo: str | None = None) -> int:
    """MemTotal of /proc/meminfo in bytes (docker's limit for an unlimited container)."""
    text = meminfo if meminfo is not None else _read("/proc/meminfo") or ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "MemTotal:":
            return int(parts[1]) * (1024 if parts[2:3] == ["kB"] else 1)
    return 0


def _cgroup(handle: ContainerHandle) -> Any:
    from pyrt.runtime import cgroups
    from pyrt.runtime.state import ContainerDir

    record = ContainerDir(handle.runtime.root, handle.runtime_id).read()
    data = record.get("cgroup")
    return cgroups.from_state(data) if data else None


def _empty(handle: ContainerHandle, prev: dict[str, Any] | None) -> dict[str, Any]:
    cpu = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
           "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    return {
        "read": ZERO_TIME, "preread": ZERO_TIME, "id": handle.id, "name": "/" + handle.name,
        "num_procs": 0, "pids_stats": {}, "cpu_stats": cpu,
        "precpu_stats": (prev or {}).get("cpu_stats") or cpu,
        "memory_stats": {}, "storage_stats": {},
        "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None,
                        "io_queue_recursive": None, "io_service_time_recursive": None,
                        "io_wait_time_recursive": None, "io_merged_recursive": None,
                        "io_time_recursive": None, "sectors_recursive": None},
    }


def stats(handle: ContainerHandle, prev: dict[str, Any] | None = None) -> dict[str, Any]:
    """One sample (see the module doc); `prev` is the previous sample of a stream."""
    status = handle.status()
    pid = handle.pid()
    if status not in ("running", "paused") or pid <= 0:
        return _empty(handle, prev)
    try:
        base = handle.runtime.stats(handle.runtime_id)
        cg = _cgroup(handle)
    except NotFound:
        return _empty(handle, prev)
    read = now_rfc3339()
    system = system_cpu_usage()
    doc = _empty(handle, prev)
    doc["read"] = read
    doc["preread"] = (prev or {}).get("read") or ZERO_TIME

    paths: dict[str, str] = dict(getattr(cg, "paths", {}) or {})
    v2 = getattr(cg, "path", None) if not paths else None

    def v1(ctrl: str, name: str) -> str | None:
        d = paths.get(ctrl)
        return _read(os.path.join(d, name)) if d else None

    def v2f(name: str) -> str | None:
        return _read(os.path.join(v2, name)) if isinstance(v2, str) else None

    # pids
    p = base.get("pids")
    if p:
        pids: dict[str, Any] = {"current": p.get("current", 0)}
        if p.get("limit", -1) >= 0:
            pids["limit"] = p["limit"]
        doc["pids_stats"] = pids
    else:
        doc["pids_stats"] = {"current": len(handle.runtime.ps(handle.runtime_id))}

    # cpu
    c = base.get("cpu") or {}
    cpu: dict[str, Any] = {
        "cpu_usage": {"total_usage": c.get("usage_total", 0),
                      "usage_in_kernelmode": c.get("usage_system", 0),
                      "usage_in_usermode": c.get("usage_user", 0)},
        "system_cpu_usage": system,
        "online_cpus": online_cpus(),
        "throttling_data": {"periods": c.get("nr_periods", 0),
                            "throttled_periods": c.get("nr_throttled", 0),
                            "throttled_time": c.get("throttled_time", 0)},
    }
    percpu = v1("cpuacct", "cpuacct.usage_percpu")
    if percpu:
        cpu["cpu_usage"]["percpu_usage"] = [int(x) for x in percpu.split()]
    if v1("cpuacct", "cpuacct.usage_user") is None and paths.get("cpuacct"):
        # older kernels: cpuacct.stat in USER_HZ ticks
        st = _kv(v1("cpuacct", "cpuacct.stat"))
        hz = os.sysconf("SC_CLK_TCK")
        cpu["cpu_usage"]["usage_in_usermode"] = st.get("user", 0) * _NS // hz
        cpu["cpu_usage"]["usage_in_kernelmode"] = st.get("system", 0) * _NS // hz
    doc["cpu_stats"] = cpu
    if prev is not None and prev.get("cpu_stats"):
        doc["precpu_stats"] = prev["cpu_stats"]

    # memory
    m = base.get("memory")
    if m:
        limit = m.get("limit", -1)
        mem: dict[str, Any] = {
            "usage": m.get("usage", 0),
            "stats": _kv(v1("memory", "memory.stat") if paths else v2f("memory.stat")),
            "limit": limit if limit >= 0 else host_memory(),
        }
        if paths:  # v1 only, as docker
            mem["max_usage"] = m.get("max_usage", 0)
            mem["failcnt"] = m.get("failcnt", 0)
        doc["memory_stats"] = mem

    # block I/O
    if paths:
        blk = parse_blkio_v1(v1("blkio", "blkio.throttle.io_service_bytes_recursive"))
        ios = parse_blkio_v1(v1("blkio", "blkio.throttle.io_serviced_recursive"))
    else:
        blk = parse_io_stat_v2(v2f("io.stat"))
        ios = []
    doc["blkio_stats"]["io_service_bytes_recursive"] = blk
    doc["blkio_stats"]["io_serviced_recursive"] = ios

    # network
    net = _read(f"/proc/{pid}/net/dev")
    if net is not None:
        nets = parse_net_dev(net)
        if nets:
            doc["networks"] = nets
    return doc


def cpu_percent(s: dict[str, Any]) -> float:
    """The docker CLI's CPU %: container CPU delta / system CPU delta * CPUs * 100."""
    cur, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    cpu_delta = (cur.get("cpu_usage") or {}).get("total_usage", 0) - (
        (pre.get("cpu_usage") or {}).get("total_usage", 0))
    system_delta = cur.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    ncpu = cur.get("online_cpus") or len((cur.get("cpu_usage") or {}).get("percpu_usage") or [])
    if system_delta > 0 and cpu_delta > 0:
        return float(cpu_delta) / float(system_delta) * int(ncpu) * 100.0
    return 0.0


def memory_usage(s: dict[str, Any]) -> int:
    """Usage without the page cache the kernel can drop (the CLI's figure)."""
    mem = s.get("memory_stats") or {}
    usage = int(mem.get("usage", 0))
    st = mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):  # v1, then v2
        v = st.get(key)
        if v is not None and v < usage:
            return usage - int(v)
    return usage


def memory_percent(s: dict[str, Any]) -> float:
    limit = (s.get("memory_stats") or {}).get("limit", 0)
    return memory_usage(s) / limit * 100.0 if limit else 0.0


def blkio_totals(s: dict[str, Any]) -> tuple[int, int]:
    """(bytes read, bytes written) as the CLI sums them."""
    r = w = 0
    for e in (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(e.get("op", "")).lower()
        if op == "read":
            r += int(e.get("value", 0))
        elif op == "write":
            w += int(e.get("value", 0))
    return r, w


def stream_stats(handle: ContainerHandle, interval: float = 1.0,
                 *, count: int | None = None) -> Iterator[dict[str, Any]]:
    """Samples every `interval` seconds, each carrying the previous one as precpu_stats;
    ends after `count` samples, or when the container is gone or stops running."""
    prev: dict[str, Any] | None = None
    n = 0
    while count is None or n < count:
        try:
            s = stats(handle, prev)
        except PyrtError:
            return
        yield s
        n += 1
        if s["read"] == ZERO_TIME:
            return
        prev = s
        if count is None or n < count:
            time.sleep(interval)


__all__ = [
    "blkio_totals",
    "cpu_percent",
    "host_memory",
    "memory_percent",
    "memory_usage",
    "parse_blkio_v1",
    "parse_io_stat_v2",
    "parse_net_dev",
    "stats",
    "stream_stats",
    "system_cpu_usage",
]
