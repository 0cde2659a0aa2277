"""OCI spec -> SpawnConfig: flags, masks, numbers, paths."""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any

import pytest

from pyrt.errors import FailedPrecondition, InvalidArgument
from pyrt.runtime import translate as t
from pyrt.runtime.capabilities import CAPS, caps_to_mask, kernel_last_cap, mask_to_caps
from pyrt.runtime.default_spec import default_spec


def spec_for(tmp_path: Path, **linux: Any) -> dict[str, Any]:
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    spec = default_spec()
    spec["process"]["terminal"] = False
    spec["linux"].update(linux)
    return spec


def convert(spec: dict[str, Any], bundle: Path, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "exec_fifo": "/run/x/exec.fifo",
        "console_fd": None,
        "preserve_fds": 0,
        "cgroup_procs": ["/sys/fs/cgroup/x/cgroup.procs"],
        "barrier": False,
        "state_json": '{"id": "x"}',
        "cgroup_v2": True,
    }
    args.update(kw)
    return t.to_spawn_config(spec, str(bundle), **args)


# -- mount options


@pytest.mark.parametrize(
    ("options", "flags", "propagation", "data"),
    [
        ([], 0, 0, None),
        (["ro"], t.MS_RDONLY, 0, None),
        (["ro", "rw"], 0, 0, None),
        (["nosuid", "nodev", "noexec"], t.MS_NOSUID | t.MS_NODEV | t.MS_NOEXEC, 0, None),
        (["nosuid", "suid", "nodev", "dev", "noexec", "exec"], 0, 0, None),
        (["sync", "dirsync"], t.MS_SYNCHRONOUS | t.MS_DIRSYNC, 0, None),
        (["sync", "async"], 0, 0, None),
        (["remount", "ro"], t.MS_REMOUNT | t.MS_RDONLY, 0, None),
        (["mand"], t.MS_MANDLOCK, 0, None),
        (["mand", "nomand"], 0, 0, None),
        (["noatime", "nodiratime"], t.MS_NOATIME | t.MS_NODIRATIME, 0, None),
        (["noatime", "atime", "nodiratime", "diratime"], 0, 0, None),
        (["relatime"], t.MS_RELATIME, 0, None),
        (["relatime", "norelatime"], 0, 0, None),
        (["strictatime"], t.MS_STRICTATIME, 0, None),
        (["strictatime", "nostrictatime"], 0, 0, None),
        (["bind"], t.MS_BIND, 0, None),
        (["rbind"], t.MS_BIND | t.MS_REC, 0, None),
        (["private"], 0, t.MS_PRIVATE, None),
        (["rprivate"], 0, t.MS_PRIVATE | t.MS_REC, None),
        (["shared"], 0, t.MS_SHARED, None),
        (["rshared"], 0, t.MS_SHARED | t.MS_REC, None),
        (["slave"], 0, t.MS_SLAVE, None),
        (["rslave"], 0, t.MS_SLAVE | t.MS_REC, None),
        (["unbindable"], 0, t.MS_UNBINDABLE, None),
        (["runbindable"], 0, t.MS_UNBINDABLE | t.MS_REC, None),
        (["shared", "rslave"], 0, t.MS_SLAVE | t.MS_REC, None),
        (
            ["nosuid", "mode=755", "size=65536k", "strictatime"],
            t.MS_NOSUID | t.MS_STRICTATIME,
            0,
            "mode=755,size=65536k",
        ),
        (["newinstance", "ptmxmode=0666", "gid=5"], 0, 0, "newinstance,ptmxmode=0666,gid=5"),
    ],
)
def test_mount_options(options: list[str], flags: int, propagation: int, data: str | None) -> None:
    assert t.mount_options(options) == (flags, propagation, data)


