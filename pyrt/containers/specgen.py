"""Image config + Docker container options -> an OCI runtime spec with Docker's defaults.

    spec = generate_spec(
        container_id=cid, image_config=image["config"], config=config, host=host,
        root_path="/var/lib/pyrt/.../merged", etc_files=write_etc_files(...),
        init_path="/usr/libexec/pyrt/init" if host.Init else None,
    )

The document is runtime-spec 1.0.2 (crun 1.8 refuses later versions) and passes
pyrt.runtime.spec.validate_spec. What it holds, and where Docker's rule comes from:

- process.args: the container's Entrypoint, else the image's; then the container's Cmd,
  else the image's Cmd - unless the container gave an Entrypoint of its own (then the
  image's Cmd is dropped). Nothing left: InvalidArgument "no command specified". With an
  init, args become [INIT_PATH, "--", *args].
- process.env: PATH (default), HOSTNAME, TERM=xterm with a tty, then the image's Env, then
  the container's, later ones replacing earlier ones by key ("KEY" alone removes KEY).
- process.user from the image's /etc/passwd and /etc/group (pyrt.containers.userdb).
- capabilities: Docker's 14 defaults with CapAdd/CapDrop applied (all with Privileged);
  bounding = effective = permitted, inheritable and ambient empty.
- mounts: /proc, /dev, /dev/pts, /sys, /sys/fs/cgroup, /dev/mqueue, /dev/shm, the etc
  files, Tmpfs entries, the caller's mounts and the init binary; a later mount on the same
  destination replaces an earlier one, and parents are mounted before their children.
- linux: namespaces, resources (memory, cpu, pids, device rules), devices, masked and
  read-only paths, sysctls, seccomp (Docker's default profile resolved for the
  container's capabilities, a custom profile, or none), cgroupsPath PARENT/ID.

Binds/Mounts of HostConfig are not turned into mounts here: the volume service resolves
them and passes the result as `mounts_extra`.
"""

from __future__ import annotations

import copy
import os
import posixpath
import stat
from collections.abc import Iterable, Mapping
from typing import Any

from pyrt.containers.options import ContainerConfig, HostConfig, parse_tmpfs_options
from pyrt.containers.seccomp_default import default_seccomp, resolve_profile
from pyrt.errors import InvalidArgument
from pyrt.runtime.capabilities import CAPS, kernel_last_cap

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_PATH = "/sbin/pyrt-init"
DEFAULT_CGROUP_PARENT = "/pyrt"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024

#: Docker's default capabilities
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

#: Docker's default cgroup device rules after "deny all": mknod of any device, and the
#: standard nodes (type, major, minor or None for any, access)
DEFAULT_DEVICE_RULES: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("c", None, None, "m"),
    ("b", None, None, "m"),
    ("c", 1, 3, "rwm"),  # /dev/null
    ("c", 1, 8, "rwm"),  # /dev/random
    ("c", 1, 7, "rwm"),  # /dev/full
    ("c", 5, 0, "rwm"),  # /dev/tty
    ("c", 1, 5, "rwm"),  # /dev/zero
    ("c", 1, 9, "rwm"),  # /dev/urandom
    ("c", 136, None, "rwm"),  # /dev/pts/*
    ("c", 5, 1, "rwm"),  # /dev/console
    ("c", 5, 2, "rwm"),  # /dev/ptmx
    ("c", 10, 200, "rwm"),  # /dev/net/tun
)

_TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev")
_ETC_TARGETS = {"hostname": "/etc/hostname", "hosts": "/etc/hosts",
                "resolv.conf": "/etc/resolv.conf"}  # fmt: skip


# --- capabilities ---------------------------------------------------------------------------


def _own_bounding_set() -> int | None:
    """This process's capability bounding set (None when /proc cannot tell)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def all_caps() -> list[str]:
    """Every capability the running kernel supports and this engine may grant (what
    Privileged and CapAdd ALL get). A capability outside the engine's own bounding set
    cannot be given to a container (capset would fail), so it is left out."""
    last = kernel_last_cap()
    bounding = _own_bounding_set()
    return [
        name
        for name, bit in CAPS.items()
        if bit <= last and (bounding is None or bounding & (1 << bit))
    ]


def normalize_caps(names: Iterable[str], field: str) -> list[str]:
    """Docker's spellings ("net_admin", "CAP_NET_ADMIN", "ALL") -> "CAP_NET_ADMIN"/"ALL"."""
    out: list[str] = []
    for i, name in enumerate(names):
        upper = name.strip().upper()
        if upper == "ALL":
            out.append("ALL")
            continue
        full = upper if upper.startswith("CAP_") else f"CAP_{upper}"
        if full not in CAPS:
            raise InvalidArgument(f"{field}[{i}]: unknown capability: {full!r}")
        out.append(full)
    return list(dict.fromkeys(out))


