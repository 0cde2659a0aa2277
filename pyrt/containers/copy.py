"""`docker cp` and `docker export`, worked from the host side on the container's rootfs.

    st = stat_path(handle, "/etc/passwd")           # docker's container path stat
    st, chunks = get_archive(handle, "/etc")        # chunks: an iterator of tar bytes
    put_archive(handle, "/tmp", open("x.tar", "rb"))
    for chunk in export(handle): ...                # the whole flattened rootfs

Every container path is resolved INSIDE the rootfs as if it were "/": the lookup goes
through openat2(2) with RESOLVE_IN_ROOT from a directory fd of the rootfs (or, on a kernel
without openat2, a component-by-component walk that resolves symlinks against the root,
see pyrt.containers.userdb), so a container symlink /evil -> /etc names <rootfs>/etc and
can never reach the host's /etc. Below the resolved start, archives are read and written
only through directory fds with O_NOFOLLOW: a container that swaps a directory for a
symlink while we work cannot send us outside either.

Docker's rules kept:
- a path's last component is not followed (a symlink is copied as a symlink) unless the
  path ends in "/" or "/."; a path ending in "/." archives the directory's contents;
- `put_archive` extracts into an existing directory (NotFound when it is missing,
  InvalidArgument when it is not a directory); entries are owned by root, or with
  `copy_uid_gid` by the container's user (Config.User), as the daemon does; with
  `no_overwrite_dir_non_dir` a directory never replaces a non-directory or vice versa;
  the archive may be plain, gzip, bzip2 or xz; `.wh.` names are ordinary files here.
- the stat document is X-Docker-Container-Path-Stat's: name, size, mode (Go's
  os.FileMode bits), mtime (RFC 3339), linkTarget (the resolved path of a symlink).

`export` reads the overlay's merged directory when it is mounted on the host; otherwise
it merges the lower dirs and the upper dir itself (whiteouts and opaque directories
honoured). The container's own mounts (/proc, /sys, /dev, the etc files, volumes) live in
its mount namespace and are never part of it.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import functools
import json
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any
from zlib import error as ZlibError

from pyrt.containers import cpview, userdb
from pyrt.errors import FailedPrecondition, InvalidArgument, NotFound, SystemError_

if TYPE_CHECKING:
    from pyrt.containers.handle import ContainerHandle

_CHUNK = 1 << 20
_BLOCK = 512
OPAQUE_XATTR = "trusted.overlay.opaque"

# Go's os.FileMode type bits (what the docker CLI decodes from the stat header)
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20


def go_file_mode(mode: int) -> int:
    """A Unix st_mode as Go's os.FileMode."""
    out = mode & 0o777
    fmt = stat.S_IFMT(mode)
    if fmt == stat.S_IFDIR:
        out |= GO_MODE_DIR
    elif fmt == stat.S_IFLNK:
        out |= GO_MODE_SYMLINK
    elif fmt == stat.S_IFBLK:
        out |= GO_MODE_DEVICE
    elif fmt == stat.S_IFCHR:
        out |= GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE
    elif fmt == stat.S_IFIFO:
        out |= GO_MODE_NAMED_PIPE
    elif fmt == stat.S_IFSOCK:
        out |= GO_MODE_SOCKET
    if mode & stat.S_ISUID:
        out |= GO_MODE_SETUID
    if mode & stat.S_ISGID:
        out |= GO_MODE_SETGID
    if mode & stat.S_ISVTX:
        out |= GO_MODE_STICKY
    return out


