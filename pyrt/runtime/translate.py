"""A validated OCI spec -> the SpawnConfig the C core takes (pyrt/_core.pyi).

Everything is resolved here, in Python: namespace types to CLONE_NEW* flags, mount options
to MS_* flags, capability names to masks, rlimit names to numbers, seccomp rules to a BPF
program. The C side only makes system calls.

Conventions shared with the C core (csrc/core/spawn.c):
- a mount entry with MS_BIND in flags and fstype None is a bind mount of `source`; its
  MS_RDONLY/MS_NOSUID/... need a remount after the bind;
- a mount entry with MS_REMOUNT in flags (and no MS_BIND) is a plain mount(2) call that
  changes the flags of the filesystem already mounted at `target` (used to make the v1
  cgroup tmpfs read-only after its bind mounts are in place);
- `propagation` is applied with a separate mount(2) call after the mount itself.
"""

from __future__ import annotations

import os
import resource

from pyrt.errors import FailedPrecondition, InvalidArgument
from pyrt.runtime.capabilities import caps_to_mask
from pyrt.runtime.spec import CAP_SETS, CONFIG_FILE, NS_PROC_NAMES, RLIMITS

TYPE_CHECKING = False  # typing is not imported at run time (pyrt-runc start-up)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from pyrt._core import DeviceSpec, HookSpec, MountSpec, SpawnConfig

# --- clone(2) namespace flags -------------------------------------------------------------------
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NS_FLAGS: dict[str, int] = {
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}
# Order in which namespaces are joined: the user namespace first (it grants the rights to
# join the others), the mount namespace last (after it, /proc paths may no longer resolve).
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")

# --- mount(2) flags ------------------------------------------------------------------------------
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

# option -> (clear the flag?, flag)
MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "nosuid": (False, MS_NOSUID),
    "suid": (True, MS_NOSUID),
    "nodev": (False, MS_NODEV),
    "dev": (True, MS_NODEV),
    "noexec": (False, MS_NOEXEC),
    "exec": (True, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS),
    "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC),
    "remount": (False, MS_REMOUNT),
    "mand": (False, MS_MANDLOCK),
    "nomand": (True, MS_MANDLOCK),
    "atime": (True, MS_NOATIME),
    "noatime": (False, MS_NOATIME),
    "diratime": (True, MS_NODIRATIME),
    "nodiratime": (False, MS_NODIRATIME),
    "relatime": (False, MS_RELATIME),
    "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "lazytime": (False, MS_LAZYTIME),
    "nolazytime": (True, MS_LAZYTIME),
    "iversion": (False, MS_I_VERSION),
    "noiversion": (True, MS_I_VERSION),
    "silent": (False, MS_SILENT),
    "loud": (True, MS_SILENT),
    "nosymfollow": (False, MS_NOSYMFOLLOW),
    "bind": (False, MS_BIND),
    "rbind": (False, MS_BIND | MS_REC),
}
PROPAGATION_FLAGS: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
DEFAULT_ROOTFS_PROPAGATION = MS_SLAVE | MS_REC

#: devices every container gets (path, major, minor), mode 0666, owned by root
DEFAULT_DEVICES: tuple[tuple[str, int, int], ...] = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)

DEFAULT_UMASK = 0o022


# --- pieces ------------------------------------------------------------------------------------


def mount_options(options: list[str]) -> tuple[int, int, str | None]:
    """Mount options -> (MS_* flags, propagation flags, data string or None).

    Options that are neither flags nor propagation go to the data string, comma-joined
    in their order. For propagation, the last one given wins.
    """
    flags = 0
    propagation = 0
    data: list[str] = []
    for opt in options:
        if opt in MOUNT_FLAGS:
            clear, bit = MOUNT_FLAGS[opt]
            if clear:
                flags &= ~bit
            else:
                flags |= bit
        elif opt in PROPAGATION_FLAGS:
            propagation = PROPAGATION_FLAGS[opt]
        elif opt == "defaults":
            continue
        else:
            data.append(opt)
    return flags, propagation, (",".join(data) or None)