def effective_caps(host: HostConfig) -> list[str]:
    """The container's capability set (bounding = effective = permitted)."""
    if host.Privileged:
        return all_caps()
    adds = normalize_caps(host.CapAdd, "HostConfig.CapAdd")
    drops = normalize_caps(host.CapDrop, "HostConfig.CapDrop")
    supported = set(all_caps())
    if "ALL" in adds:
        caps = [c for c in all_caps() if c not in drops or c in adds]
    elif "ALL" in drops:
        caps = [c for c in adds if c != "ALL"]
    else:
        # a capability both added and dropped is added, as Docker does
        caps = [c for c in DEFAULT_CAPS if c not in drops] + adds
    return [c for c in dict.fromkeys(caps) if c in supported]


# --- process --------------------------------------------------------------------------------


def command_args(image_config: Mapping[str, Any], config: ContainerConfig) -> list[str]:
    """Docker's Entrypoint/Cmd rules (see the module doc)."""
    entrypoint = config.Entrypoint
    cmd = config.Cmd
    if not entrypoint:  # None or []: the image's Cmd fills a missing Cmd
        if not cmd:
            cmd = _img_list(image_config, "Cmd")
        if entrypoint is None:
            entrypoint = _img_list(image_config, "Entrypoint")
    args = list(entrypoint or []) + list(cmd or [])
    if not args:
        raise InvalidArgument("no command specified")
    return args


def _img_list(image_config: Mapping[str, Any], key: str) -> list[str]:
    value = image_config.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"image config: {key} must be a list of strings")
    return list(value)


def merge_env(*layers: Iterable[str]) -> list[str]:
    """Later layers replace earlier values by key; "KEY" without "=" removes KEY."""
    env: dict[str, str] = {}
    for layer in layers:
        for item in layer:
            key, eq, _ = item.partition("=")
            if eq:
                env[key] = item
            else:
                env.pop(key, None)
    return list(env.values())


def rlimits(host: HostConfig) -> list[dict[str, Any]]:
    return [
        {"type": ul.rlimit_type, "soft": ul.soft_limit, "hard": ul.hard_limit}
        for ul in host.Ulimits
    ]


# --- mounts ----------------------------------------------------------------------------------


def _default_mounts(host: HostConfig) -> list[dict[str, Any]]:
    sys_opts = ["nosuid", "noexec", "nodev"] + ([] if host.Privileged else ["ro"])
    cgroup_opts = (["rw"] if host.Privileged else ["ro"]) + ["nosuid", "noexec", "nodev"]
    shm = host.ShmSize or DEFAULT_SHM_SIZE
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": cgroup_opts},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm}"]},
    ]  # fmt: skip


def tmpfs_mount(destination: str, opts: str) -> dict[str, Any]:
    """A HostConfig.Tmpfs entry -> a mount; Docker's nosuid,nodev,noexec unless the
    options say otherwise (exec, suid, dev)."""
    given = parse_tmpfs_options(opts, f"HostConfig.Tmpfs[{destination}]")
    flags = {o for o in given if "=" not in o}
    options = [d for d in _TMPFS_DEFAULTS if d[2:] not in flags and d not in flags]
    options += given
    return {"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": options}


def _clean_dest(dest: str) -> str:
    return posixpath.normpath(dest) if dest != "/" else "/"


