"""Copy-up: fill an empty volume with what the image has at the mount's target.

    copied = copy_up("/var/lib/pyrt/containers/<id>/merged", "/var/lib/app", "/.../_data")

Nothing is ever reached through a symlink: the source directory is opened inside the
rootfs (openat2 RESOLVE_IN_ROOT: an image's /data -> /etc symlink reads the rootfs's own
/etc, never the host's), and everything below it, on both sides, is opened relative to
a directory fd with O_NOFOLLOW (a symlink is copied as a symlink; a name that turned into
a symlink meanwhile fails the copy rather than being followed). Owners, modes, times and
extended attributes are kept where the filesystem allows; hard links stay links; device
nodes and fifos are made again, sockets skipped. A destination that is not empty is never
touched (False is returned), as docker does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from pyrt.containers.userdb import open_in_root
from pyrt.errors import SystemError_

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_DEPTH = 256


def copy_up(rootfs: str, path: str, dest: str) -> bool:
    """Copy the image's directory `path` (inside `rootfs`) into the directory `dest` when
    `dest` is empty and `path` is a directory; True when it copied."""
    try:
        src = open_in_root(rootfs, path, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as e:
        raise SystemError_(f"copy-up: open {path} in the image: {e.strerror}", e.errno) from None
    try:
        try:
            dst = os.open(dest, _DIR)
        except OSError as e:
            raise SystemError_(f"copy-up: open volume {dest}: {e.strerror}", e.errno) from None
        try:
            if os.listdir(dst):
                return False
            try:
                _Copier().tree(src, dst, 0)
                _attrs(src, dst)
            except OSError as e:
                raise SystemError_(f"copy-up of {path} into {dest}: {e.strerror}"
                                   f"{': ' + e.filename if e.filename else ''}",
                                   e.errno) from None  # fmt: skip
            return True
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _xattrs(sfd: int, dfd: int) -> None:
    try:
        names = os.listxattr(sfd)
    except OSError:
        return
    for name in names:
        with contextlib.suppress(OSError):  # e.g. security.* the target fs refuses
            os.setxattr(dfd, name, os.getxattr(sfd, name))


def _attrs(sfd: int, dfd: int) -> None:
    """Owner, mode (after chown: chown clears setuid bits), xattrs and times."""
    st = os.fstat(sfd)
    os.fchown(dfd, st.st_uid, st.st_gid)
    os.fchmod(dfd, stat.S_IMODE(st.st_mode))
    _xattrs(sfd, dfd)
    os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))


class _Copier:
    def __init__(self) -> None:
        # (dev, ino) of a source file with more links -> (an O_PATH fd of its copy, links
        # still to be made); the fd is closed when the last link was made
        self.links: dict[tuple[int, int], list[int]] = {}

    def tree(self, sfd: int, dfd: int, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise OSError(errno.ELOOP, "directories nested too deeply")
        try:
            for entry in os.scandir(sfd):
                self.entry(sfd, dfd, entry.name, depth)
        finally:
            for fd, _left in self.links.values() if depth == 0 else ():
                os.close(fd)

    def entry(self, sfd: int, dfd: int, name: str, depth: int) -> None:
        st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dfd)
            s = os.open(name, _DIR, dir_fd=sfd)
            try:
                d = os.open(name, _DIR, dir_fd=dfd)
                try:
                    self.tree(s, d, depth + 1)
                    _attrs(s, d)
                finally:
                    os.close(d)
            finally:
                os.close(s)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=sfd), name, dir_fd=dfd)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd,
                     follow_symlinks=False)  # fmt: skip
        elif stat.S_ISREG(mode):
            if self.link(st, dfd, name):
                return
            self.file(sfd, dfd, name, st)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(name, stat.S_IFMT(mode) | 0o600, st.st_rdev, dir_fd=dfd)
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                # an O_PATH fd takes chown/chmod through its /proc link, never opening it
                proc = f"/proc/self/fd/{fd}"
                os.chown(proc, st.st_uid, st.st_gid)
                os.chmod(proc, stat.S_IMODE(mode))
                os.utime(proc, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)
        # sockets: not copied (docker's archive skips them too)

    def link(self, st: os.stat_result, dfd: int, name: str) -> bool:
        """Make `name` a hard link of an earlier copy of the same file; False if none."""
        if st.st_nlink < 2:
            return False
        known = self.links.get((st.st_dev, st.st_ino))
        if known is None:
            return False
        # linkat through the fd's /proc link: no path of the copy is walked again
        os.link(f"/proc/self/fd/{known[0]}", name, dst_dir_fd=dfd, follow_symlinks=True)
        known[1] -= 1
        if known[1] <= 0:
            os.close(known[0])
            del self.links[(st.st_dev, st.st_ino)]
        return True

    def file(self, sfd: int, dfd: int, name: str, st: os.stat_result) -> None:
        s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                    dir_fd=sfd)  # fmt: skip
        try:
            d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                        0o600, dir_fd=dfd)  # fmt: skip
            try:
                left = st.st_size
                while left > 0:
                    try:
                        n = os.copy_file_range(s, d, min(left, 1 << 30))
                    except OSError as e:
                        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                                           errno.EOPNOTSUPP):  # fmt: skip
                            raise
                        n = os.sendfile(d, s, None, min(left, 1 << 30))
                    if n == 0:
                        break
                    left -= n
                _attrs(s, d)
                if st.st_nlink > 1:
                    keep = os.open(f"/proc/self/fd/{d}", os.O_PATH | os.O_CLOEXEC)
                    self.links[(st.st_dev, st.st_ino)] = [keep, st.st_nlink - 1]
            finally:
                os.close(d)
        finally:
            os.close(s)


__all__ = ["copy_up"]
