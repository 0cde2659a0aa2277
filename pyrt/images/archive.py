"""Image archives: `docker save` / `docker load` tarballs and OCI image layouts.

    save([(image, ["busybox:latest"])], out, "docker", store=store)
    refs = load(src, store=store, service=images)   # ["busybox:latest", "sha256:<id>"...]

Formats written by `save` (a tar stream, written with tarfile in stream mode, so `out` may
be a pipe or a socket, and no layer is ever held in memory):

- "docker": the layout docker 25+ writes, which is at once a docker-archive and an OCI image
  layout: `blobs/sha256/<hex>` for configs, layers and manifests, `oci-layout`, `index.json`
  (one entry per tag, annotated with `io.containerd.image.name` and
  `org.opencontainers.image.ref.name`), `manifest.json` ([{Config, RepoTags, Layers}]) and
  `repositories` ({repo: {tag: top layer hex}}). Layers are uncompressed tars, so their
  digests are the config's diff ids (a gzip or zstd blob from the store is decompressed
  through a temporary file, and checked against the diff id on the way).
- "oci": a plain OCI image layout; blobs are written as stored (compressed layers stay
  compressed); a docker schema 2 manifest is rewritten with the OCI media types.

`load` reads a docker-archive in the old layout (`<id>/layer.tar`, `<id>.json`, symlinks
between duplicate layers), the new one (`blobs/sha256/<hex>`), the one skopeo and podman
write (`<hex>.tar`, `<hex>.json`), and a plain OCI image layout; the archive itself may be
gzip/bzip2/xz compressed. It reads the tar as a stream, once, and takes only the members it
expects (blobs into the content store, the few JSON documents into memory with a size
cap); it never extracts anything to disk, resolves symlinks and hard links between members
by name inside the archive, and ignores paths that are absolute or contain "..". Every
blob is verified: against the digest its name carries, against the descriptor that refers
to it (size and digest) and, for layers, against the config's diff ids. Only when every
image of the archive has passed is anything registered with the image service, so a
tampered archive raises InvalidArgument naming the digest and leaves no image behind (the
verified blobs it ingested are unreferenced and go at the next gc).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import subprocess
import tarfile
import tempfile
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from pyrt.content.store import ContentStore
from pyrt.errors import InvalidArgument, NotFound, PyrtError, SystemError_
from pyrt.oci import mediatypes as mt
from pyrt.oci.digest import ALGORITHMS, Digest
from pyrt.oci.image_config import ImageConfig, parse_image_config
from pyrt.oci.manifest import (
    Descriptor,
    Index,
    Manifest,
    parse_image_manifest,
    parse_manifest,
    select_platform,
)
from pyrt.oci.platform import Platform
from pyrt.oci.reference import Reference, parse_normalized, parse_reference

_CHUNK = 1 << 20
#: the largest JSON document (manifest.json, index.json, a config, a manifest) we read
MAX_DOCUMENT_SIZE = 32 << 20
#: how many links a member name may go through before it must reach a file
_MAX_LINK_HOPS = 16

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
OCI_LAYOUT_VERSION = "1.0.0"

_BLOB_PATH = re.compile(r"blobs/([a-z0-9]+)/([a-f0-9]+)")
_HEX_JSON = re.compile(r"([a-f0-9]{64})\.json")
_HEX_TAR = re.compile(r"([a-f0-9]{64})\.tar")
_DOCS = ("manifest.json", "index.json", "oci-layout", "repositories")

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class SavableImage(Protocol):
    """What `save` needs of an image (pyrt.images.service.Image has it)."""

    @property
    def id(self) -> str: ...

    @property
    def manifest_digest(self) -> str | None: ...


class Registrar(Protocol):
    """The part of pyrt.images.service.ImageService that `load` uses."""

    def register(self, manifest_digest: str, *, index_digest: str | None = None,
                 tags: list[str] = ..., repo_digests: list[str] = ...) -> Any: ...


# -- small shared helpers -------------------------------------------------------------------

def json_bytes(obj: Any) -> bytes:
    """Compact, key-order-preserving JSON: the bytes pyrt stores and hashes."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def detect_compression(head: bytes) -> str:
    """"gzip", "zstd" or "" from a blob's first bytes."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return ""


def layer_media_type(compression: str) -> str:
    return {"": mt.OCI_LAYER_TAR, "gzip": mt.OCI_LAYER_TAR_GZIP,
            "zstd": mt.OCI_LAYER_TAR_ZSTD}[compression]


@contextlib.contextmanager
def open_decompressed(path: Path, compression: str) -> Iterator[IO[bytes]]:
    """The uncompressed bytes of a stored layer as a stream (zstd through `zstd -dc`)."""
    if compression == "":
        with open(path, "rb") as f:
            yield f
    elif compression == "gzip":
        with gzip.open(path, "rb") as g:
            yield g  # type: ignore[misc]
    elif compression == "zstd":
        exe = shutil.which("zstd")
        if exe is None:
            raise SystemError_(f"decompress {path.name}: zstd layers need the zstd program")
        proc = subprocess.Popen([exe, "-dcq", "--", str(path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None
        try:
            yield proc.stdout
        finally:
            proc.stdout.close()
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise InvalidArgument(
                    f"decompress {path.name}: zstd failed: {err.decode(errors='replace').strip()}"
                )
    else:
        raise InvalidArgument(f"unknown compression {compression!r}")


class DiffHasher:
    """sha256 of the uncompressed form of a stream fed in chunks (the diff id).

    Plain tars are hashed as they are; gzip (also multi-member, and with zero padding
    after the end) is inflated with zlib in bounded steps; zstd can't be inflated here (no
    zstd module), so `hexdigest()` gives None and the caller hashes the stored blob with
    `diff_id_of_file` afterwards.
    """

    def __init__(self) -> None:
        self._head = b""
        self.compression: str | None = None
        self._sha = hashlib.sha256()
        self._z: Any = None  # the inflater of the current gzip member; None between members
        self._members = 0
        self._padding = False
        #: the first 512 uncompressed bytes (a tar header), when they were seen here
        self.first_block = b""

    def update(self, data: bytes) -> None:
        if self.compression is None:
            self._head += data
            if len(self._head) < 4:
                return
            self._start()
            data, self._head = self._head, b""
        self._feed(data)

    def _start(self) -> None:
        self.compression = detect_compression(self._head)

    def _out(self, data: bytes) -> None:
        self._sha.update(data)
        if len(self.first_block) < 512:
            self.first_block += data[: 512 - len(self.first_block)]

    def _feed(self, data: bytes) -> None:
        if self.compression == "":
            self._out(data)
            return
        if self.compression != "gzip":
            return
        while data:
            if self._z is None:
                if self._padding or not data.strip(b"\0"):
                    if data.strip(b"\0"):
                        raise InvalidArgument("gzip stream: data after the end padding")
                    self._padding = self._members > 0
                    if self._padding:
                        return
                self._z = zlib.decompressobj(wbits=31)
                self._members += 1
            try:
                out = self._z.decompress(data, _CHUNK)
                self._out(out)
                while not self._z.eof and not self._z.unconsumed_tail and out:
                    out = self._z.decompress(b"", _CHUNK)  # output inflate held back
                    self._out(out)
            except zlib.error as e:
                raise InvalidArgument(f"gzip stream: {e}") from None
            if self._z.eof:
                data = self._z.unused_data
                self._z = None
            else:
                data = self._z.unconsumed_tail

    def hexdigest(self) -> str | None:
        """The diff id's hex; None for zstd. Raises InvalidArgument for a truncated gzip."""
        if self.compression is None:
            self._start()
            data, self._head = self._head, b""
            self._feed(data)
        if self.compression == "zstd":
            return None
        if self.compression == "gzip" and (self._z is not None or self._members == 0):
            raise InvalidArgument("gzip stream: truncated (it ends inside the data)")
        return self._sha.hexdigest()


