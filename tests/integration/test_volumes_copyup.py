"""pyrt.volumes.copyup on plain directories (root: owners are kept): symlinks are copied
as symlinks and never followed, the source is looked up inside the rootfs, a destination
that is a symlink or not empty is refused or left alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyrt.errors import SystemError_
from pyrt.volumes.copyup import copy_up


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    app = root / "srv" / "app"
    app.mkdir(parents=True)
    (app / "file").write_text("image\n")
    os.chown(app / "file", 4321, 8765)
    os.chmod(app / "file", 0o604)
    (app / "abs").symlink_to("/etc/passwd")
    (app / "etc").symlink_to("/etc")
    (app / "up").symlink_to("../../../../../../")
    (root / "etc").mkdir()
    (root / "etc" / "only-in-image").write_text("x\n")
    (root / "to-app").symlink_to("/../../../srv/app")  # resolved inside the rootfs
    return root


def test_copy_keeps_symlinks_as_symlinks(rootfs: Path, tmp_path: Path) -> None:
    dest = tmp_path / "vol"
    dest.mkdir()
    assert copy_up(str(rootfs), "/to-app", str(dest))
    assert sorted(os.listdir(dest)) == ["abs", "etc", "file", "up"]
    assert os.readlink(dest / "etc") == "/etc" and os.readlink(dest / "abs") == "/etc/passwd"
    st = os.lstat(dest / "file")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (4321, 8765, 0o604)
    assert (dest / "file").read_text() == "image\n"
    # the image's /etc through the rootfs, never the host's
    dest2 = tmp_path / "vol2"
    dest2.mkdir()
    assert copy_up(str(rootfs), "/srv/app/etc", str(dest2))
    assert os.listdir(dest2) == ["only-in-image"]
    dest3 = tmp_path / "vol3"
    dest3.mkdir()
    assert copy_up(str(rootfs), "/srv/app/up/etc", str(dest3))
    assert os.listdir(dest3) == ["only-in-image"]


def test_never_overwrites_and_never_follows_the_destination(rootfs: Path, tmp_path: Path
                                                             ) -> None:
    dest = tmp_path / "full"
    dest.mkdir()
    (dest / "mine").write_text("mine\n")
    assert not copy_up(str(rootfs), "/srv/app", str(dest))
    assert os.listdir(dest) == ["mine"]
    host = tmp_path / "host-dir"
    host.mkdir()
    link = tmp_path / "data-link"
    link.symlink_to(host)
    with pytest.raises(SystemError_, match="open volume"):
        copy_up(str(rootfs), "/srv/app", str(link))
    assert os.listdir(host) == []
    assert not copy_up(str(rootfs), "/no/such/dir", str(tmp_path / "full"))
    assert not copy_up(str(rootfs), "/srv/app/file", str(tmp_path / "full"))  # not a dir
