"""Docker's default seccomp profile, and the resolution of Docker-format profiles into the
runtime spec's linux.seccomp.

A Docker-format profile is the runtime spec's seccomp object plus conditions that the
engine settles before writing the spec:

- ``archMap``: [{architecture, subArchitectures}] - the entry of the host's architecture
  (and its sub-architectures) becomes ``architectures``;
- per rule ``includes`` / ``excludes``: {caps, arches, minKernel} - a rule applies when all
  of its included caps are in the container's capability set, the host's architecture
  (Go's name: amd64, arm64, ...) is among its included arches, and the kernel is at least
  minKernel; it is dropped when any excluded cap is present, the architecture is excluded,
  or the kernel is at least the excluded minKernel;
- ``name`` (one syscall) as well as ``names``; ``comment`` is dropped.

The default profile allows a fixed list of syscalls and answers everything else with
EPERM. Syscalls that need a capability are allowed only with it (mount, unshare, setns...
with CAP_SYS_ADMIN; ptrace with CAP_SYS_PTRACE; ...). Without CAP_SYS_ADMIN, clone is
allowed only without namespace flags and clone3 fails with ENOSYS (so libc falls back to
clone, whose flags the filter can see); personality takes only the usual personas.
"""

from __future__ import annotations

import copy
import os
import platform
import re
from collections.abc import Iterable
from typing import Any

from pyrt.errors import InvalidArgument

ENOSYS = 38

#: clone(2) namespace flags: NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
CLONE_NS_FLAGS = 0x7E020000
#: personas a container may switch to: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
#: and 0xffffffff (the query)
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

#: Go's name for an architecture (as the profile's "arches" use) -> libseccomp's names
ARCH_SCMP: dict[str, list[str]] = {
    "amd64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "arm64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "386": ["SCMP_ARCH_X86"],
    "arm": ["SCMP_ARCH_ARM"],
    "s390x": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
    "mips64": ["SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"],
    "mips64le": ["SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"],
}
#: uname -m -> Go's architecture name
_MACHINE_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "armv7l": "arm",
    "armv6l": "arm",
    "s390x": "s390x",
    "ppc64le": "ppc64le",
    "riscv64": "riscv64",
    "mips64": "mips64",
}

# Allowed for every container, whatever its capabilities.
_ALLOWED = """
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod
fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork
fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64
futex futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32
geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit
get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday
getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch
io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get
ioprio_set io_setup io_submit io_uring_enter io_uring_register io_uring_setup ipc kill
landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr
link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2
mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv
msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open
openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free
pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64
process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink
readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr
rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask
sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat
sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete
timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate
truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat utimensat_time64 utimes
vfork vmsplice wait4 waitid waitpid write writev
"""

# Syscalls allowed only with a capability: capability -> syscalls.
_BY_CAP: dict[str, str] = {
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
    "CAP_SYS_ADMIN": (
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount "
        "mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname "
        "sethostname setns syslog umount umount2 unshare"
    ),
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "delete_module init_module finit_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
}

# Syscalls allowed only on some architectures (Go names): arches -> syscalls.
_BY_ARCH: list[tuple[tuple[str, ...], str]] = [
    (("ppc64le",), "sync_file_range2 swapcontext"),
    (
        ("arm", "arm64"),
        "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
    ),
    (("amd64", "x32"), "arch_prctl"),
    (("amd64", "x32", "x86"), "modify_ldt"),
    (("s390", "s390x"), "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"),
    (("riscv64",), "riscv_flush_icache"),
]

AF_VSOCK = 40


def _allow(names: str, **extra: Any) -> dict[str, Any]:
    return {"names": names.split(), "action": "SCMP_ACT_ALLOW", **extra}


