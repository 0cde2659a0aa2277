"""A content-addressed blob store with resumable, verified ingests.

Layout under `root`:

    blobs/<alg>/<hex>          complete, verified blobs (read-only files)
    ingest/<key>/data          bytes received so far for one ingest
    ingest/<key>/meta.json     {"ref", "expected", "expected_size", "started_at"}

`<key>` is the sha256 of the caller's ref key (any string, e.g. "layer-sha256:ab..."), so
any ref is a safe directory name; the ref itself is in meta.json.

Guarantees:

- Atomic: a blob is either absent or complete and verified. A writer's bytes go to its
  ingest file; `commit()` checks size and digest, fsyncs the file, renames it into
  blobs/<alg>/ and fsyncs that directory. A crash at any point leaves at most an ingest.
- Resumable: `writer(ref, ...)` on a ref whose ingest exists continues it: the offset is the
  bytes already there, and their hash is recomputed so the final digest covers everything.
- Exclusive: a writer holds `flock(LOCK_EX)` on its ingest directory for its lifetime (the
  kernel drops it if the process dies). A second writer for the same ref gets `Conflict`
  at once, or with `wait=True` blocks until the first one commits, aborts or closes, and
  then resumes from wherever that one left off.
- Lock + removal: whoever removes an ingest directory (commit, abort, gc) holds its lock
  while doing so; a waiter that then gets the lock notices the directory is gone or was
  replaced (inode check) and starts over.

Threads: a `Writer` is not thread-safe; use one writer per thread. Store methods that only
read (exists/info/open/list) are safe from any thread.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pyrt.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound, SystemError_
from pyrt.oci.digest import ALGORITHMS, Digest

_CHUNK = 1 << 20
_DATA = "data"
_META = "meta.json"


@dataclass(frozen=True)
class IngestStatus:
    ref: str
    key: str
    path: Path
    offset: int
    expected: str | None
    expected_size: int | None
    started_at: float
    updated_at: float


def ingest_key(ref: str) -> str:
    """The directory name of the ingest for `ref`."""
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument("ingest ref: required non-empty string")
    return hashlib.sha256(ref.encode()).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def lock_dir(path: Path, *, wait: bool) -> int | None:
    """flock(LOCK_EX) `path` (which must exist); returns the fd, or None if it's gone.

    Raises BlockingIOError if `wait` is false and someone else holds the lock. Returns None
    when the directory disappeared or was replaced while we were taking the lock.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        try:
            st = os.stat(path)
        except FileNotFoundError:
            os.close(fd)
            return None
        fst = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (fst.st_dev, fst.st_ino):
            os.close(fd)
            return None
        return fd
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


