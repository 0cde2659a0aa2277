"""generate_spec: Docker's defaults, and every spec it makes passes the runtime's checks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pyrt.containers import seccomp_default as sd
from pyrt.containers.etcfiles import (
    hosts_content,
    resolv_conf_content,
    write_etc_files,
)
from pyrt.containers.options import ContainerConfig, HostConfig
from pyrt.containers.specgen import (
    DEFAULT_CAPS,
    MASKED_PATHS,
    READONLY_PATHS,
    command_args,
    effective_caps,
    generate_spec,
    merge_env,
)
from pyrt.errors import InvalidArgument
from pyrt.runtime.capabilities import caps_to_mask
from pyrt.runtime.seccomp import compile_seccomp, validate_seccomp
from pyrt.runtime.spec import validate_spec


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n")
    (r / "etc" / "group").write_text("root:x:0:\nweb:x:33:\nlog:x:4:web\n")
    return r


def gen(root: Path, body: dict[str, Any] | None = None, hostcfg: dict[str, Any] | None = None,
        image: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:  # fmt: skip
    """Generate a spec and check it with the runtime's validation (as a round trip through
    JSON, the way it reaches the runtime)."""
    kw.setdefault("cgroup_v2", False)
    spec = generate_spec(
        container_id="0123456789abcdef", image_config=image or {"Cmd": ["/bin/sh"]},
        config=ContainerConfig.from_api(body or {}), host=HostConfig.from_api(hostcfg or {}),
        root_path=str(root), **kw,
    )  # fmt: skip
    spec = json.loads(json.dumps(spec))
    validate_spec(spec, str(root.parent))
    return spec


def mount(spec: dict[str, Any], dest: str) -> dict[str, Any]:
    found = [m for m in spec["mounts"] if m["destination"] == dest]
    assert len(found) == 1, f"{dest}: {found}"
    return found[0]


def test_defaults(root: Path) -> None:
    spec = gen(root)
    assert spec["ociVersion"] == "1.0.2"
    proc = spec["process"]
    assert proc["args"] == ["/bin/sh"] and proc["cwd"] == "/" and proc["terminal"] is False
    assert proc["user"] == {"uid": 0, "gid": 0}
    assert proc["env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOSTNAME=0123456789ab",
    ]
    caps = proc["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"] == list(DEFAULT_CAPS)
    assert caps["inheritable"] == [] and caps["ambient"] == []
    assert caps_to_mask(caps["effective"], "x") == 0xA80425FB
    assert proc["noNewPrivileges"] is False and "rlimits" not in proc
    assert spec["hostname"] == "0123456789ab" and spec["root"]["readonly"] is False
    assert mount(spec, "/proc")["options"] == ["nosuid", "noexec", "nodev"]
    assert mount(spec, "/dev")["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert "ptmxmode=0666" in mount(spec, "/dev/pts")["options"]
    assert "ro" in mount(spec, "/sys")["options"]
    assert "ro" in mount(spec, "/sys/fs/cgroup")["options"]
    assert mount(spec, "/dev/mqueue")["type"] == "mqueue"
    assert "size=67108864" in mount(spec, "/dev/shm")["options"]
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.index("/dev") < dests.index("/dev/pts") and dests.index("/sys") < dests.index(
        "/sys/fs/cgroup")  # fmt: skip
    linux = spec["linux"]
    assert [n["type"] for n in linux["namespaces"]] == ["pid", "ipc", "uts", "mount", "network"]
    assert linux["cgroupsPath"] == "/pyrt/0123456789abcdef"
    assert linux["maskedPaths"] == list(MASKED_PATHS)
    assert linux["readonlyPaths"] == list(READONLY_PATHS)
    devs = linux["resources"]["devices"]
    assert devs[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in devs
    assert {"allow": True, "type": "c", "major": 136, "access": "rwm"} in devs
    assert {"allow": True, "type": "b", "access": "m"} in devs
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "memory" not in linux["resources"] and "cpu" not in linux["resources"]


def test_cgroup_namespace_on_v2(root: Path) -> None:
    assert {"type": "cgroup"} in gen(root, cgroup_v2=True)["linux"]["namespaces"]
    assert {"type": "cgroup"} not in gen(root, cgroup_v2=False)["linux"]["namespaces"]
    hc = {"CgroupnsMode": "private"}
    assert {"type": "cgroup"} in gen(root, hostcfg=hc, cgroup_v2=False)["linux"]["namespaces"]


@pytest.mark.parametrize(
    ("image", "body", "args"),
    [
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {}, ["/ep", "a"]),
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"Cmd": ["b"]}, ["/ep", "b"]),
        # a container Entrypoint drops the image Cmd
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"Entrypoint": ["/x"]}, ["/x"]),
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"Entrypoint": ["/x"], "Cmd": ["c"]}, ["/x", "c"]),
        # an explicitly empty Entrypoint drops the image's but keeps its Cmd
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"Entrypoint": []}, ["a"]),
        ({"Cmd": "/bin/true"}, {}, ["/bin/true"]),
        ({}, {"Cmd": ["ls", "-l"]}, ["ls", "-l"]),
    ],
)
def test_args_rules(image: dict[str, Any], body: dict[str, Any], args: list[str]) -> None:
    assert command_args(image, ContainerConfig.from_api(body)) == args


def test_no_command(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="^no command specified$"):
        gen(root, image={"Entrypoint": ["/ep"]}, body={"Entrypoint": []})


def test_env_user_cwd_tty(root: Path) -> None:
    spec = gen(
        root,
        {"Env": ["A=container", "DROP", "PATH=/opt/bin"], "Tty": True, "User": "web",
         "Hostname": "h1", "Domainname": "example.org"},
        image={"Cmd": ["x"], "Env": ["A=image", "B=image", "DROP=1"], "WorkingDir": "/srv/",
               "User": "root"},
    )  # fmt: skip
    proc = spec["process"]
    assert proc["env"] == ["PATH=/opt/bin", "HOSTNAME=h1", "TERM=xterm", "A=container", "B=image"]
    assert proc["terminal"] is True and proc["cwd"] == "/srv"
    assert proc["user"] == {"uid": 33, "gid": 33, "additionalGids": [4]}
    assert spec["hostname"] == "h1" and spec["domainname"] == "example.org"
    assert merge_env(["A=1"], ["A"], ["A=2"]) == ["A=2"]


def test_image_user_must_exist(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="unable to find user nginx: no matching entries"):
        gen(root, image={"Cmd": ["x"], "User": "nginx"})


def test_capabilities() -> None:
    def caps(**kw: Any) -> list[str]:
        return effective_caps(HostConfig.from_api(kw))

    assert caps() == list(DEFAULT_CAPS)
    got = caps(CapAdd=["net_admin", "CAP_SYS_PTRACE"], CapDrop=["mknod", "Cap_Kill"])
    assert "CAP_NET_ADMIN" in got and "CAP_SYS_PTRACE" in got
    assert "CAP_MKNOD" not in got and "CAP_KILL" not in got
    assert caps(CapDrop=["ALL"], CapAdd=["chown"]) == ["CAP_CHOWN"]
    every = caps(CapAdd=["ALL"], CapDrop=["sys_admin"])
    assert "CAP_SYS_ADMIN" not in every and "CAP_NET_ADMIN" in every
    assert caps(CapAdd=["chown"], CapDrop=["chown"]).count("CAP_CHOWN") == 1  # add wins
    priv = caps(Privileged=True, CapDrop=["ALL"])
    assert set(DEFAULT_CAPS) <= set(priv) and "CAP_SYS_ADMIN" in priv


def test_privileged(root: Path) -> None:
    spec = gen(root, hostcfg={"Privileged": True})
    linux = spec["linux"]
    assert "seccomp" not in linux and "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "ro" not in mount(spec, "/sys")["options"]
    assert "CAP_SYS_ADMIN" in spec["process"]["capabilities"]["effective"]


def test_resources(root: Path) -> None:
    res = gen(root, hostcfg={
        "Memory": 64 << 20, "MemoryReservation": 32 << 20, "NanoCpus": 1_500_000_000,
        "CpuShares": 512, "CpusetCpus": "0", "CpusetMems": "0", "PidsLimit": 100,
    })["linux"]["resources"]  # fmt: skip
    assert res["memory"] == {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20}
    assert res["cpu"] == {"shares": 512, "period": 100000, "quota": 150000, "cpus": "0",
                          "mems": "0"}  # fmt: skip
    assert res["pids"] == {"limit": 100}
    res = gen(root, hostcfg={"Memory": 64 << 20, "MemorySwap": -1, "CpuPeriod": 50000,
                             "CpuQuota": 25000, "PidsLimit": -1})["linux"]["resources"]  # fmt: skip
    assert res["memory"]["swap"] == -1 and res["cpu"] == {"period": 50000, "quota": 25000}
    assert "pids" not in res


def test_rlimits_nnp_oom(root: Path) -> None:
    proc = gen(root, hostcfg={
        "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048},
                    {"Name": "core", "Soft": -1, "Hard": -1}],
        "SecurityOpt": ["no-new-privileges"], "OomScoreAdj": 500,
    })["process"]  # fmt: skip
    assert proc["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048},
        {"type": "RLIMIT_CORE", "soft": (1 << 64) - 1, "hard": (1 << 64) - 1},
    ]
    assert proc["noNewPrivileges"] is True and proc["oomScoreAdj"] == 500


def test_mounts_tmpfs_etc_extra_init(root: Path, tmp_path: Path) -> None:
    etc = write_etc_files(str(tmp_path / "etc"), hostname="h", host_resolv_path="/nonexistent")
    extra = [
        {"destination": "/data", "type": "bind", "source": str(tmp_path), "options": ["rbind"]},
        {"destination": "/etc/hosts/", "type": "bind", "source": "/x", "options": ["bind"]},
    ]
    spec = gen(
        root,
        hostcfg={"Tmpfs": {"/run": "", "/tmp": "exec,size=1m,mode=1777", "/dev/shm": "size=2m"},
                 "ReadonlyRootfs": True, "ShmSize": 1 << 20},
        etc_files=etc, mounts_extra=extra, init_path="/usr/bin/catatonit",
    )  # fmt: skip
    assert mount(spec, "/run")["options"] == ["noexec", "nosuid", "nodev"]
    assert mount(spec, "/tmp")["options"] == ["nosuid", "nodev", "exec", "size=1m", "mode=1777"]
    assert mount(spec, "/dev/shm")["options"] == ["noexec", "nosuid", "nodev", "size=2m"]
    assert mount(spec, "/etc/hostname") == {"destination": "/etc/hostname", "type": "bind",
        "source": etc["hostname"], "options": ["rbind", "rprivate"]}  # fmt: skip
    assert mount(spec, "/etc/hosts/")["source"] == "/x"  # the caller's replaced ours
    assert not [m for m in spec["mounts"] if m["destination"] == "/etc/hosts"]
    assert mount(spec, "/sbin/pyrt-init") == {"destination": "/sbin/pyrt-init", "type": "bind",
        "source": "/usr/bin/catatonit", "options": ["bind", "ro"]}  # fmt: skip
    assert spec["process"]["args"] == ["/sbin/pyrt-init", "--", "/bin/sh"]
    assert spec["root"]["readonly"] is True
    with pytest.raises(InvalidArgument, match="etc_files: unknown file 'passwd'"):
        gen(root, etc_files={"passwd": "/x"})


def test_devices(root: Path) -> None:
    spec = gen(
        root,
        hostcfg={
            "Devices": [
                {
                    "PathOnHost": "/dev/null",
                    "PathInContainer": "/dev/mynull",
                    "CgroupPermissions": "rw",
                }
            ]
        },
    )
    st = os.stat("/dev/null")
    assert spec["linux"]["devices"] == [{
        "path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
        "fileMode": st.st_mode & 0o7777, "uid": st.st_uid, "gid": st.st_gid}]  # fmt: skip
    assert spec["linux"]["resources"]["devices"][-1] == {
        "allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}  # fmt: skip
    with pytest.raises(
        InvalidArgument, match=r"HostConfig.Devices\[0\]: /etc/hostname is not a device node"
    ):
        gen(root, hostcfg={"Devices": [{"PathOnHost": "/etc/hostname"}]})
    with pytest.raises(InvalidArgument, match=r"HostConfig.Devices\[0\]: error gathering"):
        gen(root, hostcfg={"Devices": [{"PathOnHost": "/dev/nope-nothing"}]})


def test_sysctls(root: Path) -> None:
    spec = gen(root, hostcfg={"Sysctls": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000"}})
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000"}
    with pytest.raises(InvalidArgument, match="HostConfig.Sysctls.vm.swappiness: .*not namespaced"):
        gen(root, hostcfg={"Sysctls": {"vm.swappiness": "1"}})
    with pytest.raises(InvalidArgument, match="not allowed in the host's network namespace"):
        gen(root, hostcfg={"Sysctls": {"net.core.somaxconn": "1"}, "NetworkMode": "host"})


def test_host_modes_and_namespace_paths(root: Path) -> None:
    spec = gen(root, hostcfg={"NetworkMode": "host", "PidMode": "host", "UTSMode": "host"})
    assert [n["type"] for n in spec["linux"]["namespaces"]] == ["ipc", "mount"]
    assert "hostname" not in spec
    spec = gen(root, hostcfg={"NetworkMode": "container:abc"},
               namespace_paths={"network": "/proc/self/ns/net"})  # fmt: skip
    assert {"type": "network", "path": "/proc/self/ns/net"} in spec["linux"]["namespaces"]
    with pytest.raises(InvalidArgument, match="the namespace path of that container is needed"):
        gen(root, hostcfg={"IpcMode": "container:abc"})


def test_cgroup_parent(root: Path) -> None:
    assert gen(root, cgroup_parent="/custom")["linux"]["cgroupsPath"] == "/custom/0123456789abcdef"
    spec = gen(root, hostcfg={"CgroupParent": "mine"})
    assert spec["linux"]["cgroupsPath"] == "/mine/0123456789abcdef"


def test_apparmor_and_systempaths(root: Path) -> None:
    spec = gen(root, hostcfg={"SecurityOpt": ["apparmor=docker-default", "systempaths=unconfined"]})
    assert spec["process"]["apparmorProfile"] == "docker-default"
    assert "maskedPaths" not in spec["linux"] and "seccomp" in spec["linux"]


# --- seccomp ---------------------------------------------------------------------------------


def names_for(profile: dict[str, Any], action: str = "SCMP_ACT_ALLOW") -> set[str]:
    return {n for r in profile["syscalls"] if r["action"] == action for n in r["names"]}


def test_default_profile_without_sys_admin() -> None:
    prof = sd.default_seccomp(DEFAULT_CAPS, arch="amd64", kernel=(6, 1))
    validate_seccomp(prof)
    assert prof["defaultAction"] == "SCMP_ACT_ERRNO" and prof["defaultErrnoRet"] == 1
    assert prof["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = names_for(prof)
    for name in ("read", "write", "execve", "openat", "chroot", "arch_prctl", "ptrace"):
        assert name in allowed, name
    for name in ("mount", "unshare", "setns", "reboot", "kexec_load", "init_module",
                 "open_by_handle_at", "bpf", "swapon", "cacheflush"):  # fmt: skip
        assert name not in allowed, name
    clone = [r for r in prof["syscalls"] if r["names"] == ["clone"]]
    assert clone == [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        }
    ]
    clone3 = [r for r in prof["syscalls"] if r["names"] == ["clone3"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    personas = sorted(r["args"][0]["value"] for r in prof["syscalls"]
                      if r["names"] == ["personality"])  # fmt: skip
    assert personas == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    socket = [r for r in prof["syscalls"] if r["names"] == ["socket"]][0]
    assert socket["args"] == [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]
    # it compiles with libseccomp
    program, flags = compile_seccomp(prof)
    assert len(program) % 8 == 0 and len(program) > 100 and flags == 0


def test_default_profile_with_caps_and_arches() -> None:
    caps = [*DEFAULT_CAPS, "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH", "CAP_SYS_TIME"]
    prof = sd.default_seccomp(caps, arch="arm64", kernel=(6, 1))
    allowed = names_for(prof)
    assert {"mount", "unshare", "setns", "clone", "clone3", "kcmp", "open_by_handle_at",
            "settimeofday", "cacheflush", "set_tls"} <= allowed  # fmt: skip
    assert "arch_prctl" not in allowed and "modify_ldt" not in allowed
    assert not [r for r in prof["syscalls"] if r["names"] == ["clone"] and r.get("args")]
    assert not names_for(prof, "SCMP_ACT_ERRNO")  # no clone3 ENOSYS rule with CAP_SYS_ADMIN
    assert prof["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    # an old kernel does not get ptrace & co without CAP_SYS_PTRACE
    old = sd.default_seccomp(DEFAULT_CAPS, arch="amd64", kernel=(4, 4))
    assert "ptrace" not in names_for(old)


def test_custom_profile_docker_format(root: Path) -> None:
    custom = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {
                "names": ["chmod"],
                "action": "SCMP_ACT_ERRNO",
                "excludes": {"caps": ["CAP_FOWNER"]},
                "comment": "gone",
            },
            {"names": ["chown"], "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["s390x"]}},
        ],
    }
    spec = gen(root, hostcfg={"SecurityOpt": ["seccomp=" + json.dumps(custom)]})
    assert spec["linux"]["seccomp"] == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
    }
    bad = {"defaultAction": "SCMP_ACT_NOPE"}
    with pytest.raises(InvalidArgument, match="unknown seccomp action 'SCMP_ACT_NOPE'"):
        gen(root, hostcfg={"SecurityOpt": ["seccomp=" + json.dumps(bad)]})
    with pytest.raises(InvalidArgument, match="defaultAction is required"):
        gen(root, hostcfg={"SecurityOpt": ['seccomp={"syscalls": []}']})
    assert "seccomp" not in gen(root, hostcfg={"SecurityOpt": ["seccomp=unconfined"]})["linux"]


# --- etc files -------------------------------------------------------------------------------


def test_hosts_file() -> None:
    text = hosts_content("web", domainname="example.org", ips=["172.17.0.2"],
                         extra_hosts=["db:10.0.0.5", "gw:host-gateway"],
                         host_gateway="172.17.0.1")  # fmt: skip
    assert text.splitlines() == [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "ff00::0\tip6-mcastprefix",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
        "10.0.0.5\tdb",
        "172.17.0.1\tgw",
        "172.17.0.2\tweb.example.org web",
    ]
    with pytest.raises(InvalidArgument, match="'host-gateway' has no address"):
        hosts_content("web", extra_hosts=["gw:host-gateway"])


def test_resolv_conf() -> None:
    host = (
        "# comment\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 192.0.2.1\n"
        "nameserver 2001:db8::1\nsearch corp.example\noptions ndots:2\nsortlist 10.0.0.0\n"
    )
    text = resolv_conf_content(host)
    lines = [x for x in text.splitlines() if not x.startswith("#")]
    assert lines == ["nameserver 192.0.2.1", "search corp.example", "options ndots:2",
                     "sortlist 10.0.0.0"]  # fmt: skip
    assert "nameserver 2001:db8::1" in resolv_conf_content(host, ipv6=True)
    only_loopback = "nameserver 127.0.0.1\nnameserver ::1\n"
    lines = resolv_conf_content(only_loopback).splitlines()
    assert [x for x in lines if x.startswith("nameserver")] == [
        "nameserver 8.8.8.8", "nameserver 8.8.4.4"]  # fmt: skip
    text = resolv_conf_content(host, dns=["9.9.9.9"], dns_search=["."], dns_options=["rotate"])
    assert "nameserver 9.9.9.9" in text and "search" not in text and "options rotate" in text
    assert "192.0.2.1" not in text


def test_write_etc_files(tmp_path: Path) -> None:
    resolv = tmp_path / "host-resolv.conf"
    resolv.write_text("nameserver 127.0.0.11\n")
    paths = write_etc_files(str(tmp_path / "c"), hostname="box", ips=["10.1.0.2"],
                            host_resolv_path=str(resolv))  # fmt: skip
    assert set(paths) == {"hostname", "hosts", "resolv.conf"}
    assert Path(paths["hostname"]).read_text() == "box\n"
    assert "10.1.0.2\tbox" in Path(paths["hosts"]).read_text()
    assert "nameserver 8.8.8.8" in Path(paths["resolv.conf"]).read_text()
    assert not [p for p in os.listdir(tmp_path / "c") if p.startswith(".tmp")]