def namespace_config(spec: Mapping[str, Any]) -> tuple[int, list[tuple[int, str]]]:
    """linux.namespaces -> (CLONE_NEW* flags to create, [(CLONE_NEW*, path)] to join).

    The join list is in JOIN_ORDER (user namespace first).
    """
    new_ns = 0
    join: dict[str, str] = {}
    for ns in spec.get("linux", {}).get("namespaces") or []:
        kind = ns["type"]
        if ns.get("path"):
            join[kind] = ns["path"]
        else:
            new_ns |= NS_FLAGS[kind]
    return new_ns, [(NS_FLAGS[k], join[k]) for k in JOIN_ORDER if k in join]


def id_map(mappings: list[Mapping[str, int]] | None) -> str | None:
    """uid/gid mappings -> the text of /proc/<pid>/uid_map ("inside outside size\\n" lines)."""
    if not mappings:
        return None
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)


def _has_sys_resource() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 24))
    except OSError:
        pass
    return False


def clamp_rlimit(number: int, name: str, soft: int, hard: int) -> tuple[int, int, int]:
    """(number, soft, hard), lowered to the runtime's own hard limit when it may not raise it.

    Without CAP_SYS_RESOURCE setrlimit refuses a hard limit above the current one (podman
    asks for RLIMIT_NOFILE 1048576, for one); the container gets the most it can have, and
    the runtime says so on its logger.
    """
    _, current_hard = resource.getrlimit(number)
    if current_hard == resource.RLIM_INFINITY or hard <= current_hard or _has_sys_resource():
        return (number, soft, hard)
    import logging

    logging.getLogger("pyrt.runtime").warning(
        "process.rlimits %s: hard limit %d lowered to %d (no CAP_SYS_RESOURCE)",
        name, hard, current_hard,
    )  # fmt: skip
    return (number, min(soft, current_hard), current_hard)


def rlimit_number(name: str) -> int:
    """The RLIMIT_* number for a runtime-spec rlimit type."""
    value = getattr(resource, name, None)
    return value if isinstance(value, int) else RLIMITS[name]


def capability_masks(
    caps: Mapping[str, Any] | None, field: str
) -> tuple[int, int, int, int, int] | None:
    """process.capabilities -> (bounding, effective, inheritable, permitted, ambient) masks."""
    if caps is None:
        return None
    b, e, i, p, a = (caps_to_mask(caps.get(key) or [], f"{field}.{key}") for key in CAP_SETS)
    return b, e, i, p, a


def host_cgroup_v2() -> bool:
    """Whether /sys/fs/cgroup is a pure cgroup v2 (unified) hierarchy."""
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _cgroup_mounts(
    m: Mapping[str, Any],
    flags: int,
    cgroup_dirs: Mapping[str, str],
    cgroup_v2: bool,
) -> list[MountSpec]:
    dest = m["destination"]
    if cgroup_v2:
        return [
            {
                "target": dest,
                "source": m.get("source") or "cgroup",
                "fstype": "cgroup2",
                "data": None,
                "flags": flags,
                "propagation": 0,
            }
        ]
    # v1 / hybrid: a tmpfs with one bind mount per hierarchy of the container's own cgroup.
    readonly = bool(flags & MS_RDONLY)
    base = flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if not cgroup_dirs:
        return [
            {
                "target": dest,
                "source": "tmpfs",
                "fstype": "tmpfs",
                "data": "mode=755",
                "flags": base | (MS_RDONLY if readonly else 0),
                "propagation": 0,
            }
        ]
    out: list[MountSpec] = [
        {
            "target": dest,
            "source": "tmpfs",
            "fstype": "tmpfs",
            "data": "mode=755",
            "flags": base,
            "propagation": 0,
        }
    ]
    for name in sorted(cgroup_dirs):
        subdir = name.split("=", 1)[1] if name.startswith("name=") else name
        out.append(
            {
                "target": f"{dest.rstrip('/')}/{subdir}",
                "source": cgroup_dirs[name],
                "fstype": None,
                "data": None,
                "flags": MS_BIND | MS_REC | base | (MS_RDONLY if readonly else 0),
                "propagation": 0,
            }
        )
    if readonly:
        # The tmpfs had to be writable to hold the mount points; now remount it read-only
        # (a superblock remount: the bind mounts below it keep their own flags).
        out.append(
            {
                "target": dest,
                "source": "tmpfs",
                "fstype": "tmpfs",
                "data": "mode=755",
                "flags": MS_REMOUNT | MS_RDONLY | base,
                "propagation": 0,
            }
        )
    return out


