"""Pull and push at the blob and manifest level, between a registry and the content store.

    result = pull("127.0.0.1:5000/app:1", store, progress=sink)
    push("127.0.0.1:5000/app:1", store, result.manifest_digest)

A pull resolves the reference to a manifest (an index picks the manifest for `platform`,
default this machine), stores the index and manifest bytes, then downloads the config
and the layers with a bounded thread pool. A blob the store has is skipped (Already
exists); a partial ingest left by an earlier pull resumes at its offset; every blob is
verified by digest and size when the store's writer commits it, so a tampered blob fails
the pull, naming its digest, and nothing of it becomes visible. Layers are not unpacked
here: the image service does that (and emits Extracting / Pull complete), while the
download goes on, through two callbacks: `on_manifest(result)` once the manifest is
resolved, before any blob is fetched, and `on_blob_committed(descriptor)` once per blob
as soon as it is verified and in the store (right away for a blob the store had, else
just after its Download complete event). Setting the `cancel` event stops the downloads
(the pull then raises FailedPrecondition); partial ingests stay for a later resume.

A push sends the blobs of a manifest (and of each manifest of an index) that the registry
lacks: HEAD first (Layer already exists), a cross-repository mount when a hint says the
blob lives in another repository of the same registry (Mounted from ...), an upload
otherwise (one PUT, or PATCH chunks above `chunk_threshold`); then the manifests by
digest, and the top one under the reference's tag.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from pyrt.errors import FailedPrecondition, InvalidArgument, NotFound, PyrtError
from pyrt.images.progress import ByteProgress, ProgressEvent, ProgressKind, ProgressSink, discard

if TYPE_CHECKING:
    from pyrt.images.registry import RegistryClient
    from pyrt.oci.manifest import Descriptor, Manifest
    from pyrt.oci.platform import Platform
    from pyrt.oci.reference import Reference

DEFAULT_CHUNK_THRESHOLD = 64 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024


class BlobStore(Protocol):
    """The part of pyrt.content.store.ContentStore a transfer uses."""

    def exists(self, digest: str) -> bool: ...

    def path(self, digest: str) -> Path: ...

    def read_bytes(self, digest: str) -> bytes: ...

    def write_blob(self, data: bytes, expected: str | None = None) -> str: ...

    def writer(
        self, ref: str, expected_digest: str | None = None, expected_size: int | None = None,
        *, wait: bool = False,
    ) -> Any: ...


class _IngestWriter:
    """A store Writer that can also start over (`truncate(0)`: abort the ingest, open a
    fresh one), which fetch_blob needs when a server ignores a Range request."""

    def __init__(self, store: BlobStore, ref: str, digest: str, size: int) -> None:
        self._store = store
        self._args = (ref, digest, size)
        self._w: Any = store.writer(ref, digest, size, wait=True)

    @property
    def offset(self) -> int:
        return int(self._w.offset)

    def write(self, data: bytes) -> int:
        return int(self._w.write(data))

    def truncate(self, size: int) -> None:
        if size != 0:
            raise InvalidArgument(f"ingest {self._args[0]}: can only restart from 0")
        self._w.abort()
        self._w = self._store.writer(*self._args, wait=True)

    def commit(self) -> str:
        return str(self._w.commit())

    def abort(self) -> None:
        self._w.abort()

    def close(self) -> None:
        """Keep the partial bytes for a later resume."""
        self._w.close()


ClientFactory = Callable[[str], "RegistryClient"]


def default_client_factory(domain: str) -> RegistryClient:
    """A RegistryClient with the credentials of ~/.docker/config.json."""
    from pyrt.images.auth import CredentialStore
    from pyrt.images.registry import RegistryClient

    return RegistryClient(domain, credentials_lookup=CredentialStore().get)


@dataclass(frozen=True)
class PullResult:
    reference: Reference
    manifest_digest: str
    manifest: bytes
    manifest_media_type: str
    config_digest: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    index_digest: str | None = None
    index: bytes | None = None


@dataclass(frozen=True)
class PushResult:
    reference: Reference
    digest: str  # of what the tag now points to (the index, if one was pushed)
    size: int
    manifest_digests: tuple[str, ...]  # every manifest PUT, children first


class _Cancelled(Exception):
    """Raised inside a worker when another worker failed."""


def _as_reference(reference: Reference | str) -> Reference:
    from pyrt.oci.reference import Reference, parse_normalized

    if isinstance(reference, Reference):
        return reference
    if not isinstance(reference, str):
        raise InvalidArgument(f"image reference: expected a string, got {type(reference)}")
    return parse_normalized(reference)


def _store_bytes(store: BlobStore, digest: str, data: bytes) -> None:
    """Put small content (a manifest, an index) into the store, verified."""
    if not store.exists(digest):
        store.write_blob(data, expected=digest)


def _run_parallel(
    tasks: Sequence[Callable[[threading.Event], None]], max_parallel: int, what: str
) -> None:
    """Run the tasks on a bounded pool; the first failure cancels the rest and is raised.
    A task's cancel event is set when another task failed."""
    if max_parallel < 1:
        raise InvalidArgument(f"{what}: max_parallel must be >= 1, got {max_parallel}")
    if not tasks:
        return
    cancel = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=min(max_parallel, len(tasks)), thread_name_prefix="pyrt-transfer"
    ) as pool:
        futures = [pool.submit(t, cancel) for t in tasks]
        done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        first: BaseException | None = None
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None:
                first = f.exception()
                break
        if first is not None:
            cancel.set()
            for f in futures:
                f.cancel()
            concurrent.futures.wait(futures)
            # prefer a real error over a worker's _Cancelled
            for f in futures:
                if f.done() and not f.cancelled():
                    exc = f.exception()
                    if exc is not None and not isinstance(exc, _Cancelled):
                        raise exc
            raise first


