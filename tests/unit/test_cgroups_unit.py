"""cgroups without root: layout detection from mountinfo texts, cgroupsPath, the
resource validation and translation, shares -> weight, the FakeManager."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from pyrt.errors import FailedPrecondition, InvalidArgument, SystemError_
from pyrt.runtime import cgroups
from pyrt.runtime.cgroups import FakeManager, V1Manager, V2Manager

HYBRID = """\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""

PURE_V2 = """\
25 30 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw
"""

PURE_V1 = """\
32 31 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 31 0:30 /docker/abc /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
"""

NONE = "22 28 0:21 / /sys rw - sysfs sysfs rw\n"


def ctrls(*names: str) -> Any:
    return lambda mountpoint: frozenset(names)


def test_hybrid_layout() -> None:
    lay = cgroups.layout_from_mountinfo(HYBRID, ctrls("hugetlb"))
    assert lay.kind == "hybrid"
    assert set(lay.v1) == {"cpu", "cpuacct", "cpuset", "memory", "name=systemd"}
    assert lay.v1["cpu"] is lay.v1["cpuacct"]  # co-mounted: one hierarchy
    assert lay.v1["cpu"].mountpoint == "/sys/fs/cgroup/cpu,cpuacct"
    assert lay.unified is not None and lay.unified.mountpoint == "/sys/fs/cgroup/unified"
    assert lay.unified.controllers == {"hugetlb"}


def test_pure_v2_and_v1_layouts() -> None:
    v2 = cgroups.layout_from_mountinfo(PURE_V2, ctrls("cpu", "memory", "pids"))
    assert v2.kind == "v2" and v2.v1 == {}
    assert v2.unified is not None and "memory" in v2.unified.controllers
    v1 = cgroups.layout_from_mountinfo(PURE_V1, ctrls())
    assert v1.kind == "v1" and v1.unified is None
    assert v1.v1["pids"].root == "/docker/abc"
    with pytest.raises(FailedPrecondition, match="no cgroup hierarchy"):
        cgroups.layout_from_mountinfo(NONE, ctrls())
    # only a named (controller-less) v1 hierarchy next to cgroup2: that is v2
    only_named = PURE_V2 + "40 31 0:37 / /x rw - cgroup cgroup rw,name=systemd\n"
    assert cgroups.layout_from_mountinfo(only_named, ctrls()).kind == "v2"


def test_mountinfo_escapes_and_garbage() -> None:
    text = r"41 31 0:38 / /mnt/with\040space rw - cgroup2 cgroup2 rw" + "\n"
    (m,) = cgroups.parse_mountinfo(text)
    assert m.mountpoint == "/mnt/with space"
    with pytest.raises(InvalidArgument, match="mountinfo line 1"):
        cgroups.parse_mountinfo("not a mountinfo line\n")


