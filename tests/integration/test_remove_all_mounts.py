"""pyrt._core.remove_all never descends into a file system mounted below the tree (root)."""

from __future__ import annotations

import ctypes
from pathlib import Path

from pyrt import _core


def test_a_mount_point_below_the_tree_is_left_alone(tmp_path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    tree = tmp_path / "tree"
    mnt = tree / "sub" / "mnt"
    mnt.mkdir(parents=True)
    (tree / "sub" / "file").write_text("gone")
    assert libc.mount(b"tmpfs", str(mnt).encode(), b"tmpfs", 0, b"size=1m") == 0
    try:
        (mnt / "precious").write_text("kept")
        assert _core.remove_all(str(tree)) is False
        assert (mnt / "precious").read_text() == "kept"
        assert not (tree / "sub" / "file").exists()
    finally:
        assert libc.umount2(str(mnt).encode(), 2) == 0
    assert _core.remove_all(str(tree)) and not tree.exists()
