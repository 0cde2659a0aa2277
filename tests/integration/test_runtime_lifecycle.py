"""pyrt.runtime.Runtime against the real kernel: lifecycle, isolation, exec, terminals,
hooks, and bad input that must leave nothing behind."""

from __future__ import annotations

import array
import contextlib
import json
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyrt.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound, PyrtError
from pyrt.runtime.capabilities import caps_to_mask
from pyrt.runtime.runtime import Runtime
from tests.bundle import cgroup_dirs_named, read_mounts

BundleFactory = Callable[..., Path]


@pytest.fixture
def rt(runtime_root: Path) -> Runtime:
    return Runtime(str(runtime_root))


def _read_all(fd: int, timeout: float = 20.0) -> str:
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks).decode(errors="replace")


def run_capture(rt: Runtime, cid: str, bundle: Path) -> tuple[int, str]:
    """Run a container to completion with stdout+stderr on a pipe; (exit status, output)."""
    r, w = os.pipe()
    devnull = os.open("/dev/null", os.O_RDONLY)
    try:
        code = rt.run(cid, str(bundle), stdio=(devnull, w, w))
    finally:
        os.close(w)
        os.close(devnull)
    try:
        return code, _read_all(r)
    finally:
        os.close(r)


def _status_of(rt: Runtime, cid: str) -> str:
    return str(rt.state(cid)["status"])


def _cgroup_marker(bundle: Path) -> str:
    cfg = json.loads((bundle / "config.json").read_text())
    return str(cfg["linux"]["cgroupsPath"]).strip("/").split("/")[0]


def _assert_nothing_left(rt: Runtime, cid: str, bundle: Path) -> None:
    assert not os.path.exists(os.path.join(rt.root, cid)), "state dir left behind"
    with pytest.raises(NotFound):
        rt.state(cid)
    marker = _cgroup_marker(bundle) if (bundle / "config.json").exists() else None
    if marker:
        leaf = [d for d in cgroup_dirs_named(marker) if d.endswith("/" + cid)]
        assert leaf == [], f"cgroup left behind: {leaf}"
    root = str(bundle / "rootfs")
    assert not [m for m in read_mounts() if m[0].startswith(root)], "mount left behind"


# ---------------------------------------------------------------- lifecycle


def test_lifecycle_states(rt: Runtime, bundle_factory: BundleFactory, unique_id: str) -> None:
    b = bundle_factory(["/bin/sleep", "300"], **{"annotations": {"org.test": "yes"}})
    pid = rt.create(unique_id, str(b))
    st = rt.state(unique_id)
    assert st["status"] == "created"
    assert st["pid"] == pid and pid > 0
    assert st["id"] == unique_id
    assert st["bundle"] == str(b)
    assert st["annotations"] == {"org.test": "yes"}
    assert st["rootfs"] == str(b / "rootfs")
    assert st["created"].endswith("Z")
    assert os.path.exists(f"/proc/{pid}")
    # the process sits waiting for start: not yet running sleep
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert b"sleep" not in f.read()
    assert rt.ps(unique_id) == [pid]
    assert [c["id"] for c in rt.list()] == [unique_id]

    with pytest.raises(Conflict, match="already exists"):
        rt.create(unique_id, str(b))
    assert _status_of(rt, unique_id) == "created"  # the duplicate touched nothing

    rt.start(unique_id)
    assert _status_of(rt, unique_id) == "running"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if f.read().startswith(b"/bin/sleep"):
                break
        time.sleep(0.01)
    else:
        pytest.fail("container did not exec its program after start")
    with pytest.raises(FailedPrecondition):
        rt.start(unique_id)
    with pytest.raises(FailedPrecondition, match="not stopped"):
        rt.delete(unique_id)

    rt.pause(unique_id)
    assert _status_of(rt, unique_id) == "paused"
    rt.resume(unique_id)
    assert _status_of(rt, unique_id) == "running"

    rt.kill(unique_id, signal.SIGKILL)
    assert rt.wait(unique_id) == 128 + signal.SIGKILL
    st = rt.state(unique_id)
    assert st["status"] == "stopped" and st["pid"] == 0
    with pytest.raises(FailedPrecondition, match="not running"):
        rt.kill(unique_id, signal.SIGTERM)
    rt.delete(unique_id)
    _assert_nothing_left(rt, unique_id, b)
    with pytest.raises(NotFound):
        rt.delete(unique_id)
    rt.delete(unique_id, force=True)  # force: a missing container is fine


