"""A container's root filesystem: an overlay of an image's snapshots plus a writable layer.

    rootfs = prepare_container_rootfs(snapshots, image_top_chain_id, "/var/lib/pyrt/c/<id>")
    rootfs.mount("/var/lib/pyrt/c/<id>/merged")     # or hand rootfs.spec() to the runtime
    ...
    rootfs.unmount()                                # umount2(MNT_DETACH)
    changes = rootfs.diff()                         # docker diff: A / C / D

`prepare_container_rootfs` makes `upper/` and `work/` under dest_dir and describes the
mount: source "overlay", fstype "overlay", options `lowerdir=<top>:...:<bottom>,
upperdir=...,workdir=...`; with `targets` (a container's), the image's targets layer goes
above its top when it has one (the mount points it lacks: SnapshotService.mount_targets).
An image with a single layer takes the fast path of one lower dir (still overlay, so the
container has its writable layer); an image without layers gets an empty lower dir of its
own (`dest_dir/empty`), since overlayfs needs at least one.

The page limit. mount(2) copies its data argument into one page (4096 bytes), and a
snapshot's absolute path is ~100 bytes, so about 40 layers would overflow. When the
absolute form does not fit, the lower dirs are named by their short links relative to the
snapshots directory ("l/<16 hex>", 19 bytes each) and `cwd` is set to that directory:
the mount must then be made with the working directory there. `mount()` does that in a
short-lived thread that first unshares its filesystem context (unshare(CLONE_FS)), so the
chdir does not move the rest of the process. A runtime that mounts the description itself
must honour `cwd` the same way (or chdir in its child before mounting).

`diff(upper, lowers)` reads what a container changed, docker diff style: a 0/0 char
device is a deleted path (D); a directory with trusted.overlay.opaque=y replaced its lower
directory, so every lower entry beneath it that upper lacks is D; an upper entry that the
lower stack has is C (directories that were merely copied up for a child included, as
docker shows them), otherwise A. Sorted by path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pyrt.errors import FailedPrecondition, InvalidArgument, SystemError_
from pyrt.ownthread import run_on_own_thread

if TYPE_CHECKING:
    from pyrt.snapshots.service import SnapshotService

MNT_DETACH = 2
CLONE_FS = 0x00000200
OPAQUE_XATTR = "trusted.overlay.opaque"
#: mount(2) copies the data argument into a single page, NUL included
MOUNT_DATA_LIMIT = os.sysconf("SC_PAGE_SIZE") - 1

_libc: Any = None


def _c() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                ctypes.c_ulong, ctypes.c_char_p]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc.unshare.argtypes = [ctypes.c_int]
    return _libc


def _raise_errno(what: str) -> None:
    err = ctypes.get_errno()
    raise SystemError_(f"{what}: {os.strerror(err)}", err)


def _check_path(path: str, what: str) -> None:
    # overlayfs splits its options at ',' and lowerdir at ':'; pyrt's paths never hold them
    for ch in ",:":
        if ch in path:
            raise InvalidArgument(f"overlay {what} {path!r}: must not contain {ch!r}")


@dataclass
class RootfsMount:
    """The description of one container rootfs overlay (and, once mounted, its target)."""

    lowerdirs: tuple[str, ...]  # absolute, top first
    upperdir: str
    workdir: str
    options: tuple[str, ...]  # what mount(2) gets, comma-joined
    cwd: str | None = None  # when set, `options` hold paths relative to it (page limit)
    source: str = "overlay"
    fstype: str = "overlay"
    target: str | None = field(default=None)

    @property
    def data(self) -> str:
        return ",".join(self.options)

    @property
    def single_layer(self) -> bool:
        return len(self.lowerdirs) == 1

    def spec(self) -> dict[str, Any]:
        """An OCI runtime-spec mount entry (destination "/"), plus "cwd" when relative."""
        out: dict[str, Any] = {"destination": "/", "type": self.fstype, "source": self.source,
                               "options": list(self.options)}
        if self.cwd is not None:
            out["cwd"] = self.cwd
        return out

    # -- mounting --------------------------------------------------------------------------
    def mount(self, target: str | os.PathLike[str]) -> None:
        """Mount the overlay on `target` (an existing directory)."""
        if self.target is not None:
            raise FailedPrecondition(f"overlay already mounted on {self.target}")
        tgt = os.path.abspath(os.fspath(target))
        if not os.path.isdir(tgt):
            raise InvalidArgument(f"overlay mount target {tgt!r} is not a directory")
        data = self.data.encode()
        if len(data) > MOUNT_DATA_LIMIT:
            raise InvalidArgument(
                f"overlay mount options are {len(data)} bytes, over the {MOUNT_DATA_LIMIT} "
                f"byte limit of mount(2) ({len(self.lowerdirs)} layers)"
            )
        if self.cwd is None:
            if _c().mount(b"overlay", tgt.encode(), b"overlay", 0, data) != 0:
                _raise_errno(f"mount overlay on {tgt}")
        else:
            _mount_in(self.cwd, tgt, data)
        self.target = tgt

    def unmount(self) -> None:
        """Detach the overlay (umount2 MNT_DETACH). A no-op when not mounted."""
        if self.target is None:
            return
        if _c().umount2(self.target.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err != 22:  # EINVAL: not a mount point any more (someone else unmounted it)
                raise SystemError_(f"umount {self.target}: {os.strerror(err)}", err)
        self.target = None

    def diff(self) -> list[Change]:
        return diff(self.upperdir, self.lowerdirs)

    def __enter__(self) -> RootfsMount:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmount()


def _mount_in(cwd: str, target: str, data: bytes) -> None:
    """mount(2) with the working directory at `cwd`, from a thread with its own fs context."""

    def run() -> None:
        libc = _c()
        if libc.unshare(CLONE_FS) != 0:
            _raise_errno("unshare(CLONE_FS) for the overlay mount")
        os.chdir(cwd)
        if libc.mount(b"overlay", target.encode(), b"overlay", 0, data) != 0:
            _raise_errno(f"mount overlay on {target} (lower dirs relative to {cwd})")

    run_on_own_thread(run, "pyrt-overlay-mount")


def build_options(lowerdirs: Sequence[str], upperdir: str, workdir: str,
                  *, relative_lowers: Sequence[str] | None = None) -> tuple[str, ...]:
    lowers = relative_lowers if relative_lowers is not None else lowerdirs
    return (f"lowerdir={':'.join(lowers)}", f"upperdir={upperdir}", f"workdir={workdir}")


def prepare_container_rootfs(snapshots: SnapshotService, chain_id: str | None,
                             dest_dir: str | os.PathLike[str], *,
                             targets: bool = False) -> RootfsMount:
    """Create dest_dir/upper and dest_dir/work and describe the overlay (see module doc);
    with `targets`, the image's targets layer goes on top of its lower dirs."""
    dest = Path(os.path.abspath(os.fspath(dest_dir)))
    _check_path(str(dest), "directory")
    dest.mkdir(parents=True, exist_ok=True)
    upper, work = dest / "upper", dest / "work"
    upper.mkdir(mode=0o755, exist_ok=True)
    work.mkdir(mode=0o700, exist_ok=True)
    if chain_id is None:
        empty = dest / "empty"
        empty.mkdir(mode=0o755, exist_ok=True)
        lowers: list[str] = [str(empty)]
        chain: list[str] = []
    else:
        lowers = snapshots.lower_dirs(chain_id)
        chain = [s.chain_id for s in snapshots.chain(chain_id)]
        for d in lowers:
            if not os.path.isdir(d):
                raise FailedPrecondition(f"snapshot directory {d} is missing")
            _check_path(d, "lower dir")
        top = snapshots.mount_targets(chain_id) if targets else None
        if top is not None:
            lowers.insert(0, str(top))
    options = build_options(lowers, str(upper), str(work))
    mount = RootfsMount(tuple(lowers), str(upper), str(work), options)
    if len(mount.data.encode()) <= MOUNT_DATA_LIMIT or not chain:
        return mount
    relative = [os.path.relpath(snapshots.short_link(c), snapshots.dir) for c in chain]
    if len(lowers) > len(chain):  # the targets layer
        relative.insert(0, os.path.relpath(lowers[0], snapshots.dir))
    for c in chain:
        snapshots._make_link(c)  # reconcile() makes them too; be sure before relying on them
    return replace(mount, options=build_options(lowers, str(upper), str(work),
                                                 relative_lowers=relative),
                   cwd=str(snapshots.dir))


