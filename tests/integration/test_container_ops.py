"""exec, cp, export, diff, commit, top and stats on real running containers
(tests/container_fixture.py: overlay rootfs of a busybox image, Docker-default spec,
pyrt.runtime.Runtime)."""

from __future__ import annotations

import io
import os
import select
import signal
import stat
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyrt import _core
from pyrt.containers import changes as changes_mod
from pyrt.containers import commit as commit_mod
from pyrt.containers import copy as cp
from pyrt.containers import stats as stats_mod
from pyrt.containers import top as top_mod
from pyrt.containers.exec import ExecConfig, RunningExec, create_exec, exec_run, start_exec
from pyrt.errors import Conflict, InvalidArgument, NotFound
from tests.container_fixture import APP_GID, APP_UID, ImageEnv, TestContainer

DOCKER_CAPEFF = 0x00000000A80425FB
Start = Callable[..., TestContainer]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ImageEnv]:
    e = ImageEnv.create(tmp_path / "pyrt")
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def base_image(env: ImageEnv) -> str:
    return env.import_busybox("ops-base:1")


@pytest.fixture
def start(env: ImageEnv, base_image: str, tmp_path: Path, runtime_root: Path
          ) -> Iterator[Start]:
    made: list[TestContainer] = []

    def run(body: dict[str, Any] | None = None, image: str | None = None,
            host: dict[str, Any] | None = None, **kw: Any) -> TestContainer:
        c = TestContainer.start(env, image or base_image, tmp_path / f"c{len(made)}",
                                runtime_root, body or {"Cmd": ["sleep", "1000"]}, host, **kw)
        made.append(c)
        return c

    yield run
    for c in reversed(made):
        c.stop()
        c.remove()


def _exec(c: TestContainer, cmd: list[str], **kw: Any) -> tuple[int, str, str, RunningExec]:
    inst, run = exec_run(c, ExecConfig(Cmd=cmd, AttachStdout=True, AttachStderr=True, **kw))
    try:
        out = _read_all(run.stdout) if run.stdout is not None else ""
        err = _read_all(run.stderr) if run.stderr is not None else ""
        code = run.wait(timeout=30)
    finally:
        run.close()
    assert inst.exit_code == code and not inst.running
    return code, out, err, run


def _read_all(fd: int, timeout: float = 30.0) -> str:
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
    return b"".join(chunks).decode(errors="replace")


def _sh(c: TestContainer, script: str, user: str = "") -> str:
    code, out, err, _ = _exec(c, ["sh", "-c", script], User=user)
    assert code == 0, (out, err)
    return out


