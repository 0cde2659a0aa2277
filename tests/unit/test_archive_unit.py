"""Image archives (save/load), rootfs import and the hello-world image, without root.

The image service is replaced by a recorder that checks what a real one relies on: the
manifest, the config and every layer are in the content store, and the layers' diff ids
are the config's.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pyrt.content.store import ContentStore
from pyrt.errors import FailedPrecondition, InvalidArgument
from pyrt.images import archive, hello, importer
from pyrt.oci import mediatypes as mt
from pyrt.oci.image_config import parse_image_config
from pyrt.oci.manifest import parse_image_manifest

# -- helpers ---------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class FakeImage:
    id: str
    manifest_digest: str | None


@dataclass
class Recorder:
    """Stands in for ImageService.register; verifies the blobs are there and consistent."""

    store: ContentStore
    calls: list[dict[str, Any]] = field(default_factory=list)

    def register(self, manifest_digest: str, *, index_digest: str | None = None,
                 tags: list[str] | None = None, repo_digests: list[str] | None = None) -> Any:
        manifest = parse_image_manifest(self.store.read_bytes(manifest_digest, verify=True))
        config = parse_image_config(
            self.store.read_bytes(manifest.config.digest, verify=True))
        diffs = []
        for layer in manifest.layers:
            data = self.store.read_bytes(layer.digest, verify=True)
            assert len(data) == layer.size
            comp = mt.layer_compression(layer.media_type)
            assert archive.detect_compression(data[:4]) == comp
            if comp == "zstd":
                diffs.append(archive.diff_id_of_file(self.store.path(layer.digest), comp))
            else:
                diffs.append(sha(gzip.decompress(data) if comp == "gzip" else data))
        assert diffs == list(config.diff_ids)
        self.calls.append({"manifest": manifest_digest, "index": index_digest,
                           "tags": list(tags or []), "id": manifest.config.digest})
        return FakeImage(manifest.config.digest, manifest_digest)


def add_image(store: ContentStore, layers: list[bytes], *, gzip_layers: bool,
              docker_manifest: bool = False, cmd: list[str] | None = None) -> FakeImage:
    descs = []
    for tar in layers:
        blob = gzip.compress(tar, mtime=0) if gzip_layers else tar
        digest = store.write_blob(blob)
        if docker_manifest:
            media = mt.DOCKER_LAYER_TAR_GZIP if gzip_layers else mt.DOCKER_LAYER_TAR
        else:
            media = mt.OCI_LAYER_TAR_GZIP if gzip_layers else mt.OCI_LAYER_TAR
        descs.append({"mediaType": media, "digest": digest, "size": len(blob)})
    config = archive.json_bytes({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": cmd or ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in layers]},
    })
    config_digest = store.write_blob(config)
    manifest = archive.json_bytes({
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_V2 if docker_manifest else mt.OCI_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG if docker_manifest else mt.OCI_CONFIG,
                   "digest": config_digest, "size": len(config)},
        "layers": descs,
    })
    return FakeImage(config_digest, store.write_blob(manifest))


def tar_members(data: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            if m.isreg():
                f = tf.extractfile(m)
                assert f is not None
                out[m.name] = f.read()
    return out


def build_tar(entries: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """(name, data, symlink target): a file when data is bytes, else a symlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data, link in entries:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.linkname = tarfile.SYMTYPE, link or ""
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content")


@pytest.fixture
def dest(tmp_path: Path) -> tuple[ContentStore, Recorder]:
    s = ContentStore(tmp_path / "dest")
    return s, Recorder(s)


LAYER_A = make_tar({"etc/a": b"alpha\n", "bin/x": b"x" * 5000})
LAYER_B = make_tar({"etc/b": b"bravo\n"})


def save_bytes(store: ContentStore, images: list[tuple[Any, list[str]]], fmt: str) -> bytes:
    out = io.BytesIO()
    archive.save(images, out, fmt, store=store)
    return out.getvalue()


# -- save ------------------------------------------------------------------------------------


