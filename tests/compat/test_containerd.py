"""containerd drives pyrt-runc as the runc of its io.containerd.runc.v2 shim.

A private containerd (tests/compat/containerd_fixture.py: own root, state and sockets,
overlayfs snapshots, a namespace of its own) with a busybox OCI image imported by `ctr`;
each container is run with `--runc-binary <pyrt-runc> --runc-root <private dir>`, so the
shim calls pyrt-runc as it calls runc: `--root <runc root> --log <bundle>/log.json
--log-format json create --bundle ... --pid-file ...`, then start, state, exec --process
--detach --pid-file, ps --format json, kill, delete. After each container is gone, nothing
of it may remain: shim, mounts, bundle, runtime state, cgroups, processes, shim socket.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.compat.containerd_fixture import (  # noqa: F401  (fixtures)
    Containerd,
    busybox_image,
    containerd,
    task_status,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containerd as root: needs euid 0")

TIMEOUT = 120.0
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # the image's Env


def _wait_status(inst: Containerd, cid: str, want: str, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    row = task_status(inst, cid)
    while row.get("status") != want and time.monotonic() < deadline:
        time.sleep(0.05)
        row = task_status(inst, cid)
    return row


def test_run_rm_echo_hello(containerd: Containerd, busybox_image: str) -> None:
    cid = containerd.new_id("hello")
    res = containerd.ctr(
        "run", "--rm", *containerd.run_flags(), busybox_image, cid, "echo", "hello",
        timeout=TIMEOUT,
    )  # fmt: skip
    assert res.returncode == 0, containerd.diagnostics(res)
    assert res.stdout == "hello\n", containerd.diagnostics(res)
    # the shim really ran pyrt-runc, the way it runs runc
    trace = containerd.trace_path.read_text()
    for verb in ("create", "start", "delete"):
        assert f" {verb} " in trace, f"pyrt-runc {verb} never called:\n{trace}"
    assert f"--root {containerd.runtime_state} " in trace, trace
    assert "--log-format json" in trace, trace
    assert cid not in containerd.ctr("containers", "ls", "-q").stdout.split()
    assert containerd.wait_gone(cid) == [], containerd.diagnostics()


def test_run_rm_passes_exit_status_and_image_config(
    containerd: Containerd, busybox_image: str
) -> None:
    cid = containerd.new_id("status")
    res = containerd.ctr(
        "run", "--rm", *containerd.run_flags(), busybox_image, cid,
        "sh", "-c", 'echo "$PATH"; cat /proc/self/cgroup; exit 5',
        timeout=TIMEOUT,
    )  # fmt: skip
    assert res.returncode == 5, containerd.diagnostics(res)  # ctr run exits with the task's
    lines = res.stdout.splitlines()
    # the image config's Env reached the process; containerd's cgroupsPath /<ns>/<id> was used
    assert lines[0] == IMAGE_PATH, containerd.diagnostics(res)
    cgroups = [line.split(":", 2) for line in lines[1:]]
    assert cgroups and all(len(c) == 3 for c in cgroups), containerd.diagnostics(res)
    assert all(c[2] == f"/{containerd.namespace}/{cid}" for c in cgroups if c[1] != ""), (
        containerd.diagnostics(res)
    )
    assert containerd.wait_gone(cid) == [], containerd.diagnostics()


def test_detached_task_exec_ps_kill_rm(containerd: Containerd, busybox_image: str) -> None:
    cid = containerd.new_id("task")
    # init exits 7 on SIGTERM, so `ctr tasks rm` can show the status reached containerd
    init = "trap 'exit 7' TERM; while :; do sleep 0.1; done"
    res = containerd.ctr(
        "run", "-d", *containerd.run_flags(), busybox_image, cid, "sh", "-c", init,
        timeout=TIMEOUT,
    )  # fmt: skip
    assert res.returncode == 0, containerd.diagnostics(res)
    row = _wait_status(containerd, cid, "RUNNING")
    assert row.get("status") == "RUNNING", (row, containerd.diagnostics())
    init_pid = row["pid"]
    assert isinstance(init_pid, int) and init_pid > 0
    with open(containerd.bundle(cid) / "init.pid") as f:
        assert int(f.read()) == init_pid

    ex = containerd.ctr("tasks", "exec", "--exec-id", "x3", cid, "sh", "-c", "exit 3",
                        timeout=TIMEOUT)  # fmt: skip
    assert ex.returncode == 3, containerd.diagnostics(ex)

    ex = containerd.ctr(
        "tasks", "exec", "--exec-id", "out", cid, "sh", "-c", "echo from-exec; echo err >&2",
        timeout=TIMEOUT,
    )  # fmt: skip
    assert ex.returncode == 0, containerd.diagnostics(ex)
    assert ex.stdout == "from-exec\n", containerd.diagnostics(ex)
    assert ex.stderr == "err\n", containerd.diagnostics(ex)

    # an exec'd process sees the init as pid 1: same pid namespace
    ex = containerd.ctr("tasks", "exec", "--exec-id", "pid1", cid, "cat", "/proc/1/cmdline",
                        timeout=TIMEOUT)  # fmt: skip
    assert ex.returncode == 0, containerd.diagnostics(ex)
    assert ex.stdout.split("\0")[:2] == ["sh", "-c"], containerd.diagnostics(ex)

    # a long-running exec shows up in `ctr tasks ps` next to the init
    ex = containerd.ctr("tasks", "exec", "-d", "--exec-id", "sleeper", cid, "sleep", "300",
                        timeout=TIMEOUT)  # fmt: skip
    assert ex.returncode == 0, containerd.diagnostics(ex)
    ps = containerd.ctr("tasks", "ps", cid, timeout=TIMEOUT)
    assert ps.returncode == 0, containerd.diagnostics(ps)
    pids = [int(line.split()[0]) for line in ps.stdout.splitlines()[1:] if line.strip()]
    assert init_pid in pids, containerd.diagnostics(ps)
    assert len(pids) >= 2, containerd.diagnostics(ps)  # init, sleeper (+ the loop's sleep)
    for pid in pids:
        with open(f"/proc/{pid}/cgroup") as f:
            assert f"/{containerd.namespace}/{cid}" in f.read(), pid
    kill = containerd.ctr("tasks", "kill", cid, timeout=TIMEOUT)  # SIGTERM to the init
    assert kill.returncode == 0, containerd.diagnostics(kill)
    row = _wait_status(containerd, cid, "STOPPED")
    assert row.get("status") == "STOPPED", (row, containerd.diagnostics())
    rm = containerd.ctr("tasks", "rm", cid, timeout=TIMEOUT)
    assert rm.returncode == 0, containerd.diagnostics(rm)
    # ctr 1.6 reports the status the shim collected as a warning
    assert "exit with non-zero exit code 7" in rm.stderr, containerd.diagnostics(rm)
    assert task_status(containerd, cid) == {}
    crm = containerd.ctr("containers", "rm", cid, timeout=TIMEOUT)
    assert crm.returncode == 0, containerd.diagnostics(crm)
    assert containerd.wait_gone(cid) == [], containerd.diagnostics()


def test_kill_all_stops_every_process(containerd: Containerd, busybox_image: str) -> None:
    cid = containerd.new_id("killall")
    res = containerd.ctr("run", "-d", *containerd.run_flags(), busybox_image, cid,
                         "sleep", "300", timeout=TIMEOUT)  # fmt: skip
    assert res.returncode == 0, containerd.diagnostics(res)
    assert _wait_status(containerd, cid, "RUNNING").get("status") == "RUNNING"
    ex = containerd.ctr("tasks", "exec", "-d", "--exec-id", "bg", cid, "sleep", "300",
                        timeout=TIMEOUT)  # fmt: skip
    assert ex.returncode == 0, containerd.diagnostics(ex)
    kill = containerd.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", cid, timeout=TIMEOUT)
    assert kill.returncode == 0, containerd.diagnostics(kill)
    row = _wait_status(containerd, cid, "STOPPED")
    assert row.get("status") == "STOPPED", (row, containerd.diagnostics())
    rm = containerd.ctr("tasks", "rm", cid, timeout=TIMEOUT)
    assert rm.returncode == 0, containerd.diagnostics(rm)
    assert "exit with non-zero exit code 137" in rm.stderr, containerd.diagnostics(rm)
    crm = containerd.ctr("containers", "rm", cid, timeout=TIMEOUT)
    assert crm.returncode == 0, containerd.diagnostics(crm)
    assert containerd.wait_gone(cid) == [], containerd.diagnostics()
