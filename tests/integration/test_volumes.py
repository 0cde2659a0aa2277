"""Volumes and container mounts through pyrt.Engine, with real containers.

Named and anonymous volumes, copy-up (owners, modes, xattrs, links; nocopy; a volume with
data never overwritten), binds (-v makes a missing host dir, --mount refuses one), :ro and
ReadOnly, tmpfs sizes, VolumesFrom, in-use refusal, prune, data across container removal
and engine restart, device volumes (tmpfs, bind) mounted only while used, inspect Mounts.
Each test has its own engine roots; teardown removes every container and volume.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyrt.engine import Engine
from pyrt.errors import Conflict, InvalidArgument, NotFound, SystemError_
from pyrt.images.importer import import_rootfs
from pyrt.volumes import local
from tests.bundle import LeakScanner
from tests.integration.test_engine import (  # noqa: F401 - busybox_tar is a fixture
    IMAGE,
    Engines,
    busybox_tar,
    logs,
)

APP_IMAGE = "pyrt-test-volapp:1"


class VolEngines(Engines):
    """Engines whose teardown also removes the volumes (device volumes unmount)."""

    def teardown(self) -> None:
        super().teardown()  # removing the containers unmounts the device volumes
        root = self.root / "volumes"
        for entry in os.listdir(root) if root.exists() else []:
            data = root / entry / "_data"
            if local.is_mounted(str(data)):  # a test that failed midway
                local.unmount(str(data))


def _add(tf: tarfile.TarFile, name: str, *, data: bytes | None = None, kind: bytes = b"0",
         mode: int = 0o644, uid: int = 0, gid: int = 0, link: str = "",
         xattrs: dict[str, str] | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, 1_600_000_000
    info.linkname = link
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    if data is not None:
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    else:
        tf.addfile(info)


def app_tar(base: Path, dest: Path, extra: list[dict[str, Any]]) -> Path:
    """The rootfs tar `base` plus `extra` entries (keyword arguments of _add)."""
    shutil.copy(base, dest)
    with tarfile.open(dest, "a", format=tarfile.PAX_FORMAT) as tf:
        for e in extra:
            _add(tf, **e)
    return dest


APP_FILES: list[dict[str, Any]] = [
    {"name": "app", "kind": tarfile.DIRTYPE, "mode": 0o751, "uid": 1234, "gid": 99},
    {"name": "app/file", "data": b"from the image\n", "mode": 0o640, "uid": 1234, "gid": 99,
     "xattrs": {"user.note": "kept"}},
    {"name": "app/hard", "kind": tarfile.LNKTYPE, "link": "app/file"},
    {"name": "app/suid", "data": b"#!/bin/sh\n", "mode": 0o4755, "uid": 5, "gid": 5},
    {"name": "app/sub", "kind": tarfile.DIRTYPE, "mode": 0o700, "uid": 7, "gid": 8},
    {"name": "app/sub/link", "kind": tarfile.SYMTYPE, "link": "../file", "uid": 7, "gid": 8},
    {"name": "app/sub/abs", "kind": tarfile.SYMTYPE, "link": "/etc/passwd"},
    {"name": "app/fifo", "kind": tarfile.FIFOTYPE, "mode": 0o620, "uid": 3, "gid": 4},
]


@pytest.fixture
def engines(tmp_path: Path, busybox_tar: Path) -> Iterator[VolEngines]:  # noqa: F811
    es = VolEngines(tmp_path, busybox_tar)
    yield es
    es.teardown()


@pytest.fixture
def engine(engines: VolEngines, tmp_path: Path, busybox_tar: Path) -> Engine:  # noqa: F811
    e = engines.open()
    tar = app_tar(busybox_tar, tmp_path / "app.tar", APP_FILES)
    import_rootfs(str(tar), store=e.content, service=e.images, reference=APP_IMAGE,
                  changes=['VOLUME ["/app"]'])
    return e


def run(engine: Engine, script: str, host: dict[str, Any] | None = None,
        image: str = IMAGE, remove: bool = True, **config: Any) -> tuple[int, bytes, str]:
    """Run `sh -c script`; (exit code, stdout+stderr, container id)."""
    cid = engine.containers.create({"Image": image, "Cmd": ["sh", "-c", script], **config},
                                   host or {})
    engine.containers.start(cid)
    code = int(engine.containers.wait(cid, timeout=30)["StatusCode"])
    out = logs(engine, cid)
    if remove:
        engine.containers.remove(cid)
    return code, out, cid


def ok(engine: Engine, script: str, host: dict[str, Any] | None = None, **kw: Any) -> bytes:
    code, out, _ = run(engine, script, host, **kw)
    assert code == 0, out
    return out


# ------------------------------------------------------------------ named volumes


def test_data_outlives_containers_and_engine_restart(engines: VolEngines, engine: Engine
                                                     ) -> None:
    vol = engine.volumes.create("data", labels={"team": "a"})
    assert vol["Name"] == "data" and vol["Driver"] == "local" and vol["Scope"] == "local"
    assert vol["Labels"] == {"team": "a"} and vol["Mountpoint"].endswith("/volumes/data/_data")
    ok(engine, "echo hello > /data/f", {"Binds": ["data:/data"]})
    assert ok(engine, "cat /data/f", {"Binds": ["data:/data"]}) == b"hello\n"
    # a volume named in Binds that does not exist is made
    ok(engine, "echo x > /auto/g", {"Binds": ["auto:/auto"]})
    assert engine.volumes.inspect("auto")["Labels"] == {}
    engine.close()
    again = engines.open(image=False)
    assert again.volumes.inspect("data")["CreatedAt"] == vol["CreatedAt"]
    assert ok(again, "cat /data/f /auto/g",
              {"Mounts": [{"Type": "volume", "Source": "data", "Target": "/data"},
                          {"Type": "volume", "Source": "auto", "Target": "/auto"}]}
              ) == b"hello\nx\n"


def test_in_use_refused_unless_forced_and_prune(engine: Engine) -> None:
    engine.volumes.create("busy")
    engine.volumes.create("idle", labels={"keep": "no"})
    engine.volumes.create("kept", labels={"keep": "yes"})
    _, _, cid = run(engine, "true", {"Binds": ["busy:/b"]}, remove=False)
    with pytest.raises(Conflict, match="in use"):
        engine.volumes.remove("busy")
    assert [v["Name"] for v in engine.volumes.list({"dangling": ["true"]})] == ["idle", "kept"]
    assert [v["Name"] for v in engine.volumes.list({"dangling": ["false"]})] == ["busy"]
    assert [v["Name"] for v in engine.volumes.list({"label": ["keep=yes"]})] == ["kept"]
    assert [v["Name"] for v in engine.volumes.list({"name": ["dl"]})] == ["idle"]
    # an anonymous volume is pruned by default; named ones only with all=true
    anon = engine.volumes.create()["Name"]
    out = engine.volumes.prune()
    assert out["VolumesDeleted"] == [anon]
    out = engine.volumes.prune({"all": ["true"], "label!": ["keep=yes"]})
    assert out["VolumesDeleted"] == ["idle"]
    assert {v["Name"] for v in engine.volumes.list()} == {"busy", "kept"}
    engine.volumes.remove("busy", force=True)
    with pytest.raises(NotFound):
        engine.volumes.inspect("busy")
    engine.containers.remove(cid)  # its volume went already: nothing to release
    with pytest.raises(InvalidArgument):
        engine.volumes.list({"bogus": ["x"]})


def test_names_are_checked(engine: Engine, tmp_path: Path) -> None:
    for bad in ("..", "../x", "a/b", ".hidden", "x", "_containers", "a b"):
        with pytest.raises(InvalidArgument, match="invalid characters"):
            engine.volumes.create(bad)
    with pytest.raises(NotFound):
        engine.volumes.inspect("../containers")
    with pytest.raises(NotFound, match="plugin"):
        engine.volumes.create("v1", driver="nfs-plugin")
    with pytest.raises(InvalidArgument, match="invalid option"):
        engine.volumes.create("v1", driver_opts={"bogus": "1"})
    with pytest.raises(InvalidArgument, match="missing required option"):
        engine.volumes.create("v1", driver_opts={"type": "tmpfs"})
    with pytest.raises(InvalidArgument, match="invalid characters"):
        engine.containers.create({"Image": IMAGE, "Cmd": ["true"]},
                                 {"Binds": ["../etc:/data"]})
    assert not (tmp_path / "root" / "etc").exists()
    assert [v["Name"] for v in engine.volumes.list()] == []
    assert engine.containers.list(all=True) == []


# ------------------------------------------------------------------ copy-up


def test_copy_up_keeps_owners_modes_links_and_xattrs(engine: Engine) -> None:
    out = ok(engine, "cd /app && stat -c '%n %u:%g %a %F' . file suid sub sub/link fifo && "
             "cat sub/link && readlink sub/abs && stat -c %i file hard && "
             "cat /app/file", {"Binds": ["appdata:/app"]}, image=APP_IMAGE)
    lines = out.decode().splitlines()
    assert lines[:6] == [". 1234:99 751 directory", "file 1234:99 640 regular file",
                         "suid 5:5 4755 regular file", "sub 7:8 700 directory",
                         "sub/link 7:8 777 symbolic link", "fifo 3:4 620 fifo"]
    assert lines[6:8] == ["from the image", "/etc/passwd"]
    assert lines[8] == lines[9]  # the hard link is still one file
    data = Path(engine.volumes.inspect("appdata")["Mountpoint"])
    assert os.getxattr(data / "file", "user.note") == b"kept"


def test_nocopy_and_a_volume_with_data_is_not_overwritten(engine: Engine) -> None:
    assert ok(engine, "ls -A /app", {"Binds": ["empty:/app:nocopy"]}, image=APP_IMAGE) == b""
    assert ok(engine, "ls -A /app",
              {"Mounts": [{"Type": "volume", "Source": "empty2", "Target": "/app",
                           "VolumeOptions": {"NoCopy": True}}]}, image=APP_IMAGE) == b""
    ok(engine, "echo mine > /v/mine", {"Binds": ["full:/v"]})
    assert ok(engine, "ls -A /app; cat /app/mine", {"Binds": ["full:/app"]},
              image=APP_IMAGE) == b"mine\nmine\n"
    # the image's VOLUME becomes an anonymous volume with the image's content
    code, out, cid = run(engine, "cat /app/file", image=APP_IMAGE, remove=False)
    assert (code, out) == (0, b"from the image\n")
    [mp] = engine.containers.inspect(cid)["Mounts"]
    assert mp["Type"] == "volume" and len(mp["Name"]) == 64 and mp["Destination"] == "/app"
    assert engine.volumes.inspect(mp["Name"])["Labels"] == {"com.docker.volume.anonymous": ""}


# ------------------------------------------------------------------ anonymous volumes


def test_anonymous_volumes_go_with_rm_v_and_auto_remove(engine: Engine) -> None:
    _, _, cid = run(engine, "echo a > /a/f", {"Binds": ["/a"]}, remove=False, Volumes={"/c": {}})
    names = {m["Destination"]: m["Name"] for m in engine.containers.inspect(cid)["Mounts"]}
    assert set(names) == {"/a", "/c"}
    engine.containers.remove(cid)  # without -v they stay (dangling)
    assert {v["Name"] for v in engine.volumes.list({"dangling": ["1"]})} == set(names.values())
    _, _, cid = run(engine, "true", {"Binds": ["/x", "named:/n"]}, remove=False)
    anon = next(m["Name"] for m in engine.containers.inspect(cid)["Mounts"]
                if m["Destination"] == "/x")
    engine.containers.remove(cid, volumes=True)
    left = {v["Name"] for v in engine.volumes.list()}
    assert anon not in left and "named" in left  # -v never takes a named volume
    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["true"]},
                                   {"Binds": ["/y"], "AutoRemove": True})
    anon = engine.containers.inspect(cid)["Mounts"][0]["Name"]
    engine.containers.start(cid)
    engine.containers.wait(cid, condition="removed", timeout=30)
    assert anon not in {v["Name"] for v in engine.volumes.list()}


# ------------------------------------------------------------------ binds, ro, tmpfs


def test_binds_make_missing_dirs_mounts_do_not(engine: Engine, tmp_path: Path) -> None:
    host = tmp_path / "host" / "deep"
    ok(engine, "echo in > /h/f", {"Binds": [f"{host}:/h"]})
    assert (host / "f").read_text() == "in\n"
    missing = tmp_path / "missing"
    with pytest.raises(InvalidArgument, match="bind source path does not exist"):
        engine.containers.create({"Image": IMAGE, "Cmd": ["true"]}, {"Mounts": [
            {"Type": "bind", "Source": str(missing), "Target": "/m"}]})
    assert not missing.exists()
    out = ok(engine, "cat /m/f; grep ' /m ' /proc/self/mountinfo",
             {"Mounts": [{"Type": "bind", "Source": str(host), "Target": "/m",
                          "BindOptions": {"Propagation": "rshared"}}]})
    assert out.startswith(b"in\n") and b"shared:" in out
    with pytest.raises(InvalidArgument, match="Duplicate mount point"):
        engine.containers.create({"Image": IMAGE, "Cmd": ["true"]}, {
            "Binds": [f"{host}:/d"], "Mounts": [{"Type": "tmpfs", "Target": "/d"}]})


def test_read_only_refuses_writes(engine: Engine, tmp_path: Path) -> None:
    host = tmp_path / "ro"
    host.mkdir()
    (host / "f").write_text("host\n")
    script = ("cat /b/f; for d in /b /v /m /t; do touch $d/new 2>/dev/null && echo wrote $d; "
              "done; true")
    out = ok(engine, script, {
        "Binds": [f"{host}:/b:ro", "rovol:/v:ro"],
        "Mounts": [{"Type": "volume", "Source": "rovol2", "Target": "/m", "ReadOnly": True},
                   {"Type": "tmpfs", "Target": "/t", "ReadOnly": True}]})
    assert out == b"host\n"
    assert sorted(os.listdir(host)) == ["f"]


def test_tmpfs_size_and_mode_are_enforced(engine: Engine) -> None:
    script = ("stat -c %a {t}; dd if=/dev/zero of={t}/big bs=1024 count=2048 2>/dev/null "
              "&& echo fit || echo full; du -k {t}/big | cut -f1")
    out = ok(engine, script.format(t="/t"), {"Tmpfs": {"/t": "size=1m,mode=1770"}})
    assert out.split() == [b"1770", b"full", b"1024"]
    out = ok(engine, script.format(t="/m"), {"Mounts": [
        {"Type": "tmpfs", "Target": "/m", "TmpfsOptions": {"SizeBytes": 1 << 20,
                                                           "Mode": 0o700}}]})
    assert out.split() == [b"700", b"full", b"1024"]


def test_volumes_from_and_inspect_mounts(engine: Engine, tmp_path: Path) -> None:
    host = tmp_path / "shared-host"
    host.mkdir()
    (host / "f").write_text("h\n")
    _, _, src = run(engine, "echo v > /v/f",
                    {"Binds": ["vf:/v", f"{host}:/h:ro"]}, remove=False)
    mounts = sorted(engine.containers.inspect(src)["Mounts"], key=lambda m: m["Destination"])
    assert mounts[0] == {"Type": "bind", "Source": str(host), "Destination": "/h",
                         "Mode": "ro", "RW": False, "Propagation": "rprivate"}
    assert mounts[1]["Type"] == "volume" and mounts[1]["Name"] == "vf"
    assert mounts[1]["Driver"] == "local" and mounts[1]["RW"] is True
    assert engine.containers.list(all=True, filters={"id": [src]})[0]["Mounts"] == \
        engine.containers.inspect(src)["Mounts"]
    out = ok(engine, "cat /v/f /h/f; touch /v/g 2>/dev/null || echo ro",
             {"VolumesFrom": [f"{src[:12]}:ro"]})
    assert out == b"v\nh\nro\n"
    with pytest.raises(NotFound):
        engine.containers.create({"Image": IMAGE, "Cmd": ["true"]},
                                 {"VolumesFrom": ["no-such-container"]})
    engine.containers.remove(src, volumes=True)
    assert engine.volumes.inspect("vf")["Name"] == "vf"


# ------------------------------------------------------------------ device volumes


def test_device_volumes_mounted_only_while_used(engine: Engine, tmp_path: Path) -> None:
    engine.volumes.create("ram", driver_opts={"type": "tmpfs", "device": "tmpfs",
                                              "o": "size=2m,mode=0777"})
    host = tmp_path / "bound"
    host.mkdir()
    engine.volumes.create("hostdir", driver_opts={"type": "none", "device": str(host),
                                                  "o": "bind"})
    ram = engine.volumes.inspect("ram")
    assert ram["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=2m,mode=0777"}
    assert not local.is_mounted(ram["Mountpoint"])
    _, _, a = run(engine, "echo r > /r/f; echo b > /b/f", {"Binds": ["ram:/r", "hostdir:/b"]},
                  remove=False)
    _, _, b = run(engine, "cat /r/f", {"Binds": ["ram:/r"]}, remove=False)
    assert logs(engine, b) == b"r\n"
    assert (host / "f").read_text() == "b\n"
    assert local.is_mounted(ram["Mountpoint"])
    out = ok(engine, "dd if=/dev/zero of=/r/big bs=1024 count=4096 2>/dev/null || echo full",
             {"Binds": ["ram:/r"]})
    assert out == b"full\n"
    engine.containers.remove(a)
    assert local.is_mounted(ram["Mountpoint"])  # b still uses it
    assert not local.is_mounted(engine.volumes.inspect("hostdir")["Mountpoint"])
    engine.containers.remove(b)
    assert not local.is_mounted(ram["Mountpoint"])
    engine.volumes.remove("hostdir")
    assert (host / "f").read_text() == "b\n"  # removing the volume never touches the device


def test_engine_restart_remounts_and_unmounts(engines: VolEngines, engine: Engine) -> None:
    engine.volumes.create("ram", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    _, _, cid = run(engine, "echo r > /r/f", {"Binds": ["ram:/r"]}, remove=False)
    point = engine.volumes.inspect("ram")["Mountpoint"]
    engine.close()
    local.unmount(point)  # as after a host reboot
    again = engines.open(image=False)
    assert local.is_mounted(point)
    again.containers.remove(cid)
    assert not local.is_mounted(point)
    # a volume left mounted with no user is unmounted at the next start
    local.mount_device({"type": "tmpfs", "device": "tmpfs"}, point)
    again.close()
    third = engines.open(image=False)
    assert not local.is_mounted(point)
    third.volumes.remove("ram")


@pytest.fixture
def loop_ext4(tmp_path: Path, leak_scanner: LeakScanner) -> Iterator[str]:
    """A loop device over an 8 MiB ext4 image file under tmp_path; detached at teardown."""
    img = tmp_path / "fs.img"
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True, capture_output=True)
    dev = subprocess.run(["losetup", "--find", "--show", str(img)], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        assert any(str(img) in leak for leak in leak_scanner.leaked_loops())  # it would see one
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)


def test_filesystem_device_volume(engine: Engine, loop_ext4: str) -> None:
    engine.volumes.create("disk", driver_opts={"type": "ext4", "device": loop_ext4,
                                               "o": "noatime"})
    point = engine.volumes.inspect("disk")["Mountpoint"]
    _, _, a = run(engine, "echo on-disk > /d/f; grep ' /d ' /proc/mounts", {"Binds": ["disk:/d"]},
                  remove=False)
    line = logs(engine, a).decode()
    assert "ext4" in line and "noatime" in line
    assert local.is_mounted(point)
    engine.containers.remove(a)
    assert not local.is_mounted(point)  # no container uses it: unmounted
    # the data is on the device: mounted again for the next container
    assert ok(engine, "cat /d/f", {"Binds": ["disk:/d"]}) == b"on-disk\n"
    assert not local.is_mounted(point)
    engine.volumes.remove("disk")
    with pytest.raises(SystemError_, match="mount"):
        engine.volumes.create("bad", driver_opts={"type": "ext4", "device": "/dev/null"})
        run(engine, "true", {"Binds": ["bad:/b"]})
    assert engine.containers.list(all=True) == []
    assert not local.is_mounted(engine.volumes.inspect("bad")["Mountpoint"])


def test_a_lost_device_mount_is_made_again_at_start(engine: Engine) -> None:
    engine.volumes.create("ram", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["sh", "-c", "grep -c ' /r tmpfs' "
                                                           "/proc/mounts"]},
                                   {"Binds": ["ram:/r"]})
    point = engine.volumes.inspect("ram")["Mountpoint"]
    local.unmount(point)  # as a reboot would
    engine.containers.start(cid)
    assert engine.containers.wait(cid, timeout=30)["StatusCode"] == 0
    assert logs(engine, cid) == b"1\n" and local.is_mounted(point)
    engine.containers.remove(cid)
    assert not local.is_mounted(point)


def _in_txt() -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        _add(tf, "in.txt", data=b"from the host\n")
    buf.seek(0)
    return buf


def _put_and_check(engine: Engine, cid: str, mountpoint: Path) -> None:
    """docker cp of in.txt into /data lands in the volume mounted there."""
    engine.containers.put_archive(cid, "/data", _in_txt())
    assert (mountpoint / "in.txt").read_bytes() == b"from the host\n"


def test_cp_in_and_out_of_a_running_container_goes_through_its_volumes(engine: Engine
                                                                       ) -> None:
    """docker cp sees what the container sees: a path in a volume is the volume's, not the
    overlay directory under the mount."""
    engine.volumes.create("cpvol")
    cid = engine.containers.create({"Image": IMAGE, "Cmd": ["sh", "-c",
                                    "echo inside > /data/out; sleep 30"]},
                                   {"Binds": ["cpvol:/data"]})  # fmt: skip
    engine.containers.start(cid)
    try:
        mountpoint = Path(engine.volumes.inspect("cpvol")["Mountpoint"])
        deadline = time.monotonic() + 10
        while not (mountpoint / "out").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _put_and_check(engine, cid, mountpoint)
        st, chunks = engine.containers.get_archive(cid, "/data/out")
        assert st["name"] == "out" and st["size"] == len(b"inside\n")
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tf:
            member = tf.extractfile("out")
            assert member is not None and member.read() == b"inside\n"
        assert engine.containers.stat_path(cid, "/data/in.txt")["size"] == 14
    finally:
        engine.containers.remove(cid, force=True)


def _mount_points(*under: Path) -> set[str]:
    """The host's mount points beneath `under` (other tests may mount elsewhere meanwhile)."""
    points = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    return {p for p in points if any(p.startswith(str(u)) for u in under)}


