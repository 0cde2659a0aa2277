"""pyrt.Engine with real containers from a locally built busybox image.

Every engine has a temporary root and run root and a cgroup parent of its own (named so
the session's leak scanner watches it); at teardown each container is removed and the
engine closed, and no shim of the test may survive.
"""

from __future__ import annotations

import os
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pyrt
import tests.bundle as bundle
from pyrt.containers.service import mounts_under
from pyrt.engine import Engine
from pyrt.errors import Conflict, InvalidArgument, NotFound
from pyrt.images.importer import import_rootfs

IMAGE = "busybox:latest"


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Path:
    path = tmp_path_factory.mktemp("engine-image") / "busybox.tar"
    with tarfile.open(path, "w") as t:
        t.add(busybox_rootfs, arcname=".")
    return path


def cgroup_parent() -> str:
    return f"/{bundle.CGROUP_PREFIX}-{bundle.session_token()}-{bundle.random_suffix()}"


def shims_of(root: Path) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"pyrt-shim" in cmd.split(b"\0")[0] and str(root).encode() in cmd:
            out.append(int(pid))
    return out


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def clean_engine(engine: Engine) -> None:
    for c in engine.containers.list(all=True):
        engine.containers.remove(c["Id"], force=True)


class Engines:
    """open() engines on a tmp root; teardown removes their containers and closes them."""

    def __init__(self, tmp_path: Path, busybox_tar: Path) -> None:
        self.root = tmp_path / "root"
        self.run_root = tmp_path / "run"
        self.cgroup_parent = cgroup_parent()
        self.tar = busybox_tar
        self.opened: list[Engine] = []

    def open(self, image: bool = True) -> Engine:
        e = Engine(self.root, self.run_root, cgroup_parent=self.cgroup_parent)
        self.opened.append(e)
        if image and not e.images.exists(IMAGE):
            import_rootfs(str(self.tar), store=e.content, service=e.images, reference=IMAGE)
        return e

    def teardown(self) -> None:
        live = [e for e in self.opened if not e._closed]
        if not live:
            live = [self.open(image=False)]
        for e in live:
            clean_engine(e)
            e.close()
        wait_for(lambda: not shims_of(self.root), 10, "the shims to exit")


@pytest.fixture
def engines(tmp_path: Path, busybox_tar: Path) -> Iterator[Engines]:
    es = Engines(tmp_path, busybox_tar)
    yield es
    es.teardown()


@pytest.fixture
def engine(engines: Engines) -> Engine:
    return engines.open()


def run(engine: Engine, cmd: list[str] | str, name: str | None = None, **kw: Any
        ) -> tuple[str, int]:
    config: dict[str, Any] = {"Image": IMAGE,
                              "Cmd": ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else cmd}
    host = kw.pop("host", {})
    config.update(kw)
    cid = engine.containers.create(config, host, name=name)
    engine.containers.start(cid)
    code = engine.containers.wait(cid, timeout=30)["StatusCode"]
    return cid, int(code)


def logs(engine: Engine, cid: str, **kw: Any) -> bytes:
    return b"".join(e.log for e in engine.containers.logs(cid, **kw))


