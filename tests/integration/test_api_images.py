"""Image endpoints of pyrtd against a local docker-registry (127.0.0.1): pull with the
JSON progress stream, list/inspect/history/tag/delete/prune, save/load round trip, errors
before the stream starts, and the same through the real docker CLI.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyrt.content.store import ContentStore
from pyrt.errors import Conflict, NotFound
from tests.integration.test_api_system import DOCKER, PyrtdProcess
from tests.registry_fixtures import REGISTRY_BIN, Registry, TestImage, build_image

pytestmark = pytest.mark.skipif(
    not REGISTRY_BIN.is_file(), reason=f"{REGISTRY_BIN} missing: apt-get install docker-registry"
)


@dataclass
class Env:
    daemon: PyrtdProcess
    registry: Registry
    image: TestImage
    ref: str  # <registry>/test/app:v1


def publish(registry: Registry, src: ContentStore, image: TestImage, ref: str) -> str:
    from pyrt.images import transfer

    for digest, data in image.blobs().items():
        if not src.exists(digest):
            src.write_blob(data, digest)
    if not src.exists(image.digest):
        src.write_blob(image.manifest, image.digest)
    full = f"{registry.host}/{ref}"
    transfer.push(full, src, image.digest)
    return full


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    reg = Registry(tmp_path / "registry")
    try:
        image = build_image([{"etc/a.txt": b"alpha"}, {"etc/b.txt": b"beta"}], label="api")
        ref = publish(reg, ContentStore(tmp_path / "src"), image, "test/app:v1")
        d = PyrtdProcess(tmp_path / "d")
        try:
            yield Env(d, reg, image, ref)
        finally:
            d.cleanup()
    finally:
        reg.stop()


def test_pull_progress_stream_and_views(env: Env) -> None:
    c = env.daemon.client()
    msgs = list(c.pull(env.ref.rsplit(":", 1)[0], tag="v1"))
    statuses = [m.get("status", "") for m in msgs]
    repo = env.ref.rsplit(":", 1)[0]
    assert statuses[0] == "Pulling from test/app" and msgs[0]["id"] == "v1"
    layer_ids = {d.split(":")[1][:12] for d in env.image.layer_digests}
    for lid in layer_ids:
        mine = [m["status"] for m in msgs if m.get("id") == lid]
        assert mine[0] == "Pulling fs layer" and mine[-1] == "Pull complete", mine
        assert "Download complete" in mine
    assert statuses[-2] == f"Digest: {env.image.digest}"
    assert statuses[-1] == f"Status: Downloaded newer image for {env.ref}"
    # again: up to date
    again = [m.get("status", "") for m in c.pull(repo, tag="v1")]
    assert again[-1] == f"Status: Image is up to date for {env.ref}"

    listed = c.images()
    assert len(listed) == 1 and listed[0]["RepoTags"] == [env.ref]
    assert listed[0]["Labels"] == {"test": "api"}
    info = c.inspect_image(env.ref)
    assert info["Id"] == listed[0]["Id"] and info["RepoDigests"] == [
        f"{repo}@{env.image.digest}"]
    assert len(c.history(env.ref)) == 2
    assert c.images(filters={"reference": ["nothing*"]}) == []
    df = c.df()
    assert [i["Id"] for i in df["Images"]] == [info["Id"]] and df["LayersSize"] > 0


def test_pull_errors_are_http_errors(env: Env) -> None:
    c = env.daemon.client()
    missing = f"{env.registry.host}/test/missing"
    with pytest.raises(NotFound):
        list(c.pull(missing, tag="v1"))
    status, h, body = env.daemon.request("POST", "/images/create?fromImage=Bad%20Name")
    assert status == 400 and h["content-type"] == "application/json"
    assert json.loads(body)["message"]
    status, _, body = env.daemon.request("POST", "/images/create")
    assert status == 400 and "fromImage" in json.loads(body)["message"]


def test_tag_delete_prune_save_load(env: Env) -> None:
    c = env.daemon.client()
    repo, tag = env.ref.rsplit(":", 1)
    list(c.pull(repo, tag=tag))
    image_id = c.inspect_image(env.ref)["Id"]
    c.tag(env.ref, "local/app", "2")
    assert sorted(c.inspect_image(image_id)["RepoTags"]) == sorted([env.ref, "local/app:2"])
    status, _, _ = env.daemon.request("POST", f"/images/{env.ref}/tag?repo=local/app&tag=3")
    assert status == 201
    with pytest.raises(Conflict):  # by id, referenced in several repositories
        c.remove_image(image_id)

    buf = io.BytesIO()
    assert c.save(["local/app:2"], buf) > 0
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        names = tf.getnames()
    assert "manifest.json" in names and "index.json" in names

    out = c.remove_image(image_id, force=True)
    assert {"Deleted": image_id} in out and {"Untagged": "local/app:2"} in out
    assert c.images() == []
    with pytest.raises(NotFound):
        c.inspect_image("local/app:2")

    buf.seek(0)
    assert c.load(buf) == ["Loaded image: local/app:2"]
    assert c.inspect_image("local/app:2")["Id"] == image_id
    # its last tag: untagged and deleted; nothing is left to prune
    out = c.remove_image("local/app:2")
    assert out[:2] == [{"Untagged": "local/app:2"}, {"Deleted": image_id}]
    assert c.images() == []
    assert c.prune_images() == {"ImagesDeleted": [], "SpaceReclaimed": 0}
    status, _, body = env.daemon.request("GET", "/images/nothing:1/get")
    assert status == 404 and json.loads(body) == {"message": "No such image: nothing:1"}


def test_prune_dangling(env: Env) -> None:
    c = env.daemon.client()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("x")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    buf.seek(0)
    dangling = c.import_image(buf)
    assert c.images(filters={"dangling": ["true"]})[0]["Id"] == dangling
    res = c.prune_images()
    assert {"Deleted": dangling} in res["ImagesDeleted"] and res["SpaceReclaimed"] > 0
    assert c.prune_images() == {"ImagesDeleted": [], "SpaceReclaimed": 0}


@pytest.mark.skipif(not DOCKER.is_file(), reason="docker CLI missing")
def test_docker_cli_images(env: Env, tmp_path: Path) -> None:
    d = env.daemon
    p = d.docker("pull", env.ref)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "Pull complete" in out and f"Digest: {env.image.digest}" in out
    assert f"Status: Downloaded newer image for {env.ref}" in out
    p = d.docker("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert p.returncode == 0 and p.stdout.decode().split() == [env.ref]
    assert d.docker("tag", env.ref, "cli/app:7").returncode == 0
    p = d.docker("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert sorted(p.stdout.decode().split()) == sorted([env.ref, "cli/app:7"])
    saved = d.docker("save", "cli/app:7")
    assert saved.returncode == 0 and len(saved.stdout) > 1024
    p = d.docker("rmi", "cli/app:7")
    assert p.returncode == 0 and "Untagged: cli/app:7" in p.stdout.decode()
    p = d.docker("load", input=saved.stdout)
    assert p.returncode == 0, p.stderr
    assert "Loaded image: cli/app:7" in p.stdout.decode()
    p = d.docker("rmi", "no/such:1")
    assert p.returncode == 1 and b"No such image: no/such:1" in p.stderr
    p = d.docker("pull", f"{env.registry.host}/test/missing:v1")
    assert p.returncode != 0 and b"Error response from daemon" in p.stderr


def _publish_tags(env: Env, tmp_path: Path) -> tuple[str, dict[str, TestImage]]:
    """test/multi:v1 and test/multi:v2, two different images, in the test's registry."""
    src = ContentStore(tmp_path / "multi-src")
    images = {t: build_image([{"etc/t.txt": t.encode()}], label=t) for t in ("v1", "v2")}
    for t, image in images.items():
        publish(env.registry, src, image, f"test/multi:{t}")
    return f"{env.registry.host}/test/multi", images


