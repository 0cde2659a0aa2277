"""The container operations through pyrt.Engine's ContainerService: exec (create, start,
inspect, resize, exec_die events, ExecIDs), cp both ways and path stat, export, diff,
commit (and a container of the new image), top, stats, and containers.run.

Real containers from a locally imported busybox image, on an engine with temporary roots
and a cgroup parent of its own (tests/integration/test_engine.py's Engines); teardown
removes every container, closes the engine and checks no shim survives.
"""

from __future__ import annotations

import io
import os
import select
import signal
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyrt.engine import Engine
from pyrt.errors import Conflict, FailedPrecondition, NotFound
from pyrt.events import Subscription
from tests.integration.test_engine import (  # noqa: F401 - busybox_tar is a fixture
    IMAGE,
    Engines,
    busybox_tar,
    logs,
)

ZERO_TIME = "0001-01-01T00:00:00Z"


@pytest.fixture
def engines(tmp_path: Path, busybox_tar: Path) -> Iterator[Engines]:  # noqa: F811
    es = Engines(tmp_path, busybox_tar)
    yield es
    es.teardown()


@pytest.fixture
def engine(engines: Engines) -> Engine:
    return engines.open()


def sleeper(engine: Engine, name: str | None = None, **config: Any) -> str:
    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["sleep", "1000"], **config},
                                   name=name)
    engine.containers.start(cid)
    return cid


def read_all(fd: int, timeout: float = 30.0) -> bytes:
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                b = os.read(fd, 65536)
            except OSError:  # EIO: a pty whose other side closed
                break
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks)


def run_exec(engine: Engine, cid: str, cmd: list[str], **config: Any) -> tuple[str, int, bytes]:
    """exec_create + exec_start with stdout attached; (exec id, exit code, stdout)."""
    eid = engine.containers.exec_create(cid, {"Cmd": cmd, "AttachStdout": True, **config})
    run = engine.containers.exec_start(eid)
    try:
        out = read_all(run.stdout) if run.stdout is not None else b""
        code = run.wait(timeout=30)
    finally:
        run.close()
    return eid, code, out


def sh(engine: Engine, cid: str, script: str) -> bytes:
    _, code, out = run_exec(engine, cid, ["sh", "-c", script])
    assert code == 0, out
    return out


def drain(sub: Subscription, until_action: str | None = None, timeout: float = 5.0
          ) -> list[dict[str, Any]]:
    """Events from sub until one with `until_action` (or none for 0.3 s)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ev = sub.get(timeout=0.3)
        except TimeoutError:
            if until_action is None:
                break
            continue
        if ev is None:
            break
        out.append(ev)
        if until_action is not None and ev["Action"] == until_action:
            break
    return out


def tar_of(files: dict[str, bytes | None]) -> io.BytesIO:
    """A tar of name -> data (None: a directory)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tf.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def members(chunks: Iterator[bytes]) -> dict[str, bytes | None]:
    data = b"".join(chunks)
    out: dict[str, bytes | None] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isreg() else None
            out[m.name.rstrip("/")] = f.read() if f is not None else None
    return out


# ------------------------------------------------------------------ exec


