"""The local driver's options (`type`, `device`, `o`) and the mount they make.

    check_options({"type": "tmpfs", "device": "tmpfs", "o": "size=64m,uid=1000"})
    mount_device(opts, "/var/lib/pyrt/volumes/v/_data")
    unmount("/var/lib/pyrt/volumes/v/_data")

As docker's local driver: `o` is mount(8)'s option list (flags such as ro, nosuid, bind
become MS_* flags, the rest is the filesystem's data); `type` is the filesystem type
("none" with o=bind for a host directory); `device` the source. A volume with options is
mounted on its _data directory when a container first uses it and unmounted when no
container does.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Mapping

from pyrt.errors import InvalidArgument, SystemError_

VALID_OPTIONS = ("type", "device", "o", "size")
#: an option that needs others (docker's mandatoryOpts)
_REQUIRES = {"device": ("type",), "type": ("device",), "o": ("device",)}
_MNT_DETACH = 2

_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def check_options(opts: Mapping[str, str]) -> dict[str, str]:
    """Docker's rules for the local driver's options; InvalidArgument otherwise."""
    for key, value in opts.items():
        if key not in VALID_OPTIONS:
            raise InvalidArgument(f'invalid option: "{key}"')
        if not isinstance(value, str):
            raise InvalidArgument(f'option "{key}": must be a string')
    if "size" in opts:
        raise InvalidArgument("quota size requested but no quota support")
    for key, needed in _REQUIRES.items():
        if key in opts:
            for other in needed:
                if other not in opts:
                    raise InvalidArgument(f'missing required option: "{other}"')
    return dict(opts)


def needs_mount(opts: Mapping[str, str]) -> bool:
    return bool(opts.get("device") or opts.get("type"))


def mount_device(opts: Mapping[str, str], target: str) -> None:
    """mount(2) the volume's device on `target` as its options say."""
    from pyrt.runtime.translate import mount_options

    fstype = opts.get("type") or "none"
    device = opts.get("device") or fstype
    flags, propagation, data = mount_options([o for o in opts.get("o", "").split(",") if o])
    if fstype == "none" and not flags & 4096:  # MS_BIND: "none" is only ever a bind
        raise InvalidArgument(f"volume type 'none' needs o=bind (device {device})")
    rc = _c().mount(device.encode(), target.encode(), fstype.encode(),
                    ctypes.c_ulong(flags), data.encode() if data else None)  # fmt: skip
    if rc != 0:
        e = ctypes.get_errno()
        raise SystemError_(f"mount {device} on {target} (type {fstype}): {os.strerror(e)}", e)
    if propagation:
        _c().mount(None, target.encode(), None, ctypes.c_ulong(propagation), None)


def unmount(target: str) -> None:
    """Lazily unmount `target` (a container that still holds it keeps its view)."""
    if _c().umount2(target.encode(), _MNT_DETACH) != 0:
        e = ctypes.get_errno()
        if e not in (errno.EINVAL, errno.ENOENT):  # not mounted, or gone
            raise SystemError_(f"unmount {target}: {os.strerror(e)}", e)


def is_mounted(path: str) -> bool:
    """Whether something is mounted exactly on `path` (from /proc/self/mountinfo: a bind of
    a directory of the same filesystem is invisible to os.path.ismount)."""
    want = os.path.abspath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4]
            if "\\" in target:
                target = target.replace("\\040", " ").replace("\\011", "\t")
                target = target.replace("\\012", "\n").replace("\\134", "\\")
            if target == want:
                return True
    return False


__all__ = ["VALID_OPTIONS", "check_options", "is_mounted", "mount_device", "needs_mount",
           "unmount"]
