"""ImageService.pull unpacks layers while later layers still download.

A local docker-registry (127.0.0.1) behind a proxy that sends chosen blobs slowly: with
layer 3 throttled, layers 1 and 2 are extracted (and their snapshots exist) before layer
3's download completes, each layer's events keep docker's order, and the pulled image is
right. Failures keep the pull all-or-nothing: a tampered layer 3 arriving after layers 1
and 2 were unpacked leaves no image and no snapshot; a diff id mismatch on layer 1 stops
the download of layer 3 at once (its partial ingest stays for a resume).
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pyrt.content.store import ContentStore, ingest_key
from pyrt.errors import InvalidArgument
from pyrt.images import transfer
from pyrt.images.progress import ProgressEvent, ProgressKind, ProgressRecorder
from pyrt.images.service import ImageService
from pyrt.metadata.db import Database
from pyrt.snapshots.service import SnapshotService, chain_of
from tests.registry_fixtures import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    REGISTRY_BIN,
    Proxy,
    ProxyBehaviour,
    Registry,
    TestImage,
    make_layer,
    sha256,
)

pytestmark = pytest.mark.skipif(
    not REGISTRY_BIN.is_file(), reason=f"{REGISTRY_BIN} missing: apt-get install docker-registry"
)

_BLOB_PATH = re.compile(r"^/v2/.+/blobs/(sha256:[a-f0-9]{64})$")
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
        "upgrade"}


class ThrottlingProxy(Proxy):
    """The fixtures' Proxy, plus: GETs of the blobs in `rates` (digest -> bytes/s) are sent
    at about that rate; everything else (and the base class's faults) as usual."""

    def __init__(self, upstream: str, rates: dict[str, int],
                 behaviour: ProxyBehaviour | None = None) -> None:
        self.rates = rates
        self.started: dict[str, float] = {}
        super().__init__(upstream, behaviour)

    def _forward(self, h: http.server.BaseHTTPRequestHandler) -> None:
        m = _BLOB_PATH.match(urllib.parse.urlsplit(h.path).path)
        rate = self.rates.get(m.group(1)) if m and h.command == "GET" else None
        if m is None or rate is None:
            super()._forward(h)
            return
        digest = m.group(1)
        self.started.setdefault(digest, time.monotonic())
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            conn.request("GET", h.path, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if digest == self.behaviour.tamper_digest and resp.status in (200, 206):
                mid = len(data) // 2
                data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
            h.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP and k.lower() != "content-length":
                    h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            step = max(1024, rate // 20)
            for i in range(0, len(data), step):
                h.wfile.write(data[i:i + step])
                h.wfile.flush()
                time.sleep(step / rate)
        except (OSError, http.client.HTTPException):
            h.close_connection = True  # the client went away (a cancelled pull)
        finally:
            conn.close()


def client_factory(domain: str) -> Any:
    from pyrt.images.registry import RegistryClient

    return RegistryClient(domain, backoff_base=0.05, max_retries=1)


@dataclass
class Built:
    image: TestImage
    files: list[dict[str, bytes]]
    diff_ids: list[str]


def build(layers: list[dict[str, bytes]], *, diff_ids: list[str] | None = None) -> Built:
    blobs, real = [], []
    for files in layers:
        gz, tar = make_layer(files)
        blobs.append(gz)
        real.append(sha256(tar))
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-05-06T07:08:09Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids or real},
        "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": DOCKER_LAYER, "digest": sha256(b), "size": len(b)}
                   for b in blobs],
    }).encode()
    return Built(TestImage(config, blobs, manifest, DOCKER_MANIFEST), layers, real)


def three_layers(big: int) -> list[dict[str, bytes]]:
    """Layers 1 and 2 small; layer 3 holds `big` random (incompressible) bytes; layer 2
    replaces a file of layer 1."""
    return [
        {"etc/os-release": b"ID=pyrt-test\n", "bin/tool": os.urandom(20_000),
         "etc/motd": b"layer one\n"},
        {"usr/lib/libx.so": os.urandom(30_000), "etc/motd": b"layer two\n"},
        {"srv/data.bin": os.urandom(big), "srv/README": b"third\n"},
    ]


