"""An engine that goes away (closed, or SIGKILLed) and a new one on the same root: running
containers are adopted, exits while it was away are recorded, half-made ones cleaned up,
"always" containers brought back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pyrt
from pyrt.containers.service import mounts_under
from tests.integration.test_engine import (  # noqa: F401 - busybox_tar is a fixture
    IMAGE,
    Engines,
    busybox_tar,
    logs,
    wait_for,
)


@pytest.fixture
def envs(tmp_path: Path, busybox_tar: Path) -> Iterator[Engines]:  # noqa: F811
    es = Engines(tmp_path, busybox_tar)
    yield es
    es.teardown()


def _ticker(envs: Engines, **host: object) -> str:
    e = envs.open()
    cid = e.containers.create({"Image": IMAGE, "Cmd": ["/bin/sh", "-c",
                               "trap 'exit 9' TERM; echo started; "
                               "while :; do echo tick; sleep 0.1; done"]}, host)
    e.containers.start(cid)
    wait_for(lambda: b"started" in logs(e, cid), what="output")
    e.close()
    return cid


def test_close_and_reopen_adopts_running_container(envs: Engines) -> None:
    cid = _ticker(envs)
    e = envs.open()
    assert e.reconcile_report["adopted"] == [cid]
    assert [c["Id"] for c in e.containers.list()] == [cid]
    with e.containers.attach(cid) as a:
        stream, data = next(iter(a))
        assert stream == 1 and b"tick" in data
    e.containers.stop(cid, timeout=5)
    st = e.containers.inspect(cid)["State"]
    assert st["ExitCode"] == 9 and st["Status"] == "exited"


def test_engine_sigkill_then_new_engine(envs: Engines) -> None:
    e = envs.open()  # imports the image
    e.close()
    tree = Path(pyrt.__file__).resolve().parent.parent
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(tree)!r})
        from pyrt.engine import Engine
        e = Engine({str(envs.root)!r}, {str(envs.run_root)!r},
                   cgroup_parent={envs.cgroup_parent!r})
        cid = e.containers.create({{"Image": {IMAGE!r}, "Cmd": ["/bin/sh", "-c",
            "trap 'exit 9' TERM; echo started; while :; do echo tick; sleep 0.1; done"]}})
        e.containers.start(cid)
        print(cid, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        cid = proc.stdout.readline().strip()
        assert len(cid) == 64, cid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    e2 = envs.open()
    listed = e2.containers.list()
    assert [c["Id"] for c in listed] == [cid] and listed[0]["State"] == "running"
    wait_for(lambda: logs(e2, cid).count(b"tick") >= 2, what="ticks")
    assert logs(e2, cid).startswith(b"started\ntick\n")
    with e2.containers.attach(cid) as a:
        stream, data = next(iter(a))
        assert b"tick" in data
    e2.containers.stop(cid, timeout=5)
    st = e2.containers.inspect(cid)["State"]
    assert st["ExitCode"] == 9 and not st["Running"]
    # the logs stay readable once it has exited, and after one more restart
    e2.close()
    e3 = envs.open()
    assert logs(e3, cid).startswith(b"started\n")
    assert e3.containers.inspect(cid)["State"]["ExitCode"] == 9


def _wait_exit_recorded(envs: Engines, cid: str) -> None:
    """The shim has written the exit record, closed its socket and gone."""
    shim_dir = envs.run_root / "containers" / cid
    wait_for(lambda: (shim_dir / "exit.json").exists() and not (shim_dir / "shim.sock").exists(),
             10, "the exit record")
    wait_for(lambda: not _shim_alive(shim_dir), 10, "the shim to exit")


def test_exit_while_engine_away_is_recorded(envs: Engines) -> None:
    e = envs.open()
    cid = e.containers.create({"Image": IMAGE, "Cmd": ["/bin/sh", "-c", "sleep 0.5; exit 4"]})
    e.containers.start(cid)
    e.close()
    _wait_exit_recorded(envs, cid)
    e2 = envs.open()
    assert e2.reconcile_report["exited"] == [cid]
    st = e2.containers.inspect(cid)["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 4
    assert not (envs.run_root / "runtime" / cid).exists()  # runtime state gone


def test_auto_remove_container_exited_while_engine_away_is_removed(envs: Engines) -> None:
    # remove() does not sync an --rm container's removal: reconcile is what removes it after
    # a power loss, whichever row survived (here: it exited while no engine watched it)
    e = envs.open()
    cid = e.containers.create({"Image": IMAGE, "Cmd": ["/bin/sh", "-c", "sleep 0.5; exit 3"]},
                              {"AutoRemove": True})
    e.containers.start(cid)
    e.close()
    _wait_exit_recorded(envs, cid)
    e2 = envs.open()
    assert e2.reconcile_report["exited"] == [cid] and cid in e2.reconcile_report["removed"]
    assert e2.containers.list(all=True) == []
    assert not (e2.root / "containers" / cid).exists()
    assert mounts_under(e2.root / "containers") == []


def _shim_alive(shim_dir: Path) -> bool:
    """A pyrt-shim process (not a zombie) lives in shim_dir (its working directory)."""
    for entry in os.listdir("/proc"):
        try:
            if (entry.isdigit() and os.readlink(f"/proc/{entry}/cwd") == str(shim_dir)
                    and Path(f"/proc/{entry}/comm").read_text().strip() == "pyrt-shim"
                    and Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0]
                    != "Z"):
                return True
        except OSError:
            continue
    return False


def test_always_policy_restarts_at_engine_start(envs: Engines) -> None:
    e = envs.open()
    cid = e.containers.create({"Image": IMAGE, "Cmd": ["sleep", "60"]},
                              {"RestartPolicy": {"Name": "always"}})
    e.containers.start(cid)
    e.containers.stop(cid, timeout=0)  # stopped by a user: an engine start brings it back
    other = e.containers.create({"Image": IMAGE, "Cmd": ["sleep", "60"]},
                                {"RestartPolicy": {"Name": "unless-stopped"}})
    e.containers.start(other)
    e.containers.stop(other, timeout=0)
    e.close()
    e2 = envs.open()
    assert e2.reconcile_report["restarted"] == [cid]
    assert e2.containers.inspect(cid)["State"]["Running"]
    assert not e2.containers.inspect(other)["State"]["Running"]


def test_half_made_containers_are_cleaned_up(envs: Engines) -> None:
    e = envs.open()
    cid = e.containers.create({"Image": IMAGE, "Cmd": ["true"]}, name="half")
    merged = e.root / "containers" / cid / "merged"
    assert os.path.ismount(merged)
    e.db.execute("UPDATE containers SET state = 'creating' WHERE id = ?", (cid,))
    # and a directory nobody records, with a mount of its own
    stray = e.root / "containers" / ("f" * 64)
    (stray / "m").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(stray / "m")], check=True)
    e.close()
    e2 = envs.open()
    assert cid in e2.reconcile_report["removed"]
    assert not (e2.root / "containers" / cid).exists() and not stray.exists()
    assert mounts_under(e2.root / "containers") == []
    assert e2.containers.list(all=True) == []
    # the name is free again
    e2.containers.remove(e2.containers.create({"Image": IMAGE, "Cmd": ["true"]}, name="half"))


def test_database_records_are_json(envs: Engines) -> None:
    e = envs.open()
    cid = e.containers.create({"Image": IMAGE, "Cmd": ["true"], "Labels": {"a": "b"}},
                              {"Memory": 64 * 1024 * 1024})
    row = e.db.query_one("SELECT * FROM containers WHERE id = ?", (cid,))
    assert row is not None and row["state"] == "created"
    assert json.loads(row["config_json"])["Labels"] == {"a": "b"}
    assert json.loads(row["host_config_json"])["Memory"] == 64 * 1024 * 1024
    assert json.loads(row["spec_json"])["linux"]["cgroupsPath"].endswith(cid)
    assert time.time() > 0
