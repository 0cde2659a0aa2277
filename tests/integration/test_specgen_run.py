"""Specs from pyrt.containers.specgen, run by pyrt.runtime.Runtime on the real kernel:
Docker's capabilities, seccomp, masked and read-only paths, the image's user, the env,
the etc files and the init."""

from __future__ import annotations

import json
import os
import select
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from pyrt.containers.etcfiles import write_etc_files
from pyrt.containers.options import ContainerConfig, HostConfig
from pyrt.containers.specgen import generate_spec
from pyrt.runtime.runtime import Runtime
from pyrt.runtime.spec import load_spec
from tests.bundle import CGROUP_PREFIX, copy_rootfs, random_suffix, session_token

DOCKER_CAPEFF = 0x00000000A80425FB
CATATONIT = "/usr/bin/catatonit"


@pytest.fixture
def rt(runtime_root: Path) -> Runtime:
    return Runtime(str(runtime_root))


@pytest.fixture
def rootfs(tmp_path: Path, busybox_rootfs: Path) -> Path:
    """A busybox rootfs whose passwd/group know an 'app' user (uid 1234) in groups."""
    root = copy_rootfs(busybox_rootfs, tmp_path / "rootfs")
    with open(root / "etc" / "passwd", "a") as f:
        f.write("app:x:1234:2345:app user:/home/app:/bin/sh\n")
    with open(root / "etc" / "group", "a") as f:
        f.write("appgrp:x:2345:\nstaff:x:50:app,other\naudio:x:29:app\n")
    (root / "home" / "app").mkdir(parents=True)
    return root


def _spec(
    tmp_path: Path,
    rootfs: Path,
    cid: str,
    body: dict[str, Any],
    host: dict[str, Any] | None = None,
    image: dict[str, Any] | None = None,
    **kw: Any,
) -> Path:
    """Generate a spec, write it into a bundle, load it back through the runtime's
    validation; returns the bundle."""
    config = ContainerConfig.from_api(body)
    hostcfg = HostConfig.from_api(host or {})
    parent = f"/{CGROUP_PREFIX}-{session_token()}-{random_suffix()}"
    spec = generate_spec(
        container_id=cid, image_config=image or {}, config=config, host=hostcfg,
        root_path=str(rootfs), cgroup_parent=parent, **kw,
    )  # fmt: skip
    bundle = tmp_path / f"bundle-{cid}"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(spec, indent=1))
    load_spec(str(bundle))  # the runtime's own validation
    return bundle


def _read_all(fd: int, timeout: float = 30.0) -> str:
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks).decode(errors="replace")


def _run(rt: Runtime, cid: str, bundle: Path) -> tuple[int, str]:
    """create, start, wait, delete; (exit status, stdout+stderr)."""
    r, w = os.pipe()
    devnull = os.open("/dev/null", os.O_RDONLY)
    try:
        rt.create(cid, str(bundle), stdio=(devnull, w, w))
    finally:
        os.close(w)
        os.close(devnull)
    try:
        rt.start(cid)
        out = _read_all(r)
        code = rt.wait(cid)
    finally:
        os.close(r)
        rt.delete(cid, force=True)
    return code, out


def _status_fields(out: str) -> dict[str, str]:
    return {
        k: v.strip()
        for k, _, v in (line.partition(":") for line in out.splitlines())
        if k in ("CapEff", "CapBnd", "CapInh", "CapAmb", "CapPrm", "Seccomp", "NoNewPrivs")
    }


