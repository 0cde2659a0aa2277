"""Snapshots: each image layer unpacked once, keyed by its chain id.

Layout under `root` (the engine's state directory):

    snapshots/<chain-hex>/fs        one layer's files, in overlay form (whiteouts are 0/0
                                    char devices, opaque dirs carry trusted.overlay.opaque)
    snapshots/<chain-hex>/targets   for a stack topped by this snapshot: the mount points
                                    every container gets that the stack lacks (/etc/hosts,
                                    /proc, ...), empty; made once, by `mount_targets`
    snapshots/l/<short>             symlink -> ../<chain-hex>/fs (16 hex digits), so an
                                    overlay mount can name many lowers in one page
    snapshots/tmp/<random>/fs       an unpack in progress (or a removal in progress)
    snapshots/locks/<chain-hex>/    flock'd while one chain id is unpacked or removed

The targets layer is docker's init layer, shared: it goes on top of a container's lower
dirs, so the runtime finds its mount points there instead of making them in each
container's writable layer (an overlay copy-up: new inodes and work per container), and
`docker diff` and commit, which read the writable layer, never show them. It goes with the
snapshot's directory.

A snapshot holds only its own layer's diff; the stack is read through overlayfs with the
`lower_dirs(chain_id)` of the top snapshot (top first). Rows live in the `snapshots` table
(chain_id, diff_id, parent, size, refcount); `refcount` counts `image_layers` rows
(triggers), so a snapshot is removable when its refcount is 0 and no snapshot names it as
parent.

Guarantees:
- Atomic: `ensure()` unpacks into snapshots/tmp/, checks the diff id, renames the
  directory into place and only then records the row. A snapshot directory is therefore
  complete whenever it is visible; a crash leaves at most a temp dir or an unrecorded
  directory, both removed by `reconcile()` (run at start).
- Once: concurrent `ensure()` of one chain id (threads or processes) serialise on the
  chain id's lock dir; the second finds the first's row and returns it.
- Removal: the row goes first (in a transaction that re-checks refcount and children),
  then the directory is renamed into tmp/ and deleted.
- Pins: `hold(chain_ids)` keeps snapshots from `remove_unused()` between their
  `ensure()` and the transaction that references them (the image service uses it).
"""

from __future__ import annotations

import builtins
import contextlib
import errno as errno_mod
import hashlib
import os
import re
import shutil
import sqlite3
import stat
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pyrt.content.store import lock_dir
from pyrt.errors import FailedPrecondition, InvalidArgument, NotFound, SystemError_
from pyrt.metadata.db import Database
from pyrt.oci.digest import Digest

if TYPE_CHECKING:
    from pyrt.snapshots.overlay import RootfsMount

_HEX64 = re.compile(r"[0-9a-f]{64}")
SHORT_ID_LEN = 16
TARGETS_DIR = "targets"
#: the mount points of specgen's default mounts and etc files (relative to the rootfs)
MOUNT_TARGET_DIRS = ("dev", "proc", "sys")
MOUNT_TARGET_FILES = ("etc/hostname", "etc/hosts", "etc/resolv.conf")


@dataclass(frozen=True)
class Snapshot:
    chain_id: str
    diff_id: str
    parent: str | None
    size: int  # bytes of the uncompressed layer tar (the layer's diff size)
    refcount: int
    created_at: float
    path: Path  # .../snapshots/<hex>/fs


@dataclass
class ReconcileReport:
    removed_temp: list[str] = field(default_factory=list)
    removed_unrecorded: list[str] = field(default_factory=list)  # chain ids
    removed_links: list[str] = field(default_factory=list)
    missing_dirs: list[str] = field(default_factory=list)  # rows whose directory is gone


def chain_of(parent_chain_id: str | None, diff_id: str) -> str:
    """The chain id of a layer `diff_id` on top of `parent_chain_id`."""
    if parent_chain_id is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent_chain_id} {diff_id}".encode()).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    """Remove a tree without following symlinks; a missing path is fine."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


