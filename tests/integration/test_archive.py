"""Image archives and imports against the real image service (snapshots unpacked by the C
core) and real peers: skopeo, umoci and podman write archives that pyrt loads; pyrt's OCI
layouts are read by skopeo and umoci."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tests.bundle as bundle
from pyrt.content.store import ContentStore
from pyrt.errors import InvalidArgument, NotFound
from pyrt.images import archive, importer
from pyrt.images.service import ImageService
from pyrt.metadata.db import Database
from pyrt.snapshots.service import SnapshotService


@dataclass
class Env:
    root: Path
    store: ContentStore
    db: Database
    snapshots: SnapshotService
    images: ImageService

    def load(self, data: bytes) -> list[str]:
        return archive.load(io.BytesIO(data), store=self.store, service=self.images)

    def save(self, names: list[str], fmt: str) -> bytes:
        out = io.BytesIO()
        pairs = []
        for n in names:
            img = self.images.get(n)
            tags = [n] if ":" in n and not n.startswith("sha256:") else []
            pairs.append((img, tags))
        archive.save(pairs, out, fmt, store=self.store)
        return out.getvalue()

    def rootfs_of(self, name: str) -> Path:
        img = self.images.get(name)
        top = img.top_chain_id
        assert top is not None
        return self.snapshots.fs_path(top)


@contextlib.contextmanager
def _env(root: Path) -> Iterator[Env]:
    root.mkdir(parents=True)
    store = ContentStore(root / "content")
    db = Database(root / "metadata.db")
    try:
        snaps = SnapshotService(root, db)
        yield Env(root, store, db, snaps, ImageService(root, store=store, db=db,
                                                       snapshots=snaps))
    finally:
        db.close()


@pytest.fixture
def env_a(tmp_path: Path) -> Iterator[Env]:
    with _env(tmp_path / "a") as e:
        yield e


@pytest.fixture
def env_b(tmp_path: Path) -> Iterator[Env]:
    with _env(tmp_path / "b") as e:
        yield e


@pytest.fixture(scope="module")
def rootfs_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox root filesystem as a plain tar (made with tarfile, numeric owners)."""
    if not bundle.BUSYBOX.is_file():
        pytest.skip(f"{bundle.BUSYBOX} missing: apt-get install busybox-static")
    base = tmp_path_factory.mktemp("rootfs-tar")
    rootfs = bundle.make_busybox_rootfs(base / "rootfs")
    out = base / "rootfs.tar"
    with tarfile.open(out, "w") as tf:
        for p in sorted(rootfs.iterdir()):
            tf.add(p, arcname=p.name)
    return out


CHANGES = ['CMD ["/bin/sh", "-c", "echo from-image"]', "ENV GREETING=hi", "WORKDIR /srv",
           "EXPOSE 8080/tcp", "LABEL org.example.kind=test", "USER nobody"]


def _import(env: Env, rootfs_tar: Path, ref: str | None = "archive-test:1") -> str:
    return importer.import_rootfs(rootfs_tar, store=env.store, service=env.images,
                                  changes=CHANGES, reference=ref, message="")


def _extract(data: bytes, dest: Path) -> Path:
    """Unpack a saved archive for the peers (our own output: every member is plain)."""
    dest.mkdir()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        tf.extractall(dest, filter="data")
    return dest


def _run(*args: str) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc.stdout


# -- import ----------------------------------------------------------------------------------


def test_import_with_changes(env_a: Env, rootfs_tar: Path) -> None:
    image_id = _import(env_a, rootfs_tar)
    img = env_a.images.get("archive-test:1")
    assert img.id == image_id
    info = env_a.images.inspect("archive-test:1")
    cfg = info["Config"]
    assert cfg["Cmd"] == ["/bin/sh", "-c", "echo from-image"]
    assert cfg["Env"] == ["GREETING=hi"]
    assert cfg["WorkingDir"] == "/srv"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}}
    assert cfg["Labels"] == {"org.example.kind": "test"}
    assert cfg["User"] == "nobody"
    assert (env_a.rootfs_of("archive-test:1") / "bin" / "busybox").is_file()
    hist = env_a.images.history("archive-test:1")
    assert hist[0]["Comment"] == f"Imported from {rootfs_tar}"