def _wait_for_log(engine: Engine, cid: str, want: bytes, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while logs(engine, cid) != want:
        assert time.monotonic() < deadline, logs(engine, cid)
        time.sleep(0.02)


# ------------------------------------------------------------------ lifecycle


def test_run_exit_code_logs_and_inspect(engine: Engine) -> None:
    cid, code = run(engine, "echo out; echo err >&2; exit 3", name="first")
    assert code == 3 and len(cid) == 64
    assert logs(engine, cid, stderr=False) == b"out\n"
    assert logs(engine, cid, stdout=False) == b"err\n"
    ts = [e.text for e in engine.containers.logs(cid, timestamps=True)]
    assert all(t[:4].isdigit() and b"Z " in t for t in ts)
    info = engine.containers.inspect("first")
    assert info["Id"] == cid and info["Name"] == "/first"
    st = info["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 3 and not st["Running"]
    assert st["Pid"] == 0 and not st["OOMKilled"] and st["StartedAt"] <= st["FinishedAt"]
    assert info["Path"] == "/bin/sh" and info["Args"] == ["-c", "echo out; echo err >&2; exit 3"]
    assert info["Driver"] == "overlay2" and info["Platform"] == "linux"
    assert info["Image"].startswith("sha256:") and info["Config"]["Image"] == IMAGE
    assert Path(info["LogPath"]).is_file() and Path(info["HostnamePath"]).read_text()
    for key in ("ResolvConfPath", "HostsPath", "RestartCount", "MountLabel", "ProcessLabel",
                "AppArmorProfile", "ExecIDs", "HostConfig", "GraphDriver", "Mounts",
                "NetworkSettings", "Created"):
        assert key in info
    # lookups: id, short id, prefix, name with and without the slash
    for ref in (cid, cid[:12], cid[:5], "first", "/first"):
        assert engine.containers.inspect(ref)["Id"] == cid
    summary = engine.containers.list(all=True)[0]
    assert summary["Id"] == cid and summary["Names"] == ["/first"]
    assert summary["State"] == "exited" and summary["Status"].startswith("Exited (3)")
    assert summary["Command"].startswith("/bin/sh -c")
    assert engine.containers.list() == []  # not running
    engine.containers.remove(cid)
    with pytest.raises(NotFound, match="No such container: first"):
        engine.containers.inspect("first")
    assert not (engines_root(engine) / "containers" / cid).exists()


def engines_root(engine: Engine) -> Path:
    return engine.root


def test_generated_names_and_rename(engine: Engine) -> None:
    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["true"]})
    name = engine.containers.inspect(cid)["Name"].lstrip("/")
    assert "_" in name
    sub = engine.events.subscribe(filters={"event": ["rename"]})
    engine.containers.rename(cid, "renamed")
    assert engine.containers.inspect("renamed")["Id"] == cid
    ev = sub.get(timeout=1)
    assert ev is not None and ev["Actor"]["Attributes"]["oldName"] == f"/{name}"
    with pytest.raises(NotFound):
        engine.containers.inspect(name)


def test_tty_output(engine: Engine) -> None:
    cid, code = run(engine, "tty; echo to-err >&2", Tty=True)
    assert code == 0
    out = logs(engine, cid)
    assert b"/dev/pts/" in out and b"to-err" in out
    assert logs(engine, cid, stdout=False) == b""  # a tty has one stream


def test_attach_stdin_and_output(engine: Engine) -> None:
    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["/bin/sh", "-c", "cat; echo done"],
                                    "OpenStdin": True, "AttachStdin": True})
    engine.containers.start(cid)
    with engine.containers.attach(cid, stdin=True) as a:
        a.write(b"hello\n")
        a.close_stdin()
        out = a.read_all()
    assert out[1] == b"hello\ndone\n" and a.exit_code == 0
    assert engine.containers.wait(cid)["StatusCode"] == 0
    assert logs(engine, cid) == b"hello\ndone\n"


def test_tty_attach_and_resize(engine: Engine) -> None:
    cid = engine.containers.create({"Image": IMAGE, "Tty": True, "OpenStdin": True,
                                    "Cmd": ["/bin/sh", "-c", "read x; stty size; echo got $x"]})
    engine.containers.start(cid)
    with engine.containers.attach(cid, stdin=True) as a:
        a.resize(33, 99)
        time.sleep(0.1)
        a.write(b"abc\n")
        out = a.read_all()[1]
    assert b"33 99" in out and b"got abc" in out
    engine.containers.wait(cid)