def test_delete_created_kills_it(
    rt: Runtime, bundle_factory: BundleFactory, unique_id: str
) -> None:
    b = bundle_factory(["/bin/true"])
    pid = rt.create(unique_id, str(b))
    rt.delete(unique_id)
    from pyrt.runtime.state import process_alive

    assert not process_alive(pid, None)
    _assert_nothing_left(rt, unique_id, b)


def test_delete_force_running(rt: Runtime, bundle_factory: BundleFactory, unique_id: str) -> None:
    b = bundle_factory(["/bin/sh", "-c", "sleep 300 | sleep 300"])
    rt.create(unique_id, str(b))
    rt.start(unique_id)
    time.sleep(0.2)
    assert len(rt.ps(unique_id)) >= 2
    rt.delete(unique_id, force=True)
    _assert_nothing_left(rt, unique_id, b)


def test_delete_hands_the_state_directory_to_discard(
    rt: Runtime, bundle_factory: BundleFactory, unique_id: str, tmp_path: Path
) -> None:
    """With a discard (the engine's trash), delete gives the state directory to it instead of
    removing it in place; the container is gone all the same (process, cgroup)."""
    b = bundle_factory(["/bin/sh", "-c", "sleep 300"])
    pid = rt.create(unique_id, str(b))
    state_dir = rt._dir(unique_id).path
    given: list[str] = []
    away = tmp_path / "discarded"

    def discard(path: str) -> None:
        given.append(path)
        os.rename(path, away)

    rt.discard = discard
    rt.delete(unique_id, force=True)
    from pyrt.runtime.state import process_alive

    assert given == [state_dir]
    assert (away / "state.json").is_file()  # handed over whole, not emptied first
    assert not process_alive(pid, None)
    _assert_nothing_left(rt, unique_id, b)


def test_kill_all_and_exit_status(
    rt: Runtime, bundle_factory: BundleFactory, unique_id: str
) -> None:
    b = bundle_factory(["/bin/sh", "-c", "exit 7"])
    code, _ = run_capture(rt, unique_id, b)
    assert code == 7
    _assert_nothing_left(rt, unique_id, b)
    b2 = bundle_factory(["/bin/sleep", "300"])
    cid = unique_id + "-2"
    rt.create(cid, str(b2))
    rt.start(cid)
    # pid 1 of a pid namespace ignores SIGTERM without a handler: SIGKILL goes through
    rt.kill(cid, signal.SIGKILL, all=True)
    assert rt.wait(cid) == 128 + signal.SIGKILL
    rt.delete(cid)


# ---------------------------------------------------------------- inside the container

_PROBE = r"""
echo "pid=$$"
echo "host=$(hostname)"
grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status
echo "nofile=$(ulimit -n)"
echo "mounts-begin"; cat /proc/mounts; echo "mounts-end"
if [ -n "$(cat /proc/kcore 2>/dev/null | head -c 1)" ]; then echo kcore=readable; \
  else echo kcore=empty; fi
if echo 1 > /proc/sys/kernel/domainname 2>/dev/null; then echo procsys=writable; \
  else echo procsys=readonly; fi
if mkdir /tmp/x 2>/dev/null; then echo mkdir=ok; else echo mkdir=denied; fi
echo "fds=$(ls /proc/self/fd | tr '\n' ' ')"
"""


