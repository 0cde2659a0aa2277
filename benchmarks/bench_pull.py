"""Image pull, download only: pyrt's registry client vs skopeo, from a local registry.

Claim measured: how long pyrt takes to pull a 3-layer image (manifest, config, layers
downloaded in parallel, each verified by digest and committed into an empty content
store) compared with `skopeo copy docker://... dir:...` (download only, digests checked
too), from the same docker-registry on 127.0.0.1, in the same run.

The image (3 gzip layers of about 50 MB each; --quick: about 1 MB each) is made once from
seeded pseudo-random data, half random and half repeated text so it compresses like real
files, and cached as an OCI layout under /var/tmp/pyrt-bench/. skopeo pushes it to a
fresh registry; then each tool pulls it `--runs` times into a fresh destination, in
alternation. The table reports the median and each tool's time divided by pyrt's peer.

    python benchmarks/bench_pull.py [--quick] [--runs N] [--parallel N]
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # appended: the installed pyrt wins over the source tree

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


def time_pyrt(host: str, dest: Path, parallel: int, img: TestImage) -> float:
    from pyrt.content.store import ContentStore
    from pyrt.images import transfer
    from pyrt.images.registry import RegistryClient

    store = ContentStore(dest)
    t0 = time.perf_counter()
    res = transfer.pull(f"{host}/bench/img:1", store, max_parallel=parallel,
                        client_factory=lambda d: RegistryClient(d))
    elapsed = time.perf_counter() - t0
    if res.manifest_digest != img.digest or not all(store.exists(d) for d in img.blobs()):
        raise SystemExit("bench_pull: pyrt pulled something else")
    return elapsed


def time_skopeo(host: str, dest: Path, img: TestImage) -> float:
    t0 = time.perf_counter()
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{host}/bench/img:1",
           f"dir:{dest}")
    elapsed = time.perf_counter() - t0
    got = hashlib.sha256((dest / "manifest.json").read_bytes()).hexdigest()
    if f"sha256:{got}" != img.digest:
        raise SystemExit("bench_pull: skopeo pulled something else")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tiny image, one run")
    ap.add_argument("--runs", type=int, default=None, help="pulls per tool (default 3)")
    ap.add_argument("--parallel", type=int, default=3, help="pyrt's max_parallel")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    for need in (REGISTRY_BIN, Path(SKOPEO)):
        if not Path(need).exists():
            print(f"bench_pull: {need} missing (apt-get install docker-registry skopeo)",
                  file=sys.stderr)
            return 1
    CACHE.mkdir(parents=True, exist_ok=True)
    layout, img = build_image(args.quick)
    total = sum(len(x) for x in img.layers) + len(img.config)
    work = Path(tempfile.mkdtemp(prefix="pyrt-bench-pull-", dir="/var/tmp"))
    reg = None
    try:
        reg = Registry(work / "registry")
        skopeo("copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:bench",
               f"docker://{reg.host}/bench/img:1", timeout=900)
        times: dict[str, list[float]] = {"pyrt": [], "skopeo": []}
        for i in range(runs):
            times["pyrt"].append(time_pyrt(reg.host, work / f"pyrt-{i}", args.parallel, img))
            shutil.rmtree(work / f"pyrt-{i}")
            times["skopeo"].append(time_skopeo(reg.host, work / f"skopeo-{i}", img))
            shutil.rmtree(work / f"skopeo-{i}")
    finally:
        if reg is not None:
            reg.stop()
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    mb = total / 1e6
    print(f"\nimage: 3 layers, {mb:.1f} MB compressed; {runs} run(s) per tool; "
          f"pyrt max_parallel={args.parallel}; registry on 127.0.0.1 (plain HTTP)")
    print(f"{'tool':<10} {'median s':>9} {'MB/s':>8} {'pyrt ÷ tool':>12}  runs")
    for tool, t in med.items():
        ratio = med["pyrt"] / t
        runs_text = " ".join(f"{x:.3f}" for x in times[tool])
        print(f"{tool:<10} {t:>9.3f} {mb / t:>8.1f} {ratio:>12.2f}  {runs_text}")
    print(json.dumps({"bench": "pull", "mb": round(mb, 1), "runs": runs,
                      "median_s": {k: round(v, 4) for k, v in med.items()},
                      "python": sys.version.split()[0], "cpus": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
