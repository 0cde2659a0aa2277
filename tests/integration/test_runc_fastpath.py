"""The C front end of pyrt-runc (csrc/runc/main.c) against the Python CLI it stands in for.

Every command is run both ways -- the C binary, and `python -m pyrt.runtime.cli` -- and the
two must print the same stdout, stderr and exit status. With PYRT_RUNC_PYTHON=/bin/false
the binary cannot hand anything to Python (a delegation exits 1, silently), so a command
that succeeds that way was answered natively.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BundleFactory = Callable[..., Path]


def _fast_binary() -> tuple[Path, dict[str, str]]:
    """The C pyrt-runc: the venv's (installed), else the dev build's with this Python."""
    installed = Path(sys.prefix) / "bin" / "pyrt-runc"
    if installed.is_file() and installed.read_bytes()[:4] == b"\x7fELF":
        return installed, {}
    dev = REPO / "build" / "dev" / "pyrt-runc"
    if dev.is_file():
        return dev, {"PYRT_RUNC_PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    pytest.fail("no C pyrt-runc: pip install . (venv bin/pyrt-runc) or run scripts/devbuild")


class Both:
    """Runs pyrt-runc commands through the C binary, Python, or the C binary alone."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.exe, extra = _fast_binary()
        self.env = {**os.environ, **extra}
        self.env.pop("PYRT_RUNC_NO_FAST", None)
        self.py = [sys.executable, "-P", "-m", "pyrt.runtime.cli"]

    def _run(self, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, text=True, capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def c(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.exe), "--root", str(self.root), *args], self.env)

    def python(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in self.env.items() if k != "PYRT_RUNC_PYTHON"}
        return self._run([*self.py, "--root", str(self.root), *args], env)

    def native(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The C binary with delegation made impossible."""
        return self._run(
            [str(self.exe), "--root", str(self.root), *args],
            {**self.env, "PYRT_RUNC_PYTHON": "/bin/false"},
        )

    def same(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a read-only command both ways; assert identical results; return one."""
        a, b = self.c(*args), self.python(*args)
        assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr), args
        return a

    def create(self, cid: str, bundle: Path, tmp: Path) -> int:
        pid_file = tmp / f"{cid}.pid"
        with open(tmp / f"{cid}.err", "w") as err:
            res = subprocess.run(
                [str(self.exe), "--root", str(self.root), "create", "--bundle", str(bundle),
                 "--pid-file", str(pid_file), cid],
                env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                timeout=60,
            )  # fmt: skip
        assert res.returncode == 0, (tmp / f"{cid}.err").read_text()
        return int(pid_file.read_text())


@pytest.fixture
def both(runtime_root: Path) -> Iterator[Both]:
    yield Both(runtime_root)