def test_save_docker_layout(store: ContentStore) -> None:
    img = add_image(store, [LAYER_A, LAYER_B], gzip_layers=True)
    data = save_bytes(store, [(img, ["busybox:latest", "example.com/x/y:1"])], "docker")
    files = tar_members(data)
    for name, blob in files.items():
        if name.startswith("blobs/sha256/"):
            assert sha(blob) == "sha256:" + name.rsplit("/", 1)[1], name
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads(files["manifest.json"])
    assert entry["Config"] == "blobs/sha256/" + img.id.split(":")[1]
    assert entry["RepoTags"] == ["busybox:latest", "example.com/x/y:1"]
    # docker's layout keeps layers uncompressed: their digests are the diff ids
    assert entry["Layers"] == ["blobs/sha256/" + sha(t).split(":")[1] for t in (LAYER_A, LAYER_B)]
    assert files[entry["Layers"][0]] == LAYER_A
    top = sha(LAYER_B).split(":")[1]
    assert json.loads(files["repositories"]) == {"busybox": {"latest": top},
                                                 "example.com/x/y": {"1": top}}
    index = json.loads(files["index.json"])
    names = [(d["annotations"]["io.containerd.image.name"],
              d["annotations"]["org.opencontainers.image.ref.name"]) for d in index["manifests"]]
    assert names == [("docker.io/library/busybox:latest", "latest"), ("example.com/x/y:1", "1")]
    m = parse_image_manifest(files["blobs/sha256/" + index["manifests"][0]["digest"][7:]])
    assert m.config.digest == img.id
    assert [d.media_type for d in m.layers] == [mt.OCI_LAYER_TAR] * 2


def test_save_is_deterministic(store: ContentStore) -> None:
    img = add_image(store, [LAYER_A], gzip_layers=True)
    a = save_bytes(store, [(img, ["a:1"])], "docker")
    b = save_bytes(store, [(img, ["a:1"])], "docker")
    assert a == b


def test_save_oci_keeps_compressed_blobs_and_converts_docker_manifests(
        store: ContentStore) -> None:
    img = add_image(store, [LAYER_A], gzip_layers=True, docker_manifest=True)
    files = tar_members(save_bytes(store, [(img, ["app:v1"])], "oci"))
    assert "manifest.json" not in files and "repositories" not in files
    index = json.loads(files["index.json"])
    (desc,) = index["manifests"]
    assert desc["mediaType"] == mt.OCI_MANIFEST
    m = parse_image_manifest(files["blobs/sha256/" + desc["digest"][7:]])
    assert m.media_type == mt.OCI_MANIFEST and m.config.media_type == mt.OCI_CONFIG
    assert m.layers[0].media_type == mt.OCI_LAYER_TAR_GZIP
    stored = parse_image_manifest(store.read_bytes(img.manifest_digest or ""))
    assert m.layers[0].digest == stored.layers[0].digest  # the gzip blob as stored


def test_save_refuses_bad_input(store: ContentStore) -> None:
    img = add_image(store, [LAYER_A], gzip_layers=False)
    with pytest.raises(InvalidArgument, match="format"):
        save_bytes(store, [(img, [])], "tar")
    with pytest.raises(InvalidArgument, match="not a tag"):
        save_bytes(store, [(img, ["busybox@sha256:" + "a" * 64])], "docker")
    with pytest.raises(InvalidArgument, match="no manifest"):
        save_bytes(store, [(FakeImage(img.id, None), [])], "docker")
    with pytest.raises(InvalidArgument, match="no images"):
        save_bytes(store, [], "docker")


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["docker", "oci"])
@pytest.mark.parametrize("gz", [True, False])
def test_round_trip(store: ContentStore, dest: tuple[ContentStore, Recorder], fmt: str,
                    gz: bool) -> None:
    one = add_image(store, [LAYER_A, LAYER_B], gzip_layers=gz)
    two = add_image(store, [LAYER_A], gzip_layers=gz, cmd=["/two"])  # shares LAYER_A
    untagged = add_image(store, [LAYER_B], gzip_layers=gz, cmd=["/three"])
    data = save_bytes(store, [(one, ["busybox:latest", "busybox:1"]), (two, ["me/two:x"]),
                              (untagged, [])], fmt)
    dstore, rec = dest
    loaded = archive.load(io.BytesIO(data), store=dstore, service=rec)
    assert loaded == ["busybox:latest", "busybox:1", "me/two:x", untagged.id]
    by_id = {c["id"]: c for c in rec.calls}
    assert set(by_id) == {one.id, two.id, untagged.id}  # image ids are preserved
    assert by_id[one.id]["tags"] == ["docker.io/library/busybox:latest",
                                     "docker.io/library/busybox:1"]
    assert by_id[two.id]["tags"] == ["docker.io/me/two:x"]
    assert by_id[untagged.id]["tags"] == []
    if fmt == "oci" or not gz:
        # nothing had to be rewritten: the manifest is the stored one
        assert by_id[one.id]["manifest"] == one.manifest_digest


