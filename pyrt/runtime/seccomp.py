"""OCI linux.seccomp -> a classic BPF program (struct sock_filter[]) and seccomp flags.

The filter is built with libseccomp (libseccomp.so.2, through ctypes: no compiler and no
headers needed) and exported with seccomp_export_bpf into a memfd, whose bytes the C
core hands to seccomp(2) in the container process. libseccomp knows each architecture's
syscall numbers and how to compare 64-bit arguments on 32-bit ABIs.

Semantics follow runc's where the runtime spec leaves room:
- a syscall name unknown on this architecture is skipped (the kernel may not have it);
- a rule whose action equals the default action is skipped (it would change nothing);
- several conditions on the same argument index in one rule are OR-ed (one rule each);
  conditions on different indexes are AND-ed;
- SCMP_ACT_ERRNO / SCMP_ACT_TRACE return errnoRet, or EPERM when it is not given.

libseccomp is loaded only when a spec has a seccomp section: `validate_seccomp` is pure
Python.
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    import logging

from pyrt.errors import InvalidArgument, SystemError_


def _log() -> logging.Logger:
    """The "pyrt.runtime" logger; logging is imported on first use (pyrt-runc start-up)."""
    import logging

    return logging.getLogger("pyrt.runtime")


# --- actions (values from seccomp.h / libseccomp's seccomp.h) ---------------------------
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_ERRNO_BASE = 0x00050000
SCMP_ACT_TRACE_BASE = 0x7FF00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_NOTIFY = 0x7FC00000

ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": SCMP_ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": SCMP_ACT_TRAP,
    "SCMP_ACT_ERRNO": SCMP_ACT_ERRNO_BASE,
    "SCMP_ACT_TRACE": SCMP_ACT_TRACE_BASE,
    "SCMP_ACT_ALLOW": SCMP_ACT_ALLOW,
    "SCMP_ACT_LOG": SCMP_ACT_LOG,
    "SCMP_ACT_NOTIFY": SCMP_ACT_NOTIFY,
}
_ACTIONS_WITH_RET = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")

# --- comparison operators (enum scmp_compare) ---------------------------------------------
OPS: dict[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# --- architectures: OCI name -> libseccomp's name ------------------------------------------
ARCHES: dict[str, str] = {
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_PARISC": "parisc",
    "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64",
    "SCMP_ARCH_LOONGARCH64": "loongarch64",
    "SCMP_ARCH_M68K": "m68k",
    "SCMP_ARCH_SH": "sh",
    "SCMP_ARCH_SHEB": "sheb",
}

# --- seccomp(2) filter flags ---------------------------------------------------------------
FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}
# Flags that only make sense with a user-space listener, which pyrt does not provide.
_LISTENER_FLAGS = ("SECCOMP_FILTER_FLAG_NEW_LISTENER", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")

_U64_MAX = (1 << 64) - 1


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _err(where: str, path: str, msg: str) -> InvalidArgument:
    return InvalidArgument(f"{where}: {path}: {msg}")


def _check_action(name: object, where: str, path: str) -> str:
    if not isinstance(name, str):
        raise _err(where, path, "must be a string")
    if name not in ACTIONS:
        raise _err(where, path, f"unknown seccomp action {name!r}")
    if name == "SCMP_ACT_NOTIFY":
        raise _err(where, path, "SCMP_ACT_NOTIFY (a user-space seccomp listener) is not supported")
    return name


def _check_ret(obj: Mapping[str, Any], key: str, action: str, where: str, path: str) -> None:
    if key not in obj or obj[key] is None:
        return
    value = obj[key]
    if not _is_int(value) or not 0 <= value <= 0xFFFF:
        raise _err(where, f"{path}.{key}", "must be an integer from 0 to 65535")
    if action not in _ACTIONS_WITH_RET:
        raise _err(
            where,
            f"{path}.{key}",
            f"is only allowed with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {action}",
        )


def validate_seccomp(sc: object, where: str = "config.json", path: str = "linux.seccomp") -> None:
    """Checks the structure of a linux.seccomp object; raises InvalidArgument naming the field.

    Pure Python: does not load libseccomp.
    """
    if not isinstance(sc, dict):
        raise _err(where, path, "must be an object")
    default = _check_action(sc.get("defaultAction"), where, f"{path}.defaultAction")
    _check_ret(sc, "defaultErrnoRet", default, where, path)

    arches = sc.get("architectures")
    if arches is not None:
        if not isinstance(arches, list):
            raise _err(where, f"{path}.architectures", "must be a list")
        for i, arch in enumerate(arches):
            if arch not in ARCHES:
                raise _err(where, f"{path}.architectures[{i}]", f"unknown architecture {arch!r}")

    flags = sc.get("flags")
    if flags is not None:
        if not isinstance(flags, list):
            raise _err(where, f"{path}.flags", "must be a list")
        for i, flag in enumerate(flags):
            if flag in _LISTENER_FLAGS:
                raise _err(
                    where,
                    f"{path}.flags[{i}]",
                    f"{flag} needs a seccomp listener, which is not supported",
                )
            if flag not in FLAGS:
                raise _err(where, f"{path}.flags[{i}]", f"unknown seccomp flag {flag!r}")

    if sc.get("listenerPath"):
        raise _err(where, f"{path}.listenerPath", "seccomp listeners are not supported")

    syscalls = sc.get("syscalls")
    if syscalls is None:
        return
    if not isinstance(syscalls, list):
        raise _err(where, f"{path}.syscalls", "must be a list")
    for i, rule in enumerate(syscalls):
        rpath = f"{path}.syscalls[{i}]"
        if not isinstance(rule, dict):
            raise _err(where, rpath, "must be an object")
        names = rule.get("names")
        if not isinstance(names, list) or not names:
            raise _err(where, f"{rpath}.names", "must be a non-empty list of syscall names")
        for j, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise _err(where, f"{rpath}.names[{j}]", "must be a non-empty string")
        action = _check_action(rule.get("action"), where, f"{rpath}.action")
        _check_ret(rule, "errnoRet", action, where, rpath)
        args = rule.get("args")
        if args is None:
            continue
        if not isinstance(args, list):
            raise _err(where, f"{rpath}.args", "must be a list")
        for k, arg in enumerate(args):
            apath = f"{rpath}.args[{k}]"
            if not isinstance(arg, dict):
                raise _err(where, apath, "must be an object")
            index = arg.get("index")
            if not _is_int(index) or not 0 <= index <= 5:
                raise _err(where, f"{apath}.index", "must be an integer from 0 to 5")
            if "value" not in arg:
                raise _err(where, f"{apath}.value", "is required")
            for key in ("value", "valueTwo"):
                v = arg.get(key, 0)
                if not _is_int(v) or not 0 <= v <= _U64_MAX:
                    raise _err(where, f"{apath}.{key}", "must be an unsigned 64-bit integer")
            op = arg.get("op")
            if op not in OPS:
                raise _err(where, f"{apath}.op", f"unknown comparison operator {op!r}")


def seccomp_flags(sc: Mapping[str, Any]) -> int:
    """The SECCOMP_FILTER_FLAG_* bits of a validated linux.seccomp object."""
    value = 0
    for flag in sc.get("flags") or []:
        value |= FLAGS[flag]
    return value


def _action_value(name: str, ret: object) -> int:
    base = ACTIONS[name]
    if name in _ACTIONS_WITH_RET:
        code = ret if _is_int(ret) else _errno.EPERM
        return base | (code & 0xFFFF)
    return base


# --- libseccomp through ctypes ---------------------------------------------------------------
# (ctypes, not cffi: cffi parses C declarations with pycparser, ~5 MB of memory the daemon
# keeps for good after its first container, and ~100 ms of imports)

_NR_SCMP_ERROR = -1
_lib: Any = None
_arg_cmp: Any = None  # the ctypes struct scmp_arg_cmp


def _libseccomp() -> Any:
    global _lib, _arg_cmp
    if _lib is None:
        import ctypes

        class ScmpArgCmp(ctypes.Structure):
            _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                        ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]

        try:
            lib = ctypes.CDLL("libseccomp.so.2")
        except OSError as e:
            raise SystemError_(
                f"seccomp: cannot load libseccomp.so.2 (install libseccomp2): {e}"
            ) from e
        ctx, u32, i32, uint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint
        for name, res, args in (
            ("seccomp_init", ctx, [u32]),
            ("seccomp_release", None, [ctx]),
            ("seccomp_arch_resolve_name", u32, [ctypes.c_char_p]),
            ("seccomp_arch_native", u32, []),
            ("seccomp_arch_add", i32, [ctx, u32]),
            ("seccomp_syscall_resolve_name", i32, [ctypes.c_char_p]),
            ("seccomp_rule_add_array", i32, [ctx, u32, i32, uint, ctypes.c_void_p]),
            ("seccomp_export_bpf", i32, [ctx, i32]),
            ("seccomp_attr_set", i32, [ctx, i32, u32]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        _lib, _arg_cmp = lib, ScmpArgCmp
    return _lib


def _arg_cmps(conds: list[tuple[int, int, int, int]]) -> Any:
    """struct scmp_arg_cmp[] (unsigned int arg; int op; uint64_t datum_a, datum_b)."""
    arr = (_arg_cmp * max(len(conds), 1))()
    for k, (index, op, a, b) in enumerate(conds):
        arr[k].arg, arr[k].op, arr[k].datum_a, arr[k].datum_b = index, op, a, b
    return arr


_SCMP_FLTATR_CTL_OPTIMIZE = 8  # libseccomp's enum scmp_filter_attr


def compile_seccomp(
    sc: Mapping[str, Any], where: str = "config.json", path: str = "linux.seccomp"
) -> tuple[bytes, int]:
    """Compiles a linux.seccomp object to (struct sock_filter[] bytes, SECCOMP_FILTER_FLAG_*).

    Raises InvalidArgument for a bad spec (naming the field), SystemError_ when libseccomp
    fails or cannot be loaded.
    """
    validate_seccomp(sc, where, path)
    lib = _libseccomp()

    default = _action_value(sc["defaultAction"], sc.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise SystemError_("seccomp: seccomp_init failed")
    try:
        # a binary tree of the syscall numbers instead of one comparison after another: each
        # system call of the container, and the kernel's per-syscall action cache built as
        # the filter is installed (it runs the filter for every syscall number), walk
        # log2(n) branches rather than up to n; the decisions are the same. Older
        # libseccomp (< 2.5) refuses the attribute: the linear program then.
        lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_OPTIMIZE, 2)
        for i, arch in enumerate(sc.get("architectures") or []):
            token = lib.seccomp_arch_resolve_name(ARCHES[arch].encode())
            if token == 0:
                _log().warning(
                    "%s: %s.architectures[%d]: %s is not known to this libseccomp; ignored",
                    where,
                    path,
                    i,
                    arch,
                )
                continue
            rc = lib.seccomp_arch_add(ctx, token)
            if rc < 0 and rc != -_errno.EEXIST:
                raise SystemError_(
                    f"{where}: {path}.architectures[{i}]: cannot add {arch}: {os.strerror(-rc)}",
                    -rc,
                )

        for i, rule in enumerate(sc.get("syscalls") or []):
            rpath = f"{path}.syscalls[{i}]"
            action = _action_value(rule["action"], rule.get("errnoRet"))
            if action == default:
                continue
            groups = _condition_groups(rule.get("args") or [])
            for name in rule["names"]:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == _NR_SCMP_ERROR:
                    _log().debug("seccomp: syscall %r unknown on this architecture; skipped", name)
                    continue
                for conds in groups:
                    arr = _arg_cmps(conds)
                    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(conds), arr)
                    if rc < 0:
                        raise InvalidArgument(
                            f"{where}: {rpath}: cannot add a rule for {name!r}: {os.strerror(-rc)}"
                        )

        fd = os.memfd_create("pyrt-seccomp", os.MFD_CLOEXEC)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise SystemError_(f"seccomp: exporting the BPF program: {os.strerror(-rc)}", -rc)
            size = os.fstat(fd).st_size
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while size > 0:
                chunk = os.read(fd, size)
                if not chunk:
                    break
                chunks.append(chunk)
                size -= len(chunk)
            program = b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)

    if not program or len(program) % 8:
        raise SystemError_(f"seccomp: libseccomp produced a bad program ({len(program)} bytes)")
    return program, seccomp_flags(sc)


def _condition_groups(args: list[dict[str, Any]]) -> list[list[tuple[int, int, int, int]]]:
    """Conditions of one rule, grouped into the rules libseccomp gets.

    All conditions go into one rule (AND) unless some index repeats; then each condition
    gets a rule of its own (OR), as runc does.
    """
    conds = [(a["index"], OPS[a["op"]], a.get("value", 0), a.get("valueTwo", 0)) for a in args]
    if not conds:
        return [[]]
    indexes = [c[0] for c in conds]
    if len(set(indexes)) == len(indexes):
        return [conds]
    return [[c] for c in conds]
