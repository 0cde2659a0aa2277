"""cgroups on the real kernel: v1 controllers (and hybrid's unified dir), the v2 eBPF
device filter under the unified mount. Every cgroup lives below /pyrt-test-<random> and
is removed by the fixtures, whatever happens."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from pyrt.errors import InvalidArgument, SystemError_
from pyrt.runtime import cgroups
from pyrt.runtime.cgroups import V1Manager, V2Manager

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to manage cgroups")

LAYOUT = cgroups.detect_layout() if os.geteuid() == 0 else None
core: cgroups._CoreCgroup = cgroups._cc


def _joiner(files: list[str]) -> Callable[[], None]:
    def join() -> None:  # runs in the child between fork and exec
        for f in files:
            core.cgroup_write(f, "0")

    return join


def _spawn(files: list[str], argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, preexec_fn=_joiner(files), **kw)  # type: ignore[call-overload,no-any-return]


def _remove_all(path_of_top: list[str]) -> None:
    for top in path_of_top:
        if not os.path.isdir(top):
            continue
        for dirpath, _d, _f in os.walk(top, topdown=False):
            for pid in _read_procs(dirpath):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            core.cgroup_rmdir(dirpath)


def _read_procs(d: str) -> list[int]:
    try:
        with open(os.path.join(d, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@pytest.fixture
def top() -> str:
    return f"pyrt-test-{secrets.token_hex(4)}"


@pytest.fixture
def host_cg(top: str) -> Iterator[cgroups.CgroupManager]:
    """A cgroup through open_cgroup() on this host's own layout."""
    assert LAYOUT is not None
    unified_sub = None
    if LAYOUT.unified is not None:
        unified_sub = _read(os.path.join(LAYOUT.unified.mountpoint, "cgroup.subtree_control"))
    cg = cgroups.open_cgroup(f"/{top}/c", "c")
    tops = {h.mountpoint for h in LAYOUT.v1.values()}
    if LAYOUT.unified is not None:
        tops.add(LAYOUT.unified.mountpoint)
    try:
        yield cg
    finally:
        with contextlib.suppress(Exception):
            cg.thaw()
        _remove_all([os.path.join(m, top) for m in tops])
        if LAYOUT.unified is not None and unified_sub is not None:
            # put back what the hybrid hugetlb test may have enabled at the unified root
            now = _read(os.path.join(LAYOUT.unified.mountpoint, "cgroup.subtree_control"))
            for c in set(now.split()) - set(unified_sub.split()):
                with contextlib.suppress(OSError):
                    core.cgroup_write(
                        os.path.join(LAYOUT.unified.mountpoint, "cgroup.subtree_control"), "-" + c
                    )


@pytest.fixture
def v2_cg(top: str) -> Iterator[V2Manager]:
    """A V2Manager in the unified mount (no controllers needed: freeze, kill, devices)."""
    assert LAYOUT is not None
    if LAYOUT.unified is None:
        pytest.fail("this host has no cgroup2 mount")
    base = os.path.join(LAYOUT.unified.mountpoint, top)
    cg = V2Manager(os.path.join(base, "c"))  # no mount: leave subtree_control alone
    try:
        yield cg
    finally:
        with contextlib.suppress(Exception):
            cg.thaw()
        _remove_all([base])


def _v1(cg: cgroups.CgroupManager) -> V1Manager:
    if not isinstance(cg, V1Manager):
        pytest.fail(f"expected a v1 manager on this {LAYOUT and LAYOUT.kind} host")
    return cg


def test_layout_is_detected_from_mountinfo() -> None:
    assert LAYOUT is not None
    with open("/proc/self/mountinfo") as f:
        text = f.read()
    if " - cgroup2 " in text and " - cgroup " not in text:
        assert LAYOUT.kind == "v2"
    elif " - cgroup " in text:
        assert LAYOUT.kind == ("hybrid" if " - cgroup2 " in text else "v1")
        assert "memory" in LAYOUT.v1