def mounts_config(
    spec: Mapping[str, Any],
    bundle: str,
    cgroup_dirs: Mapping[str, str],
    cgroup_v2: bool,
) -> list[MountSpec]:
    """spec.mounts -> MountSpec list (bind sources resolved against the bundle)."""
    out: list[MountSpec] = []
    for i, m in enumerate(spec.get("mounts") or []):
        options = m.get("options") or []
        flags, propagation, data = mount_options(options)
        fstype = m.get("type") or None
        source = m.get("source")
        is_bind = fstype == "bind" or bool(flags & MS_BIND)
        if is_bind:
            if not source:
                raise InvalidArgument(
                    f"{CONFIG_FILE}: mounts[{i}].source: a bind mount needs a source"
                )
            flags |= MS_BIND
            if not os.path.isabs(source):
                source = os.path.join(os.path.abspath(bundle), source)
            out.append(
                {
                    "target": m["destination"],
                    "source": source,
                    "fstype": None,
                    "data": data,
                    "flags": flags,
                    "propagation": propagation,
                }
            )
            continue
        if fstype is None:
            raise InvalidArgument(
                f"{CONFIG_FILE}: mounts[{i}].type: is required unless the mount is a bind mount"
            )
        if fstype == "cgroup":
            out.extend(_cgroup_mounts(m, flags, cgroup_dirs, cgroup_v2))
            continue
        out.append(
            {
                "target": m["destination"],
                "source": source if source is not None else fstype,
                "fstype": fstype,
                "data": data,
                "flags": flags,
                "propagation": propagation,
            }
        )
    return out


def devices_config(linux: Mapping[str, Any]) -> list[DeviceSpec]:
    """The default devices plus linux.devices (a listed path replaces a default one)."""
    devices: dict[str, DeviceSpec] = {}
    for path, major, minor in DEFAULT_DEVICES:
        devices[path] = {
            "path": path,
            "type": "c",
            "major": major,
            "minor": minor,
            "mode": 0o666,
            "uid": 0,
            "gid": 0,
        }
    for dev in linux.get("devices") or []:
        kind = dev["type"]
        devices[dev["path"]] = {
            "path": dev["path"],
            "type": "c" if kind == "u" else kind,
            "major": dev.get("major") or 0,
            "minor": dev.get("minor") or 0,
            "mode": (dev["fileMode"] if dev.get("fileMode") is not None else 0o666) & 0o7777,
            "uid": dev.get("uid") or 0,
            "gid": dev.get("gid") or 0,
        }
    return list(devices.values())


def start_hooks(spec: Mapping[str, Any]) -> list[HookSpec]:
    out: list[HookSpec] = []
    for hook in (spec.get("hooks") or {}).get("startContainer") or []:
        out.append(
            {
                "path": hook["path"],
                "args": list(hook.get("args") or [hook["path"]]),
                "env": list(hook.get("env") or []),
                "timeout": int(hook.get("timeout") or 0),
            }
        )
    return out


