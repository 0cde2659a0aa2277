"""The image service against a local docker-registry (127.0.0.1), real unpacks and rows:
pull (progress, status line, idempotence), lookups, inspect/history/list with filters,
tag, the rmi rules and refusals, prune, push, register from the store, shared layers
unpacked once, a tampered diff id refused with nothing recorded, reconcile after a crash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pyrt.content.store import ContentStore
from pyrt.errors import Conflict, InvalidArgument, NotFound
from pyrt.images.progress import ProgressKind, ProgressRecorder
from pyrt.images.service import ImageService
from pyrt.metadata.db import Database
from pyrt.snapshots.service import SnapshotService
from tests.registry_fixtures import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    REGISTRY_BIN,
    Registry,
    TestImage,
    make_layer,
    sha256,
)

pytestmark = pytest.mark.skipif(
    not REGISTRY_BIN.is_file(), reason=f"{REGISTRY_BIN} missing: apt-get install docker-registry"
)


def client_factory(domain: str) -> Any:
    from pyrt.images.registry import RegistryClient

    return RegistryClient(domain, backoff_base=0.05, max_retries=1)


@dataclass
class Built:
    image: TestImage
    diff_ids: list[str]
    tar_sizes: list[int]


def build(layers: list[dict[str, bytes]], *, labels: dict[str, str] | None = None,
          created: str = "2024-01-02T03:04:05.123456789Z", diff_ids: list[str] | None = None,
          cmd: list[str] | None = None) -> Built:
    blobs, real_diffs, sizes = [], [], []
    for files in layers:
        gz, tar = make_layer(files)
        blobs.append(gz)
        real_diffs.append(sha256(tar))
        sizes.append(len(tar))
    history: list[dict[str, Any]] = [
        {"created": created, "created_by": f"/bin/sh -c #(nop) ADD layer{i}"}
        for i in range(len(layers))]
    history.insert(1 if layers else 0, {"created": created, "created_by": "CMD",
                                        "empty_layer": True, "comment": "metadata only"})
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": created, "author": "pyrt tests",
        "config": {"Cmd": cmd or ["/bin/sh"], "Env": ["PATH=/bin"], "Labels": labels or {},
                   "ExposedPorts": {"80/tcp": {}}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids or real_diffs},
        "history": history,
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": DOCKER_LAYER, "digest": sha256(b), "size": len(b)}
                   for b in blobs],
    }).encode()
    return Built(TestImage(config, blobs, manifest, DOCKER_MANIFEST), real_diffs, sizes)


@dataclass
class Env:
    root: Path
    db: Database
    store: ContentStore
    snapshots: SnapshotService
    images: ImageService
    registry: Registry
    source: ContentStore  # the store test images are pushed from

    def push(self, built: Built, ref: str) -> str:
        from pyrt.images import transfer

        img = built.image
        for digest, data in img.blobs().items():
            if not self.source.exists(digest):
                self.source.write_blob(data, digest)
        if not self.source.exists(img.digest):
            self.source.write_blob(img.manifest, img.digest)
        full = f"{self.registry.host}/{ref}"
        transfer.push(full, self.source, img.digest, client_factory=client_factory)
        return full

    def reopen(self) -> ImageService:
        self.db.close()
        self.db = Database(self.root / "meta.db")
        self.store = ContentStore(self.root / "content")
        self.snapshots = SnapshotService(self.root, self.db)
        self.images = ImageService(self.root, store=self.store, db=self.db,
                                   snapshots=self.snapshots, client_factory=client_factory)
        return self.images


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    reg = Registry(tmp_path / "registry")
    root = tmp_path / "pyrt"
    db = Database(root / "meta.db")
    try:
        store = ContentStore(root / "content")
        snaps = SnapshotService(root, db)
        images = ImageService(root, store=store, db=db, snapshots=snaps,
                              client_factory=client_factory)
        e = Env(root, db, store, snaps, images, reg, ContentStore(tmp_path / "src"))
        yield e
        e.db.close()
    finally:
        reg.stop()


def snapshot_dirs(snaps: SnapshotService) -> list[str]:
    return sorted(p.name for p in snaps.dir.iterdir() if len(p.name) == 64)


# -- pull -----------------------------------------------------------------------------------


def test_pull_records_image_and_reports_progress(env: Env) -> None:
    built = build([{"etc/hello": b"hi\n", "bin/tool": os.urandom(30_000)},
                   {"data/x": os.urandom(100_000)}], labels={"tier": "web"})
    ref = env.push(built, "t/app:v1")
    rec = ProgressRecorder()
    img = env.images.pull(ref, progress=rec)
    assert img.id == built.image.config_digest
    assert img.downloaded and img.status == f"Downloaded newer image for {ref}"
    for digest in built.image.layer_digests:
        assert rec.kinds(digest)[-3:] == [ProgressKind.DOWNLOAD_COMPLETE,
                                          ProgressKind.EXTRACTING, ProgressKind.PULL_COMPLETE]
    assert img.size == sum(built.tar_sizes)
    assert img.manifest_digest == built.image.digest and img.index_digest is None
    assert img.repo_tags == (ref,)
    assert img.repo_digests == (f"{env.registry.host}/t/app@{built.image.digest}",)
    top = env.snapshots.get(img.top_chain_id or "")
    assert (top.path / "data" / "x").stat().st_size == 100_000
    assert (env.snapshots.lower_dirs(top.chain_id)[1] + "/etc/hello") and \
        Path(env.snapshots.lower_dirs(top.chain_id)[1], "etc/hello").read_bytes() == b"hi\n"
    assert [s.refcount for s in env.snapshots.chain(top.chain_id)] == [1, 1]

    rec2 = ProgressRecorder()
    again = env.images.pull(ref, progress=rec2)
    assert again.id == img.id and not again.downloaded
    assert again.status == f"Image is up to date for {ref}"
    assert all(e.kind is ProgressKind.ALREADY_EXISTS for e in rec2.events)
    assert len(env.images.all()) == 1 and len(env.snapshots.list()) == 2


def test_lookup_inspect_history(env: Env) -> None:
    built = build([{"a": b"1" * 1000}, {"b": b"2" * 3000}], labels={"k": "v"})
    ref = env.push(built, "t/look:1")
    img = env.images.pull(ref)
    hexid = img.id[7:]
    for name in (ref, f"{env.registry.host}/t/look@{built.image.digest}", img.id, hexid,
                 hexid[:12], hexid[:5]):
        assert env.images.get(name).id == img.id, name
    with pytest.raises(NotFound, match=r"^No such image: nosuch:latest$"):
        env.images.get("nosuch:latest")
    with pytest.raises(NotFound, match="No such image"):
        env.images.get(f"{env.registry.host}/t/look:2")

    info = env.images.inspect(ref)
    assert info["Id"] == img.id and info["RepoTags"] == [ref]
    assert info["RepoDigests"] == [f"{env.registry.host}/t/look@{built.image.digest}"]
    assert info["Created"] == "2024-01-02T03:04:05.123456789Z"
    assert info["Architecture"] == "amd64" and info["Os"] == "linux" and "Variant" not in info
    assert info["Author"] == "pyrt tests" and info["Parent"] == ""
    assert info["Size"] == sum(built.tar_sizes)
    cfg = info["Config"]
    assert cfg["Cmd"] == ["/bin/sh"] and cfg["Env"] == ["PATH=/bin"]
    assert cfg["Labels"] == {"k": "v"} and cfg["ExposedPorts"] == {"80/tcp": {}}
    assert cfg["Tty"] is False and cfg["Hostname"] == "" and cfg["Entrypoint"] == []
    assert info["RootFS"] == {"Type": "layers", "Layers": built.diff_ids}
    chain = img.chain_ids
    gd = info["GraphDriver"]
    assert gd["Name"] == "overlay2"
    assert gd["Data"]["UpperDir"] == str(env.snapshots.fs_path(chain[1]))
    assert gd["Data"]["LowerDir"] == str(env.snapshots.fs_path(chain[0]))
    assert gd["Data"]["MergedDir"].endswith(f"{chain[1][7:]}/merged")
    assert info["Metadata"]["LastTagTime"].endswith("Z")
    assert info["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"

    hist = env.images.history(img.id)
    assert [h["Id"] for h in hist] == [img.id, "<missing>", "<missing>"]
    assert [h["CreatedBy"] for h in hist] == ["/bin/sh -c #(nop) ADD layer1", "CMD",
                                              "/bin/sh -c #(nop) ADD layer0"]
    assert [h["Size"] for h in hist] == [built.tar_sizes[1], 0, built.tar_sizes[0]]
    assert hist[0]["Tags"] == [ref] and hist[1]["Tags"] == []
    assert hist[1]["Comment"] == "metadata only"
    assert hist[0]["Created"] == 1704164645


def test_ambiguous_short_id(env: Env) -> None:
    ids = []
    for i in range(40):  # 40 image ids: two share a first hex digit for sure
        built = build([], labels={"n": str(i)})
        ids.append(env.images.register(_stock(env, built)).id)
    firsts = [i[7] for i in ids]
    dup = next(c for c in firsts if firsts.count(c) > 1)
    with pytest.raises(InvalidArgument, match=f"short image id '{dup}' is ambiguous"):
        env.images.get(dup)


def _stock(env: Env, built: Built) -> str:
    img = built.image
    for digest, data in img.blobs().items():
        if not env.store.exists(digest):
            env.store.write_blob(data, digest)
    if not env.store.exists(img.digest):
        env.store.write_blob(img.manifest, img.digest)
    return img.digest


def test_list_filters(env: Env) -> None:
    a = env.images.pull(env.push(build([{"a": b"a"}], labels={"app": "a", "tier": "web"},
                                       created="2024-01-01T00:00:00Z"), "lib/alpha:1"))
    b = env.images.pull(env.push(build([{"b": b"b"}], labels={"app": "b"},
                                       created="2024-02-01T00:00:00Z"), "lib/beta:1"))
    # a dangling image: its only tag moves away
    c = env.images.pull(env.push(build([{"c": b"c"}], created="2024-03-01T00:00:00Z"),
                                 "lib/gamma:1"))
    env.images.tag(a.id, f"{env.registry.host}/lib/gamma:1")
    ids = [s["Id"] for s in env.images.list()]
    assert ids == [c.id, b.id, a.id]  # newest first
    summary = next(s for s in env.images.list() if s["Id"] == a.id)
    assert summary["RepoTags"] == sorted([f"{env.registry.host}/lib/alpha:1",
                                          f"{env.registry.host}/lib/gamma:1"])
    assert summary["SharedSize"] == -1 and summary["Containers"] == -1
    assert summary["Created"] == 1704067200 and summary["ParentId"] == ""
    assert summary["Labels"] == {"app": "a", "tier": "web"}

    def ids_for(**filters: list[str]) -> list[str]:
        return [s["Id"] for s in env.images.list(filters=dict(filters))]

    assert ids_for(dangling=["true"]) == [c.id]
    assert ids_for(dangling=["false"]) == [b.id, a.id]
    assert ids_for(reference=[f"{env.registry.host}/lib/b*"]) == [b.id]
    assert ids_for(reference=[f"{env.registry.host}/lib/*:1"]) == [b.id, a.id]
    assert ids_for(reference=["*"]) == []  # '*' never matches across '/'
    assert ids_for(label=["app"]) == [b.id, a.id]
    assert ids_for(label=["app=a", "tier=web"]) == [a.id]
    assert ids_for(before=[b.id]) == [a.id]
    assert ids_for(since=[f"{env.registry.host}/lib/alpha:1"]) == [c.id, b.id]
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        env.images.list(filters={"colour": ["red"]})


# -- shared layers ------------------------------------------------------------------------------


def test_shared_base_unpacked_once_and_kept_while_used(env: Env) -> None:
    base = {"base/file": os.urandom(20_000)}
    one = build([base, {"one": b"1"}])
    two = build([base, {"two": b"2"}])
    img1 = env.images.pull(env.push(one, "s/one:1"))
    rec = ProgressRecorder()
    img2 = env.images.pull(env.push(two, "s/two:1"), progress=rec)
    assert img1.chain_ids[0] == img2.chain_ids[0]
    base_layer = one.image.layer_digests[0]
    assert rec.kinds(base_layer) == [ProgressKind.ALREADY_EXISTS]  # no second unpack
    assert len(snapshot_dirs(env.snapshots)) == 3
    assert env.snapshots.get(img1.chain_ids[0]).refcount == 2

    out = env.images.remove(f"{env.registry.host}/s/one:1")
    assert {"Deleted": img1.id} in out and {"Deleted": img1.chain_ids[1]} in out
    assert {"Untagged": f"{env.registry.host}/s/one:1"} in out
    assert {"Untagged": f"{env.registry.host}/s/one@{one.image.digest}"} in out
    assert env.snapshots.get(img1.chain_ids[0]).refcount == 1
    assert env.snapshots.fs_path(img1.chain_ids[0]).is_dir()
    assert not env.snapshots.snapshot_dir(img1.chain_ids[1]).exists()
    assert env.store.exists(base_layer)  # still used by two
    assert not env.store.exists(one.image.layer_digests[1])
    assert not env.store.exists(one.image.digest) and not env.store.exists(img1.id)
    assert env.images.get(img2.id).id == img2.id

    env.images.remove(img2.id)
    assert env.snapshots.list() == [] and snapshot_dirs(env.snapshots) == []
    assert env.store.list() == []


# -- tags and removal rules ----------------------------------------------------------------------


def test_tag_and_remove_rules(env: Env) -> None:
    built = build([{"x": b"x"}])
    ref = env.push(built, "r/app:1")
    img = env.images.pull(ref)
    other = env.images.tag(ref, "myrepo/app")  # normalised, :latest
    assert str(other) == "docker.io/myrepo/app:latest"
    assert env.images.get("myrepo/app").id == img.id
    assert env.images.get("docker.io/myrepo/app:latest").id == img.id
    with pytest.raises(InvalidArgument, match="digest"):
        env.images.tag(ref, f"myrepo/app@{built.image.digest}")

    with pytest.raises(Conflict, match=rf"^conflict: unable to delete {img.short_id} \(must be "
                       r"forced\) - image is referenced in multiple repositories$"):
        env.images.remove(img.id)
    # by tag, with other references left: only untagged
    assert env.images.remove("myrepo/app") == [{"Untagged": "myrepo/app:latest"}]
    assert env.images.get(img.id).repo_tags == (ref,)

    # a container uses it: the last reference can't go without force
    cid = "0123456789abcdef" * 4
    with pytest.raises(Conflict, match=r"unable to remove repository reference .* \(must force\)"
                       rf" - container {cid[:12]} is using its referenced image {img.short_id}"):
        env.images.remove(ref, in_use=lambda i: cid if i == img.id else None)
    with pytest.raises(Conflict, match=rf"image is being used by container {cid[:12]}"):
        env.images.remove(img.id, in_use=lambda i: cid)
    # forced: untagged, but the image (the container's lower layers) stays, dangling
    out = env.images.remove(ref, force=True, in_use=lambda i: cid)
    assert {"Untagged": ref} in out and not any("Deleted" in o for o in out)
    kept = env.images.get(img.id)
    assert kept.repo_tags == () and kept.repo_digests == ()
    assert env.snapshots.fs_path(img.chain_ids[0]).is_dir()

    # re-tagging moves a tag
    b2 = env.images.pull(env.push(build([{"y": b"y"}]), "r/other:1"))
    env.images.tag(img.id, "moving:tag")
    env.images.tag(b2.id, "moving:tag")
    assert env.images.get("moving:tag").id == b2.id
    assert env.images.get(img.id).repo_tags == ()

    # no container: deleting by id takes the image and its files
    out = env.images.remove(img.id)
    assert out[0] == {"Deleted": img.id}
    with pytest.raises(NotFound, match=f"No such image: {img.id}"):
        env.images.get(img.id)
    assert not env.snapshots.snapshot_dir(img.chain_ids[0]).exists()


def test_prune_dangling_then_all(env: Env) -> None:
    old = env.images.pull(env.push(build([{"o": os.urandom(5000)}]), "p/app:1"))
    new = env.images.pull(env.push(build([{"n": b"n"}]), "p/app:2"))
    env.images.tag(new.id, f"{env.registry.host}/p/app:1")  # old keeps only p/app@digest
    assert env.images.get(old.id).repo_tags == () and env.images.get(old.id).repo_digests
    # a dangling image in use is kept
    res = env.images.prune(in_use=lambda i: "c" * 64 if i == old.id else None)
    assert res == {"ImagesDeleted": None, "SpaceReclaimed": 0}
    res = env.images.prune()
    assert {"Deleted": old.id} in res["ImagesDeleted"]
    assert res["SpaceReclaimed"] >= 5000
    assert [i.id for i in env.images.all()] == [new.id]
    res = env.images.prune(filters={"label": ["nope"]}, dangling_only=False)
    assert res["ImagesDeleted"] is None
    res = env.images.prune(dangling_only=False)
    assert {"Deleted": new.id} in res["ImagesDeleted"]
    assert env.images.all() == [] and env.snapshots.list() == []
    with pytest.raises(InvalidArgument, match="invalid filter 'reference'"):
        env.images.prune(filters={"reference": ["x"]})


# -- push, register ------------------------------------------------------------------------------


def test_push_tagged_image_and_pull_it_back(env: Env, tmp_path: Path) -> None:
    img = env.images.pull(env.push(build([{"p": b"p"}]), "src/app:1"))
    target = f"{env.registry.host}/dst/app:9"
    env.images.tag(img.id, target)
    result = env.images.push(target)
    assert result.digest == img.manifest_digest
    assert f"{env.registry.host}/dst/app@{img.manifest_digest}" in env.images.get(img.id)\
        .repo_digests
    # a second engine pulls what was pushed
    db2 = Database(tmp_path / "other" / "meta.db")
    try:
        other = ImageService(tmp_path / "other", store=ContentStore(tmp_path / "other/c"),
                             db=db2, snapshots=SnapshotService(tmp_path / "other", db2),
                             client_factory=client_factory)
        assert other.pull(target).id == img.id
    finally:
        db2.close()
    with pytest.raises(NotFound):
        env.images.push(f"{env.registry.host}/never/tagged:1")


def test_register_from_store_is_idempotent(env: Env) -> None:
    built = build([{"r": b"r"}, {"s": b"s"}])
    digest = _stock(env, built)
    rec = ProgressRecorder()
    img = env.images.register(digest, tags=["loaded/app:1"], progress=rec)
    assert img.repo_tags == ("docker.io/loaded/app:1",)
    assert rec.kinds(built.image.layer_digests[0]) == [ProgressKind.EXTRACTING,
                                                       ProgressKind.PULL_COMPLETE]
    again = env.images.register(digest, tags=["loaded/app:2"],
                                repo_digests=[f"loaded/app@{digest}"])
    assert again.id == img.id
    assert again.repo_tags == ("docker.io/loaded/app:1", "docker.io/loaded/app:2")
    assert again.repo_digests == (f"docker.io/loaded/app@{digest}",)
    assert [s.refcount for s in env.snapshots.list()] == [1, 1]
    with pytest.raises(InvalidArgument, match="repo digest"):
        env.images.register(digest, repo_digests=["loaded/app:3"])


# -- integrity and crash recovery --------------------------------------------------------------


def test_tampered_diff_id_refused_nothing_recorded(env: Env) -> None:
    good = build([{"ok": b"fine"}])
    bad = build([{"ok": b"fine"}, {"evil": b"payload"}],
                diff_ids=[good.diff_ids[0], sha256(b"not the layer")])
    ref = env.push(bad, "bad/app:1")
    with pytest.raises(InvalidArgument) as ei:
        env.images.pull(ref)
    msg = str(ei.value)
    assert sha256(b"not the layer") in msg and "diff id mismatch" in msg
    real = bad.diff_ids[1]
    assert real in msg
    assert env.images.all() == []
    assert env.snapshots.list() == [] and snapshot_dirs(env.snapshots) == []
    assert list(env.snapshots.tmp.iterdir()) == []
    assert env.db.query("SELECT * FROM tags") == []
    assert env.db.query("SELECT * FROM repo_digests") == []


def test_reconcile_after_crash(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    built = build([{"a": b"a"}, {"b": b"b"}])
    ref = env.push(built, "crash/app:1")

    def crash(*a: object, **kw: object) -> None:
        raise KeyboardInterrupt("simulated crash before the image transaction")

    # the process "dies" between unpacking and recording: undo of the failed call is also
    # lost, as in a real crash, so make the cleanup a no-op too
    monkeypatch.setattr(ImageService, "_insert", crash)
    monkeypatch.setattr(SnapshotService, "remove", lambda self, c: None)
    with pytest.raises(KeyboardInterrupt):
        env.images.pull(ref)
    monkeypatch.undo()
    assert len(env.snapshots.list()) == 2 and env.images.all() == []
    half = env.snapshots.tmp / "unpack-0123-left-behind"
    (half / "fs").mkdir(parents=True)
    (half / "fs" / "partial").write_bytes(b"x")

    images = env.reopen()
    assert env.snapshots.list() == [] and snapshot_dirs(env.snapshots) == []
    assert not half.exists()
    img = images.pull(ref)  # and it works afterwards
    assert [s.refcount for s in env.snapshots.chain(img.top_chain_id or "")] == [1, 1]



def test_pull_through_an_index_records_the_index_digest(env: Env) -> None:
    from pyrt.images import transfer
    from pyrt.oci.platform import host_platform
    from tests.registry_fixtures import build_index

    here = host_platform().architecture
    there = "arm64" if here != "arm64" else "amd64"
    mine, theirs = build([{"m": b"mine"}]), build([{"t": b"theirs"}], cmd=["other"])
    index = build_index([(theirs.image, there), (mine.image, here)])
    for b in (mine, theirs):
        env.push(b, "multi/app:tmp")
    env.source.write_blob(index, sha256(index))
    ref = f"{env.registry.host}/multi/app:1"
    transfer.push(ref, env.source, sha256(index), client_factory=client_factory)
    img = env.images.pull(ref)
    assert img.id == mine.image.config_digest
    assert img.index_digest == sha256(index) and img.manifest_digest == mine.image.digest
    assert img.repo_digests == (f"{env.registry.host}/multi/app@{sha256(index)}",)
    # by either digest in that repository
    assert env.images.get(f"{env.registry.host}/multi/app@{mine.image.digest}").id == img.id
    assert env.images.get(f"{env.registry.host}/multi/app@{sha256(index)}").id == img.id
    with pytest.raises(NotFound):
        env.images.get(f"{env.registry.host}/elsewhere@{mine.image.digest}")
    other = env.images.pull(ref, platform=f"linux/{there}")
    assert other.id == theirs.image.config_digest and other.downloaded
    assert env.images.inspect(other.id)["Config"]["Cmd"] == ["other"]
