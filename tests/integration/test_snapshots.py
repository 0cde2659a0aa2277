"""Snapshots on a real kernel: unpack once per chain id (also under concurrency), diff id
checks that leave nothing behind, refcounts through image_layers, reconcile after a
simulated crash, and overlay views (mount, write, lower untouched, unmount, docker diff,
the single-layer and no-layer paths, and a stack too long for absolute lowerdir paths).
Every mount is detached in teardown and checked gone from /proc/self/mountinfo.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyrt.errors import FailedPrecondition, InvalidArgument
from pyrt.metadata.db import Database
from pyrt.snapshots import unpack as unpack_mod
from pyrt.snapshots.overlay import MOUNT_DATA_LIMIT, Change, RootfsMount, diff
from pyrt.snapshots.service import SnapshotService, chain_of
from tests.registry_fixtures import make_layer, sha256


def mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


class Layers:
    """Writes layer blobs into a directory and tracks their chain."""

    def __init__(self, d: Path) -> None:
        self.d = d
        d.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def blob(self, files: dict[str, bytes]) -> tuple[Path, str]:
        gz, tar = make_layer(files)
        self.n += 1
        p = self.d / f"layer{self.n}.tar.gz"
        p.write_bytes(gz)
        return p, sha256(tar)


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[SnapshotService]:
    db = Database(tmp_path / "meta.db")
    yield SnapshotService(tmp_path / "root", db)
    db.close()


@pytest.fixture
def mounts() -> Iterator[list[RootfsMount]]:
    made: list[RootfsMount] = []
    yield made
    for m in made:
        target = m.target
        m.unmount()
        if target is not None:
            assert not mounted(Path(target))


def stack(svc: SnapshotService, layers: Layers, contents: list[dict[str, bytes]]) -> list[str]:
    chain: list[str] = []
    for files in contents:
        blob, diff_id = layers.blob(files)
        parent = chain[-1] if chain else None
        cid = chain_of(parent, diff_id)
        svc.ensure(cid, parent, diff_id, blob)
        chain.append(cid)
    return chain


def add_image(db: Database, image_id: str, chain: list[str]) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO images (id, config_json, architecture, os, added_at) "
                     "VALUES (?, '{}', 'amd64', 'linux', 0)", (image_id,))
        for i, c in enumerate(chain):
            conn.execute("INSERT INTO image_layers (image_id, position, chain_id) "
                         "VALUES (?, ?, ?)", (image_id, i, c))


def drop_image(db: Database, image_id: str) -> None:
    with db.transaction() as conn:
        conn.execute("DELETE FROM images WHERE id = ?", (image_id,))


# -- ensure ---------------------------------------------------------------------------------


def test_ensure_unpacks_into_place_and_lists_lowers(svc: SnapshotService, tmp_path: Path) -> None:
    layers = Layers(tmp_path / "blobs")
    chain = stack(svc, layers, [{"etc/a": b"1"}, {"etc/b": b"2"}, {"x": b"3"}])
    top = svc.get(chain[-1])
    assert top.parent == chain[1] and top.refcount == 0 and top.size > 0
    assert (top.path / "x").read_bytes() == b"3"
    assert svc.lower_dirs(chain[-1]) == [str(svc.fs_path(c)) for c in reversed(chain)]
    assert os.readlink(svc.short_link(chain[0])) == f"../{chain[0][7:]}/fs"
    assert list(svc.tmp.iterdir()) == []
    # ensure again: same row, nothing unpacked
    before = top.path.stat().st_ino
    assert svc.ensure(chain[0], None, svc.get(chain[0]).diff_id, layers.d / "layer1.tar.gz")
    assert svc.fs_path(chain[-1]).stat().st_ino == before


def test_ensure_refuses_wrong_chain_and_missing_parent(svc: SnapshotService,
                                                       tmp_path: Path) -> None:
    layers = Layers(tmp_path / "blobs")
    blob, diff_id = layers.blob({"a": b"1"})
    with pytest.raises(InvalidArgument, match="chain id of diff id"):
        svc.ensure(chain_of(diff_id, diff_id), None, diff_id, blob)
    parent = sha256(b"nobody")
    with pytest.raises(FailedPrecondition, match="parent snapshot .* does not exist"):
        svc.ensure(chain_of(parent, diff_id), parent, diff_id, blob)
    assert svc.list() == []


def test_diff_id_mismatch_names_both_and_leaves_nothing(svc: SnapshotService,
                                                        tmp_path: Path) -> None:
    layers = Layers(tmp_path / "blobs")
    blob, real = layers.blob({"a": b"1"})
    claimed = sha256(b"something else")
    with pytest.raises(InvalidArgument) as ei:
        svc.ensure(claimed, None, claimed, blob)
    assert claimed in str(ei.value) and real in str(ei.value)
    assert svc.list() == []
    assert list(svc.tmp.iterdir()) == []
    assert not svc.snapshot_dir(claimed).exists()


def test_hostile_layer_refused_nothing_left(svc: SnapshotService, tmp_path: Path) -> None:
    import gzip
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("../../escape")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    tar = buf.getvalue()
    blob = tmp_path / "evil.tar.gz"
    blob.write_bytes(gzip.compress(tar))
    d = sha256(tar)
    with pytest.raises(InvalidArgument):
        svc.ensure(d, None, d, blob)
    assert svc.list() == [] and list(svc.tmp.iterdir()) == []
    assert not (tmp_path / "escape").exists()


def test_concurrent_ensure_unpacks_once(svc: SnapshotService, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    layers = Layers(tmp_path / "blobs")
    blob, diff_id = layers.blob({f"f{i}": os.urandom(20_000) for i in range(50)})
    calls: list[int] = []
    real = unpack_mod.unpack_layer

    def counting(*a: object, **kw: object) -> object:
        calls.append(1)
        time.sleep(0.2)  # widen the window
        return real(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(unpack_mod, "unpack_layer", counting)
    results: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(svc.ensure(diff_id, None, diff_id, blob))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(calls) == 1
    assert len(results) == 6 and len(svc.list()) == 1


# -- refcounts and removal --------------------------------------------------------------------


def test_refcount_children_pins_and_remove_unused(svc: SnapshotService, tmp_path: Path) -> None:
    layers = Layers(tmp_path / "blobs")
    base = stack(svc, layers, [{"base": b"b"}])
    a = stack_on(svc, layers, base, {"a": b"a"})
    b = stack_on(svc, layers, base, {"b": b"b"})
    add_image(svc.db, sha256(b"img-a"), base + [a])
    add_image(svc.db, sha256(b"img-b"), base + [b])
    assert svc.get(base[0]).refcount == 2
    assert svc.remove_unused() == []
    drop_image(svc.db, sha256(b"img-a"))
    assert svc.get(base[0]).refcount == 1 and svc.get(a).refcount == 0
    with pytest.raises(FailedPrecondition, match="in use"):
        svc.remove(base[0])
    with svc.hold([a]):
        assert svc.remove_unused() == []
    assert svc.remove_unused() == [a]
    assert not svc.snapshot_dir(a).exists() and not os.path.lexists(svc.short_link(a))
    assert svc.fs_path(base[0]).is_dir()
    drop_image(svc.db, sha256(b"img-b"))
    # the top goes first, which frees the base in the same call
    assert svc.remove_unused() == [b, base[0]]
    assert svc.list() == []
    assert sorted(p.name for p in svc.dir.iterdir()) == ["l", "locks", "tmp"]


def stack_on(svc: SnapshotService, layers: Layers, chain: list[str],
             files: dict[str, bytes]) -> str:
    blob, diff_id = layers.blob(files)
    cid = chain_of(chain[-1], diff_id)
    svc.ensure(cid, chain[-1], diff_id, blob)
    return cid


def test_reconcile_after_simulated_crash(tmp_path: Path) -> None:
    db = Database(tmp_path / "meta.db")
    svc = SnapshotService(tmp_path / "root", db)
    layers = Layers(tmp_path / "blobs")
    kept = stack(svc, layers, [{"keep": b"k"}])[0]
    # crash 1: in the middle of an unpack
    half = svc.tmp / "unpack-deadbeef-123"
    (half / "fs" / "etc").mkdir(parents=True)
    (half / "fs" / "etc" / "partial").write_bytes(b"x")
    # crash 2: renamed into place, row never written
    ghost = sha256(b"ghost")
    shutil.copytree(svc.snapshot_dir(kept), svc.snapshot_dir(ghost), symlinks=True)
    os.symlink(f"../{ghost[7:]}/fs", svc.short_link(ghost))
    # a dangling link
    os.symlink("../" + "0" * 64 + "/fs", svc.links / ("0" * 16))
    db.close()

    db2 = Database(tmp_path / "meta.db")
    svc2 = SnapshotService(tmp_path / "root", db2)
    assert not half.exists()
    assert not svc2.snapshot_dir(ghost).exists() and not os.path.lexists(svc2.short_link(ghost))
    assert not os.path.lexists(svc2.links / ("0" * 16))
    assert svc2.fs_path(kept).is_dir() and [s.chain_id for s in svc2.list()] == [kept]
    report = svc2.reconcile()  # a second pass finds nothing
    assert report.removed_temp == [] and report.removed_unrecorded == []
    db2.close()


# -- overlay --------------------------------------------------------------------------------


def test_overlay_mount_write_unmount(svc: SnapshotService, tmp_path: Path,
                                     mounts: list[RootfsMount]) -> None:
    layers = Layers(tmp_path / "blobs")
    chain = stack(svc, layers, [{"etc/a": b"1", "etc/b": b"2"}, {"etc/b": b"22", "c": b"3"}])
    rootfs = svc.prepare_container_rootfs(chain[-1], tmp_path / "c1")
    mounts.append(rootfs)
    assert rootfs.source == "overlay" and rootfs.fstype == "overlay" and rootfs.cwd is None
    assert rootfs.options[0] == "lowerdir=" + ":".join(svc.lower_dirs(chain[-1]))
    assert rootfs.options[1:] == (f"upperdir={tmp_path}/c1/upper", f"workdir={tmp_path}/c1/work")
    merged = tmp_path / "c1" / "merged"
    merged.mkdir()
    rootfs.mount(merged)
    assert mounted(merged)
    assert (merged / "etc" / "b").read_bytes() == b"22"
    (merged / "etc" / "b").write_bytes(b"written")
    (merged / "new").write_bytes(b"n")
    os.unlink(merged / "etc" / "a")
    assert (tmp_path / "c1" / "upper" / "new").read_bytes() == b"n"
    assert (svc.fs_path(chain[1]) / "etc" / "b").read_bytes() == b"22"
    assert (svc.fs_path(chain[0]) / "etc" / "a").read_bytes() == b"1"
    rootfs.unmount()
    assert not mounted(merged) and rootfs.target is None
    assert [str(c) for c in rootfs.diff()] == ["C /etc", "D /etc/a", "C /etc/b", "A /new"]
    assert rootfs.diff()[1].to_api() == {"Path": "/etc/a", "Kind": 2}


def test_overlay_single_layer_and_no_layers(svc: SnapshotService, tmp_path: Path,
                                            mounts: list[RootfsMount]) -> None:
    layers = Layers(tmp_path / "blobs")
    chain = stack(svc, layers, [{"only": b"1"}])
    one = svc.prepare_container_rootfs(chain[0], tmp_path / "c1")
    mounts.append(one)
    assert one.single_layer and one.lowerdirs == (str(svc.fs_path(chain[0])),)
    (tmp_path / "m1").mkdir()
    one.mount(tmp_path / "m1")
    (tmp_path / "m1" / "w").write_bytes(b"w")  # the writable layer exists
    assert (tmp_path / "c1" / "upper" / "w").exists()
    assert not (svc.fs_path(chain[0]) / "w").exists()
    none = svc.prepare_container_rootfs(None, tmp_path / "c2")
    mounts.append(none)
    (tmp_path / "m2").mkdir()
    none.mount(tmp_path / "m2")
    assert os.listdir(tmp_path / "m2") == []
    (tmp_path / "m2" / "x").write_bytes(b"x")
    none.unmount()
    assert [str(c) for c in none.diff()] == ["A /x"]


def test_overlay_long_stack_uses_relative_short_links(svc: SnapshotService, tmp_path: Path,
                                                      mounts: list[RootfsMount]) -> None:
    layers = Layers(tmp_path / "blobs")
    n = MOUNT_DATA_LIMIT // 60 + 5  # absolute paths here are well over 60 bytes each
    chain = stack(svc, layers, [{f"f{i}": str(i).encode()} for i in range(n)])
    rootfs = svc.prepare_container_rootfs(chain[-1], tmp_path / "c")
    mounts.append(rootfs)
    absolute = ":".join(rootfs.lowerdirs)
    assert len(absolute) > MOUNT_DATA_LIMIT
    assert rootfs.cwd == str(svc.dir)
    assert rootfs.options[0].startswith("lowerdir=l/")
    assert len(rootfs.data) <= MOUNT_DATA_LIMIT
    cwd = os.getcwd()
    (tmp_path / "m").mkdir()
    rootfs.mount(tmp_path / "m")
    assert os.getcwd() == cwd  # the chdir happened in a thread with its own fs context
    assert sorted(os.listdir(tmp_path / "m")) == sorted(f"f{i}" for i in range(n))
    assert (tmp_path / "m" / "f0").read_bytes() == b"0"


def test_diff_whiteouts_opaque_dirs_and_lower_whiteouts(svc: SnapshotService, tmp_path: Path,
                                                        mounts: list[RootfsMount]) -> None:
    layers = Layers(tmp_path / "blobs")
    chain = stack(svc, layers, [
        {"d/x": b"x", "d/sub/y": b"y", "keep/k": b"k", "gone": b"g", "back": b"b"},
        {"keep/k2": b"k2", ".wh.back": b""},  # the second layer deletes /back
    ])
    rootfs = svc.prepare_container_rootfs(chain[-1], tmp_path / "c")
    mounts.append(rootfs)
    m = tmp_path / "m"
    m.mkdir()
    rootfs.mount(m)
    shutil.rmtree(m / "d")
    (m / "d").mkdir()
    (m / "d" / "x").write_bytes(b"new x")
    os.unlink(m / "gone")
    (m / "keep" / "k2").write_bytes(b"changed")
    (m / "newdir" / "deep").mkdir(parents=True)
    assert not (m / "back").exists()
    (m / "back").write_bytes(b"again")  # deleted by a lower layer: recreating it is an A
    rootfs.unmount()
    upper = Path(rootfs.upperdir)
    assert os.getxattr(upper / "d", "trusted.overlay.opaque") == b"y"
    got = [str(c) for c in diff(upper, rootfs.lowerdirs)]
    assert got == ["A /back", "C /d", "D /d/sub", "C /d/x", "D /gone", "C /keep",
                   "C /keep/k2", "A /newdir", "A /newdir/deep"]
    # without lowers everything in upper is new (whiteouts still deletions)
    assert Change("/gone", "D") in diff(upper)


def test_mount_targets_layer_holds_only_what_the_image_lacks(
        svc: SnapshotService, tmp_path: Path, mounts: list[RootfsMount]) -> None:
    layers = Layers(tmp_path / "blobs")
    # /etc exists with hostname; /proc exists; /sys is a symlink (left alone, not shadowed)
    chain = stack(svc, layers, [{"etc/hostname": b"img\n", "proc/.keep": b""},
                                {"bin/sh": b"x"}])
    os.symlink("proc", svc.fs_path(chain[1]) / "sys")
    image_etc = svc.fs_path(chain[0]) / "etc"
    os.chmod(image_etc, 0o750)
    os.chown(image_etc, 0, 12)
    os.utime(image_etc, ns=(1_000_000_000, 2_000_000_000))
    targets = svc.mount_targets(chain[-1])
    assert targets == svc.snapshot_dir(chain[-1]) / "targets"
    found = sorted(str(p.relative_to(targets)) for p in targets.rglob("*"))
    assert found == ["dev", "etc", "etc/hosts", "etc/resolv.conf"]
    assert (targets / "etc" / "hosts").stat().st_size == 0
    assert svc.mount_targets(chain[-1]) == targets  # made once
    assert svc.mount_targets(chain[0], create=False) is None  # not made for another top
    rootfs = svc.prepare_container_rootfs(chain[-1], tmp_path / "c1", targets=True)
    mounts.append(rootfs)
    assert rootfs.lowerdirs == (str(targets), *svc.lower_dirs(chain[-1]))
    merged = tmp_path / "c1" / "merged"
    merged.mkdir()
    rootfs.mount(merged)
    assert sorted(os.listdir(merged / "etc")) == ["hostname", "hosts", "resolv.conf"]
    assert (merged / "etc" / "hostname").read_bytes() == b"img\n"
    st = os.stat(merged / "etc")  # the image's /etc as it was, though the layer is on top
    assert (st.st_mode & 0o7777, st.st_gid, st.st_mtime_ns) == (0o750, 12, 2_000_000_000)
    assert os.path.islink(merged / "sys") and (merged / "dev").is_dir()
    # nothing of it is in the writable layer: docker diff and commit do not see it
    rootfs.unmount()
    assert os.listdir(tmp_path / "c1" / "upper") == []
    assert rootfs.diff() == []
    # it goes with the snapshot
    assert chain[-1] in svc.remove_unused()
    assert not targets.exists()


def test_mount_targets_none_when_nothing_lacks(svc: SnapshotService, tmp_path: Path) -> None:
    layers = Layers(tmp_path / "blobs")
    files = {p: b"" for p in ("etc/hostname", "etc/hosts", "etc/resolv.conf", "dev/.k",
                              "proc/.k", "sys/.k")}
    chain = stack(svc, layers, [files])
    assert svc.mount_targets(chain[0]) is None
    assert not (svc.snapshot_dir(chain[0]) / "targets").exists()
    rootfs = svc.prepare_container_rootfs(chain[0], tmp_path / "c1", targets=True)
    assert rootfs.lowerdirs == tuple(svc.lower_dirs(chain[0]))