def test_flag_values_match_linux() -> None:
    # Values from <sys/mount.h>; a typo here would mount the wrong thing.
    assert (t.MS_RDONLY, t.MS_NOSUID, t.MS_NODEV, t.MS_NOEXEC) == (1, 2, 4, 8)
    assert (t.MS_REMOUNT, t.MS_BIND, t.MS_REC) == (32, 4096, 16384)
    assert (t.MS_PRIVATE, t.MS_SLAVE, t.MS_SHARED) == (0x40000, 0x80000, 0x100000)
    assert (t.CLONE_NEWNS, t.CLONE_NEWPID, t.CLONE_NEWNET) == (0x20000, 0x20000000, 0x40000000)
    assert (t.CLONE_NEWUSER, t.CLONE_NEWCGROUP, t.CLONE_NEWTIME) == (0x10000000, 0x2000000, 0x80)


def test_mounts_of_default_spec(tmp_path: Path) -> None:
    cfg = convert(spec_for(tmp_path), tmp_path)
    mounts = {m["target"]: m for m in cfg["mounts"]}
    assert list(mounts) == [
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
    ]  # fmt: skip
    assert mounts["/proc"] == {
        "target": "/proc", "source": "proc", "fstype": "proc", "data": None, "flags": 0,
        "propagation": 0,
    }  # fmt: skip
    assert mounts["/dev"]["fstype"] == "tmpfs"
    assert mounts["/dev"]["data"] == "mode=755,size=65536k"
    assert mounts["/dev"]["flags"] == t.MS_NOSUID | t.MS_STRICTATIME
    assert mounts["/sys"]["flags"] == t.MS_NOSUID | t.MS_NOEXEC | t.MS_NODEV | t.MS_RDONLY
    cg = mounts["/sys/fs/cgroup"]
    assert cg["fstype"] == "cgroup2"
    assert cg["flags"] == (t.MS_NOSUID | t.MS_NOEXEC | t.MS_NODEV | t.MS_RELATIME | t.MS_RDONLY)


def test_bind_mounts(tmp_path: Path) -> None:
    spec = spec_for(tmp_path)
    spec["mounts"] = [
        {"destination": "/a", "type": "bind", "source": "data", "options": ["ro"]},
        {"destination": "/b", "type": "none", "source": "/srv", "options": ["rbind", "rprivate"]},
        {"destination": "/c", "source": "/srv", "options": ["bind", "nosuid"]},
    ]
    m = convert(spec, tmp_path)["mounts"]
    assert m[0] == {
        "target": "/a", "source": f"{tmp_path}/data", "fstype": None, "data": None,
        "flags": t.MS_BIND | t.MS_RDONLY, "propagation": 0,
    }  # fmt: skip
    assert m[1]["fstype"] is None
    assert m[1]["source"] == "/srv"
    assert m[1]["flags"] == t.MS_BIND | t.MS_REC
    assert m[1]["propagation"] == t.MS_PRIVATE | t.MS_REC
    assert m[2]["flags"] == t.MS_BIND | t.MS_NOSUID
    assert m[2]["fstype"] is None


def test_bind_mount_without_source(tmp_path: Path) -> None:
    spec = spec_for(tmp_path)
    spec["mounts"] = [{"destination": "/a", "type": "bind"}]
    with pytest.raises(InvalidArgument, match=r"config.json: mounts\[0\].source: a bind mount"):
        convert(spec, tmp_path)


def test_mount_without_type(tmp_path: Path) -> None:
    spec = spec_for(tmp_path)
    spec["mounts"] = [{"destination": "/a", "source": "x"}]
    with pytest.raises(InvalidArgument, match=r"config.json: mounts\[0\].type: is required"):
        convert(spec, tmp_path)


def test_cgroup_mount_v1_without_dirs(tmp_path: Path) -> None:
    cfg = convert(spec_for(tmp_path), tmp_path, cgroup_v2=False)
    cg = [m for m in cfg["mounts"] if m["target"] == "/sys/fs/cgroup"]
    assert cg == [
        {
            "target": "/sys/fs/cgroup", "source": "tmpfs", "fstype": "tmpfs", "data": "mode=755",
            "flags": t.MS_NOSUID | t.MS_NOEXEC | t.MS_NODEV | t.MS_RDONLY, "propagation": 0,
        }
    ]  # fmt: skip