def test_inside_the_container(rt: Runtime, bundle_factory: BundleFactory, unique_id: str) -> None:
    seccomp = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    b = bundle_factory(
        ["/bin/sh", "-c", _PROBE],
        **{
            "hostname": "probe-host",
            "process.rlimits": [{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}],
            "linux.seccomp": seccomp,
            "root.readonly": False,
        },
    )
    cfg = json.loads((b / "config.json").read_text())
    code, out = run_capture(rt, unique_id, b)
    assert code == 0, out
    lines = out.splitlines()
    assert "pid=1" in lines
    assert "host=probe-host" in lines
    fields = dict(line.split(":", 1) for line in lines if line.startswith(("Cap", "Sec", "NoN")))
    want_eff = caps_to_mask(cfg["process"]["capabilities"]["effective"], "effective")
    want_bnd = caps_to_mask(cfg["process"]["capabilities"]["bounding"], "bounding")
    assert int(fields["CapEff"].strip(), 16) == want_eff
    assert int(fields["CapBnd"].strip(), 16) == want_bnd
    assert fields["Seccomp"].strip() == "2"
    assert fields["NoNewPrivs"].strip() == "1"
    assert "nofile=256" in lines
    mounts = lines[lines.index("mounts-begin") + 1 : lines.index("mounts-end")]
    targets = {m.split()[1]: m.split()[2] for m in mounts}
    assert targets.get("/proc") == "proc"
    assert "/" in targets
    assert not any(t.startswith(str(b)) for t in targets), "host paths visible in mounts"
    assert "kcore=empty" in lines
    assert "procsys=readonly" in lines
    assert "mkdir=denied" in lines
    _assert_nothing_left(rt, unique_id, b)


def test_no_runtime_fd_leaks_into_container(
    rt: Runtime, bundle_factory: BundleFactory, unique_id: str, tmp_path: Path
) -> None:
    # some fds of our own, open without O_CLOEXEC, must still not reach the container
    leak = os.open(str(tmp_path), os.O_RDONLY)
    os.set_inheritable(leak, True)
    try:
        b = bundle_factory(["/bin/ls", "/proc/self/fd"])
        code, out = run_capture(rt, unique_id, b)
    finally:
        os.close(leak)
    assert code == 0, out
    assert sorted(out.split()) == ["0", "1", "2", "3"], out


# ---------------------------------------------------------------- exec


@pytest.fixture
def running(rt: Runtime, bundle_factory: BundleFactory, unique_id: str) -> Iterator[str]:
    b = bundle_factory(["/bin/sleep", "300"], **{"root.readonly": False})
    rt.create(unique_id, str(b))
    rt.start(unique_id)
    yield unique_id
    with contextlib.suppress(PyrtError):
        rt.delete(unique_id, force=True)


def _exec_capture(rt: Runtime, cid: str, process: dict[str, Any]) -> tuple[int, str]:
    r, w = os.pipe()
    devnull = os.open("/dev/null", os.O_RDONLY)
    try:
        code = rt.exec(cid, process, stdio=(devnull, w, w))
    finally:
        os.close(w)
        os.close(devnull)
    try:
        return code, _read_all(r)
    finally:
        os.close(r)


def test_exec(rt: Runtime, running: str) -> None:
    base = dict(rt.config(running)["process"])
    code, out = _exec_capture(rt, running, {**base, "args": ["/bin/sh", "-c", "echo $$; exit 3"]})
    assert code == 3
    assert int(out.strip()) > 1  # a new process in the container's pid namespace
    code, out = _exec_capture(rt, running, {**base, "args": ["/bin/hostname"]})
    assert code == 0 and out.strip() == rt.config(running)["hostname"]
    # the exec'd process is in the container's cgroup while it runs
    pid = rt.exec(running, {**base, "args": ["/bin/sleep", "300"]}, detach=True)
    try:
        assert pid in rt.ps(running)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    with pytest.raises(InvalidArgument):
        rt.exec(running, {**base, "args": []})


def test_exec_refused_on_stopped(
    rt: Runtime, bundle_factory: BundleFactory, unique_id: str
) -> None:
    b = bundle_factory(["/bin/true"])
    rt.create(unique_id, str(b))
    rt.start(unique_id)
    rt.wait(unique_id)
    with pytest.raises(FailedPrecondition, match="stopped"):
        rt.exec(unique_id, {"args": ["/bin/true"], "cwd": "/"})
    rt.delete(unique_id)


# ---------------------------------------------------------------- terminal


