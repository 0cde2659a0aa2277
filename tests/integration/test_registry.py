"""pyrt's registry client and pull/push against Debian's docker-registry on 127.0.0.1.

Peers: skopeo copies what pyrt pushed (digests agree) and pushes what pyrt pulls (v2s2,
OCI, zstd). Auth: htpasswd basic auth and token auth (a token issuer thread signing RS256
JWTs). Faults: a proxy that flips a byte in a blob, cuts a body short, ignores Range, or
sends slowly while a pull in a subprocess is killed with SIGKILL.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.registry_fixtures import (
    REGISTRY_BIN,
    SKOPEO,
    Proxy,
    ProxyBehaviour,
    Registry,
    TestImage,
    TokenServer,
    build_image,
    build_index,
    sha256,
    skopeo,
    write_oci_layout,
)

pytestmark = pytest.mark.skipif(
    not REGISTRY_BIN.is_file(), reason=f"{REGISTRY_BIN} missing: apt-get install docker-registry"
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _client_factory(**kw: object) -> Callable[[str], object]:
    from pyrt.images.registry import RegistryClient

    def make(domain: str) -> RegistryClient:
        return RegistryClient(domain, backoff_base=0.05, **kw)  # type: ignore[arg-type]

    return make


def _store(path: Path):  # type: ignore[no-untyped-def]
    from pyrt.content.store import ContentStore

    return ContentStore(path)


def _stock(store, image: TestImage) -> None:  # type: ignore[no-untyped-def]
    for digest, data in image.blobs().items():
        store.write_blob(data, digest)
    store.write_blob(image.manifest, image.digest)


def _assert_store_verified(root: Path) -> None:
    """Every file under blobs/sha256 hashes to its name (no half blob is visible)."""
    for f in (root / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(f.read_bytes()).hexdigest() == f.name, f"corrupt blob {f}"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def image() -> TestImage:
    return build_image([
        {"etc/hello": b"hello world\n" * 100, "bin/tool": os.urandom(50_000)},
        {"data/blob.bin": os.urandom(400_000)},
    ])


# -- push / pull round trips -------------------------------------------------------------------


@pytest.mark.parametrize("oci", [False, True], ids=["v2s2", "oci"])
def test_push_then_pull_round_trip(tmp_path: Path, registry: Registry, oci: bool) -> None:
    from pyrt.images import transfer
    from pyrt.images.progress import ProgressKind, ProgressRecorder

    img = build_image([{"a": b"x" * 5000}, {"b": os.urandom(300_000)}], oci=oci)
    src = _store(tmp_path / "src")
    _stock(src, img)
    rec = ProgressRecorder()
    res = transfer.push(
        f"{registry.host}/rt/app:v1", src, img.digest, client_factory=_client_factory(),
        progress=rec, chunk_threshold=100_000, chunk_size=64 * 1024,
    )
    assert res.digest == img.digest
    big = img.layer_digests[1]
    assert rec.kinds(big) == [
        ProgressKind.PREPARING, ProgressKind.WAITING, ProgressKind.PUSHING, ProgressKind.PUSHED
    ]
    assert rec.last(big) is not None
    pushing = [e for e in rec.for_digest(big) if e.kind is ProgressKind.PUSHING]
    assert pushing[-1].current == pushing[-1].total == len(img.layers[1])

    dst = _store(tmp_path / "dst")
    rec = ProgressRecorder()
    pulled = transfer.pull(
        f"{registry.host}/rt/app:v1", dst, client_factory=_client_factory(), progress=rec
    )
    assert pulled.manifest_digest == img.digest
    assert pulled.manifest == img.manifest
    assert pulled.config_digest == img.config_digest
    assert [d.digest for d in pulled.layers] == img.layer_digests
    assert pulled.index_digest is None
    for digest, data in {**img.blobs(), img.digest: img.manifest}.items():
        assert dst.read_bytes(digest) == data
    for d in img.layer_digests:
        assert rec.kinds(d) == [
            ProgressKind.WAITING, ProgressKind.DOWNLOADING, ProgressKind.VERIFYING,
            ProgressKind.DOWNLOAD_COMPLETE,
        ]
    assert dst.ingests() == []
    _assert_store_verified(tmp_path / "dst")

    # pulling again downloads nothing; pushing again uploads nothing
    rec = ProgressRecorder()
    transfer.pull(f"{registry.host}/rt/app:v1", dst, client_factory=_client_factory(),
                  progress=rec)
    assert {e.kind for e in rec.events} == {ProgressKind.ALREADY_EXISTS}
    rec = ProgressRecorder()
    transfer.push(f"{registry.host}/rt/app:v1", src, img.digest,
                  client_factory=_client_factory(), progress=rec)
    assert rec.kinds(big) == [ProgressKind.PREPARING, ProgressKind.WAITING,
                              ProgressKind.LAYER_EXISTS]


def test_cross_repository_mount(tmp_path: Path, registry: Registry, image: TestImage) -> None:
    from pyrt.images import transfer
    from pyrt.images.progress import ProgressKind, ProgressRecorder

    src = _store(tmp_path / "s")
    _stock(src, image)
    transfer.push(f"{registry.host}/team/base:1", src, image.digest,
                  client_factory=_client_factory())
    hints = {d: [f"{registry.host}/team/base", "elsewhere.example/x"] for d in image.blobs()}
    rec = ProgressRecorder()
    transfer.push(f"{registry.host}/team/app:1", src, image.digest,
                  client_factory=_client_factory(), progress=rec, mount_hints=hints)
    for d in image.layer_digests:
        last = rec.last(d)
        assert last is not None and last.kind is ProgressKind.MOUNTED
        assert last.status == "Mounted from team/base"
        assert registry.blob_exists("team/app", d)
    # a hint to a repo that lacks the blob: the registry answers 202, pyrt uploads
    other = build_image([{"z": os.urandom(1000)}])
    _stock(src, other)
    rec = ProgressRecorder()
    transfer.push(f"{registry.host}/team/app2:1", src, other.digest,
                  client_factory=_client_factory(), progress=rec,
                  mount_hints={other.layer_digests[0]: ["team/base"]})
    assert rec.kinds(other.layer_digests[0])[-1] is ProgressKind.PUSHED
    assert registry.blob_exists("team/app2", other.layer_digests[0])


def test_index_selects_platform(tmp_path: Path, registry: Registry) -> None:
    from pyrt.images import transfer
    from pyrt.oci.platform import Platform

    amd = build_image([{"arch": b"amd64"}], oci=True, architecture="amd64")
    arm = build_image([{"arch": b"arm64"}], oci=True, architecture="arm64")
    index = build_index([(amd, "amd64"), (arm, "arm64")])
    src = _store(tmp_path / "s")
    _stock(src, amd)
    _stock(src, arm)
    idx_digest = src.write_blob(index)
    res = transfer.push(f"{registry.host}/multi/app:latest", src, idx_digest,
                        client_factory=_client_factory())
    assert res.digest == idx_digest
    assert set(res.manifest_digests) == {amd.digest, arm.digest, idx_digest}

    dst = _store(tmp_path / "d")
    pulled = transfer.pull(f"{registry.host}/multi/app", dst,
                           platform=Platform("linux", "arm64"), client_factory=_client_factory())
    assert pulled.index_digest == idx_digest
    assert pulled.manifest_digest == arm.digest
    assert dst.exists(idx_digest) and dst.exists(arm.digest)
    assert not dst.exists(amd.layer_digests[0])
    assert dst.read_bytes(arm.layer_digests[0]) == arm.layers[0]
    # by digest, too
    pulled = transfer.pull(f"{registry.host}/multi/app@{amd.digest}", dst,
                           client_factory=_client_factory())
    assert pulled.manifest_digest == amd.digest and pulled.index_digest is None


def test_missing_manifest_is_not_found(tmp_path: Path, registry: Registry) -> None:
    from pyrt.errors import NotFound
    from pyrt.images import transfer

    with pytest.raises(NotFound, match=rf"{registry.host}/nope/img:v9"):
        transfer.pull(f"{registry.host}/nope/img:v9", _store(tmp_path / "d"),
                      client_factory=_client_factory())


# -- skopeo as the peer ----------------------------------------------------------------------


@pytest.mark.skipif(not Path(SKOPEO).exists(), reason="skopeo missing")
def test_skopeo_copies_what_pyrt_pushed(tmp_path: Path, registry: Registry) -> None:
    from pyrt.images import transfer

    oci_img = build_image([{"f": b"oci layer"}, {"g": os.urandom(20_000)}], oci=True)
    v2_img = build_image([{"f": b"docker layer"}], oci=False)
    src = _store(tmp_path / "s")
    _stock(src, oci_img)
    _stock(src, v2_img)
    transfer.push(f"{registry.host}/peer/oci:t1", src, oci_img.digest,
                  client_factory=_client_factory())
    transfer.push(f"{registry.host}/peer/v2:t1", src, v2_img.digest,
                  client_factory=_client_factory())

    # OCI manifest -> oci: layout, unchanged
    out = tmp_path / "oci-out"
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/peer/oci:t1",
           f"oci:{out}:t1")
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == oci_img.digest
    for digest, data in oci_img.blobs().items():
        assert (out / "blobs" / "sha256" / digest.split(":")[1]).read_bytes() == data
    # schema 2 -> dir: (oci: would convert it to an OCI manifest), unchanged
    out2 = tmp_path / "dir-out"
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/peer/v2:t1",
           f"dir:{out2}")
    assert sha256((out2 / "manifest.json").read_bytes()) == v2_img.digest
    for digest, data in v2_img.blobs().items():
        assert (out2 / digest.split(":")[1]).read_bytes() == data
    # and skopeo's view of the registry agrees on the digest
    insp = json.loads(skopeo("inspect", "--tls-verify=false",
                             f"docker://{registry.host}/peer/v2:t1").stdout)
    assert insp["Digest"] == v2_img.digest


@pytest.mark.skipif(not Path(SKOPEO).exists(), reason="skopeo missing")
@pytest.mark.parametrize("fmt", ["v2s2", "oci", "oci-zstd"])
def test_pyrt_pulls_what_skopeo_pushed(tmp_path: Path, registry: Registry, fmt: str) -> None:
    from pyrt.images import transfer
    from pyrt.oci.manifest import parse_manifest

    img = build_image([{"one": b"1" * 3000}, {"two": os.urandom(30_000)}], oci=True)
    layout = write_oci_layout(tmp_path / "layout", img, "t")
    args = ["copy", "--dest-tls-verify=false"]
    args += ["--format", "v2s2" if fmt == "v2s2" else "oci"]
    if fmt == "oci-zstd":
        args += ["--dest-compress-format", "zstd", "--dest-compress"]
    skopeo(*args, f"oci:{layout}:t", f"docker://{registry.host}/sk/{fmt}:t")

    dst = _store(tmp_path / "d")
    pulled = transfer.pull(f"{registry.host}/sk/{fmt}:t", dst, client_factory=_client_factory())
    m = parse_manifest(pulled.manifest)
    assert m.media_type == pulled.manifest_media_type
    want_type = {
        "v2s2": "application/vnd.docker.distribution.manifest.v2+json",
        "oci": "application/vnd.oci.image.manifest.v1+json",
        "oci-zstd": "application/vnd.oci.image.manifest.v1+json",
    }[fmt]
    assert pulled.manifest_media_type == want_type
    insp = json.loads(skopeo("inspect", "--tls-verify=false",
                             f"docker://{registry.host}/sk/{fmt}:t").stdout)
    assert insp["Digest"] == pulled.manifest_digest
    assert [d.digest for d in pulled.layers] == insp["Layers"]
    if fmt == "oci-zstd":
        assert all(d.media_type.endswith("+zstd") for d in pulled.layers)
    else:
        assert [d.digest for d in pulled.layers] == img.layer_digests
    for d in (pulled.config, *pulled.layers):
        assert dst.exists(d.digest) and dst.info(d.digest) == d.size
    _assert_store_verified(tmp_path / "d")


# -- auth --------------------------------------------------------------------------------------


def test_basic_auth(tmp_path: Path, image: TestImage) -> None:
    from pyrt.images import auth, transfer
    from pyrt.images.registry import Unauthorized

    reg = Registry(tmp_path / "reg", htpasswd={"alice": "s3cret"})
    try:
        src = _store(tmp_path / "s")
        _stock(src, image)
        good = _client_factory(credentials_lookup=lambda h: ("alice", "s3cret"))
        transfer.push(f"{reg.host}/priv/app:1", src, image.digest, client_factory=good)
        dst = _store(tmp_path / "d")
        assert transfer.pull(f"{reg.host}/priv/app:1", dst,
                             client_factory=good).manifest_digest == image.digest

        bad = _client_factory(credentials_lookup=lambda h: ("alice", "wrong"))
        with pytest.raises(Unauthorized) as ei:
            transfer.pull(f"{reg.host}/priv/app:1", _store(tmp_path / "d2"), client_factory=bad)
        assert str(ei.value).startswith(
            f"unauthorized: authentication required for {reg.host}/priv/app")
        assert "'alice'" in str(ei.value)
        with pytest.raises(Unauthorized, match="no credentials"):
            transfer.pull(f"{reg.host}/priv/app:1", _store(tmp_path / "d3"),
                          client_factory=_client_factory())

        # login verifies, then writes config.json (0600) keeping other keys
        cfg = tmp_path / "docker" / "config.json"
        cfg.parent.mkdir()
        cfg.write_text(json.dumps({"auths": {}, "psFormat": "table"}))
        with pytest.raises(Unauthorized):
            auth.login(reg.host, "alice", "wrong", config_path=cfg)
        assert json.loads(cfg.read_text())["auths"] == {}
        assert auth.login(reg.host, "alice", "s3cret", config_path=cfg) == reg.host
        doc = json.loads(cfg.read_text())
        assert doc["psFormat"] == "table"
        assert doc["auths"][reg.host]["auth"] == "YWxpY2U6czNjcmV0"  # alice:s3cret
        assert (cfg.stat().st_mode & 0o777) == 0o600
        store = auth.CredentialStore(cfg)
        via_config = _client_factory(credentials_lookup=store.get)
        assert transfer.pull(f"{reg.host}/priv/app:1", _store(tmp_path / "d4"),
                             client_factory=via_config).manifest_digest == image.digest
        assert auth.logout(reg.host, config_path=cfg) is True
        assert auth.logout(reg.host, config_path=cfg) is False
        assert store.get(reg.host) is None
    finally:
        reg.stop()


def test_token_auth(tmp_path: Path, image: TestImage) -> None:
    from pyrt.images import auth, transfer
    from pyrt.images.registry import Unauthorized

    tok = TokenServer(tmp_path, {"bob": "pa55"})
    reg = None
    try:
        reg = Registry(tmp_path / "reg", token=tok)
        src = _store(tmp_path / "s")
        _stock(src, image)
        good = _client_factory(credentials_lookup=lambda h: ("bob", "pa55"))
        transfer.push(f"{reg.host}/tok/app:1", src, image.digest, client_factory=good)
        n_push_tokens = len(tok.requests)
        assert n_push_tokens >= 1
        assert all(r["service"] == tok.service and r["user"] == "bob" for r in tok.requests)
        assert any("repository:tok/app:pull,push" in r["scopes"] for r in tok.requests)
        # tokens are cached per scope: a 3-blob push does not fetch one per request
        assert n_push_tokens == 2  # "pull" for the HEADs, "pull,push" for the rest

        dst = _store(tmp_path / "d")
        pulled = transfer.pull(f"{reg.host}/tok/app:1", dst, client_factory=good)
        assert pulled.manifest_digest == image.digest
        _assert_store_verified(tmp_path / "d")

        with pytest.raises(Unauthorized, match=rf"authentication required for {reg.host}/tok"):
            transfer.pull(f"{reg.host}/tok/app:1", _store(tmp_path / "d2"),
                          client_factory=_client_factory(
                              credentials_lookup=lambda h: ("bob", "nope")))
        with pytest.raises(Unauthorized, match="no credentials"):
            transfer.pull(f"{reg.host}/tok/app:1", _store(tmp_path / "d3"),
                          client_factory=_client_factory())
        cfg = tmp_path / "cfg" / "config.json"
        assert auth.login(reg.host, "bob", "pa55", config_path=cfg) == reg.host
        with pytest.raises(Unauthorized):
            auth.login(reg.host, "bob", "nope", config_path=tmp_path / "cfg2" / "config.json")
        assert not (tmp_path / "cfg2" / "config.json").exists()
    finally:
        if reg is not None:
            reg.stop()
        tok.stop()


# -- faults ------------------------------------------------------------------------------------


def test_tampered_blob_fails_and_stores_nothing(
    tmp_path: Path, registry: Registry, image: TestImage
) -> None:
    from pyrt.errors import InvalidArgument
    from pyrt.images import transfer

    src = _store(tmp_path / "s")
    _stock(src, image)
    transfer.push(f"{registry.host}/t/app:1", src, image.digest, client_factory=_client_factory())
    victim = image.layer_digests[1]
    proxy = Proxy(registry.host, ProxyBehaviour(tamper_digest=victim))
    try:
        dst = _store(tmp_path / "d")
        with pytest.raises(InvalidArgument, match=victim):
            transfer.pull(f"{proxy.host}/t/app:1", dst, client_factory=_client_factory())
        assert not dst.exists(victim)
        assert not (tmp_path / "d" / "blobs" / "sha256" / victim.split(":")[1]).exists()
        # the bad bytes are not kept for a resume either (other blobs' partial ingests,
        # stopped when the pull failed, may stay: they are resumed next time)
        assert [s for s in dst.ingests() if victim in s.ref] == []
        assert not dst.exists(image.digest)  # nor the manifest of the failed pull
        _assert_store_verified(tmp_path / "d")
    finally:
        proxy.stop()


def test_connection_cut_mid_blob_resumes_with_range(
    tmp_path: Path, registry: Registry, image: TestImage
) -> None:
    from pyrt.images import transfer

    src = _store(tmp_path / "s")
    _stock(src, image)
    transfer.push(f"{registry.host}/c/app:1", src, image.digest, client_factory=_client_factory())
    big = image.layer_digests[1]
    beh = ProxyBehaviour(cut_once={big})
    proxy = Proxy(registry.host, beh)
    try:
        dst = _store(tmp_path / "d")
        transfer.pull(f"{proxy.host}/c/app:1", dst, client_factory=_client_factory())
        assert dst.read_bytes(big) == image.layers[1]
        ranges = [r for d, r in beh.blob_gets if d == big]
        assert ranges[0] is None and len(ranges) == 2
        assert ranges[1] is not None and ranges[1].startswith("bytes=")
        assert int(ranges[1][6:].rstrip("-")) > 0
    finally:
        proxy.stop()


def test_partial_ingest_restarts_when_server_ignores_range(
    tmp_path: Path, registry: Registry, image: TestImage
) -> None:
    from pyrt.images import transfer

    src = _store(tmp_path / "s")
    _stock(src, image)
    transfer.push(f"{registry.host}/r/app:1", src, image.digest, client_factory=_client_factory())
    big = image.layer_digests[1]
    dst = _store(tmp_path / "d")
    w = dst.writer(f"pull-{big}", big, len(image.layers[1]))
    w.write(image.layers[1][:1000])
    w.close()  # a partial ingest, as a killed pull leaves
    beh = ProxyBehaviour(ignore_range=True)
    proxy = Proxy(registry.host, beh)
    try:
        transfer.pull(f"{proxy.host}/r/app:1", dst, client_factory=_client_factory())
    finally:
        proxy.stop()
    assert dst.read_bytes(big) == image.layers[1]
    assert [r for d, r in beh.blob_gets if d == big] == ["bytes=1000-"]
    assert dst.ingests() == []


_PULL_SCRIPT = """
import sys
sys.path.append(sys.argv[3])  # after site-packages: an installed pyrt wins
from pyrt.content.store import ContentStore
from pyrt.images import transfer
from pyrt.images.registry import RegistryClient
transfer.pull(sys.argv[1], ContentStore(sys.argv[2]),
              client_factory=lambda d: RegistryClient(d))