def diff_id_of_file(path: Path, compression: str) -> str:
    h = hashlib.sha256()
    with open_decompressed(path, compression) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


# -- save ------------------------------------------------------------------------------------

@dataclass
class _SaveEntry:
    image_id: str
    refs: list[Reference]
    manifest_digest: str
    manifest_bytes: bytes
    config_digest: str
    top_layer_hex: str
    layer_paths: list[str]


class _TarOut:
    """A tar stream with deterministic headers (mtime 0, root:root, 0644/0755)."""

    def __init__(self, out: BinaryIO) -> None:
        self._tar = tarfile.open(  # noqa: SIM115 (closed by close())
            fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
        self._dirs: set[str] = set()

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode, ti.uid, ti.gid = size, 0, 0o644, 0, 0
        ti.uname = ti.gname = ""
        return ti

    def mkdirs(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d in self._dirs:
                continue
            ti = self._info(d, 0)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            self._tar.addfile(ti)
            self._dirs.add(d)

    def add_bytes(self, name: str, data: bytes) -> None:
        self.mkdirs(name)
        self._tar.addfile(self._info(name, len(data)), io.BytesIO(data))

    def add_stream(self, name: str, f: IO[bytes], size: int) -> None:
        self.mkdirs(name)
        self._tar.addfile(self._info(name, size), f)

    def close(self) -> None:
        self._tar.close()


def _blob_name(digest: str) -> str:
    d = Digest.parse(digest)
    return f"blobs/{d.algorithm}/{d.hex}"


def _save_refs(tags: Sequence[str], what: str) -> list[Reference]:
    refs: list[Reference] = []
    for t in tags:
        ref = parse_normalized(t)
        if ref.digest is not None or ref.tag is None:
            raise InvalidArgument(f"{what}: {t!r} is not a tag (a digest can't be saved as a "
                                  "name)")
        if ref not in refs:
            refs.append(ref)
    return refs


def _oci_manifest(config_digest: str, config_size: int,
                  layers: Sequence[tuple[str, str, int]],
                  annotations: dict[str, str] | None = None) -> bytes:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": m, "digest": d, "size": s} for m, d, s in layers],
    }
    if annotations:
        doc["annotations"] = annotations
    return json_bytes(doc)


_DOCKER_TO_OCI_LAYER = {
    mt.DOCKER_LAYER_TAR: mt.OCI_LAYER_TAR,
    mt.DOCKER_LAYER_TAR_GZIP: mt.OCI_LAYER_TAR_GZIP,
    mt.DOCKER_FOREIGN_LAYER: mt.OCI_LAYER_NONDIST_TAR_GZIP,
}


def save(images: Sequence[tuple[SavableImage, Sequence[str]]], out: BinaryIO,
         format: str = "docker", *, store: ContentStore,
         tmpdir: str | os.PathLike[str] | None = None) -> None:
    """Write `images` (each with the tags to record for it) to `out` as a tar stream.

    `format` is "docker" (docker save's layout, also an OCI layout) or "oci" (OCI image
    layout, blobs as stored). `tmpdir` holds the temporary uncompressed copy of a gzip or
    zstd layer while it is written in the docker format (default: the system's).
    """
    if format not in ("docker", "oci"):
        raise InvalidArgument(f"archive format: expected 'docker' or 'oci', got {format!r}")
    if not images:
        raise InvalidArgument("save: no images given")
    docker = format == "docker"
    tar = _TarOut(out)
    written: set[str] = set()
    entries: list[_SaveEntry] = []

    def put_blob(digest: str) -> None:
        if digest in written:
            return
        with store.open(digest) as f:
            tar.add_stream(_blob_name(digest), f, os.fstat(f.fileno()).st_size)
        written.add(digest)

    tar.add_bytes("oci-layout", json_bytes({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    for i, (image, tags) in enumerate(images):
        what = f"images[{i}] ({image.id})"
        refs = _save_refs(tags, what)
        if not image.manifest_digest:
            raise InvalidArgument(f"{what}: the image has no manifest in the content store")
        raw_manifest = store.read_bytes(image.manifest_digest, verify=True)
        manifest = parse_image_manifest(raw_manifest)
        config_blob = store.read_bytes(manifest.config.digest, verify=True)
        config = parse_image_config(config_blob)
        if manifest.config.digest != image.id:
            raise InvalidArgument(f"{what}: manifest {image.manifest_digest} has config "
                                  f"{manifest.config.digest}, not the image's")
        if len(config.diff_ids) != len(manifest.layers):
            raise InvalidArgument(
                f"{what}: manifest has {len(manifest.layers)} layers but the config "
                f"lists {len(config.diff_ids)} diff ids")
        put_blob(manifest.config.digest)

        out_layers: list[tuple[str, str, int]] = []
        for j, layer in enumerate(manifest.layers):
            compression = mt.layer_compression(layer.media_type)
            if not docker or compression == "":
                put_blob(layer.digest)
                media = _DOCKER_TO_OCI_LAYER.get(layer.media_type, layer.media_type)
                if docker:
                    media = mt.OCI_LAYER_TAR
                    if layer.digest != config.diff_ids[j]:
                        raise InvalidArgument(
                            f"{what}: uncompressed layer {layer.digest} is not the config's "
                            f"diff id {config.diff_ids[j]}")
                out_layers.append((media, layer.digest, layer.size))
            else:
                diff = config.diff_ids[j]
                size = _put_decompressed(tar, store, layer, diff, written, tmpdir)
                out_layers.append((mt.OCI_LAYER_TAR, diff, size))

        reuse = manifest.media_type == mt.OCI_MANIFEST and [
            (d.media_type, d.digest, d.size) for d in manifest.layers] == out_layers
        if reuse:
            manifest_bytes, manifest_digest = raw_manifest, image.manifest_digest
        else:
            manifest_bytes = _oci_manifest(manifest.config.digest, len(config_blob),
                                           out_layers, manifest.annotations or None)
            manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
        if manifest_digest not in written:
            tar.add_bytes(_blob_name(manifest_digest), manifest_bytes)
            written.add(manifest_digest)
        top = out_layers[-1][1] if out_layers else manifest.config.digest
        entries.append(_SaveEntry(
            image_id=image.id, refs=refs, manifest_digest=manifest_digest,
            manifest_bytes=manifest_bytes, config_digest=manifest.config.digest,
            top_layer_hex=Digest.parse(top).hex,
            layer_paths=[_blob_name(d) for _, d, _ in out_layers]))

    index_entries: list[dict[str, Any]] = []
    for e in entries:
        desc: dict[str, Any] = {"mediaType": mt.OCI_MANIFEST, "digest": e.manifest_digest,
                                "size": len(e.manifest_bytes)}
        if not e.refs:
            index_entries.append(desc)
        for ref in e.refs:
            index_entries.append({**desc, "annotations": {
                ANNOTATION_IMAGE_NAME: str(ref), ANNOTATION_REF_NAME: ref.tag or ""}})
    tar.add_bytes("index.json", json_bytes(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index_entries}))
    if docker:
        manifest_json = [{
            "Config": _blob_name(e.config_digest),
            "RepoTags": [r.familiar() for r in e.refs] or None,
            "Layers": e.layer_paths,
        } for e in entries]
        tar.add_bytes("manifest.json", json_bytes(manifest_json))
        repositories: dict[str, dict[str, str]] = {}
        for e in entries:
            for ref in e.refs:
                repositories.setdefault(ref.familiar_name, {})[ref.tag or ""] = e.top_layer_hex
        tar.add_bytes("repositories", json_bytes(repositories))
    tar.close()


def _put_decompressed(tar: _TarOut, store: ContentStore, layer: Descriptor, diff_id: str,
                      written: set[str], tmpdir: str | os.PathLike[str] | None) -> int:
    """Write a compressed stored layer uncompressed as blobs/sha256/<diff id hex>."""
    compression = mt.layer_compression(layer.media_type)
    path = store.path(layer.digest)
    if not path.is_file():
        raise NotFound(f"blob {layer.digest} not found")
    with tempfile.TemporaryFile(dir=tmpdir, prefix="pyrt-save-") as tmp:
        h = hashlib.sha256()
        with open_decompressed(path, compression) as src:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                tmp.write(chunk)
        got = "sha256:" + h.hexdigest()
        if got != diff_id:
            raise InvalidArgument(f"layer {layer.digest}: uncompressed content is {got}, not "
                                  f"the config's diff id {diff_id}")
        size = tmp.tell()
        if diff_id not in written:
            tmp.seek(0)
            tar.add_stream(_blob_name(diff_id), tmp, size)
            written.add(diff_id)
    return size


# -- load ------------------------------------------------------------------------------------

@dataclass
class _Blob:
    digest: str
    size: int
    compression: str
    diff_id: str | None


@dataclass
class _Candidate:
    """One image found in the archive, verified and ready to be registered."""

    manifest_digest: str
    index_digest: str | None
    image_id: str
    tags: list[Reference] = field(default_factory=list)


def clean_member_name(name: str) -> str | None:
    """The archive path of a member, normalised; None for one we never look at (absolute,
    with "..", empty)."""
    if not name or name.startswith("/") or "\\" in name or "\0" in name:
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _wanted(name: str) -> tuple[str | None, bool]:
    """(digest the name promises or None, whether the member is a blob we take)."""
    m = _BLOB_PATH.fullmatch(name)
    if m:
        alg, hexpart = m.groups()
        if alg in ALGORITHMS and len(hexpart) == ALGORITHMS[alg]:
            return f"{alg}:{hexpart}", True
        return None, False
    m = _HEX_JSON.fullmatch(name)
    if m:
        return f"sha256:{m.group(1)}", True
    if _HEX_TAR.fullmatch(name) or name.endswith("/layer.tar"):
        return None, True
    return None, False


class _Reader:
    """One pass over an archive: documents into memory, blobs into the store."""

    def __init__(self, store: ContentStore) -> None:
        self.store = store
        self.docs: dict[str, bytes] = {}
        self.blobs: dict[str, _Blob] = {}
        self.links: dict[str, str] = {}
        self.by_digest: dict[str, _Blob] = {}

    def read(self, src: BinaryIO) -> None:
        try:
            tf = tarfile.open(fileobj=src, mode="r|*")  # noqa: SIM115 (with below)
        except tarfile.ReadError as e:
            raise InvalidArgument(f"not an image archive: unreadable tar ({e})") from None
        except (EOFError, OSError, zlib.error) as e:
            raise InvalidArgument(f"not an image archive: {e}") from None
        try:
            with tf:
                while (member := tf.next()) is not None:
                    self._member(tf, member)
                    # stream mode needs no index of members: keep memory flat
                    tf.members.clear()  # type: ignore[attr-defined]
        except tarfile.TarError as e:
            raise InvalidArgument(f"malformed archive: {e}") from None
        except (EOFError, zlib.error) as e:
            raise InvalidArgument(f"malformed archive: truncated or corrupt ({e})") from None
        for blob in self.blobs.values():
            self.by_digest.setdefault(blob.digest, blob)

    def _member(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = clean_member_name(member.name)
        if name is None:
            return
        if member.issym():
            if member.linkname.startswith("/"):
                return
            target = clean_member_name(
                posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname)))
            if target is not None:
                self.links[name] = target
            return
        if member.islnk():
            target = clean_member_name(member.linkname)
            if target is not None:
                self.links[name] = target
            return
        if not member.isreg():
            return
        if name in _DOCS:
            if name in self.docs:
                raise InvalidArgument(f"malformed archive: {name} appears twice")
            if member.size > MAX_DOCUMENT_SIZE:
                raise InvalidArgument(
                    f"archive member {name}: {member.size} bytes is larger than the "
                    f"{MAX_DOCUMENT_SIZE} bytes a document may have")
            f = tf.extractfile(member)
            assert f is not None
            self.docs[name] = f.read()
            return
        promised, take = _wanted(name)
        if not take:
            return
        f = tf.extractfile(member)
        assert f is not None
        self.blobs[name] = self._ingest(name, f, member.size, promised)
        self.links.pop(name, None)

    def _ingest(self, name: str, f: IO[bytes], size: int, promised: str | None) -> _Blob:
        alg = promised.split(":", 1)[0] if promised else "sha256"
        h = hashlib.new(alg)
        diff = DiffHasher()
        writer = None
        if promised is None or not self.store.exists(promised):
            writer = self.store.writer(f"archive-load-{uuid.uuid4().hex}", promised, size)
        try:
            done = 0
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                diff.update(chunk)
                if writer is not None:
                    writer.write(chunk)
                done += len(chunk)
            if done != size:
                raise InvalidArgument(f"archive member {name}: truncated ({done} of {size} "
                                      "bytes)")
            digest = f"{alg}:{h.hexdigest()}"
            if promised is not None and digest != promised:
                raise InvalidArgument(
                    f"archive member {name}: content does not match digest {promised} (it "
                    f"hashes to {digest}): the archive is corrupt or was tampered with")
            if writer is not None:
                writer.commit()
        finally:
            if writer is not None:
                writer.abort()  # a no-op after the commit
        diff_hex = diff.hexdigest()
        assert diff.compression is not None
        return _Blob(digest=digest, size=size, compression=diff.compression,
                     diff_id=f"sha256:{diff_hex}" if diff_hex is not None else None)

    # -- lookups ----------------------------------------------------------------------------
    def member(self, path: Any, what: str) -> _Blob:
        if not isinstance(path, str):
            raise InvalidArgument(f"{what}: expected a path string, got {type(path).__name__}")
        name = clean_member_name(path)
        if name is None:
            raise InvalidArgument(f"{what}: invalid path {path!r} (absolute or with '..')")
        for _ in range(_MAX_LINK_HOPS):
            if name in self.blobs:
                return self.blobs[name]
            if name not in self.links:
                break
            name = self.links[name]
        raise InvalidArgument(f"{what}: {path!r} is not in the archive")

    def blob(self, desc: Descriptor, what: str) -> _Blob:
        b = self.by_digest.get(desc.digest)
        if b is None:
            raise InvalidArgument(f"{what}: blob {desc.digest} is missing from the archive")
        if b.size != desc.size:
            raise InvalidArgument(f"{what}: blob {desc.digest} has {b.size} bytes, the "
                                  f"descriptor says {desc.size}")
        return b

    def document(self, blob: _Blob, what: str) -> bytes:
        if blob.size > MAX_DOCUMENT_SIZE:
            raise InvalidArgument(f"{what}: {blob.size} bytes is larger than the "
                                  f"{MAX_DOCUMENT_SIZE} bytes a document may have")
        return self.store.read_bytes(blob.digest)

    def diff_id(self, blob: _Blob) -> str:
        if blob.diff_id is None:
            blob.diff_id = diff_id_of_file(self.store.path(blob.digest), blob.compression)
        return blob.diff_id


def _json_doc(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidArgument(f"{what}: malformed JSON: {e}") from None


def _check_layers(reader: _Reader, config: ImageConfig, layers: Sequence[_Blob],
                  what: str) -> None:
    if len(layers) != len(config.diff_ids):
        raise InvalidArgument(f"{what}: {len(layers)} layers but the config lists "
                              f"{len(config.diff_ids)} diff ids")
    for j, (blob, want) in enumerate(zip(layers, config.diff_ids, strict=True)):
        got = reader.diff_id(blob)
        if got != want:
            raise InvalidArgument(
                f"{what}: layer {j} ({blob.digest}) unpacks to {got}, but the config's "
                f"diff id is {want}: the archive is corrupt or was tampered with")


def _parse_tag(text: Any, what: str) -> Reference:
    if not isinstance(text, str):
        raise InvalidArgument(f"{what}: expected a string, got {type(text).__name__}")
    ref = parse_normalized(text)
    if ref.digest is not None:
        raise InvalidArgument(f"{what}: {text!r} has a digest; an image name needs a tag")
    return ref


def _docker_candidates(reader: _Reader) -> list[_Candidate]:
    doc = _json_doc(reader.docs["manifest.json"], "manifest.json")
    if not isinstance(doc, list):
        raise InvalidArgument("manifest.json: expected a list of images")
    if not doc:
        raise InvalidArgument("manifest.json: the archive holds no image")
    # manifests the archive's index.json (docker 25+) already has, by (config, layers)
    known: dict[tuple[str, tuple[str, ...]], str] = {}
    if "index.json" in reader.docs:
        with contextlib.suppress(PyrtError):
            for desc in _index(reader).manifests:
                if desc.media_type in mt.MANIFEST_TYPES and desc.digest in reader.by_digest:
                    m = parse_image_manifest(reader.document(reader.blob(desc, "index.json"),
                                                             "index.json"))
                    known[(m.config.digest, tuple(d.digest for d in m.layers))] = desc.digest
    out: list[_Candidate] = []
    for i, entry in enumerate(doc):
        what = f"manifest.json[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{what}: expected an object")
        cfg = reader.member(entry.get("Config"), f"{what}.Config")
        config = parse_image_config(reader.document(cfg, f"{what}.Config"))
        layer_paths = entry.get("Layers")
        if not isinstance(layer_paths, list):
            raise InvalidArgument(f"{what}.Layers: expected a list of paths")
        layers = [reader.member(p, f"{what}.Layers[{j}]") for j, p in enumerate(layer_paths)]
        _check_layers(reader, config, layers, what)
        tags_obj = entry.get("RepoTags") or []
        if not isinstance(tags_obj, list):
            raise InvalidArgument(f"{what}.RepoTags: expected a list of names")
        tags = [_parse_tag(t, f"{what}.RepoTags[{j}]") for j, t in enumerate(tags_obj)]
        manifest_digest = known.get((cfg.digest, tuple(b.digest for b in layers)))
        if manifest_digest is None:
            data = _oci_manifest(cfg.digest, cfg.size, [
                (layer_media_type(b.compression), b.digest, b.size) for b in layers])
            manifest_digest = reader.store.write_blob(data)
        out.append(_Candidate(manifest_digest, None, cfg.digest, tags))
    return out


def _index(reader: _Reader) -> Index:
    idx = parse_manifest(reader.docs["index.json"])
    if not isinstance(idx, Index):
        raise InvalidArgument("index.json: expected an image index, got a manifest")
    return idx


def _names_from_annotations(ann: dict[str, str], what: str) -> list[Reference]:
    full = ann.get(ANNOTATION_IMAGE_NAME)
    if full:
        return [_parse_tag(full, f"{what}.annotations[{ANNOTATION_IMAGE_NAME!r}]")]
    name = ann.get(ANNOTATION_REF_NAME)
    if not name:
        return []
    # a bare tag ("latest") names no repository: such an image is loaded untagged
    try:
        ref = parse_reference(name)
    except InvalidArgument:
        return []
    if ref.tag is None or ref.digest is not None or (":" not in name):
        return []
    return [ref]


def _oci_candidates(reader: _Reader, platform: Platform | None) -> list[_Candidate]:
    layout = _json_doc(reader.docs["oci-layout"], "oci-layout")
    version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
    if not isinstance(version, str) or not version.startswith("1."):
        raise InvalidArgument(
            f"oci-layout: unsupported imageLayoutVersion {version!r} (expected 1.x)")
    index = _index(reader)
    by_manifest: dict[str, _Candidate] = {}
    for i, desc in enumerate(index.manifests):
        what = f"index.json manifests[{i}]"
        index_digest = None
        target = desc
        if desc.media_type in mt.INDEX_TYPES:
            nested = parse_manifest(reader.document(reader.blob(desc, what), what))
            if not isinstance(nested, Index):
                raise InvalidArgument(f"{what}: {desc.digest} is not an index")
            target = select_platform(nested, platform)
            index_digest = desc.digest
        elif desc.media_type not in mt.MANIFEST_TYPES:
            continue  # an artifact, not an image
        mblob = reader.blob(target, what)
        manifest: Manifest = parse_image_manifest(reader.document(mblob, what),
                                                  target.media_type)
        cfg = reader.blob(manifest.config, f"{what} config")
        config = parse_image_config(reader.document(cfg, f"{what} config"))
        layers = [reader.blob(d, f"{what} layer {j}") for j, d in enumerate(manifest.layers)]
        for j, (d, b) in enumerate(zip(manifest.layers, layers, strict=True)):
            want = mt.layer_compression(d.media_type)
            if want != b.compression:
                raise InvalidArgument(
                    f"{what} layer {j} ({d.digest}): media type {d.media_type} but the "
                    f"blob is {b.compression or 'uncompressed'}")
        _check_layers(reader, config, layers, what)
        cand = by_manifest.setdefault(
            target.digest, _Candidate(target.digest, index_digest, cfg.digest))
        for ref in _names_from_annotations(desc.annotations, what):
            if ref not in cand.tags:
                cand.tags.append(ref)
    if not by_manifest:
        raise InvalidArgument("index.json: the layout holds no image manifest")
    return list(by_manifest.values())


def load(src: BinaryIO, *, store: ContentStore, service: Registrar,
         platform: Platform | None = None) -> list[str]:
    """Load every image of a docker-archive or OCI layout tar stream.

    Returns what was loaded as docker reports it: each tag in its familiar form
    ("busybox:latest"), and the image ID ("sha256:<hex>") of an image without tags.
    `platform` picks the manifest of a nested index in an OCI layout (default: this host).
    """
    reader = _Reader(store)
    reader.read(src)
    if "manifest.json" in reader.docs:
        candidates = _docker_candidates(reader)
    elif "index.json" in reader.docs:
        if "oci-layout" not in reader.docs:
            raise InvalidArgument("not an OCI image layout: index.json without oci-layout")
        candidates = _oci_candidates(reader, platform)
    else:
        raise InvalidArgument("not an image archive: it has neither manifest.json (docker "
                              "save) nor index.json (OCI image layout)")
    loaded: list[str] = []
    for cand in candidates:
        service.register(cand.manifest_digest, index_digest=cand.index_digest,
                         tags=[str(r) for r in cand.tags], repo_digests=[])
        if cand.tags:
            loaded.extend(r.familiar() for r in cand.tags)
        else:
            loaded.append(cand.image_id)
    return loaded


__all__ = [
    "ANNOTATION_IMAGE_NAME",
    "ANNOTATION_REF_NAME",
    "MAX_DOCUMENT_SIZE",
    "DiffHasher",
    "Registrar",
    "SavableImage",
    "clean_member_name",
    "detect_compression",
    "diff_id_of_file",
    "json_bytes",
    "layer_media_type",
    "load",
    "open_decompressed",
    "save",
]