def _tar(entries: list[tuple[str, bytes | None, dict[str, Any]]]) -> io.BytesIO:
    """A tar of (name, data or None for a dir, TarInfo attributes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data, attrs in entries:
            info = tarfile.TarInfo(name)
            for k, v in attrs.items():
                setattr(info, k, v)
            if data is None and info.type == tarfile.REGTYPE:
                info.type = tarfile.DIRTYPE
                info.mode = attrs.get("mode", 0o755)
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    return buf


def _members(chunks: Iterator[bytes]) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    data = b"".join(chunks)
    out: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isreg() else None
            out[m.name.rstrip("/")] = (m, f.read() if f is not None else b"")
    return out


# -- exec ------------------------------------------------------------------------------------


def test_exec_exit_codes_and_inspect(start: Start) -> None:
    c = start()
    code, out, _, run = _exec(c, ["sh", "-c", "echo hello"])
    assert (code, out) == (0, "hello\n")
    assert run.pid > 0 and run.instance.pid == run.pid
    assert _exec(c, ["sh", "-c", "exit 3"])[0] == 3
    code, _, _, run = _exec(c, ["no-such-command"])
    assert code == 127 and "executable file not found" in run.error
    code, _, _, run = _exec(c, ["/etc/passwd"])  # exists, not executable
    assert code == 126 and "ermission denied" in run.error
    doc = run.instance.inspect()
    assert doc["ContainerID"] == c.id and len(doc["ID"]) == 64 and doc["ExitCode"] == 126
    assert doc["Running"] is False and doc["CanRemove"] is True
    assert doc["ProcessConfig"] == {"tty": False, "entrypoint": "/etc/passwd", "arguments": [],
                                    "privileged": False, "user": ""}
    # killed by a signal: the shell's 128+n
    inst, run = exec_run(c, ExecConfig(Cmd=["sleep", "100"]))
    assert inst.running and inst.inspect()["Running"] is True
    os.kill(run.pid, signal.SIGKILL)
    assert run.wait(timeout=10) == 128 + signal.SIGKILL


def test_exec_env_user_workdir(start: Start) -> None:
    c = start({"Cmd": ["sleep", "1000"], "Env": ["CTR=1", "SHARED=container"]})
    out = _sh(c, "env | sort; pwd; id")
    assert "CTR=1\n" in out and "IMG=1\n" in out and "SHARED=container\n" in out
    assert "uid=0(root) gid=0(root)" in out and "\n/\n" in out
    code, out, err, _ = _exec(
        c, ["sh", "-c", "env | sort; pwd; id -u; id -g; id -G"],
        Env=["SHARED=exec", "NEW=x"], User="app", WorkingDir="/home/app",
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert "SHARED=exec" in lines and "NEW=x" in lines and "CTR=1" in lines
    assert lines[-4:-1] == ["/home/app", str(APP_UID), str(APP_GID)]
    assert set(lines[-1].split()) == {str(APP_GID), "50"}
    # numeric user:group needs no passwd entry
    code, out, _, _ = _exec(c, ["sh", "-c", "id -u; id -g"], User="4321:99")
    assert (code, out.split()) == (0, ["4321", "99"])
    with pytest.raises(InvalidArgument, match="unable to find user nosuch"):
        exec_run(c, ExecConfig(Cmd=["true"], User="nosuch"))


def test_exec_capabilities_and_privileged(start: Start) -> None:
    c = start()
    caps = _sh(c, "grep CapEff /proc/self/status").split()[1]
    assert int(caps, 16) == DOCKER_CAPEFF
    code, out, _, _ = _exec(c, ["sh", "-c", "grep CapEff /proc/self/status"], Privileged=True)
    assert code == 0
    priv = int(out.split()[1], 16)
    assert priv & DOCKER_CAPEFF == DOCKER_CAPEFF and priv & (1 << 21)  # CAP_SYS_ADMIN


def test_exec_stdin(start: Start) -> None:
    c = start()
    inst, run = exec_run(c, ExecConfig(Cmd=["sh", "-c", "read line; echo got:$line"],
                                       AttachStdin=True, AttachStdout=True))
    try:
        assert run.stdin is not None and run.stdout is not None
        os.write(run.stdin, b"ping\n")
        os.close(run.stdin)
        run.stdin = None
        assert _read_all(run.stdout) == "got:ping\n"
        assert run.wait(timeout=10) == 0
    finally:
        run.close()


def test_exec_tty(start: Start) -> None:
    c = start()
    # the runtime does not apply process.consoleSize before the exec: ConsoleSize is set
    # once the pty master arrives, so the command waits for a line before asking
    inst, run = exec_run(c, ExecConfig(Cmd=["sh", "-c", "tty; echo $TERM; read x; stty size"],
                                       Tty=True, ConsoleSize=(40, 100)))
    try:
        assert run.pty is not None and run.stdout is None
        os.write(run.pty, b"go\n")
        out = _read_all(run.pty)
        assert run.wait(timeout=10) == 0
    finally:
        run.close()
    lines = [x.strip() for x in out.splitlines() if x.strip() != "go"]  # "go": the echo
    assert lines[0].startswith("/dev/pts/"), out
    assert lines[1] == "xterm" and lines[-1] == "40 100", out
    assert inst.inspect()["ProcessConfig"]["tty"] is True
    # resize while it runs
    inst, run = exec_run(c, ExecConfig(Cmd=["sh", "-c", "read x; stty size"], Tty=True))
    try:
        assert run.pty is not None
        run.resize(25, 132)
        os.write(run.pty, b"go\n")
        out = _read_all(run.pty)
        assert run.wait(timeout=10) == 0
    finally:
        run.close()
    assert "25 132" in out


def test_exec_refused_when_not_running(start: Start) -> None:
    c = start()
    early = create_exec(c, ExecConfig(Cmd=["true"]))
    c.runtime.pause(c.runtime_id)
    with pytest.raises(Conflict, match="is paused"):
        create_exec(c, ExecConfig(Cmd=["true"]))
    c.runtime.resume(c.runtime_id)
    c.stop()
    assert c.status() == "exited"
    with pytest.raises(Conflict, match=f"container {c.id} is not running") as e:
        create_exec(c, ExecConfig(Cmd=["true"]))
    assert e.value.http_status == 409
    with pytest.raises(Conflict, match="is not running"):
        start_exec(c, early)


# -- cp --------------------------------------------------------------------------------------


def test_get_archive_and_stat(start: Start) -> None:
    c = start()
    _sh(c, "mkdir -p /srv/d/sub && echo one > /srv/d/a && echo two > /srv/d/sub/b && "
           "ln -s a /srv/d/link && ln /srv/d/a /srv/d/hard && chmod 640 /srv/d/a && "
           "chown 1234:2345 /srv/d/sub/b")
    st = cp.stat_path(c, "/srv/d/a")
    assert st["name"] == "a" and st["size"] == 4 and st["mode"] == 0o640
    assert st["mtime"].endswith("Z") and st["linkTarget"] == ""
    st = cp.stat_path(c, "/srv/d")
    assert st["mode"] & cp.GO_MODE_DIR and st["mode"] & 0o777 == 0o755
    st = cp.stat_path(c, "/srv/d/link")
    assert st["mode"] & cp.GO_MODE_SYMLINK and st["linkTarget"] == "/srv/d/a"
    with pytest.raises(NotFound, match="Could not find the file /nope"):
        cp.stat_path(c, "/nope")

    doc, chunks = cp.get_archive(c, "/srv/d")
    assert doc["name"] == "d"
    m = _members(chunks)
    assert set(m) == {"d", "d/a", "d/hard", "d/link", "d/sub", "d/sub/b"}
    assert m["d/a"][1] == b"one\n" and m["d/a"][0].mode == 0o640
    assert m["d/sub/b"][1] == b"two\n"
    assert (m["d/sub/b"][0].uid, m["d/sub/b"][0].gid) == (APP_UID, APP_GID)
    assert m["d/link"][0].issym() and m["d/link"][0].linkname == "a"
    assert m["d/hard"][0].islnk() and m["d/hard"][0].linkname == "d/a"
    # a symlink is archived as itself; with "/." the directory's contents
    _, chunks = cp.get_archive(c, "/srv/d/link")
    assert list(_members(chunks)) == ["link"]
    _, chunks = cp.get_archive(c, "/srv/d/.")
    assert set(_members(chunks)) == {"./a", "./hard", "./link", "./sub", "./sub/b"}
    # a file from the image (lower layer) through the merged view
    _, chunks = cp.get_archive(c, "/etc/passwd")
    assert b"app:x:1234" in _members(chunks)["passwd"][1]


def test_put_archive(start: Start) -> None:
    c = start({"Cmd": ["sleep", "1000"], "User": "app"})
    tar = _tar([("new", None, {}), ("new/file", b"content\n", {"mode": 0o600, "uid": 7}),
                ("new/sub/deep", b"deep\n", {}),
                ("new/ln", None, {"type": tarfile.SYMTYPE, "linkname": "file"}),
                ("new/.wh.not-a-whiteout", b"plain\n", {})])
    cp.put_archive(c, "/tmp", tar)
    out = _sh(c, "cat /tmp/new/file /tmp/new/sub/deep /tmp/new/ln /tmp/new/.wh.not-a-whiteout;"
                 " stat -c '%a %u %g' /tmp/new/file", user="0")
    assert out == "content\ndeep\ncontent\nplain\n600 0 0\n"
    # copy_uid_gid: owned by the container's user, as docker does
    cp.put_archive(c, "/tmp", _tar([("owned", b"x", {"uid": 5})]), copy_uid_gid=True)
    assert _sh(c, "stat -c '%u %g' /tmp/owned") == f"{APP_UID} {APP_GID}\n"
    # gzip input
    gz = io.BytesIO()
    with tarfile.open(fileobj=gz, mode="w:gz") as tf:
        info = tarfile.TarInfo("zipped")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"gz\n"))
    gz.seek(0)
    cp.put_archive(c, "/tmp", gz)
    assert _sh(c, "cat /tmp/zipped") == "gz\n"
    # replacing: a file over a dir, refused with no_overwrite_dir_non_dir
    with pytest.raises(InvalidArgument, match="cannot overwrite directory"):
        cp.put_archive(c, "/tmp", _tar([("new", b"file now", {})]),
                       no_overwrite_dir_non_dir=True)
    cp.put_archive(c, "/tmp", _tar([("new", b"file now", {})]))
    assert _sh(c, "cat /tmp/new") == "file now"
    # errors
    with pytest.raises(NotFound):
        cp.put_archive(c, "/no/such/dir", _tar([("x", b"x", {})]))
    with pytest.raises(InvalidArgument, match="not a directory"):
        cp.put_archive(c, "/etc/passwd", _tar([("x", b"x", {})]))
    with pytest.raises(InvalidArgument, match="leaves the destination"):
        cp.put_archive(c, "/tmp", _tar([("../../escape", b"x", {})]))
    with pytest.raises(InvalidArgument, match="not a tar archive"):
        cp.put_archive(c, "/tmp", io.BytesIO(b"this is not a tar archive" * 40))


def test_cp_never_leaves_the_rootfs(start: Start, tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "canary").write_text("host file\n")
    before = sorted(os.listdir(sentinel))
    c = start()
    depth = "/".join([".."] * 12)
    _sh(c, f"ln -s {sentinel} /evil && ln -s {depth}{sentinel} /srv-evil && "
           f"ln -s {depth} /up")
    # the target does not exist inside the rootfs: not found, nothing written anywhere
    with pytest.raises(NotFound):
        cp.put_archive(c, "/evil", _tar([("pwned", b"x", {})]))
    with pytest.raises(NotFound):
        cp.stat_path(c, "/evil/canary")
    with pytest.raises(NotFound):
        cp.get_archive(c, "/srv-evil/canary")
    # once the container has that directory, the write lands inside the rootfs
    _sh(c, f"mkdir -p {sentinel} && echo inside > {sentinel}/canary")
    for dest in ("/evil", "/srv-evil", "/up" + str(sentinel)):
        cp.put_archive(c, dest, _tar([("pwned", b"x", {})]))
    inside = c.merged / str(sentinel).lstrip("/")
    assert (inside / "pwned").read_bytes() == b"x"
    _, chunks = cp.get_archive(c, "/evil/canary")
    assert _members(chunks)["canary"][1] == b"inside\n"
    assert cp.stat_path(c, "/evil")["linkTarget"] == str(sentinel)
    # an archive that plants its own symlink and writes through it stays inside too
    cp.put_archive(c, "/tmp", _tar([
        ("esc", None, {"type": tarfile.SYMTYPE, "linkname": str(sentinel)}),
        ("esc/planted", b"p", {}),
        ("rel", None, {"type": tarfile.SYMTYPE, "linkname": depth + str(sentinel)}),
        ("rel/planted2", b"q", {}),
        ("hl", None, {"type": tarfile.LNKTYPE, "linkname": "esc/canary"}),
    ]))
    assert (inside / "planted").read_bytes() == b"p"
    assert (inside / "planted2").read_bytes() == b"q"
    assert (c.merged / "tmp" / "hl").read_text() == "inside\n"
    assert sorted(os.listdir(sentinel)) == before
    assert (sentinel / "canary").read_text() == "host file\n"


def test_export(start: Start) -> None:
    c = start()
    _sh(c, "echo fresh > /data/new && rm /data/remove && mkdir -p /var/x && "
           "ln -s /data/keep /var/x/l")
    m = _members(cp.export(c))
    assert m["bin/busybox"][0].size == os.path.getsize("/bin/busybox")
    assert m["data/new"][1] == b"fresh\n" and m["data/keep"][1] == b"keep me\n"
    assert "data/remove" not in m
    assert m["var/x/l"][0].linkname == "/data/keep"
    assert m["proc"][0].isdir() and not any(n.startswith("proc/") for n in m)
    # the same view merged from the layers when the overlay is not mounted
    c.stop()
    c.mount.unmount()
    try:
        m2 = _members(cp.export(c))
    finally:
        c.mount.mount(c.merged)
    assert set(m2) == set(m)
    assert m2["data/new"][1] == b"fresh\n" and "data/remove" not in m2


def test_export_merge_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    """The layer merge itself: whiteouts and opaque directories of overlayfs."""
    lower1, lower2, upper = (tmp_path / n for n in ("l1", "l2", "up"))
    for d in (lower1 / "d", lower2 / "d", upper / "d", lower1 / "o", upper / "o"):
        d.mkdir(parents=True)
    (lower1 / "d" / "a").write_text("a1")
    (lower2 / "d" / "a").write_text("a2")
    (lower1 / "d" / "gone").write_text("g")
    (lower1 / "o" / "hidden").write_text("h")
    (upper / "o" / "mine").write_text("m")
    os.setxattr(upper / "o", cp.OPAQUE_XATTR, b"y")
    os.mknod(upper / "d" / "gone", 0o600 | 0o020000, os.makedev(0, 0))  # a whiteout
    (lower1 / "file").write_text("f")
    os.mknod(upper / "file", 0o600 | 0o020000, os.makedev(0, 0))

    class Fake:
        id = "f" * 64
        rootfs = str(tmp_path / "not-mounted")
        upper_dir = str(upper)
        lower_dirs = [str(lower2), str(lower1)]

    (tmp_path / "not-mounted").mkdir()
    m = _members(cp.export(Fake()))  # type: ignore[arg-type]
    assert set(m) == {"d", "d/a", "o", "o/mine"}
    assert m["d/a"][1] == b"a2"


# -- diff and commit ---------------------------------------------------------------------------

CHANGE_SCRIPT = ("echo fresh > /data/new && rm /data/remove && echo more >> /data/change && "
                 "mkdir /newdir && echo n > /newdir/f && echo changes-done")


def test_changes(start: Start) -> None:
    c = start()
    assert changes_mod.changes(c) == []
    _sh(c, CHANGE_SCRIPT)
    assert changes_mod.changes(c) == [
        {"Path": "/data", "Kind": 0},
        {"Path": "/data/change", "Kind": 0},
        {"Path": "/data/new", "Kind": 1},
        {"Path": "/data/remove", "Kind": 2},
        {"Path": "/newdir", "Kind": 1},
        {"Path": "/newdir/f", "Kind": 1},
    ]


def test_changes_hide_runtime_mount_points(start: Start, tmp_path: Path) -> None:
    """Bind-mount targets the runtime had to create in the writable layer (/etc/hosts and
    /etc/resolv.conf are not in the image) are not changes the user made: docker keeps
    them in its init layer."""
    from pyrt.containers.etcfiles import write_etc_files

    etc = write_etc_files(str(tmp_path / "etc"), hostname="h", extra_hosts=[], dns=[])
    c = start(etc_files=etc)
    assert (Path(c.upper_dir) / "etc" / "hosts").exists()  # made by the runtime
    assert changes_mod.changes(c) == []
    raw = changes_mod.changes(c, hide_mount_points=False)
    assert {"Path": "/etc/hosts", "Kind": 1} in raw and {"Path": "/etc", "Kind": 0} in raw
    _sh(c, "echo x >> /data/keep")
    assert changes_mod.changes(c) == [{"Path": "/data", "Kind": 0},
                                      {"Path": "/data/keep", "Kind": 0}]


def test_commit_and_run_the_new_image(start: Start, env: ImageEnv, tmp_path: Path) -> None:
    c = start({"Cmd": ["sh", "-c", "sleep 1000"], "Env": ["FROM_CTR=1"], "WorkingDir": "/data",
               "Labels": {"who": "ctr"}})
    _sh(c, CHANGE_SCRIPT)
    image_id = commit_mod.commit(
        c, store=env.store, images=env.images, repo_tag="ops-commit:1", author="tester",
        message="my change", changes=["ENV COMMITTED=yes", "LABEL stage=2"],
    )  # fmt: skip
    assert c.status() == "running"  # paused for the commit, resumed after
    img = env.images.get("ops-commit:1")
    assert img.id == image_id and len(img.layers) == 2
    info = env.images.inspect("ops-commit:1")
    cfg = info["Config"]
    assert cfg["Cmd"] == ["sh", "-c", "sleep 1000"]
    assert {"IMG=1", "FROM_CTR=1", "COMMITTED=yes"} <= set(cfg["Env"])
    assert cfg["WorkingDir"] == "/data" and cfg["Labels"] == {"who": "ctr", "stage": "2"}
    assert info["Author"] == "tester"
    hist = env.images.history("ops-commit:1")
    assert hist[0]["Comment"] == "my change" and "sleep 1000" in hist[0]["CreatedBy"]
    assert img.manifest_media_type == "application/vnd.docker.distribution.manifest.v2+json"
    # the layers, unpacked in order with the C unpacker: the container's changes are there
    dest = tmp_path / "unpacked"
    dest.mkdir()
    for layer in img.layers:
        assert layer.blob_digest is not None
        fd = os.open(env.store.path(layer.blob_digest), os.O_RDONLY)
        try:
            res = _core.unpack_layer(fd, str(dest), layer.blob_digest)
        finally:
            os.close(fd)
        assert res["diff_id"] == layer.diff_id
    assert (dest / "data" / "new").read_text() == "fresh\n"
    assert (dest / "data" / "change").read_text() == "original\nmore\n"
    assert (dest / "newdir" / "f").read_text() == "n\n"
    # the deleted file: the C unpacker turns the layer's .wh.remove into an overlay
    # whiteout (a 0/0 character device), which hides the lower file
    st = os.lstat(dest / "data" / "remove")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert (dest / "data" / "keep").read_text() == "keep me\n"
    # and a container of the new image sees them
    c2 = start({"Cmd": ["sh", "-c", "ls /data; cat /data/new; echo $COMMITTED; echo done"]},
               image=image_id)
    out = c2.wait_output("done")
    assert out.split() == ["change", "keep", "new", "fresh", "yes", "done"]


def test_commit_stopped_container_and_bad_changes(start: Start, env: ImageEnv) -> None:
    c = start({"Cmd": ["sh", "-c", "echo x > /data/stopped; echo ok"]})
    c.wait_output("ok")
    c.stop()
    with pytest.raises(InvalidArgument, match="unsupported change instruction RUN"):
        commit_mod.commit(c, store=env.store, images=env.images, changes=["RUN true"])
    image_id = commit_mod.commit(c, store=env.store, images=env.images)
    img = env.images.get(image_id)
    assert img.repo_tags == () and len(img.layers) == 2


# -- top and stats -----------------------------------------------------------------------------


def test_top(start: Start) -> None:
    c = start()
    inst, run = exec_run(c, ExecConfig(Cmd=["sleep", "777"]))
    try:
        res = top_mod.top(c)
        assert res["Titles"][:2] == ["UID", "PID"] and res["Titles"][-1] == "CMD"
        pids = {int(row[1]) for row in res["Processes"]}
        assert pids == set(c.runtime.ps(c.runtime_id)) == {c.pid(), run.pid}
        cmds = {row[-1] for row in res["Processes"]}
        assert cmds == {"sleep 1000", "sleep 777"}
        res = top_mod.top(c, "-o pid,comm")
        assert res["Titles"] == ["PID", "COMMAND"]
        assert sorted(res["Processes"]) == sorted([[str(c.pid()), "sleep"],
                                                   [str(run.pid), "sleep"]])
        with pytest.raises(InvalidArgument, match="ps failed"):
            top_mod.top(c, "--no-such-option")
        with pytest.raises(InvalidArgument, match="PID"):
            top_mod.top(c, "-o comm")
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
    c.stop()
    with pytest.raises(Conflict, match="is not running"):
        top_mod.top(c)


def test_stats(start: Start) -> None:
    c = start()
    s1 = stats_mod.stats(c)
    assert s1["id"] == c.id and s1["name"] == "/" + c.name
    assert s1["preread"] == stats_mod.ZERO_TIME and s1["read"] != stats_mod.ZERO_TIME
    assert s1["pids_stats"]["current"] >= 1
    assert s1["memory_stats"]["usage"] > 0 and s1["memory_stats"]["limit"] > 0
    assert isinstance(s1["memory_stats"]["stats"], dict) and s1["memory_stats"]["stats"]
    assert s1["cpu_stats"]["system_cpu_usage"] > 0 and s1["cpu_stats"]["online_cpus"] >= 1
    assert isinstance(s1["blkio_stats"]["io_service_bytes_recursive"], list)
    assert "networks" not in s1  # only loopback in its network namespace
    inst, run = exec_run(c, ExecConfig(Cmd=["sh", "-c", "while :; do :; done"]))
    try:
        time.sleep(0.3)
        a = stats_mod.stats(c)
        time.sleep(0.7)
        b = stats_mod.stats(c, prev=a)
        assert b["preread"] == a["read"] and b["precpu_stats"] == a["cpu_stats"]
        assert b["pids_stats"]["current"] >= 2
        pct = stats_mod.cpu_percent(b)
        assert 20.0 < pct <= 100.0 * b["cpu_stats"]["online_cpus"] + 1, pct
        assert 0.0 < stats_mod.memory_percent(b) < 100.0
        samples = list(stats_mod.stream_stats(c, interval=0.2, count=2))
        assert len(samples) == 2 and samples[1]["precpu_stats"] == samples[0]["cpu_stats"]
        assert stats_mod.cpu_percent(samples[1]) > 0
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
    c.stop()
    s = stats_mod.stats(c)
    assert s["read"] == stats_mod.ZERO_TIME and s["memory_stats"] == {}
    stream = list(stats_mod.stream_stats(c, interval=0.1))
    assert len(stream) == 1 and stream[0]["read"] == stats_mod.ZERO_TIME
