"""translate.cached_seccomp: compiled seccomp programs kept under the runtime root."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyrt.errors import InvalidArgument
from pyrt.runtime import seccomp, translate

PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["read", "write", "exit_group", "mkdir"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
    ],
}  # fmt: skip


def test_compiles_once_then_reads_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / ".seccomp-cache"
    want = seccomp.compile_seccomp(PROFILE)
    assert translate.cached_seccomp(PROFILE, str(cache)) == want
    (entry,) = cache.iterdir()
    assert entry.suffix == ".bpf" and len(entry.stem) == 64

    def no_compile(*_a: object, **_k: object) -> tuple[bytes, int]:
        raise AssertionError("compiled again")

    monkeypatch.setattr(seccomp, "compile_seccomp", no_compile)
    assert translate.cached_seccomp(PROFILE, str(cache)) == want
    # another profile is another entry (and compiles)
    other = {**PROFILE, "defaultAction": "SCMP_ACT_KILL_PROCESS"}
    with pytest.raises(AssertionError, match="compiled again"):
        translate.cached_seccomp(other, str(cache))


def test_a_damaged_entry_is_compiled_again(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    want = translate.cached_seccomp(PROFILE, str(cache))
    (entry,) = cache.iterdir()
    entry.write_bytes(entry.read_bytes()[:-3])  # not a whole number of instructions
    assert translate.cached_seccomp(PROFILE, str(cache)) == want
    assert entry.read_bytes().partition(b"\n")[2] == want[0]


def test_bad_profile_is_refused_even_when_cached(tmp_path: Path) -> None:
    bad = {**PROFILE, "defaultAction": "SCMP_ACT_NOPE"}
    with pytest.raises(InvalidArgument, match="defaultAction"):
        translate.cached_seccomp(bad, str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_unwritable_cache_still_compiles(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert translate.cached_seccomp(PROFILE, str(blocker / "sub")) == seccomp.compile_seccomp(
        PROFILE
    )
