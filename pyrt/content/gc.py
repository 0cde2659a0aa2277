"""Garbage collection of the content store.

`collect(store, referenced, ingest_max_age_s)` deletes every blob whose digest is not in
`referenced`, and every ingest that nobody has written to for `ingest_max_age_s` seconds.
An ingest whose lock a live writer holds is never removed, however old. The removal of an
ingest happens under its lock, so it cannot race a writer that resumes it.

The caller computes `referenced` (manifests, configs, layers of every image, plus whatever
is being pulled right now). A pull that has committed a blob but not yet recorded the image
would lose it; `protect_newer_than_s` keeps blobs committed that recently as a safety net.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from pyrt.content.store import ContentStore, lock_dir
from pyrt.oci.digest import Digest


@dataclass
class GcResult:
    removed_blobs: list[str] = field(default_factory=list)
    removed_ingests: list[str] = field(default_factory=list)  # refs (or keys if unknown)
    bytes_freed: int = 0
    kept_blobs: int = 0
    skipped_locked_ingests: list[str] = field(default_factory=list)


def collect(store: ContentStore, referenced: Iterable[str], ingest_max_age_s: float, *,
            protect_newer_than_s: float = 0.0, now: float | None = None,
            dry_run: bool = False) -> GcResult:
    keep = {str(Digest.parse(d, what="referenced digest")) for d in referenced}
    now = time.time() if now is None else now
    result = GcResult()

    for digest in store.list():
        if digest in keep:
            result.kept_blobs += 1
            continue
        path = store.path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if protect_newer_than_s > 0 and now - st.st_mtime < protect_newer_than_s:
            result.kept_blobs += 1
            continue
        if not dry_run:
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
        result.removed_blobs.append(digest)
        result.bytes_freed += st.st_size

    for status in store.ingests():
        if now - status.updated_at < ingest_max_age_s:
            continue
        name = status.ref or status.key
        try:
            fd = lock_dir(status.path, wait=False)
        except BlockingIOError:
            result.skipped_locked_ingests.append(name)
            continue
        if fd is None:
            continue
        try:
            # re-check under the lock: a writer may have resumed it since we looked
            fresh = store.ingest_status(status.path)
            if fresh is None or now - fresh.updated_at < ingest_max_age_s:
                continue
            if not dry_run:
                shutil.rmtree(status.path, ignore_errors=True)
            result.removed_ingests.append(name)
            result.bytes_freed += fresh.offset
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
    return result
