"""Image pull from a local registry: pyrt vs skopeo (download only), docker and podman (full).

Claims measured, in the same run, from the same docker-registry on 127.0.0.1:
- download only: pyrt's registry client (`transfer.pull`: manifest, config and layers
  downloaded in parallel, each verified by digest and committed into an empty content
  store) vs `skopeo copy docker://... dir:...` (digests checked too). Target: pyrt at most
  1.5x skopeo.
- full pull (download + unpack into layer snapshots, image recorded): pyrt's
  `ImageService.pull` into a fresh engine root (content store, snapshots, SQLite) vs
  `docker pull` (Debian's docker.io: a private dockerd with its own containerd, data root,
  exec root and socket, started for the run and stopped after it) and `podman pull` (a
  fresh --root/--runroot per pull). Target: pyrt at most 0.33x docker.

The image (3 gzip layers of about 50 MB each; --quick: about 1 MB each) is made once from
seeded pseudo-random data, half random and half repeated text so it compresses like real
files, and cached as an OCI layout under /var/tmp/pyrt-bench/. skopeo pushes it to a
fresh registry; then each tool pulls it `--runs` times into a fresh destination (docker:
the image is removed between pulls, and each pull must report all 3 layers downloaded),
the tools in alternation. The table gives the median and pyrt's time divided by the
tool's (below 1: pyrt is faster); pyrt's download-only row is the peer of skopeo's, its
full-pull row the peer of docker's and podman's.

    python benchmarks/bench_pull.py [--quick] [--runs N] [--parallel N] [--tools LIST]

--quick: the small image, one run, and peers that are not installed are skipped (the
output says so); without it a missing peer is an error. Nothing is left behind: the
registry, dockerd and its containerd are stopped, mounts under the work dir unmounted.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # appended: the installed pyrt wins over the source tree

from peers import DOCKER_CLI, DOCKERD, PODMAN, PrivateDockerd, processes_named  # noqa: E402
from peers import run as _run  # noqa: E402
from peers import unmount_all as _unmount_all  # noqa: E402

from tests.registry_fixtures import (  # noqa: E402
    REGISTRY_BIN,
    SKOPEO,
    Registry,
    TestImage,
    sha256,
    skopeo,
    write_oci_layout,
)

CACHE = Path("/var/tmp/pyrt-bench")


def _layer_bytes(seed: int, target: int) -> bytes:
    """A tar of files, about `target` bytes once gzip'd: half random, half repetitive."""
    rng = random.Random(seed)
    words = [f"w{rng.randrange(10_000)}" for _ in range(2000)]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        total, i = 0, 0
        while total < target:
            size = rng.randrange(64 * 1024, 4 * 1024 * 1024)
            half = size // 2
            text = " ".join(rng.choice(words) for _ in range(half // 5)).encode()[:half]
            data = rng.randbytes(half) + text
            ti = tarfile.TarInfo(f"data/{seed}/f{i:05d}.bin")
            ti.size, ti.mtime, ti.mode = len(data), 1_700_000_000, 0o644
            tf.addfile(ti, io.BytesIO(data))
            total += half + len(text) // 4  # text compresses to about a quarter
            i += 1
    return raw.getvalue()


def build_image(quick: bool) -> tuple[Path, TestImage]:
    # `target` is a rough estimate: these give about 1.5 MB and 50 MB of gzip per layer
    per_layer = 512 << 10 if quick else 40 << 20
    layout = CACHE / ("pull-quick-v2" if quick else "pull-150m-v2")
    meta = layout / "pyrt-bench.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        blobs = layout / "blobs" / "sha256"
        manifest = (blobs / info["manifest"].split(":")[1]).read_bytes()
        m = json.loads(manifest)
        img = TestImage(
            (blobs / m["config"]["digest"].split(":")[1]).read_bytes(),
            [(blobs / d["digest"].split(":")[1]).read_bytes() for d in m["layers"]],
            manifest, m["mediaType"],
        )
        return layout, img
    print(f"building the benchmark image under {layout} (once)...", flush=True)
    shutil.rmtree(layout, ignore_errors=True)
    layers, diff_ids = [], []
    for n in range(3):
        tar = _layer_bytes(n + (100 if quick else 0), per_layer)
        diff_ids.append(sha256(tar))
        layers.append(gzip.compress(tar, compresslevel=1, mtime=0))
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(x), "size": len(x)} for x in layers],
    }).encode()
    img = TestImage(config, layers, manifest, "application/vnd.oci.image.manifest.v1+json")
    write_oci_layout(layout, img, "bench")
    meta.write_text(json.dumps({"manifest": img.digest}))
    return layout, img


REF_PATH = "bench/img:1"


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"bench_pull: {what}")


# -- pyrt -------------------------------------------------------------------------------------