def test_detect_layout_with_a_root_override(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(PURE_V2)
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    lay = cgroups.detect_layout(str(tmp_path))
    assert lay.kind == "v2"
    assert lay.unified is not None
    assert lay.unified.controllers == {"cpuset", "cpu", "io", "memory", "pids"}


def test_proc_cgroup_parse() -> None:
    text = "4:memory:/a/b\n2:cpu,cpuacct:/c\n1:name=systemd:/s\n0::/u\n"
    own = cgroups.parse_proc_cgroup(text)
    assert own == {"memory": "/a/b", "cpu": "/c", "cpuacct": "/c", "name=systemd": "/s", "": "/u"}


def test_cgroups_path_forms() -> None:
    assert cgroups.parse_cgroups_path(None, "ctr1") == (True, "pyrt/ctr1")
    assert cgroups.parse_cgroups_path("/a/b", "x") == (True, "a/b")
    assert cgroups.parse_cgroups_path("a//b/", "x") == (False, "a/b")
    with pytest.raises(InvalidArgument, match="systemd form"):
        cgroups.parse_cgroups_path("system.slice:pyrt:abc", "x")
    with pytest.raises(InvalidArgument, match=r"'\.\.'"):
        cgroups.parse_cgroups_path("/a/../../etc", "x")
    with pytest.raises(InvalidArgument, match="below the root"):
        cgroups.parse_cgroups_path("/", "x")
    with pytest.raises(InvalidArgument, match="container id"):
        cgroups.parse_cgroups_path(None, "a/b")


def _fake_root(tmp_path: Path, mountinfo: str, own: str) -> str:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(mountinfo)
    (tmp_path / "proc/self/cgroup").write_text(own)
    return str(tmp_path)


def test_open_cgroup_paths_on_each_layout(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, HYBRID, "3:cpuset:/\n2:cpu,cpuacct:/me\n4:memory:/m/e\n0::/u\n")
    lay = cgroups.layout_from_mountinfo(HYBRID, ctrls("hugetlb"))
    cg = cgroups.open_cgroup("/x/y", "id", lay, proc_root=root)
    assert isinstance(cg, V1Manager)
    assert cg.paths["memory"] == "/sys/fs/cgroup/memory/x/y"
    assert cg.unified == "/sys/fs/cgroup/unified/x/y"
    rel = cgroups.open_cgroup("x/y", "id", lay, proc_root=root)
    assert isinstance(rel, V1Manager)
    assert rel.paths["memory"] == "/sys/fs/cgroup/memory/m/e/x/y"
    assert rel.paths["cpu"] == "/sys/fs/cgroup/cpu,cpuacct/me/x/y"
    assert rel.unified == "/sys/fs/cgroup/unified/u/x/y"
    procs = rel.procs_files()
    assert len(procs) == len(set(procs)) == 5  # cpu+cpuacct share one dir
    v2 = cgroups.open_cgroup(None, "c1", cgroups.layout_from_mountinfo(PURE_V2, ctrls()))
    assert isinstance(v2, V2Manager)
    assert v2.path == "/sys/fs/cgroup/pyrt/c1" and v2.procs_files() == [
        "/sys/fs/cgroup/pyrt/c1/cgroup.procs"
    ]
    # a bind-mounted hierarchy (root /docker/abc): our own path is inside it
    root1 = tmp_path / "v1"
    _fake_root(root1, PURE_V1, "2:pids:/docker/abc/inner\n1:memory:/\n")
    lay1 = cgroups.layout_from_mountinfo(PURE_V1, ctrls())
    sub = cgroups.open_cgroup("sub", "id", lay1, proc_root=str(root1))
    assert isinstance(sub, V1Manager)
    assert sub.paths["pids"] == "/sys/fs/cgroup/pids/inner/sub"


def test_shares_to_weight() -> None:
    assert cgroups.shares_to_weight(2) == 1
    assert cgroups.shares_to_weight(1024) == 39
    assert cgroups.shares_to_weight(262144) == 10000
    assert cgroups.shares_to_weight(512) == 1 + (510 * 9999) // 262142


@pytest.mark.parametrize(
    ("res", "message"),
    [
        ({"memory": {"limit": 0}}, r"linux\.resources\.memory\.limit: must be positive or -1"),
        ({"memory": {"limit": "1g"}}, r"memory\.limit: must be an integer"),
        ({"memory": {"limit": True}}, r"memory\.limit: must be an integer"),
        ({"memory": {"limit": 100, "swap": 50}}, r"memory\.swap: must be at least"),
        ({"memory": {"swappiness": 101}}, r"memory\.swappiness: must be between 0 and 100"),
        ({"memory": {"disableOOMKiller": "yes"}}, r"disableOOMKiller: must be a boolean"),
        ({"memory": {"limt": 5}}, r"memory\.limt: unknown field"),
        ({"cpu": {"shares": 1}}, r"cpu\.shares: must be between 2 and 262144"),
        ({"cpu": {"quota": 10}}, r"cpu\.quota: must be -1 or at least 1000"),
        ({"cpu": {"period": 10**7}}, r"cpu\.period: must be between"),
        ({"cpu": {"cpus": "0-3;7"}}, r"cpu\.cpus: must be a list like"),
        ({"pids": {"limit": -5}}, r"pids\.limit: must be >= -1"),
        ({"devices": {"allow": True}}, r"linux\.resources\.devices: must be a list"),
        ({"devices": [{"type": "c"}]}, r"devices\[0\]\.allow: must be a boolean"),
        ({"devices": [{"allow": True, "type": "x"}]}, r"devices\[0\]\.type: must be"),
        ({"devices": [{"allow": True, "access": "rx"}]}, r"devices\[0\]\.access: must be made"),
        ({"devices": [{"allow": True, "major": -7}]}, r"devices\[0\]\.major: must be between"),
        ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]}, r"\[0\]\.pageSize: must look"),
        ({"hugepageLimits": [{"pageSize": "2MB"}]}, r"hugepageLimits\[0\]\.limit: missing"),
        ({"unified": {"../etc": "1"}}, r"unified\.\.\./etc: not a controller file"),
        ({"unified": {"cgroup.procs": "1"}}, r"unified\.cgroup\.procs: not a controller"),
        ({"unified": {"memory.max": 5}}, r"unified\.memory\.max: value must be a string"),
        ({"blockIO": {"weight": 10}}, r"linux\.resources\.blockIO: not supported"),
        ({"bogus": {}}, r"linux\.resources\.bogus: unknown field"),
        ("memory", r"linux\.resources: must be an object"),
    ],
)
def test_validation_names_the_field(res: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        cgroups.validate_resources(res)


def test_validation_accepts_the_spec_shapes() -> None:
    r = cgroups.validate_resources(
        {
            "memory": {"limit": -1, "kernel": 5, "kernelTCP": 6, "swap": -1, "reservation": 0},
            "cpu": {"shares": 1024, "quota": -1, "period": 100000, "cpus": "0-3,5", "mems": ""},
            "pids": {"limit": 0},
            "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c",
                         "major": 1, "minor": 3, "access": "wr"}],
            "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
            "unified": {"memory.high": "max"},
            "blockIO": {},
        }
    )  # fmt: skip
    assert r.memory_limit == -1 and r.cpus == "0-3,5" and r.mems is None
    assert r.devices is not None
    assert [d.v1_line() for d in r.devices] == ["a", "c 1:3 rw"]
    assert r.devices[1].as_tuple() == ("c", 1, 3, "rw", True)
    assert cgroups.DeviceRule(True, "b", 8, -1, "r").v1_line() == "b 8:* r"
    assert r.hugepages == [("2MB", 0)] and r.unified == {"memory.high": "max"}


