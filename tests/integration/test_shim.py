"""pyrt-shim with real containers: json-file logs, rotation, attach, tty, exit status,
an engine that goes away and comes back, create errors, and pyrt-init reaping zombies.

The shim runs the runtime through a small wrapper script (pyrt-runc of the pyrt these
tests import); each test checks that its shim is gone at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pyrt
from pyrt.containers.logs import log_files, read_logs
from pyrt.containers.shim_client import (
    EXIT,
    STDERR,
    STDOUT,
    ShimClient,
    ShimConfig,
    ShimProcess,
    find_init,
    find_shim,
)
from pyrt.errors import FailedPrecondition, PyrtError, SystemError_
from pyrt.runtime.runtime import Runtime

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


@pytest.fixture
def runtime_wrapper(tmp_path: Path) -> Path:
    """An executable that runs pyrt-runc of the pyrt under test."""
    pkg_parent = Path(pyrt.__file__).resolve().parent.parent
    script = tmp_path / "pyrt-runc"
    script.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH='{pkg_parent}'${{PYTHONPATH:+:$PYTHONPATH}}; export PYTHONPATH\n"
        f"exec '{sys.executable}' -m pyrt.runtime.cli \"$@\"\n"
    )
    script.chmod(0o755)
    return script


@pytest.fixture
def shim_binary() -> Path:
    try:
        return find_shim()
    except PyrtError as e:
        pytest.fail(f"pyrt-shim is not built: {e}")


Launch = Callable[..., tuple[ShimProcess, ShimClient]]


@pytest.fixture
def launch(
    tmp_path: Path,
    runtime_root: Path,
    runtime_wrapper: Path,
    shim_binary: Path,
    unique_id: str,
) -> Iterator[Launch]:
    """launch(bundle, **ShimConfig fields) -> (ShimProcess, ShimClient); at teardown each
    container is killed and deleted, and its shim must have exited."""
    launched: list[tuple[ShimProcess, str]] = []
    counter = iter(range(100))

    def run(bundle_dir: Path, **kw: Any) -> tuple[ShimProcess, ShimClient]:
        n = next(counter)
        cid = kw.pop("container_id", f"{unique_id}-{n}")
        state = kw.pop("state_dir", tmp_path / f"shim{n}")
        kw.setdefault("log_path", state / "json.log")
        cfg = ShimConfig(
            container_id=cid, bundle=bundle_dir, state_dir=state, runtime=runtime_wrapper,
            runtime_root=runtime_root, drain_timeout=kw.pop("drain_timeout", 1.0), **kw,
        )  # fmt: skip
        sp = ShimProcess.launch(cfg, shim=shim_binary, timeout=60)
        launched.append((sp, cid))
        return sp, sp.client()

    yield run
    rt = Runtime(str(runtime_root))
    alive = []
    for sp, cid in launched:
        client = ShimClient(sp.state_dir)
        if client.shim_alive():
            with contextlib.suppress(PyrtError):  # it may be exiting already
                client.kill(9)
        if not wait_gone(sp.shim_pid, 10):
            alive.append(sp.shim_pid)
            os.kill(sp.shim_pid, 9)
        with contextlib.suppress(PyrtError):  # a test may have deleted it
            rt.delete(cid, force=True)
    assert not alive, f"shims still running after their containers: {alive}"


def wait_gone(pid: int, timeout: float) -> bool:
    """True once pid is gone (or a zombie: the shim's own parent may not reap it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rpartition(b")")[2].split()[:1] == [b"Z"]:
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def finished(sp: ShimProcess, client: ShimClient, timeout: float = 30) -> Any:
    ex = client.wait(timeout=timeout)
    assert wait_gone(sp.shim_pid, 10), "the shim did not exit after its container"
    assert not (sp.state_dir / "shim.sock").exists()
    assert json.loads((sp.state_dir / "exit.json").read_text())["pid"] == sp.init_pid
    return ex


# -------------------------------------------------------------------- logs


def test_logs_json_file(launch: Launch, bundle_factory: Callable[..., Path]) -> None:
    script = (
        "echo out1; echo err1 >&2; printf 'tab\\tq\"\\\\ \\001\\377 \\303\\251\\n';"
        "head -c 40000 /dev/zero | tr '\\0' x; echo; printf 'no newline'; exit 3"
    )
    sp, client = launch(bundle_factory(["/bin/sh", "-c", script]))
    assert client.status().status == "created"
    client.start()
    ex = finished(sp, client)
    assert (ex.code, ex.signal, ex.exit_code, ex.oom_killed) == (3, 0, 3, False)
    assert TIME_RE.match(ex.time)

    raw = (sp.state_dir / "json.log").read_text().splitlines()
    docs = [json.loads(line) for line in raw]
    for d in docs:
        assert list(d) == ["log", "stream", "time"] and TIME_RE.match(d["time"])
    assert raw[0].startswith('{"log":"out1\\n","stream":"stdout","time":"')
    (tab,) = [r for r in raw if r.startswith('{"log":"tab')]
    assert tab.startswith('{"log":"tab\\tq\\"\\\\ \\u0001\\ufffd é\\n","stream":"stdout"')
    entries = list(read_logs(sp.state_dir / "json.log"))
    by_stream = {s: [e.log for e in entries if e.stream == s] for s in ("stdout", "stderr")}
    assert by_stream["stderr"] == [b"err1\n"]
    out = by_stream["stdout"]
    assert out[0] == b"out1\n"
    assert out[1] == 'tab\tq"\\ \x01\ufffd é\n'.encode()  # invalid byte replaced
    assert [len(x) for x in out[2:5]] == [16384, 16384, 40000 - 2 * 16384 + 1]  # partials
    assert out[2:5] == [b"x" * 16384, b"x" * 16384, b"x" * (40000 - 2 * 16384) + b"\n"]
    assert out[5] == b"no newline"  # flushed at EOF


def test_log_rotation(launch: Launch, bundle_factory: Callable[..., Path]) -> None:
    script = "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done"
    sp, client = launch(
        bundle_factory(["/bin/sh", "-c", script]), log_max_size=4000, log_max_file=3
    )
    client.start()
    assert finished(sp, client).code == 0
    log = sp.state_dir / "json.log"
    assert [f.name for f in log_files(log)] == ["json.log.2", "json.log.1", "json.log"]
    assert not (sp.state_dir / "json.log.3").exists()
    for f in log_files(log):
        assert 0 < f.stat().st_size <= 4000
    got = [int(e.log.decode().strip().split("-")[1]) for e in read_logs(log)]
    assert got[-1] == 299 and got == list(range(got[0], 300))  # the newest, in order
    assert len(got) < 300  # the oldest were rotated out


# -------------------------------------------------------------------- attach, stdin, tty


def test_attach_stdin_two_attachers(launch: Launch, bundle_factory: Callable[..., Path]) -> None:
    sp, client = launch(bundle_factory(["/bin/cat"]), stdin=True)
    a = client.attach(stdin=True)
    b = client.attach()
    client.start()
    assert client.status().status == "running"
    a.write(b"hello shim\n")
    got = b""
    while b"hello shim\n" not in got:
        f = b.read_frame(timeout=10)
        assert f is not None and f.stream == STDOUT
        got += f.data
    a.write(b"x" * 200_000 + b"\n")  # more than the pipe and the shim's buffer hold
    a.close_stdin()
    out_a = a.read_all(timeout=30)
    out_b = b.read_all(timeout=30)
    assert out_a[STDOUT] == b"hello shim\n" + b"x" * 200_000 + b"\n"
    assert got + out_b[STDOUT] == out_a[STDOUT]
    assert a.exit is not None and a.exit.code == 0 and b.exit == a.exit
    a.close()
    b.close()
    assert finished(sp, client).code == 0
    lines = [e.log for e in read_logs(sp.state_dir / "json.log")]
    assert lines[0] == b"hello shim\n" and b"".join(lines[1:]) == b"x" * 200_000 + b"\n"


def test_close_stdin_command(launch: Launch, bundle_factory: Callable[..., Path]) -> None:
    sp, client = launch(bundle_factory(["/bin/sh", "-c", "cat; echo eof-seen"]), stdin=True)
    client.start()
    time.sleep(0.2)
    assert client.status().status == "running"  # cat still waits on stdin
    client.close_stdin()
    assert finished(sp, client).code == 0
    assert [e.log for e in read_logs(sp.state_dir / "json.log")] == [b"eof-seen\n"]


def test_tty_resize(launch: Launch, bundle_factory: Callable[..., Path]) -> None:
    script = "read a; stty size; read b; stty size; echo err-on-tty >&2"
    sp, client = launch(
        bundle_factory(["/bin/sh", "-c", script], **{"process.terminal": True}),
        tty=True, stdin=True,
    )  # fmt: skip
    st = client.status()
    assert st.tty
    s = client.attach(stdin=True)
    client.start()
    client.resize(33, 77)  # the command
    s.write(b"go\n")
    out = b""
    while b"33 77" not in out:
        f = s.read_frame(timeout=10)
        assert f is not None and f.stream == STDOUT, (f, out)
        out += f.data
    s.resize(40, 100)  # the attach frame
    time.sleep(0.2)
    s.write(b"again\n")
    rest = s.read_all(timeout=20)
    out += rest[STDOUT]
    assert rest[STDERR] == b""  # one stream on a tty
    assert b"40 100" in out and b"err-on-tty" in out
    assert finished(sp, client).code == 0
    logged = b"".join(e.log for e in read_logs(sp.state_dir / "json.log"))
    assert b"33 77\r\n" in logged and b"40 100\r\n" in logged  # the pty's line discipline


# -------------------------------------------------------------------- exit status


@pytest.mark.parametrize("no_sync", [False, True])
def test_exit_record(launch: Launch, bundle_factory: Callable[..., Path], no_sync: bool) -> None:
    """The exit is recorded in exit.json, synced or (--no-sync, an --rm container's shim)
    not: what the file says is the same."""
    sp, client = launch(bundle_factory(["/bin/sh", "-c", "exit 3"]), no_sync=no_sync)
    cmdline = Path(f"/proc/{sp.shim_pid}/cmdline").read_bytes().split(b"\0")
    assert (b"--no-sync" in cmdline) == no_sync
    client.start()
    ex = finished(sp, client)
    assert (ex.code, ex.exit_code, ex.signal) == (3, 3, 0)
    assert json.loads((sp.state_dir / "exit.json").read_text())["exit_code"] == 3


def test_exit_by_signal(launch: Launch, bundle_factory: Callable[..., Path]) -> None:
    sp, client = launch(bundle_factory(["/bin/sleep", "1000"]))
    client.start()
    w = client.attach()
    client.kill(9)
    ex = finished(sp, client)
    assert (ex.code, ex.signal, ex.exit_code) == (137, 9, 0)
    f = w.read_frame(timeout=10)
    assert f is not None and f.stream == EXIT and w.exit == ex
    assert w.read_frame(timeout=10) is None
    with pytest.raises(FailedPrecondition):
        client.kill(15)
    assert client.status().status == "stopped"


def test_engine_goes_away_and_comes_back(
    launch: Launch, bundle_factory: Callable[..., Path]
) -> None:
    # pid 1 of a pid namespace ignores signals it has no handler for: trap TERM
    script = 'trap "exit 7" TERM; echo up; while true; do sleep 0.1; done'
    sp, client = launch(bundle_factory(["/bin/sh", "-c", script]))
    stream = client.attach()
    client.start()
    first = stream.read_frame(timeout=10)
    assert first is not None and first.data == b"up\n"
    state_dir, init_pid = sp.state_dir, sp.init_pid
    stream.close()  # the engine dies: its connections close, nothing else remains
    del client, sp, stream
    time.sleep(0.2)

    again = ShimClient(state_dir)  # a new engine: the state dir is all it has
    st = again.status()
    assert (st.status, st.pid) == ("running", init_pid)
    assert again.shim_alive() and again.init_pid() == init_pid
    with pytest.raises(TimeoutError):
        again.wait(timeout=0.3)
    shim_pid = again.shim_pid()
    assert shim_pid > 0
    again.kill(15)
    ex = again.wait(timeout=20)
    assert (ex.code, ex.signal) == (7, 0)
    assert wait_gone(shim_pid, 10)
    assert not again.shim_alive() and again.shim_pid() == 0
    assert ShimClient(state_dir).wait(timeout=1) == ex  # from exit.json alone
    assert ShimClient(state_dir).status().status == "stopped"


def test_create_error_is_reported(
    launch: Launch, bundle_factory: Callable[..., Path], unique_id: str
) -> None:
    b = bundle_factory(["/bin/sleep", "1000"])
    sp, client = launch(b, container_id=unique_id)
    with pytest.raises(SystemError_, match="already exists"):
        launch(b, container_id=unique_id)  # the runtime refuses: its message comes back
    bad = bundle_factory(["/bin/true"])
    cfg = json.loads((bad / "config.json").read_text())
    cfg["process"]["terminal"] = True  # without --tty the shim passes no console socket
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SystemError_, match="console socket"):
        launch(bad)
    client.kill(9)
    assert finished(sp, client).signal == 9