def test_exec_exit_codes_inspect_and_events(engine: Engine) -> None:
    svc = engine.containers
    cid = sleeper(engine, name="execs")
    sub = engine.events.subscribe(filters={"container": [cid]})

    eid = svc.exec_create("execs", {"Cmd": ["sh", "-c", "echo hi; echo err >&2"],
                                    "AttachStdout": True, "AttachStderr": True})
    assert len(eid) == 64
    assert svc.inspect(cid)["ExecIDs"] == [eid]  # created, not ended: listed
    doc = svc.exec_inspect(eid)
    assert doc["Running"] is False and doc["ExitCode"] is None and doc["Pid"] == 0
    run = svc.exec_start(eid)
    out, err = read_all(run.stdout or -1), read_all(run.stderr or -1)
    assert (run.wait(timeout=30), out, err) == (0, b"hi\n", b"err\n")
    run.close()
    assert svc.exec_wait(eid, timeout=10) == 0
    doc = svc.exec_inspect(eid)
    assert doc["ExitCode"] == 0 and doc["Running"] is False and doc["CanRemove"] is True
    assert doc["ContainerID"] == cid and doc["Pid"] == run.pid > 0
    assert doc["ProcessConfig"] == {"tty": False, "entrypoint": "sh",
                                    "arguments": ["-c", "echo hi; echo err >&2"],
                                    "privileged": False, "user": ""}
    assert doc["OpenStdout"] is True and doc["OpenStdin"] is False
    with pytest.raises(Conflict, match="already been started"):
        svc.exec_start(eid)

    e3, code, _ = run_exec(engine, cid, ["sh", "-c", "exit 3"])
    assert code == 3 and svc.exec_wait(e3, timeout=10) == 3
    assert svc.exec_inspect(e3)["ExitCode"] == 3
    e127, code, _ = run_exec(engine, cid, ["no-such-command"])
    assert code == 127 and svc.exec_wait(e127, timeout=10) == 127
    assert svc.exec_inspect(e127)["ExitCode"] == 127
    # ended execs leave the container's ExecIDs (as docker's), their rows keep the codes
    assert svc.inspect(cid)["ExecIDs"] is None
    rows = {r["id"]: (r["exit_code"], r["running"]) for r in engine.db.query(
        "SELECT id, exit_code, running FROM exec_instances WHERE container_id = ?", (cid,))}
    assert rows == {eid: (0, 0), e3: (3, 0), e127: (127, 0)}

    evs = drain(sub)
    by_exec: dict[str, list[tuple[str, str | None]]] = {}
    for ev in evs:
        attrs = ev["Actor"]["Attributes"]
        assert ev["Actor"]["ID"] == cid and attrs["name"] == "execs"
        by_exec.setdefault(attrs["execID"], []).append((ev["Action"], attrs.get("exitCode")))
    assert by_exec[eid] == [("exec_create: sh -c echo hi; echo err >&2", None),
                            ("exec_start: sh -c echo hi; echo err >&2", None),
                            ("exec_die", "0")]
    assert by_exec[e3][-1] == ("exec_die", "3")
    assert by_exec[e127] == [("exec_create: no-such-command", None),
                             ("exec_start: no-such-command", None), ("exec_die", "127")]
    # docker's filter: event=exec_die (and exec_create matches "exec_create: ...")
    hist = engine.events.subscribe(filters={"event": ["exec_create"], "container": [cid]},
                                   since=0)
    assert len(drain(hist)) == 3

    with pytest.raises(NotFound, match="No such exec instance"):
        svc.exec_inspect("f" * 64)
    with pytest.raises(NotFound, match="No such exec instance"):
        svc.exec_start("f" * 64)


def test_detached_exec_running_then_killed(engine: Engine) -> None:
    svc = engine.containers
    cid = sleeper(engine)
    sub = engine.events.subscribe(filters={"event": ["exec_die"]})
    eid = svc.exec_create(cid, {"Cmd": ["sleep", "100"], "AttachStdout": True})
    run = svc.exec_start(eid, detach=True)
    assert run.stdout is None and run.stderr is None and run.pid > 0
    doc = svc.exec_inspect(eid)
    assert doc["Running"] is True and doc["Pid"] == run.pid and doc["ExitCode"] is None
    assert svc.inspect(cid)["ExecIDs"] == [eid]
    row = engine.db.query_one("SELECT running, pid FROM exec_instances WHERE id = ?", (eid,))
    assert row is not None and (row["running"], row["pid"]) == (1, run.pid)
    with pytest.raises(TimeoutError):
        svc.exec_wait(eid, timeout=0.2)
    os.kill(run.pid, signal.SIGKILL)
    ev = sub.get(timeout=10)
    assert ev is not None and ev["Actor"]["Attributes"]["execID"] == eid
    assert ev["Actor"]["Attributes"]["exitCode"] == str(128 + signal.SIGKILL)
    assert svc.exec_wait(eid, timeout=10) == 137
    assert svc.exec_inspect(eid)["Running"] is False
    with pytest.raises(Conflict, match="not running"):
        svc.exec_resize(eid, 10, 10)


def test_tty_exec_resize(engine: Engine) -> None:
    svc = engine.containers
    cid = sleeper(engine)
    eid = svc.exec_create(cid, {"Cmd": ["sh", "-c", "read x; stty size"], "Tty": True,
                                "AttachStdin": True, "AttachStdout": True})
    run = svc.exec_start(eid)
    assert run.pty is not None
    svc.exec_resize(eid, 33, 111)
    os.write(run.pty, b"go\n")
    out = read_all(run.pty)
    run.close()
    assert b"33 111" in out
    assert svc.exec_wait(eid, timeout=10) == 0
    assert svc.exec_inspect(eid)["ProcessConfig"]["tty"] is True
    # an exec without a tty cannot be resized
    e2 = svc.exec_create(cid, {"Cmd": ["sleep", "100"]})
    r2 = svc.exec_start(e2, detach=True)
    with pytest.raises(FailedPrecondition, match="no tty"):
        svc.exec_resize(e2, 10, 10)
    os.kill(r2.pid, signal.SIGKILL)
    assert svc.exec_wait(e2, timeout=10) == 137