def test_wait_conditions(engine: Engine) -> None:
    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["/bin/sh", "-c", "exit 7"]})
    assert engine.containers.wait(cid) == {"StatusCode": 0, "Error": None}  # created
    with pytest.raises(TimeoutError):
        engine.containers.wait(cid, "next-exit", timeout=0.2)
    engine.containers.start(cid)
    assert engine.containers.wait(cid, "not-running", timeout=10)["StatusCode"] == 7
    with pytest.raises(InvalidArgument, match="condition"):
        engine.containers.wait(cid, "whenever")
    import threading

    got: list[dict[str, Any]] = []
    t = threading.Thread(target=lambda: got.append(engine.containers.wait(cid, "removed",
                                                                           timeout=10)))
    t.start()
    time.sleep(0.1)
    engine.containers.remove(cid)
    t.join(5)
    assert got == [{"StatusCode": 7, "Error": None}]


def test_stop_escalates_to_sigkill(engine: Engine) -> None:
    cid = engine.containers.create({"Image": IMAGE,
                                    "Cmd": ["/bin/sh", "-c", "trap '' TERM; echo up; sleep 60"]})
    engine.containers.start(cid)
    wait_for(lambda: b"up" in logs(engine, cid), what="the container's output")
    t0 = time.monotonic()
    engine.containers.stop(cid, timeout=1)
    took = time.monotonic() - t0
    st = engine.containers.inspect(cid)["State"]
    assert st["ExitCode"] == 137 and st["Status"] == "exited"
    assert 0.9 < took < 5


def test_stop_with_sigterm_and_kill_signal(engine: Engine) -> None:
    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["sleep", "60"]})
    engine.containers.start(cid)
    t0 = time.monotonic()
    engine.containers.stop(cid)  # sleep as pid 1 ignores SIGTERM: default 10 s would apply
    assert engine.containers.inspect(cid)["State"]["ExitCode"] == 137
    assert time.monotonic() - t0 >= 9
    cid2 = engine.containers.create({"Image": IMAGE, "Cmd": ["/bin/sh", "-c",
                                     "trap 'exit 42' USR1; while :; do sleep 0.05; done"]})
    engine.containers.start(cid2)
    time.sleep(0.2)
    engine.containers.kill(cid2, "SIGUSR1")
    assert engine.containers.wait(cid2)["StatusCode"] == 42
    with pytest.raises(Conflict, match="is not running"):
        engine.containers.kill(cid2)


def test_pause_unpause_and_restart(engine: Engine) -> None:
    # "trapped" says the TERM trap is set: a stop before that would find PID 1 without a
    # handler (the signal ignored) and end in SIGKILL after the timeout
    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["/bin/sh", "-c",
                                    "trap 'exit 0' TERM; echo trapped; "
                                    "while :; do sleep 0.1; done"]})
    engine.containers.start(cid)
    engine.containers.pause(cid)
    st = engine.containers.inspect(cid)["State"]
    assert st["Status"] == "paused" and st["Paused"] and st["Running"]
    with pytest.raises(Conflict, match="already paused"):
        engine.containers.pause(cid)
    with pytest.raises(Conflict, match="cannot start a paused container"):
        engine.containers.start(cid)
    engine.containers.unpause(cid)
    assert engine.containers.inspect(cid)["State"]["Status"] == "running"
    pid1 = engine.containers.inspect(cid)["State"]["Pid"]
    _wait_for_log(engine, cid, b"trapped\n")
    engine.containers.restart(cid, timeout=5)
    st = engine.containers.inspect(cid)["State"]
    assert st["Running"] and st["Pid"] != pid1
    _wait_for_log(engine, cid, b"trapped\n" * 2)
    engine.containers.stop(cid, timeout=5)
    assert engine.containers.inspect(cid)["State"]["ExitCode"] == 0


def test_oom_kill_is_137_and_oomkilled(engine: Engine) -> None:
    cid, code = run(engine, "head -c 200m /dev/zero | tail -c 100m > /dev/null",
                    host={"Memory": 8 * 1024 * 1024, "MemorySwap": 8 * 1024 * 1024})
    st = engine.containers.inspect(cid)["State"]
    assert st["OOMKilled"] is True
    assert code == st["ExitCode"] == 137


