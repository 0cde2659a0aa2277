"""The C front end of pyrt-runc (csrc/runc/main.c) against the Python CLI it stands in for.

Every command is run both ways -- the C binary, and `python -m pyrt.runtime.cli` -- and the
two must print the same stdout, stderr and exit status. With PYRT_RUNC_PYTHON=/bin/false
the binary cannot hand anything to Python (a delegation exits 1, silently), so a command
that succeeds that way was answered natively.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyrt.runtime.state import record_of

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

    def run_one_way(self, how: str, args: tuple[str, ...], err: Path,
                    pass_fds: tuple[int, ...] = ()) -> None:
        """Run a command natively alone ("native") or in Python ("python"), stdout to
        /dev/null, stderr to err; assert it succeeded."""
        if how == "native":
            cmd = [str(self.exe), "--root", str(self.root), *args]
            env = {**self.env, "PYRT_RUNC_PYTHON": "/bin/false"}
        else:
            cmd = [*self.py, "--root", str(self.root), *args]
            env = {k: v for k, v in self.env.items() if k != "PYRT_RUNC_PYTHON"}
        with open(err, "w") as ef:
            res = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, pass_fds=pass_fds,
                                 stdout=subprocess.DEVNULL, stderr=ef, timeout=60)  # fmt: skip
        assert res.returncode == 0, err.read_text()

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
    # one file: the creating record, the created one appended, then the C front end's
    # lines (no fast.state of their own)
    lines = (cdir / "state.json").read_text().split("\n")
    assert [json.loads(x)["status"] for x in lines[:2]] == ["creating", "created"]
    assert lines[2:4] == ["pyrt-fast 1", "usable 1"] and _fast_lines(cdir) == lines[2:-1]
    assert sorted(os.listdir(cdir)) == ["exec.fifo", "state.json"]

    st = json.loads(both.same("state", unique_id).stdout)
    assert st["status"] == "created" and st["pid"] == pid
    assert st["annotations"] == {"k": 'v é "q"\n'}
    assert both.native("state", unique_id).stdout == both.python("state", unique_id).stdout

    res = both.native("start", unique_id)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    assert not (cdir / "exec.fifo").exists()
    # the record is marked running, as Runtime.start writes it
    assert _record(cdir)["status"] == "running"
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
        line for line in (cdir / "state.json").read_text().splitlines() if line.startswith("/")
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
    # a state.json of the record alone (as an older pyrt wrote it, beside a fast.state)
    state = both.root / unique_id / "state.json"
    state.write_text(json.dumps(_record(both.root / unique_id), separators=(",", ":")))
    assert both.native("state", unique_id).returncode == 1
    st = json.loads(both.same("state", unique_id).stdout)
    assert st["status"] == "created"
    assert both.c("start", unique_id).returncode == 0  # rewrites it with the fast lines
    assert state.read_text().split("\n")[1] == "pyrt-fast 1"
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


# -- create and run, natively ------------------------------------------------------------

# what a container sees of itself: identity, limits, capabilities, mounts, devices, cgroup
_PROBE = (
    "id; hostname; umask; ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj; "
    "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; "
    "awk '{for (i = 7; $i != \"-\"; i++); print $5, $6, $(i + 1), $(i + 2)}' "
    "/proc/self/mountinfo; ls -ln /dev | awk '{print $1, $3, $4, $5, $6, $NF}'; "
    "cat /sys/fs/cgroup/devices/devices.list; cat /proc/sys/net/ipv4/ip_forward; "
    "cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes memory/memory.soft_limit_in_bytes "
    "memory/memory.memsw.limit_in_bytes "
    "cpu/cpu.shares cpu/cpu.cfs_period_us cpu/cpu.cfs_quota_us pids/pids.max; cd /; "
    "wc -c < /proc/kcore; touch /proc/sys/x 2>&1 | tail -c 30; pwd; env | sort"
)


def _variants(tmp: Path) -> dict[str, dict[str, object]]:
    """Specs the native create handles, each exercising a different part of the translation."""
    import resource

    nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    bind_src = tmp / "bind-src"
    bind_src.mkdir(exist_ok=True)
    (bind_src / "f").write_text("bound\n")
    return {
        "default": {},
        "user-and-limits": {
            "process.user": {"uid": 1000, "gid": 1000, "additionalGids": [5, 7], "umask": 0o27},
            # above the runtime's own hard limit: lowered, with Python's warning on stderr
            "process.rlimits": [
                {"type": "RLIMIT_NOFILE", "soft": 100, "hard": nofile_hard + 5},
                {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
            ],
            "process.oomScoreAdj": 500,
            "process.noNewPrivileges": False,
            "process.env": ["PATH=/bin", "A=b c", "UNICODE=é"],
            "process.cwd": "/tmp",
        },
        "caps-and-mounts": {
            "process.capabilities": {
                "bounding": ["CAP_KILL", "cap_chown", "CAP_SYS_ADMIN"],
                "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL", "CAP_CHOWN"],
            },
            "root.readonly": False,
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": ["nosuid", "noexec", "nodev", "relatime"]},
                {"destination": "/mnt/b", "type": "bind", "source": str(bind_src),
                 "options": ["rbind", "ro", "rprivate"]},
                {"destination": "/mnt/t", "type": "tmpfs", "options": ["noexec", "size=1m"]},
            ],
            "linux.sysctl": {"net.ipv4.ip_forward": "1"},
            "linux.devices": [
                {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600},
                {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "uid": 1000},
            ],
            "linux.resources": {
                "memory": {"limit": 256 << 20, "reservation": 128 << 20, "swap": 384 << 20,
                           "kernel": 1},
                "cpu": {"shares": 512, "period": 100000, "quota": 50000, "cpus": ""},
                "pids": {"limit": 100},
                "devices": [
                {"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "mr"},
                ],
            },
            "linux.maskedPaths": ["/proc/kcore", "/mnt/b/f"],
            "linux.rootfsPropagation": "rprivate",
            "hostname": "native-host",
            "annotations": {"a": "1", "é": "\u2603"},
        },
    }


def _normalize(out: str, cid: str) -> str:
    return out.replace(cid, "<id>")


@pytest.mark.parametrize("variant", ["default", "user-and-limits", "caps-and-mounts"])
def test_native_run_same_container_as_python(
    both: Both, unique_id: str, tmp_path: Path, busybox_rootfs: Path, variant: str
) -> None:
    """`run` natively and through Python: the same container, seen from inside."""
    from tests.bundle import make_bundle

    overrides = _variants(tmp_path)[variant]
    b = make_bundle(
        tmp_path / f"b-{variant}", ["/bin/sh", "-c", _PROBE], rootfs=busybox_rootfs,
        container_id=unique_id, **overrides,
    )  # fmt: skip
    native = both.native("run", "--bundle", str(b), unique_id)
    assert native.returncode == 0, native.stderr
    assert not (both.root / unique_id).exists()
    py = both.python("run", "--bundle", str(b), unique_id)
    assert (native.returncode, native.stdout, native.stderr) == (
        py.returncode, py.stdout, py.stderr
    )  # fmt: skip
    assert "uid=" in native.stdout
    if variant == "user-and-limits":
        assert "lowered to" in native.stderr


def _record(cdir: Path) -> dict[str, Any]:
    """The current record of a state.json."""
    rec = json.loads(record_of((cdir / "state.json").read_bytes()))
    assert isinstance(rec, dict)
    return rec


def _fast_lines(cdir: Path) -> list[str]:
    """The C front end's lines of a state.json (after the record lines)."""
    lines = (cdir / "state.json").read_text().split("\n")
    while lines and lines[0].startswith("{"):
        lines.pop(0)
    return lines[:-1]  # the text ends with a newline