def test_cp_of_a_stopped_container_goes_through_its_volumes_and_binds(
        engine: Engine, tmp_path: Path) -> None:
    """docker cp of an exited container still sees its volumes and binds (in a mount
    namespace of the copy's own: the host's mount table does not change), read-only binds
    stay read-only, and nothing is left open afterwards."""
    engine.volumes.create("cpstop")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "host.txt").write_bytes(b"host file\n")
    code, _, cid = run(engine, "echo inside > /data/out; echo rootfs > /data2",
                       {"Binds": ["cpstop:/data", f"{shared}:/ro:ro"]}, remove=False)
    assert code == 0
    mountpoint = Path(engine.volumes.inspect("cpstop")["Mountpoint"])
    watched = (mountpoint.parents[2], shared)  # the engine's root (volumes, overlays), binds
    mounts, fds = _mount_points(*watched), len(os.listdir("/proc/self/fd"))
    try:
        st, chunks = engine.containers.get_archive(cid, "/data/out")
        assert st["size"] == len(b"inside\n")
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tf:
            member = tf.extractfile("out")
            assert member is not None and member.read() == b"inside\n"
        assert engine.containers.stat_path(cid, "/ro/host.txt")["size"] == 10
        _put_and_check(engine, cid, mountpoint)
        with pytest.raises(SystemError_, match="Read-only file system"):
            engine.containers.put_archive(cid, "/ro", _in_txt())
        assert not (shared / "in.txt").exists()
        # a stream dropped unread lets its namespace go too
        _, unread = engine.containers.get_archive(cid, "/data")
        del unread
        # the host saw no mount, and every fd of the copies is closed
        assert _mount_points(*watched) == mounts
        assert len(os.listdir("/proc/self/fd")) == fds
        # the rootfs itself is still the overlay: a file beside the volume
        st, _ = engine.containers.get_archive(cid, "/data2")
        assert st["size"] == len(b"rootfs\n")
    finally:
        engine.containers.remove(cid)


def test_volume_mount_and_unmount_events(engine: Engine) -> None:
    engine.volumes.create("evvol")
    sub = engine.events.subscribe(filters={"type": ["volume"], "volume": ["evvol"]})
    try:
        code, _, cid = run(engine, "true", {"Binds": ["evvol:/ev:ro"]})
        assert code == 0
        mount = sub.get(timeout=5)
        unmount = sub.get(timeout=5)
    finally:
        sub.close()
    assert mount is not None and mount["Action"] == "mount", mount
    assert mount["Actor"]["Attributes"] == {"driver": "local", "container": cid,
                                            "destination": "/ev", "propagation": "",
                                            "read/write": "false"}
    assert unmount is not None and unmount["Action"] == "unmount", unmount
    assert unmount["Actor"]["Attributes"] == {"driver": "local", "container": cid}
