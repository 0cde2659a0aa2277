"""record.Paths: one directory per container on each side (no subdirectories), and the
older layout of subdirectories still read for containers made with it."""

from __future__ import annotations

from pathlib import Path

from pyrt.containers.record import Paths
from pyrt.containers.shim_client import STATE_FILES, reset_state_dir


def test_one_directory_per_container(tmp_path: Path) -> None:
    p = Paths(tmp_path / "root" / "c1", tmp_path / "run" / "c1", "c1")
    assert p.etc == p.fs == p.root
    assert p.upper == p.root / "upper" and p.merged == p.root / "merged"
    assert p.bundle == p.shim == p.run
    assert p.log == p.root / "c1-json.log"


def test_older_layout_is_kept(tmp_path: Path) -> None:
    p = Paths(tmp_path / "root" / "c1", tmp_path / "run" / "c1", "c1")
    for d in (p.root / "etc", p.root / "fs", p.run / "bundle", p.run / "shim"):
        d.mkdir(parents=True)
    assert p.etc == p.root / "etc" and p.fs == p.root / "fs"
    assert p.upper == p.root / "fs" / "upper" and p.merged == p.root / "fs" / "merged"
    assert p.bundle == p.run / "bundle" and p.shim == p.run / "shim"


def test_reset_state_dir_removes_only_the_shims_files(tmp_path: Path) -> None:
    d = tmp_path / "run" / "c1"
    reset_state_dir(d)  # made when missing
    assert d.is_dir()
    for name in STATE_FILES:
        (d / name).write_text("old")
    (d / "config.json").write_text("{}")
    reset_state_dir(d)
    assert sorted(x.name for x in d.iterdir()) == ["config.json"]