# ---- translation into writes, on a fake cgroupfs in a tmpdir --------------------------


class Recorder:
    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []
        self.filters: list[tuple[str, list[tuple[str, int, int, str, bool]]]] = []

    def cgroup_write_many(self, writes: list[tuple[str, str]]) -> None:
        self.writes.extend(writes)

    def cgroup_device_filter(
        self, cgroup_dir: str, rules: list[tuple[str, int, int, str, bool]]
    ) -> None:
        self.filters.append((cgroup_dir, rules))


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    r = Recorder()
    monkeypatch.setattr(cgroups._cc, "cgroup_write_many", r.cgroup_write_many)
    monkeypatch.setattr(cgroups._cc, "cgroup_device_filter", r.cgroup_device_filter)
    return r


def _files(d: Path, names: dict[str, str]) -> str:
    d.mkdir(parents=True, exist_ok=True)
    for n, v in names.items():
        (d / n).write_text(v + "\n")
    return str(d)


def test_v2_translation(tmp_path: Path, rec: Recorder) -> None:
    d = _files(
        tmp_path / "c",
        {f: "" for f in ("memory.max", "memory.low", "memory.swap.max", "cpu.weight",
                         "cpuset.cpus", "cpuset.mems", "pids.max", "hugetlb.2MB.max")}
        | {"cpu.max": "max 100000"},
    )  # fmt: skip
    cg = V2Manager(d)
    cg.apply(
        {
            "memory": {"limit": 100 << 20, "swap": 150 << 20, "reservation": 10},
            "cpu": {"shares": 1024, "quota": 50000, "cpus": "1", "mems": "0"},
            "pids": {"limit": -1},
            "devices": [{"allow": True, "type": "c", "major": 1, "minor": 3}],
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
        }
    )
    got = {os.path.basename(p): v for p, v in rec.writes}
    assert got == {
        "memory.max": str(100 << 20),
        "memory.low": "10",
        "memory.swap.max": str(50 << 20),
        "cpu.weight": "39",
        "cpu.max": "50000 100000",
        "cpuset.cpus": "1",
        "cpuset.mems": "0",
        "pids.max": "max",
        "hugetlb.2MB.max": str(4 << 20),
    }
    assert rec.filters == [(d, [("c", 1, 3, "rwm", True)])]
    # only the period: the quota already there is kept
    rec.writes.clear()
    (tmp_path / "c/cpu.max").write_text("20000 100000\n")
    cg.apply({"cpu": {"period": 200000}})
    assert rec.writes == [(os.path.join(d, "cpu.max"), "20000 200000")]