class ConsoleListener:
    """A Unix socket that receives one pty master fd over SCM_RIGHTS."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.fd: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        try:
            self.sock.settimeout(30)
            conn, _ = self.sock.accept()
            with conn:
                fds = array.array("i")
                _, anc, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
                for level, kind, data in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
                if fds:
                    self.fd = fds[0]
        except BaseException as e:
            self.error = e

    def master(self) -> int:
        self.thread.join(30)
        if self.error is not None:
            raise self.error
        assert self.fd is not None, "no pty master received"
        return self.fd

    def close(self) -> None:
        self.sock.close()
        if self.fd is not None:
            os.close(self.fd)


def test_terminal_over_console_socket(
    rt: Runtime, bundle_factory: BundleFactory, unique_id: str, tmp_path: Path
) -> None:
    # the pty devices must pass the device cgroup: allow ptmx (5:2) and the pts (136:*)
    devices = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
        {"allow": True, "type": "c", "major": 136, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    ]
    b = bundle_factory(
        ["/bin/sh"], **{"process.terminal": True, "linux.resources.devices": devices}
    )
    listener = ConsoleListener(tmp_path / "console.sock")
    try:
        rt.create(unique_id, str(b), console_socket=listener.path)
        master = listener.master()
        rt.start(unique_id)
        os.write(master, b"echo hi$((1+1))\n")
        buf = b""
        deadline = time.monotonic() + 10
        while b"hi2" not in buf and time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                buf += os.read(master, 4096)
        assert b"hi2" in buf, buf
        os.write(master, b"exit 5\n")
        assert rt.wait(unique_id) == 5
        rt.delete(unique_id)
    finally:
        listener.close()
    _assert_nothing_left(rt, unique_id, b)


def test_terminal_needs_console_socket(
    rt: Runtime, bundle_factory: BundleFactory, unique_id: str
) -> None:
    b = bundle_factory(["/bin/sh"], **{"process.terminal": True})
    with pytest.raises(InvalidArgument, match="console"):
        rt.create(unique_id, str(b))
    _assert_nothing_left(rt, unique_id, b)


# ---------------------------------------------------------------- hooks


def test_hooks(rt: Runtime, bundle_factory: BundleFactory, unique_id: str, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    script = tmp_path / "hook.sh"
    # each hook appends its name, the state's status, and its mount namespace
    script.write_text(
        "#!/bin/sh\n"
        "st=$(cat)\n"
        'echo "$1 $(echo "$st" | grep -o \'"status": *"[a-z]*"\' | grep -o \'[a-z]*"$\' | '
        "tr -d '\"') $(readlink /proc/self/ns/mnt)\" >> " + str(log) + "\n"
    )
    script.chmod(0o755)

    def hook(name: str) -> dict[str, Any]:
        return {"path": str(script), "args": ["hook.sh", name], "timeout": 10}

    hooks = {k: [hook(k)] for k in ("prestart", "createRuntime", "createContainer",
                                    "poststart", "poststop")}  # fmt: skip
    b = bundle_factory(["/bin/sleep", "300"], **{"hooks": hooks})
    pid = rt.create(unique_id, str(b))
    container_mnt = os.readlink(f"/proc/{pid}/ns/mnt")
    host_mnt = os.readlink("/proc/self/ns/mnt")
    rt.start(unique_id)
    rt.delete(unique_id, force=True)
    entries = [line.split() for line in log.read_text().splitlines()]
    assert [e[0] for e in entries] == [
        "prestart", "createRuntime", "createContainer", "poststart", "poststop",
    ]  # fmt: skip
    by = {e[0]: e for e in entries}
    assert by["prestart"][1] == "creating"
    assert by["poststart"][1] == "running"
    assert by["poststop"][1] == "stopped"
    assert by["createRuntime"][2] == host_mnt
    assert by["createContainer"][2] == container_mnt != host_mnt
    _assert_nothing_left(rt, unique_id, b)


def test_failing_prestart_hook_fails_create(
    rt: Runtime, bundle_factory: BundleFactory, unique_id: str
) -> None:
    b = bundle_factory(
        ["/bin/true"],
        **{
            "hooks": {
                "prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo no >&2; exit 4"]}]
            }
        },
    )
    with pytest.raises(PyrtError, match="prestart hook /bin/sh failed: exit status 4: no"):
        rt.create(unique_id, str(b))
    _assert_nothing_left(rt, unique_id, b)


def test_hook_timeout(rt: Runtime, bundle_factory: BundleFactory, unique_id: str) -> None:
    b = bundle_factory(
        ["/bin/true"],
        **{
            "hooks": {
                "createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]
            }
        },  # fmt: skip
    )
    t0 = time.monotonic()
    with pytest.raises(PyrtError, match="timed out"):
        rt.create(unique_id, str(b))
    assert time.monotonic() - t0 < 10
    _assert_nothing_left(rt, unique_id, b)


# ---------------------------------------------------------------- bad input


def test_missing_rootfs(rt: Runtime, bundle_factory: BundleFactory, unique_id: str) -> None:
    b = bundle_factory(["/bin/true"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["root"]["path"] = "no-such-rootfs"
    (b / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PyrtError, match="no-such-rootfs"):
        rt.create(unique_id, str(b))
    _assert_nothing_left(rt, unique_id, b)


def test_invalid_json(rt: Runtime, bundle_factory: BundleFactory, unique_id: str) -> None:
    b = bundle_factory(["/bin/true"])
    (b / "config.json").write_text('{"ociVersion": "1.0.2", "process": ')
    with pytest.raises(InvalidArgument, match="config.json"):
        rt.create(unique_id, str(b))
    assert not os.path.exists(os.path.join(rt.root, unique_id))


def test_unknown_namespace(rt: Runtime, bundle_factory: BundleFactory, unique_id: str) -> None:
    b = bundle_factory(["/bin/true"], **{"linux.namespaces": [{"type": "bogus"}]})
    with pytest.raises(InvalidArgument, match="bogus"):
        rt.create(unique_id, str(b))
    _assert_nothing_left(rt, unique_id, b)


def test_core_pattern_sysctl_refused(
    rt: Runtime, bundle_factory: BundleFactory, unique_id: str
) -> None:
    with open("/proc/sys/kernel/core_pattern") as f:
        before = f.read()
    b = bundle_factory(["/bin/true"], **{"linux.sysctl": {"kernel.core_pattern": "|/x"}})
    with pytest.raises(InvalidArgument, match="kernel.core_pattern"):
        rt.create(unique_id, str(b))
    with open("/proc/sys/kernel/core_pattern") as f:
        assert f.read() == before
    _assert_nothing_left(rt, unique_id, b)


@pytest.mark.parametrize("name", ["proc", "dev", "sys"])
def test_proc_symlink_to_host_dir(
    rt: Runtime, bundle_factory: BundleFactory, unique_id: str, tmp_path: Path, name: str
) -> None:
    """A rootfs whose /proc, /dev or /sys is a symlink to a host directory: mounts land
    inside the rootfs (symlinks resolve against it), the host directory stays untouched."""
    host_dir = tmp_path / "host-target"
    host_dir.mkdir()
    b = bundle_factory(["/bin/true"])
    proc = b / "rootfs" / name
    if proc.exists():
        proc.rmdir()
    proc.symlink_to(host_dir)
    with contextlib.suppress(PyrtError):
        code, _ = run_capture(rt, unique_id, b)
    assert list(host_dir.iterdir()) == []
    assert not [m for m in read_mounts() if m[0].startswith(str(host_dir))]
    with contextlib.suppress(PyrtError):
        rt.delete(unique_id, force=True)
    _assert_nothing_left(rt, unique_id, b)


def test_bad_container_ids(rt: Runtime, bundle_factory: BundleFactory) -> None:
    b = bundle_factory(["/bin/true"])
    for bad in ("", ".", "..", "a/b", "../x", "-lead", "sp ace"):
        with pytest.raises(InvalidArgument, match="container id"):
            rt.create(bad, str(b))
    assert os.listdir(rt.root) == [] if os.path.exists(rt.root) else True
