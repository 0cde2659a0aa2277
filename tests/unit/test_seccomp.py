"""linux.seccomp -> BPF: validation messages and the shape of the compiled program."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pyrt.errors import InvalidArgument
from pyrt.runtime.seccomp import compile_seccomp, validate_seccomp

BPF_RET = 0x06  # BPF_RET class (| BPF_K = 0x00)
SECCOMP_RET_ERRNO = 0x00050000


def profile(*rules: dict[str, Any], **top: Any) -> dict[str, Any]:
    sc: dict[str, Any] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(rules)}
    sc.update(top)
    return sc


def instructions(program: bytes) -> list[tuple[int, int, int, int]]:
    """struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; }"""
    return [struct.unpack_from("=HBBI", program, off) for off in range(0, len(program), 8)]


def return_values(program: bytes) -> set[int]:
    return {k for code, _, _, k in instructions(program) if code & 0x07 == BPF_RET}


def test_program_shape() -> None:
    program, flags = compile_seccomp(
        profile({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13})
    )
    assert isinstance(program, bytes)
    assert len(program) > 0 and len(program) % 8 == 0
    assert flags == 0
    rets = return_values(program)
    assert SECCOMP_RET_ERRNO | 13 in rets  # the rule's action
    assert 0x7FFF0000 in rets  # the default action: allow


def test_program_changes_with_rules() -> None:
    a, _ = compile_seccomp(profile({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}))
    b, _ = compile_seccomp(profile({"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}))
    c, _ = compile_seccomp(profile({"names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS"}))
    d, _ = compile_seccomp(
        profile(
            {
                "names": ["mkdir"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 1, "value": 0o700, "op": "SCMP_CMP_EQ"}],
            }
        )
    )
    assert len({a, b, c, d}) == 4
    assert SECCOMP_RET_ERRNO | 1 in return_values(a)  # EPERM when errnoRet is not given
    assert 0x80000000 in return_values(c)
    assert len(d) > len(a)  # the argument comparison costs instructions


def test_default_errno_ret() -> None:
    program, _ = compile_seccomp(
        profile(
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            defaultAction="SCMP_ACT_ERRNO",
            defaultErrnoRet=38,
        )
    )
    assert SECCOMP_RET_ERRNO | 38 in return_values(program)


def test_flags() -> None:
    _, flags = compile_seccomp(
        profile(flags=["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"])
    )
    assert flags == 1 | 4


def test_unknown_syscalls_are_skipped() -> None:
    with_unknown, _ = compile_seccomp(
        profile({"names": ["mkdir", "no_such_syscall_xyz"], "action": "SCMP_ACT_ERRNO"})
    )
    without, _ = compile_seccomp(profile({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}))
    assert with_unknown == without


def test_rule_with_default_action_is_skipped() -> None:
    same, _ = compile_seccomp(profile({"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}))
    empty, _ = compile_seccomp(profile())
    assert same == empty


def test_architectures() -> None:
    native, _ = compile_seccomp(profile({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}))
    multi, _ = compile_seccomp(
        profile(
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
            architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        )
    )
    assert len(multi) > len(native)


def test_same_index_conditions_are_or_ed() -> None:
    # Two conditions on arg 0 cannot be AND-ed by libseccomp; they become two rules.
    program, _ = compile_seccomp(
        profile(
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "args": [
                    {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                ],
            }
        )
    )
    assert {1, 2} <= {k for code, _, _, k in instructions(program) if code == 0x15}


@pytest.mark.parametrize(
    ("sc", "match"),
    [
        ([], "config.json: linux.seccomp: must be an object"),
        ({}, "config.json: linux.seccomp.defaultAction: must be a string"),
        (
            {"defaultAction": "SCMP_ACT_BOOM"},
            "linux.seccomp.defaultAction: unknown seccomp action 'SCMP_ACT_BOOM'",
        ),
        (
            {"defaultAction": "SCMP_ACT_NOTIFY"},
            "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY (a user-space seccomp listener) is "
            "not supported",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1},
            "linux.seccomp.defaultErrnoRet: is only allowed with SCMP_ACT_ERRNO",
        ),
        (
            {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000},
            "linux.seccomp.defaultErrnoRet: must be an integer from 0 to 65535",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]},
            "linux.seccomp.architectures[0]: unknown architecture 'SCMP_ARCH_Z80'",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FAST"]},
            "linux.seccomp.flags[0]: unknown seccomp flag 'SECCOMP_FILTER_FLAG_FAST'",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]},
            "linux.seccomp.flags[0]: SECCOMP_FILTER_FLAG_NEW_LISTENER needs a seccomp listener",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/l.sock"},
            "linux.seccomp.listenerPath: seccomp listeners are not supported",
        ),
        (
            profile({"names": [], "action": "SCMP_ACT_ERRNO"}),
            "linux.seccomp.syscalls[0].names: must be a non-empty list",
        ),
        (
            profile({"names": ["mkdir", 5], "action": "SCMP_ACT_ERRNO"}),
            "linux.seccomp.syscalls[0].names[1]: must be a non-empty string",
        ),
        (
            profile({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}),
            "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY",
        ),
        (
            profile({"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 1}),
            "linux.seccomp.syscalls[0].errnoRet: is only allowed with SCMP_ACT_ERRNO",
        ),
        (
            profile(
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                {
                    "names": ["read"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}],
                },
            ),
            "linux.seccomp.syscalls[1].args[0].index: must be an integer from 0 to 5",
        ),
        (
            profile(
                {
                    "names": ["read"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_ABOUT"}],
                }
            ),
            "linux.seccomp.syscalls[0].args[0].op: unknown comparison operator 'SCMP_CMP_ABOUT'",
        ),
        (
            profile(
                {
                    "names": ["read"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}],
                }
            ),
            "linux.seccomp.syscalls[0].args[0].value: must be an unsigned 64-bit integer",
        ),
        (
            profile(
                {
                    "names": ["read"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "op": "SCMP_CMP_EQ"}],
                }
            ),
            "linux.seccomp.syscalls[0].args[0].value: is required",
        ),
    ],
)
def test_validation_errors(sc: Any, match: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_seccomp(sc)
    assert match in str(info.value)
    with pytest.raises(InvalidArgument) as info:
        compile_seccomp(sc)
    assert match in str(info.value)


def test_validation_does_not_load_cffi() -> None:
    code = (
        "import sys\n"
        "from pyrt.runtime.spec import validate_spec\n"
        "from pyrt.runtime.seccomp import validate_seccomp\n"
        "from pyrt.runtime import translate\n"
        "validate_seccomp({'defaultAction': 'SCMP_ACT_ALLOW'})\n"
        "bad = [m for m in ('cffi', '_cffi_backend', 'typer', 'pyroute2') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "from pyrt.runtime.seccomp import compile_seccomp\n"
        "prog, _ = compile_seccomp({'defaultAction': 'SCMP_ACT_ALLOW'})\n"
        "assert prog and len(prog) % 8 == 0\n"
        "# libseccomp through ctypes: no cffi, no pycparser (~5 MB kept by the daemon)\n"
        "assert 'cffi' not in sys.modules and 'pycparser' not in sys.modules\n"
    )
    repo = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo)