def rfc3339(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return base + "Z"


def encode_path_stat(st: dict[str, Any]) -> str:
    """The X-Docker-Container-Path-Stat header value: base64 of the JSON document."""
    return base64.b64encode(json.dumps(st).encode()).decode()


# -- resolving inside the rootfs ----------------------------------------------------------------

def _open_root(handle: ContainerHandle) -> tuple[int, int]:
    """(rootfd, nsfd): the root `docker cp` works in. A running (or paused) container is
    seen through /proc/PID/root: its mount namespace's view, so a path in a volume, bind or
    tmpfs is the one the container sees, not the overlay under it. A stopped one with
    volumes or binds: its overlay with them bound on it, in a mount namespace of the
    copy's own (pyrt.containers.cpview) that lives until nsfd is closed; else the overlay
    alone (nsfd -1)."""
    root = handle.rootfs
    if handle.status() in ("running", "paused"):
        pid = handle.pid()
        if pid > 0:
            with contextlib.suppress(OSError):
                return os.open(f"/proc/{pid}/root",
                               os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), -1
    try:
        binds = cpview.spec_binds(handle.spec) if os.path.ismount(root) else []
        if binds:
            return cpview.open_view(root, binds, open_at_root)
        return os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), -1
    except OSError as e:
        raise FailedPrecondition(f"container {handle.id}: root filesystem {root} is not "
                                 f"available: {e.strerror}") from None


def _close_root(rootfd: int, nsfd: int) -> None:
    os.close(rootfd)
    if nsfd >= 0:
        os.close(nsfd)


def open_at_root(rootfd: int, path: str, flags: int) -> int:
    """Open `path` (a container path) beneath the root at `rootfd`, symlinks resolved inside."""
    rel = path.lstrip("/") or "."
    try:
        return userdb._openat2(rootfd, rel, flags)
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EPERM):
            raise
    return userdb._open_walk(rootfd, rel, flags)


def _clean(path: str, what: str = "path") -> tuple[str, bool, bool]:
    """(normalized absolute container path, follow the last component, contents only)."""
    if not isinstance(path, str) or not path:
        raise InvalidArgument(f"{what}: an absolute path in the container is required")
    if "\x00" in path:
        raise InvalidArgument(f"{what} {path!r}: contains a NUL byte")
    absolute = path if path.startswith("/") else "/" + path
    contents = absolute.endswith("/.")
    follow = absolute.endswith("/") or contents
    return posixpath.normpath(absolute).replace("//", "/"), follow, contents


class _Resolved:
    """A container path's parent dir fd and last name (name "" for the root itself)."""

    def __init__(self, rootfd: int, path: str, follow: bool) -> None:
        self.path = path
        self.rootfd = rootfd
        if path == "/":
            self.parent = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=rootfd)
            self.name = ""
            return
        if follow:
            fd = open_at_root(rootfd, path, os.O_PATH)
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
            except BaseException:
                os.close(fd)
                raise
            self.parent = fd
            self.name = ""
            return
        parent, name = posixpath.split(path)
        self.parent = open_at_root(rootfd, parent, os.O_PATH | os.O_DIRECTORY)
        self.name = name

    def lstat(self) -> os.stat_result:
        if not self.name:
            return os.fstat(self.parent)
        return os.stat(self.name, dir_fd=self.parent, follow_symlinks=False)

    def close(self) -> None:
        os.close(self.parent)


def _fd_path_in_root(rootfd: int, fd: int) -> str | None:
    """The container path of an open fd (None when it is not beneath the root)."""
    try:
        root = os.readlink(f"/proc/self/fd/{rootfd}")
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    if target == root:
        return "/"
    if target.startswith(root.rstrip("/") + "/"):
        return target[len(root.rstrip("/")):]
    return None


def _not_found(handle: ContainerHandle, path: str) -> NotFound:
    return NotFound(f"Could not find the file {path} in container {handle.name or handle.id}")


def _path_error(handle: ContainerHandle, path: str, e: OSError) -> Exception:
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return _not_found(handle, path)
    if e.errno == errno.ELOOP:
        return InvalidArgument(f"{path} in container {handle.id}: too many levels of symlinks")
    if e.errno == errno.EXDEV:
        return InvalidArgument(f"{path} in container {handle.id}: leaves the root filesystem")
    return SystemError_(f"{path} in container {handle.id}: {e.strerror}", e.errno)


