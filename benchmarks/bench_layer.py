"""Layer throughput: pyrt's C core against the standard tools on the same input.

1. unpack: `_core.unpack_layer` (gzip inflate on a reader thread, blob digest + diff id in
   the same pass, safe extraction) vs `tar -xzf` (GNU tar + gzip, no digests) of the same
   gzip layer into fresh directories.
2. sha256: `_core.sha256_file` vs `sha256sum` of the same file.

Inputs are built once and cached under /var/tmp/pyrt-bench/: a gzip tar of
/usr/lib/python3.11, /usr/share/doc and /usr/lib/gcc (a few hundred MB uncompressed, many
small files and some large ones) and a 1 GiB file of random bytes. `--quick` uses a small
layer (a tar of /usr/share/doc's first MBs) and a 64 MiB file, so CI runs it in seconds.
Page cache is warm for every tool (one untimed warm-up each); each round extracts into a
new directory, removed outside the timing. Ratio = pyrt ÷ peer: below 1 means pyrt is faster.
Needs root (tar -x as root restores ownership, as pyrt does).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pyrt import _core

CACHE = Path("/var/tmp/pyrt-bench")
FULL_SOURCES = ["usr/lib/python3.11", "usr/share/doc", "usr/lib/gcc"]
QUICK_SOURCES = ["usr/share/doc"]


def build_layer(path: Path, sources: list[str], limit_mb: int | None) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    srcs = [s for s in sources if Path("/", s).exists()]
    if not srcs:
        raise SystemExit(f"bench_layer: none of {sources} exists to build a layer from")
    if limit_mb is None:
        cmd = f"tar -C / -cf - {' '.join(srcs)} | gzip -6 > {tmp}"
    else:
        # a small layer: the first files of the sources, up to limit_mb
        listing = subprocess.run(
            ["find", *srcs, "-type", "f"], cwd="/", capture_output=True, text=True, check=True
        ).stdout.split("\n")
        chosen, total = [], 0
        for rel in listing:
            if not rel:
                continue
            total += os.lstat("/" + rel).st_size
            chosen.append(rel)
            if total > limit_mb << 20:
                break
        lst = path.with_suffix(".list")
        lst.write_text("\n".join(chosen) + "\n")
        cmd = f"tar -C / -cf - -T {lst} | gzip -6 > {tmp}"
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True)
    tmp.rename(path)


def build_random(path: Path, size_mb: int) -> None:
    if path.exists() and path.stat().st_size == size_mb << 20:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(1 << 20))
    tmp.rename(path)


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_time(rounds: int, setup: Callable[[], None], run: Callable[[], None]) -> float:
    times = []
    for i in range(rounds + 1):
        setup()
        t = timed(run)
        if i > 0:  # the first run is the warm-up
            times.append(t)
    return statistics.median(times)


def bench_unpack(blob: Path, work: Path, rounds: int) -> tuple[float, float, dict[str, object]]:
    dest = work / "dest"
    info: dict[str, object] = {}

    def fresh() -> None:
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        subprocess.run(["sync"], check=True)

    def pyrt_unpack() -> None:
        fd = os.open(blob, os.O_RDONLY)
        try:
            info.update(_core.unpack_layer(fd, str(dest)))
        finally:
            os.close(fd)

    def tar_unpack() -> None:
        subprocess.run(["tar", "-xzf", str(blob), "-C", str(dest)], check=True)

    t_tar = median_time(rounds, fresh, tar_unpack)
    t_pyrt = median_time(rounds, fresh, pyrt_unpack)
    shutil.rmtree(dest)
    return t_pyrt, t_tar, info


def bench_sha(path: Path, rounds: int) -> tuple[float, float]:
    expected = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0]
    got = _core.sha256_file(str(path))
    if got != "sha256:" + expected:
        raise SystemExit(f"bench_layer: sha256 disagrees: {got} vs {expected}")

    def nothing() -> None:
        pass

    t_peer = median_time(
        rounds, nothing,
        lambda: subprocess.run(["sha256sum", str(path)], capture_output=True, check=True) and None,
    )
    t_pyrt = median_time(rounds, nothing, lambda: _core.sha256_file(str(path)) and None)
    return t_pyrt, t_peer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small inputs, 2 rounds (CI)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_layer: needs root (tar -x restores ownership as root)", file=sys.stderr)
        return 1
    rounds = args.rounds or (2 if args.quick else 5)
    if args.quick:
        blob, rnd = CACHE / "layer-quick.tar.gz", CACHE / "random-64M.bin"
        build_layer(blob, QUICK_SOURCES, limit_mb=16)
        build_random(rnd, 64)
    else:
        blob, rnd = CACHE / "layer-full.tar.gz", CACHE / "random-1G.bin"
        build_layer(blob, FULL_SOURCES, limit_mb=None)
        build_random(rnd, 1024)
    work = CACHE / f"work-{os.getpid()}"
    try:
        t_pyrt, t_tar, info = bench_unpack(blob, work, rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    s_pyrt, s_peer = bench_sha(rnd, rounds)

    diff_mb = int(str(info["diff_size"])) / 1e6
    blob_mb = blob.stat().st_size / 1e6
    rnd_mb = rnd.stat().st_size / 1e6
    print(f"layer: {blob} ({blob_mb:.0f} MB gzip, {diff_mb:.0f} MB tar, "
          f"{info['entries']} entries); sha256 input: {rnd_mb:.0f} MB; median of {rounds}")
    print()
    print("| operation | pyrt | peer | peer time | pyrt ÷ peer |")
    print("| --- | ---: | --- | ---: | ---: |")
    print(f"| unpack gzip layer (+ blob digest + diff id) | {t_pyrt:.3f} s | tar -xzf "
          f"| {t_tar:.3f} s | {t_pyrt / t_tar:.2f} |")
    print(f"| sha256 of a file | {s_pyrt:.3f} s | sha256sum | {s_peer:.3f} s "
          f"| {s_pyrt / s_peer:.2f} |")
    print()
    print(f"unpack throughput: {diff_mb / t_pyrt:.0f} MB/s of tar (pyrt), "
          f"{diff_mb / t_tar:.0f} MB/s (tar); sha256: {rnd_mb / s_pyrt:.0f} MB/s (pyrt), "
          f"{rnd_mb / s_peer:.0f} MB/s (sha256sum)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
