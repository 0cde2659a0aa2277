"""pyrt._core.spawn_exec: a program started by vfork (the engine starts each shim so)."""

from __future__ import annotations

import errno
import os
import signal

import pytest

from pyrt import _core


def _status_masks(text: str) -> dict[str, int]:
    return {line.split(":")[0]: int(line.split()[1], 16) for line in text.splitlines()
            if line.startswith(("SigBlk", "SigIgn", "SigCgt"))}  # fmt: skip


def test_fds_env_and_signals_of_the_child() -> None:
    old_usr2 = signal.signal(signal.SIGUSR2, lambda *_: None)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    r, w = os.pipe()
    try:
        script = 'echo "A=$A"; ls /proc/self/fd >&2; cat /proc/self/status'
        # stdout goes to fd 3 (our pipe): the child's own stdout is /dev/null
        pid = _core.spawn_exec(["/bin/sh", "-c", f"exec 1>&3; {script}"], ["A=b c"], [w])
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        signal.signal(signal.SIGUSR2, old_usr2)
        os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    text = out.decode()
    assert text.startswith("A=b c\n")
    masks = _status_masks(text)
    assert masks["SigBlk"] == 0  # the caller's blocked SIGUSR1 is not inherited
    bit = 1 << (signal.SIGPIPE - 1)
    assert not masks["SigIgn"] & bit  # Python ignores SIGPIPE; the child must not
    assert not masks["SigCgt"] & (1 << (signal.SIGUSR2 - 1))


def test_errors() -> None:
    with pytest.raises(OSError) as e:
        _core.spawn_exec(["/no/such/program"], [])
    assert e.value.errno == errno.ENOENT and "/no/such/program" in str(e.value)
    with pytest.raises(OSError) as e:
        _core.spawn_exec(["/bin/true"], [], [5, 3])  # fd 3 would be overwritten by fd 5
    assert e.value.errno == errno.EINVAL
