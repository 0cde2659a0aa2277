"""The image service: pull, register, look up, list, inspect, tag, remove, prune, push.

It ties the content store (blobs), the snapshot service (unpacked layers) and the metadata
database (images, tags, repo_digests, image_layers) together:

    pull  = transfer.pull (blobs into the store, in a thread, a bounded number at once)
            while this thread unpacks each layer into a snapshot as soon as its blob is
            verified and its parent is unpacked (diff ids checked against the config)
            -> one transaction: image row, image_layers rows (snapshot refcounts follow),
            tag, repo digest
    rmi   = one transaction dropping the references (and the image when none is left),
            then unused snapshots and blobs no other image uses

Every mutation of the database is one transaction. The files come first and the rows
last, so a crash leaves only files nobody references: snapshot directories without rows
and snapshot rows that no image references, both removed by `reconcile()` at start.
Snapshots being prepared for an image are pinned (SnapshotService.hold) until the image's
transaction commits, so a concurrent `remove()`/`prune()` cannot take them away.

Docker's behaviours and wording are kept where a client can see them: "No such image: x",
"Untagged:"/"Deleted:" entries, the rmi conflicts, "Status: Downloaded newer image for x".
One deliberate difference: `force` never deletes an image a container uses (its layers
are the container's lower dirs); it only untags it, leaving it dangling.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyrt.content.gc import GcResult, collect
from pyrt.content.store import ContentStore
from pyrt.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PyrtError,
    SystemError_,
)
from pyrt.images import models
from pyrt.images.models import (
    HistoryItem,
    Image,
    ImageInspect,
    ImageLayer,
    ImageSummary,
    PulledImage,
)
from pyrt.images.progress import ProgressEvent, ProgressKind, ProgressSink, discard
from pyrt.metadata.db import Database
from pyrt.oci.digest import Digest
from pyrt.oci.image_config import ImageConfig, parse_image_config
from pyrt.oci.manifest import Index, Manifest, parse_manifest, require_image, select_platform
from pyrt.oci.platform import Platform, parse_platform
from pyrt.oci.reference import Reference, parse_normalized, parse_reference
from pyrt.snapshots.service import SnapshotService

InUse = Callable[[str], "str | bool | None"]
"""in_use(image_id) -> a container id (or True) when a container uses the image."""

_HEX_PREFIX = re.compile(r"[0-9a-f]{1,64}")
DEFAULT_INGEST_MAX_AGE_S = 24 * 3600.0


def _not_found(name: str) -> NotFound:
    return NotFound(f"No such image: {name}")


def _never_in_use(image_id: str) -> None:
    return None


@dataclass(frozen=True)
class _Resolved:
    image_id: str
    by_reference: Reference | None  # the tag or repo@digest the name matched, if any


@dataclass(frozen=True)
class _Plan:
    """An image about to be unpacked and recorded: its manifest, config and chain ids."""

    manifest_digest: str
    manifest: Manifest
    index_digest: str | None
    image_id: str
    config: ImageConfig
    config_bytes: bytes
    chain_ids: list[str]

    @property
    def blobs(self) -> list[str]:
        """The blobs the image's records will reference (kept from gc meanwhile)."""
        out = [self.manifest_digest, self.image_id, *(d.digest for d in self.manifest.layers)]
        if self.index_digest:
            out.append(self.index_digest)
        return out