def test_v2_refusals(tmp_path: Path, rec: Recorder) -> None:
    cg = V2Manager(_files(tmp_path / "c", {"memory.max": "max"}))
    with pytest.raises(InvalidArgument, match=r"realtimeRuntime: not available on cgroup v2"):
        cg.apply({"cpu": {"realtimeRuntime": 100}})
    with pytest.raises(InvalidArgument, match=r"disableOOMKiller: not available on cgroup v2"):
        cg.apply({"memory": {"disableOOMKiller": True}})
    with pytest.raises(InvalidArgument, match=r"memory\.swap: needs memory\.limit"):
        cg.apply({"memory": {"swap": 100}})
    with pytest.raises(InvalidArgument, match=r"pids\.limit: this host cannot do it"):
        cg.apply({"pids": {"limit": 3}})
    with pytest.raises(InvalidArgument, match=r"unified\.io\.max: this host cannot do it"):
        cg.apply({"unified": {"io.max": "8:0 rbps=1"}})
    assert rec.writes == [] and rec.filters == []


def test_v1_translation_order(tmp_path: Path, rec: Recorder) -> None:
    mem = _files(
        tmp_path / "memory/c",
        {"memory.limit_in_bytes": "9223372036854771712",
         "memory.memsw.limit_in_bytes": "9223372036854771712",
         "memory.soft_limit_in_bytes": "0", "memory.swappiness": "60",
         "memory.oom_control": "oom_kill_disable 0"},
    )  # fmt: skip
    cpu = _files(tmp_path / "cpu/c", {"cpu.shares": "1024", "cpu.cfs_quota_us": "-1",
                                      "cpu.cfs_period_us": "100000"})  # fmt: skip
    dev = _files(tmp_path / "devices/c", {"devices.allow": "", "devices.deny": ""})
    pids = _files(tmp_path / "pids/c", {"pids.max": "max"})
    cg = V1Manager({"memory": mem, "cpu": cpu, "devices": dev, "pids": pids})
    cg.apply(
        {
            "memory": {"limit": 64 << 20, "swap": 128 << 20, "swappiness": 0,
                       "disableOOMKiller": True},
            "cpu": {"shares": 256, "quota": 5000, "period": 10000},
            "pids": {"limit": 5},
            "devices": [
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                {"allow": False, "type": "b", "major": 8, "access": "m"},
            ],
        }
    )  # fmt: skip
    rel = [(os.path.relpath(p, tmp_path), v) for p, v in rec.writes]
    assert rel == [
        # memsw is unlimited now: lower memory first, then memory+swap
        ("memory/c/memory.limit_in_bytes", str(64 << 20)),
        ("memory/c/memory.memsw.limit_in_bytes", str(128 << 20)),
        ("memory/c/memory.swappiness", "0"),
        ("memory/c/memory.oom_control", "1"),
        ("cpu/c/cpu.shares", "256"),
        ("cpu/c/cpu.cfs_period_us", "10000"),
        ("cpu/c/cpu.cfs_quota_us", "5000"),
        ("pids/c/pids.max", "5"),
        ("devices/c/devices.deny", "a"),
        ("devices/c/devices.allow", "c 1:3 rw"),
        ("devices/c/devices.deny", "b 8:* m"),
    ]
    # raising the limit above the current memsw: memsw goes first
    rec.writes.clear()
    (tmp_path / "memory/c/memory.memsw.limit_in_bytes").write_text(str(128 << 20))
    cg.apply({"memory": {"limit": 256 << 20, "swap": 512 << 20}})
    assert [os.path.basename(p) for p, _ in rec.writes] == [
        "memory.memsw.limit_in_bytes",
        "memory.limit_in_bytes",
    ]


