"""pyrt._core.remove_all: rm -rf in C (the trash's background deletion)."""

from __future__ import annotations

import os
from pathlib import Path

from pyrt import _core


def test_removes_a_tree_without_following_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("kept")
    tree = tmp_path / "tree"
    (tree / "a" / "b" / "c").mkdir(parents=True)
    (tree / "a" / "f").write_text("x")
    (tree / "a" / "b" / "c" / "g").write_text("y")
    os.mkfifo(tree / "fifo")
    (tree / "to-outside").symlink_to(outside)
    (tree / "a" / "dangling").symlink_to(tmp_path / "nowhere")
    os.chmod(tree / "a" / "b", 0o500)  # root removes it anyway; others see False
    assert _core.remove_all(str(tree)) is (os.geteuid() == 0)
    if os.geteuid() != 0:
        os.chmod(tree / "a" / "b", 0o700)
        assert _core.remove_all(str(tree))
    assert not tree.exists()
    assert (outside / "keep").read_text() == "kept"


def test_missing_path_and_plain_file(tmp_path: Path) -> None:
    assert _core.remove_all(str(tmp_path / "missing"))
    f = tmp_path / "file"
    f.write_text("z")
    assert _core.remove_all(str(f)) and not f.exists()
    link = tmp_path / "link"
    link.symlink_to(tmp_path)  # the link goes, not what it points to
    assert _core.remove_all(str(link)) and not link.is_symlink() and tmp_path.is_dir()