def test_start_failure_is_reported(launch: Launch, bundle_factory: Callable[..., Path]) -> None:
    sp, client = launch(bundle_factory(["/bin/sleep", "1000"]))
    client.kill(9)  # dies while created
    ex = finished(sp, client)
    assert ex.signal == 9
    with pytest.raises(FailedPrecondition):
        client.start()


# -------------------------------------------------------------------- pyrt-init


def _zombies(init_pid: int) -> int:
    """Zombies among the container init's descendants (/proc/<pid>/task/*/children)."""
    n, todo = 0, [init_pid]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rpartition(b")")[2].split()[:1] == [b"Z"]:
                    n += 1
                    continue
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            pass
    return n


@pytest.mark.parametrize("with_init", [False, True])
def test_init_reaps_zombies_and_forwards_signals(
    launch: Launch,
    bundle_factory: Callable[..., Path],
    runtime_root: Path,
    unique_id: str,
    with_init: bool,
) -> None:
    # three orphans die and are reparented to pid 1; `sleep` as pid 1 never reaps them
    script = "for i in 1 2 3; do sh -c 'sleep 0.1 & exit 0'; done; exec sleep 1000"
    args = ["/bin/sh", "-c", script]
    if with_init:
        args = ["/sbin/pyrt-init", "--", *args]
    b = bundle_factory(args)
    if with_init:
        (b / "rootfs" / "sbin").mkdir(exist_ok=True)
        dest = b / "rootfs" / "sbin" / "pyrt-init"
        shutil.copy2(find_init(), dest)
        dest.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    cid = f"{unique_id}-i"
    sp, client = launch(b, container_id=cid)
    client.start()
    deadline = time.monotonic() + 10
    zombies = 0
    while time.monotonic() < deadline:
        time.sleep(0.3)
        zombies = _zombies(sp.init_pid)
        if not with_init and zombies == 3:
            break
    if with_init:
        assert zombies == 0
        client.kill(15)  # init forwards TERM to sleep, and exits 128+15 itself
        ex = finished(sp, client)
        assert (ex.code, ex.signal) == (143, 0)
    else:
        assert zombies == 3  # the check above can see zombies
        client.kill(9)
        assert finished(sp, client).signal == 9
