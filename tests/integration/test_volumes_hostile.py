"""Hostile images and volumes: mount targets and copy-up never leave the container.

- An image whose mount targets are symlinks to /etc, to an absolute host path, and a
  relative path climbing out (both dangling inside the rootfs: their targets are made
  there, as runc does), and two symlinks in a loop (refused): the mounts land inside the
  container's rootfs, copy-up reads the image's files only, and a sentinel directory on
  the host stays untouched with nothing mounted over it or over the host's /etc.
- A loop that swaps a directory and a symlink (to "/", to /etc, to the host sentinel)
  inside a shared volume while containers start with a read-only bind below it: every
  container that starts has that bind read-only wherever it landed, nothing is mounted
  in the host's namespace, the sentinel and the read-only directory keep their content.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyrt.engine import Engine
from pyrt.errors import PyrtError
from pyrt.images.importer import import_rootfs
from tests.integration.test_engine import IMAGE, busybox_tar, logs  # noqa: F401
from tests.integration.test_volumes import VolEngines, app_tar

HOSTILE = "pyrt-test-hostile:1"


def host_mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def new_mounts(before: set[str], tmp_path: Path) -> set[str]:
    """Mounts made on the host since `before` where this test's symlinks point: the
    sentinel and the other paths of tmp_path (less the engine's own roots), the host's /
    and /etc, and the directories above tmp_path. (Other sessions on this machine mount
    elsewhere meanwhile; the leak scanner watches those.)"""
    own = (str(tmp_path / "root") + "/", str(tmp_path / "run") + "/")
    mine = str(tmp_path) + "/"
    above = {str(p) for p in tmp_path.parents}
    return {m for m in host_mounts() - before
            if (m.startswith(mine) and not m.startswith(own)) or m == str(tmp_path)
            or m in above or m == "/etc" or m.startswith("/etc/")}


ROUNDS = 30
#: swaps DIR/sub (a directory) with DIR/alt<i> (symlinks) by renameat2(RENAME_EXCHANGE)
#: until SIGTERM or 120 s; prints the number of swaps
SWAPPER = """
import ctypes, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
d, n = sys.argv[1], int(sys.argv[2])
count, stop = 0, [False]
signal.signal(signal.SIGTERM, lambda *a: stop.__setitem__(0, True))
end = time.monotonic() + 120
sub = (d + "/sub").encode()
alts = [(d + "/alt%d" % i).encode() for i in range(n)]
while not stop[0] and time.monotonic() < end:
    alt = alts[count % n]
    libc.renameat2(-100, sub, -100, alt, 2)
    libc.renameat2(-100, sub, -100, alt, 2)
    count += 2
print(count)
"""


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
        {"name": "loop1", "kind": b"2", "link": "/loop2"},
        {"name": "loop2", "kind": b"2", "link": "loop1"},
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
    # a target through a symlink to a host path that the rootfs does not have: the path
    # is made inside the rootfs (as runc does), never followed to the host
    inside = "/" + str(sentinel.relative_to("/"))
    for n, (binds, target, where) in enumerate((
            ([f"{tmp_path}/b0:/hostlink"], "/hostlink", tmp_path / "b0"),
            (["subvol:/climb/sub"], "/climb/sub", None),
            ([f"{tmp_path}/b2:/hostlink/x"], "/hostlink/x", tmp_path / "b2"))):
        code, out, _ = run_in(engine, f"echo {n} > {target}/w; ls -A {inside}", binds)
        assert code == 0, out
        assert "SENTINEL" not in out
        if where is None:
            where = Path(engine.volumes.inspect("subvol")["Mountpoint"])
        assert (where / "w").read_text() == f"{n}\n"
    cid = engine.containers.create({"Image": HOSTILE, "Cmd": ["true"]},
                                   {"Binds": [f"{tmp_path}/b0:/loop1"]})
    with pytest.raises(PyrtError, match="inside the rootfs"):  # symlinks in a loop
        engine.containers.start(cid)
    engine.containers.remove(cid)
    assert new_mounts(before, tmp_path) == set()


def run_in(engine: Engine, script: str, binds: list[str]) -> tuple[int, str, str]:
    cid = engine.containers.create({"Image": HOSTILE, "Cmd": ["sh", "-c", script]},
                                   {"Binds": binds})
    engine.containers.start(cid)
    code = int(engine.containers.wait(cid, timeout=30)["StatusCode"])
    out = logs(engine, cid).decode()
    engine.containers.remove(cid, volumes=True)
    return code, out, cid


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
    # the swapper is a process of its own: it runs on the other core, not between
    # this thread's GIL slices; it stops by itself after 120 s at the latest
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(shared), str(len(targets))],
                               stdout=subprocess.PIPE)
    started = refused = 0
    # the bind's root in the container's mountinfo is its host path
    script = (f"awk '$4 == \"{ro}\" {{print $5, $6}}' /proc/self/mountinfo; "
              "touch /shared/sub/x 2>/dev/null; true")
    try:
        for _ in range(ROUNDS):
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
        swapper.terminate()
        swaps = int(swapper.communicate(timeout=30)[0] or b"0")
    assert swaps > 100 and started + refused == ROUNDS and started > 0, (swaps, started, refused)
    assert sorted(os.listdir(ro)) == ["f"] and (ro / "f").read_text() == "ro\n"
    assert new_mounts(before, tmp_path) == set()

