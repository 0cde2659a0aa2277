"""Unit tests of pyrt.containers' exec/cp/export/diff/commit/top/stats with a fake
ContainerHandle over plain directories (no root, no runtime)."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pyrt.containers import changes as changes_mod
from pyrt.containers import copy as cp
from pyrt.containers import stats as stats_mod
from pyrt.containers import top as top_mod
from pyrt.containers.commit import merge_container_config
from pyrt.containers.exec import (
    ExecConfig,
    ExecInstance,
    build_process,
    create_exec,
    parse_detach_keys,
)
from pyrt.containers.options import ContainerConfig, HostConfig
from pyrt.containers.specgen import all_caps
from pyrt.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from pyrt.snapshots.overlay import Change


@dataclass
class FakeHandle:
    root: Path
    state: str = "running"
    id: str = "c" * 64
    name: str = "fake"
    image_id: str = "sha256:" + "0" * 64
    config: ContainerConfig = field(default_factory=ContainerConfig)
    host_config: HostConfig = field(default_factory=HostConfig)
    spec: dict[str, Any] = field(default_factory=dict)
    runtime: Any = None
    runtime_id: str = "fake"
    upper: Path | None = None
    lowers: list[str] = field(default_factory=list)

    @property
    def rootfs(self) -> str:
        return str(self.root)

    @property
    def upper_dir(self) -> str:
        return str(self.upper or self.root)

    @property
    def lower_dirs(self) -> list[str]:
        return self.lowers

    def status(self) -> str:
        return self.state

    def pid(self) -> int:
        return 0


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                      "app:x:1234:2345::/home/app:/bin/sh\n")
    (r / "etc" / "group").write_text("root:x:0:\nstaff:x:50:app\n")
    (r / "srv").mkdir()
    (r / "srv" / "file").write_text("data\n")
    (r / "tmp").mkdir()
    return r


def _spec() -> dict[str, Any]:
    return {"process": {"args": ["sleep", "1"], "env": ["PATH=/bin", "A=1", "B=2"], "cwd": "/srv",
                        "user": {"uid": 0, "gid": 0}, "terminal": False,
                        "noNewPrivileges": True,
                        "capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"],
                                         "permitted": ["CAP_CHOWN"], "inheritable": [],
                                         "ambient": []},
                        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}]}}


def _tar(entries: list[tuple[str, bytes | None, dict[str, Any]]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data, attrs in entries:
            info = tarfile.TarInfo(name)
            for k, v in attrs.items():
                setattr(info, k, v)
            if data is None and info.type == tarfile.REGTYPE:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    return buf


def _names(chunks: Any) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=cp.IterStream(chunks), mode="r|") as tf:
        for m in tf:
            f = tf.extractfile(m) if m.isreg() else None
            out[m.name.rstrip("/")] = f.read() if f is not None else b""
    return out


# -- exec ----------------------------------------------------------------------------------


def test_exec_config_validation() -> None:
    c = ExecConfig.from_api({"Cmd": ["sh", "-c", "x"], "Env": ["A=b"], "Tty": True,
                             "ConsoleSize": [24, 80], "DetachKeys": "ctrl-x,y"})
    assert c.Cmd == ["sh", "-c", "x"] and c.Tty and c.ConsoleSize == (24, 80)
    with pytest.raises(InvalidArgument, match="no exec command"):
        ExecConfig.from_api({"Cmd": []})
    with pytest.raises(InvalidArgument, match="Cmd: expected a list"):
        ExecConfig.from_api({"Cmd": "sh"})
    with pytest.raises(InvalidArgument, match="Env\\[0\\]"):
        ExecConfig.from_api({"Cmd": ["x"], "Env": ["=bad"]})
    with pytest.raises(InvalidArgument, match="WorkingDir"):
        ExecConfig.from_api({"Cmd": ["x"], "WorkingDir": "rel"})
    with pytest.raises(InvalidArgument, match="Tty: expected a boolean"):
        ExecConfig.from_api({"Cmd": ["x"], "Tty": "yes"})
    with pytest.raises(InvalidArgument, match="invalid detach key"):
        ExecConfig.from_api({"Cmd": ["x"], "DetachKeys": "ctrl-1"})
    with pytest.raises(InvalidArgument, match="ConsoleSize"):
        ExecConfig.from_api({"Cmd": ["x"], "ConsoleSize": [1]})


def test_detach_keys() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("a,ctrl-@,ctrl-[,ctrl-_") == b"a\x00\x1b\x1f"
    with pytest.raises(InvalidArgument):
        parse_detach_keys("")
    with pytest.raises(InvalidArgument):
        parse_detach_keys("ctrl-pp")


def test_build_process(rootfs: Path) -> None:
    h = FakeHandle(rootfs, spec=_spec(), config=ContainerConfig(User="app"))
    p = build_process(h, ExecConfig(Cmd=["id"], Env=["B=3", "C=4"]))
    assert p["args"] == ["id"] and p["env"] == ["PATH=/bin", "A=1", "B=3", "C=4"]
    assert p["cwd"] == "/srv" and p["terminal"] is False
    assert p["user"] == {"uid": 1234, "gid": 2345, "additionalGids": [50]}  # container's User
    assert p["rlimits"] == _spec()["process"]["rlimits"] and p["noNewPrivileges"] is True
    assert p["capabilities"]["effective"] == ["CAP_CHOWN"]
    p = build_process(h, ExecConfig(Cmd=["id"], User="0:0", WorkingDir="/tmp", Tty=True,
                                    Privileged=True, ConsoleSize=(10, 20)))
    assert p["user"] == {"uid": 0, "gid": 0} and p["cwd"] == "/tmp" and p["terminal"]
    assert "TERM=xterm" in p["env"] and p["consoleSize"] == {"height": 10, "width": 20}
    assert p["capabilities"]["bounding"] == all_caps() == p["capabilities"]["permitted"]
    # the container's spec is not modified
    assert h.spec == _spec()
    with pytest.raises(InvalidArgument, match="unable to find user ghost"):
        build_process(h, ExecConfig(Cmd=["id"], User="ghost"))


def test_exec_needs_a_running_container(rootfs: Path) -> None:
    for state, msg in (("exited", "is not running"), ("created", "is not running"),
                       ("paused", "is paused")):
        with pytest.raises(Conflict, match=msg):
            create_exec(FakeHandle(rootfs, state=state), ExecConfig(Cmd=["true"]))
    inst = create_exec(FakeHandle(rootfs), ExecConfig(Cmd=["sh", "-c", "x"], User="app",
                                                       AttachStdout=True, DetachKeys="ctrl-a"))
    assert isinstance(inst, ExecInstance) and len(inst.id) == 64
    int(inst.id, 16)
    assert inst.inspect() == {
        "ID": inst.id, "Running": False, "ExitCode": None,
        "ProcessConfig": {"tty": False, "entrypoint": "sh", "arguments": ["-c", "x"],
                          "privileged": False, "user": "app"},
        "OpenStdin": False, "OpenStderr": False, "OpenStdout": True, "CanRemove": False,
        "ContainerID": "c" * 64, "DetachKeys": "ctrl-a", "Pid": 0,
    }  # fmt: skip


# -- cp ------------------------------------------------------------------------------------


def test_go_file_mode_and_stat_header() -> None:
    assert cp.go_file_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755
    assert cp.go_file_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert cp.go_file_mode(stat.S_IFREG | stat.S_ISUID | 0o4755) == (1 << 23) | 0o755
    assert cp.go_file_mode(stat.S_IFCHR | 0o600) == (1 << 26) | (1 << 21) | 0o600
    assert cp.go_file_mode(stat.S_IFDIR | stat.S_ISVTX | 0o777) == (1 << 31) | (1 << 20) | 0o777
    assert cp.rfc3339(1_700_000_000_500_000_000) == "2023-11-14T22:13:20.5Z"
    assert cp.rfc3339(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    doc = {"name": "a", "size": 1, "mode": 420, "mtime": "x", "linkTarget": ""}
    assert json.loads(base64.b64decode(cp.encode_path_stat(doc))) == doc


def test_stat_and_get_archive_stay_in_the_root(rootfs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret")
    (rootfs / "abs").symlink_to(str(outside))
    (rootfs / "rel").symlink_to("../../../../.." + str(outside))
    (rootfs / "etc-link").symlink_to("/etc")
    h = FakeHandle(rootfs)
    for p in ("/abs/secret", "/rel/secret", "abs/secret", "/srv/../../abs/secret"):
        with pytest.raises(NotFound, match="Could not find the file"):
            cp.stat_path(h, p)
        with pytest.raises(NotFound):
            cp.get_archive(h, p)
    st = cp.stat_path(h, "/etc-link")
    assert st["linkTarget"] == "/etc" and st["mode"] & cp.GO_MODE_SYMLINK
    st = cp.stat_path(h, "/etc-link/")  # a trailing slash follows the link
    assert st["mode"] & cp.GO_MODE_DIR and st["name"] == "etc-link"
    _, chunks = cp.get_archive(h, "/etc-link/passwd")
    assert b"app:x:1234" in _names(chunks)["passwd"]
    doc, chunks = cp.get_archive(h, "/")
    names = _names(chunks)
    assert "./srv/file" in names and names["./srv/file"] == b"data\n"


def test_put_archive_stays_in_the_root(rootfs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (rootfs / "abs").symlink_to(str(outside))
    h = FakeHandle(rootfs)
    with pytest.raises(NotFound):
        cp.put_archive(h, "/abs", _tar([("x", b"x", {})]))
    planted = _tar([("esc", None, {"type": tarfile.SYMTYPE, "linkname": str(outside)}),
                    ("esc/a/b", b"deep", {})])
    # the link's target does not exist inside the root: refused, nothing written outside
    with pytest.raises(InvalidArgument, match="esc/a/b"):
        cp.put_archive(h, "/tmp", planted)
    assert os.listdir(outside) == []
    (rootfs / str(outside).lstrip("/")).mkdir(parents=True)
    planted.seek(0)
    cp.put_archive(h, "/tmp", planted)
    cp.put_archive(h, "/tmp", _tar([("./plain", b"p", {"mode": 0o640, "mtime": 1_000_000})]))
    assert os.listdir(outside) == []
    landed = rootfs / str(outside).lstrip("/") / "a" / "b"
    assert landed.read_bytes() == b"deep"
    assert (rootfs / "tmp" / "plain").read_bytes() == b"p"
    st = os.stat(rootfs / "tmp" / "plain")
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime == 1_000_000
    with pytest.raises(InvalidArgument, match="leaves the destination"):
        cp.put_archive(h, "/tmp", _tar([("a/../../x", b"x", {})]))
    with pytest.raises(InvalidArgument, match="not a directory"):
        cp.put_archive(h, "/srv/file", _tar([("x", b"x", {})]))
    ro = FakeHandle(rootfs, host_config=HostConfig.from_api({"ReadonlyRootfs": True}))
    with pytest.raises(FailedPrecondition, match="read-only"):
        cp.put_archive(ro, "/tmp", _tar([("x", b"x", {})]))


def test_put_archive_dir_nondir_rules(rootfs: Path) -> None:
    h = FakeHandle(rootfs)
    (rootfs / "tmp" / "d").mkdir()
    (rootfs / "tmp" / "d" / "inner").write_text("i")
    with pytest.raises(InvalidArgument, match="cannot overwrite directory"):
        cp.put_archive(h, "/tmp", _tar([("d", b"file", {})]), no_overwrite_dir_non_dir=True)
    with pytest.raises(InvalidArgument, match="cannot overwrite non-directory"):
        cp.put_archive(h, "/srv", _tar([("file", None, {})]), no_overwrite_dir_non_dir=True)
    cp.put_archive(h, "/tmp", _tar([("d", b"file", {})]))
    assert (rootfs / "tmp" / "d").read_bytes() == b"file"
    # a symlink already there is replaced, not written through
    (rootfs / "tmp" / "l").symlink_to("/srv/file")
    cp.put_archive(h, "/tmp", _tar([("l", b"new", {})]))
    assert not (rootfs / "tmp" / "l").is_symlink()
    assert (rootfs / "srv" / "file").read_text() == "data\n"


def test_export_merges_layers(tmp_path: Path) -> None:
    low, up = tmp_path / "low", tmp_path / "up"
    (low / "d").mkdir(parents=True)
    (up / "d").mkdir(parents=True)
    (low / "d" / "a").write_text("low")
    (low / "d" / "b").write_text("b")
    (up / "d" / "a").write_text("up")
    (up / "n").symlink_to("d/a")
    (tmp_path / "unmounted").mkdir()
    h = FakeHandle(tmp_path / "unmounted", upper=up, lowers=[str(low)])
    names = _names(cp.export(h))
    assert names == {"d": b"", "d/a": b"up", "d/b": b"b", "n": b""}


def test_iter_stream() -> None:
    s = cp.IterStream([b"ab", b"", b"cde"])
    assert s.read(3) == b"abc" and s.read() == b"de" and s.read(1) == b""


# -- changes -------------------------------------------------------------------------------


def test_changes_and_mount_point_filter(tmp_path: Path) -> None:
    low, up = tmp_path / "low", tmp_path / "up"
    (low / "etc").mkdir(parents=True)
    (low / "etc" / "passwd").write_text("x")
    (up / "etc").mkdir(parents=True)
    (up / "etc" / "hosts").touch()
    (up / "dev" / "shm").mkdir(parents=True)
    spec = {"mounts": [{"destination": "/etc/hosts"}, {"destination": "/dev/shm"},
                       {"destination": "/"}]}
    h = FakeHandle(tmp_path, upper=up, lowers=[str(low)], spec=spec)
    assert changes_mod.changes(h) == []
    assert changes_mod.changes(h, hide_mount_points=False) == [
        {"Path": "/dev", "Kind": 1}, {"Path": "/dev/shm", "Kind": 1},
        {"Path": "/etc", "Kind": 0}, {"Path": "/etc/hosts", "Kind": 1},
    ]
    # a non-empty file at a mount destination is the user's
    (up / "etc" / "hosts").write_text("mine")
    (up / "etc" / "passwd").write_text("y")
    assert changes_mod.changes(h) == [{"Path": "/etc", "Kind": 0},
                                      {"Path": "/etc/hosts", "Kind": 1},
                                      {"Path": "/etc/passwd", "Kind": 0}]
    kept = changes_mod.filter_mount_points([Change("/etc", "C"), Change("/x", "A")], str(up),
                                           {"/x"})
    assert kept == [Change("/etc", "C"), Change("/x", "A")]  # /x is not in upper: kept
    with pytest.raises(FailedPrecondition, match="writable layer"):
        changes_mod.changes(FakeHandle(tmp_path, upper=tmp_path / "missing"))


# -- commit --------------------------------------------------------------------------------


def test_merge_container_config() -> None:
    image = {"Cmd": ["/bin/sh"], "Entrypoint": ["/init"], "Env": ["PATH=/bin", "A=1"],
             "Labels": {"a": "1"}, "ExposedPorts": {"80/tcp": {}}, "WorkingDir": "/"}
    c = ContainerConfig.from_api({"Cmd": ["run"], "Env": ["A=2", "B=3"], "Labels": {"b": "2"},
                                  "ExposedPorts": {"443/tcp": {}}, "WorkingDir": "/app",
                                  "User": "app", "StopSignal": "SIGINT"})
    out = merge_container_config(image, c)
    assert out["Cmd"] == ["run"] and out["Entrypoint"] == ["/init"]
    assert out["Env"] == ["PATH=/bin", "A=2", "B=3"]
    assert out["Labels"] == {"a": "1", "b": "2"}
    assert out["ExposedPorts"] == {"80/tcp": {}, "443/tcp": {}}
    assert (out["WorkingDir"], out["User"], out["StopSignal"]) == ("/app", "app", "SIGINT")
    assert image["Cmd"] == ["/bin/sh"]  # not modified
    # an Entrypoint of the container's own drops the image's Cmd (docker's rule)
    out = merge_container_config(image, ContainerConfig.from_api({"Entrypoint": ["/x"]}))
    assert out["Entrypoint"] == ["/x"] and "Cmd" not in out
    out = merge_container_config(image, ContainerConfig.from_api({"Entrypoint": []}))
    assert "Entrypoint" not in out and "Cmd" not in out


# -- top -----------------------------------------------------------------------------------

PS_EF = """UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 10:00 ?        00:00:01 /sbin/init splash
root         100       1  0 10:01 ?        00:00:00 sleep 1000
1234         101     100  0 10:01 pts/0    00:00:00 sh -c while true; do :; done
"""


def test_parse_ps() -> None:
    res = top_mod.parse_ps(PS_EF, {100, 101})
    assert res["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert res["Processes"] == [
        ["root", "100", "1", "0", "10:01", "?", "00:00:00", "sleep 1000"],
        ["1234", "101", "100", "0", "10:01", "pts/0", "00:00:00", "sh -c while true; do :; done"],
    ]
    assert top_mod.parse_ps("PID COMMAND\n  7 x\n", {7}) == {"Titles": ["PID", "COMMAND"],
                                                             "Processes": [["7", "x"]]}
    with pytest.raises(InvalidArgument, match="PID field"):
        top_mod.parse_ps("USER COMMAND\nroot x\n", {1})
    with pytest.raises(InvalidArgument, match="unexpected pid"):
        top_mod.parse_ps("PID CMD\nabc x\n", {1})
    with pytest.raises(InvalidArgument, match="nothing"):
        top_mod.parse_ps("", {1})


def test_top_needs_a_running_container(rootfs: Path) -> None:
    with pytest.raises(Conflict, match="is not running"):
        top_mod.top(FakeHandle(rootfs, state="exited"))


# -- stats ---------------------------------------------------------------------------------

NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:   5000      50    1    2    0     0          0         0     7000      70    3    4    0     0       0          0
"""  # noqa: E501