def _build_default() -> dict[str, Any]:
    rules: list[dict[str, Any]] = [_allow(_ALLOWED)]
    # ptrace and process_vm_* are safe from kernel 4.8 on (seccomp is checked after ptrace)
    rules.append(_allow("process_vm_readv process_vm_writev ptrace",
                        includes={"minKernel": "4.8"}))  # fmt: skip
    # every socket family but AF_VSOCK
    rules.append(_allow("socket", args=[{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]))
    for persona in PERSONALITIES:
        rules.append(
            _allow("personality", args=[{"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}])
        )
    for arches, names in _BY_ARCH:
        rules.append(_allow(names, includes={"arches": list(arches)}))
    for cap, names in _BY_CAP.items():
        rules.append(_allow(names, includes={"caps": [cap]}))
    # without CAP_SYS_ADMIN: clone without namespace flags only (the flags are argument 0,
    # argument 1 on s390), clone3 refused with ENOSYS so libc falls back to clone
    no_admin = {"caps": ["CAP_SYS_ADMIN"]}
    clone_flags = {"value": CLONE_NS_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    rules.append(
        _allow("clone", args=[{"index": 0, **clone_flags}],
               excludes={**no_admin, "arches": ["s390", "s390x"]})
    )  # fmt: skip
    rules.append(
        _allow("clone", args=[{"index": 1, **clone_flags}],
               includes={"arches": ["s390", "s390x"]}, excludes=no_admin)
    )  # fmt: skip
    rules.append(
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS, "excludes": no_admin}
    )
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            {"architecture": scmp[0], "subArchitectures": scmp[1:]} for scmp in ARCH_SCMP.values()
        ],
        "syscalls": rules,
    }


_DEFAULT = _build_default()


def default_profile() -> dict[str, Any]:
    """Docker's default profile in Docker's format (a fresh copy; resolve it to use it)."""
    return copy.deepcopy(_DEFAULT)


def host_arch(machine: str | None = None) -> str:
    """Go's name for this machine's architecture (amd64, arm64...)."""
    m = machine or platform.machine()
    return _MACHINE_ARCH.get(m, m)


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of the running kernel (or of a uname -r string)."""
    rel = release or os.uname().release
    m = re.match(r"(\d+)\.(\d+)", rel)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _parse_kernel(value: object, path: str) -> tuple[int, int]:
    if not isinstance(value, str) or not re.fullmatch(r"\d+\.\d+(\.\d+)?", value):
        raise InvalidArgument(f"{path}: invalid kernel version {value!r} (MAJOR.MINOR)")
    major, minor = value.split(".")[:2]
    return int(major), int(minor)


def _str_list(value: object, path: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{path}: must be a list of strings")
    return value


def resolve_profile(
    profile: dict[str, Any],
    *,
    capabilities: Iterable[str],
    arch: str | None = None,
    kernel: tuple[int, int] | None = None,
    where: str = "seccomp profile",
) -> dict[str, Any]:
    """A Docker-format profile -> the runtime spec's linux.seccomp for one container.

    `capabilities`: the container's capability set ("CAP_..." names); `arch`: Go's name
    of the architecture (default: this machine's); `kernel`: (major, minor) (default: the
    running kernel). A profile already in the runtime spec's format comes back unchanged
    but for dropped unknown keys. Bad structure raises InvalidArgument naming the field.
    """
    if not isinstance(profile, dict):
        raise InvalidArgument(f"{where}: must be an object")
    caps = {c.upper() if c.upper().startswith("CAP_") else "CAP_" + c.upper()
            for c in capabilities}  # fmt: skip
    goarch = arch or host_arch()
    kver = kernel or kernel_version()

    out: dict[str, Any] = {}
    if "defaultAction" not in profile:
        raise InvalidArgument(f"{where}: defaultAction is required")
    for key in ("defaultAction", "defaultErrnoRet", "flags", "listenerPath", "listenerMetadata"):
        if profile.get(key) is not None:
            out[key] = copy.deepcopy(profile[key])

    arches = _str_list(profile.get("architectures"), f"{where}: architectures")
    arch_map = profile.get("archMap")
    if arches and arch_map:
        raise InvalidArgument(f"{where}: use either architectures or archMap, not both")
    if arch_map is not None:
        if not isinstance(arch_map, list):
            raise InvalidArgument(f"{where}: archMap must be a list")
        native = ARCH_SCMP.get(goarch, [])[:1]
        for i, entry in enumerate(arch_map):
            if not isinstance(entry, dict) or not isinstance(entry.get("architecture"), str):
                raise InvalidArgument(f"{where}: archMap[{i}].architecture is required")
            if entry["architecture"] in native:
                arches = [entry["architecture"]] + _str_list(
                    entry.get("subArchitectures"), f"{where}: archMap[{i}].subArchitectures"
                )
    if arches:
        out["architectures"] = list(dict.fromkeys(arches))

    raw_rules = profile.get("syscalls")
    if raw_rules is not None and not isinstance(raw_rules, list):
        raise InvalidArgument(f"{where}: syscalls must be a list")
    rules: list[dict[str, Any]] = []
    for i, rule in enumerate(raw_rules or []):
        rp = f"{where}: syscalls[{i}]"
        if not isinstance(rule, dict):
            raise InvalidArgument(f"{rp}: must be an object")
        if not _applies(rule, caps, goarch, kver, rp):
            continue
        names = _str_list(rule.get("names"), f"{rp}.names")
        if rule.get("name"):
            if not isinstance(rule["name"], str):
                raise InvalidArgument(f"{rp}.name: must be a string")
            if names:
                raise InvalidArgument(f"{rp}: use either name or names, not both")
            names = [rule["name"]]
        if not names:
            raise InvalidArgument(f"{rp}: names is required")
        new: dict[str, Any] = {"names": list(names), "action": rule.get("action")}
        for key in ("errnoRet", "args"):
            if rule.get(key) is not None:
                new[key] = copy.deepcopy(rule[key])
        rules.append(new)
    out["syscalls"] = rules
    return out


def _applies(
    rule: dict[str, Any], caps: set[str], arch: str, kernel: tuple[int, int], path: str
) -> bool:
    inc = rule.get("includes") or {}
    exc = rule.get("excludes") or {}
    if not isinstance(inc, dict) or not isinstance(exc, dict):
        raise InvalidArgument(f"{path}: includes and excludes must be objects")
    inc_caps = _str_list(inc.get("caps"), f"{path}.includes.caps")
    if inc_caps and not all(c in caps for c in inc_caps):
        return False
    inc_arches = _str_list(inc.get("arches"), f"{path}.includes.arches")
    if inc_arches and arch not in inc_arches:
        return False
    if inc.get("minKernel") and kernel < _parse_kernel(inc["minKernel"], f"{path}.includes"):
        return False
    exc_caps = _str_list(exc.get("caps"), f"{path}.excludes.caps")
    if any(c in caps for c in exc_caps):
        return False
    if arch in _str_list(exc.get("arches"), f"{path}.excludes.arches"):
        return False
    return not (
        exc.get("minKernel") and kernel >= _parse_kernel(exc["minKernel"], f"{path}.excludes")
    )


# resolved default profiles by (capabilities, arch, kernel): nearly every container asks for
# the same one, and resolving walks the whole profile
_RESOLVED: dict[tuple[frozenset[str], str, tuple[int, int]], dict[str, Any]] = {}


def default_seccomp(
    capabilities: Iterable[str], arch: str | None = None, kernel: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Docker's default profile resolved for a container with these capabilities: the same
    object for the same arguments (it goes into specs as it is: read it, never change it)."""
    key = (frozenset(capabilities), arch or host_arch(), kernel or kernel_version())
    found = _RESOLVED.get(key)
    if found is None:
        found = resolve_profile(_DEFAULT, capabilities=key[0], arch=key[1], kernel=key[2],
                                where="default profile")  # fmt: skip
        if len(_RESOLVED) >= 64:
            _RESOLVED.clear()
        _RESOLVED[key] = found
    return found


__all__ = [
    "ARCH_SCMP",
    "CLONE_NS_FLAGS",
    "PERSONALITIES",
    "default_profile",
    "default_seccomp",
    "host_arch",
    "kernel_version",
    "resolve_profile",
]