def missing_paths(lowers: Sequence[str], dirs: Sequence[str], files: Sequence[str]
                  ) -> list[tuple[str, bool, os.stat_result | None]]:
    """What a layer above the lower stack (top first) needs so that `dirs` and `files`
    (relative paths) exist: (path, is a directory, the stack's own directory there or
    None), parents first. A directory the stack has is listed only as the parent of a
    missing path (with its stat, for the new layer to copy its mode and owner: overlayfs
    shows the topmost layer's); a path under something that is there but is no directory
    (a symlink, say) is left alone, never shadowed."""
    plan: dict[str, tuple[bool, os.stat_result | None]] = {}
    for rel, is_dir in [*((d, True) for d in dirs), *((f, False) for f in files)]:
        parts = rel.split("/")
        have: list[tuple[str, os.stat_result]] = []  # the stack's directories above rel
        for depth in range(1, len(parts) + 1):
            sub = "/".join(parts[:depth])
            top, _ = _resolve(lowers, parts[:depth])
            if top is None:
                for d, st in have:
                    plan.setdefault(d, (True, st))
                for k in range(depth, len(parts)):
                    plan.setdefault("/".join(parts[:k]), (True, None))
                plan.setdefault(rel, (is_dir, None))
                break
            if depth == len(parts) or not stat.S_ISDIR(top.st_mode):
                break
            have.append((sub, top))
    return [(rel, d, st) for rel, (d, st) in plan.items()]