def _process_fields(
    cfg: SpawnConfig,
    process: Mapping[str, Any],
    where: str,
    prefix: str,
    seccomp: Mapping[str, Any] | None,
    console_fd: int | None,
    seccomp_cache: str | None = None,
) -> None:
    """Fills the process part of a SpawnConfig from a validated OCI process object."""
    user = process.get("user") or {}
    cfg["uid"] = user.get("uid", 0)
    cfg["gid"] = user.get("gid", 0)
    gids = user.get("additionalGids")
    if gids is not None:
        cfg["additional_gids"] = list(gids)
    else:
        # Drop the runtime's own supplementary groups; an unprivileged runtime usually may
        # not call setgroups in its user namespace, so it leaves them alone.
        cfg["additional_gids"] = [] if os.geteuid() == 0 else None
    umask = user.get("umask")
    cfg["umask"] = umask if umask is not None else DEFAULT_UMASK
    cfg["rlimits"] = [
        clamp_rlimit(rlimit_number(r["type"]), r["type"], r["soft"], r["hard"])
        for r in process.get("rlimits") or []
    ]
    cfg["capabilities"] = capability_masks(
        process.get("capabilities"), f"{where}: {prefix}capabilities"
    )
    cfg["no_new_privileges"] = bool(process.get("noNewPrivileges", False))
    cfg["oom_score_adj"] = process.get("oomScoreAdj")
    if seccomp is not None and seccomp_cache is not None:
        cfg["seccomp_bpf"], cfg["seccomp_flags"] = cached_seccomp(seccomp, seccomp_cache)
    elif seccomp is not None:
        from pyrt.runtime.seccomp import compile_seccomp

        cfg["seccomp_bpf"], cfg["seccomp_flags"] = compile_seccomp(seccomp, CONFIG_FILE)
    else:
        cfg["seccomp_bpf"] = None
        cfg["seccomp_flags"] = 0
    terminal = bool(process.get("terminal", False))
    has_console = console_fd is not None and console_fd >= 0
    if terminal and not has_console:
        raise InvalidArgument(f"{where}: {prefix}terminal: is true, so a console socket is needed")
    if not terminal and has_console:
        raise InvalidArgument(
            f"{where}: {prefix}terminal: a console socket was given but terminal is false"
        )
    cfg["terminal"] = terminal
    if has_console:
        assert console_fd is not None
        cfg["console_fd"] = console_fd


# --- the two entry points ----------------------------------------------------------------------


def to_spawn_config(
    spec: Mapping[str, Any],
    bundle: str,
    *,
    exec_fifo: str | None,
    console_fd: int | None,
    preserve_fds: int,
    cgroup_procs: list[str],
    barrier: bool,
    state_json: str,
    stdio: tuple[int, int, int] | None = None,
    cgroup_dirs: Mapping[str, str] | None = None,
    cgroup_v2: bool | None = None,
    no_pivot: bool = False,
    seccomp_cache: str | None = None,
) -> SpawnConfig:
    """A validated config.json (see spec.load_spec) -> the SpawnConfig for create/run.

    `cgroup_dirs` maps v1 hierarchy names ("memory", "cpu,cpuacct", "unified") to the
    container's cgroup directory in each; it is used for "cgroup" mounts on v1/hybrid hosts.
    `cgroup_v2` overrides the detection of a pure v2 host. `seccomp_cache`: a directory
    where compiled seccomp programs are kept (see cached_seccomp).
    """
    process = spec.get("process")
    if process is None:
        raise InvalidArgument(f"{CONFIG_FILE}: process: is required")
    linux = spec.get("linux") or {}
    new_ns, join = namespace_config(spec)
    root = spec["root"]
    rootfs = os.path.realpath(os.path.join(os.path.abspath(bundle), root["path"]))
    prop = linux.get("rootfsPropagation")
    v2 = host_cgroup_v2() if cgroup_v2 is None else cgroup_v2

    cfg: SpawnConfig = {
        "argv": list(process["args"]),
        "env": list(process.get("env") or []),
        "cwd": process["cwd"],
        "new_ns": new_ns,
        "join": join,
        "uid_map": id_map(linux.get("uidMappings")) if new_ns & CLONE_NEWUSER else None,
        "gid_map": id_map(linux.get("gidMappings")) if new_ns & CLONE_NEWUSER else None,
        "cgroup_procs": list(cgroup_procs),
        "rootfs": rootfs,
        "rootfs_readonly": bool(root.get("readonly", False)),
        "no_pivot": no_pivot,
        "rootfs_propagation": PROPAGATION_FLAGS[prop] if prop else DEFAULT_ROOTFS_PROPAGATION,
        "mounts": mounts_config(spec, bundle, cgroup_dirs or {}, v2),
        "devices": devices_config(linux),
        "masked_paths": list(linux.get("maskedPaths") or []),
        "readonly_paths": list(linux.get("readonlyPaths") or []),
        "hostname": spec.get("hostname") or None,
        "domainname": spec.get("domainname") or None,
        "sysctl": dict(linux.get("sysctl") or {}),
        "preserve_fds": preserve_fds,
        "exec_fifo": exec_fifo,
        "barrier": barrier,
        "start_hooks": start_hooks(spec),
        "state_json": state_json,
    }
    _process_fields(
        cfg, process, CONFIG_FILE, "process.", linux.get("seccomp"), console_fd, seccomp_cache
    )
    if stdio is not None:
        cfg["stdio"] = stdio
    return cfg


