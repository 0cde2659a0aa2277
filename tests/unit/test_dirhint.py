"""pyrt.dirhint: the ext4 "top of directory hierarchies" flag on the containers directories."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from pyrt.dirhint import FS_IOC_GETFLAGS, FS_TOPDIR_FL, spread_subdirectories


def _flags(path: Path) -> int | None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
        return int.from_bytes(buf[:4], sys.byteorder)
    except OSError:
        return None  # the file system has no inode flags
    finally:
        os.close(fd)


def _fs_type(path: Path) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip


def test_sets_the_flag_where_the_file_system_has_it(tmp_path: Path) -> None:
    d = tmp_path / "containers"
    d.mkdir()
    (d / "kept").write_text("x")
    before = _flags(d)
    got = spread_subdirectories(d)
    after = _flags(d)
    if _fs_type(tmp_path) in ("ext2/ext3", "ext4"):  # this machine's /tmp: ext4
        assert got is True
    assert got == (after is not None and bool(after & FS_TOPDIR_FL))
    if got:
        assert before is not None and after == before | FS_TOPDIR_FL  # nothing else changed
        assert spread_subdirectories(d) is True  # again: already set
        child = d / "c1"
        child.mkdir()
        assert not (_flags(child) or 0) & FS_TOPDIR_FL  # not inherited
    assert (d / "kept").read_text() == "x"


def test_best_effort_elsewhere(tmp_path: Path) -> None:
    assert spread_subdirectories(tmp_path / "missing") is False
    f = tmp_path / "file"
    f.write_text("")
    assert spread_subdirectories(f) is False  # not a directory
    assert _fs_type(Path("/dev/shm")) == "tmpfs"
    assert spread_subdirectories("/dev/shm") is False  # tmpfs keeps no such flag