def test_second_generation_save_is_identical(store: ContentStore,
                                             dest: tuple[ContentStore, Recorder]) -> None:
    img = add_image(store, [LAYER_A, LAYER_B], gzip_layers=True)
    first = save_bytes(store, [(img, ["a:1"])], "docker")
    dstore, rec = dest
    archive.load(io.BytesIO(first), store=dstore, service=rec)
    again = FakeImage(rec.calls[0]["id"], rec.calls[0]["manifest"])
    assert save_bytes(dstore, [(again, ["a:1"])], "docker") == first


def test_load_compressed_archive(store: ContentStore,
                                 dest: tuple[ContentStore, Recorder]) -> None:
    img = add_image(store, [LAYER_A], gzip_layers=False)
    data = gzip.compress(save_bytes(store, [(img, ["z:1"])], "docker"))
    dstore, rec = dest
    assert archive.load(io.BytesIO(data), store=dstore, service=rec) == ["z:1"]


# -- other producers' layouts ----------------------------------------------------------------


def _config_for(layers: list[bytes]) -> bytes:
    return archive.json_bytes({"architecture": "amd64", "os": "linux",
                               "rootfs": {"type": "layers",
                                          "diff_ids": [sha(t) for t in layers]}})


def test_load_legacy_docker_layout_with_symlinked_layer(
        dest: tuple[ContentStore, Recorder]) -> None:
    config = _config_for([LAYER_A, LAYER_B, LAYER_A])
    cid = sha(config)[7:]
    manifest = [{"Config": f"{cid}.json", "RepoTags": ["old:style"],
                 "Layers": ["1111/layer.tar", "2222/layer.tar", "3333/layer.tar"]}]
    data = build_tar([
        ("1111/VERSION", b"1.0", None),
        ("1111/json", b"{}", None),
        ("1111/layer.tar", LAYER_A, None),
        ("2222/layer.tar", LAYER_B, None),
        ("3333/layer.tar", None, "../1111/layer.tar"),  # docker dedups with symlinks
        (f"{cid}.json", config, None),
        ("manifest.json", json.dumps(manifest).encode(), None),
        ("repositories", b'{"old":{"style":"2222"}}', None),
    ])
    dstore, rec = dest
    assert archive.load(io.BytesIO(data), store=dstore, service=rec) == ["old:style"]
    assert rec.calls[0]["id"] == sha(config)
    m = parse_image_manifest(dstore.read_bytes(rec.calls[0]["manifest"]))
    assert [d.digest for d in m.layers] == [sha(LAYER_A), sha(LAYER_B), sha(LAYER_A)]


def test_load_skopeo_style_layout(dest: tuple[ContentStore, Recorder]) -> None:
    """containers/image writes <hex>.tar layers and <hex>.json configs."""
    config = _config_for([LAYER_A])
    manifest = [{"Config": sha(config)[7:] + ".json", "RepoTags": ["sk:1"],
                 "Layers": [sha(LAYER_A)[7:] + ".tar"]}]
    data = build_tar([
        (sha(LAYER_A)[7:] + ".tar", LAYER_A, None),
        (sha(config)[7:] + ".json", config, None),
        ("manifest.json", json.dumps(manifest).encode(), None),
    ])
    dstore, rec = dest
    assert archive.load(io.BytesIO(data), store=dstore, service=rec) == ["sk:1"]