class SnapshotService:
    """Unpacked layers under root/snapshots, recorded in the metadata database."""

    def __init__(self, root: str | os.PathLike[str], db: Database, *,
                 reconcile: bool = True) -> None:
        self.root = Path(root)
        self.db = db
        self.dir = self.root / "snapshots"
        self.links = self.dir / "l"
        self.tmp = self.dir / "tmp"
        self.locks = self.dir / "locks"
        for d in (self.dir, self.links, self.tmp, self.locks):
            d.mkdir(parents=True, exist_ok=True)
        self._pins: Counter[str] = Counter()
        self._pins_lock = threading.Lock()
        # chain ids whose stack lacks no mount point (a stack never changes: nor does that)
        self._no_targets: set[str] = set()
        if reconcile:
            self.reconcile()

    # -- paths -----------------------------------------------------------------------------
    @staticmethod
    def _hex(chain_id: str, what: str = "chain id") -> str:
        d = Digest.parse(chain_id, what=what)
        if d.algorithm != "sha256":
            raise InvalidArgument(f"{what} {chain_id}: only sha256 chain ids are supported")
        return d.hex

    def snapshot_dir(self, chain_id: str) -> Path:
        return self.dir / self._hex(chain_id)

    def fs_path(self, chain_id: str) -> Path:
        return self.snapshot_dir(chain_id) / "fs"

    def short_link(self, chain_id: str) -> Path:
        """snapshots/l/<16 hex> -> ../<hex>/fs (relative; see overlay.py)."""
        return self.links / self._hex(chain_id)[:SHORT_ID_LEN]

    # -- locking ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, chain_id: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold the chain id's lock; yields False (without the lock) when wait=False and
        someone else holds it."""
        path = self.locks / self._hex(chain_id)
        while True:
            path.mkdir(exist_ok=True)
            try:
                fd = lock_dir(path, wait=wait)
            except BlockingIOError:
                yield False
                return
            if fd is not None:
                break
        try:
            yield True
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def hold(self, chain_ids: Iterable[str]) -> Iterator[None]:
        """Pin snapshots against remove_unused()/reconcile() for the block's duration."""
        ids = list(chain_ids)
        with self._pins_lock:
            self._pins.update(ids)
        try:
            yield
        finally:
            with self._pins_lock:
                self._pins.subtract(ids)
                self._pins += Counter()  # drop zero counts

    def _pinned(self, chain_id: str) -> bool:
        with self._pins_lock:
            return self._pins[chain_id] > 0

    # -- reading ---------------------------------------------------------------------------
    def _row_to_snapshot(self, r: sqlite3.Row) -> Snapshot:
        chain_id = str(r["chain_id"])
        return Snapshot(
            chain_id=chain_id,
            diff_id=str(r["diff_id"]),
            parent=None if r["parent"] is None else str(r["parent"]),
            size=int(r["size"]),
            refcount=int(r["refcount"]),
            created_at=float(r["created_at"]),
            path=self.fs_path(chain_id),
        )

    def get(self, chain_id: str) -> Snapshot:
        self._hex(chain_id)
        row = self.db.query_one("SELECT * FROM snapshots WHERE chain_id = ?", (chain_id,))
        if row is None:
            raise NotFound(f"snapshot {chain_id} not found")
        return self._row_to_snapshot(row)

    def exists(self, chain_id: str) -> bool:
        try:
            self.get(chain_id)
        except NotFound:
            return False
        return True

    def list(self) -> builtins.list[Snapshot]:
        return [self._row_to_snapshot(r)
                for r in self.db.query("SELECT * FROM snapshots ORDER BY created_at, chain_id")]

    def chain(self, chain_id: str) -> builtins.list[Snapshot]:
        """The snapshot and its ancestors, top first."""
        out: builtins.list[Snapshot] = []
        cur: str | None = chain_id
        seen: set[str] = set()
        while cur is not None:
            if cur in seen:
                raise SystemError_(f"snapshot {chain_id}: parent cycle at {cur}")
            seen.add(cur)
            try:
                snap = self.get(cur)
            except NotFound:
                if cur == chain_id:
                    raise
                raise NotFound(f"snapshot {chain_id}: ancestor {cur} not found") from None
            out.append(snap)
            cur = snap.parent
        return out

    def lower_dirs(self, chain_id: str) -> builtins.list[str]:
        """Absolute fs dirs of the stack ending at `chain_id`, top first (overlay order)."""
        return [str(s.path) for s in self.chain(chain_id)]

    def mount_targets(self, chain_id: str, *, create: bool = True) -> Path | None:
        """The targets layer of the stack topped by chain_id (see the module doc), made now
        if missing and `create`; None when the stack lacks no mount point (or, without
        `create`, when the layer has not been made)."""
        if chain_id in self._no_targets:
            return None
        d = self.snapshot_dir(chain_id) / TARGETS_DIR
        if d.is_dir():
            return d
        if not create:
            return None
        from pyrt.snapshots.overlay import missing_paths

        plan = missing_paths(self.lower_dirs(chain_id), MOUNT_TARGET_DIRS, MOUNT_TARGET_FILES)
        if not plan:
            self._no_targets.add(chain_id)
            return None
        work = self.tmp / f"targets-{uuid.uuid4().hex[:12]}"
        work.mkdir(mode=0o755)
        try:
            for rel, is_dir, _ in plan:
                if is_dir:
                    os.mkdir(work / rel, 0o755)
                else:
                    os.close(os.open(work / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                     | os.O_CLOEXEC, 0o644))  # fmt: skip
            for rel, _, mirror in reversed(plan):  # children first: their mkdir sets mtimes
                if mirror is not None:  # the image's own directory: as it shows it
                    os.chown(work / rel, mirror.st_uid, mirror.st_gid)
                    os.chmod(work / rel, stat.S_IMODE(mirror.st_mode))
                    os.utime(work / rel, ns=(mirror.st_atime_ns, mirror.st_mtime_ns))
            os.rename(work, d)  # complete when visible; a concurrent maker's wins
        except OSError as e:
            if e.errno not in (errno_mod.EEXIST, errno_mod.ENOTEMPTY) or not d.is_dir():
                raise SystemError_(f"snapshot {chain_id}: mount targets layer: {e}",
                                   e.errno) from None  # fmt: skip
        finally:
            _rmtree(work)  # gone already after a successful rename
        return d

    # -- creating --------------------------------------------------------------------------
    def ensure(self, chain_id: str, parent_chain_id: str | None, diff_id: str,
               blob_path: str | os.PathLike[str], *,
               blob_digest: str | None = None) -> Snapshot:
        """The snapshot `chain_id`, unpacking `blob_path` if it isn't there yet.

        The unpacked layer's diff id must equal `diff_id` (InvalidArgument naming both
        otherwise; nothing is kept), and `chain_id` must be the chain of `parent_chain_id`
        and `diff_id`. The parent must already exist.
        """
        self._hex(chain_id)
        self._hex(diff_id, "diff id")
        if parent_chain_id is not None:
            self._hex(parent_chain_id, "parent chain id")
        want = chain_of(parent_chain_id, diff_id)
        if want != chain_id:
            raise InvalidArgument(
                f"snapshot {chain_id}: the chain id of diff id {diff_id} on parent "
                f"{parent_chain_id or '(none)'} is {want}"
            )
        if parent_chain_id is not None:
            try:
                parent = self.get(parent_chain_id)
            except NotFound:
                raise FailedPrecondition(
                    f"snapshot {chain_id}: parent snapshot {parent_chain_id} does not exist"
                ) from None
            if not parent.path.is_dir():
                raise FailedPrecondition(
                    f"snapshot {chain_id}: parent snapshot {parent_chain_id} has no "
                    f"directory (run reconcile or pull the image again)"
                )
        with self._locked(chain_id):
            row = self.db.query_one("SELECT * FROM snapshots WHERE chain_id = ?", (chain_id,))
            if row is not None and self.fs_path(chain_id).is_dir():
                return self._row_to_snapshot(row)
            result_size = self._unpack_into_place(chain_id, diff_id, blob_path, blob_digest)
            with self.db.transaction() as conn:
                if row is None:
                    conn.execute(
                        "INSERT INTO snapshots (chain_id, diff_id, parent, size, refcount, "
                        "created_at) VALUES (?, ?, ?, ?, 0, ?)",
                        (chain_id, diff_id, parent_chain_id, result_size, time.time()),
                    )
                else:  # the row survived but the directory was lost: we restored it
                    conn.execute("UPDATE snapshots SET size = ? WHERE chain_id = ?",
                                 (result_size, chain_id))
            return self.get(chain_id)

    def _unpack_into_place(self, chain_id: str, diff_id: str,
                           blob_path: str | os.PathLike[str], blob_digest: str | None) -> int:
        from pyrt.snapshots.unpack import unpack_layer

        hexid = self._hex(chain_id)
        work = self.tmp / f"unpack-{hexid[:12]}-{uuid.uuid4().hex[:12]}"
        work.mkdir()
        lock_fd = lock_dir(work, wait=False)  # reconcile() of another process skips it
        try:
            fs = work / "fs"
            fs.mkdir(mode=0o755)
            result = unpack_layer(blob_path, fs, blob_digest)
            if result.diff_id != diff_id:
                raise InvalidArgument(
                    f"layer {blob_digest or os.fspath(blob_path)}: diff id mismatch: the image "
                    f"config expects {diff_id}, the layer's content is {result.diff_id}"
                )
            final = self.snapshot_dir(chain_id)
            if final.exists():  # an unrecorded leftover (or a lost row): replace it
                self._discard(final)
            os.rename(work, final)
            _fsync_dir(self.dir)
            self._make_link(chain_id)
            return result.diff_size
        except OSError as e:
            raise SystemError_(f"snapshot {chain_id}: {e}", e.errno) from e
        finally:
            if lock_fd is not None:
                os.close(lock_fd)
            _rmtree(work)  # gone already after a successful rename

    def _make_link(self, chain_id: str) -> None:
        link = self.short_link(chain_id)
        target = f"../{self._hex(chain_id)}/fs"
        try:
            current = os.readlink(link)
        except FileNotFoundError:
            current = None
        if current == target:
            return
        if current is not None and (self.dir / current[3:]).parent.is_dir():
            # another live snapshot shares the first 16 hex digits: astronomically unlikely
            raise SystemError_(
                f"snapshot {chain_id}: short link {link.name} already names {current}"
            )
        tmp = self.links / f".{link.name}.{uuid.uuid4().hex[:8]}"
        os.symlink(target, tmp)
        os.replace(tmp, link)

    def _discard(self, path: Path) -> None:
        """Rename `path` into tmp/ (so it stops being visible at once), then delete it."""
        trash = self.tmp / f"rm-{path.name[:12]}-{uuid.uuid4().hex[:12]}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        _rmtree(trash)

    # -- removing --------------------------------------------------------------------------
    def remove(self, chain_id: str) -> None:
        """Remove one snapshot; Conflict-like FailedPrecondition if it is still used."""
        with self._locked(chain_id):
            with self.db.transaction() as conn:
                row = conn.execute(
                    "SELECT refcount, (SELECT COUNT(*) FROM snapshots c WHERE c.parent = "
                    "s.chain_id) AS children FROM snapshots s WHERE chain_id = ?",
                    (chain_id,),
                ).fetchone()
                if row is None:
                    raise NotFound(f"snapshot {chain_id} not found")
                if row["refcount"] > 0 or row["children"] > 0 or self._pinned(chain_id):
                    raise FailedPrecondition(
                        f"snapshot {chain_id} is in use: {row['refcount']} image(s), "
                        f"{row['children']} child snapshot(s)"
                    )
                conn.execute("DELETE FROM snapshots WHERE chain_id = ?", (chain_id,))
            self._remove_files(chain_id)

    def _remove_files(self, chain_id: str) -> None:
        link = self.short_link(chain_id)
        with contextlib.suppress(FileNotFoundError):
            if os.readlink(link) == f"../{self._hex(chain_id)}/fs":
                os.unlink(link)
        self._discard(self.snapshot_dir(chain_id))
        with contextlib.suppress(OSError):
            os.rmdir(self.locks / self._hex(chain_id))  # we hold its lock (see lock_dir)

    def remove_unused(self) -> builtins.list[str]:
        """Remove every snapshot with refcount 0 and no children (repeatedly, so a chain
        whose top goes frees its ancestors); returns the chain ids removed."""
        removed: builtins.list[str] = []
        skipped: set[str] = set()
        while True:
            rows = self.db.query(
                "SELECT chain_id FROM snapshots s WHERE refcount = 0 AND NOT EXISTS "
                "(SELECT 1 FROM snapshots c WHERE c.parent = s.chain_id) ORDER BY chain_id"
            )
            candidates = [str(r["chain_id"]) for r in rows if str(r["chain_id"]) not in skipped]
            if not candidates:
                return removed
            for chain_id in candidates:
                if self._pinned(chain_id):
                    skipped.add(chain_id)
                    continue
                with self._locked(chain_id, wait=False) as got:
                    if not got:  # someone is ensuring it right now: it's about to be used
                        skipped.add(chain_id)
                        continue
                    with self.db.transaction() as conn:
                        cur = conn.execute(
                            "DELETE FROM snapshots WHERE chain_id = ? AND refcount = 0 AND "
                            "NOT EXISTS (SELECT 1 FROM snapshots c WHERE c.parent = ?)",
                            (chain_id, chain_id),
                        )
                        gone = cur.rowcount == 1
                    if gone:
                        self._remove_files(chain_id)
                        removed.append(chain_id)
                    else:
                        skipped.add(chain_id)

    # -- crash recovery --------------------------------------------------------------------
    def reconcile(self) -> ReconcileReport:
        """Make the directory agree with the database after a crash: delete temp dirs
        nobody is using, snapshot dirs without a row, dangling short links; report rows
        whose directory is missing."""
        report = ReconcileReport()
        for entry in sorted(os.listdir(self.tmp)):
            path = self.tmp / entry
            try:
                fd = lock_dir(path, wait=False) if path.is_dir() else None
            except BlockingIOError:
                continue  # an unpack in progress (another process)
            except OSError:
                fd = None
            try:
                if path.is_dir() and not path.is_symlink():
                    _rmtree(path)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                report.removed_temp.append(entry)
            finally:
                if fd is not None:
                    os.close(fd)
        recorded = {str(r["chain_id"]) for r in self.db.query("SELECT chain_id FROM snapshots")}
        for entry in sorted(os.listdir(self.dir)):
            if not _HEX64.fullmatch(entry):
                continue
            chain_id = f"sha256:{entry}"
            if chain_id in recorded or self._pinned(chain_id):
                continue
            with self._locked(chain_id, wait=False) as got:
                if not got:
                    continue
                if self.db.query_one("SELECT 1 FROM snapshots WHERE chain_id = ?",
                                     (chain_id,)) is not None:
                    continue
                self._remove_files(chain_id)
                report.removed_unrecorded.append(chain_id)
        for entry in sorted(os.listdir(self.links)):
            link = self.links / entry
            try:
                target = os.readlink(link)
            except OSError as e:
                if e.errno == errno_mod.EINVAL:  # not a symlink: not ours
                    continue
                raise
            if entry.startswith(".") or not (self.links / target).exists():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(link)
                report.removed_links.append(entry)
        for chain_id in sorted(recorded):
            if not self.fs_path(chain_id).is_dir():
                report.missing_dirs.append(chain_id)
            else:
                self._make_link(chain_id)
        return report

    # -- overlay ---------------------------------------------------------------------------
    def prepare_container_rootfs(self, chain_id: str | None,
                                 dest_dir: str | os.PathLike[str], *,
                                 targets: bool = False) -> RootfsMount:
        from pyrt.snapshots.overlay import prepare_container_rootfs

        return prepare_container_rootfs(self, chain_id, dest_dir, targets=targets)