def test_v1_refusals(tmp_path: Path, rec: Recorder) -> None:
    mem = _files(tmp_path / "memory/c", {"memory.limit_in_bytes": "1"})
    cg = V1Manager({"memory": mem})
    with pytest.raises(InvalidArgument, match=r"memory\.swap: this kernel has no swap accounting"):
        cg.apply({"memory": {"limit": 10, "swap": 20}})
    with pytest.raises(InvalidArgument, match=r"pids\.limit: the pids controller is not mounted"):
        cg.apply({"pids": {"limit": 3}})
    with pytest.raises(InvalidArgument, match=r"unified: needs cgroup v2"):
        cg.apply({"unified": {"memory.high": "1"}})
    with pytest.raises(InvalidArgument, match=r"hugepageLimits\[0\]: the hugetlb controller"):
        cg.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]})
    assert rec.writes == []


def test_v1_stats_from_files(tmp_path: Path) -> None:
    mem = _files(
        tmp_path / "memory/c",
        {"memory.usage_in_bytes": "4096", "memory.limit_in_bytes": "9223372036854771712",
         "memory.max_usage_in_bytes": "8192", "memory.failcnt": "3",
         "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2"},
    )  # fmt: skip
    pids = _files(tmp_path / "pids/c", {"pids.current": "4", "pids.max": "max"})
    cg = V1Manager({"memory": mem, "pids": pids})
    st = cg.stats()
    assert st["memory"] == {
        "usage": 4096, "limit": -1, "max_usage": 8192, "failcnt": 3, "oom_kill": 2,
    }  # fmt: skip
    assert st["pids"] == {"current": 4, "limit": -1}
    assert cg.oom_killed() is True
    with pytest.raises(FailedPrecondition, match="freezer controller is not mounted"):
        cg.freeze()


def test_state_round_trip() -> None:
    v1 = V1Manager({"memory": "/sys/fs/cgroup/memory/x"}, "/u/x", "/u")
    back = cgroups.CgroupManager.from_state(v1.to_state())
    assert isinstance(back, V1Manager) and back.to_state() == v1.to_state()
    v2 = V2Manager("/sys/fs/cgroup/x", "/sys/fs/cgroup")
    back2 = cgroups.from_state(v2.to_state())
    assert isinstance(back2, V2Manager) and back2.path == v2.path and back2.mount == v2.mount
    with pytest.raises(InvalidArgument, match="unknown kind"):
        cgroups.from_state({"kind": "v3"})
    with pytest.raises(InvalidArgument, match="paths must map"):
        cgroups.from_state({"kind": "v1", "paths": {"memory": 3}})


# ---- the fake ------------------------------------------------------------------------


def test_fake_manager_follows_the_protocol() -> None:
    cg = FakeManager("unit-1")
    assert isinstance(cg, cgroups.CgroupManager)
    with pytest.raises(FailedPrecondition):
        cg.freeze()
    cg.create()
    cg.apply({"memory": {"limit": 1 << 20}, "pids": {"limit": 9}})
    with pytest.raises(InvalidArgument, match=r"cpu\.shares"):
        cg.apply({"cpu": {"shares": 0}})
    cg.procs = [100, 101]
    st = cg.stats()
    assert st["memory"]["limit"] == 1 << 20 and st["pids"] == {"current": 2, "limit": 9}
    cg.freeze()
    assert cg.freezer_state() == "FROZEN"
    cg.thaw()
    assert cg.freezer_state() == "THAWED"
    assert cgroups.CgroupManager.from_state(cg.to_state()) is cg
    with pytest.raises(SystemError_, match="busy"):
        cg.destroy()
    cg.kill_all(signal.SIGTERM)
    assert cg.signals == [(100, signal.SIGTERM), (101, signal.SIGTERM)] and cg.pids() == [100, 101]
    cg.kill_all()
    assert cg.pids() == []
    assert cg.oom_killed() is False
    cg.destroy()
    assert cg.destroyed


def test_real_managers_satisfy_the_protocol() -> None:
    assert isinstance(V1Manager({"memory": "/x"}), cgroups.CgroupManager)
    assert isinstance(V2Manager("/x"), cgroups.CgroupManager)
    with pytest.raises(InvalidArgument, match="must be absolute"):
        V2Manager("relative")