def _stat_doc(rootfd: int, r: _Resolved, st: os.stat_result) -> dict[str, Any]:
    name = r.name or posixpath.basename(r.path) or "/"
    link = ""
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(r.name, dir_fd=r.parent)
        link = posixpath.normpath(posixpath.join(posixpath.dirname(r.path), target))
        try:
            fd = open_at_root(rootfd, r.path, os.O_PATH)
        except OSError:
            pass  # dangling: the lexical target
        else:
            try:
                link = _fd_path_in_root(rootfd, fd) or link
            finally:
                os.close(fd)
    return {"name": name, "size": st.st_size, "mode": go_file_mode(st.st_mode),
            "mtime": rfc3339(st.st_mtime_ns), "linkTarget": link}


def stat_path(handle: ContainerHandle, path: str) -> dict[str, Any]:
    """docker's container path stat of `path` (NotFound when it does not exist)."""
    clean, follow, _ = _clean(path)
    rootfd, nsfd = _open_root(handle)
    try:
        try:
            r = _Resolved(rootfd, clean, follow)
        except OSError as e:
            raise _path_error(handle, path, e) from None
        try:
            try:
                st = r.lstat()
            except OSError as e:
                raise _path_error(handle, path, e) from None
            return _stat_doc(rootfd, r, st)
        finally:
            r.close()
    finally:
        _close_root(rootfd, nsfd)


# -- writing tar streams -------------------------------------------------------------------------

def _pad(n: int) -> bytes:
    return bytes(-n % _BLOCK)


class _TarWriter:
    """PAX tar members, produced as byte chunks; hard links within one archive kept."""

    def __init__(self) -> None:
        self.links: dict[tuple[int, int], str] = {}

    def member(self, arcname: str, st: os.stat_result, *, linkname: str = "",
               data_fd: int | None = None) -> Iterator[bytes]:
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = st.st_mtime
        info.uname = info.gname = ""
        fmt = stat.S_IFMT(st.st_mode)
        if fmt == stat.S_IFREG:
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                info.type = tarfile.LNKTYPE
                info.linkname = self.links[key]
                yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
                return
            if st.st_nlink > 1:
                self.links[key] = arcname
            info.type = tarfile.REGTYPE
            info.size = st.st_size
        elif fmt == stat.S_IFDIR:
            info.type = tarfile.DIRTYPE
            if not info.name.endswith("/"):
                info.name += "/"
        elif fmt == stat.S_IFLNK:
            info.type = tarfile.SYMTYPE
            info.linkname = linkname
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
            info.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif fmt == stat.S_IFIFO:
            info.type = tarfile.FIFOTYPE
        else:
            return  # sockets are not archived
        yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        if info.type == tarfile.REGTYPE and info.size:
            left = info.size
            if data_fd is not None:
                while left > 0:
                    chunk = os.read(data_fd, min(_CHUNK, left))
                    if not chunk:
                        break  # the file shrank while we read it: pad with zeros
                    left -= len(chunk)
                    yield chunk
            while left > 0:
                n = min(_CHUNK, left)
                left -= n
                yield bytes(n)
            yield _pad(info.size)

    @staticmethod
    def end() -> Iterator[bytes]:
        yield bytes(2 * _BLOCK)


def _open_child_dir(dirfd: int, name: str) -> int:
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                   dir_fd=dirfd)


def _walk_entry(w: _TarWriter, dirfd: int, name: str, arcname: str,
                st: os.stat_result) -> Iterator[bytes]:
    """One entry (and, for a directory, everything below it) read through dir fds only."""
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFREG:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=dirfd)
        except FileNotFoundError:
            return  # removed meanwhile
        try:
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode):
                return
            yield from w.member(arcname, now, data_fd=fd)
        finally:
            os.close(fd)
    elif fmt == stat.S_IFLNK:
        try:
            target = os.readlink(name, dir_fd=dirfd)
        except FileNotFoundError:
            return
        yield from w.member(arcname, st, linkname=target)
    elif fmt == stat.S_IFDIR:
        try:
            fd = _open_child_dir(dirfd, name)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            yield from _walk_dir(w, fd, arcname, os.fstat(fd), include_self=True)
        finally:
            os.close(fd)
    else:
        yield from w.member(arcname, st)