def test_stats_parsers() -> None:
    assert stats_mod.parse_net_dev(NET_DEV) == {"eth0": {
        "rx_bytes": 5000, "rx_packets": 50, "rx_errors": 1, "rx_dropped": 2,
        "tx_bytes": 7000, "tx_packets": 70, "tx_errors": 3, "tx_dropped": 4}}
    v1 = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Total 12288\nTotal 1\n"
    assert stats_mod.parse_blkio_v1(v1)[:2] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 4096},
        {"major": 8, "minor": 0, "op": "Write", "value": 8192}]
    assert len(stats_mod.parse_blkio_v1(v1)) == 5 and stats_mod.parse_blkio_v1(None) == []
    v2 = "259:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n"
    assert stats_mod.parse_io_stat_v2(v2) == [
        {"major": 259, "minor": 0, "op": "read", "value": 100},
        {"major": 259, "minor": 0, "op": "write", "value": 200}]
    hz = os.sysconf("SC_CLK_TCK")
    assert stats_mod.system_cpu_usage(f"cpu  {hz} 0 {hz} {hz} 0 0 0 {hz} 0 0\ncpu0 1\n") == \
        3 * 1_000_000_000
    assert stats_mod.system_cpu_usage() > 0
    assert stats_mod.host_memory("MemTotal:       2048 kB\nMemFree: 1 kB\n") == 2048 * 1024


