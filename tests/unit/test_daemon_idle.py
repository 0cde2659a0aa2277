"""What an idle pyrtd holds: the C heap trimmed once a burst of work is over (IdleTrim),
and no netlink library or other heavy module loaded by the daemon's own code."""

from __future__ import annotations

import subprocess
import sys

from pyrt.daemon import IdleTrim
from tests.bundle import pyrt_pythonpath


def python(code: str) -> str:
    """The stdout of `code` in a fresh interpreter that imports this pyrt."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": pyrt_pythonpath()})
    assert out.returncode == 0, out.stderr
    return out.stdout


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_trims_once_when_the_daemon_goes_quiet_after_work() -> None:
    clock, trims = Clock(), []

    def trim(pad: int) -> int:
        trims.append(pad)
        clock.now += 0.01  # the trim's own CPU time is not work
        return 1

    idle = IdleTrim(trim, clock)
    assert not idle.tick() and not idle.tick()  # quiet from the start: nothing to give back
    for _ in range(3):  # busy: CPU time grows between ticks
        clock.now += 0.2
        assert not idle.tick()
    assert idle.tick() and trims == [0]  # the first quiet tick after the work
    assert not idle.tick() and not idle.tick() and trims == [0]  # once per burst
    clock.now += 0.05
    assert not idle.tick()
    assert idle.tick() and len(trims) == 2


def test_without_malloc_trim_it_does_nothing() -> None:
    clock = Clock()
    idle = IdleTrim(None, clock)
    idle._trim = None  # (a libc without malloc_trim)
    clock.now += 1
    assert not idle.tick() and not idle.tick()


def test_the_real_trim_gives_freed_heap_pages_back() -> None:
    """glibc keeps freed chunks below a live one; IdleTrim's malloc_trim returns them."""
    code = (
        "import os\n"
        "from pyrt.daemon import IdleTrim\n"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')\n"
        "blocks = [bytearray(3000) for _ in range(20000)]  # ~60 MB of malloc'd chunks\n"
        "keep = [bytearray(3000) for _ in range(10)]  # live chunks above them\n"
        "del blocks\n"
        "before = rss()\n"
        "cpu = iter([0.0, 1.0, 1.0, 1.0])\n"
        "idle = IdleTrim(cpu=lambda: next(cpu))\n"
        "assert not idle.tick() and idle.tick()\n"
        "print(before - rss())\n"
    )
    assert int(python(code)) > 40 * 2**20


def test_the_daemon_and_engine_modules_import_no_netlink_library() -> None:
    code = (
        "import sys\n"
        "import pyrt.daemon, pyrt.engine, pyrt.api.server, pyrt.api.routes_networks\n"
        "import pyrt.networks.service, pyrt.networks.netlink, pyrt.networks.rtnl\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyroute2', 'cffi',"
        " '_cffi_backend', 'typer')))\n"
    )
    assert python(code).strip() == "[]"