# -- docker diff ------------------------------------------------------------------------------

ChangeKind = Literal["C", "A", "D"]
_API_KIND: dict[str, int] = {"C": 0, "A": 1, "D": 2}


@dataclass(frozen=True, order=True)
class Change:
    path: str  # absolute inside the container: "/etc/passwd"
    kind: ChangeKind

    def to_api(self) -> dict[str, Any]:
        """Docker's ContainerChangeResponseItem: {"Path", "Kind": 0 C, 1 A, 2 D}."""
        return {"Path": self.path, "Kind": _API_KIND[self.kind]}

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _resolve(lowers: Sequence[str], parts: Sequence[str]
             ) -> tuple[os.stat_result | None, list[str]]:
    """What the merged lower stack shows at `parts`: the top entry's stat (None if absent)
    and, when it is a directory, the layers whose directories merge into it (top first)."""
    layers = list(lowers)
    if not parts:
        return os.lstat(lowers[0]) if lowers else None, layers
    top: os.stat_result | None = None
    for depth in range(len(parts)):
        rel = os.path.join(*parts[: depth + 1])
        merged: list[str] = []
        top = None
        for layer in layers:
            p = os.path.join(layer, rel)
            st = _lstat(p)
            if st is None:
                continue
            if _is_whiteout(st):
                break
            if top is None:
                top = st
            if not stat.S_ISDIR(st.st_mode) or not stat.S_ISDIR(top.st_mode):
                break
            merged.append(layer)
            if _is_opaque(p):
                break
        if top is None:
            return None, []
        if depth < len(parts) - 1 and not stat.S_ISDIR(top.st_mode):
            return None, []
        layers = merged
    return top, layers


def _lower_children(layers: Sequence[str], parts: Sequence[str]) -> set[str]:
    """Names visible in the merged lower directory at `parts` (layers from _resolve)."""
    seen: set[str] = set()
    hidden: set[str] = set()
    rel = os.path.join(*parts) if parts else ""
    for layer in layers:
        d = os.path.join(layer, rel)
        try:
            names = os.listdir(d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if name in seen or name in hidden:
                continue
            st = _lstat(os.path.join(d, name))
            if st is None:
                continue
            (hidden if _is_whiteout(st) else seen).add(name)
    return seen


def diff(upper_dir: str | os.PathLike[str], lower_dirs: Sequence[str] = ()) -> list[Change]:
    """The changes an overlay upper dir makes to its lower stack (top first), sorted."""
    upper = os.fspath(upper_dir)
    if not os.path.isdir(upper):
        raise InvalidArgument(f"overlay upper dir {upper!r} is not a directory")
    lowers = list(lower_dirs)
    out: list[Change] = []

    def walk(parts: list[str], hiding: bool) -> None:
        d = os.path.join(upper, *parts) if parts else upper
        names = sorted(os.listdir(d))
        if hiding:
            _, layers = _resolve(lowers, parts)
            for gone in sorted(_lower_children(layers, parts) - set(names)):
                out.append(Change("/" + "/".join([*parts, gone]), "D"))
        for name in names:
            sub = [*parts, name]
            p = os.path.join(d, name)
            st = os.lstat(p)
            path = "/" + "/".join(sub)
            if _is_whiteout(st):
                out.append(Change(path, "D"))
                continue
            lower_st, _ = _resolve(lowers, sub) if lowers else (None, [])
            out.append(Change(path, "A" if lower_st is None else "C"))
            if stat.S_ISDIR(st.st_mode):
                # a directory that replaces a lower non-directory hides nothing further
                opaque = _is_opaque(p)
                walk(sub, (hiding or opaque) and lower_st is not None
                     and stat.S_ISDIR(lower_st.st_mode))

    walk([], False)
    out.sort(key=lambda c: c.path)
    return out