def test_pull_without_a_tag_pulls_every_tag(env: Env, tmp_path: Path) -> None:
    repo, images = _publish_tags(env, tmp_path)
    c = env.daemon.client()
    msgs = list(c.pull(repo))  # no tag: moby's API pulls all of them
    statuses = [(m.get("id"), m.get("status", "")) for m in msgs]
    assert not [m for m in msgs if "error" in m], msgs
    starts = [i for i, (_, s) in enumerate(statuses) if s.startswith("Pulling from")]
    # moby names the repository without its registry's host
    assert [statuses[i] for i in starts] == [("v1", "Pulling from test/multi"),
                                             ("v2", "Pulling from test/multi")]
    digests = [s for _, s in statuses if s.startswith("Digest: ")]
    assert digests == [f"Digest: {images['v1'].digest}", f"Digest: {images['v2'].digest}"]
    assert statuses[-1] == (None, f"Status: Downloaded newer image for {repo}")
    assert sorted(t for i in c.images() for t in i["RepoTags"]) == [f"{repo}:v1",
                                                                    f"{repo}:v2"]
    for t, image in images.items():
        assert c.inspect_image(f"{repo}:{t}")["RepoDigests"] == [f"{repo}@{image.digest}"]
    again = [m.get("status", "") for m in c.pull(repo)]
    assert again[-1] == f"Status: Image is up to date for {repo}"
    # a repository the registry does not have: 404 before anything streams, nothing added
    with pytest.raises(NotFound, match="test/nothing not found"):
        list(c.pull(f"{env.registry.host}/test/nothing"))
    assert len(c.images()) == 2


@pytest.mark.skipif(not DOCKER.is_file(), reason="docker CLI missing")
def test_docker_cli_pull_all_tags(env: Env, tmp_path: Path) -> None:
    repo, images = _publish_tags(env, tmp_path)
    p = env.daemon.docker("pull", "--all-tags", repo)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "v1: Pulling from test/multi" in out and "v2: Pulling from test/multi" in out
    assert f"Digest: {images['v2'].digest}" in out
    assert f"Status: Downloaded newer image for {repo}" in out
    assert out.rstrip().endswith(repo)
    p = env.daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert sorted(p.stdout.decode().split()) == [f"{repo}:v1", f"{repo}:v2"]
    p = env.daemon.docker("pull", "-a", f"{repo}:v1")
    assert p.returncode != 0 and b"tag can't be used with --all-tags/-a" in p.stderr