def test_import_bad_change_registers_nothing(env_a: Env, rootfs_tar: Path) -> None:
    with pytest.raises(InvalidArgument, match="unsupported change instruction COPY"):
        importer.import_rootfs(rootfs_tar, store=env_a.store, service=env_a.images,
                               changes=["COPY . /"], reference="bad:1")
    assert env_a.images.list() == []
    with pytest.raises(NotFound):
        env_a.images.get("bad:1")


# -- save / load -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_save_load_round_trip(env_a: Env, env_b: Env, rootfs_tar: Path, fmt: str) -> None:
    image_id = _import(env_a, rootfs_tar)
    env_a.images.tag("archive-test:1", "example.com/team/app:v2")
    data = env_a.save(["archive-test:1", "example.com/team/app:v2"], fmt)
    assert env_b.load(data) == ["archive-test:1", "example.com/team/app:v2"]
    img = env_b.images.get("archive-test:1")
    assert img.id == image_id
    assert env_b.images.get("example.com/team/app:v2").id == image_id
    assert sorted(img.familiar_tags()) == ["archive-test:1", "example.com/team/app:v2"]
    assert env_b.images.inspect("archive-test:1")["Config"]["Env"] == ["GREETING=hi"]
    busybox = env_b.rootfs_of("archive-test:1") / "bin" / "busybox"
    assert busybox.read_bytes() == bundle.BUSYBOX.read_bytes()
    # loading again changes nothing and is allowed
    assert env_b.load(data) == ["archive-test:1", "example.com/team/app:v2"]
    assert len(env_b.images.list()) == 1


def test_tampered_archive_registers_nothing(env_a: Env, env_b: Env, rootfs_tar: Path) -> None:
    _import(env_a, rootfs_tar)
    data = env_a.save(["archive-test:1"], "docker")
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, \
            tarfile.open(fileobj=out, mode="w") as dst:
        manifest = json.loads((src.extractfile("manifest.json") or io.BytesIO()).read())
        layer = manifest[0]["Layers"][0]
        for m in src.getmembers():
            f = src.extractfile(m) if m.isreg() else None
            content = f.read() if f else b""
            if m.name == layer:
                content = content.replace(b"nobody", b"NOBODY")  # /etc/passwd inside
                assert f is not None
            dst.addfile(m, io.BytesIO(content) if m.isreg() else None)
    digest = "sha256:" + layer.rsplit("/", 1)[1]
    with pytest.raises(InvalidArgument, match=digest):
        env_b.load(out.getvalue())
    assert env_b.images.list(all=True) == []
    assert not any(env_b.snapshots.dir.glob("[0-9a-f]*"))


# -- peers -----------------------------------------------------------------------------------