"""


def test_pull_killed_mid_download_then_completes(
    tmp_path: Path, registry: Registry
) -> None:
    from pyrt.images import transfer

    img = build_image([{"small": b"s" * 100}, {"big": os.urandom(2_000_000)}])
    src = _store(tmp_path / "s")
    _stock(src, img)
    transfer.push(f"{registry.host}/k/app:1", src, img.digest, client_factory=_client_factory())
    big = img.layer_digests[1]
    slow = ProxyBehaviour(slow_bytes_per_sec=400_000)
    proxy = Proxy(registry.host, slow)
    root = tmp_path / "d"
    dst = _store(root)
    proc = subprocess.Popen(
        [sys.executable, "-c", _PULL_SCRIPT, f"{proxy.host}/k/app:1", str(root),
         str(REPO_ROOT)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        partial = 0
        while time.monotonic() < deadline and proc.poll() is None:
            sizes = [s.offset for s in dst.ingests() if big in s.ref]
            partial = max(sizes, default=0)
            if partial >= 200_000:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1].decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proxy.stop()
    assert partial >= 200_000
    assert not dst.exists(big)
    _assert_store_verified(root)  # nothing half-written is visible as a blob
    transfer.pull(f"{registry.host}/k/app:1", dst, client_factory=_client_factory())
    assert dst.read_bytes(big) == img.layers[1]
    assert dst.ingests() == []
    _assert_store_verified(root)
