"""`pyrt-runc` driven as containerd and podman drive runc: create/start/state/kill/delete,
run, exec, ps, list, pause/resume, update, errors and JSON logs."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

BundleFactory = Callable[..., Path]


def _state(pyrt_runc: Callable[..., object], cid: str) -> dict[str, object]:
    res = pyrt_runc("state", cid)
    assert res.returncode == 0, res.stderr  # type: ignore[attr-defined]
    out: dict[str, object] = json.loads(res.stdout)  # type: ignore[attr-defined]
    return out


def _detached(pyrt_runc: Callable[..., object], tmp: Path, *args: str) -> tuple[int, str]:
    """Run a pyrt-runc command whose container keeps the stdio it inherits: hand it
    /dev/null and a file, not pipes (a pipe would stay open as long as the container)."""
    err = tmp / f"stderr-{time.monotonic_ns()}"
    with open(err, "w") as ef:
        res = pyrt_runc(*args, capture_output=False, stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=ef)  # fmt: skip
    return res.returncode, err.read_text()  # type: ignore[attr-defined]


def test_cli_lifecycle_like_containerd(
    pyrt_runc: Callable[..., object],
    bundle_factory: BundleFactory,
    unique_id: str,
    tmp_path: Path,
) -> None:
    b = bundle_factory(["/bin/sh", "-c", "echo started > /tmp/out; sleep 300"],
                       **{"root.readonly": False})  # fmt: skip
    log = tmp_path / "log.json"
    pidfile = tmp_path / "init.pid"
    code, err = _detached(
        pyrt_runc, tmp_path, "--log", str(log), "--log-format", "json", "create",
        "--bundle", str(b), "--pid-file", str(pidfile), unique_id,
    )  # fmt: skip
    assert code == 0, err
    pid = int(pidfile.read_text())
    st = _state(pyrt_runc, unique_id)
    assert st["status"] == "created" and st["pid"] == pid and st["bundle"] == str(b)

    res = pyrt_runc("start", unique_id)
    assert res.returncode == 0, res.stderr  # type: ignore[attr-defined]
    assert _state(pyrt_runc, unique_id)["status"] == "running"
    deadline = time.monotonic() + 5
    while not (b / "rootfs/tmp/out").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (b / "rootfs/tmp/out").read_text() == "started\n"

    ps = pyrt_runc("ps", "--format", "json", unique_id)
    assert json.loads(ps.stdout) == [pid]  # type: ignore[attr-defined]
    table = pyrt_runc("ps", unique_id)
    assert "PID" in table.stdout and str(pid) in table.stdout  # type: ignore[attr-defined]
    ls = pyrt_runc("list", "--format", "json")
    assert [c["id"] for c in json.loads(ls.stdout)] == [unique_id]  # type: ignore[attr-defined]
    assert pyrt_runc("list", "-q").stdout.split() == [unique_id]  # type: ignore[attr-defined]
    assert unique_id in pyrt_runc("list").stdout  # type: ignore[attr-defined]

    assert pyrt_runc("pause", unique_id).returncode == 0  # type: ignore[attr-defined]
    assert _state(pyrt_runc, unique_id)["status"] == "paused"
    assert pyrt_runc("resume", unique_id).returncode == 0  # type: ignore[attr-defined]
    assert _state(pyrt_runc, unique_id)["status"] == "running"

    res = pyrt_runc("update", "--pids-limit", "50", unique_id)
    assert res.returncode == 0, res.stderr  # type: ignore[attr-defined]

    res = pyrt_runc("delete", unique_id)
    assert res.returncode == 1  # running: refused without --force
    assert "not stopped" in res.stderr  # type: ignore[attr-defined]

    assert pyrt_runc("kill", unique_id, "9").returncode == 0  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while _state(pyrt_runc, unique_id)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _state(pyrt_runc, unique_id)["status"] == "stopped"
    res = pyrt_runc("--log", str(log), "--log-format", "json", "kill", unique_id, "KILL")
    assert res.returncode == 1 and "not running" in res.stderr  # type: ignore[attr-defined]
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "not running" in entry["msg"]

    assert pyrt_runc("delete", unique_id).returncode == 0  # type: ignore[attr-defined]
    res = pyrt_runc("state", unique_id)
    assert res.returncode == 1 and "does not exist" in res.stderr  # type: ignore[attr-defined]
    # containerd deletes again after a crash: --force on a missing container succeeds
    assert pyrt_runc("delete", "--force", unique_id).returncode == 0  # type: ignore[attr-defined]


def test_cli_run_exit_status_and_stdio(
    pyrt_runc: Callable[..., object], bundle_factory: BundleFactory, unique_id: str
) -> None:
    b = bundle_factory(["/bin/sh", "-c", "echo out-$(hostname); echo err >&2; exit 3"],
                       **{"hostname": "clihost"})  # fmt: skip
    res = pyrt_runc("run", "--bundle", str(b), unique_id)
    assert res.returncode == 3  # type: ignore[attr-defined]
    assert res.stdout == "out-clihost\n"  # type: ignore[attr-defined]
    assert "err" in res.stderr  # type: ignore[attr-defined]
    assert pyrt_runc("list", "-q").stdout.strip() == ""  # type: ignore[attr-defined]


def test_cli_exec(
    pyrt_runc: Callable[..., object],
    bundle_factory: BundleFactory,
    unique_id: str,
    tmp_path: Path,
) -> None:
    b = bundle_factory(["/bin/sleep", "300"])
    code, err = _detached(pyrt_runc, tmp_path, "run", "-d", "-b", str(b), unique_id)
    assert code == 0, err
    try:
        res = pyrt_runc("exec", "-e", "FOO=bar", unique_id, "/bin/sh", "-c", "echo $FOO; exit 4")
        assert res.returncode == 4 and res.stdout == "bar\n", res.stderr  # type: ignore[attr-defined]
        # podman/conmon style: --process file, --detach, --pid-file
        proc = {"args": ["/bin/sleep", "300"], "cwd": "/", "env": ["PATH=/bin"],
                "user": {"uid": 0, "gid": 0}}  # fmt: skip
        pj = tmp_path / "process.json"
        pj.write_text(json.dumps(proc))
        pidfile = tmp_path / "exec.pid"
        code, err = _detached(pyrt_runc, tmp_path, "exec", "--process", str(pj), "--detach",
                              "--pid-file", str(pidfile), unique_id)  # fmt: skip
        assert code == 0, err
        epid = int(pidfile.read_text())
        ps = json.loads(pyrt_runc("ps", "--format", "json", unique_id).stdout)  # type: ignore[attr-defined]
        assert epid in ps and len(ps) == 2
        res = pyrt_runc("exec", "-u", "65534:65534", unique_id, "/bin/id", "-u")
        assert res.stdout.strip() == "65534", res.stderr  # type: ignore[attr-defined]
    finally:
        assert pyrt_runc("delete", "--force", unique_id).returncode == 0  # type: ignore[attr-defined]
    from pyrt.runtime.state import process_alive

    assert not process_alive(epid, None)  # the exec'd process went with the container


def test_cli_bad_input(
    pyrt_runc: Callable[..., object],
    bundle_factory: BundleFactory,
    unique_id: str,
    runtime_root: Path,
) -> None:
    b = bundle_factory(["/bin/true"])
    (b / "config.json").write_text("{")
    res = pyrt_runc("create", "-b", str(b), unique_id)
    assert res.returncode == 1 and "config.json" in res.stderr  # type: ignore[attr-defined]
    assert os.listdir(runtime_root) == []
    res = pyrt_runc("create", "-b", str(b), "../evil")
    assert res.returncode == 1 and "invalid container id" in res.stderr  # type: ignore[attr-defined]
    res = pyrt_runc("--systemd-cgroup", "create", "-b", str(b), unique_id)
    assert res.returncode == 1  # type: ignore[attr-defined]
    assert "--systemd-cgroup is not supported" in res.stderr  # type: ignore[attr-defined]
    res = pyrt_runc("start", unique_id)
    assert res.returncode == 1 and "does not exist" in res.stderr  # type: ignore[attr-defined]