def test_cgroup_mount_v1_with_dirs(tmp_path: Path) -> None:
    dirs = {
        "memory": "/sys/fs/cgroup/memory/pyrt/c1",
        "cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/pyrt/c1",
        "name=systemd": "/sys/fs/cgroup/systemd/pyrt/c1",
        "unified": "/sys/fs/cgroup/unified/pyrt/c1",
    }
    cfg = convert(spec_for(tmp_path), tmp_path, cgroup_v2=False, cgroup_dirs=dirs)
    cg = [m for m in cfg["mounts"] if m["target"].startswith("/sys/fs/cgroup")]
    base = t.MS_NOSUID | t.MS_NOEXEC | t.MS_NODEV
    assert cg[0]["fstype"] == "tmpfs"
    assert cg[0]["flags"] == base  # writable until the mount points exist
    binds = cg[1:-1]
    assert [(m["target"], m["source"]) for m in binds] == [
        ("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/pyrt/c1"),
        ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/pyrt/c1"),
        ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/systemd/pyrt/c1"),
        ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified/pyrt/c1"),
    ]
    for m in binds:
        assert m["fstype"] is None
        assert m["flags"] == t.MS_BIND | t.MS_REC | base | t.MS_RDONLY
    assert cg[-1] == {
        "target": "/sys/fs/cgroup", "source": "tmpfs", "fstype": "tmpfs", "data": "mode=755",
        "flags": t.MS_REMOUNT | t.MS_RDONLY | base, "propagation": 0,
    }  # fmt: skip


def test_cgroup_mount_v1_rw_needs_no_remount(tmp_path: Path) -> None:
    spec = spec_for(tmp_path)
    spec["mounts"] = [{"destination": "/sys/fs/cgroup", "type": "cgroup", "options": ["rw"]}]
    cfg = convert(spec, tmp_path, cgroup_v2=False, cgroup_dirs={"pids": "/x/pids"})
    assert len(cfg["mounts"]) == 2
    assert cfg["mounts"][1]["flags"] == t.MS_BIND | t.MS_REC


# -- namespaces, ids, rootfs


def test_namespace_flags(tmp_path: Path) -> None:
    cfg = convert(spec_for(tmp_path), tmp_path)
    want = (
        t.CLONE_NEWPID | t.CLONE_NEWNET | t.CLONE_NEWIPC | t.CLONE_NEWUTS | t.CLONE_NEWNS
        | t.CLONE_NEWCGROUP
    )  # fmt: skip
    assert cfg["new_ns"] == want
    assert cfg["join"] == []
    assert cfg["uid_map"] is None and cfg["gid_map"] is None


def test_joined_namespaces_user_first(tmp_path: Path) -> None:
    ns = [
        {"type": "network", "path": "/proc/1/ns/net"},
        {"type": "mount"},
        {"type": "ipc", "path": "/proc/1/ns/ipc"},
        {"type": "user", "path": "/proc/1/ns/user"},
    ]
    cfg = convert(spec_for(tmp_path, namespaces=ns), tmp_path)
    assert cfg["new_ns"] == t.CLONE_NEWNS
    assert cfg["join"] == [
        (t.CLONE_NEWUSER, "/proc/1/ns/user"),
        (t.CLONE_NEWIPC, "/proc/1/ns/ipc"),
        (t.CLONE_NEWNET, "/proc/1/ns/net"),
    ]


def test_id_maps_for_new_user_namespace(tmp_path: Path) -> None:
    spec = default_spec(rootless=True)
    spec["process"]["terminal"] = False
    spec["linux"]["uidMappings"] = [
        {"containerID": 0, "hostID": 100000, "size": 1000},
        {"containerID": 1000, "hostID": 1000, "size": 1},
    ]
    (tmp_path / "rootfs").mkdir()
    cfg = convert(spec, tmp_path)
    assert cfg["new_ns"] & t.CLONE_NEWUSER
    assert cfg["uid_map"] == "0 100000 1000\n1000 1000 1\n"
    assert cfg["gid_map"] == f"0 {os.getegid()} 1\n"