@dataclass
class Env:
    root: Path
    db: Database
    store: ContentStore
    snapshots: SnapshotService
    images: ImageService
    registry: Registry
    source: ContentStore

    def push(self, built: Built, repo: str) -> None:
        img = built.image
        for digest, data in img.blobs().items():
            if not self.source.exists(digest):
                self.source.write_blob(data, digest)
        if not self.source.exists(img.digest):
            self.source.write_blob(img.manifest, img.digest)
        transfer.push(f"{self.registry.host}/{repo}", self.source, img.digest,
                      client_factory=client_factory)

    def assert_nothing_kept(self) -> None:
        assert self.images.all() == []
        assert self.snapshots.list() == []
        assert sorted(p.name for p in self.snapshots.dir.iterdir() if len(p.name) == 64) == []
        assert list(self.snapshots.tmp.iterdir()) == []
        assert self.db.query("SELECT * FROM tags") == []
        assert self.db.query("SELECT * FROM repo_digests") == []


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
        yield Env(root, db, store, snaps, images, reg, ContentStore(tmp_path / "src"))
    finally:
        db.close()
        reg.stop()


def _index(events: list[ProgressEvent], digest: str, kind: ProgressKind) -> int:
    for i, e in enumerate(events):
        if e.digest == digest and e.kind is kind:
            return i
    raise AssertionError(f"no {kind.value} event for {digest}")


def test_first_layers_extracted_while_third_downloads(env: Env) -> None:
    built = build(three_layers(300_000))
    env.push(built, "pipe/app:1")
    l1, l2, l3 = built.image.layer_digests
    rate = 120_000  # layer 3 (about 300 kB gzip'd) takes about 2.5 s
    proxy = ThrottlingProxy(env.registry.host, {l3: rate})
    chain_ids = [chain_of(None, built.diff_ids[0])]
    for d in built.diff_ids[1:]:
        chain_ids.append(chain_of(chain_ids[-1], d))
    seen_at_l3_complete: dict[str, bool] = {}
    rec = ProgressRecorder()

    def sink(event: ProgressEvent) -> None:
        if event.digest == l3 and event.kind is ProgressKind.DOWNLOAD_COMPLETE:
            # a worker thread: look at the files, not the database
            for n, c in enumerate(chain_ids, 1):
                seen_at_l3_complete[f"layer{n}"] = env.snapshots.fs_path(c).is_dir()
        rec(event)

    ref = f"{proxy.host}/pipe/app:1"
    try:
        t0 = time.monotonic()
        img = env.images.pull(ref, progress=sink)
        elapsed = time.monotonic() - t0
    finally:
        proxy.stop()
    events = rec.events
    # the throttle really held layer 3 back, and the pipeline used that time
    assert elapsed >= len(built.image.layers[2]) / rate * 0.8
    assert _index(events, l1, ProgressKind.EXTRACTING) < \
        _index(events, l3, ProgressKind.DOWNLOAD_COMPLETE)
    assert _index(events, l2, ProgressKind.PULL_COMPLETE) < \
        _index(events, l3, ProgressKind.DOWNLOAD_COMPLETE)
    assert seen_at_l3_complete == {"layer1": True, "layer2": True, "layer3": False}
    # each layer's events in docker's order
    for d in (l1, l2, l3):
        assert rec.kinds(d) == [
            ProgressKind.WAITING, ProgressKind.DOWNLOADING, ProgressKind.VERIFYING,
            ProgressKind.DOWNLOAD_COMPLETE, ProgressKind.EXTRACTING, ProgressKind.PULL_COMPLETE,
        ], d
    # the image: recorded once all layers are in, with every layer's files
    assert img.id == built.image.config_digest and img.downloaded
    assert img.repo_tags == (ref,)
    assert img.repo_digests == (f"{proxy.host}/pipe/app@{built.image.digest}",)
    assert list(img.chain_ids) == chain_ids
    lowers = env.snapshots.lower_dirs(chain_ids[2])  # top first
    assert len(lowers) == 3
    for files, fs in zip(built.files, reversed(lowers), strict=True):
        for name, data in files.items():
            assert Path(fs, name).read_bytes() == data, name
    # what a container sees: the topmost copy of each path
    merged: dict[str, bytes] = {}
    for files in built.files:
        merged.update(files)
    for name, data in merged.items():
        top = next(Path(fs, name) for fs in lowers if Path(fs, name).exists())
        assert top.read_bytes() == data, name
    assert merged["etc/motd"] == b"layer two\n"
    assert [s.refcount for s in env.snapshots.chain(chain_ids[2])] == [1, 1, 1]
    assert env.store.exists(built.image.digest)  # the manifest, stored last