def test_docker_defaults_inside(rt: Runtime, tmp_path: Path, rootfs: Path, unique_id: str) -> None:
    """Root in a default container: Docker's 14 caps, seccomp filter, masked and read-only
    /proc entries, env, hostname, etc files; unshare refused by the profile."""
    script = (
        "grep -E '^(Cap...|Seccomp|NoNewPrivs):' /proc/self/status; "
        "[ -e /proc/kcore ] && echo kcore=$(wc -c < /proc/kcore); "
        "echo timer_list=$(wc -c < /proc/timer_list); echo acpi=$(ls -A /proc/acpi | wc -l); "
        "if echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null; then echo procsys=rw; "
        "else echo procsys=ro; fi; "
        "echo id=$(id); echo host=$(hostname); env | sort; "
        "echo cwd=$(pwd); echo etc_hostname=$(cat /etc/hostname); "
        "grep -E 'ip6-allrouters|db$' /etc/hosts; grep nameserver /etc/resolv.conf; "
        "unshare -U true; echo unshare=$?; "
        "grep -E ' /dev/shm | /sys ' /proc/mounts"
    )
    etc = write_etc_files(
        str(tmp_path / "etc"), hostname="webhost", extra_hosts=["db:10.1.2.3"], dns=["192.0.2.53"]
    )
    bundle = _spec(
        tmp_path, rootfs, unique_id,
        {"Cmd": ["/bin/sh", "-c", script], "Hostname": "webhost",
         "Env": ["FOO=container", "BAR=1"], "WorkingDir": "/home/app"},
        {"ShmSize": 8 << 20},
        image={"Env": ["FOO=image", "IMG=yes"], "Cmd": ["ignored"]},
        etc_files=etc,
    )  # fmt: skip
    code, out = _run(rt, unique_id, bundle)
    assert code == 0, out
    st = _status_fields(out)
    assert int(st["CapEff"], 16) == DOCKER_CAPEFF, out
    assert int(st["CapBnd"], 16) == DOCKER_CAPEFF, out
    assert int(st["CapPrm"], 16) == DOCKER_CAPEFF, out
    assert int(st["CapInh"], 16) == 0 and int(st["CapAmb"], 16) == 0, out
    assert st["Seccomp"] == "2", out
    assert st["NoNewPrivs"] == "0", out
    if os.path.exists("/proc/kcore"):
        assert "kcore=0" in out, out
    assert "timer_list=0" in out, out  # masked: /dev/null bound over it
    assert "acpi=0" in out, out  # masked directory: an empty read-only tmpfs
    assert "procsys=ro" in out, out
    assert "id=uid=0(root) gid=0(root)" in out, out
    assert "HOSTNAME=webhost" in out
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in out
    assert "FOO=container" in out and "IMG=yes" in out and "BAR=1" in out
    assert "FOO=image" not in out and "TERM=" not in out
    assert "host=webhost" in out and "etc_hostname=webhost" in out
    assert "cwd=/home/app" in out
    assert "ff02::2\tip6-allrouters" in out and "10.1.2.3\tdb" in out, out
    assert "nameserver 192.0.2.53" in out
    # the default profile refuses unshare without CAP_SYS_ADMIN (EPERM)
    assert "unshare=1" in out and "Operation not permitted" in out, out
    shm = [line for line in out.splitlines() if " /dev/shm " in line]
    assert shm and "size=8192k" in shm[0] and "noexec" in shm[0], out
    sysline = [line for line in out.splitlines() if " /sys " in line]
    assert sysline and " ro," in sysline[0], out


def test_user_from_image_passwd(rt: Runtime, tmp_path: Path, rootfs: Path, unique_id: str) -> None:
    """User "app" comes from the image's /etc/passwd (not the host's), with its groups
    from the image's /etc/group; a non-root user has no effective capabilities."""
    bundle = _spec(
        tmp_path, rootfs, unique_id,
        {"Cmd": ["/bin/sh", "-c", "id; grep -E '^Cap(Eff|Bnd):' /proc/self/status; "
                 "echo home=$HOME"]},
        image={"User": "app"},
    )  # fmt: skip
    spec = json.loads((bundle / "config.json").read_text())
    assert spec["process"]["user"] == {"uid": 1234, "gid": 2345, "additionalGids": [50, 29]}
    code, out = _run(rt, unique_id, bundle)
    assert code == 0, out
    assert "uid=1234(app) gid=2345(appgrp) groups=" in out, out
    groups = out.split("groups=")[1].split()[0]
    assert "50(staff)" in groups and "29(audio)" in groups, out
    st = _status_fields(out)
    assert int(st["CapEff"], 16) == 0 and int(st["CapBnd"], 16) == DOCKER_CAPEFF, out


def test_unshare_allowed_without_seccomp(
    rt: Runtime, tmp_path: Path, rootfs: Path, unique_id: str
) -> None:
    """The same unshare succeeds with seccomp=unconfined: the EPERM above was seccomp's."""
    bundle = _spec(
        tmp_path, rootfs, unique_id,
        {"Cmd": ["/bin/sh", "-c", "grep Seccomp: /proc/self/status; unshare -U true; "
                 "echo unshare=$?"]},
        {"SecurityOpt": ["seccomp=unconfined"]},
    )  # fmt: skip
    code, out = _run(rt, unique_id, bundle)
    assert code == 0, out
    assert "Seccomp:\t0" in out, out
    assert "unshare=0" in out, out