def time_pyrt_download(host: str, dest: Path, parallel: int, img: TestImage) -> float:
    from pyrt.content.store import ContentStore
    from pyrt.images import transfer
    from pyrt.images.registry import RegistryClient

    store = ContentStore(dest)
    t0 = time.perf_counter()
    res = transfer.pull(f"{host}/{REF_PATH}", store, max_parallel=parallel,
                        client_factory=lambda d: RegistryClient(d))
    elapsed = time.perf_counter() - t0
    _check(res.manifest_digest == img.digest and all(store.exists(d) for d in img.blobs()),
           "pyrt downloaded something else")
    return elapsed


def time_pyrt_full(host: str, root: Path, parallel: int, img: TestImage) -> float:
    """ImageService.pull into a fresh engine root, as the engine builds it."""
    from pyrt.content.store import ContentStore
    from pyrt.images.registry import RegistryClient
    from pyrt.images.service import ImageService
    from pyrt.metadata.db import Database
    from pyrt.snapshots.service import SnapshotService

    db = Database(root / "meta.db")
    try:
        store = ContentStore(root / "content")
        snapshots = SnapshotService(root, db)
        images = ImageService(root, store=store, db=db, snapshots=snapshots,
                              client_factory=lambda d: RegistryClient(d))
        t0 = time.perf_counter()
        pulled = images.pull(f"{host}/{REF_PATH}", max_parallel=parallel)
        elapsed = time.perf_counter() - t0
        _check(pulled.id == img.config_digest and pulled.downloaded, "pyrt pulled something else")
        chain = snapshots.chain(pulled.top_chain_id or "")
        _check(len(chain) == 3 and all(s.path.is_dir() for s in chain),
               "pyrt's pull did not unpack 3 layers")
    finally:
        db.close()
    return elapsed


# -- skopeo -----------------------------------------------------------------------------------


def time_skopeo(host: str, dest: Path, img: TestImage) -> float:
    t0 = time.perf_counter()
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{host}/{REF_PATH}",
           f"dir:{dest}")
    elapsed = time.perf_counter() - t0
    got = hashlib.sha256((dest / "manifest.json").read_bytes()).hexdigest()
    _check(f"sha256:{got}" == img.digest, "skopeo pulled something else")
    return elapsed


# -- docker -----------------------------------------------------------------------------------


def time_docker_pull(dockerd: PrivateDockerd, ref: str, img: TestImage) -> float:
    t0 = time.perf_counter()
    out = dockerd.docker("pull", ref)
    elapsed = time.perf_counter() - t0
    _check(out.count("Pull complete") == 3 and "Already exists" not in out,
           f"docker pull did not download all 3 layers:\n{out}")
    got = dockerd.docker("image", "inspect", "--format", "{{.Id}}", ref).strip()
    _check(got == img.config_digest, f"docker pulled {got}, expected {img.config_digest}")
    dockerd.docker("rmi", ref)
    return elapsed


# -- podman -----------------------------------------------------------------------------------


def time_podman(ref: str, work: Path, img: TestImage) -> float:
    base = [str(PODMAN), "--root", str(work / "root"), "--runroot", str(work / "runroot"),
            "--tmpdir", str(work / "tmp"), "--storage-driver", "overlay",
            "--events-backend", "none", "--cgroup-manager", "cgroupfs"]
    try:
        t0 = time.perf_counter()
        _run([*base, "pull", "-q", "--tls-verify=false", ref], "podman pull")
        elapsed = time.perf_counter() - t0
        got = _run([*base, "image", "inspect", "--format", "{{.Id}}", ref],
                   "podman image inspect").strip()
        _check(got == img.config_digest.split(":")[1],
               f"podman pulled {got}, expected {img.config_digest}")
        _run([*base, "rmi", "-f", ref], "podman rmi")
    finally:
        _unmount_all(work)
    return elapsed


# -- main -------------------------------------------------------------------------------------

TOOLS = ("pyrt-download", "skopeo", "pyrt-pull", "docker", "podman")
WHAT = {
    "pyrt-download": "download only: transfer.pull into a content store",
    "skopeo": "download only: skopeo copy docker:// dir:",
    "pyrt-pull": "full pull: ImageService.pull (download, unpack, record)",
    "docker": "full pull: docker pull (private dockerd)",
    "podman": "full pull: podman pull (fresh --root)",
}
PEER_OF = {"pyrt-download": "pyrt-download", "skopeo": "pyrt-download",
           "pyrt-pull": "pyrt-pull", "docker": "pyrt-pull", "podman": "pyrt-pull"}
TARGETS = {"skopeo": 1.5, "docker": 0.33}  # pyrt ÷ tool at most this