def test_exec_in_stopped_created_or_paused_container_conflicts(engine: Engine) -> None:
    svc = engine.containers
    cid = svc.create({"Image": IMAGE, "Cmd": ["sleep", "1000"]})
    with pytest.raises(Conflict, match="is not running"):
        svc.exec_create(cid, {"Cmd": ["true"]})
    svc.start(cid)
    svc.pause(cid)
    with pytest.raises(Conflict, match="paused"):
        svc.exec_create(cid, {"Cmd": ["true"]})
    svc.unpause(cid)
    eid = svc.exec_create(cid, {"Cmd": ["true"]})
    svc.stop(cid, timeout=0)
    with pytest.raises(Conflict, match="is not running"):
        svc.exec_start(eid)
    with pytest.raises(Conflict, match="is not running"):
        svc.exec_create(cid, {"Cmd": ["true"]})
    assert engine.db.query("SELECT id FROM exec_instances WHERE container_id = ?",
                           (cid,))[0]["id"] == eid  # fmt: skip
    svc.remove(cid)
    # the container's execs went with it
    assert engine.db.query("SELECT id FROM exec_instances WHERE container_id = ?", (cid,)) == []
    with pytest.raises(NotFound):
        svc.exec_inspect(eid)


def test_exec_inspect_from_a_new_engine(engines: Engines) -> None:
    e = engines.open()
    cid = sleeper(e)
    eid, code, out = run_exec(e, cid, ["sh", "-c", "echo x; exit 4"])
    assert (code, out) == (4, b"x\n")
    assert e.containers.exec_wait(eid, timeout=10) == 4
    e.close()
    e2 = engines.open()
    doc = e2.containers.exec_inspect(eid)
    assert doc["ExitCode"] == 4 and doc["Running"] is False and doc["ContainerID"] == cid
    assert doc["ProcessConfig"]["arguments"] == ["-c", "echo x; exit 4"]


# ------------------------------------------------------------------ cp / export / diff


def test_cp_in_and_out_and_stat(engine: Engine) -> None:
    svc = engine.containers
    cid = sleeper(engine)
    sub = engine.events.subscribe(filters={"container": [cid]})
    svc.put_archive(cid, "/tmp", tar_of({"box": None, "box/note.txt": b"from the host\n"}))
    assert sh(engine, cid, "cat /tmp/box/note.txt") == b"from the host\n"
    st = svc.stat_path(cid, "/tmp/box/note.txt")
    assert st["name"] == "note.txt" and st["size"] == 14 and st["mode"] == 0o644
    assert st["mtime"].startswith("2023-11-14T")
    sh(engine, cid, "echo made inside > /tmp/box/inside.txt")
    stat_doc, chunks = svc.get_archive(cid, "/tmp/box")
    assert stat_doc["name"] == "box" and stat_doc["mode"] & (1 << 31)  # a directory
    got = members(chunks)
    assert got["box/note.txt"] == b"from the host\n"
    assert got["box/inside.txt"] == b"made inside\n" and got["box"] is None
    with pytest.raises(NotFound):
        svc.stat_path(cid, "/no/such/path")
    with pytest.raises(NotFound):
        svc.get_archive(cid, "/no/such/path")
    actions = [e["Action"] for e in drain(sub) if not e["Action"].startswith("exec_")]
    assert actions == ["extract-to-dir", "archive-path"]
    # a stopped container's filesystem is still there to copy from
    svc.stop(cid, timeout=0)
    assert members(svc.get_archive(cid, "/tmp/box/note.txt")[1]) == {
        "note.txt": b"from the host\n"}


def test_export_and_changes(engine: Engine) -> None:
    svc = engine.containers
    cid = sleeper(engine)
    sub = engine.events.subscribe(filters={"container": [cid], "event": ["export"]})
    assert svc.changes(cid) == []
    sh(engine, cid, "mkdir -p /data && echo payload > /data/new.txt; rm /etc/passwd; "
                    "echo extra >> /etc/group")
    assert svc.changes(cid) == [
        {"Path": "/data", "Kind": 1}, {"Path": "/data/new.txt", "Kind": 1},
        {"Path": "/etc", "Kind": 0}, {"Path": "/etc/group", "Kind": 0},
        {"Path": "/etc/passwd", "Kind": 2},
    ]
    files = members(svc.export(cid))
    assert files["data/new.txt"] == b"payload\n"
    assert "bin/busybox" in files and "bin/sh" in files and "etc/passwd" not in files
    assert (files["etc/group"] or b"").endswith(b"extra\n")
    ev = sub.get(timeout=5)
    assert ev is not None and ev["Action"] == "export"