def test_pids_limit(engine: Engine) -> None:
    cid, code = run(engine, "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 2 & done; wait; echo end",
                    host={"PidsLimit": 4})
    assert b"fork" in logs(engine, cid).lower() or code != 0


def test_restart_policy_on_failure(engine: Engine) -> None:
    cid = engine.containers.create(
        {"Image": IMAGE, "Cmd": ["/bin/sh", "-c", "echo run; exit 3"]},
        {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}})
    engine.containers.start(cid)

    def settled() -> bool:
        info = engine.containers.inspect(cid)
        return info["RestartCount"] == 2 and info["State"]["Status"] == "exited"

    wait_for(settled, 10, "two restarts")
    time.sleep(0.5)
    info = engine.containers.inspect(cid)
    assert info["RestartCount"] == 2 and info["State"]["ExitCode"] == 3
    assert logs(engine, cid) == b"run\n" * 3


def test_restart_policy_always_and_stop(engine: Engine) -> None:
    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["/bin/sh", "-c", "exit 0"]},
                                   {"RestartPolicy": {"Name": "always"}})
    engine.containers.start(cid)
    wait_for(lambda: engine.containers.inspect(cid)["RestartCount"] >= 3, 10, "restarts")
    engine.containers.stop(cid, timeout=1)
    time.sleep(1.0)
    info = engine.containers.inspect(cid)
    assert info["State"]["Status"] == "exited"
    count = info["RestartCount"]
    time.sleep(0.5)
    assert engine.containers.inspect(cid)["RestartCount"] == count  # no more restarts


def test_healthcheck_states(engine: Engine) -> None:
    ms = 1_000_000
    cid = engine.containers.create({
        "Image": IMAGE,
        "Cmd": ["/bin/sh", "-c", "sleep 1; touch /tmp/ok; sleep 60"],
        "Healthcheck": {"Test": ["CMD-SHELL", "test -f /tmp/ok && echo fine"],
                        "Interval": 100 * ms, "Timeout": 2000 * ms, "Retries": 2},
    })
    sub = engine.events.subscribe(filters={"event": ["health_status"], "container": [cid]})
    engine.containers.start(cid)
    assert engine.containers.inspect(cid)["State"]["Health"]["Status"] == "starting"
    wait_for(lambda: engine.containers.inspect(cid)["State"]["Health"]["Status"] == "unhealthy",
             5, "unhealthy")
    wait_for(lambda: engine.containers.inspect(cid)["State"]["Health"]["Status"] == "healthy",
             5, "healthy")
    health = engine.containers.inspect(cid)["State"]["Health"]
    assert health["FailingStreak"] == 0 and 1 <= len(health["Log"]) <= 5
    last = health["Log"][-1]
    assert last["ExitCode"] == 0 and last["Output"] == "fine\n" and last["Start"] <= last["End"]
    actions = [sub.get(timeout=1)["Action"] for _ in range(2)]  # type: ignore[index]
    assert actions == ["health_status: unhealthy", "health_status: healthy"]
    assert "(healthy)" in engine.containers.list()[0]["Status"]
    engine.containers.remove(cid, force=True)


def test_healthcheck_cmd_timeout(engine: Engine) -> None:
    ms = 1_000_000
    cid = engine.containers.create({
        "Image": IMAGE, "Cmd": ["sleep", "60"],
        "Healthcheck": {"Test": ["CMD", "sleep", "5"], "Interval": 100 * ms,
                        "Timeout": 200 * ms, "Retries": 1},
    })
    engine.containers.start(cid)
    wait_for(lambda: engine.containers.inspect(cid)["State"]["Health"]["Status"] == "unhealthy",
             5, "unhealthy")
    log = engine.containers.inspect(cid)["State"]["Health"]["Log"]
    assert log[0]["ExitCode"] == -1 and "timeout" in log[0]["Output"]
    engine.containers.remove(cid, force=True)