def _missing(tool: str) -> str | None:
    need = {"skopeo": [Path(SKOPEO)], "docker": [DOCKERD, DOCKER_CLI],
            "podman": [PODMAN]}.get(tool, [])
    for p in need:
        if not p.exists():
            pkg = {"skopeo": "skopeo", "docker": "docker.io", "podman": "podman"}[tool]
            return f"{p} not installed (apt-get install {pkg})"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="a tiny image, one run; skip peers that are not installed")
    ap.add_argument("--runs", type=int, default=None, help="pulls per tool (default 3)")
    ap.add_argument("--parallel", type=int, default=3, help="pyrt's max_parallel")
    ap.add_argument("--tools", default=",".join(TOOLS),
                    help=f"comma-separated subset of {','.join(TOOLS)}")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    bad = [t for t in tools if t not in TOOLS]
    if bad or runs < 1:
        print(f"bench_pull: unknown tools {bad} (known: {', '.join(TOOLS)})" if bad
              else "bench_pull: --runs must be >= 1", file=sys.stderr)
        return 2
    if not REGISTRY_BIN.exists() or not Path(SKOPEO).exists():
        print(f"bench_pull: {REGISTRY_BIN} and skopeo are needed to serve the image "
              "(apt-get install docker-registry skopeo)", file=sys.stderr)
        return 1
    skipped: dict[str, str] = {}
    for t in tools:
        why = _missing(t)
        if why is not None:
            if not args.quick:
                print(f"bench_pull: {t}: {why}; --quick skips missing peers", file=sys.stderr)
                return 1
            skipped[t] = why
    tools = [t for t in tools if t not in skipped]
    for t, why in skipped.items():
        print(f"bench_pull: skipped {t}: {why}", flush=True)

    CACHE.mkdir(parents=True, exist_ok=True)
    layout, img = build_image(args.quick)
    total = sum(len(x) for x in img.layers) + len(img.config)
    work = Path(tempfile.mkdtemp(prefix="pyrt-bench-pull-", dir="/var/tmp"))
    reg: Registry | None = None
    dockerd: PrivateDockerd | None = None
    times: dict[str, list[float]] = {t: [] for t in tools}
    versions: dict[str, str] = {}
    try:
        reg = Registry(work / "registry")
        skopeo("copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:bench",
               f"docker://{reg.host}/{REF_PATH}", timeout=900)
        ref = f"{reg.host}/{REF_PATH}"
        if "docker" in tools:
            for pid in processes_named("dockerd"):
                print(f"bench_pull: note: a dockerd this benchmark did not start runs (pid "
                      f"{pid}); it is left alone (ours has its own socket, roots and "
                      "containerd)", flush=True)
            dockerd = PrivateDockerd(work / "docker", registry=reg.host)
            versions["docker"] = f"dockerd {dockerd.version}, {dockerd.driver}"
        if "podman" in tools:
            versions["podman"] = _run([str(PODMAN), "--version"], "podman --version").strip()
        if "skopeo" in tools:
            versions["skopeo"] = skopeo("--version").stdout.strip()
        host = reg.host

        def time_docker(dest: Path) -> float:
            if dockerd is None:
                raise RuntimeError("bench_pull: dockerd was not started")
            return time_docker_pull(dockerd, ref, img)

        runners: dict[str, Callable[[Path], float]] = {
            "pyrt-download": lambda d: time_pyrt_download(host, d, args.parallel, img),
            "skopeo": lambda d: time_skopeo(host, d, img),
            "pyrt-pull": lambda d: time_pyrt_full(host, d, args.parallel, img),
            "docker": time_docker,
            "podman": lambda d: time_podman(ref, d, img),
        }
        for i in range(runs):
            for t in tools:
                dest = work / f"{t}-{i}"
                times[t].append(runners[t](dest))
                if dest.exists():
                    _unmount_all(dest)
                    shutil.rmtree(dest)
                print(f"  run {i + 1}/{runs} {t}: {times[t][-1]:.3f} s", flush=True)
    finally:
        if dockerd is not None:
            dockerd.stop()
        if reg is not None:
            reg.stop()
        _unmount_all(work)
        shutil.rmtree(work, ignore_errors=True)

    med = {t: statistics.median(v) for t, v in times.items()}
    mb = total / 1e6
    print(f"\nimage: 3 gzip layers, {mb:.1f} MB compressed; {runs} run(s) per tool; pyrt "
          f"max_parallel={args.parallel}; docker-registry on 127.0.0.1 (plain HTTP); "
          f"{os.cpu_count()} CPUs")
    for t, v in versions.items():
        print(f"  {t}: {v}")
    print()
    print("| tool | what it does | median s | pyrt ÷ tool |")
    print("| --- | --- | ---: | ---: |")
    for t in tools:
        peer = PEER_OF[t]
        ratio = f"{med[peer] / med[t]:.2f}" if peer in med else "-"
        print(f"| {t} | {WHAT[t]} | {med[t]:.3f} | {ratio} |")
    for t in skipped:
        print(f"| {t} | {WHAT[t]} | skipped | - |")
    print()
    for t, limit in TARGETS.items():
        peer = PEER_OF[t]
        if t in med and peer in med:
            r = med[peer] / med[t]
            print(f"target: {peer} ≤ {limit}× {t}: {r:.3f}× — {'met' if r <= limit else 'MISSED'}")
    print(json.dumps({"bench": "pull", "mb": round(mb, 1), "runs": runs,
                      "median_s": {k: round(v, 4) for k, v in med.items()},
                      "all_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
                      "skipped": skipped, "python": sys.version.split()[0],
                      "cpus": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