def test_load_docker_archive_with_gzip_layers(dest: tuple[ContentStore, Recorder]) -> None:
    blob = gzip.compress(LAYER_A, mtime=0)
    config = _config_for([LAYER_A])
    manifest = [{"Config": f"blobs/sha256/{sha(config)[7:]}", "RepoTags": None,
                 "Layers": [f"blobs/sha256/{sha(blob)[7:]}"]}]
    data = build_tar([
        (f"blobs/sha256/{sha(blob)[7:]}", blob, None),
        (f"blobs/sha256/{sha(config)[7:]}", config, None),
        ("manifest.json", json.dumps(manifest).encode(), None),
    ])
    dstore, rec = dest
    assert archive.load(io.BytesIO(data), store=dstore, service=rec) == [sha(config)]
    m = parse_image_manifest(dstore.read_bytes(rec.calls[0]["manifest"]))
    assert m.layers[0].media_type == mt.OCI_LAYER_TAR_GZIP


def test_load_oci_layout_ref_names(dest: tuple[ContentStore, Recorder],
                                   store: ContentStore) -> None:
    img = add_image(store, [LAYER_A], gzip_layers=True)
    mbytes = store.read_bytes(img.manifest_digest or "")
    desc = {"mediaType": mt.OCI_MANIFEST, "digest": img.manifest_digest, "size": len(mbytes)}
    index = {"schemaVersion": 2, "manifests": [
        {**desc, "annotations": {"org.opencontainers.image.ref.name": "repo/name:v2"}},
        {**desc, "annotations": {"org.opencontainers.image.ref.name": "latest"}},
    ]}
    entries: list[tuple[str, bytes | None, str | None]] = [
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', None),
        ("index.json", json.dumps(index).encode(), None)]
    manifest = parse_image_manifest(mbytes)
    for d in [img.manifest_digest or "", manifest.config.digest,
              *[x.digest for x in manifest.layers]]:
        entries.append((f"blobs/sha256/{d[7:]}", store.read_bytes(d), None))
    dstore, rec = dest
    # a bare tag names no repository: only the full name becomes a tag
    assert archive.load(io.BytesIO(build_tar(entries)), store=dstore,
                        service=rec) == ["repo/name:v2"]
    assert rec.calls[0]["manifest"] == img.manifest_digest


# -- tampering and hostile archives ----------------------------------------------------------