def _strip_volatile(state: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in state.items() if k not in ("pid", "pid_start", "created")}


def test_native_create_writes_python_state(
    both: Both, bundle_factory: BundleFactory, unique_id: str, tmp_path: Path
) -> None:
    """The state.json of a native create (fast lines and record) is what Runtime.create
    writes."""
    b = bundle_factory(["/bin/true"], **{"annotations": {"k": 'v é "q"\n\U0001f600'}})
    # fields the runtime does not know are kept in the record as Python re-encodes them
    text = (b / "config.json").read_text()
    extra = (
        '"x-extra": {"a": [1, -0, true, false, null, "\\/\\u0001\\u007f\\t\u00e9"], '
        '"b": {}, "c": []}'
    )
    (b / "config.json").write_text(text.replace("{", "{" + extra + ",", 1))
    got: dict[str, tuple[dict[str, object], list[str], str]] = {}
    for how in ("native", "python"):
        pid_file = tmp_path / f"{how}.pid"
        argv = ("create", "--bundle", str(b), "--pid-file", str(pid_file), unique_id)
        both.run_one_way(how, argv, tmp_path / f"{how}.err")
        pid = int(pid_file.read_text())
        cdir = both.root / unique_id
        state = _record(cdir)
        assert state["pid"] == pid and state["status"] == "created"
        raw = record_of((cdir / "state.json").read_bytes()).decode()
        fast = [x for x in _fast_lines(cdir) if not x.startswith(("pid ", "start ", '  "created"'))]
        # byte for byte, but for the pid, its start time and the creation time
        raw = re.sub(r'"pid":\d+,"pid_start":\d+', "", raw)
        raw = re.sub(r'"created":"[^"]*"', "", raw)
        got[how] = (_strip_volatile(state), fast, raw)
        st = json.loads(both.same("state", unique_id).stdout)
        assert st["status"] == "created" and st["pid"] == pid
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)
        assert both.native("delete", unique_id).returncode == 0
    assert got["native"] == got["python"]