def test_cpu_and_memory_percent() -> None:
    s = {"cpu_stats": {"cpu_usage": {"total_usage": 3_000}, "system_cpu_usage": 20_000,
                       "online_cpus": 4},
         "precpu_stats": {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 10_000},
         "memory_stats": {"usage": 1000, "limit": 4000, "stats": {"total_inactive_file": 200}},
         "blkio_stats": {"io_service_bytes_recursive": [
             {"op": "Read", "value": 5}, {"op": "Write", "value": 7},
             {"op": "read", "value": 1}, {"op": "Total", "value": 13}]}}
    assert stats_mod.cpu_percent(s) == pytest.approx(80.0)
    assert stats_mod.memory_usage(s) == 800
    assert stats_mod.memory_percent(s) == pytest.approx(20.0)
    assert stats_mod.blkio_totals(s) == (6, 7)
    s["memory_stats"]["stats"] = {"inactive_file": 500}  # v2
    assert stats_mod.memory_usage(s) == 500
    assert stats_mod.cpu_percent({"cpu_stats": {}, "precpu_stats": {}}) == 0.0
    assert stats_mod.memory_percent({"memory_stats": {}}) == 0.0


def test_stats_of_a_stopped_container(rootfs: Path) -> None:
    h = FakeHandle(rootfs, state="exited")
    s = stats_mod.stats(h)
    assert s["read"] == stats_mod.ZERO_TIME and s["name"] == "/fake" and s["id"] == "c" * 64
    assert s["memory_stats"] == {} and s["pids_stats"] == {}
    assert s["cpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert list(stats_mod.stream_stats(h, interval=0)) == [s]
