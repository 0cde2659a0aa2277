"""Compiled seccomp programs, loaded into the real kernel in a forked child.

Each test forks; the child sets no_new_privs, loads the program (prctl(PR_SET_SECCOMP) or
seccomp(2) with the profile's flags), runs a few system calls and reports what happened
through a pipe. Nothing outlives the test: the child exits and is reaped.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyrt.runtime.seccomp import compile_seccomp

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_SET_MODE_FILTER = 1
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}

libc = ctypes.CDLL(None, use_errno=True)


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _load(program: bytes, flags: int, use_syscall: bool) -> None:
    buf = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.addressof(buf))
    ul = ctypes.c_ulong
    if libc.prctl(PR_SET_NO_NEW_PRIVS, ul(1), ul(0), ul(0), ul(0)) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if use_syscall:
        nr = SYS_SECCOMP[platform.machine()]
        rc = libc.syscall(ctypes.c_long(nr), ul(SECCOMP_SET_MODE_FILTER), ul(flags),
                          ctypes.byref(prog))  # fmt: skip
    else:
        assert flags == 0, "prctl cannot pass seccomp flags"
        rc = libc.prctl(PR_SET_SECCOMP, ul(SECCOMP_MODE_FILTER), ctypes.byref(prog), ul(0), ul(0))
    if rc != 0:
        raise OSError(ctypes.get_errno(), "loading the seccomp filter")


def run_filtered(
    sc: dict[str, Any], body: Callable[[], Any], *, use_syscall: bool = False
) -> tuple[int, Any]:
    """Compiles `sc`, runs body() in a child under it; returns (wait status, body's result).

    The result is None when the child died before reporting.
    """
    program, flags = compile_seccomp(sc)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            os.close(r)
            _load(program, flags, use_syscall)
            out = {"ok": body()}
        except BaseException as e:  # report anything, including a failed load
            out = {"error": f"{type(e).__name__}: {e}"}
            code = 1
        try:
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    data = json.loads(b"".join(chunks)) if chunks else None
    if data is not None and "error" in data:
        pytest.fail(f"child: {data['error']}")
    return status, (data["ok"] if data is not None else None)


def errno_of(fn: Callable[[], Any]) -> int:
    try:
        fn()
    except OSError as e:
        return e.errno or -1
    return 0


def test_mkdir_gets_the_configured_errno(tmp_path: Path) -> None:
    sc = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES},
            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"},
        ],
    }
    target = tmp_path / "made"
    existing = tmp_path / "existing"
    existing.mkdir()

    def body() -> dict[str, Any]:
        (tmp_path / "file").write_text("written")  # openat, write: allowed
        return {
            "mkdir": errno_of(lambda: os.mkdir(target)),
            "rmdir": errno_of(lambda: os.rmdir(existing)),
            "pid": os.getpid(),
            "read": (tmp_path / "file").read_text(),
        }

    status, got = run_filtered(sc, body)
    assert os.waitstatus_to_exitcode(status) == 0
    assert got["mkdir"] == errno.EACCES
    assert got["rmdir"] == errno.EPERM  # errnoRet not given: EPERM
    assert got["pid"] > 0
    assert got["read"] == "written"
    assert not target.exists()
    assert existing.is_dir()


def test_without_filter_mkdir_works(tmp_path: Path) -> None:
    # The same harness with an allow-all filter: proves the denials above come from rules.
    target = tmp_path / "made"
    status, got = run_filtered(
        {"defaultAction": "SCMP_ACT_ALLOW"}, lambda: errno_of(lambda: os.mkdir(target))
    )
    assert (os.waitstatus_to_exitcode(status), got) == (0, 0)
    assert target.is_dir()


def test_argument_filter_personality() -> None:
    query = 0xFFFFFFFF  # personality(0xffffffff) only reads the current persona
    sc = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EPERM,
                "args": [{"index": 0, "value": query, "op": "SCMP_CMP_NE"}],
            }
        ],
    }

    def call(persona: int) -> tuple[int, int]:
        ctypes.set_errno(0)
        rc = libc.personality(ctypes.c_ulong(persona))
        return rc, ctypes.get_errno()

    def body() -> dict[str, Any]:
        return {"query": call(query), "set0": call(0), "set8": call(0x0008)}

    status, got = run_filtered(sc, body)
    assert os.waitstatus_to_exitcode(status) == 0
    rc, _ = got["query"]
    assert rc >= 0
    assert got["set0"] == [-1, errno.EPERM]
    assert got["set8"] == [-1, errno.EPERM]


def test_masked_eq_on_open_flags(tmp_path: Path) -> None:
    # Deny opening with O_CREAT (EROFS); opening an existing file read-only still works.
    (tmp_path / "existing").write_text("hello")
    creat = os.O_CREAT
    sc = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["openat"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EROFS,
                "args": [
                    {"index": 2, "value": creat, "valueTwo": creat, "op": "SCMP_CMP_MASKED_EQ"}
                ],
            },
            {
                "names": ["open"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EROFS,
                "args": [
                    {"index": 1, "value": creat, "valueTwo": creat, "op": "SCMP_CMP_MASKED_EQ"}
                ],
            },
        ],
    }

    def body() -> dict[str, Any]:
        fd = os.open(tmp_path / "existing", os.O_RDONLY)
        data = os.read(fd, 100).decode()
        os.close(fd)
        return {
            "read": data,
            "create": errno_of(lambda: os.open(tmp_path / "new", os.O_WRONLY | os.O_CREAT, 0o600)),
        }

    status, got = run_filtered(sc, body)
    assert os.waitstatus_to_exitcode(status) == 0
    assert got == {"read": "hello", "create": errno.EROFS}
    assert not (tmp_path / "new").exists()


def test_kill_process_action() -> None:
    sc = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"}],
    }
    status, got = run_filtered(sc, lambda: os.uname().sysname)
    assert got is None
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


def test_allowlist_with_default_errno_ret() -> None:
    # Default deny with ENOSYS; only what the child needs to compute and report is allowed.
    allowed = [
        "read", "write", "close", "exit", "exit_group", "brk", "mmap", "munmap", "mremap",
        "madvise", "mprotect", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "futex",
        "getpid", "gettid", "fstat", "newfstatat", "lseek", "getrandom", "sigaltstack",
    ]  # fmt: skip
    sc = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.ENOSYS,
        "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}],
    }

    def body() -> dict[str, Any]:
        return {"getcwd": errno_of(os.getcwd), "pid": os.getpid()}

    status, got = run_filtered(sc, body)
    assert os.waitstatus_to_exitcode(status) == 0
    assert got["getcwd"] == errno.ENOSYS
    assert got["pid"] > 0


@pytest.mark.skipif(platform.machine() not in SYS_SECCOMP, reason="seccomp(2) number unknown")
def test_flags_are_accepted_by_seccomp_syscall(tmp_path: Path) -> None:
    sc = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    status, got = run_filtered(
        sc, lambda: errno_of(lambda: os.mkdir(tmp_path / "x")), use_syscall=True
    )
    assert os.waitstatus_to_exitcode(status) == 0
    assert got == errno.EPERM