def test_container_directories_spread_over_block_groups(engine: Engine) -> None:
    """Each container's tree starts in an ext4 block group of its own (pyrt.dirhint): the
    directories that hold one tree per container carry the "top of hierarchies" flag."""
    import fcntl
    import sys

    from pyrt.dirhint import FS_IOC_GETFLAGS, FS_TOPDIR_FL

    for d in (engine.root / "containers", engine.run_root / "containers",
              engine.run_root / "runtime"):  # fmt: skip
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            buf = bytearray(8)
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)  # this machine's /tmp: ext4
        finally:
            os.close(fd)
        assert int.from_bytes(buf[:4], sys.byteorder) & FS_TOPDIR_FL, d


def test_auto_remove(engine: Engine) -> None:
    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["true"]}, {"AutoRemove": True})
    engine.containers.start(cid)
    assert engine.containers.wait(cid, "removed", timeout=10)["StatusCode"] == 0
    with pytest.raises(NotFound):
        engine.containers.inspect(cid)


def test_auto_remove_left_to_its_creator(engine: Engine) -> None:
    """pyrt.run(remove=True) makes an AutoRemove container it removes itself once it has
    read the logs: the engine leaves it at its exit, and its removal from exited goes at
    once (no "removing" state), leaving nothing."""
    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["echo", "kept"]},
                                   {"AutoRemove": True})
    engine.containers.removed_by_caller.add(cid)
    engine.containers.start(cid)
    assert engine.containers.wait(cid, timeout=10)["StatusCode"] == 0
    time.sleep(0.5)  # (the monitor would have removed it by now)
    assert engine.containers.inspect(cid)["State"]["Status"] == "exited"
    assert [e.log for e in engine.containers.logs(cid)] == [b"kept\n"]
    engine.containers.remove(cid, force=True, volumes=True)
    engine.containers.removed_by_caller.discard(cid)
    with pytest.raises(NotFound):
        engine.containers.inspect(cid)
    assert not (engine.root / "containers" / cid).exists()
    assert mounts_under(engine.root / "containers") == []


def test_pyrt_run_remove_is_auto_remove(engine: Engine) -> None:
    seen: list[bool] = []

    def look() -> None:
        for _ in range(100):
            for c in engine.containers.list(all=True):
                seen.append(engine.containers.inspect(c["Id"])["HostConfig"]["AutoRemove"])
                return
            time.sleep(0.05)

    t = threading.Thread(target=look)
    t.start()
    r = pyrt.run(IMAGE, "sleep 1; echo done", engine=engine, pull=False, remove=True)
    t.join()
    assert (r.exit_code, r.stdout) == (0, b"done\n") and seen == [True]
    assert engine.containers.list(all=True) == [] and not engine.containers.removed_by_caller


def test_command_not_found_and_not_executable(engine: Engine) -> None:
    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["/no/such/thing"]})
    with pytest.raises(InvalidArgument, match="no/such/thing"):
        engine.containers.start(cid)
    st = engine.containers.inspect(cid)["State"]
    assert st["ExitCode"] == 127 and st["Status"] == "created" and st["Error"]
    # a file without the x bit: refused at start, or (when the spawn's lookup lets it
    # through) the exec fails in the container: 126 either way
    cid2 = engine.containers.create({"Image": IMAGE, "Cmd": ["/etc/hostname"]})
    try:
        engine.containers.start(cid2)
    except InvalidArgument:
        pass
    else:
        engine.containers.wait(cid2, timeout=10)
    assert engine.containers.inspect(cid2)["State"]["ExitCode"] == 126