def _walk_dir(w: _TarWriter, fd: int, arcname: str, st: os.stat_result, *,
              include_self: bool) -> Iterator[bytes]:
    if include_self:
        yield from w.member(arcname, st)
    prefix = arcname.rstrip("/") + "/" if arcname not in ("", ".") else (
        "./" if arcname == "." else "")
    for name in sorted(os.listdir(fd)):
        try:
            cst = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        yield from _walk_entry(w, fd, name, prefix + name, cst)


class _Closer:
    """Runs its closers once: at close(), or when it is collected: a get_archive stream
    dropped before it is read never runs its generator's finally."""

    def __init__(self, *closers: Callable[[], object]) -> None:
        self._closers: tuple[Callable[[], object], ...] | None = closers

    def close(self) -> None:
        closers, self._closers = self._closers, None
        for c in closers or ():
            c()

    def __del__(self) -> None:
        self.close()


def get_archive(handle: ContainerHandle, path: str) -> tuple[dict[str, Any], Iterator[bytes]]:
    """(stat document, tar stream) of `path` in the container; NotFound when missing.

    The tar's top entry is named after the path's last component ("dir/...", or the
    directory's contents as "./..." when the path ends in "/.").
    """
    clean, follow, contents = _clean(path)
    rootfd, nsfd = _open_root(handle)
    try:
        try:
            r = _Resolved(rootfd, clean, follow)
        except OSError as e:
            raise _path_error(handle, path, e) from None
        try:
            try:
                st = r.lstat()
            except OSError as e:
                raise _path_error(handle, path, e) from None
            doc = _stat_doc(rootfd, r, st)
        except BaseException:
            r.close()
            raise
    except BaseException:
        _close_root(rootfd, nsfd)
        raise
    os.close(rootfd)  # the walk goes on from r's fds; the namespace stays until its end
    done = _Closer(r.close, *([functools.partial(os.close, nsfd)] if nsfd >= 0 else []))

    def stream() -> Iterator[bytes]:
        try:
            w = _TarWriter()
            base = "." if contents else (posixpath.basename(clean) or ".")
            if r.name:
                yield from _walk_entry(w, r.parent, r.name, base, st)
            else:
                fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=r.parent)
                try:
                    yield from _walk_dir(w, fd, base, os.fstat(fd), include_self=not contents)
                finally:
                    os.close(fd)
            yield from w.end()
        finally:
            done.close()

    return doc, stream()


# -- extracting ---------------------------------------------------------------------------------

def _member_parts(name: str, i: int) -> list[str]:
    parts: list[str] = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                raise InvalidArgument(f"archive entry {i} {name!r}: leaves the destination "
                                      "directory")
            parts.pop()
            continue
        parts.append(p)
    return parts