def test_default_profile_refuses_mount(
    rt: Runtime, tmp_path: Path, rootfs: Path, unique_id: str
) -> None:
    """mount is refused without CAP_SYS_ADMIN, other added capabilities notwithstanding."""
    bundle = _spec(
        tmp_path, rootfs, unique_id,
        {"Cmd": ["/bin/sh", "-c", "mkdir -p /mnt; mount -t tmpfs none /mnt; echo mount=$?"]},
        {"CapAdd": ["NET_ADMIN"]},
    )  # fmt: skip
    code, out = _run(rt, unique_id, bundle)
    assert code == 0, out
    assert "mount=" in out and "mount=0" not in out, out
    assert "permission denied" in out.lower() or "not permitted" in out.lower(), out


def test_privileged_can_mount_tmpfs(
    rt: Runtime, tmp_path: Path, rootfs: Path, unique_id: str
) -> None:
    bundle = _spec(
        tmp_path, rootfs, unique_id,
        {"Cmd": ["/bin/sh", "-c", "grep -E '^(CapEff|Seccomp):' /proc/self/status; "
                 "mkdir -p /mnt && mount -t tmpfs none /mnt && echo mounted && "
                 "grep ' /mnt ' /proc/mounts && echo timer_list=$(wc -c < /proc/timer_list)"]},
        {"Privileged": True},
    )  # fmt: skip
    spec = json.loads((bundle / "config.json").read_text())
    assert "seccomp" not in spec["linux"] and "maskedPaths" not in spec["linux"]
    code, out = _run(rt, unique_id, bundle)
    assert code == 0, out
    assert "mounted" in out and " /mnt tmpfs " in out, out
    assert "Seccomp:\t0" in out
    assert "timer_list=0" not in out, out  # nothing masked
    capeff = int(out.split("CapEff:")[1].split()[0], 16)
    assert capeff & (1 << 21), "CAP_SYS_ADMIN missing"


def test_cap_add_sys_admin_unlocks_mount(
    rt: Runtime, tmp_path: Path, rootfs: Path, unique_id: str
) -> None:
    """With CAP_SYS_ADMIN the resolved default profile allows mount (includes.caps)."""
    bundle = _spec(
        tmp_path, rootfs, unique_id,
        {"Cmd": ["/bin/sh", "-c", "grep Seccomp: /proc/self/status; mkdir -p /mnt && "
                 "mount -t tmpfs none /mnt && echo mounted"]},
        {"CapAdd": ["sys_admin"]},
    )  # fmt: skip
    code, out = _run(rt, unique_id, bundle)
    assert code == 0, out
    assert "Seccomp:\t2" in out and "mounted" in out, out


def test_init_readonly_rootfs_tmpfs_ulimit(
    rt: Runtime, tmp_path: Path, rootfs: Path, unique_id: str
) -> None:
    if not os.path.exists(CATATONIT):
        pytest.skip(f"{CATATONIT} missing (apt-get install catatonit)")
    bundle = _spec(
        tmp_path, rootfs, unique_id,
        {"Entrypoint": ["/bin/sh", "-c"], "Cmd": [
            "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo pid=$$; "
            "touch /x 2>/dev/null && echo rootfs=rw || echo rootfs=ro; "
            "touch /scratch/f && echo tmpfs=ok; ulimit -n; grep ' /scratch ' /proc/mounts"]},
        {"ReadonlyRootfs": True, "Tmpfs": {"/scratch": "size=2m,exec"},
         "Ulimits": [{"Name": "nofile", "Soft": 512, "Hard": 512}]},
        init_path=CATATONIT,
    )  # fmt: skip
    code, out = _run(rt, unique_id, bundle)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("/sbin/pyrt-init -- /bin/sh -c"), out
    assert "pid=1" not in out  # the shell is not pid 1: the init is
    assert "rootfs=ro" in out and "tmpfs=ok" in out
    assert "\n512\n" in out
    scratch = [line for line in lines if line.startswith("tmpfs /scratch ")][0]
    assert "nosuid" in scratch and "nodev" in scratch and "noexec" not in scratch


def test_missing_user_is_refused(tmp_path: Path, rootfs: Path) -> None:
    from pyrt.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="unable to find user ghost: no matching entries"):
        _spec(tmp_path, rootfs, "c-ghost", {"Cmd": ["true"], "User": "ghost"})
    shutil.rmtree(tmp_path / "bundle-c-ghost", ignore_errors=True)