def _merge_mounts(groups: Iterable[Iterable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Later mounts replace earlier ones on the same destination; then parents first
    (stable sort by depth)."""
    by_dest: dict[str, dict[str, Any]] = {}
    for group in groups:
        for m in group:
            dest = m.get("destination")
            if not isinstance(dest, str) or not dest.startswith("/"):
                raise InvalidArgument(f"mount {m!r}: destination must be an absolute path")
            key = _clean_dest(dest)
            by_dest.pop(key, None)
            by_dest[key] = m
    mounts = list(by_dest.values())
    mounts.sort(key=lambda m: 0 if _clean_dest(m["destination"]) == "/"
                else _clean_dest(m["destination"]).count("/"))  # fmt: skip
    return mounts


# --- devices -------------------------------------------------------------------------------------


def _device_entry(host_path: str, container_path: str, st: os.stat_result) -> dict[str, Any]:
    kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
    return {
        "path": container_path,
        "type": kind,
        "major": os.major(st.st_rdev),
        "minor": os.minor(st.st_rdev),
        "fileMode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


def host_devices(host: HostConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """HostConfig.Devices -> (linux.devices, cgroup allow rules). A directory maps every
    device below it (as Docker does); anything else that is not a device is an error."""
    devices: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    for i, dm in enumerate(host.Devices):
        field = f"HostConfig.Devices[{i}]"
        try:
            st = os.stat(dm.PathOnHost)
        except OSError as e:
            raise InvalidArgument(
                f"{field}: error gathering device information while adding custom device "
                f"{dm.PathOnHost!r}: {e.strerror}"
            ) from None
        found: list[tuple[str, str, os.stat_result]] = []
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            found.append((dm.PathOnHost, dm.PathInContainer, st))
        elif stat.S_ISDIR(st.st_mode):
            for dirpath, _, files in os.walk(dm.PathOnHost):
                for name in sorted(files):
                    hp = os.path.join(dirpath, name)
                    try:
                        fst = os.lstat(hp)
                    except OSError:
                        continue
                    if stat.S_ISCHR(fst.st_mode) or stat.S_ISBLK(fst.st_mode):
                        rel = os.path.relpath(hp, dm.PathOnHost)
                        found.append((hp, posixpath.join(dm.PathInContainer, rel), fst))
            if not found:
                raise InvalidArgument(f"{field}: no devices found in {dm.PathOnHost}")
        else:
            raise InvalidArgument(f"{field}: {dm.PathOnHost} is not a device node")
        for hp, cp, fst in found:
            entry = _device_entry(hp, cp, fst)
            devices.append(entry)
            rules.append({"allow": True, "type": entry["type"], "major": entry["major"],
                          "minor": entry["minor"], "access": dm.CgroupPermissions})  # fmt: skip
    return devices, rules


def _device_rules(host: HostConfig, extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if host.Privileged:
        return [{"allow": True, "access": "rwm"}]
    rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for kind, major, minor, access in DEFAULT_DEVICE_RULES:
        rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
        if major is not None:
            rule["major"] = major
        if minor is not None:
            rule["minor"] = minor
        rules.append(rule)
    return rules + extra


# --- resources, namespaces, sysctls ----------------------------------------------------------


def resources(host: HostConfig, device_rules: list[dict[str, Any]]) -> dict[str, Any]:
    res: dict[str, Any] = {"devices": device_rules}
    memory: dict[str, Any] = {}
    if host.Memory > 0:
        memory["limit"] = host.Memory
        # Docker: MemorySwap 0 with a memory limit means twice the limit (memory + swap)
        memory["swap"] = host.MemorySwap if host.MemorySwap != 0 else 2 * host.Memory
    elif host.MemorySwap == -1:
        memory["swap"] = -1
    if host.MemoryReservation > 0:
        memory["reservation"] = host.MemoryReservation
    if host.MemorySwappiness is not None:
        memory["swappiness"] = host.MemorySwappiness
    if host.OomKillDisable is not None:
        memory["disableOOMKiller"] = host.OomKillDisable
    if memory:
        res["memory"] = memory
    cpu: dict[str, Any] = {}
    if host.CpuShares > 0:
        cpu["shares"] = host.CpuShares
    if host.NanoCpus > 0:
        period = 100_000
        cpu["period"] = period
        cpu["quota"] = host.NanoCpus * period // 1_000_000_000
    else:
        if host.CpuPeriod > 0:
            cpu["period"] = host.CpuPeriod
        if host.CpuQuota != 0:
            cpu["quota"] = host.CpuQuota
    if host.CpusetCpus:
        cpu["cpus"] = host.CpusetCpus
    if host.CpusetMems:
        cpu["mems"] = host.CpusetMems
    if cpu:
        res["cpu"] = cpu
    if host.PidsLimit is not None and host.PidsLimit > 0:
        res["pids"] = {"limit": host.PidsLimit}
    return res


def host_cgroup_v2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def namespaces(
    host: HostConfig, namespace_paths: Mapping[str, str], cgroup_v2: bool
) -> list[dict[str, Any]]:
    """pid, ipc, uts, mount, network (+ cgroup: private by default on v2 hosts, shared on
    v1, as Docker does), minus those in "host" mode; `namespace_paths` joins existing ones
    ({"network": "/run/pyrt/netns/x"}), as container:<id> modes need."""
    modes = {
        "pid": host.PidMode,
        "ipc": host.IpcMode,
        "uts": host.UTSMode,
        "network": host.NetworkMode,
        "mount": "",
        "cgroup": host.CgroupnsMode or ("private" if cgroup_v2 else "host"),
    }
    out: list[dict[str, Any]] = []
    for kind in ("pid", "ipc", "uts", "mount", "network", "cgroup"):
        path = namespace_paths.get(kind)
        if modes[kind] == "host" and path is None:
            continue
        if modes[kind].startswith("container:") and path is None:
            raise InvalidArgument(
                f"{kind} namespace mode {modes[kind]!r}: the namespace path of that container "
                "is needed"
            )
        out.append({"type": kind, "path": path} if path else {"type": kind})
    extra = set(namespace_paths) - set(modes)
    if extra:
        raise InvalidArgument(f"namespace_paths: unknown namespace types {sorted(extra)}")
    return out


def sysctl_namespace(key: str) -> str | None:
    """The namespace a sysctl belongs to (Docker's list), or None if it is not namespaced."""
    k = key.replace("/", ".")
    if k in ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
             "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced") or k.startswith(
                 "fs.mqueue."):  # fmt: skip
        return "ipc"
    if k.startswith("net."):
        return "network"
    if k in ("kernel.domainname", "kernel.hostname"):
        return "uts"
    return None


def check_sysctls(host: HostConfig, ns_types: set[str]) -> dict[str, str]:
    for key in host.Sysctls:
        ns = sysctl_namespace(key)
        field = f"HostConfig.Sysctls.{key}"
        if ns is None:
            raise InvalidArgument(
                f"{field}: sysctl {key!r} is not allowed: it is not namespaced, so it would "
                "change the host"
            )
        if ns not in ns_types:
            raise InvalidArgument(
                f"{field}: sysctl {key!r} is not allowed in the host's {ns} namespace"
            )
        if ns == "uts":
            raise InvalidArgument(f"{field}: set the {key.split('.')[-1]} with "
                                  "Hostname/Domainname, not a sysctl")  # fmt: skip
    return dict(host.Sysctls)


# --- the spec ------------------------------------------------------------------------------------


def generate_spec(
    *,
    container_id: str,
    image_config: Mapping[str, Any] | None,
    config: ContainerConfig,
    host: HostConfig,
    root_path: str,
    mounts_extra: list[dict[str, Any]] | None = None,
    etc_files: Mapping[str, str] | None = None,
    init_path: str | None = None,
    cgroup_parent: str = DEFAULT_CGROUP_PARENT,
    namespace_paths: Mapping[str, str] | None = None,
    user_rootfs: str | None = None,
    arch: str | None = None,
    cgroup_v2: bool | None = None,
    image_id: str | None = None,
) -> dict[str, Any]:
    """The runtime spec of one container (see the module doc).

    root_path: the container's root filesystem (the merged overlay); `user_rootfs`, when
    given, is where the image's /etc/passwd is read instead (an unmounted overlay's upper
    view, say). mounts_extra: runtime-spec mounts from the volume service, bound after the
    defaults (same destination: theirs wins). etc_files: {"hostname"|"hosts"|"resolv.conf":
    host path}. init_path: host path of the init binary to bind at /sbin/pyrt-init and run
    as the container's pid 1 (used when given). cgroup_parent: HostConfig.CgroupParent
    wins over it. `arch` (Go's name) and `cgroup_v2` default to this host's. `image_id`:
    the image root_path holds unchanged (at create), whose user lookups are kept.
    """
    if not container_id or "/" in container_id:
        raise InvalidArgument(f"container id {container_id!r} is not valid")
    img = dict(image_config or {})
    ns_paths = dict(namespace_paths or {})
    v2 = host_cgroup_v2() if cgroup_v2 is None else cgroup_v2

    # process
    args = command_args(img, config)
    hostname = config.Hostname or container_id[:12]
    env = merge_env(
        [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"] + (["TERM=xterm"] if config.Tty else []),
        _img_list(img, "Env"),
        config.Env,
    )
    cwd = config.WorkingDir or img.get("WorkingDir") or "/"
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise InvalidArgument(
            f"the working directory '{cwd}' is invalid, it needs to be an absolute path"
        )
    from pyrt.containers.userdb import resolve_user, resolve_user_in_image

    user_str = config.User or img.get("User") or ""
    if not isinstance(user_str, str):
        raise InvalidArgument("image config: User must be a string")
    if image_id is not None and user_rootfs is None:
        user = resolve_user_in_image(image_id, root_path, user_str, host.GroupAdd)
    else:
        user = resolve_user(user_rootfs or root_path, user_str, host.GroupAdd)
    caps = effective_caps(host)
    security = host.security
    if init_path is not None:
        args = [INIT_PATH, "--", *args]

    process: dict[str, Any] = {
        "terminal": config.Tty,
        "user": {"uid": user.uid, "gid": user.gid},
        "args": args,
        "env": env,
        "cwd": posixpath.normpath(cwd) if cwd != "/" else "/",
        "capabilities": {
            "bounding": list(caps),
            "effective": list(caps),
            "permitted": list(caps),
            "inheritable": [],
            "ambient": [],
        },
        "noNewPrivileges": security.no_new_privileges,
        "oomScoreAdj": host.OomScoreAdj,
    }
    if user.additional_gids:
        process["user"]["additionalGids"] = list(user.additional_gids)
    limits = rlimits(host)
    if limits:
        process["rlimits"] = limits
    if security.apparmor and security.apparmor != "unconfined":
        process["apparmorProfile"] = security.apparmor

    # mounts
    etc_mounts: list[dict[str, Any]] = []
    for name, path in (etc_files or {}).items():
        if name not in _ETC_TARGETS:
            raise InvalidArgument(
                f"etc_files: unknown file {name!r} (hostname, hosts or resolv.conf)"
            )
        etc_mounts.append({"destination": _ETC_TARGETS[name], "type": "bind", "source": path,
                           "options": ["rbind", "rprivate"]})  # fmt: skip
    tmpfs = [tmpfs_mount(dest, opts) for dest, opts in host.Tmpfs.items()]
    init_mounts: list[dict[str, Any]] = []
    if init_path is not None:
        if not os.path.isabs(init_path):
            raise InvalidArgument(f"init_path {init_path!r} must be an absolute path")
        init_mounts.append({"destination": INIT_PATH, "type": "bind", "source": init_path,
                            "options": ["bind", "ro"]})  # fmt: skip
    mounts = _merge_mounts(
        [_default_mounts(host), etc_mounts, tmpfs, copy.deepcopy(mounts_extra or []), init_mounts]
    )
    ns = namespaces(host, ns_paths, v2)
    ns_types = {n["type"] for n in ns}

    # linux
    devices, extra_rules = host_devices(host)
    linux: dict[str, Any] = {
        "namespaces": ns,
        "resources": resources(host, _device_rules(host, extra_rules)),
        "cgroupsPath": _cgroups_path(host.CgroupParent or cgroup_parent, container_id),
    }
    if devices:
        linux["devices"] = devices
    if not host.Privileged and not security.systempaths_unconfined:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    if host.Sysctls:
        linux["sysctl"] = check_sysctls(host, ns_types)
    seccomp = _seccomp(host, caps, arch)
    if seccomp is not None:
        linux["seccomp"] = seccomp

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": root_path, "readonly": host.ReadonlyRootfs},
        "mounts": mounts,
        "linux": linux,
    }
    if "uts" in ns_types:
        spec["hostname"] = hostname
        if config.Domainname:
            spec["domainname"] = config.Domainname
    return spec


def _cgroups_path(parent: str, container_id: str) -> str:
    if not parent.startswith("/"):
        parent = "/" + parent
    if ".." in parent.split("/"):
        raise InvalidArgument(f"cgroup parent {parent!r} must not contain '..'")
    return posixpath.join(parent.rstrip("/") or "/", container_id)


def _seccomp(host: HostConfig, caps: list[str], arch: str | None) -> dict[str, Any] | None:
    profile = host.security.seccomp
    if host.Privileged or profile == "unconfined":
        return None
    if profile is None:
        return default_seccomp(caps, arch=arch)
    assert isinstance(profile, dict)
    from pyrt.runtime.seccomp import validate_seccomp

    resolved = resolve_profile(profile, capabilities=caps, arch=arch,
                               where="HostConfig.SecurityOpt seccomp profile")  # fmt: skip
    validate_seccomp(resolved, "HostConfig.SecurityOpt", "seccomp")
    return resolved


__all__ = [
    "DEFAULT_CAPS",
    "DEFAULT_DEVICE_RULES",
    "INIT_PATH",
    "MASKED_PATHS",
    "OCI_VERSION",
    "READONLY_PATHS",
    "all_caps",
    "command_args",
    "effective_caps",
    "generate_spec",
    "merge_env",
    "normalize_caps",
    "tmpfs_mount",
]