def test_pid_file_that_is_a_pipe_gets_the_pid(
    both: Both, bundle_factory: BundleFactory, unique_id: str, tmp_path: Path
) -> None:
    """pyrt-shim hands pyrt-runc a pipe as --pid-file (/proc/self/fd/N): the pid is written
    into it, natively and by Python, and no file is made for it."""
    b = bundle_factory(["/bin/true"])
    for how in ("native", "python"):
        r, w = os.pipe()
        try:
            argv = ("create", "--bundle", str(b), "--pid-file", f"/proc/self/fd/{w}", unique_id)
            both.run_one_way(how, argv, tmp_path / f"{how}.err", pass_fds=(w,))
            os.set_blocking(r, False)
            pid = int(os.read(r, 32))
        finally:
            os.close(r)
            os.close(w)
        assert _record(both.root / unique_id)["pid"] == pid
        assert sorted(os.listdir(both.root / unique_id)) == ["exec.fifo", "state.json"]
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)
        assert both.native("delete", unique_id).returncode == 0


def test_native_run_exit_status_detach_and_keep(
    both: Both, bundle_factory: BundleFactory, unique_id: str
) -> None:
    b = bundle_factory(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
    res = both.native("run", "-b", str(b), unique_id)
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")
    assert not (both.root / unique_id).exists()
    res = both.native("run", "--keep", "--bundle", str(b), unique_id)
    assert res.returncode == 3
    st = json.loads(both.same("state", unique_id).stdout)
    assert st["status"] == "stopped"
    assert both.native("delete", unique_id).returncode == 0
    b2 = bundle_factory(["/bin/sleep", "30"])
    # the detached container keeps its stdio: not a pipe this test waits on
    res = subprocess.run(
        [str(both.exe), "--root", str(both.root), "run", "--detach", "--bundle", str(b2),
         unique_id],
        env={**both.env, "PYRT_RUNC_PYTHON": "/bin/false"}, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0
    st = json.loads(both.same("state", unique_id).stdout)
    assert st["status"] == "running"
    assert both.native("kill", unique_id, "KILL").returncode == 0
    _wait_gone(st["pid"])
    assert both.native("delete", unique_id).returncode == 0


def _bad_configs(tmp: Path) -> dict[str, Callable[[dict[str, object]], object]]:
    """name -> an edit of a good config.json that Python refuses (the edit may return a
    whole replacement document as text)."""

    def set_(path: str, value: object) -> Callable[[dict[str, object]], object]:
        from tests.bundle import set_dotted

        return lambda c: set_dotted(c, path, value)

    def drop(path: str) -> Callable[[dict[str, object]], object]:
        def edit(c: dict[str, object]) -> None:
            *parents, last = path.split(".")
            node: object = c
            for p in parents:
                node = node[p]  # type: ignore[index]
            del node[last]  # type: ignore[attr-defined]

        return edit

    return {
        "invalid-json": lambda c: '{"ociVersion": "1.2.0",',
        "not-an-object": lambda c: "[1, 2]",
        "float": set_("process.oomScoreAdj", 1.5),
        "version": set_("ociVersion", "2.0.0"),
        "no-version": drop("ociVersion"),
        "no-args": drop("process.args"),
        "empty-args": set_("process.args", []),
        "relative-cwd": set_("process.cwd", "tmp"),
        "no-root": drop("root"),
        "missing-rootfs": set_("root.path", "nope"),
        "readonly-null": set_("root.readonly", None),
        "unknown-namespace": set_("linux.namespaces", [{"type": "pid"}, {"type": "foo"}]),
        "duplicate-namespace": set_("linux.namespaces", [{"type": "pid"}, {"type": "pid"}]),
        "global-sysctl": set_("linux.sysctl", {"kernel.core_pattern": "x"}),
        "sysctl-no-netns": lambda c: (
            c["linux"].update(sysctl={"net.ipv4.ip_forward": "1"}),  # type: ignore[attr-defined]
            c["linux"].update(namespaces=[{"type": "mount"}, {"type": "uts"}]),  # type: ignore[attr-defined]
        ),
        "hostname-no-uts": set_("linux.namespaces", [{"type": "mount"}, {"type": "pid"}]),
        "relative-destination": set_("mounts", [{"destination": "proc", "type": "proc"}]),
        "mount-no-type": set_("mounts", [{"destination": "/x", "source": "y"}]),
        "bind-no-source": set_("mounts", [{"destination": "/x", "type": "bind"}]),
        "unknown-cap": set_("process.capabilities.bounding", ["CAP_NOPE"]),
        "unknown-rlimit": set_("process.rlimits", [{"type": "RLIMIT_X", "soft": 1, "hard": 1}]),
        "soft-above-hard": set_("process.rlimits",
                                [{"type": "RLIMIT_NOFILE", "soft": 9, "hard": 1}]),
        "uid-string": set_("process.user.uid", "0"),
        "env-no-equals": set_("process.env", ["PATH"]),
        "bad-device-type": set_("linux.devices", [{"path": "/dev/x", "type": "z"}]),
        "device-no-major": set_("linux.devices", [{"path": "/dev/x", "type": "c", "minor": 1}]),
        "bad-access": set_("linux.resources", {"devices": [{"allow": True, "access": "x"}]}),
        "device-rule-key": set_("linux.resources", {"devices": [{"allow": True, "x": 1}]}),
        "resources-key": set_("linux.resources", {"bogus": None}),
        "memory-negative": set_("linux.resources", {"memory": {"limit": -5}}),
        "cpu-shares": set_("linux.resources", {"cpu": {"shares": 1}}),
        "pids-key": set_("linux.resources", {"pids": {"max": 1}}),
        "cgroups-dotdot": set_("linux.cgroupsPath", "/a/../b"),
        "cgroups-systemd": set_("linux.cgroupsPath", "system.slice:pyrt:x"),
        "terminal": set_("process.terminal", True),
        "propagation": set_("linux.rootfsPropagation", "sideways"),
        "scheduler": set_("process.scheduler", {"policy": "SCHED_OTHER"}),
        "uid-mappings": set_("linux.uidMappings", [{"containerID": 0, "hostID": 1, "size": 1}]),
        "hook-relative": set_("hooks", {"prestart": [{"path": "x"}]}),
        "annotation-int": set_("annotations", {"a": 1}),
    }


def test_create_errors_are_pythons(
    both: Both, bundle_factory: BundleFactory, unique_id: str, tmp_path: Path
) -> None:
    """Every refused config: the C binary says exactly what Python says, with the same
    exit status, and leaves nothing behind; natively it refuses before any side effect."""
    b = bundle_factory(["/bin/true"], container_id=unique_id)
    good = json.loads((b / "config.json").read_text())
    cg_rel = good["linux"]["cgroupsPath"]
    for name, edit in _bad_configs(tmp_path).items():
        config = json.loads(json.dumps(good))
        text = edit(config)
        (b / "config.json").write_text(text if isinstance(text, str) else json.dumps(config))
        args = ("create", "--bundle", str(b), unique_id)
        res = both.same(*args)
        assert res.returncode == 1 and res.stderr.startswith("pyrt-runc: "), (name, res.stderr)
        native = both.native(*args)
        assert (native.returncode, native.stderr) == (1, ""), (name, native.stderr)
        assert not (both.root / unique_id).exists(), name
        assert not any(
            os.path.exists(f"/sys/fs/cgroup/{h}{cg_rel}") for h in ("memory", "devices", "pids")
        ), name
    # a duplicate id: Python's Conflict, and the first container is untouched
    (b / "config.json").write_text(json.dumps(good))
    pid = both.create(unique_id, b, tmp_path)
    res = both.same("create", "--bundle", str(b), unique_id)
    assert res.returncode == 1 and "already exists" in res.stderr
    assert json.loads(both.same("state", unique_id).stdout)["pid"] == pid
    # flags the native path does not take
    both.same("create", "--bundle", str(b), "--bogus", unique_id)
    both.same("create", "--bundle", str(b), "--preserve-fds", "x", unique_id)
    both.same("create", "--bundle", str(b))
    both.same("run", "--bundle", str(b), "--detach=maybe", unique_id)
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    assert both.native("delete", unique_id).returncode == 0


def test_delegated_create_still_works(
    both: Both, bundle_factory: BundleFactory, unique_id: str, tmp_path: Path
) -> None:
    """Valid specs the native path leaves to Python (here: a seccomp
    profile, a memory swappiness) are created by Python through the C binary."""
    b = bundle_factory(
        ["/bin/true"],
        **{
            "linux.resources": {"memory": {"limit": 64 << 20, "swappiness": 10}},
            "linux.seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mknod"], "action": "SCMP_ACT_ERRNO"}]},
        },
    )  # fmt: skip
    pid_file = tmp_path / "p.pid"
    res = both.native("create", "--bundle", str(b), "--pid-file", str(pid_file), unique_id)
    assert (res.returncode, res.stderr) == (1, "")
    assert not (both.root / unique_id).exists()
    pid = both.create(unique_id, b, tmp_path)
    assert json.loads(both.same("state", unique_id).stdout)["pid"] == pid
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    assert both.native("delete", unique_id).returncode == 0