def test_create_apply_readback_destroy(host_cg: cgroups.CgroupManager) -> None:
    cg = _v1(host_cg)
    cg.create()
    for f in cg.procs_files():
        assert os.path.exists(f)
    cg.apply(
        {
            "memory": {"limit": 64 << 20, "reservation": 32 << 20, "kernel": 1 << 20},
            "cpu": {"shares": 512, "quota": 20000, "period": 50000, "cpus": "0", "mems": "0"},
            "pids": {"limit": 17},
        }
    )
    assert int(_read(os.path.join(cg.paths["memory"], "memory.limit_in_bytes"))) == 64 << 20
    assert int(_read(os.path.join(cg.paths["memory"], "memory.soft_limit_in_bytes"))) == 32 << 20
    assert _read(os.path.join(cg.paths["cpu"], "cpu.shares")) == "512"
    assert _read(os.path.join(cg.paths["cpu"], "cpu.cfs_quota_us")) == "20000"
    assert _read(os.path.join(cg.paths["cpu"], "cpu.cfs_period_us")) == "50000"
    assert _read(os.path.join(cg.paths["cpuset"], "cpuset.cpus")) == "0"
    assert _read(os.path.join(cg.paths["cpuset"], "cpuset.mems")) == "0"
    assert _read(os.path.join(cg.paths["pids"], "pids.max")) == "17"
    # a second apply changes only what it names; -1 lifts the limits
    cg.apply({"pids": {"limit": -1}, "cpu": {"quota": -1}})
    assert _read(os.path.join(cg.paths["pids"], "pids.max")) == "max"
    assert _read(os.path.join(cg.paths["cpu"], "cpu.cfs_quota_us")) == "-1"
    assert _read(os.path.join(cg.paths["cpu"], "cpu.shares")) == "512"
    # reopened from its saved state by "another process"
    again = cgroups.CgroupManager.from_state(cg.to_state())
    assert again.stats()["pids"]["limit"] == -1
    cg.destroy()
    for f in cg.procs_files():
        assert not os.path.exists(os.path.dirname(f))
    cg.destroy()  # missing dirs are fine


def test_bad_value_from_the_kernel_names_the_field(host_cg: cgroups.CgroupManager) -> None:
    cg = _v1(host_cg)
    cg.create()
    ncpu = os.cpu_count() or 1
    with pytest.raises(SystemError_, match=r"linux\.resources\.cpu\.cpus") as e:
        cg.apply({"cpu": {"cpus": str(ncpu + 1000)}})
    assert e.value.errno in (errno.EINVAL, errno.ERANGE)
    assert "write '" in str(e.value) and "[Errno" not in str(e.value)


def test_cpuset_is_populated_so_tasks_can_join(host_cg: cgroups.CgroupManager) -> None:
    cg = _v1(host_cg)
    cg.create()
    cpuset = cg.paths["cpuset"]
    assert _read(os.path.join(cpuset, "cpuset.cpus")) != ""
    assert _read(os.path.join(cpuset, "cpuset.mems")) != ""
    p = _spawn(cg.procs_files(), ["sleep", "30"])
    try:
        time.sleep(0.05)
        assert p.pid in _read_procs(cpuset)
    finally:
        p.kill()
        p.wait()


