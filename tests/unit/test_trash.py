"""pyrt.containers.trash: a discarded directory disappears at once and is deleted in the
background; close() waits for it; a crash's leftovers are deleted by the next Trash."""

from __future__ import annotations

import os
from pathlib import Path

from pyrt.containers.trash import Trash


def make_tree(path: Path) -> Path:
    (path / "fs" / "upper").mkdir(parents=True)
    (path / "etc").mkdir()
    (path / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (path / "x.log").write_text("log\n")
    return path


def test_discard_renames_now_and_deletes_in_the_background(tmp_path: Path) -> None:
    root = tmp_path / "root"
    c1 = make_tree(root / "containers" / "c1")
    c2 = make_tree(root / "containers" / "c2")
    trash = Trash([root / "trash"])
    trash.discard(c1)
    assert not c1.exists() and c2.exists()
    trash.discard(root / "containers" / "gone")  # nothing there: nothing to do
    trash.close()
    assert os.listdir(root / "trash") == []
    assert os.listdir(root / "containers") == ["c2"]
    # after close, a discard deletes at once
    trash.discard(c2)
    assert os.listdir(root / "containers") == [] and os.listdir(root / "trash") == []


def test_leftovers_of_a_crash_are_deleted(tmp_path: Path) -> None:
    make_tree(tmp_path / "trash" / "c1-0011aabb")
    make_tree(tmp_path / "trash" / "c2-ffee0011")
    trash = Trash([tmp_path / "trash"])
    trash.close()
    assert os.listdir(tmp_path / "trash") == []


def test_a_path_outside_every_tree_is_deleted_in_place(tmp_path: Path) -> None:
    other = make_tree(tmp_path / "elsewhere" / "c1")
    trash = Trash([tmp_path / "root" / "trash"])
    trash.discard(other)
    assert not other.exists()
    assert not (tmp_path / "root" / "trash").exists()  # made only when used
    trash.close()
