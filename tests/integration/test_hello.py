"""The embedded hello-world image: built from the installed static `hello` program,
reproducible, registered as hello-world:latest, and it runs in a container."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.bundle as bundle
from pyrt.content.store import ContentStore
from pyrt.images import hello
from pyrt.images.service import ImageService
from pyrt.metadata.db import Database
from pyrt.oci.manifest import parse_image_manifest
from pyrt.runtime.runtime import Runtime
from pyrt.snapshots.service import SnapshotService


@pytest.fixture
def images(tmp_path: Path) -> Iterator[ImageService]:
    root = tmp_path / "engine"
    db = Database(root / "metadata.db")
    try:
        store = ContentStore(root / "content")
        yield ImageService(root, store=store, db=db, snapshots=SnapshotService(root, db))
    finally:
        db.close()


def _host_output() -> str:
    return subprocess.run([str(hello.find_hello_binary())], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def test_hello_binary_is_static_and_says_what_happened() -> None:
    binary = hello.find_hello_binary()
    with open(binary, "rb") as f:
        head = f.read(4)
    assert head == b"\x7fELF"
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30)
    assert "not a dynamic executable" in ldd.stdout + ldd.stderr
    text = _host_output()
    for needle in ("Hello from pyrt!", "client", "daemon", "hello-world",
                   "pyrt run -it busybox sh"):
        assert needle in text


def test_hello_image_is_reproducible(tmp_path: Path) -> None:
    first = hello.hello_world_image(ContentStore(tmp_path / "one"))
    second = hello.hello_world_image(ContentStore(tmp_path / "two"))
    assert first == second
    assert hello.hello_world_image(ContentStore(tmp_path / "one")) == first


def test_hello_image_runs_in_a_container(images: ImageService, tmp_path: Path,
                                         runtime_root: Path, unique_id: str) -> None:
    digest = hello.hello_world_image(images.store, images)
    img = images.get("hello-world")
    assert img.manifest_digest == digest
    assert img.familiar_tags() == ["hello-world:latest"]
    assert img.config.config.cmd == ("/hello",)
    manifest = parse_image_manifest(images.store.read_bytes(digest))
    assert len(manifest.layers) == 1
    top = img.top_chain_id
    assert top is not None
    fs = images.snapshots.fs_path(top)
    assert sorted(p.name for p in fs.iterdir()) == ["hello"]
    assert os.stat(fs / "hello").st_mode & 0o777 == 0o755

    b = bundle.make_bundle(tmp_path / "bundle", list(img.config.config.cmd or ()), rootfs=fs)
    rt = Runtime(str(runtime_root))
    r, w = os.pipe()
    devnull = os.open("/dev/null", os.O_RDONLY)
    try:
        code = rt.run(unique_id, str(b), stdio=(devnull, w, w))
    finally:
        os.close(w)
        os.close(devnull)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    assert code == 0, out
    assert out == _host_output()
    assert "Hello from pyrt!" in out