def test_rootfs_and_propagation(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    os.symlink("rootfs", tmp_path / "link")
    spec = spec_for(tmp_path)
    spec["root"] = {"path": "link"}
    cfg = convert(spec, tmp_path)
    assert cfg["rootfs"] == str(tmp_path.resolve() / "rootfs")
    assert cfg["rootfs_readonly"] is False
    assert cfg["rootfs_propagation"] == t.MS_SLAVE | t.MS_REC
    spec["root"]["readonly"] = True
    spec["linux"]["rootfsPropagation"] = "rshared"
    cfg = convert(spec, tmp_path, no_pivot=True)
    assert cfg["rootfs_readonly"] is True
    assert cfg["no_pivot"] is True
    assert cfg["rootfs_propagation"] == t.MS_SHARED | t.MS_REC


def test_relative_bundle_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_for(tmp_path)
    monkeypatch.chdir(tmp_path.parent)
    cfg = convert(spec, Path(tmp_path.name))
    assert cfg["rootfs"] == str(tmp_path.resolve() / "rootfs")


# -- process


def test_process_fields(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, sysctl={"net.ipv4.ip_forward": "1"})
    spec["process"].update(
        args=["/bin/echo", "hi"],
        env=["A=1"],
        cwd="/tmp",
        user={"uid": 1000, "gid": 100, "additionalGids": [10, 20], "umask": 0o077},
        oomScoreAdj=-500,
        rlimits=[
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        ],
    )
    spec["domainname"] = "example.org"
    cfg = convert(spec, tmp_path, stdio=(3, 4, 5), preserve_fds=2, barrier=True)
    assert cfg["argv"] == ["/bin/echo", "hi"]
    assert cfg["env"] == ["A=1"]
    assert cfg["cwd"] == "/tmp"
    assert (cfg["uid"], cfg["gid"], cfg["additional_gids"]) == (1000, 100, [10, 20])
    assert cfg["umask"] == 0o077
    assert cfg["oom_score_adj"] == -500
    assert cfg["rlimits"] == [
        (resource.RLIMIT_NOFILE, 512, 1024),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    assert cfg["no_new_privileges"] is True
    assert cfg["hostname"] == "pyrt"
    assert cfg["domainname"] == "example.org"
    assert cfg["sysctl"] == {"net.ipv4.ip_forward": "1"}
    assert cfg["stdio"] == (3, 4, 5)
    assert cfg["preserve_fds"] == 2
    assert cfg["barrier"] is True
    assert cfg["exec_fifo"] == "/run/x/exec.fifo"
    assert cfg["cgroup_procs"] == ["/sys/fs/cgroup/x/cgroup.procs"]
    assert cfg["state_json"] == '{"id": "x"}'
    assert cfg["seccomp_bpf"] is None
    assert cfg["terminal"] is False
    assert "console_fd" not in cfg


def test_process_defaults(tmp_path: Path) -> None:
    spec = spec_for(tmp_path)
    del spec["process"]["user"], spec["process"]["rlimits"], spec["process"]["noNewPrivileges"]
    spec["process"].pop("env")
    cfg = convert(spec, tmp_path)
    assert (cfg["uid"], cfg["gid"]) == (0, 0)
    assert cfg["umask"] == 0o022
    assert cfg["rlimits"] == []
    assert cfg["env"] == []
    assert cfg["no_new_privileges"] is False
    assert cfg["oom_score_adj"] is None
    assert "stdio" not in cfg


def test_rlimit_numbers() -> None:
    for name in ("RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE", "RLIMIT_RTTIME"):
        assert t.rlimit_number(name) == getattr(resource, name)
    assert t.rlimit_number("RLIMIT_LOCKS") == 10


def test_terminal_and_console(tmp_path: Path) -> None:
    spec = spec_for(tmp_path)
    spec["process"]["terminal"] = True
    with pytest.raises(InvalidArgument, match=r"process.terminal: is true, so a console socket"):
        convert(spec, tmp_path)
    with pytest.raises(InvalidArgument, match=r"process.terminal: is true"):
        convert(spec, tmp_path, console_fd=-1)
    cfg = convert(spec, tmp_path, console_fd=7)
    assert cfg["terminal"] is True and cfg["console_fd"] == 7
    spec["process"]["terminal"] = False
    with pytest.raises(InvalidArgument, match=r"console socket was given but terminal is false"):
        convert(spec, tmp_path, console_fd=7)
    assert "console_fd" not in convert(spec, tmp_path, console_fd=-1)


# -- capabilities


def test_cap_table() -> None:
    assert CAPS["CAP_CHOWN"] == 0
    assert CAPS["CAP_KILL"] == 5
    assert CAPS["CAP_NET_BIND_SERVICE"] == 10
    assert CAPS["CAP_SYS_ADMIN"] == 21
    assert CAPS["CAP_AUDIT_WRITE"] == 29
    assert CAPS["CAP_CHECKPOINT_RESTORE"] == 40
    assert len(CAPS) == 41 and sorted(CAPS.values()) == list(range(41))


def test_caps_to_mask() -> None:
    assert caps_to_mask([], "f") == 0
    assert caps_to_mask(["CAP_CHOWN", "CAP_KILL"], "f", last_cap=40) == 0b100001
    assert caps_to_mask(["CAP_KILL", "CAP_KILL"], "f", last_cap=40) == 1 << 5
    assert mask_to_caps((1 << 5) | (1 << 21)) == ["CAP_KILL", "CAP_SYS_ADMIN"]
    with pytest.raises(InvalidArgument, match=r"^x.json: caps\[1\]: unknown capability 'CAP_NOPE'"):
        caps_to_mask(["CAP_KILL", "CAP_NOPE"], "x.json: caps")


def test_caps_unknown_to_kernel_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="pyrt.runtime"):
        mask = caps_to_mask(["CAP_KILL", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"], "f", last_cap=38)
    assert mask == 1 << 5
    assert "CAP_BPF is not supported by the running kernel" in caplog.text
    assert "CAP_CHECKPOINT_RESTORE" in caplog.text


def test_kernel_last_cap() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert kernel_last_cap() == int(f.read())


def test_capability_masks_in_config(tmp_path: Path) -> None:
    spec = spec_for(tmp_path)
    want = (1 << 29) | (1 << 5) | (1 << 10)
    assert convert(spec, tmp_path)["capabilities"] == (want, want, want, want, want)
    spec["process"]["capabilities"] = {"bounding": ["CAP_SYS_ADMIN"], "effective": ["CAP_KILL"]}
    assert convert(spec, tmp_path)["capabilities"] == (1 << 21, 1 << 5, 0, 0, 0)
    del spec["process"]["capabilities"]
    assert convert(spec, tmp_path)["capabilities"] is None


# -- devices, paths, hooks


def test_devices(tmp_path: Path) -> None:
    spec = spec_for(
        tmp_path,
        devices=[
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600,
             "uid": 1, "gid": 2},
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o660},
            {"path": "/dev/ttyX", "type": "u", "major": 4, "minor": 1},
            {"path": "/dev/fifo", "type": "p"},
        ],
    )  # fmt: skip
    devs = {d["path"]: d for d in convert(spec, tmp_path)["devices"]}
    for path, major, minor in (
        ("/dev/zero", 1, 5), ("/dev/full", 1, 7), ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
    ):  # fmt: skip
        assert devs[path] == {
            "path": path, "type": "c", "major": major, "minor": minor, "mode": 0o666,
            "uid": 0, "gid": 0,
        }  # fmt: skip
    assert devs["/dev/null"]["mode"] == 0o660
    assert devs["/dev/fuse"] == {
        "path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "mode": 0o600,
        "uid": 1, "gid": 2,
    }  # fmt: skip
    assert devs["/dev/ttyX"]["type"] == "c"
    assert devs["/dev/fifo"]["type"] == "p"
    assert len(devs) == 9


def test_paths_and_hooks(tmp_path: Path) -> None:
    spec = spec_for(tmp_path)
    spec["hooks"] = {
        "startContainer": [
            {"path": "/bin/hook", "args": ["hook", "x"], "env": ["A=1"], "timeout": 5},
            {"path": "/bin/other"},
        ],
        "prestart": [{"path": "/bin/not-here"}],
    }
    cfg = convert(spec, tmp_path)
    assert cfg["masked_paths"] == spec["linux"]["maskedPaths"]
    assert cfg["readonly_paths"] == spec["linux"]["readonlyPaths"]
    assert cfg["start_hooks"] == [
        {"path": "/bin/hook", "args": ["hook", "x"], "env": ["A=1"], "timeout": 5},
        {"path": "/bin/other", "args": ["/bin/other"], "env": [], "timeout": 0},
    ]


def test_seccomp_in_config(tmp_path: Path) -> None:
    spec = spec_for(
        tmp_path,
        seccomp={
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
        },
    )
    cfg = convert(spec, tmp_path)
    assert isinstance(cfg["seccomp_bpf"], bytes)
    assert len(cfg["seccomp_bpf"]) > 0 and len(cfg["seccomp_bpf"]) % 8 == 0
    assert cfg["seccomp_flags"] == 2


# -- exec


def test_exec_config_joins_only_foreign_namespaces(tmp_path: Path) -> None:
    # Our own pid as the "container": every namespace is the host's, so nothing to join.
    spec = spec_for(tmp_path)
    process = {
        "args": ["ps"], "cwd": "/", "env": ["A=1"], "user": {"uid": 5, "gid": 6},
        "capabilities": {"bounding": ["CAP_KILL"]}, "noNewPrivileges": True,
    }  # fmt: skip
    cfg = t.to_exec_config(
        process, spec, os.getpid(), console_fd=None, preserve_fds=1, cgroup_procs=["/x"]
    )
    assert cfg["join"] == []
    assert cfg["target_pid"] == os.getpid()
    assert cfg["new_ns"] == 0
    assert "rootfs" not in cfg
    assert (cfg["argv"], cfg["env"], cfg["cwd"]) == (["ps"], ["A=1"], "/")
    assert (cfg["uid"], cfg["gid"]) == (5, 6)
    assert cfg["capabilities"] == (1 << 5, 0, 0, 0, 0)
    assert cfg["no_new_privileges"] is True
    assert cfg["preserve_fds"] == 1
    assert cfg["cgroup_procs"] == ["/x"]


def test_exec_join_list_order_and_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend every namespace of pid 4242 differs from ours.
    def fake_id(path: str) -> tuple[int, int]:
        return (1, hash(path) & 0xFFFF) if path.startswith("/proc/4242/") else (0, 0)

    monkeypatch.setattr(t, "_ns_id", fake_id)
    spec = {"linux": {"namespaces": [
        {"type": "mount"}, {"type": "network", "path": "/var/run/netns/x"}, {"type": "pid"},
        {"type": "user"}, {"type": "uts"},
    ]}}  # fmt: skip
    assert t.exec_join_list(spec, 4242) == [
        (t.CLONE_NEWUSER, "/proc/4242/ns/user"),
        (t.CLONE_NEWUTS, "/proc/4242/ns/uts"),
        (t.CLONE_NEWNET, "/proc/4242/ns/net"),
        (t.CLONE_NEWPID, "/proc/4242/ns/pid"),
        (t.CLONE_NEWNS, "/proc/4242/ns/mnt"),
    ]


def test_exec_into_gone_process(tmp_path: Path) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    spec = spec_for(tmp_path)
    with pytest.raises(FailedPrecondition, match=rf"container process {pid} is not running"):
        t.to_exec_config(
            {"args": ["x"], "cwd": "/"}, spec, pid, console_fd=None, preserve_fds=0,
            cgroup_procs=[],
        )  # fmt: skip


def test_exec_uses_container_seccomp(tmp_path: Path) -> None:
    spec = spec_for(
        tmp_path,
        seccomp={
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
        },
    )
    cfg = t.to_exec_config(
        {"args": ["x"], "cwd": "/", "terminal": True}, spec, os.getpid(), console_fd=9,
        preserve_fds=0, cgroup_procs=[],
    )  # fmt: skip
    assert cfg["seccomp_bpf"] and cfg["terminal"] is True and cfg["console_fd"] == 9
