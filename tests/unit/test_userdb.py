"""User resolution from the image's passwd/group, read safely inside the rootfs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyrt.containers.userdb import (
    open_in_root,
    read_in_root,
    resolve_user,
    resolve_user_in_image,
)
from pyrt.errors import InvalidArgument

PASSWD = """root:x:0:0:root:/root:/bin/sh
# a comment
app:x:1000:1000:App:/home/app:/bin/sh
svc:x:1001:100::/srv:/bin/false
broken line
"""
GROUP = """root:x:0:
app:x:1000:
users:x:100:app,svc
wheel:x:10:app
docker:x:999:svc
"""

# openat2 (the kernel's RESOLVE_IN_ROOT) and the hand-written walk must agree
MODES = [None, False]


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return root


@pytest.mark.parametrize("mode", MODES)
def test_forms(rootfs: Path, mode: bool | None) -> None:
    r = str(rootfs)
    u = resolve_user(r, "", use_openat2=mode)
    assert (u.uid, u.gid, u.home, u.username) == (0, 0, "/root", "root")
    u = resolve_user(r, "app", use_openat2=mode)
    assert (u.uid, u.gid, u.home) == (1000, 1000, "/home/app")
    assert u.additional_gids == [100, 10]  # /etc/group membership, in file order
    u = resolve_user(r, "1001", use_openat2=mode)
    assert (u.uid, u.gid, u.username, u.additional_gids) == (1001, 100, "svc", [100, 999])
    u = resolve_user(r, "4242", use_openat2=mode)  # numeric: no passwd entry needed
    assert (u.uid, u.gid, u.username, u.home) == (4242, 0, None, "/")
    u = resolve_user(r, "app:docker", use_openat2=mode)
    assert (u.uid, u.gid, u.additional_gids) == (1000, 999, [])  # explicit group: no sgids
    u = resolve_user(r, "4242:77", use_openat2=mode)
    assert (u.uid, u.gid) == (4242, 77)
    u = resolve_user(r, "svc", ["wheel", "5000"], use_openat2=mode)
    assert u.additional_gids == [100, 999, 10, 5000]


def test_errors(rootfs: Path) -> None:
    r = str(rootfs)
    with pytest.raises(InvalidArgument, match="^unable to find user nobody: no matching entries "
                       "in passwd file$"):  # fmt: skip
        resolve_user(r, "nobody")
    with pytest.raises(InvalidArgument, match="unable to find group ghosts: no matching entries "
                       "in group file"):  # fmt: skip
        resolve_user(r, "app:ghosts")
    with pytest.raises(InvalidArgument, match="GroupAdd\\[0\\]: unable to find group nogroup"):
        resolve_user(r, "app", ["nogroup"])
    with pytest.raises(InvalidArgument, match="uids and gids must be in range"):
        resolve_user(r, "99999999999")
    with pytest.raises(InvalidArgument, match="empty group"):
        resolve_user(r, "app:")


def test_no_passwd_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    assert resolve_user(str(tmp_path), "123:45").uid == 123
    with pytest.raises(InvalidArgument, match="unable to find user app"):
        resolve_user(str(tmp_path), "app")


@pytest.mark.parametrize("mode", MODES)
def test_symlinks_stay_inside_the_root(tmp_path: Path, mode: bool | None) -> None:
    """An image whose /etc/passwd is a symlink to the host's (absolute, or climbing with
    ..) reads its own files, never the host's."""
    host_secret = tmp_path / "etc"
    host_secret.mkdir()
    (host_secret / "passwd").write_text("hostonly:x:7:7::/:/bin/sh\n")
    root = tmp_path / "img"
    (root / "etc").mkdir(parents=True)
    (root / "real").mkdir()
    (root / "real" / "passwd").write_text("inside:x:8:8::/:/bin/sh\n")
    (root / "etc" / "passwd").symlink_to("/../../../real/passwd")
    assert resolve_user(str(root), "inside", use_openat2=mode).uid == 8
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to("../../../../etc/passwd")  # -> the rootfs's /etc/passwd
    # that is itself: a loop, reported as no file -> names are unknown
    with pytest.raises(InvalidArgument, match="unable to find user hostonly"):
        resolve_user(str(root), "hostonly", use_openat2=mode)
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to(str(host_secret / "passwd"))  # absolute host path
    with pytest.raises(InvalidArgument, match="unable to find user hostonly"):
        resolve_user(str(root), "hostonly", use_openat2=mode)
    # a directory symlink climbing out
    (root / "etc" / "passwd").unlink()
    (root / "etc").rmdir()
    (root / "etc").symlink_to("../../..")
    assert read_in_root(str(root), "/etc/passwd", use_openat2=mode) is None


@pytest.mark.parametrize("mode", MODES)
def test_open_in_root_relative_links_and_dotdot(tmp_path: Path, mode: bool | None) -> None:
    root = tmp_path / "r"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("data")
    (root / "link").symlink_to("a/b")
    fd = open_in_root(str(root), "/../../link/../b/f", use_openat2=mode)
    try:
        assert os.read(fd, 10) == b"data"
    finally:
        os.close(fd)


def test_non_regular_file_refused(tmp_path: Path) -> None:
    (tmp_path / "etc" / "passwd").mkdir(parents=True)
    with pytest.raises(InvalidArgument, match="/etc/passwd in the image is not a regular file"):
        resolve_user(str(tmp_path), "x")


def test_answers_kept_per_image(rootfs: Path) -> None:
    """resolve_user_in_image reads an image's files once: a rootfs changed afterwards (never
    the case at create, which is where it is used) gives the kept answer for that image id,
    and a new image id reads the files again."""
    r = str(rootfs)
    img = "sha256:" + os.urandom(32).hex()  # unique per run: the cache is per process
    u = resolve_user_in_image(img, r, "app", ["wheel"])
    assert (u.uid, u.gid, u.additional_gids) == (1000, 1000, [100, 10])
    u.additional_gids.append(1)  # the caller's copy: the kept answer stays as it was
    (rootfs / "etc" / "passwd").write_text("app:x:2000:2000::/:/bin/sh\n")
    again = resolve_user_in_image(img, r, "app", ["wheel"])
    assert (again.uid, again.additional_gids) == (1000, [100, 10])
    assert resolve_user_in_image(img + "0", r, "app").uid == 2000
    assert resolve_user_in_image(img, r, "app").uid == 2000  # another GroupAdd: read again
    with pytest.raises(InvalidArgument):
        resolve_user_in_image(img, r, "nobody")  # errors are not kept
    (rootfs / "etc" / "passwd").write_text(PASSWD.replace("app:", "nobody:x:3:3::/:/bin/sh\napp:"))
    assert resolve_user_in_image(img, r, "nobody").uid == 3
