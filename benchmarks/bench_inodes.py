"""New inodes per container: pyrt.run(remove=True) of /bin/true against `crun run`.

Why it matters (benchmarks/README.md, engine run): on a journal-less ext4 every new inode
scans past the inodes freed in the last seconds of its block group, so the files a
container makes and removes cost CPU that grows with the churn of the containers before
it. The count is free of the noise that timings on a shared machine have.

Counted: the kernel's ext4:ext4_allocate_inode events of one process tree (perf stat
without -a: this process's children, the engine's shims, the runtimes and the kernel's
work done for them, overlayfs's included), for N containers one after the other less the
same setup with none (bench_engine_run.py's setup: a busybox image in an Engine on a
temporary root, the peers' bundles from the engine's spec). Needs perf and root.

    python benchmarks/bench_inodes.py [--count N | --quick] [--tools pyrt,crun]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import bench_engine_run as B  # sys.path: this directory (python puts it first)
from bench_runtime import HugetlbV1, remove_cgroup

from tests.bundle import make_busybox_rootfs, random_suffix

EVENT = "ext4:ext4_allocate_inode"


def child(tool: str, count: int) -> None:
    """The setup, then `count` containers of `tool` one after the other (under perf)."""
    from pyrt.engine import Engine
    from pyrt.images.importer import import_rootfs

    work = Path(tempfile.mkdtemp(prefix="pyrt-bench-inodes-"))
    cg = f"/pyrt-bench-inodes-{random_suffix()}"
    huge = HugetlbV1()
    try:
        rootfs = make_busybox_rootfs(work / "rootfs")
        if tool == "crun":
            B.probe_crun(B.find_exe("crun"), work, rootfs, cg, huge)
        engine = Engine(work / "er", work / "rr", cgroup_parent=cg)
        import_rootfs(str(B.image_tar(rootfs, work / "b.tar")), store=engine.content,
                      service=engine.images, reference=B.IMAGE)  # fmt: skip
        spec = B.engine_spec(engine, work)
        B.prepare_rootfs_targets(rootfs, spec)
        t: B.Tool = B.PyrtTool(engine, "default", work) if tool == "pyrt" else B.CliTool(
            "crun", B.find_exe("crun"), work, "default", spec, rootfs, cg, count)
        t.one(-1)  # the warm-up: the seccomp cache, the image's targets layer
        for i in range(count):
            t.one(i)
        t.cleanup()
        B.close_engine(engine, work / "rr")
    finally:
        remove_cgroup(cg)
        huge.undo()
        B.unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)


def count_events(tool: str, count: int) -> int:
    res = subprocess.run(["perf", "stat", "-x", ",", "-e", EVENT, "--", sys.executable,
                          __file__, "--child", tool, "--count", str(count)],
                         capture_output=True, text=True, check=False)  # fmt: skip
    m = re.search(r"^(\d+),,?[^,]*," + re.escape(EVENT), res.stderr, re.M)
    if res.returncode != 0 or m is None:
        raise B.BenchError(f"perf stat of {tool} x{count}: exit {res.returncode}: "
                           f"{res.stderr[-500:]}")  # fmt: skip
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="5 containers per tool")
    ap.add_argument("--tools", default="pyrt,crun")
    ap.add_argument("--child", choices=("pyrt", "crun"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.count = 5
    if args.child:
        child(args.child, args.count)
        return 0
    per: dict[str, float] = {}
    for tool in args.tools.split(","):
        base, full = count_events(tool, 0), count_events(tool, args.count)
        per[tool] = (full - base) / args.count
        print(f"{tool}: {per[tool]:.1f} new inodes per container "
              f"({full} - {base} setup, {args.count} containers)")  # fmt: skip
    if "pyrt" in per and "crun" in per and per["crun"] > 0:
        print(f"pyrt / crun: {per['pyrt'] / per['crun']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