# bump when the cache file format or what goes into a program changes
_SECCOMP_CACHE_VERSION = "pyrt-seccomp-cache 2"  # 2: binary-tree programs


def cached_seccomp(seccomp: Mapping[str, Any], cache_dir: str) -> tuple[bytes, int]:
    """compile_seccomp(seccomp), kept in cache_dir/<sha256>.bpf.

    Compiling goes through libseccomp (tens of ms for Docker's profile); a runtime that
    creates container after container from one profile (Docker's default) pays that once.
    The key is the SHA-256 of the linux.seccomp JSON and the machine architecture; the
    file ("<flags>\n" then the struct sock_filter[] bytes) is written atomically, and one
    that does not read back as a whole program is compiled again. The spec is validated
    every time, so bad input gets the same error with or without a cache."""
    import hashlib

    from pyrt.runtime.seccomp import compile_seccomp, validate_seccomp
    from pyrt.runtime.state import atomic_write, json_dumps

    validate_seccomp(seccomp, CONFIG_FILE)
    key = "\n".join((_SECCOMP_CACHE_VERSION, os.uname().machine, json_dumps(seccomp)))
    path = os.path.join(cache_dir, hashlib.sha256(key.encode()).hexdigest() + ".bpf")
    try:
        with open(path, "rb") as f:
            head, nl, prog = f.read().partition(b"\n")
        if nl and head.isdigit() and prog and len(prog) % 8 == 0:
            return prog, int(head)
    except OSError:
        pass
    prog, flags = compile_seccomp(seccomp, CONFIG_FILE)
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        atomic_write(path, str(flags).encode() + b"\n" + prog, 0o600)
    except OSError:
        pass  # a cache that cannot be written only costs the next create the compile
    return prog, flags


def _ns_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def exec_join_list(container_spec: Mapping[str, Any], target_pid: int) -> list[tuple[int, str]]:
    """The namespaces of a running container to join, as (CLONE_NEW*, /proc/<pid>/ns/<x>).

    Only namespaces the container created or joined, and of those only the ones that
    differ from this process' own; user namespace first.
    """
    kinds = {ns["type"] for ns in (container_spec.get("linux") or {}).get("namespaces") or []}
    join: list[tuple[int, str]] = []
    for kind in JOIN_ORDER:
        if kind not in kinds:
            continue
        name = NS_PROC_NAMES[kind]
        path = f"/proc/{target_pid}/ns/{name}"
        try:
            theirs = _ns_id(path)
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{target_pid}"):
                raise FailedPrecondition(f"container process {target_pid} is not running") from None
            raise FailedPrecondition(
                f"{path}: the kernel does not offer {kind} namespaces"
            ) from None
        except OSError as e:
            raise FailedPrecondition(f"{path}: {e.strerror}") from None
        try:
            ours = _ns_id(f"/proc/self/ns/{name}")
        except OSError:
            ours = (-1, -1)
        if theirs != ours:
            join.append((NS_FLAGS[kind], path))
    return join


def to_exec_config(
    process: Mapping[str, Any],
    container_spec: Mapping[str, Any],
    target_pid: int,
    *,
    console_fd: int | None,
    preserve_fds: int,
    cgroup_procs: list[str],
    stdio: tuple[int, int, int] | None = None,
    where: str = "process.json",
) -> SpawnConfig:
    """A validated exec process (spec.validate_process) -> SpawnConfig for `exec`.

    Joins every namespace of the running container (target_pid) and its root; the
    container's seccomp profile applies to the new process too.
    """
    linux = container_spec.get("linux") or {}
    cfg: SpawnConfig = {
        "argv": list(process["args"]),
        "env": list(process.get("env") or []),
        "cwd": process["cwd"],
        "new_ns": 0,
        "join": exec_join_list(container_spec, target_pid),
        "target_pid": target_pid,
        "cgroup_procs": list(cgroup_procs),
        "preserve_fds": preserve_fds,
    }
    _process_fields(cfg, process, where, "", linux.get("seccomp"), console_fd)
    if stdio is not None:
        cfg["stdio"] = stdio
    return cfg