def _tamper(data: bytes, name: str, new: bytes) -> bytes:
    """Rebuild the tar with member `name`'s content replaced (same name)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, \
            tarfile.open(fileobj=out, mode="w") as dst:
        for m in src.getmembers():
            if m.isreg():
                content = new if m.name == name else (src.extractfile(m) or io.BytesIO()).read()
                m.size = len(content)
                dst.addfile(m, io.BytesIO(content))
            else:
                dst.addfile(m)
    return out.getvalue()


def test_tampered_layer_names_the_digest(store: ContentStore,
                                         dest: tuple[ContentStore, Recorder]) -> None:
    good = add_image(store, [LAYER_B], gzip_layers=False)
    img = add_image(store, [LAYER_A], gzip_layers=False)
    data = save_bytes(store, [(good, ["good:1"]), (img, ["bad:1"])], "docker")
    layer = sha(LAYER_A)
    bad = _tamper(data, f"blobs/sha256/{layer[7:]}", LAYER_A.replace(b"alpha", b"omega"))
    dstore, rec = dest
    with pytest.raises(InvalidArgument, match=layer):
        archive.load(io.BytesIO(bad), store=dstore, service=rec)
    assert rec.calls == []  # not even the good image
    assert not dstore.exists(layer)


def test_tampered_legacy_layer_fails_the_diff_id_check(
        dest: tuple[ContentStore, Recorder]) -> None:
    config = _config_for([LAYER_A])
    manifest = [{"Config": sha(config)[7:] + ".json", "RepoTags": ["t:1"],
                 "Layers": ["abc/layer.tar"]}]
    data = build_tar([
        ("abc/layer.tar", make_tar({"etc/a": b"evil\n"}), None),
        (sha(config)[7:] + ".json", config, None),
        ("manifest.json", json.dumps(manifest).encode(), None),
    ])
    dstore, rec = dest
    with pytest.raises(InvalidArgument, match=sha(LAYER_A)):
        archive.load(io.BytesIO(data), store=dstore, service=rec)
    assert rec.calls == []


def test_tampered_config(store: ContentStore, dest: tuple[ContentStore, Recorder]) -> None:
    img = add_image(store, [LAYER_A], gzip_layers=False)
    data = save_bytes(store, [(img, ["c:1"])], "docker")
    bad = _tamper(data, f"blobs/sha256/{img.id[7:]}",
                  store.read_bytes(img.id).replace(b"/bin/sh", b"/bin/xx"))
    dstore, rec = dest
    with pytest.raises(InvalidArgument, match=img.id):
        archive.load(io.BytesIO(bad), store=dstore, service=rec)
    assert rec.calls == []


def test_hostile_paths_are_never_followed(tmp_path: Path,
                                          dest: tuple[ContentStore, Recorder]) -> None:
    outside = tmp_path / "outside"
    config = _config_for([LAYER_A])
    for layer_path, extra in [
        ("../../outside/layer.tar", [("../../outside/layer.tar", LAYER_A, None)]),
        ("/etc/passwd", [("/etc/passwd", LAYER_A, None)]),
        ("evil/layer.tar", [("evil/layer.tar", None, "/etc/passwd")]),
        ("evil/layer.tar", [("evil/layer.tar", None, "../../../../etc/shadow")]),
    ]:
        manifest = [{"Config": sha(config)[7:] + ".json", "RepoTags": ["h:1"],
                     "Layers": [layer_path]}]
        data = build_tar([*extra, (sha(config)[7:] + ".json", config, None),
                          ("manifest.json", json.dumps(manifest).encode(), None)])
        dstore, rec = dest
        with pytest.raises(InvalidArgument, match="not in the archive|invalid path"):
            archive.load(io.BytesIO(data), store=dstore, service=rec)
        assert rec.calls == []
    assert not outside.exists()


def test_symlink_loop_is_refused(dest: tuple[ContentStore, Recorder]) -> None:
    config = _config_for([LAYER_A])
    manifest = [{"Config": sha(config)[7:] + ".json", "Layers": ["a/layer.tar"]}]
    data = build_tar([("a/layer.tar", None, "../b/layer.tar"),
                      ("b/layer.tar", None, "../a/layer.tar"),
                      (sha(config)[7:] + ".json", config, None),
                      ("manifest.json", json.dumps(manifest).encode(), None)])
    dstore, rec = dest
    with pytest.raises(InvalidArgument, match="not in the archive"):
        archive.load(io.BytesIO(data), store=dstore, service=rec)


def test_unexpected_members_are_skipped_and_big_documents_refused(
        dest: tuple[ContentStore, Recorder], monkeypatch: pytest.MonkeyPatch) -> None:
    dstore, rec = dest
    data = build_tar([("junk/big.bin", b"\0" * 100_000, None),
                      ("manifest.json", b"[" + b" " * 5000 + b"]", None)])
    monkeypatch.setattr(archive, "MAX_DOCUMENT_SIZE", 4096)
    with pytest.raises(InvalidArgument, match="manifest.json: 5002 bytes is larger"):
        archive.load(io.BytesIO(data), store=dstore, service=rec)
    assert dstore.list() == []  # the junk member was never stored


@pytest.mark.parametrize("payload,match", [
    (b"this is not a tar at all" * 100, "not an image archive"),
    (b"", "not an image archive"),
    (build_tar([("hello.txt", b"hi", None)]), "neither manifest.json"),
    (build_tar([("manifest.json", b"{not json", None)]), "manifest.json: malformed JSON"),
    (build_tar([("manifest.json", b"{}", None)]), "expected a list"),
    (build_tar([("manifest.json", b"[]", None)]), "holds no image"),
    (build_tar([("manifest.json", b'[{"Config": "x.json", "Layers": []}]', None)]),
     r"manifest.json\[0\].Config: 'x.json' is not in the archive"),
    (build_tar([("index.json", b'{"schemaVersion":2,"manifests":[]}', None)]),
     "index.json without oci-layout"),
    (build_tar([("index.json", b'{"schemaVersion":2,"manifests":[]}', None),
                ("oci-layout", b'{"imageLayoutVersion":"2.0.0"}', None)]),
     "unsupported imageLayoutVersion"),
])
def test_bad_archives(dest: tuple[ContentStore, Recorder], payload: bytes, match: str) -> None:
    dstore, rec = dest
    with pytest.raises(InvalidArgument, match=match):
        archive.load(io.BytesIO(payload), store=dstore, service=rec)
    assert rec.calls == []


def test_truncated_archive(store: ContentStore, dest: tuple[ContentStore, Recorder]) -> None:
    img = add_image(store, [LAYER_A], gzip_layers=False)
    data = save_bytes(store, [(img, ["t:1"])], "docker")
    dstore, rec = dest
    with pytest.raises(InvalidArgument):
        archive.load(io.BytesIO(data[: len(data) // 2]), store=dstore, service=rec)
    assert rec.calls == []


def test_clean_member_name() -> None:
    assert archive.clean_member_name("./blobs//sha256/ab") == "blobs/sha256/ab"
    for bad in ("/etc/passwd", "../x", "a/../../b", "", ".", "a\\b"):
        assert archive.clean_member_name(bad) is None


# -- diff hashing ----------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 7, 4096, 1 << 20])
def test_diff_hasher_gzip_multi_member_and_padding(step: int) -> None:
    raw = os.urandom(50_000) + b"\0" * 200_000
    blob = gzip.compress(raw[:100_000]) + gzip.compress(raw[100_000:]) + b"\0" * 1000
    h = archive.DiffHasher()
    for i in range(0, len(blob), step):
        h.update(blob[i:i + step])
    assert h.compression == "gzip"
    assert h.hexdigest() == hashlib.sha256(raw).hexdigest()


def test_diff_hasher_plain_truncated_and_garbage() -> None:
    h = archive.DiffHasher()
    h.update(b"ab")
    assert h.hexdigest() == hashlib.sha256(b"ab").hexdigest()
    h = archive.DiffHasher()
    h.update(gzip.compress(b"x" * 10000)[:-20])
    with pytest.raises(InvalidArgument, match="truncated"):
        h.hexdigest()
    h = archive.DiffHasher()
    with pytest.raises(InvalidArgument, match="gzip stream"):
        h.update(b"\x1f\x8b\x08\x00" + b"garbage" * 10)


# -- import ----------------------------------------------------------------------------------


def test_apply_changes() -> None:
    cfg = importer.apply_changes([
        'CMD ["/bin/app", "--flag"]',
        "ENTRYPOINT exec tini --",
        "ENV A=1 B='two words'",
        "ENV LEGACY value with spaces",
        "env A=3",
        "WORKDIR /srv",
        "WORKDIR data",
        "EXPOSE 80 53/udp 8000-8002/tcp",
        'LABEL org.example.x=y "quoted key"=z',
        "USER nobody:nogroup",
        'VOLUME ["/data", "/logs"]',
        "VOLUME /cache",
        "STOPSIGNAL SIGQUIT",
        "HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f http://localhost/",
        "ONBUILD RUN make",
    ])
    assert cfg["Cmd"] == ["/bin/app", "--flag"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "exec tini --"]
    assert cfg["Env"] == ["B=two words", "LEGACY=value with spaces", "A=3"]
    assert cfg["WorkingDir"] == "/srv/data"
    assert cfg["ExposedPorts"] == {p: {} for p in
                                   ["80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp"]}
    assert cfg["Labels"] == {"org.example.x": "y", "quoted key": "z"}
    assert cfg["User"] == "nobody:nogroup"
    assert cfg["Volumes"] == {"/data": {}, "/logs": {}, "/cache": {}}
    assert cfg["StopSignal"] == "SIGQUIT"
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f http://localhost/"],
                                  "Interval": 90_000_000_000, "Retries": 3}
    assert cfg["OnBuild"] == ["RUN make"]
    assert importer.apply_changes(["HEALTHCHECK NONE"])["Healthcheck"] == {"Test": ["NONE"]}
    assert importer.apply_changes(["CMD /bin/sh"])["Cmd"] == ["/bin/sh", "-c", "/bin/sh"]


@pytest.mark.parametrize("change,match", [
    ("FOO bar", "unsupported change instruction FOO"),
    ("RUN make", "unsupported change instruction RUN"),
    ("FROM scratch", "unsupported change instruction FROM"),
    ("EXPOSE 70000", "invalid port"),
    ("EXPOSE 80/icmp", "protocol"),
    ("EXPOSE 90-80", "invalid port"),
    ("ENV", "at least one argument"),
    ("ENV A", "needs a value"),
    ("ENV =x", "not name=value"),
    ("ENV A='unterminated", "quotation"),
    ("STOPSIGNAL SIGNOPE", "unknown signal"),
    ("STOPSIGNAL 99", "out of range"),
    ("USER a b", "one user"),
    ("WORKDIR", "requires a path"),
    ("CMD", "requires a command"),
    ("HEALTHCHECK --interval=soon CMD true", "invalid duration"),
    ("HEALTHCHECK --bogus=1 CMD true", "unknown option"),
    ("HEALTHCHECK true", "expected NONE"),
    ("ONBUILD ONBUILD RUN x", "ONBUILD trigger"),
    ("", "empty change"),
])
def test_bad_changes(change: str, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        importer.apply_changes([change])


ROOTFS = make_tar({"bin/app": b"#!/bin/sh\necho hi\n", "etc/os-release": b"ID=test\n"})


@pytest.mark.parametrize("compress", ["plain", "gzip", "path"])
def test_import_rootfs(store: ContentStore, tmp_path: Path, compress: str) -> None:
    rec = Recorder(store)
    src: Any
    if compress == "path":
        p = tmp_path / "rootfs.tar"
        p.write_bytes(ROOTFS)
        src = p
    else:
        src = io.BytesIO(gzip.compress(ROOTFS) if compress == "gzip" else ROOTFS)
    image_id = importer.import_rootfs(
        src, store=store, service=rec, reference="me/imported",
        changes=['CMD ["/bin/app"]', "ENV X=1", "WORKDIR /w", "EXPOSE 8080",
                 "LABEL k=v"], platform="linux/arm64")
    (call,) = rec.calls
    assert call["id"] == image_id and call["tags"] == ["docker.io/me/imported:latest"]
    m = parse_image_manifest(store.read_bytes(call["manifest"]))
    assert m.layers[0].media_type == mt.OCI_LAYER_TAR_GZIP  # plain input gets gzipped
    raw = json.loads(store.read_bytes(image_id))
    assert raw["rootfs"]["diff_ids"] == [sha(ROOTFS)]
    assert (raw["os"], raw["architecture"], raw["variant"]) == ("linux", "arm64", "v8")
    assert raw["config"] == {"Cmd": ["/bin/app"], "Env": ["X=1"], "WorkingDir": "/w",
                             "ExposedPorts": {"8080/tcp": {}}, "Labels": {"k": "v"}}
    source = str(src) if compress == "path" else "-"
    assert raw["history"][0]["comment"] == f"Imported from {source}"
    assert zlib.decompress(store.read_bytes(m.layers[0].digest), 31) == ROOTFS


def test_import_message_untagged_and_bad_input(store: ContentStore) -> None:
    rec = Recorder(store)
    image_id = importer.import_rootfs(io.BytesIO(ROOTFS), store=store, service=rec,
                                      message="my import")
    assert rec.calls[0]["tags"] == []
    assert json.loads(store.read_bytes(image_id))["history"][0]["comment"] == "my import"
    with pytest.raises(InvalidArgument, match="not a tar archive"):
        importer.import_rootfs(io.BytesIO(b"hello world" * 100), store=store, service=rec)
    with pytest.raises(InvalidArgument, match="not a tar archive"):
        importer.import_rootfs(io.BytesIO(gzip.compress(b"x" * 100)), store=store,
                               service=rec)
    with pytest.raises(InvalidArgument, match="unsupported change instruction"):
        importer.import_rootfs(io.BytesIO(ROOTFS), store=store, service=rec,
                               changes=["MAINTAINER me"])
    with pytest.raises(InvalidArgument, match="tagged, not"):
        importer.import_rootfs(io.BytesIO(ROOTFS), store=store, service=rec,
                               reference="x@sha256:" + "a" * 64)
    with pytest.raises(InvalidArgument, match="no such file|No such file"):
        importer.import_rootfs("/nonexistent/rootfs.tar", store=store, service=rec)
    assert len(rec.calls) == 1


# -- hello-world -----------------------------------------------------------------------------


FAKE_ELF = b"\x7fELF" + bytes(range(256)) * 8


def test_hello_image_is_reproducible(tmp_path: Path) -> None:
    binary = tmp_path / "hello"
    binary.write_bytes(FAKE_ELF)
    digests = []
    for name in ("one", "two"):
        s = ContentStore(tmp_path / name)
        rec = Recorder(s)
        digests.append(hello.hello_world_image(s, rec, binary=binary))
        assert rec.calls[0]["tags"] == ["docker.io/library/hello-world:latest"]
        m = parse_image_manifest(s.read_bytes(digests[-1]))
        cfg = parse_image_config(s.read_bytes(m.config.digest))
        assert cfg.config.cmd == ("/hello",)
        with tarfile.open(fileobj=io.BytesIO(s.read_bytes(m.layers[0].digest))) as tf:
            (member,) = tf.getmembers()
            assert (member.name, member.mode, member.mtime, member.uid, member.gid) == (
                "hello", 0o755, 0, 0, 0)
            assert (tf.extractfile(member) or io.BytesIO()).read() == FAKE_ELF
    assert digests[0] == digests[1]


def test_hello_binary_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hello.HELLO_ENV, str(tmp_path / "missing"))
    with pytest.raises(FailedPrecondition, match="no such file"):
        hello.find_hello_binary()
    (tmp_path / "h").write_bytes(FAKE_ELF)
    monkeypatch.setenv(hello.HELLO_ENV, str(tmp_path / "h"))
    assert hello.find_hello_binary() == tmp_path / "h"
    not_elf = tmp_path / "script"
    not_elf.write_bytes(b"#!/bin/sh\n")
    with pytest.raises(InvalidArgument, match="not an ELF"):
        hello.hello_world_image(ContentStore(tmp_path / "s"), binary=not_elf)


def test_zstd_layers_save_and_load(store: ContentStore, dest: tuple[ContentStore, Recorder],
                                   tmp_path: Path) -> None:
    """zstd layers go through the zstd program: decompressed for docker's layout, kept in
    an OCI layout (and their diff ids checked on load)."""
    import shutil
    import subprocess

    if shutil.which("zstd") is None:
        pytest.skip("the zstd program is not installed")
    blob = subprocess.run(["zstd", "-q", "-c"], input=LAYER_A, capture_output=True,
                          check=True).stdout
    layer_digest = store.write_blob(blob)
    config = _config_for([LAYER_A])
    config_digest = store.write_blob(config)
    manifest = archive.json_bytes({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": mt.OCI_LAYER_TAR_ZSTD, "digest": layer_digest,
                    "size": len(blob)}]})
    img = FakeImage(config_digest, store.write_blob(manifest))
    files = tar_members(save_bytes(store, [(img, ["z:1"])], "docker"))
    assert files[json.loads(files["manifest.json"])[0]["Layers"][0]] == LAYER_A
    oci = save_bytes(store, [(img, ["z:1"])], "oci")
    assert tar_members(oci)[f"blobs/sha256/{layer_digest[7:]}"] == blob
    dstore, rec = dest
    assert archive.load(io.BytesIO(oci), store=dstore, service=rec) == ["z:1"]
    assert rec.calls[0]["manifest"] == img.manifest_digest