def _umoci_layout(tmp_path: Path) -> Path:
    """An OCI layout made by umoci: tag "src", busybox as /bin/busybox and /bin/sh."""
    if not shutil.which("umoci") or not bundle.BUSYBOX.is_file():
        pytest.skip("umoci or busybox missing")
    layout = tmp_path / "layout"
    work = tmp_path / "umoci-bundle"
    _run("umoci", "init", "--layout", str(layout))
    _run("umoci", "new", "--image", f"{layout}:src")
    _run("umoci", "unpack", "--image", f"{layout}:src", str(work))
    (work / "rootfs" / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(bundle.BUSYBOX, work / "rootfs" / "bin" / "busybox")
    (work / "rootfs" / "bin" / "sh").symlink_to("busybox")
    _run("umoci", "repack", "--image", f"{layout}:src", str(work))
    _run("umoci", "config", "--image", f"{layout}:src", "--config.cmd", "/bin/sh")
    return layout


def test_load_skopeo_docker_archive(env_b: Env, tmp_path: Path) -> None:
    if not shutil.which("skopeo"):
        pytest.skip("skopeo missing")
    layout = _umoci_layout(tmp_path)
    tar = tmp_path / "skopeo.tar"
    _run("skopeo", "copy", "-q", f"oci:{layout}:src", f"docker-archive:{tar}:skopeo/test:v1")
    assert env_b.load(tar.read_bytes()) == ["skopeo/test:v1"]
    img = env_b.images.get("skopeo/test:v1")
    assert img.config.config.cmd == ("/bin/sh",)
    fs = env_b.rootfs_of("skopeo/test:v1")
    assert (fs / "bin" / "busybox").read_bytes() == bundle.BUSYBOX.read_bytes()
    # the OCI layout umoci wrote loads as well (umoci's ref name "src" is a bare tag)
    layout_tar = io.BytesIO()
    with tarfile.open(fileobj=layout_tar, mode="w") as tf:
        for p in sorted(layout.iterdir()):
            tf.add(p, arcname=p.name)
    loaded = env_b.load(layout_tar.getvalue())
    assert len(loaded) == 1 and loaded[0].startswith("sha256:")
    assert env_b.images.get(loaded[0]).diff_ids == img.diff_ids


def test_load_podman_save(env_b: Env, tmp_path: Path) -> None:
    if not shutil.which("podman") or not shutil.which("skopeo"):
        pytest.skip("podman or skopeo missing")
    layout = _umoci_layout(tmp_path)
    src = tmp_path / "src.tar"
    _run("skopeo", "copy", "-q", f"oci:{layout}:src", f"docker-archive:{src}:podman/src:v1")
    runroot = tempfile.mkdtemp(prefix="pyrt-pd-")  # podman wants at most 50 characters
    try:
        podman = ["podman", "--root", str(tmp_path / "proot"), "--runroot", runroot,
                  "--storage-driver", "vfs", "--events-backend", "file"]
        out = tmp_path / "podman.tar"
        _run(*podman, "load", "-q", "-i", str(src))
        _run(*podman, "tag", "podman/src:v1", "podman/test:v2")
        _run(*podman, "save", "--format", "docker-archive", "-o", str(out), "podman/test:v2")
    finally:
        shutil.rmtree(runroot, ignore_errors=True)
    loaded = env_b.load(out.read_bytes())
    assert loaded == ["podman/test:v2"] or loaded == ["localhost/podman/test:v2"]
    fs = env_b.rootfs_of(loaded[0])
    assert (fs / "bin" / "busybox").read_bytes() == bundle.BUSYBOX.read_bytes()


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_saved_layout_read_by_skopeo_and_umoci(env_a: Env, rootfs_tar: Path,
                                               tmp_path: Path, fmt: str) -> None:
    if not shutil.which("skopeo") or not shutil.which("umoci"):
        pytest.skip("skopeo or umoci missing")
    image_id = _import(env_a, rootfs_tar)
    layout = _extract(env_a.save(["archive-test:1"], fmt), tmp_path / "out")
    info = json.loads(_run("skopeo", "inspect", f"oci:{layout}:1"))
    assert info["Layers"] and info["Env"] == ["GREETING=hi"]
    cfg = json.loads(_run("skopeo", "inspect", "--config", f"oci:{layout}:1"))
    assert cfg["config"]["Cmd"] == ["/bin/sh", "-c", "echo from-image"]
    assert _run("umoci", "ls", "--layout", str(layout)).split() == ["1"]
    # the unpacked image has our files (umoci verifies every digest on the way)
    unpacked = tmp_path / "unpacked"
    _run("umoci", "unpack", "--image", f"{layout}:1", str(unpacked))
    assert (unpacked / "rootfs" / "bin" / "busybox").read_bytes() == \
        bundle.BUSYBOX.read_bytes()
    if fmt == "docker":
        raw = json.loads(_run("skopeo", "inspect", "--raw", "--config",
                              f"docker-archive:{_save_file(env_a, tmp_path)}"))
        assert raw["rootfs"]["diff_ids"] == env_a.images.get(image_id).diff_ids


def _save_file(env: Env, tmp_path: Path) -> Path:
    p = tmp_path / "saved-docker.tar"
    p.write_bytes(env.save(["archive-test:1"], "docker"))
    return p