def test_seccomp_profile_from_pythons_cache(
    both: Both, bundle_factory: BundleFactory, unique_id: str
) -> None:
    """A profile Python has compiled (and cached under the root) is used natively; the
    first container with it is Python's. The filter is in force either way."""
    probe = "mkdir /tmp/d; echo mkdir=$?; grep -E '^Seccomp:' /proc/self/status"
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    b = bundle_factory(["/bin/sh", "-c", probe], **{"linux.seccomp": profile})
    cache = both.root / ".seccomp-cache"
    res = both.native("run", "--bundle", str(b), unique_id)
    assert (res.returncode, res.stderr) == (1, "")  # not cached yet: Python's
    assert not (both.root / unique_id).exists()
    first = both.c("run", "--bundle", str(b), unique_id)
    assert first.returncode == 0, first.stderr
    assert "mkdir=1" in first.stdout and "Seccomp:\t2" in first.stdout
    assert len(list(cache.glob("*.bpf"))) == 1
    again = both.native("run", "--bundle", str(b), unique_id)
    assert (again.returncode, again.stdout, again.stderr) == (0, first.stdout, first.stderr)
    # another profile is another cache entry: Python's again
    config = json.loads((b / "config.json").read_text())
    config["linux"]["seccomp"]["syscalls"][0]["names"] = ["mkdir", "mkdirat", "rmdir"]
    (b / "config.json").write_text(json.dumps(config))
    assert both.native("run", "--bundle", str(b), unique_id).returncode == 1