class Writer:
    """One ingest in progress. Use `write()` then `commit()`; `close()` keeps the partial
    data for a later resume, `abort()` throws it away. As a context manager, leaving the
    block without a commit closes (keeps the partial data)."""

    def __init__(self, store: ContentStore, ref: str, dirpath: Path, lock_fd: int,
                 expected: Digest | None, expected_size: int | None) -> None:
        self._store = store
        self.ref = ref
        self._dir = dirpath
        self._lock_fd: int | None = lock_fd
        self.expected = expected
        self.expected_size = expected_size
        self._hasher: Any = hashlib.new(expected.algorithm if expected else "sha256")
        self._algorithm = expected.algorithm if expected else "sha256"
        self._fd: int | None = None
        self.offset = 0
        self._committed: str | None = None
        try:
            self._open()
        except BaseException:
            self._release()
            raise

    # -- setup -----------------------------------------------------------------------------
    def _open(self) -> None:
        data = self._dir / _DATA
        meta_path = self._dir / _META
        meta: dict[str, Any] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            loaded = json.loads(meta_path.read_text())
            if isinstance(loaded, dict):
                meta = loaded
        restart = False
        if self.expected is not None and meta.get("expected") not in (None, str(self.expected)):
            restart = True  # the ref was reused for other content: its bytes are useless
        fd = os.open(data, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._fd = fd
        size = os.fstat(fd).st_size
        if self.expected_size is not None and size > self.expected_size:
            restart = True
        if restart or not meta:
            os.ftruncate(fd, 0)
            size = 0
            meta = {
                "ref": self.ref,
                "expected": str(self.expected) if self.expected else None,
                "expected_size": self.expected_size,
                "started_at": time.time(),
            }
            tmp = self._dir / (_META + ".tmp")
            tmp.write_text(json.dumps(meta))
            os.replace(tmp, meta_path)
        # hash the prefix that is already there, so the digest covers the whole blob
        os.lseek(fd, 0, os.SEEK_SET)
        done = 0
        while done < size:
            chunk = os.read(fd, min(_CHUNK, size - done))
            if not chunk:
                break
            self._hasher.update(chunk)
            done += len(chunk)
        self.offset = done
        os.lseek(fd, done, os.SEEK_SET)
        if done != size:  # shrank under us; nobody else holds the lock, so be safe
            os.ftruncate(fd, done)

    # -- public ----------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self._dir

    def digest(self) -> str:
        """The digest of the bytes written so far."""
        return f"{self._algorithm}:{self._hasher.hexdigest()}"

    def _check_open(self) -> int:
        if self._fd is None:
            raise FailedPrecondition(f"ingest {self.ref!r}: writer is closed")
        return self._fd

    def write(self, data: bytes | bytearray | memoryview) -> int:
        fd = self._check_open()
        n = len(data)
        if self.expected_size is not None and self.offset + n > self.expected_size:
            got = self.offset + n
            self.abort()
            raise InvalidArgument(
                f"size mismatch for {self.expected or self.ref}: expected "
                f"{self.expected_size} bytes, got at least {got}"
            )
        try:
            _write_all(fd, data)
        except OSError as e:
            raise SystemError_(f"ingest {self.ref!r}: write: {e.strerror}", e.errno) from e
        self._hasher.update(data)
        self.offset += n
        return n

    def commit(self) -> str:
        """Verify, then move the blob into place; returns its digest. Idempotent per blob:
        if the blob already exists the ingest is dropped and the digest returned."""
        fd = self._check_open()
        actual = self.digest()
        if self.expected_size is not None and self.offset != self.expected_size:
            self.abort()
            raise InvalidArgument(
                f"size mismatch for {self.expected or self.ref}: expected "
                f"{self.expected_size} bytes, got {self.offset}"
            )
        if self.expected is not None and actual != str(self.expected):
            self.abort()
            raise InvalidArgument(f"digest mismatch for {self.expected}: got {actual}")
        try:
            os.fchmod(fd, 0o444)
            os.fsync(fd)
            os.close(fd)
            self._fd = None
            target = self._store.path(actual)
            if not target.exists():
                os.rename(self._dir / _DATA, target)
                _fsync_dir(target.parent)
        except OSError as e:
            self._remove_dir()
            self._release()
            raise SystemError_(f"commit {actual}: {e.strerror}", e.errno) from e
        self._remove_dir()
        self._release()
        self._committed = actual
        return actual

    def abort(self) -> None:
        """Throw the ingest away."""
        if self._lock_fd is None:
            return
        self._remove_dir()
        self._release()

    def close(self) -> None:
        """Release the ingest, keeping its bytes for a later writer to resume."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        self._release()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- internals -------------------------------------------------------------------------
    def _remove_dir(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def _release(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None


class ContentStore:
    """Blobs by digest under `root`. See the module docstring for the guarantees."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.ingest_root = self.root / "ingest"
        for alg in ALGORITHMS:
            (self.blobs / alg).mkdir(parents=True, exist_ok=True)
        self.ingest_root.mkdir(parents=True, exist_ok=True)

    # -- blobs -----------------------------------------------------------------------------
    def path(self, digest: str | Digest) -> Path:
        d = Digest.parse(digest)
        return self.blobs / d.algorithm / d.hex

    def exists(self, digest: str | Digest) -> bool:
        return self.path(digest).is_file()

    def info(self, digest: str | Digest) -> int:
        """The blob's size in bytes."""
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def open(self, digest: str | Digest) -> IO[bytes]:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def read_bytes(self, digest: str | Digest, *, verify: bool = False) -> bytes:
        with self.open(digest) as f:
            data = f.read()
        if verify and not Digest.parse(digest).verify(data):
            raise InvalidArgument(f"blob {digest} is corrupt: its content has another digest")
        return data

    def delete(self, digest: str | Digest) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def list(self) -> list[str]:
        """Every blob's digest (sorted)."""
        out: list[str] = []
        for alg, length in ALGORITHMS.items():
            try:
                names = os.listdir(self.blobs / alg)
            except FileNotFoundError:
                continue
            for name in names:
                if len(name) == length and all(c in "0123456789abcdef" for c in name):
                    out.append(f"{alg}:{name}")
        return sorted(out)

    def write_blob(self, data: bytes, expected: str | None = None) -> str:
        """Store `data` in one go (through an ingest, so it is atomic); returns its digest."""
        w = self.writer(f"bytes-{uuid.uuid4().hex}", expected, len(data))
        try:
            w.write(data)
            return w.commit()
        finally:
            w.abort()  # a no-op after a commit; otherwise nobody will resume a random ref

    def ingest_from_file(self, src: str | os.PathLike[str] | int,
                         expected: str | None = None, expected_size: int | None = None) -> str:
        """Copy a file (path, or an open fd read from its current offset and not closed)
        into the store; verifies `expected`/`expected_size` when given. Returns the digest."""
        own = not isinstance(src, int)
        fd = src if isinstance(src, int) else os.open(src, os.O_RDONLY | os.O_CLOEXEC)
        w = self.writer(f"file-{uuid.uuid4().hex}", expected, expected_size)
        try:
            while True:
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    break
                w.write(chunk)
            return w.commit()
        finally:
            w.abort()
            if own:
                os.close(fd)

    # -- ingests ---------------------------------------------------------------------------
    def writer(self, ref: str, expected_digest: str | Digest | None = None,
               expected_size: int | None = None, *, wait: bool = False) -> Writer:
        """Open (or resume) the ingest named `ref`.

        A second writer for a ref that is in use gets Conflict; with `wait=True` it blocks
        until the first writer is done and then continues from its bytes.
        """
        expected = Digest.parse(expected_digest, what="expected digest") if (
            expected_digest is not None) else None
        if expected_size is not None and (
                isinstance(expected_size, bool) or not isinstance(expected_size, int)
                or expected_size < 0):
            raise InvalidArgument(f"expected size: must be a non-negative integer, "
                                  f"got {expected_size!r}")
        dirpath = self.ingest_root / ingest_key(ref)
        while True:
            dirpath.mkdir(exist_ok=True)
            try:
                fd = lock_dir(dirpath, wait=wait)
            except BlockingIOError:
                raise Conflict(f"ingest {ref!r} is in use by another writer") from None
            if fd is not None:
                return Writer(self, ref, dirpath, fd, expected, expected_size)

    def abort(self, ref: str) -> bool:
        """Remove the ingest of `ref`; False if there was none. Conflict if it is in use."""
        dirpath = self.ingest_root / ingest_key(ref)
        try:
            fd = lock_dir(dirpath, wait=False)
        except BlockingIOError:
            raise Conflict(f"ingest {ref!r} is in use by another writer") from None
        if fd is None:
            return False
        try:
            shutil.rmtree(dirpath, ignore_errors=True)
        finally:
            os.close(fd)
        return True

    def _ingest_dirs(self) -> Iterator[Path]:
        try:
            names = os.listdir(self.ingest_root)
        except FileNotFoundError:
            return
        for name in sorted(names):
            yield self.ingest_root / name

    def ingest_status(self, dirpath: Path) -> IngestStatus | None:
        """What is known about one ingest directory (None if it vanished)."""
        try:
            dst = dirpath.stat()
        except FileNotFoundError:
            return None
        meta: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads((dirpath / _META).read_text())
            if isinstance(loaded, dict):
                meta = loaded
        offset, updated = 0, dst.st_mtime
        try:
            st = (dirpath / _DATA).stat()
            offset, updated = st.st_size, max(updated, st.st_mtime)
        except FileNotFoundError:
            pass
        started = meta.get("started_at")
        return IngestStatus(
            ref=str(meta.get("ref", "")),
            key=dirpath.name,
            path=dirpath,
            offset=offset,
            expected=meta.get("expected"),
            expected_size=meta.get("expected_size"),
            started_at=float(started) if isinstance(started, (int, float)) else dst.st_mtime,
            updated_at=updated,
        )

    def ingests(self) -> builtins.list[IngestStatus]:
        out: builtins.list[IngestStatus] = []
        for d in self._ingest_dirs():
            st = self.ingest_status(d)
            if st is not None:
                out.append(st)
        return out

    def status(self, ref: str) -> IngestStatus:
        st = self.ingest_status(self.ingest_root / ingest_key(ref))
        if st is None:
            raise NotFound(f"ingest {ref!r} not found")
        return st


def is_locked(path: Path) -> bool:
    """Does a live writer hold `path`'s lock? (Best effort: the answer can change at once.)"""
    try:
        fd = lock_dir(path, wait=False)
    except BlockingIOError:
        return True
    except OSError as e:
        if e.errno == errno.ENOENT:
            return False
        raise
    if fd is not None:
        os.close(fd)
    return False
