"""`docker diff`: what a container changed in its root filesystem.

    changes(handle)  # [{"Path": "/etc", "Kind": 0}, {"Path": "/etc/new", "Kind": 1}, ...]

Kind is docker's: 0 modified, 1 added, 2 deleted. The list comes from the overlay's upper
dir against the image's layers (pyrt.snapshots.overlay.diff), sorted by path.

Docker keeps the mount points it needs (/etc/hosts, /etc/resolv.conf, /dev/shm...) in an
"init" layer under the container's, so `docker diff` of a fresh container is empty. When
the runtime had to create such a mount point in the writable layer instead, it shows up
here as an empty file or directory added at a mount destination of the container's spec:
`changes` leaves those out (with `hide_mount_points`, the default), and with them the
parent directories (copied up or made) that are reported only because they hold such a
mount point. The price: a metadata-only change of such a parent is not shown either.
"""

from __future__ import annotations

import os
import posixpath
import stat
from typing import TYPE_CHECKING, Any

from pyrt.errors import FailedPrecondition
from pyrt.snapshots.overlay import Change, diff

if TYPE_CHECKING:
    from pyrt.containers.handle import ContainerHandle


def _mount_points(spec: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for m in spec.get("mounts") or []:
        dest = m.get("destination") if isinstance(m, dict) else None
        if isinstance(dest, str) and dest.startswith("/"):
            clean = posixpath.normpath(dest)
            if clean != "/":
                out.add(clean)
    return out


def _empty_placeholder(upper: str, path: str) -> bool:
    p = os.path.join(upper, path.lstrip("/"))
    try:
        st = os.lstat(p)
    except OSError:
        return False
    if stat.S_ISREG(st.st_mode):
        return st.st_size == 0
    if stat.S_ISDIR(st.st_mode):
        return not os.listdir(p)
    return False


def filter_mount_points(found: list[Change], upper: str, mount_points: set[str]) -> list[Change]:
    """`found` without the runtime's mount-point placeholders (see the module doc)."""
    dropped = [c.path for c in found
               if c.kind == "A" and c.path in mount_points and _empty_placeholder(upper, c.path)]
    if not dropped:
        return found
    gone = set(dropped)
    ancestors: set[str] = set()
    for p in dropped:
        parent = posixpath.dirname(p)
        while parent != "/":
            ancestors.add(parent)
            parent = posixpath.dirname(parent)
    kept = [c for c in found if c.path not in gone]
    out: list[Change] = []
    for c in kept:
        if c.kind in ("C", "A") and c.path in ancestors:
            prefix = c.path + "/"
            if not any(o.path.startswith(prefix) for o in kept):
                continue
        out.append(c)
    return out


def changes(handle: ContainerHandle, *, hide_mount_points: bool = True) -> list[dict[str, Any]]:
    """docker's ContainerChangeResponseItem list for the container."""
    upper = handle.upper_dir
    if not os.path.isdir(upper):
        raise FailedPrecondition(f"container {handle.id}: its writable layer {upper} is "
                                 "missing")
    found = diff(upper, handle.lower_dirs)
    if hide_mount_points:
        found = filter_mount_points(found, upper, _mount_points(handle.spec))
    return [c.to_api() for c in found]


__all__ = ["changes", "filter_mount_points"]