def test_native_create_joins_namespaces_by_path(
    both: Both, bundle_factory: BundleFactory, unique_id: str
) -> None:
    """A spec joining network and ipc namespaces by path (the engine's containers join
    their pinned network namespace) is created natively, in those namespaces, and runs as
    Python's does."""
    holder = subprocess.Popen(["unshare", "--net", "--ipc", "sleep", "60"])
    try:
        ours = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{holder.pid}/ns/net") == ours:
            assert time.monotonic() < deadline, "unshare made no namespace"
            time.sleep(0.01)
        want = [os.readlink(f"/proc/{holder.pid}/ns/{ns}") for ns in ("net", "ipc")]
        namespaces = [{"type": "pid"}, {"type": "mount"}, {"type": "uts"},
                      {"type": "network", "path": f"/proc/{holder.pid}/ns/net"},
                      {"type": "ipc", "path": f"/proc/{holder.pid}/ns/ipc"}]  # fmt: skip
        probe = "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc"
        b = bundle_factory(["/bin/sh", "-c", probe], **{"linux.namespaces": namespaces})
        native = both.native("run", "--bundle", str(b), unique_id)
        assert (native.returncode, native.stderr) == (0, "")
        assert native.stdout.split() == want
        py = both.python("run", "--bundle", str(b), unique_id)
        assert (py.returncode, py.stdout, py.stderr) == (0, native.stdout, "")
        # a net sysctl in a joined namespace is Python's (it checks that it is not ours)
        b2 = bundle_factory(["/bin/true"], **{"linux.namespaces": namespaces,
                                              "linux.sysctl": {"net.ipv4.ip_forward": "1"}})
        assert both.native("run", "--bundle", str(b2), unique_id).returncode == 1
        assert both.c("run", "--bundle", str(b2), unique_id).returncode == 0
    finally:
        holder.kill()
        holder.wait()