def test_process_lifecycle_freeze_stats_kill(host_cg: cgroups.CgroupManager) -> None:
    cg = host_cg
    cg.create()
    cg.apply({"pids": {"limit": 50}, "memory": {"limit": 256 << 20}})
    p = _spawn(cg.procs_files(), ["sh", "-c", "sleep 60 & sleep 60; wait"])
    try:
        deadline = time.monotonic() + 5
        while len(cg.pids()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        pids = cg.pids()
        assert p.pid in pids and len(pids) == 3
        for f in cg.procs_files():
            assert p.pid in _read_procs(os.path.dirname(f))

        assert cg.freezer_state() == "THAWED"
        cg.freeze()
        assert cg.freezer_state() == "FROZEN"
        v1 = _v1(cg)
        assert _read(os.path.join(v1.paths["freezer"], "freezer.state")) == "FROZEN"
        cg.thaw()
        assert cg.freezer_state() == "THAWED"

        st = cg.stats()
        assert st["pids"]["current"] == 3 and st["pids"]["limit"] == 50
        assert st["memory"]["limit"] == 256 << 20
        assert 0 < st["memory"]["usage"] < 256 << 20
        assert st["cpu"]["usage_total"] > 0
        assert st["cpu"]["usage_total"] >= st["cpu"]["usage_user"]
        assert cg.oom_killed() is False

        cg.kill_all(signal.SIGKILL)
        assert p.wait(timeout=5) == -signal.SIGKILL
        assert cg.pids() == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            p.kill()
        p.wait()
    cg.destroy()
    for f in cg.procs_files():
        assert not os.path.exists(os.path.dirname(f))


def test_kill_all_with_sigterm_reaches_every_process(host_cg: cgroups.CgroupManager) -> None:
    cg = host_cg
    cg.create()
    procs = [_spawn(cg.procs_files(), ["sleep", "60"]) for _ in range(3)]
    try:
        time.sleep(0.05)
        assert sorted(p.pid for p in procs) == cg.pids()
        cg.kill_all(signal.SIGTERM)
        assert [p.wait(timeout=5) for p in procs] == [-signal.SIGTERM] * 3
        assert cg.freezer_state() == "THAWED"
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()


def test_memory_limit_oom_kills(host_cg: cgroups.CgroupManager) -> None:
    cg = host_cg
    cg.create()
    res: dict[str, object] = {"limit": 20 << 20}
    v1 = _v1(cg)
    if os.path.exists(os.path.join(v1.paths["memory"], "memory.memsw.limit_in_bytes")):
        res["swap"] = 20 << 20  # no escape into swap
    cg.apply({"memory": res})
    code = "s = b'x' * (100 << 20); print(len(s))"
    p = _spawn(cg.procs_files(), [sys.executable, "-c", code], stdout=subprocess.PIPE)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL, out
    assert cg.oom_killed() is True
    st = cg.stats()["memory"]
    assert st["oom_kill"] >= 1
    assert 10 << 20 < st["max_usage"] <= 20 << 20


def test_v1_devices_deny_all_then_allow_null(host_cg: cgroups.CgroupManager, tmp_path: str) -> None:
    cg = _v1(host_cg)
    cg.create()
    cg.apply({"devices": [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]})
    listing = _read(os.path.join(cg.paths["devices"], "devices.list"))
    assert listing == "c 1:3 rwm"
    files = cg.procs_files()

    def run(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", script], preexec_fn=_joiner(files), capture_output=True, text=True,
            timeout=10,
        )  # fmt: skip

    ok = run("echo hi > /dev/null && echo fine")
    assert ok.returncode == 0 and ok.stdout == "fine\n", ok.stderr
    zero = run("head -c1 /dev/zero")
    assert zero.returncode != 0 and "Operation not permitted" in zero.stderr
    node = os.path.join(str(tmp_path), "zero2")
    mk = run(f"mknod {node} c 1 5")
    assert mk.returncode != 0 and "Operation not permitted" in mk.stderr
    assert not os.path.exists(node)
    # a later, wider rule set replaces the earlier one
    cg.apply({"devices": [{"allow": True, "type": "c", "major": 1, "access": "r"}]})
    assert run("head -c1 /dev/zero | wc -c").stdout.strip() == "1"


def test_hugetlb_limit(host_cg: cgroups.CgroupManager) -> None:
    assert LAYOUT is not None
    sizes = os.listdir("/sys/kernel/mm/hugepages")
    if not sizes:
        pytest.skip("kernel has no huge page sizes")
    kb = int(sizes[0].split("-")[1].rstrip("kB"))
    size = f"{kb // 1024}MB" if kb < 1 << 20 else f"{kb >> 20}GB"
    cg = host_cg
    cg.create()
    limit = kb * 1024 * 4
    cg.apply({"hugepageLimits": [{"pageSize": size, "limit": limit}]})
    v1 = _v1(cg)
    if "hugetlb" in v1.paths:
        f = os.path.join(v1.paths["hugetlb"], f"hugetlb.{size}.limit_in_bytes")
    else:
        assert v1.unified is not None
        f = os.path.join(v1.unified, f"hugetlb.{size}.max")
    assert int(_read(f)) == limit
    with pytest.raises(InvalidArgument, match=r"hugepageLimits\[0\]\.pageSize.*3MB"):
        cg.apply({"hugepageLimits": [{"pageSize": "3MB", "limit": 0}]})


def test_things_this_host_cannot_do_are_refused(host_cg: cgroups.CgroupManager) -> None:
    cg = host_cg
    cg.create()
    assert LAYOUT is not None
    if LAYOUT.kind == "hybrid":
        # hybrid: the unified dir has no memory controller
        with pytest.raises(InvalidArgument, match=r"linux\.resources\.unified\.memory\.max"):
            cg.apply({"unified": {"memory.max": "100"}})
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.memory\.limit"):
        cg.apply({"memory": {"limit": 0}})


# ---- cgroup v2 in the unified mount ----------------------------------------------------


def test_v2_device_filter_allows_null_only(v2_cg: V2Manager, tmp_path: str) -> None:
    cg = v2_cg
    cg.create()
    cg.apply({"devices": [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]})
    assert core.cgroup_device_filter_count(cg.path) == 1
    files = cg.procs_files()
    probe = (
        "import errno, os\n"
        "fd = os.open('/dev/null', os.O_WRONLY); os.write(fd, b'x'); os.close(fd)\n"
        "try:\n"
        "    os.open('/dev/zero', os.O_RDONLY)\n"
        "    print('zero-open')\n"
        "except PermissionError as e:\n"
        "    print('zero', errno.errorcode[e.errno])\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe], preexec_fn=_joiner(files), capture_output=True, text=True,
        timeout=10,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "zero EPERM\n"
    # outside the cgroup /dev/zero still opens
    os.close(os.open("/dev/zero", os.O_RDONLY))

    # re-apply replaces the program instead of stacking it; last match wins:
    # allow everything, then deny writes to 1:3
    cg.apply(
        {
            "devices": [
                {"allow": True},
                {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"},
            ]
        }
    )
    assert core.cgroup_device_filter_count(cg.path) == 1
    probe2 = (
        "import os\n"
        "os.close(os.open('/dev/zero', os.O_RDONLY))\n"
        "os.close(os.open('/dev/null', os.O_RDONLY))\n"
        "try:\n"
        "    os.open('/dev/null', os.O_WRONLY)\n"
        "    print('null-w-open')\n"
        "except PermissionError:\n"
        "    print('null-w-denied')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe2], preexec_fn=_joiner(files), capture_output=True,
        text=True, timeout=10,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "null-w-denied\n"


def test_v2_freeze_kill_pids_destroy(v2_cg: V2Manager) -> None:
    cg = v2_cg
    cg.create()
    p = _spawn(cg.procs_files(), ["sleep", "60"])
    try:
        time.sleep(0.05)
        assert cg.pids() == [p.pid]
        cg.freeze()
        assert cg.freezer_state() == "FROZEN"
        assert "frozen 1" in _read(os.path.join(cg.path, "cgroup.events"))
        cg.thaw()
        assert cg.freezer_state() == "THAWED"
        assert cg.stats()["cpu"]["usage_total"] >= 0
        cg.kill_all()
        assert p.wait(timeout=5) == -signal.SIGKILL
        assert cg.pids() == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            p.kill()
        p.wait()
    cg.destroy()
    assert not os.path.exists(cg.path)


def test_v2_refuses_v1_only_settings(v2_cg: V2Manager) -> None:
    cg = v2_cg
    cg.create()
    with pytest.raises(InvalidArgument, match=r"memory\.swappiness: not available on cgroup v2"):
        cg.apply({"memory": {"swappiness": 10}})
    assert LAYOUT is not None and LAYOUT.unified is not None
    if "pids" not in LAYOUT.unified.controllers:
        with pytest.raises(InvalidArgument, match=r"resources\.pids\.limit: this host cannot"):
            cg.apply({"pids": {"limit": 10}})  # no pids controller in this unified mount