# -- pull ---------------------------------------------------------------------------------


def pull(
    reference: Reference | str,
    store: BlobStore,
    *,
    platform: Platform | None = None,
    client_factory: ClientFactory | None = None,
    progress: ProgressSink = discard,
    max_parallel: int = 3,
    on_manifest: Callable[[PullResult], None] | None = None,
    on_blob_committed: Callable[[Descriptor], None] | None = None,
    cancel: threading.Event | None = None,
) -> PullResult:
    """Download an image's manifest, config and layers into `store` (see module doc).

    on_manifest: called once, in the calling thread, with what the pull will return, before
    any blob is fetched. on_blob_committed: called once per distinct blob of the manifest
    (config and layers) when it is in the store, from the calling thread or a worker; all
    calls happen before pull returns; an exception it raises fails the pull. cancel: set
    it (from any thread) to stop the pull: workers stop at their next chunk and pull raises
    FailedPrecondition.
    """
    from pyrt.oci import mediatypes as mt
    from pyrt.oci.manifest import Index, parse_manifest, require_image, select_platform

    ref = _as_reference(reference)
    client = (client_factory or default_client_factory)(ref.domain)
    repo = ref.path
    target = ref.digest or ref.tag or "latest"
    data, media_type, digest = client.get_manifest(repo, target, mt.MANIFEST_ACCEPT)
    parsed = parse_manifest(data, media_type)
    index_digest: str | None = None
    index_data: bytes | None = None
    if isinstance(parsed, Index):
        index_digest, index_data = digest, data
        desc = select_platform(parsed, platform)
        data, media_type, digest = client.get_manifest(repo, desc.digest, mt.MANIFEST_ACCEPT)
        if len(data) != desc.size:
            raise InvalidArgument(
                f"manifest {desc.digest} of {ref}: {len(data)} bytes, index says {desc.size}"
            )
        parsed = parse_manifest(data, media_type)
        if isinstance(parsed, Index):
            raise InvalidArgument(f"{ref}: index {index_digest} points to another index")
    manifest: Manifest = parsed
    require_image(manifest)

    blobs: list[Descriptor] = []
    seen: set[str] = set()
    for d in (manifest.config, *manifest.layers):
        if d.digest not in seen:
            seen.add(d.digest)
            blobs.append(d)
    layer_digests = {d.digest for d in manifest.layers}

    def emit(kind: ProgressKind, d: Descriptor, current: int = 0, detail: str = "") -> None:
        if d.digest in layer_digests:
            progress(ProgressEvent(kind, d.digest, current, d.size, detail))

    result = PullResult(
        reference=ref,
        manifest_digest=digest,
        manifest=data,
        manifest_media_type=manifest.media_type,
        config_digest=manifest.config.digest,
        config=manifest.config,
        layers=tuple(manifest.layers),
        index_digest=index_digest,
        index=index_data,
    )
    if on_manifest is not None:
        on_manifest(result)
    committed = on_blob_committed or _ignore_blob

    def stopped(worker_cancel: threading.Event) -> bool:
        return worker_cancel.is_set() or (cancel is not None and cancel.is_set())

    todo: list[Descriptor] = []
    present: list[Descriptor] = []
    for d in blobs:
        if store.exists(d.digest):
            emit(ProgressKind.ALREADY_EXISTS, d)
            present.append(d)
        else:
            emit(ProgressKind.WAITING, d)
            todo.append(d)
    for d in present:
        committed(d)

    def task_for(d: Descriptor) -> Callable[[threading.Event], None]:
        def run(worker_cancel: threading.Event) -> None:
            try:
                _download(client, repo, d, store, lambda: stopped(worker_cancel), emit,
                          progress, layer_digests)
                committed(d)
            except _Cancelled:
                raise
            except BaseException as e:
                emit(ProgressKind.FAILED, d, detail=str(e))
                raise

        return run

    try:
        _run_parallel([task_for(d) for d in todo], max_parallel, f"pull {ref}")
    except _Cancelled:
        raise FailedPrecondition(f"pull {ref}: cancelled") from None
    _store_bytes(store, digest, data)
    if index_digest is not None and index_data is not None:
        _store_bytes(store, index_digest, index_data)
    return result