def test_errors_change_nothing(engine: Engine) -> None:
    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["sleep", "30"]}, name="taken")
    before = engine.containers.list(all=True)
    with pytest.raises(Conflict, match='"/taken" is already in use'):
        engine.containers.create({"Image": IMAGE, "Cmd": ["true"]}, name="taken")
    with pytest.raises(InvalidArgument, match="Invalid container name"):
        engine.containers.create({"Image": IMAGE}, name="-bad")
    with pytest.raises(NotFound, match="No such image: nope:latest"):
        engine.containers.create({"Image": "nope:latest"})
    with pytest.raises(InvalidArgument, match="Memory"):
        engine.containers.create({"Image": IMAGE}, {"Memory": 5})
    with pytest.raises(InvalidArgument, match="log driver"):
        engine.containers.create({"Image": IMAGE}, {"LogConfig": {"Type": "syslog"}})
    assert engine.containers.list(all=True) == before
    assert sorted(os.listdir(engine.root / "containers")) == [cid]
    engine.containers.start(cid)
    with pytest.raises(Conflict, match="You cannot remove a running container"):
        engine.containers.remove(cid)
    with pytest.raises(NotFound, match="No such container: zzz"):
        engine.containers.start("zzz")
    with pytest.raises(Conflict):
        engine.containers.rename(cid, "taken")
    engine.containers.remove(cid, force=True)
    assert engine.containers.list(all=True) == []


def test_ambiguous_prefix(engine: Engine) -> None:
    ids = [engine.containers.create({"Image": IMAGE, "Cmd": ["true"]}) for _ in range(20)]
    firsts: dict[str, int] = {}
    for i in ids:
        firsts[i[0]] = firsts.get(i[0], 0) + 1
    shared = next((c for c, n in firsts.items() if n > 1), None)
    assert shared is not None  # 20 ids over 16 first digits
    with pytest.raises(InvalidArgument, match="multiple containers"):
        engine.containers.inspect(shared)


def test_list_filters(engine: Engine) -> None:
    a, _ = run(engine, "exit 1", name="alpha", Labels={"tier": "front"})
    b = engine.containers.create({"Image": IMAGE, "Cmd": ["sleep", "30"]}, name="beta")
    engine.containers.start(b)
    c = engine.containers.create({"Image": IMAGE, "Cmd": ["true"]}, name="gamma")

    def ids(**f: Any) -> list[str]:
        return [x["Id"] for x in engine.containers.list(all=True, filters=f)]

    assert [x["Id"] for x in engine.containers.list()] == [b]
    assert ids() == [c, b, a]
    assert ids(status=["exited"]) == [a] and ids(status=["created"]) == [c]
    assert ids(name=["alp"]) == [a] and ids(label=["tier=front"]) == [a]
    assert ids(exited=["1"]) == [a] and ids(id=[b[:10]]) == [b]
    assert ids(ancestor=[IMAGE]) == [c, b, a]
    assert ids(before=["gamma"]) == [b, a] and ids(since=["alpha"]) == [c, b]
    assert len(engine.containers.list(limit=1)) == 1
    sized = engine.containers.list(all=True, size=True)[0]
    assert "SizeRw" in sized and sized["SizeRootFs"] >= sized["SizeRw"]
    with pytest.raises(InvalidArgument, match="invalid filter"):
        engine.containers.list(filters={"colour": ["red"]})
    engine.containers.remove(b, force=True)


def test_events_of_a_run(engine: Engine) -> None:
    sub = engine.events.subscribe(filters={"type": ["container"]})
    cid, _ = run(engine, "exit 2")
    engine.containers.remove(cid)
    actions = []
    while True:
        try:
            ev = sub.get(timeout=0.5)
        except TimeoutError:
            break
        assert ev is not None and ev["Actor"]["ID"] == cid
        actions.append(ev["Action"])
        if ev["Action"] == "die":
            assert ev["Actor"]["Attributes"]["exitCode"] == "2"
    assert actions == ["create", "start", "die", "destroy"]


def test_second_engine_on_same_root_conflicts(engines: Engines) -> None:
    engines.open(image=False)
    with pytest.raises(Conflict, match=str(engines.root)):
        Engine(engines.root, engines.run_root)