def test_mount_points_come_from_the_images_targets_layer(engine: Engine) -> None:
    """The busybox image has no /etc/hosts nor /etc/resolv.conf: their mount points are in
    the image's shared targets layer, not made in each container's writable layer."""
    svc = engine.containers
    cid = sleeper(engine, Hostname="tgt")
    p = svc.paths(cid)
    assert os.listdir(p.upper) == []
    assert sh(engine, cid, "cat /etc/hostname; grep -c tgt /etc/hosts") == b"tgt\n1\n"
    lower = svc.inspect(cid)["GraphDriver"]["Data"]["LowerDir"].split(":")
    assert lower[0].endswith("/targets") and os.path.isfile(lower[0] + "/etc/hosts")
    sh(engine, cid, "echo x > /etc/added")
    assert svc.changes(cid) == [{"Path": "/etc", "Kind": 0}, {"Path": "/etc/added", "Kind": 1}]
    other = sleeper(engine)  # the layer is shared, not made again
    assert svc.inspect(other)["GraphDriver"]["Data"]["LowerDir"].split(":")[0] == lower[0]
    assert os.listdir(svc.paths(other).upper) == []


# ------------------------------------------------------------------ commit / top / stats


def test_commit_then_run_the_new_image(engine: Engine) -> None:
    svc = engine.containers
    cid = sleeper(engine, Env=["FROM_CONTAINER=1"])
    sub = engine.events.subscribe(filters={"container": [cid], "event": ["commit"]})
    sh(engine, cid, "mkdir /data && echo committed > /data/hello.txt")
    image_id = svc.commit(cid, repo_tag="ops-committed:1", author="tester",
                          message="with hello", changes=["ENV COMMITTED=yes"])
    assert image_id.startswith("sha256:")
    assert svc.inspect(cid)["State"]["Status"] == "running"  # paused and resumed
    ev = sub.get(timeout=5)
    assert ev is not None
    attrs = ev["Actor"]["Attributes"]
    assert (attrs["imageID"], attrs["imageRef"], attrs["comment"]) == (
        image_id, "ops-committed:1", "with hello")
    img = engine.images.get("ops-committed:1")
    assert img.id == image_id
    new = svc.create({"Image": "ops-committed:1", "Cmd": [
        "sh", "-c", "cat /data/hello.txt; echo $COMMITTED $FROM_CONTAINER"]})
    svc.start(new)
    assert svc.wait(new, timeout=30)["StatusCode"] == 0
    assert logs(engine, new) == b"committed\nyes 1\n"
    assert svc.inspect(new)["Image"] == image_id
    hist = engine.images.history("ops-committed:1")
    assert hist[0]["Comment"] == "with hello" and hist[0]["Id"] == image_id


def test_top(engine: Engine) -> None:
    svc = engine.containers
    cid = sleeper(engine)
    sub = engine.events.subscribe(filters={"container": [cid], "event": ["top"]})
    doc = svc.top(cid)
    assert "PID" in doc["Titles"] and "CMD" in doc["Titles"]
    assert [p[-1] for p in doc["Processes"]] == ["sleep 1000"]
    pid = int(doc["Processes"][0][doc["Titles"].index("PID")])
    assert pid == svc.inspect(cid)["State"]["Pid"]
    assert svc.top(cid, "-o pid,comm")["Processes"] == [[str(pid), "sleep"]]
    ev = sub.get(timeout=5)
    assert ev is not None and ev["Action"] == "top"
    svc.stop(cid, timeout=0)
    with pytest.raises(Conflict, match="not running"):
        svc.top(cid)


def test_stats_one_shot_and_stream(engine: Engine) -> None:
    svc = engine.containers
    cid = sleeper(engine, name="statsy")
    s = svc.stats(cid)
    assert s["id"] == cid and s["name"] == "/statsy" and s["read"] != ZERO_TIME
    assert s["memory_stats"]["usage"] > 0 and s["pids_stats"]["current"] >= 1
    assert s["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    stream = svc.stats(cid, stream=True, interval=0.2)
    s1 = next(stream)
    sh(engine, cid, "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
    s2 = next(stream)
    stream.close()
    assert s2["preread"] == s1["read"] and s2["read"] > s1["read"]
    assert s2["precpu_stats"] == s1["cpu_stats"]
    assert s2["cpu_stats"]["system_cpu_usage"] >= s1["cpu_stats"]["system_cpu_usage"]
    svc.stop(cid, timeout=0)
    assert svc.stats(cid)["read"] == ZERO_TIME  # docker's empty sample
    assert list(svc.stats(cid, stream=True, interval=0.05))[0]["read"] == ZERO_TIME


def test_containers_run_convenience(engine: Engine) -> None:
    r = engine.containers.run(IMAGE, "echo out; echo err >&2; exit 4", pull=False,
                              Env=["X=1"])
    assert (r.exit_code, r.stdout, r.stderr) == (4, b"out\n", b"err\n")
    assert engine.containers.list(all=True) == []
    r = engine.containers.run(IMAGE, ["sh", "-c", "echo $X"], Env=["X=2"], remove=False,
                              name="kept")
    assert r.stdout == b"2\n" and engine.containers.inspect("kept")["State"]["ExitCode"] == 0
    with pytest.raises(Exception, match="'root' is the engine's own"):
        engine.containers.run(IMAGE, "true", root="/x")