def _wait_gone(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        import select

        p = select.poll()
        p.register(fd, select.POLLIN)
        assert p.poll(10_000), f"pid {pid} did not exit"
    finally:
        os.close(fd)


def test_lifecycle_native_and_identical(
    both: Both, bundle_factory: BundleFactory, unique_id: str, tmp_path: Path
) -> None:
    b = bundle_factory(["/bin/sleep", "300"], **{"annotations": {"k": 'v é "q"\n'}})
    pid = both.create(unique_id, b, tmp_path)
    cdir = both.root / unique_id
    assert (cdir / "fast.state").read_text().startswith("pyrt-fast 1\nusable 1\n")

    st = json.loads(both.same("state", unique_id).stdout)
    assert st["status"] == "created" and st["pid"] == pid
    assert st["annotations"] == {"k": 'v é "q"\n'}
    assert both.native("state", unique_id).stdout == both.python("state", unique_id).stdout

    res = both.native("start", unique_id)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    assert not (cdir / "exec.fifo").exists()
    # the record is marked running, as Runtime.start writes it
    assert json.loads((cdir / "state.json").read_text())["status"] == "running"
    st = json.loads(both.same("state", unique_id).stdout)
    assert st["status"] == "running" and st["pid"] == pid

    # paused (Python pauses), seen natively through the freezer
    assert both.python("pause", unique_id).returncode == 0
    assert json.loads(both.native("state", unique_id).stdout)["status"] == "paused"
    both.same("state", unique_id)
    assert both.python("resume", unique_id).returncode == 0

    # errors are Python's, word for word, through the C binary
    both.same("start", unique_id)  # running: refused
    both.same("delete", unique_id)  # not stopped: refused
    both.same("kill", unique_id, "SIGNOPE")
    assert both.same("kill", unique_id, "SIGNOPE").returncode == 1

    res = both.native("kill", unique_id, "kill")
    assert res.returncode == 0, res.stderr
    _wait_gone(pid)
    st = json.loads(both.same("state", unique_id).stdout)
    assert st["status"] == "stopped" and st["pid"] == 0
    both.same("kill", unique_id)  # stopped: Python's "not running"

    cgroups = [
        line for line in (cdir / "fast.state").read_text().splitlines() if line.startswith("/")
    ]
    assert cgroups and all(os.path.isdir(d) for d in cgroups)
    res = both.native("delete", unique_id)
    assert (res.returncode, res.stderr) == (0, "")
    assert not cdir.exists()
    assert not any(os.path.exists(d) for d in cgroups)
    res = both.same("state", unique_id)
    assert res.returncode == 1 and f"container '{unique_id}' does not exist" in res.stderr
    both.same("delete", unique_id)
    assert both.same("delete", "--force", unique_id).returncode == 0


def test_start_of_a_dead_init_and_delete_with_force(
    both: Both, bundle_factory: BundleFactory, unique_id: str, tmp_path: Path
) -> None:
    b = bundle_factory(["/bin/true"])
    pid = both.create(unique_id, b, tmp_path)
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    a = both.c("start", unique_id)
    assert a.returncode == 1 and "has stopped" in a.stderr, a.stderr
    both.same("start", unique_id)
    both.same("state", unique_id)
    assert both.native("delete", "--force=true", unique_id).returncode == 0
    assert not (both.root / unique_id).exists()


def test_delegated_cases_still_work(
    both: Both, bundle_factory: BundleFactory, unique_id: str, tmp_path: Path
) -> None:
    marker = tmp_path / "poststop-ran"
    b = bundle_factory(
        ["/bin/true"],
        **{"hooks": {"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"touch {marker}"]}]}},
    )
    pid = both.create(unique_id, b, tmp_path)
    # a created container's delete kills it: Python's work, handed over by the C binary
    assert both.native("delete", unique_id).returncode == 1
    both.same("state", unique_id)
    (both.root / unique_id / "fast.state").unlink()  # e.g. made by an older pyrt
    assert both.native("state", unique_id).returncode == 1
    st = json.loads(both.same("state", unique_id).stdout)
    assert st["status"] == "created"
    assert both.c("start", unique_id).returncode == 0  # rewrites fast.state
    assert (both.root / unique_id / "fast.state").exists()
    _wait_gone(pid)
    deadline = time.monotonic() + 5
    while json.loads(both.c("state", unique_id).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # poststop hooks: delete is delegated, and the hook runs
    assert both.native("delete", unique_id).returncode == 1
    assert (both.root / unique_id).exists()
    res = both.c("delete", unique_id)
    assert res.returncode == 0, res.stderr
    assert marker.exists()


def test_global_flags_and_version(both: Both, tmp_path: Path) -> None:
    both.same("--version")
    both.same("--systemd-cgroup", "state", "x")
    both.same("--rootless", "maybe", "state", "x")
    both.same("--log-format", "xml", "state", "x")
    both.same("state")
    both.same("state", "../x")
    both.same("kill", "--all", "nope", "9")
    both.same("bogus")
    both.same("list", "--format", "json")
    log = tmp_path / "log.json"
    a = both.c("--log", str(log), "--log-format=json", "state", "nope")
    assert a.returncode == 1
    assert json.loads(log.read_text().splitlines()[-1])["msg"] == (
        "container 'nope' does not exist"
    )