def _ignore_blob(d: Descriptor) -> None:
    pass


def _download(
    client: RegistryClient,
    repo: str,
    d: Descriptor,
    store: BlobStore,
    stopped: Callable[[], bool],
    emit: Callable[..., None],
    progress: ProgressSink,
    layer_digests: set[str],
) -> None:
    if stopped():
        raise _Cancelled()
    if store.exists(d.digest):  # another pull finished it meanwhile
        emit(ProgressKind.ALREADY_EXISTS, d)
        return
    writer = _IngestWriter(store, f"pull-{d.digest}", d.digest, d.size)
    try:
        if store.exists(d.digest):  # we waited for another writer that committed it
            writer.abort()
            emit(ProgressKind.ALREADY_EXISTS, d)
            return
        sink = progress if d.digest in layer_digests else discard
        bytes_progress = ByteProgress(sink, ProgressKind.DOWNLOADING, d.digest, d.size)
        if writer.offset:
            bytes_progress.update(writer.offset)

        def on_progress(done: int) -> None:
            if stopped():
                raise _Cancelled()
            bytes_progress.update(done)

        client.fetch_blob(repo, d.digest, d.size, writer, on_progress=on_progress)
        bytes_progress.update(writer.offset, force=True)
        emit(ProgressKind.VERIFYING, d)
        try:
            writer.commit()  # verifies size and digest; on a mismatch it drops the ingest
        except PyrtError as e:
            raise InvalidArgument(
                f"blob {d.digest} from {client.domain}/{repo} failed verification "
                f"(nothing of it was stored): {e}"
            ) from e
    finally:
        writer.close()  # no-op after commit/abort; else keeps the bytes for a resume
    emit(ProgressKind.DOWNLOAD_COMPLETE, d)


# -- push ---------------------------------------------------------------------------------


def _mount_sources(
    ref: Reference, digest: str, hints: Mapping[str, Sequence[str]]
) -> list[str]:
    """Repositories on ref's registry (other than ref's own) known to hold `digest`.
    A hint is "repo/path" (same registry) or "domain/repo/path"."""
    out: list[str] = []
    for hint in hints.get(digest, ()):
        src = hint
        first, _, rest = hint.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            if first != ref.domain:
                continue
            src = rest
        if src != ref.path and src not in out:
            out.append(src)
    return out


