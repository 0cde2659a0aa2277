"""What `docker cp` sees of a container that is not running: its rootfs with its volumes
and bind mounts on it, as the container would see them.

A running container is read through /proc/PID/root. A stopped one has no mount namespace
any more, so a mount namespace of our own is made for the copy: a short-lived thread
unshares its filesystem context and mount namespace (unshare(2) changes only the calling
thread), makes every mount in it private (nothing done there reaches the host's
namespace), bind-mounts each bind source of the container's spec (named volumes, -v
host paths, the etc files) onto its destination, resolved inside the rootfs like every
cp path, read-only ones remounted read-only, and returns a directory fd of the rootfs in
that namespace with an fd of the namespace itself. Path walks from the rootfd cross into
the binds whatever thread makes them; the namespace lives as long as its fd is open, and
closing it tears down every mount made there: nothing to unmount, nothing left behind if
pyrtd dies mid-copy.
"""

from __future__ import annotations

import ctypes
import os
import stat
from dataclasses import dataclass
from typing import Any

from pyrt.errors import SystemError_
from pyrt.ownthread import run_on_own_thread

CLONE_FS = 0x00000200
CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

_libc: Any = None


def _c() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                ctypes.c_ulong, ctypes.c_char_p]
        _libc.unshare.argtypes = [ctypes.c_int]
    return _libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise SystemError_(f"{what}: {os.strerror(err)}", err)


@dataclass(frozen=True)
class Bind:
    source: str       # host path
    destination: str  # container path
    readonly: bool


def spec_binds(spec: dict[str, Any]) -> list[Bind]:
    """The bind mounts of an OCI spec (volumes, binds, etc files), parents first; /dev and
    the kernel filesystems are not binds of the container's data and are left out."""
    out: list[Bind] = []
    for m in spec.get("mounts") or []:
        options = m.get("options") or []
        if m.get("type") != "bind" and "bind" not in options and "rbind" not in options:
            continue
        dest = str(m.get("destination") or "")
        if not dest.startswith("/") or dest == "/dev" or dest.startswith("/dev/"):
            continue
        out.append(Bind(str(m.get("source") or ""), dest, "ro" in options))
    return sorted(out, key=lambda b: b.destination.rstrip("/").count("/"))


def _fd_path(fd: int) -> bytes:
    return f"/proc/thread-self/fd/{fd}".encode()


def _bind_one(rootfd: int, b: Bind, open_at_root: Any) -> None:
    libc = _c()
    try:
        src = os.open(b.source, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a source gone since the container ran: cp sees the rootfs under it
    try:
        try:
            dst = open_at_root(rootfd, b.destination, os.O_PATH | os.O_NOFOLLOW)
        except OSError:
            return  # never made (the container never started): nothing is mounted there
        try:
            if stat.S_ISDIR(os.fstat(src).st_mode) != stat.S_ISDIR(os.fstat(dst).st_mode):
                return
            what = f"bind {b.source} on {b.destination} for cp"
            _check(libc.mount(_fd_path(src), _fd_path(dst), None, MS_BIND | MS_REC, None),
                   what)
        finally:
            os.close(dst)
        if b.readonly:
            top = open_at_root(rootfd, b.destination, os.O_PATH | os.O_NOFOLLOW)
            try:
                _check(libc.mount(None, _fd_path(top), None,
                                  MS_BIND | MS_REMOUNT | MS_RDONLY, None),
                       f"read-only remount of {b.destination} for cp")
            finally:
                os.close(top)
    finally:
        os.close(src)


def open_view(rootfs: str, binds: list[Bind], open_at_root: Any) -> tuple[int, int]:
    """(rootfd, nsfd): `rootfs` with `binds` on it in a private mount namespace; close
    nsfd (after the last use of any fd opened beneath rootfd) to end the namespace."""

    def work() -> tuple[int, int]:
        libc = _c()
        _check(libc.unshare(CLONE_FS | CLONE_NEWNS), "unshare a mount namespace for cp")
        _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None),
               "make the cp mount namespace private")
        rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for b in binds:
                _bind_one(rootfd, b, open_at_root)
            nsfd = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            os.close(rootfd)
            raise
        return rootfd, nsfd

    # the thread ends in the new namespace, which its fd keeps alive
    return run_on_own_thread(work, "pyrt-cp-view")