def test_pyrt_run_one_liner(engines: Engines) -> None:
    e = engines.open()
    r = pyrt.run(IMAGE, "echo hello; echo oops >&2; exit 5", engine=e, pull=False)
    assert (r.exit_code, r.stdout, r.stderr) == (5, b"hello\n", b"oops\n")
    assert e.containers.list(all=True) == []
    with pytest.raises(InvalidArgument, match="unknown option"):
        pyrt.run(IMAGE, "true", engine=e, Colour="red")


def test_image_in_use_is_not_deleted(engine: Engine) -> None:
    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["true"]})
    with pytest.raises(Conflict):
        engine.remove_image(IMAGE)
    engine.containers.remove(cid)


def test_create_start_wait_remove_is_fast(engine: Engine) -> None:
    run(engine, ["/bin/true"])  # warm up
    for c in engine.containers.list(all=True):
        engine.containers.remove(c["Id"])
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        cid = engine.containers.create({"Image": IMAGE, "Cmd": ["/bin/true"]})
        engine.containers.start(cid)
        assert engine.containers.wait(cid)["StatusCode"] == 0
        engine.containers.remove(cid)
        times.append(time.perf_counter() - t0)
    print(f"create+start+wait+remove: best {min(times) * 1000:.1f} ms")
    assert min(times) < 0.5


def _shim_argv(engine: Engine, cid: str) -> list[str]:
    pid = engine.containers._client(cid).shim_pid()
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_create_is_native_and_falls_back_to_python(engine: Engine) -> None:
    """A container is created by the shim running pyrt-runc's native create (the engine is
    not forked); a spec pyrt-runc leaves to Python (a cpuset) is created in process
    instead, with nothing of the native attempt left behind."""
    run(engine, ["/bin/true"])  # the first container with the profile compiles it: Python's
    native = engine.containers.create({"Image": IMAGE, "Cmd": ["sleep", "60"]})
    engine.containers.start(native)
    argv = _shim_argv(engine, native)
    assert "--runtime" in argv and "--exec-fifo" in argv and not any(
        a.startswith("--pid=") for a in argv)  # fmt: skip
    py = engine.containers.create({"Image": IMAGE, "Cmd": ["sleep", "60"]},
                                  {"CpusetCpus": "0"})  # fmt: skip
    engine.containers.start(py)
    assert any(a.startswith("--pid=") for a in _shim_argv(engine, py))
    assert sorted(os.listdir(engine.runtime.root)) == sorted([".seccomp-cache", native, py])
    for cid in (native, py):
        state = engine.containers.inspect(cid)["State"]
        assert state["Running"]
        # one run directory: the bundle and the shim's socket; no pid files (pyrt-runc
        # hands the shim the pid through a pipe; in process the shim is given it)
        p = engine.containers.paths(cid)
        assert sorted(os.listdir(p.run)) == ["config.json", "shim.sock"]
        assert engine.containers._client(cid).init_pid() == state["Pid"]
        engine.containers.kill(cid)
        assert engine.containers.wait(cid, timeout=30)["StatusCode"] == 137
        engine.containers.remove(cid)
    assert os.listdir(engine.runtime.root) == [".seccomp-cache"]


def test_auto_remove_layer_is_volatile_and_mounts_again(engine: Engine) -> None:
    """An --rm container's overlay is volatile (no sync of the file system at its unmount);
    one created and then unmounted, as a reboot leaves it, starts again: overlayfs's
    volatile marker is cleared first."""
    import ctypes

    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["true"]}, {"AutoRemove": True})
    p = engine.containers.paths(cid)
    opts = [line.split(" - ")[1] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if f" {p.merged} " in line]  # fmt: skip
    flags = opts[0].split()[2].split(",") if len(opts) == 1 else []
    assert "volatile" in flags or "fsync=volatile" in flags, opts  # the newer kernels' name
    assert (p.fs / "work" / "work" / "incompat" / "volatile").is_dir()
    assert ctypes.CDLL(None, use_errno=True).umount2(str(p.merged).encode(), 2) == 0
    engine.containers.start(cid)
    assert engine.containers.wait(cid, condition="removed", timeout=30)["StatusCode"] == 0