def push(
    reference: Reference | str,
    store: BlobStore,
    manifest_digest: str,
    *,
    client_factory: ClientFactory | None = None,
    progress: ProgressSink = discard,
    mount_hints: Mapping[str, Sequence[str]] | None = None,
    chunk_threshold: int = DEFAULT_CHUNK_THRESHOLD,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_parallel: int = 3,
) -> PushResult:
    """Upload the manifest (or index) `manifest_digest` and everything it references from
    `store` to `reference`'s repository; tag it with the reference's tag."""
    from pyrt.oci.manifest import Index, parse_manifest, require_image

    if chunk_size < 1 or chunk_threshold < 0:
        raise InvalidArgument("push: chunk_size must be >= 1 and chunk_threshold >= 0")
    ref = _as_reference(reference)
    if ref.digest and ref.digest != manifest_digest:
        raise InvalidArgument(
            f"push {ref}: the reference names digest {ref.digest}, "
            f"the content to push is {manifest_digest}"
        )
    hints = mount_hints or {}
    client = (client_factory or default_client_factory)(ref.domain)
    top = _read_stored(store, manifest_digest, f"push {ref}: manifest")
    top_parsed = parse_manifest(top)

    manifests: list[tuple[str, bytes, Manifest]] = []
    if isinstance(top_parsed, Index):
        for i, child in enumerate(top_parsed.manifests):
            data = _read_stored(store, child.digest, f"push {ref}: index entry {i}")
            m = parse_manifest(data, child.media_type)
            if isinstance(m, Index):
                raise InvalidArgument(f"push {ref}: nested index {child.digest} not supported")
            manifests.append((child.digest, data, m))
    else:
        manifests.append((manifest_digest, top, top_parsed))

    blobs: dict[str, Descriptor] = {}
    layer_digests: set[str] = set()
    for _, _, m in manifests:
        require_image(m)
        for d in (m.config, *m.layers):
            blobs.setdefault(d.digest, d)
        layer_digests.update(d.digest for d in m.layers)

    def emit(kind: ProgressKind, d: Descriptor, current: int = 0, detail: str = "") -> None:
        if d.digest in layer_digests:
            progress(ProgressEvent(kind, d.digest, current, d.size, detail))

    for d in blobs.values():
        if not store.exists(d.digest):
            raise FailedPrecondition(
                f"push {ref}: blob {d.digest} ({d.media_type}) is not in the content store"
            )
        emit(ProgressKind.PREPARING, d)
    for d in blobs.values():
        emit(ProgressKind.WAITING, d)

    def task_for(d: Descriptor) -> Callable[[threading.Event], None]:
        def run(cancel: threading.Event) -> None:
            try:
                _upload(client, ref, d, store, cancel, emit, progress, layer_digests, hints,
                        chunk_threshold, chunk_size)
            except _Cancelled:
                raise
            except BaseException as e:
                emit(ProgressKind.FAILED, d, detail=str(e))
                raise

        return run

    _run_parallel([task_for(d) for d in blobs.values()], max_parallel, f"push {ref}")

    pushed: list[str] = []
    if isinstance(top_parsed, Index):
        for digest, data, m in manifests:
            client.put_manifest(ref.path, digest, data, m.media_type)
            pushed.append(digest)
    tag = ref.tag or manifest_digest
    got = client.put_manifest(ref.path, tag, top, top_parsed.media_type)
    if got != manifest_digest:
        raise InvalidArgument(
            f"push {ref}: stored manifest {manifest_digest} hashes to {got}: store is corrupt"
        )
    pushed.append(manifest_digest)
    return PushResult(ref, manifest_digest, len(top), tuple(pushed))


def _read_stored(store: BlobStore, digest: str, what: str) -> bytes:
    if not store.exists(digest):
        raise FailedPrecondition(f"{what} {digest} is not in the content store")
    try:
        return store.read_bytes(digest)
    except (NotFound, FileNotFoundError) as e:
        raise FailedPrecondition(f"{what} {digest} is not in the content store") from e


def _upload(
    client: RegistryClient,
    ref: Reference,
    d: Descriptor,
    store: BlobStore,
    cancel: threading.Event,
    emit: Callable[..., None],
    progress: ProgressSink,
    layer_digests: set[str],
    hints: Mapping[str, Sequence[str]],
    chunk_threshold: int,
    chunk_size: int,
) -> None:
    if cancel.is_set():
        raise _Cancelled()
    repo = ref.path
    if client.head_blob(repo, d.digest) is not None:
        emit(ProgressKind.LAYER_EXISTS, d)
        return
    location: str | None = None
    for src in _mount_sources(ref, d.digest, hints):
        location = client.mount_blob(repo, d.digest, src)
        if location is None:
            emit(ProgressKind.MOUNTED, d, detail=src)
            return
        break  # the registry opened an upload instead: use it
    path = store.path(d.digest)
    size = path.stat().st_size
    if size != d.size:
        raise FailedPrecondition(
            f"push {ref}: stored blob {d.digest} has {size} bytes, the manifest says {d.size}"
        )
    sink = progress if d.digest in layer_digests else discard
    bytes_progress = ByteProgress(sink, ProgressKind.PUSHING, d.digest, d.size)

    def on_progress(done: int) -> None:
        if cancel.is_set():
            raise _Cancelled()
        bytes_progress.update(done)

    def opener() -> IO[bytes]:
        return open(path, "rb")

    client.upload_blob(
        repo, d.digest, d.size, opener, location=location,
        chunk_size=chunk_size if d.size > chunk_threshold else None,
        on_progress=on_progress,
    )
    bytes_progress.update(d.size, force=True)
    emit(ProgressKind.PUSHED, d)


def layer_sources(result: PullResult) -> dict[str, list[str]]:
    """Mount hints from a pull: every blob of `result` lives in its repository."""
    src = f"{result.reference.domain}/{result.reference.path}"
    return {d.digest: [src] for d in (result.config, *result.layers)}


def manifest_media_type(data: bytes) -> str:
    """The mediaType a stored manifest declares ("" if none)."""
    try:
        mt = json.loads(data).get("mediaType")
    except (ValueError, AttributeError):
        return ""
    return mt if isinstance(mt, str) else ""


def merge_hints(*hints: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for h in hints:
        for digest, repos in h.items():
            lst = out.setdefault(digest, [])
            lst += [r for r in repos if r not in lst]
    return out