class ImageService:
    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        store: ContentStore,
        db: Database,
        snapshots: SnapshotService,
        insecure_registries: Iterable[str] = (),
        mirrors: Iterable[str] = (),
        credentials_path: str | os.PathLike[str] | None = None,
        platform: Platform | str | None = None,
        client_factory: Callable[[str], Any] | None = None,
        reconcile: bool = True,
    ) -> None:
        self.root = Path(root)
        self.store = store
        self.db = db
        self.snapshots = snapshots
        self.insecure_registries = tuple(insecure_registries)
        self.mirrors = tuple(mirrors)
        self.credentials_path = Path(credentials_path) if credentials_path else None
        self.platform = parse_platform(platform) if isinstance(platform, str) else platform
        self._client_factory = client_factory
        self._busy_blobs: Counter[str] = Counter()
        self._busy_lock = threading.Lock()
        if reconcile:
            self.reconcile()

    # -- registry clients ------------------------------------------------------------------
    def client_factory(self, domain: str) -> Any:
        if self._client_factory is not None:
            return self._client_factory(domain)
        from pyrt.images.auth import CredentialStore
        from pyrt.images.registry import RegistryClient

        creds = CredentialStore(self.credentials_path)
        return RegistryClient(domain, insecure_registries=self.insecure_registries,
                              mirrors=self.mirrors, credentials_lookup=creds.get)

    @contextlib.contextmanager
    def _protect_blobs(self, digests: Iterable[str]) -> Iterator[None]:
        ds = list(digests)
        with self._busy_lock:
            self._busy_blobs.update(ds)
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy_blobs.subtract(ds)
                self._busy_blobs += Counter()

    # -- start-up --------------------------------------------------------------------------
    def reconcile(self) -> list[str]:
        """After a crash: snapshots no image references (an image transaction that never
        committed) are removed; returns their chain ids. SnapshotService already dropped
        unrecorded directories and temp dirs when it started."""
        return self.snapshots.remove_unused()

    # -- reading the records ---------------------------------------------------------------
    def _load(self, image_id: str) -> Image:
        row = self.db.query_one("SELECT * FROM images WHERE id = ?", (image_id,))
        if row is None:
            raise _not_found(image_id)
        config = parse_image_config(str(row["config_json"]))
        layer_rows = self.db.query(
            "SELECT l.*, s.diff_id, s.size FROM image_layers l JOIN snapshots s "
            "ON s.chain_id = l.chain_id WHERE l.image_id = ? ORDER BY l.position", (image_id,))
        layers = tuple(
            ImageLayer(position=int(r["position"]), chain_id=str(r["chain_id"]),
                       diff_id=str(r["diff_id"]), blob_digest=r["blob_digest"],
                       media_type=r["media_type"], blob_size=r["blob_size"],
                       size=int(r["size"]))
            for r in layer_rows
        )
        tags = self.db.query("SELECT name, updated_at FROM tags WHERE image_id = ? "
                             "ORDER BY name", (image_id,))
        digests = self.db.query("SELECT name FROM repo_digests WHERE image_id = ? "
                                "ORDER BY name", (image_id,))
        return Image(
            id=image_id, config=config, config_json=str(row["config_json"]),
            manifest_digest=row["manifest_digest"],
            manifest_media_type=row["manifest_media_type"], index_digest=row["index_digest"],
            created=str(row["created"] or ""), size=int(row["size"]),
            added_at=float(row["added_at"]), layers=layers,
            repo_tags=tuple(str(t["name"]) for t in tags),
            repo_digests=tuple(str(d["name"]) for d in digests),
            last_tag_time=max((float(t["updated_at"]) for t in tags), default=None),
        )

    def _resolve(self, name: str) -> _Resolved:
        """docker's lookup: an id ("sha256:<hex>" or 64 hex), a reference (tag or
        repo@digest), then a unique short id prefix."""
        if not isinstance(name, str) or not name:
            raise InvalidArgument("image name: required non-empty string")
        if name.startswith("sha256:"):
            d = Digest.parse(name, what="image id")
            if self.db.query_one("SELECT 1 FROM images WHERE id = ?", (str(d),)) is None:
                raise _not_found(name)
            return _Resolved(str(d), None)
        if len(name) == 64 and _HEX_PREFIX.fullmatch(name):
            if self.db.query_one("SELECT 1 FROM images WHERE id = ?", (f"sha256:{name}",)):
                return _Resolved(f"sha256:{name}", None)
            raise _not_found(name)
        ref: Reference | None
        try:
            ref = parse_reference(name)
        except InvalidArgument:
            ref = None
        if ref is not None:
            if ref.digest is not None:
                found = self._by_digest(ref)
                if found is not None:
                    return _Resolved(found, ref)
            else:
                tagged = parse_normalized(name)
                row = self.db.query_one("SELECT image_id FROM tags WHERE name = ?",
                                        (str(tagged),))
                if row is not None:
                    return _Resolved(str(row["image_id"]), tagged)
        if _HEX_PREFIX.fullmatch(name):
            rows = self.db.query("SELECT id FROM images WHERE id LIKE ? ORDER BY id",
                                 (f"sha256:{name}%",))
            if len(rows) == 1:
                return _Resolved(str(rows[0]["id"]), None)
            if len(rows) > 1:
                raise InvalidArgument(
                    f"short image id {name!r} is ambiguous: it matches {len(rows)} images "
                    f"({', '.join(str(r['id'])[7:19] for r in rows[:5])}); give more digits"
                )
        if ref is None:
            parse_reference(name)  # re-raise docker's "invalid reference format" text
        raise _not_found(name)

    def _by_digest(self, ref: Reference) -> str | None:
        row = self.db.query_one("SELECT image_id FROM repo_digests WHERE name = ?",
                                (f"{ref.name}@{ref.digest}",))
        if row is not None:
            return str(row["image_id"])
        # pulled by tag through an index (or the other way round): same content, same repo
        row = self.db.query_one(
            "SELECT i.id FROM images i WHERE (i.manifest_digest = ? OR i.index_digest = ?) "
            "AND (EXISTS (SELECT 1 FROM tags t WHERE t.image_id = i.id AND t.repository = ?) "
            "OR EXISTS (SELECT 1 FROM repo_digests r WHERE r.image_id = i.id "
            "AND r.repository = ?))", (ref.digest, ref.digest, ref.name, ref.name))
        return None if row is None else str(row["id"])

    def get(self, name_or_id: str) -> Image:
        """The image a name, reference, id or unique short id names (NotFound otherwise)."""
        return self._load(self._resolve(name_or_id).image_id)

    def exists(self, name_or_id: str) -> bool:
        try:
            self._resolve(name_or_id)
        except NotFound:
            return False
        return True

    def all(self) -> builtins.list[Image]:
        rows = self.db.query("SELECT id FROM images ORDER BY added_at, id")
        return [self._load(str(r["id"])) for r in rows]

    # -- recording -------------------------------------------------------------------------
    def _read_json_blob(self, digest: str, what: str) -> bytes:
        if not self.store.exists(digest):
            raise FailedPrecondition(f"{what} {digest} is not in the content store")
        return self.store.read_bytes(digest, verify=True)

    def _plan(self, manifest_digest: str, manifest_bytes: bytes,
              index_digest: str | None) -> _Plan:
        """Check a manifest and its (stored) config; the chain ids of its layers."""
        manifest = parse_manifest(manifest_bytes)
        if isinstance(manifest, Index):
            raise InvalidArgument(f"manifest {manifest_digest} is an index, not an image")
        require_image(manifest)
        config_bytes = self._read_json_blob(manifest.config.digest, "image config")
        config = parse_image_config(config_bytes)
        image_id = manifest.config.digest
        if len(manifest.layers) != len(config.diff_ids):
            raise InvalidArgument(
                f"image {image_id}: manifest {manifest_digest} lists {len(manifest.layers)} "
                f"layers but the config's rootfs.diff_ids has {len(config.diff_ids)}"
            )
        return _Plan(manifest_digest, manifest, index_digest, image_id, config, config_bytes,
                     config.chain_ids())

    def _unpack_layer(self, plan: _Plan, i: int, progress: ProgressSink,
                      fresh_layers: Container[str]) -> tuple[int, bool]:
        """Make sure layer i's snapshot exists (its parent's must); emits Extracting and
        Pull complete. Returns (the snapshot's size, whether this call created it)."""
        layer = plan.manifest.layers[i]
        chain_ids = plan.chain_ids
        existed = self.snapshots.exists(chain_ids[i])
        if not existed:
            if not self.store.exists(layer.digest):
                raise FailedPrecondition(
                    f"image {plan.image_id}: layer {layer.digest} is not in the content store"
                )
            progress(ProgressEvent(ProgressKind.EXTRACTING, layer.digest, 0, layer.size))
        snap = self.snapshots.ensure(
            chain_ids[i], chain_ids[i - 1] if i else None, plan.config.diff_ids[i],
            self.store.path(layer.digest), blob_digest=layer.digest)
        if not existed:
            progress(ProgressEvent(ProgressKind.EXTRACTING, layer.digest, layer.size,
                                   layer.size))
        if not existed or layer.digest in fresh_layers:
            progress(ProgressEvent(ProgressKind.PULL_COMPLETE, layer.digest))
        return snap.size, not existed

    def _record(self, *, manifest_digest: str, manifest_bytes: bytes,
                index_digest: str | None, tags: Iterable[Reference],
                repo_digests: Iterable[Reference], progress: ProgressSink = discard,
                fresh_layers: frozenset[str] = frozenset()) -> Image:
        """Unpack the manifest's layers and record the image, tags and digests at once."""
        plan = self._plan(manifest_digest, manifest_bytes, index_digest)
        created: list[str] = []
        sizes: list[int] = []
        try:
            with self._protect_blobs(plan.blobs), self.snapshots.hold(plan.chain_ids):
                for i in range(len(plan.manifest.layers)):
                    size, new = self._unpack_layer(plan, i, progress, fresh_layers)
                    if new:
                        created.append(plan.chain_ids[i])
                    sizes.append(size)
                self._insert(plan.image_id, plan.config, plan.config_bytes, plan.manifest,
                             manifest_digest, index_digest, plan.chain_ids, sum(sizes), tags,
                             repo_digests)
        except BaseException:
            # nothing of a failed image stays (after our pins are released, so the
            # snapshots can go; one another registration pins or uses is kept)
            self._remove_created(created)
            raise
        return self._load(plan.image_id)

    def _remove_created(self, created: Iterable[str]) -> None:
        for chain_id in reversed(list(created)):
            with contextlib.suppress(PyrtError):
                self.snapshots.remove(chain_id)

    def _insert(self, image_id: str, config: ImageConfig, config_bytes: bytes,
                manifest: Manifest, manifest_digest: str, index_digest: str | None,
                chain_ids: list[str], size: int, tags: Iterable[Reference],
                repo_digests: Iterable[Reference]) -> None:
        now = time.time()
        with self.db.transaction() as conn:
            row = conn.execute("SELECT manifest_digest FROM images WHERE id = ?",
                               (image_id,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO images (id, manifest_digest, manifest_media_type, "
                    "index_digest, config_json, created, architecture, os, variant, size, "
                    "added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (image_id, manifest_digest, manifest.media_type, index_digest,
                     config_bytes.decode(), config.created or None, config.architecture,
                     config.os, config.variant, size, now),
                )
                for pos, (chain_id, layer) in enumerate(zip(chain_ids, manifest.layers,
                                                            strict=True)):
                    conn.execute(
                        "INSERT INTO image_layers (image_id, position, chain_id, blob_digest, "
                        "media_type, blob_size) VALUES (?, ?, ?, ?, ?, ?)",
                        (image_id, pos, chain_id, layer.digest, layer.media_type, layer.size),
                    )
            else:
                # the same image again (another manifest of it, e.g. a re-push): keep the
                # layers; fill in what an earlier registration lacked
                conn.execute(
                    "UPDATE images SET manifest_digest = COALESCE(manifest_digest, ?), "
                    "manifest_media_type = COALESCE(manifest_media_type, ?), "
                    "index_digest = COALESCE(index_digest, ?) WHERE id = ?",
                    (manifest_digest, manifest.media_type, index_digest, image_id),
                )
            for ref in tags:
                conn.execute(
                    "INSERT INTO tags (name, repository, image_id, updated_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                    "image_id = excluded.image_id, repository = excluded.repository, "
                    "updated_at = CASE WHEN tags.image_id = excluded.image_id "
                    "THEN tags.updated_at ELSE excluded.updated_at END",
                    (str(ref), ref.name, image_id, now),
                )
            for ref in repo_digests:
                conn.execute(
                    "INSERT INTO repo_digests (name, repository, image_id) VALUES (?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
                    (str(ref), ref.name, image_id),
                )

    @staticmethod
    def _tag_refs(tags: Iterable[str]) -> list[Reference]:
        out: list[Reference] = []
        for t in tags:
            ref = parse_normalized(t)
            if ref.digest is not None:
                raise InvalidArgument(f"tag {t!r}: a tag cannot carry a digest")
            out.append(ref)
        return out

    @staticmethod
    def _digest_refs(names: Iterable[str]) -> list[Reference]:
        out: list[Reference] = []
        for n in names:
            ref = parse_reference(n)
            if ref.digest is None or ref.tag is not None:
                raise InvalidArgument(f"repo digest {n!r}: expected repository@sha256:<hex>")
            out.append(ref)
        return out

    def register(self, manifest_digest: str, *, index_digest: str | None = None,
                 tags: Iterable[str] = (), repo_digests: Iterable[str] = (),
                 platform: Platform | str | None = None,
                 progress: ProgressSink = discard) -> Image:
        """Record an image whose blobs are already in the content store (load, import,
        commit). `manifest_digest` may name an index: the platform's manifest is used.
        Idempotent: registering it again only adds the tags and digests."""
        digest = str(Digest.parse(manifest_digest, what="manifest digest"))
        data = self._read_json_blob(digest, "manifest")
        parsed = parse_manifest(data)
        if isinstance(parsed, Index):
            if index_digest is not None and index_digest != digest:
                raise InvalidArgument(
                    f"register: {digest} is an index; index_digest {index_digest} differs")
            index_digest = digest
            want = parse_platform(platform) if isinstance(platform, str) else platform
            desc = select_platform(parsed, want or self.platform)
            digest = desc.digest
            data = self._read_json_blob(digest, "manifest")
        return self._record(manifest_digest=digest, manifest_bytes=data,
                            index_digest=index_digest, tags=self._tag_refs(tags),
                            repo_digests=self._digest_refs(repo_digests), progress=progress)

    # -- pull / push -----------------------------------------------------------------------
    def pull(self, reference: str, *, platform: Platform | str | None = None,
             progress: ProgressSink = discard, max_parallel: int = 3) -> PulledImage:
        """docker pull: download the blobs (at most `max_parallel` at once) and unpack each
        layer as soon as its blob is verified and its parent layer is unpacked, while later
        layers are still downloading; then record the image, its tag and repo digest in one
        transaction. On any failure (download, digest, diff id) the downloads stop and
        nothing of the image is recorded; snapshots this pull made are removed."""
        from pyrt.images import transfer

        ref = parse_normalized(reference)
        want = parse_platform(platform) if isinstance(platform, str) else platform
        before: str | None = None
        with contextlib.suppress(NotFound):
            before = self._resolve(str(ref)).image_id
        downloaded: set[str] = set()

        def sink(event: ProgressEvent) -> None:
            if event.kind is ProgressKind.DOWNLOAD_COMPLETE:
                downloaded.add(event.digest)
            progress(event)

        # The transfer runs in a thread of its own and reports through a queue; this thread
        # unpacks (the database and the snapshots stay with the caller's thread).
        events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        cancel = threading.Event()

        def download() -> None:
            try:
                res = transfer.pull(
                    ref, self.store, platform=want or self.platform,
                    client_factory=self.client_factory, progress=sink,
                    max_parallel=max_parallel, cancel=cancel,
                    on_manifest=lambda r: events.put(("manifest", r)),
                    on_blob_committed=lambda d: events.put(("blob", d.digest)))
            except BaseException as e:  # handed to the pulling thread
                events.put(("failed", e))
            else:
                events.put(("done", res))

        worker = threading.Thread(target=download, name=f"pyrt-pull-{ref.path}", daemon=True)
        worker.start()
        try:
            image = self._unpack_while_downloading(ref, events, sink, downloaded)
        finally:
            cancel.set()  # a no-op once the transfer is done
            worker.join()
        new = before != image.id
        shown = ref.familiar()
        status = (f"Downloaded newer image for {shown}" if new
                  else f"Image is up to date for {shown}")
        fields = {f: getattr(image, f) for f in Image.__dataclass_fields__}
        return PulledImage(**fields, status=status, downloaded=new)

    def list_tags(self, repository: str) -> list[str]:
        """The tags a registry holds for `repository` (a name without tag or digest), in
        the registry's order: what `docker pull --all-tags` pulls."""
        ref = parse_reference(repository)
        if not ref.is_name_only():
            raise InvalidArgument(f"list tags of {repository!r}: give a repository name "
                                  "without a tag or digest")
        tags: list[str] = self.client_factory(ref.domain).list_tags(ref.path)
        return tags

    def _unpack_while_downloading(self, ref: Reference,
                                  events: queue.SimpleQueue[tuple[str, Any]],
                                  progress: ProgressSink, downloaded: set[str]) -> Image:
        """Consume a transfer's events: layer i is unpacked once its blob is committed and
        layer i-1 is unpacked; the image is recorded when the transfer is done."""
        committed: set[str] = set()
        result: Any = None  # transfer.PullResult, once the manifest is resolved
        plan: _Plan | None = None
        unpacked = 0
        created: list[str] = []
        sizes: list[int] = []
        pins = contextlib.ExitStack()
        try:
            with pins:
                while True:
                    kind, value = events.get()
                    if kind == "failed":
                        raise value
                    if kind == "blob":
                        committed.add(value)
                    elif kind in ("manifest", "done"):
                        if result is None:
                            blobs = [value.manifest_digest, value.config_digest,
                                     *(d.digest for d in value.layers)]
                            if value.index_digest:
                                blobs.append(value.index_digest)
                            pins.enter_context(self._protect_blobs(blobs))
                        result = value
                    if plan is None and result is not None and result.config_digest in committed:
                        plan = self._plan(result.manifest_digest, result.manifest,
                                          result.index_digest)
                        pins.enter_context(self.snapshots.hold(plan.chain_ids))
                    if plan is not None:
                        layers = plan.manifest.layers
                        while unpacked < len(layers) and layers[unpacked].digest in committed:
                            size, new = self._unpack_layer(plan, unpacked, progress, downloaded)
                            if new:
                                created.append(plan.chain_ids[unpacked])
                            sizes.append(size)
                            unpacked += 1
                    if kind == "done":
                        break
                if plan is None or unpacked < len(plan.manifest.layers):
                    missing = ([result.config_digest] if plan is None else
                               [d.digest for d in plan.manifest.layers[unpacked:]])
                    raise SystemError_(
                        f"pull {ref}: the transfer finished without committing "
                        f"{', '.join(missing)}")
                tags = [ref] if ref.tag is not None and ref.digest is None else []
                pulled_digest = result.index_digest or result.manifest_digest
                self._insert(plan.image_id, plan.config, plan.config_bytes, plan.manifest,
                             plan.manifest_digest, plan.index_digest, plan.chain_ids,
                             sum(sizes), tags, [ref.name_only().with_digest(pulled_digest)])
        except BaseException:
            # the pins are released by now: the snapshots this pull made can go
            self._remove_created(created)
            raise
        return self._load(plan.image_id)

    def push(self, reference: str, *, progress: ProgressSink = discard) -> Any:
        """Push a local image under `reference` (which must name it, as docker requires:
        tag it first). Returns transfer.PushResult; the repo digest is recorded."""
        from pyrt.images import transfer

        ref = parse_normalized(reference)
        image = self.get(str(ref))
        if image.manifest_digest is None or not self.store.exists(image.manifest_digest):
            raise FailedPrecondition(
                f"push {ref.familiar()}: image {image.short_id} has no stored manifest")
        result = transfer.push(ref, self.store, image.manifest_digest,
                               client_factory=self.client_factory, progress=progress)
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO repo_digests (name, repository, image_id) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
                (f"{ref.name}@{result.digest}", ref.name, image.id))
        return result

    # -- API views -------------------------------------------------------------------------
    def list(self, all: bool = False,  # noqa: A002 - docker's parameter name
             filters: dict[str, Any] | None = None) -> builtins.list[ImageSummary]:
        """GET /images/json. `all` changes nothing: pyrt keeps no intermediate images."""
        f = models.parse_filters(filters, models.LIST_FILTERS)
        images = self.all()
        if "dangling" in f:
            want = f["dangling"][0].lower() in ("true", "1")
            images = [i for i in images if (not i.repo_tags) == want]
        if "reference" in f:
            images = [i for i in images if models.reference_matches(i, f["reference"])]
        if "label" in f:
            images = [i for i in images if models.label_matches(i.labels, f["label"])]
        for key in ("before", "since"):
            for name in f.get(key, []):
                pivot = self.get(name)
                t = models.unix_seconds(pivot.created)
                images = [i for i in images if i.id != pivot.id and (
                    models.unix_seconds(i.created) < t if key == "before"
                    else models.unix_seconds(i.created) > t)]
        out = [models.summary(i) for i in images]
        out.sort(key=lambda s: (-s["Created"], s["Id"]))
        return out

    def inspect(self, name: str) -> ImageInspect:
        image = self.get(name)
        top = image.top_chain_id
        lowers = self.snapshots.lower_dirs(top) if top else []
        snap_dir = str(self.snapshots.snapshot_dir(top)) if top else None
        return models.inspect(image, models.graph_driver(lowers, snap_dir))

    def history(self, name: str) -> builtins.list[HistoryItem]:
        return models.history(self.get(name))

    # -- tags ------------------------------------------------------------------------------
    def tag(self, source: str, target: str) -> Reference:
        """Point `target` (normalised, ":latest" by default) at the image `source` names;
        an existing tag of that name moves."""
        image_id = self._resolve(source).image_id
        ref = parse_normalized(target)
        if ref.digest is not None:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {target}")
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO tags (name, repository, image_id, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, "
                "updated_at = excluded.updated_at",
                (str(ref), ref.name, image_id, time.time()))
        return ref

    # -- removal ---------------------------------------------------------------------------
    def remove(self, name: str, force: bool = False, prune: bool = True,
               in_use: InUse = _never_in_use) -> builtins.list[dict[str, str]]:
        """docker rmi. Returns [{"Untagged": ...}, ..., {"Deleted": ...}, ...].

        By tag or repo@digest: untag it; if no reference is left, delete the image. By id:
        delete the image with all its references, which needs `force` when it is known
        in several repositories or by several tags. An image a container uses is refused
        unless `force`, and with `force` only untagged (never deleted). `prune` removes
        the snapshots and blobs nobody uses any more right away (else `gc()` does it).
        """
        resolved = self._resolve(name)
        image = self._load(resolved.image_id)
        user = in_use(image.id)
        refs = [parse_reference(t) for t in image.repo_tags] + [
            parse_reference(d) for d in image.repo_digests]
        out: builtins.list[dict[str, str]] = []
        untag: builtins.list[Reference] = []
        delete = False
        if resolved.by_reference is not None:
            ref = resolved.by_reference
            if ref.digest is not None and str(ref) not in image.repo_digests:
                # matched through the image's manifest/index digest, not a recorded name
                same = [r for r in refs if r.name == ref.name and r.digest is not None]
                if not same:
                    raise InvalidArgument(
                        f"{name} is not a recorded reference of image {image.short_id}; "
                        "remove it by tag or by id")
                ref = same[0]
            untag.append(ref)
            left = [r for r in refs if str(r) != str(ref)]
            if ref.digest is None and not any(
                    r.name == ref.name and r.digest is None for r in left):
                # the repository's last tag: its digest references go too (docker does)
                untag += [r for r in left if r.name == ref.name and r.digest is not None]
                left = [r for r in left if not (r.name == ref.name and r.digest is not None)]
            if not left:
                if user and not force:
                    raise Conflict(
                        f"conflict: unable to remove repository reference \"{name}\" "
                        f"(must force) - container {self._cid(user)} is using its "
                        f"referenced image {image.short_id}")
                delete = not user
        else:
            tags = [r for r in refs if r.digest is None]
            single = len(tags) <= 1 and len({r.name for r in refs}) <= 1
            if not single and not force:
                raise Conflict(
                    f"conflict: unable to delete {image.short_id} (must be forced) - "
                    "image is referenced in multiple repositories")
            if user and not force:
                raise Conflict(
                    f"conflict: unable to delete {image.short_id} (must be forced) - "
                    f"image is being used by container {self._cid(user)}")
            untag = refs
            delete = not user
        with self.db.transaction() as conn:
            for ref in untag:
                table = "repo_digests" if ref.digest is not None else "tags"
                conn.execute(f"DELETE FROM {table} WHERE name = ? AND image_id = ?",
                             (str(ref), image.id))
                out.append({"Untagged": ref.familiar()})
            if delete:
                conn.execute("DELETE FROM tags WHERE image_id = ?", (image.id,))
                conn.execute("DELETE FROM images WHERE id = ?", (image.id,))
        if delete:
            out.append({"Deleted": image.id})
            if prune:
                out += [{"Deleted": c} for c in self._sweep(image)[0]]
        return out

    @staticmethod
    def _cid(user: str | bool | None) -> str:
        return user[:12] if isinstance(user, str) else "(unknown)"

    def _referenced_blobs(self) -> set[str]:
        keep: set[str] = set()
        for r in self.db.query("SELECT id, manifest_digest, index_digest FROM images"):
            keep.update(str(v) for v in (r["id"], r["manifest_digest"], r["index_digest"]) if v)
        for r in self.db.query("SELECT DISTINCT blob_digest FROM image_layers "
                               "WHERE blob_digest IS NOT NULL"):
            keep.add(str(r["blob_digest"]))
        with self._busy_lock:
            keep.update(d for d, n in self._busy_blobs.items() if n > 0)
        return keep

    def _sweep(self, image: Image) -> tuple[builtins.list[str], int]:
        """Remove unused snapshots, and the blobs of `image` nobody else references.
        Returns (removed chain ids, bytes freed)."""
        sizes = {layer.chain_id: layer.size for layer in image.layers}
        removed = self.snapshots.remove_unused()
        freed = sum(sizes.get(c, 0) for c in removed)
        keep = self._referenced_blobs()
        mine = {image.id, *(d for d in (image.manifest_digest, image.index_digest) if d),
                *(layer.blob_digest for layer in image.layers if layer.blob_digest)}
        for digest in sorted(mine - keep):
            with contextlib.suppress(NotFound, OSError):
                size = self.store.info(digest)
                self.store.delete(digest)
                freed += size
        return removed, freed

    def prune(self, dangling_only: bool = True, filters: dict[str, Any] | None = None,
              in_use: InUse = _never_in_use) -> dict[str, Any]:
        """docker image prune: dangling images (all unused ones with dangling_only=False)
        that no container uses. Filters: until=<unix seconds|RFC 3339|duration like 24h>,
        label=k[=v], label!=k[=v]. SpaceReclaimed counts the bytes of removed snapshots
        (their diff sizes) and blobs."""
        f = models.parse_filters(filters, models.PRUNE_FILTERS)
        if "dangling" in f:
            dangling_only = f["dangling"][0].lower() in ("true", "1")
        until = [_parse_until(u) for u in f.get("until", [])]
        deleted: builtins.list[dict[str, str]] = []
        reclaimed = 0
        for image in self.all():
            if dangling_only and image.repo_tags:
                continue
            if any(image.added_at >= u for u in until):
                continue
            if "label" in f and not models.label_matches(image.labels, f["label"]):
                continue
            if "label!" in f and any(models.label_matches(image.labels, [x])
                                     for x in f["label!"]):
                continue
            if in_use(image.id):
                continue
            with self.db.transaction() as conn:
                if conn.execute("SELECT 1 FROM images WHERE id = ?",
                                (image.id,)).fetchone() is None:
                    continue
                for t in image.repo_tags:
                    deleted.append({"Untagged": models.familiar(t)})
                for d in image.repo_digests:
                    deleted.append({"Untagged": models.familiar(d)})
                conn.execute("DELETE FROM tags WHERE image_id = ?", (image.id,))
                conn.execute("DELETE FROM images WHERE id = ?", (image.id,))
            deleted.append({"Deleted": image.id})
            removed, freed = self._sweep(image)
            deleted += [{"Deleted": c} for c in removed]
            reclaimed += freed
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def gc(self, *, ingest_max_age_s: float = DEFAULT_INGEST_MAX_AGE_S,
           protect_newer_than_s: float = 60.0) -> GcResult:
        """Remove unused snapshots, blobs no recorded image references (blobs committed in
        the last `protect_newer_than_s` are kept: a pull may be about to record them) and
        stale ingests."""
        self.snapshots.remove_unused()
        return collect(self.store, self._referenced_blobs(), ingest_max_age_s,
                       protect_newer_than_s=protect_newer_than_s)

    def images_using_snapshot(self, chain_id: str) -> builtins.list[str]:
        return [str(r["image_id"]) for r in self.db.query(
            "SELECT DISTINCT image_id FROM image_layers WHERE chain_id = ? ORDER BY image_id",
            (chain_id,))]


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _parse_until(text: str) -> float:
    """docker's `until`: unix seconds ("1700000000[.5]"), RFC 3339, or a Go duration
    ("24h", "1h30m") meaning that long ago."""
    t = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        return float(t)
    if re.fullmatch(rf"(?:{_DURATION.pattern})+", t):
        total = sum(float(n) * _UNIT_S[u] for n, u in _DURATION.findall(t))
        return time.time() - total
    try:
        secs, nanos = models.parse_rfc3339(t)
    except InvalidArgument:
        raise InvalidArgument(
            f"invalid filter 'until={text}': expected a timestamp or a duration") from None
    return secs + nanos / 1e9

