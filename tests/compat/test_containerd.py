"""containerd drives pyrt-runc as the runc of its io.containerd.runc.v2 shim.

A private containerd (tests/compat/containerd_fixture.py: own root, state and sockets,
overlayfs snapshots, a namespace of its own) with a busybox OCI image imported by `ctr`;
each container is run with `--runc-binary <pyrt-runc> --runc-root <private dir>`, so the
shim calls pyrt-runc as it calls runc: `--root <runc root>/<namespace> --log
<bundle>/log.json --log-format json create --bundle ... --pid-file ...`, then start, exec
--process --detach --pid-file, ps --format json, kill [--all], delete [--force]. After each
container is gone, nothing of it may remain: shim, mounts, bundle, runtime state, cgroups,
processes, shim socket.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.compat.containerd_fixture import (  # noqa: F401  (fixtures, by their names)
    Containerd,
    busybox_image_fixture,
    containerd_fixture,
    pids_in_cgroups_named,
    task_status,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containerd as root: needs euid 0")

IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # the image's Env


def _wait_status(
    inst: Containerd, cid: str, want: str, timeout: float = 30.0
) -> dict[str, int | str]:
    deadline = time.monotonic() + timeout
    row = task_status(inst, cid)
    while row.get("status") != want and time.monotonic() < deadline:
        time.sleep(0.05)
        row = task_status(inst, cid)
    return row


def _calls(inst: Containerd, cid: str) -> list[str]:
    """The pyrt-runc calls the shim made for `cid`, as traced: 'create --bundle ...'."""
    out = []
    for line in inst.trace_path.read_text().splitlines():
        call = line.split(" -> exit ")[0]
        if " -> exit " in line and cid in call.split()[-2:]:  # `... <id>` or `kill <id> <sig>`
            out.append(line.split("--log-format json ", 1)[-1])
    return out


def test_run_rm_echo_hello(containerd: Containerd, busybox_image: str) -> None:
    cid = containerd.new_id("hello")
    res = containerd.run(busybox_image, cid, "echo", "hello")
    assert res.returncode == 0, containerd.diagnostics(res)
    assert res.stdout == "hello\n", containerd.diagnostics(res)
    # the shim really ran pyrt-runc, as it runs runc
    calls = _calls(containerd, cid)
    verbs = [c.split()[0] for c in calls]
    assert verbs[:2] == ["create", "start"] and "delete" in verbs, calls
    assert all(c.endswith("-> exit 0") for c in calls), containerd.diagnostics()
    trace = containerd.trace_path.read_text()
    assert f"--root {containerd.runtime_state} --log {containerd.bundle(cid)}/log.json" in trace
    assert cid not in containerd.ctr("containers", "ls", "-q").stdout.split()
    assert containerd.wait_gone(cid) == [], containerd.diagnostics()


def test_run_rm_passes_exit_status_and_image_config(
    containerd: Containerd, busybox_image: str
) -> None:
    cid = containerd.new_id("status")
    res = containerd.run(
        busybox_image, cid, "sh", "-c", 'echo "$PATH"; cat /proc/self/cgroup; exit 5'
    )
    assert res.returncode == 5, containerd.diagnostics(res)  # ctr run exits with the task's
    lines = res.stdout.splitlines()
    # the image config's Env reached the process; containerd's cgroupsPath /<ns>/<id> was used
    assert lines[:1] == [IMAGE_PATH], containerd.diagnostics(res)
    cgroups = [line.split(":", 2) for line in lines[1:]]
    assert cgroups and all(len(c) == 3 for c in cgroups), containerd.diagnostics(res)
    want = f"/{containerd.namespace}/{cid}"
    assert all(c[2] == want for c in cgroups if c[1] != ""), containerd.diagnostics(res)
    assert containerd.wait_gone(cid) == [], containerd.diagnostics()


def test_runtime_error_reaches_ctr(containerd: Containerd, busybox_image: str) -> None:
    # pyrt-runc's --log (json) is where the shim reads the reason of a failed create
    cid = containerd.new_id("noexec")
    res = containerd.run(busybox_image, cid, "/nonexistent-binary")
    assert res.returncode != 0, containerd.diagnostics(res)
    assert "OCI runtime create failed" in res.stderr, containerd.diagnostics(res)
    assert "/nonexistent-binary" in res.stderr, containerd.diagnostics(res)
    assert "no such file or directory" in res.stderr.lower(), containerd.diagnostics(res)
    assert cid not in containerd.ctr("containers", "ls", "-q").stdout.split()
    assert containerd.wait_gone(cid) == [], containerd.diagnostics()


def test_detached_task_exec_ps_kill_rm(containerd: Containerd, busybox_image: str) -> None:
    cid = containerd.new_id("task")
    # the init exits 7 on SIGTERM, so `ctr tasks rm` shows the status reached containerd
    init = "trap 'exit 7' TERM; while :; do sleep 0.1; done"
    res = containerd.run(busybox_image, cid, "sh", "-c", init, flags=("--detach",))
    assert res.returncode == 0, containerd.diagnostics(res)
    row = _wait_status(containerd, cid, "RUNNING")
    assert row.get("status") == "RUNNING", (row, containerd.diagnostics())
    init_pid = row["pid"]
    assert isinstance(init_pid, int) and init_pid > 0
    assert int((containerd.bundle(cid) / "init.pid").read_text()) == init_pid

    ex = containerd.exec(cid, "x3", "sh", "-c", "exit 3")
    assert ex.returncode == 3, containerd.diagnostics(ex)

    ex = containerd.exec(cid, "out", "sh", "-c", "echo from-exec; echo err >&2")
    assert (ex.returncode, ex.stdout, ex.stderr) == (0, "from-exec\n", "err\n"), (
        containerd.diagnostics(ex)
    )

    # an exec'd process sees the init as pid 1: it joined the container's pid namespace
    ex = containerd.exec(cid, "pid1", "cat", "/proc/1/cmdline")
    assert ex.returncode == 0, containerd.diagnostics(ex)
    assert ex.stdout.split("\0")[:2] == ["sh", "-c"], containerd.diagnostics(ex)

    # a long-running exec shows up in `ctr tasks ps` next to the init
    ex = containerd.exec(cid, "sleeper", "sleep", "300", detach=True)
    assert ex.returncode == 0, containerd.diagnostics(ex)
    ps = containerd.ctr("tasks", "ps", cid)
    assert ps.returncode == 0, containerd.diagnostics(ps)
    pids = [int(line.split()[0]) for line in ps.stdout.splitlines()[1:] if line.strip()]
    assert init_pid in pids and len(pids) >= 2, containerd.diagnostics(ps)
    sleeper = int((containerd.bundle(cid) / "sleeper.pid").read_text())
    assert sleeper in pids, (sleeper, containerd.diagnostics(ps))
    for pid in (init_pid, sleeper):  # (the loop's short sleeps come and go)
        with open(f"/proc/{pid}/cgroup") as f:
            assert f"/{containerd.namespace}/{cid}\n" in f.read(), pid

    kill = containerd.ctr("tasks", "kill", cid)  # SIGTERM to the init
    assert kill.returncode == 0, containerd.diagnostics(kill)
    row = _wait_status(containerd, cid, "STOPPED")
    assert row.get("status") == "STOPPED", (row, containerd.diagnostics())
    rm = containerd.ctr("tasks", "rm", cid)
    assert rm.returncode == 0, containerd.diagnostics(rm)
    # ctr 1.6 reports the status the shim collected as a warning
    assert "exit with non-zero exit code 7" in rm.stderr, containerd.diagnostics(rm)
    assert task_status(containerd, cid) == {}
    crm = containerd.ctr("containers", "rm", cid)
    assert crm.returncode == 0, containerd.diagnostics(crm)
    assert containerd.wait_gone(cid) == [], containerd.diagnostics()
    verbs = {c.split()[0] for c in _calls(containerd, cid)}
    assert {"create", "start", "exec", "ps", "kill", "delete"} <= verbs, _calls(containerd, cid)


def test_kill_all_stops_every_process(containerd: Containerd, busybox_image: str) -> None:
    cid = containerd.new_id("killall")
    res = containerd.run(busybox_image, cid, "sleep", "300", flags=("--detach",))
    assert res.returncode == 0, containerd.diagnostics(res)
    assert _wait_status(containerd, cid, "RUNNING").get("status") == "RUNNING"
    ex = containerd.exec(cid, "bg", "sleep", "300", detach=True)
    assert ex.returncode == 0, containerd.diagnostics(ex)
    bg = int((containerd.bundle(cid) / "bg.pid").read_text())
    kill = containerd.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", cid)
    assert kill.returncode == 0, containerd.diagnostics(kill)
    row = _wait_status(containerd, cid, "STOPPED")
    assert row.get("status") == "STOPPED", (row, containerd.diagnostics())
    # the exec'd sleep died with the init: no live process is left in the container's cgroup
    assert pids_in_cgroups_named(f"/{containerd.namespace}/{cid}\n") == [], bg
    rm = containerd.ctr("tasks", "rm", cid)
    assert rm.returncode == 0, containerd.diagnostics(rm)
    assert "exit with non-zero exit code 137" in rm.stderr, containerd.diagnostics(rm)
    crm = containerd.ctr("containers", "rm", cid)
    assert crm.returncode == 0, containerd.diagnostics(crm)
    assert containerd.wait_gone(cid) == [], containerd.diagnostics()
    assert any(c.startswith("kill --all ") for c in _calls(containerd, cid))


# What containerd 1.6's runc shim makes of a failed `runc kill` (checkKillError in its
# process package): stderr naming "container not running" or "no such process" means the
# process already finished, "does not exist" means no such container; both are NotFound,
# which callers such as `ctr tasks rm --force` take as "already dead". Any other text is an
# "unknown error after kill" that fails the caller.
SHIM_NOT_FOUND_MARKERS = ("container not running", "no such process", "does not exist")


def test_kill_errors_are_the_ones_the_shim_understands(
    containerd: Containerd, busybox_image: str
) -> None:
    cid = containerd.new_id("stopped")
    res = containerd.run(busybox_image, cid, "true", flags=("--detach",))
    assert res.returncode == 0, containerd.diagnostics(res)
    row = _wait_status(containerd, cid, "STOPPED")
    assert row.get("status") == "STOPPED", (row, containerd.diagnostics())
    # the task is stopped but not deleted: its bundle and runtime state are still there;
    # call the runtime as the shim does when it races a process exit
    base = [str(containerd.runtime), "--root", str(containerd.runtime_state),
            "--log", str(containerd.bundle(cid) / "log.json"), "--log-format", "json"]  # fmt: skip
    for args in (["kill", cid, "9"], ["kill", "--all", cid, "9"], ["kill", "no-such-id", "9"]):
        kill = subprocess.run(
            [*base, *args], cwd=containerd.bundle(cid), capture_output=True, text=True, timeout=60
        )  # (the shim runs it in the bundle)
        if kill.returncode != 0:
            assert any(m in kill.stderr.lower() for m in SHIM_NOT_FOUND_MARKERS), (
                f"pyrt-runc {' '.join(args)}: exit {kill.returncode}, stderr {kill.stderr!r}: "
                f"containerd's shim needs one of {SHIM_NOT_FOUND_MARKERS} in it"
            )
        else:
            assert args[1] == "--all", f"pyrt-runc {' '.join(args)} succeeded"
    rm = containerd.ctr("tasks", "rm", cid)
    assert rm.returncode == 0, containerd.diagnostics(rm)
    crm = containerd.ctr("containers", "rm", cid)
    assert crm.returncode == 0, containerd.diagnostics(crm)
    assert containerd.wait_gone(cid) == [], containerd.diagnostics()


def test_force_rm_right_after_kill(containerd: Containerd, busybox_image: str) -> None:
    # `ctr tasks rm --force` kills the task again when it still looks alive: right after
    # a SIGKILL the shim may not have reaped the init yet and calls `runc kill --all`,
    # which then meets a stopped container (see SHIM_NOT_FOUND_MARKERS)
    for _ in range(3):
        cid = containerd.new_id("forcerm")
        res = containerd.run(busybox_image, cid, "sleep", "300", flags=("--detach",))
        assert res.returncode == 0, containerd.diagnostics(res)
        assert _wait_status(containerd, cid, "RUNNING").get("status") == "RUNNING"
        kill = containerd.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", cid)
        assert kill.returncode == 0, containerd.diagnostics(kill)
        rm = containerd.ctr("tasks", "rm", "--force", cid)
        assert rm.returncode == 0, containerd.diagnostics(rm)
        assert task_status(containerd, cid) == {}, containerd.diagnostics(rm)
        crm = containerd.ctr("containers", "rm", cid)
        assert crm.returncode == 0, containerd.diagnostics(crm)
        assert containerd.wait_gone(cid) == [], containerd.diagnostics()
