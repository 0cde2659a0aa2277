"""Hostile images and volumes: mount targets and copy-up never leave the container.

- An image whose mount targets are symlinks to /etc, to an absolute host path, and a
  relative path climbing out: the mounts land inside the container's rootfs, copy-up
  reads the image's files only, and a sentinel directory on the host stays untouched
  with nothing mounted over it or over the host's /etc.
- A loop that swaps a directory and a symlink (to "/", to /etc, to the host sentinel)
  inside a shared volume while containers start with a read-only bind below it: every
  container that starts has that bind read-only wherever it landed, nothing is mounted
  in the host's namespace, the sentinel and the read-only directory keep their content.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyrt.engine import Engine
from pyrt.errors import PyrtError
from pyrt.images.importer import import_rootfs
from tests.integration.test_engine import IMAGE, busybox_tar, logs  # noqa: F401
from tests.integration.test_volumes import VolEngines, app_tar

HOSTILE = "pyrt-test-hostile:1"
_RENAME_EXCHANGE = 2


def host_mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def new_mounts(before: set[str], tmp_path: Path) -> set[str]:
    """Mounts made since `before`, less the engine's own (overlays below its root) and
    other test sessions' (the leak scanner watches those): a mount on the sentinel, the
    read-only directory or any host path counts."""
    own = (str(tmp_path / "root") + "/", str(tmp_path / "run") + "/")
    return {m for m in host_mounts() - before
            if not m.startswith(own) and not (m.startswith("/tmp/pytest-of-")
                                              and not m.startswith(str(tmp_path) + "/"))}


def exchange(a: str, b: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(-100, a.encode(), -100, b.encode(), _RENAME_EXCHANGE) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), a)


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "sentinel"
    d.mkdir()
    (d / "SENTINEL").write_text("untouched\n")
    yield d
    assert sorted(os.listdir(d)) == ["SENTINEL"]
    assert (d / "SENTINEL").read_text() == "untouched\n"


@pytest.fixture
def engine(tmp_path: Path, busybox_tar: Path, sentinel: Path  # noqa: F811
           ) -> Iterator[Engine]:
    es = VolEngines(tmp_path, busybox_tar)
    e = es.open()
    depth = "../" * 12
    tar = app_tar(busybox_tar, tmp_path / "hostile.tar", [
        {"name": "evil", "kind": b"2", "link": "/etc"},
        {"name": "hostlink", "kind": b"2", "link": str(sentinel)},
        {"name": "climb", "kind": b"2", "link": depth + str(sentinel).lstrip("/")},
    ])
    import_rootfs(str(tar), store=e.content, service=e.images, reference=HOSTILE)
    yield e
    es.teardown()


def test_symlinked_mount_targets_stay_in_the_rootfs(engine: Engine, sentinel: Path,
                                                    tmp_path: Path) -> None:
    before = host_mounts()
    host_etc = sorted(os.listdir("/etc"))
    cid = engine.containers.create({"Image": HOSTILE, "Cmd": ["sh", "-c", (
        f"echo e > /evil/from-container; ls /{sentinel.relative_to('/')} || echo NO-SENTINEL; "
        "ls /etc")]},
        {"Binds": ["etcvol:/evil"]})
    engine.containers.start(cid)
    assert engine.containers.wait(cid, timeout=30)["StatusCode"] == 0
    out = logs(engine, cid).decode()
    assert "NO-SENTINEL" in out
    # the image's /etc (passwd, group, hostname) was copied into the volume, not the host's;
    # hosts and resolv.conf are the mount points of the container's own files
    etcvol = Path(engine.volumes.inspect("etcvol")["Mountpoint"])
    assert sorted(os.listdir(etcvol)) == ["from-container", "group", "hostname", "hosts",
                                          "passwd", "resolv.conf"]
    assert "from-container" in out.split()  # the container's /etc is the volume
    assert sorted(os.listdir("/etc")) == host_etc
    engine.containers.remove(cid)
    # a target through a symlink to a host path that the rootfs does not have is refused
    # (the path is looked up inside the rootfs); nothing is mounted, nothing is copied
    bound = tmp_path / "bound"
    bound.mkdir()
    for binds in ([f"{bound}:/hostlink"], ["subvol:/climb/sub"], [f"{bound}:/hostlink/x"]):
        cid = engine.containers.create({"Image": HOSTILE, "Cmd": ["sh", "-c", "touch /x"]},
                                       {"Binds": binds})
        with pytest.raises(PyrtError, match="inside the rootfs"):
            engine.containers.start(cid)
        engine.containers.remove(cid, volumes=True)
    assert os.listdir(bound) == []
    assert new_mounts(before, tmp_path) == set()


def test_swapping_a_directory_and_a_symlink_while_containers_start(
        engine: Engine, sentinel: Path, tmp_path: Path) -> None:
    before = host_mounts()
    ro = tmp_path / "readonly-host"
    ro.mkdir()
    (ro / "f").write_text("ro\n")
    shared = Path(engine.volumes.create("shared")["Mountpoint"])
    (shared / "sub").mkdir()
    targets = ["/", "/etc", str(sentinel), "../../../../../../../" + str(sentinel)]
    for i, t in enumerate(targets):
        (shared / f"alt{i}").symlink_to(t)
    stop = threading.Event()
    swaps = [0]

    def swapper() -> None:
        i = 0
        while not stop.is_set():
            alt = str(shared / f"alt{i % len(targets)}")
            exchange(str(shared / "sub"), alt)  # sub is a symlink now
            exchange(str(shared / "sub"), alt)  # and a directory again
            swaps[0] += 2
            i += 1

    t = threading.Thread(target=swapper, daemon=True)
    t.start()
    started = refused = 0
    # the bind's root in the container's mountinfo is its host path
    script = (f"awk '$4 == \"{ro}\" {{print $5, $6}}' /proc/self/mountinfo; "
              "touch /shared/sub/x 2>/dev/null; true")
    try:
        for _ in range(20):
            try:
                cid = engine.containers.create(
                    {"Image": IMAGE, "Cmd": ["sh", "-c", script]},
                    {"Binds": ["shared:/shared", f"{ro}:/shared/sub:ro"]})
            except PyrtError:
                refused += 1
                continue
            try:
                engine.containers.start(cid)
            except PyrtError:
                refused += 1
                engine.containers.remove(cid, force=True)
                continue
            engine.containers.wait(cid, timeout=30)
            lines = logs(engine, cid).decode().splitlines()
            engine.containers.remove(cid)
            started += 1
            assert len(lines) == 1, lines
            where, opts = lines[0].split()
            assert opts.split(",")[0] == "ro", (where, opts)
    finally:
        stop.set()
        t.join(10)
    assert swaps[0] > 100 and started + refused == 20 and started > 0, (started, refused)
    assert sorted(os.listdir(ro)) == ["f"] and (ro / "f").read_text() == "ro\n"
    assert new_mounts(before, tmp_path) == set()