class _Extractor:
    def __init__(self, rootfd: int, dest: str, *, no_overwrite_dir_non_dir: bool,
                 owner: tuple[int, int] | None) -> None:
        self.rootfd = rootfd
        self.dest = dest
        self.no_overwrite = no_overwrite_dir_non_dir
        self.owner = owner
        self.dirs: list[tuple[str, tarfile.TarInfo]] = []
        # without root the files stay ours: ownership cannot be given away anyway
        self.chown = os.geteuid() == 0

    def _parent(self, parts: list[str], create: bool = True) -> int:
        """The directory an entry goes in; missing parents are made (0755), as tar does."""
        try:
            return open_at_root(self.rootfd, posixpath.join(self.dest, *parts[:-1]),
                                os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            if not create:
                raise
        made = self.dest
        fd = open_at_root(self.rootfd, made, os.O_PATH | os.O_DIRECTORY)
        try:
            for name in parts[:-1]:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                    if self.chown:
                        uid, gid = self.owner if self.owner is not None else (0, 0)
                        os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
                except FileExistsError:
                    pass
                # resolved inside the root again: an existing symlink is followed there
                made = posixpath.join(made, name)
                nxt = open_at_root(self.rootfd, made, os.O_PATH | os.O_DIRECTORY)
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _ids(self, m: tarfile.TarInfo) -> tuple[int, int]:
        return self.owner if self.owner is not None else (m.uid, m.gid)

    def _make_room(self, pfd: int, name: str, want_dir: bool, m: tarfile.TarInfo) -> bool:
        """Clear the way for a new entry; True when an existing directory is kept."""
        try:
            old = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        is_dir = stat.S_ISDIR(old.st_mode)
        if want_dir and is_dir:
            return True
        if self.no_overwrite and want_dir != is_dir:
            what = "non-directory" if not is_dir else "directory"
            raise InvalidArgument(f"cannot overwrite {what} "
                                  f"{posixpath.join(self.dest, m.name)} with "
                                  f"{'directory' if want_dir else 'non-directory'}")
        if is_dir:
            shutil.rmtree(name, dir_fd=pfd)
        else:
            os.unlink(name, dir_fd=pfd)
        return False

    def entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo, i: int) -> None:
        parts = _member_parts(m.name, i)
        if not parts:
            if m.isdir():
                self.dirs.append((".", m))
            return
        name = parts[-1]
        pfd = self._parent(parts)
        try:
            kept = self._make_room(pfd, name, m.isdir(), m)
            uid, gid = self._ids(m)
            mode = m.mode & 0o7777
            if m.isdir():
                if not kept:
                    os.mkdir(name, 0o700, dir_fd=pfd)
                self.dirs.append(("/".join(parts), m))
            elif m.isreg():
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=pfd)
                try:
                    src = tf.extractfile(m)
                    if src is not None:
                        while chunk := src.read(_CHUNK):
                            os.write(fd, chunk)
                    if self.chown:
                        os.fchown(fd, uid, gid)
                    os.fchmod(fd, mode)
                    os.utime(fd, (m.mtime, m.mtime))
                finally:
                    os.close(fd)
            elif m.issym():
                os.symlink(m.linkname, name, dir_fd=pfd)
                if self.chown:
                    os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
                with contextlib.suppress(OSError):
                    os.utime(name, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)
            elif m.islnk():
                target = _member_parts(m.linkname, i)
                if not target:
                    raise InvalidArgument(f"archive entry {i} {m.name!r}: hard link to the "
                                          "destination directory")
                sfd = self._parent(target, create=False)
                try:
                    os.link(target[-1], name, src_dir_fd=sfd, dst_dir_fd=pfd,
                            follow_symlinks=False)
                finally:
                    os.close(sfd)
            elif m.ischr() or m.isblk() or m.isfifo():
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
                dev = os.makedev(m.devmajor, m.devminor) if not m.isfifo() else 0
                os.mknod(name, kind | 0o600, dev, dir_fd=pfd)
                if self.chown:
                    os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
                try:
                    os.chmod(f"/proc/self/fd/{fd}", mode)
                finally:
                    os.close(fd)
            else:
                raise InvalidArgument(f"archive entry {i} {m.name!r}: unsupported type "
                                      f"{m.type!r}")
        finally:
            os.close(pfd)

    def finish(self) -> None:
        # directories last and deepest first, so their modes and times stick
        for rel, m in sorted(self.dirs, key=lambda d: d[0].count("/"), reverse=True):
            path = self.dest if rel == "." else posixpath.join(self.dest, rel)
            fd = open_at_root(self.rootfd, path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                uid, gid = self._ids(m)
                if self.chown:
                    os.fchown(fd, uid, gid)
                os.fchmod(fd, m.mode & 0o7777)
                os.utime(fd, (m.mtime, m.mtime))
            finally:
                os.close(fd)


def _container_owner(handle: ContainerHandle) -> tuple[int, int]:
    user = handle.config.User
    if not user:
        return (0, 0)
    u = userdb.resolve_user(handle.rootfs, user)
    return (u.uid, u.gid)


def put_archive(handle: ContainerHandle, path: str, stream: IO[bytes], *,
                no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
    """Extract a tar stream (plain/gzip/bzip2/xz) into the directory `path` of the container."""
    clean, _, _ = _clean(path)
    if handle.host_config.ReadonlyRootfs:
        raise FailedPrecondition(f"container {handle.id}: container rootfs is marked "
                                 "read-only")
    owner = _container_owner(handle) if copy_uid_gid else (0, 0)
    rootfd, nsfd = _open_root(handle)
    try:
        try:
            fd = open_at_root(rootfd, clean, os.O_PATH)
        except OSError as e:
            raise _path_error(handle, path, e) from None
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise InvalidArgument(f"extraction point {path} in container {handle.id} is "
                                      "not a directory")
            # the destination as the kernel resolved it (symlinks followed inside the root)
            dest = _fd_path_in_root(rootfd, fd) or clean
        finally:
            os.close(fd)
        ex = _Extractor(rootfd, dest, no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
                        owner=owner)
        try:
            tf = tarfile.open(fileobj=stream, mode="r|*")  # noqa: SIM115 (with tf below)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise InvalidArgument(f"put archive: not a tar archive: {e}") from None
        with tf:
            i = 0
            try:
                for m in tf:
                    try:
                        ex.entry(tf, m, i)
                    except OSError as e:
                        if e.errno in (errno.ENOENT, errno.ENOTDIR):
                            raise InvalidArgument(
                                f"archive entry {i} {m.name!r}: {e.strerror} (its parent "
                                "is missing or not a directory)") from None
                        if e.errno == errno.EXDEV:
                            raise InvalidArgument(f"archive entry {i} {m.name!r}: leaves "
                                                  "the root filesystem") from None
                        raise SystemError_(f"archive entry {i} {m.name!r}: {e.strerror}",
                                           e.errno) from None
                    i += 1
            except (tarfile.TarError, EOFError, ZlibError) as e:
                raise InvalidArgument(f"put archive: bad tar data after {i} entries: {e}"
                                      ) from None
        ex.finish()
    finally:
        _close_root(rootfd, nsfd)


# -- export -------------------------------------------------------------------------------------

def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


def _merged_dir(w: _TarWriter, layer_fds: list[int], prefix: str) -> Iterator[bytes]:
    """The union of one directory across layers (top first), as tar members."""
    seen: set[str] = set()
    entries: dict[str, tuple[int, os.stat_result]] = {}  # name -> (layer index, stat)
    for idx, fd in enumerate(layer_fds):
        for name in os.listdir(fd):
            if name in seen:
                continue
            seen.add(name)
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if _is_whiteout(st):
                continue
            entries[name] = (idx, st)
        if _is_opaque(fd):
            break
    for name in sorted(entries):
        idx, st = entries[name]
        arc = prefix + name
        if not stat.S_ISDIR(st.st_mode):
            yield from _walk_entry(w, layer_fds[idx], name, arc, st)
            continue
        yield from w.member(arc, st)
        sub: list[int] = []
        try:
            for fd in layer_fds[idx:]:
                try:
                    cst = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISDIR(cst.st_mode):
                    break  # a non-directory (or whiteout) below hides the rest
                cfd = _open_child_dir(fd, name)
                sub.append(cfd)
                if _is_opaque(cfd):
                    break
            yield from _merged_dir(w, sub, arc + "/")
        finally:
            for fd in sub:
                os.close(fd)


def export(handle: ContainerHandle) -> Iterator[bytes]:
    """A tar stream of the container's whole root filesystem (see the module doc)."""
    root = handle.rootfs
    layers = [root] if os.path.ismount(root) else [handle.upper_dir, *handle.lower_dirs]
    fds: list[int] = []
    try:
        for d in layers:
            fds.append(os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except OSError as e:
        for fd in fds:
            os.close(fd)
        raise FailedPrecondition(f"container {handle.id}: cannot read its root filesystem "
                                 f"({e.filename}: {e.strerror})") from None

    def stream() -> Iterator[bytes]:
        try:
            w = _TarWriter()
            yield from _merged_dir(w, fds, "")
            yield from w.end()
        finally:
            for fd in fds:
                os.close(fd)

    return stream()


class IterStream:
    """A read()-able file object over an iterator of byte chunks (for tarfile and friends)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


__all__ = [
    "IterStream",
    "encode_path_stat",
    "export",
    "get_archive",
    "go_file_mode",
    "open_at_root",
    "put_archive",
    "stat_path",
]