def test_tampered_last_layer_after_others_unpacked_keeps_nothing(env: Env) -> None:
    built = build(three_layers(200_000))
    env.push(built, "pipe/bad:1")
    l1, l2, l3 = built.image.layer_digests
    proxy = ThrottlingProxy(env.registry.host, {l3: 150_000},
                            ProxyBehaviour(tamper_digest=l3))
    rec = ProgressRecorder()
    try:
        with pytest.raises(InvalidArgument, match=f"blob {l3} .*failed verification"):
            env.images.pull(f"{proxy.host}/pipe/bad:1", progress=rec)
    finally:
        proxy.stop()
    # layers 1 and 2 had been unpacked before layer 3 failed ...
    assert ProgressKind.PULL_COMPLETE in rec.kinds(l1)
    assert ProgressKind.PULL_COMPLETE in rec.kinds(l2)
    assert rec.kinds(l3)[-1] is ProgressKind.FAILED
    # ... and none of it stays
    env.assert_nothing_kept()
    assert not env.store.exists(l3)
    # the same image pulls fine from the registry itself afterwards
    img = env.images.pull(f"{env.registry.host}/pipe/bad:1")
    assert img.id == built.image.config_digest
    assert len(env.snapshots.list()) == 3


def test_unpack_failure_stops_the_downloads(env: Env) -> None:
    good = build(three_layers(6_000_000))
    wrong = sha256(b"not layer one")
    bad = build(good.files, diff_ids=[wrong, *good.diff_ids[1:]])
    env.push(bad, "pipe/diff:1")
    l1, _, l3 = bad.image.layer_digests
    # layer 3 alone would take about 15 s; the registry client reads 1 MiB at a time and
    # checks for a cancel between reads, so it stops within about 2.6 s
    rate = 400_000
    proxy = ThrottlingProxy(env.registry.host, {l3: rate})
    rec = ProgressRecorder()
    try:
        t0 = time.monotonic()
        with pytest.raises(InvalidArgument) as ei:
            env.images.pull(f"{proxy.host}/pipe/diff:1", progress=rec)
        elapsed = time.monotonic() - t0
        started = dict(proxy.started)
    finally:
        proxy.stop()
    msg = str(ei.value)
    assert "diff id mismatch" in msg and wrong in msg and good.diff_ids[0] in msg
    assert l3 in started  # layer 3 was downloading when layer 1 failed ...
    assert elapsed < len(bad.image.layers[2]) / rate / 2  # ... and was stopped
    assert ProgressKind.DOWNLOAD_COMPLETE not in rec.kinds(l3)
    assert ProgressKind.EXTRACTING in rec.kinds(l1)
    assert ProgressKind.PULL_COMPLETE not in rec.kinds(l1)
    env.assert_nothing_kept()
    assert not env.store.exists(l3)
    partial = env.store.ingest_root / ingest_key(f"pull-{l3}") / "data"
    assert 0 < partial.stat().st_size < len(bad.image.layers[2])  # kept for a resume
    # the transfer thread is gone, and no worker of it either
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
            t.name.startswith(("pyrt-pull", "pyrt-transfer")) for t in threading.enumerate()):
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate()
                if t.name.startswith(("pyrt-pull", "pyrt-transfer"))]