def test_native_only_fails_instead_of_delegating(
    both: Both, bundle_factory: BundleFactory, unique_id: str, tmp_path: Path
) -> None:
    """PYRT_RUNC_NATIVE_ONLY (what the engine's shim sets): a create the C code leaves to
    Python -- refused before any side effect, or failed after some -- exits 125 with a
    line on stderr, and leaves nothing: no state directory, no cgroup."""
    hooked = bundle_factory(["/bin/true"], **{"hooks": {"poststop": [{"path": "/bin/true"}]}})
    missing = bundle_factory(["/no/such/program"])
    cgroup = json.loads((missing / "config.json").read_text())["linux"]["cgroupsPath"]
    env = {**both.env, "PYRT_RUNC_NATIVE_ONLY": "1", "PYRT_RUNC_PYTHON": "/bin/false"}
    for b in (hooked, missing):
        res = both._run([str(both.exe), "--root", str(both.root), "create", "--bundle",
                         str(b), unique_id], env)  # fmt: skip
        assert res.returncode == 125, res.stderr
        assert "pyrt-runc: create not handled natively (create.c:" in res.stderr
        assert not (both.root / unique_id).exists()
    assert not Path("/sys/fs/cgroup/pids", cgroup.lstrip("/")).exists()
    # without it, the same create is Python's, whose error it is
    res = both.c("create", "--bundle", str(missing), unique_id)
    assert res.returncode == 1 and "/no/such/program" in res.stderr, res.stderr


def test_native_init_is_in_every_cgroup_of_its_spec(
    both: Both, bundle_factory: BundleFactory, unique_id: str
) -> None:
    """The native create's init joins its v1 cgroups itself (writing 0 to each "tasks"
    file: a task moving itself is spared the kernel's global threadgroup lock) and is
    cloned into a v2 one (CLONE_INTO_CGROUP); in one stage (new namespaces) and in two
    (a namespace joined by path), it is in every hierarchy's cgroup of its spec, as
    Python's init is."""
    holder = subprocess.Popen(["unshare", "--ipc", "sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{holder.pid}/ns/ipc") == os.readlink("/proc/self/ns/ipc"):
            assert time.monotonic() < deadline, "unshare made no namespace"
            time.sleep(0.01)
        # no cgroup namespace: /proc/self/cgroup then shows the host's paths
        new = [{"type": t} for t in ("pid", "mount", "uts", "network", "ipc")]
        joined = [*new[:4], {"type": "ipc", "path": f"/proc/{holder.pid}/ns/ipc"}]
        for namespaces in (new, joined):
            b = bundle_factory(["/bin/cat", "/proc/self/cgroup"],
                               **{"linux.namespaces": namespaces})  # fmt: skip
            spec = json.loads((b / "config.json").read_text())
            want = spec["linux"]["cgroupsPath"]
            native = both.native("run", "--bundle", str(b), unique_id)
            assert (native.returncode, native.stderr) == (0, ""), namespaces
            lines = native.stdout.split()
            hierarchies = [ln.split(":", 2) for ln in lines]
            # every hierarchy the host mounts (v1 controllers, named ones, the v2 one)
            with open("/proc/self/cgroup") as f:
                host = {ln.split(":", 2)[1] for ln in f.read().split()}
            assert {h[1] for h in hierarchies} == host, lines
            assert all(h[2] == want for h in hierarchies), lines
            py = both.python("run", "--bundle", str(b), unique_id)
            assert (py.returncode, sorted(py.stdout.split())) == (0, sorted(lines))
    finally:
        holder.kill()
        holder.wait()
