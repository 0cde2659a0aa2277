"""Idle daemon memory: pyrtd against dockerd + containerd, freshly started, the same busybox
image loaded, then with N idle containers running.

Claim (Milestone 4): pyrtd's memory at most 0.3x that of dockerd + containerd.

Each daemon is started fresh for the run on roots and a socket of its own (benchmarks/
peers.py: pyrtd from the venv, `--pyrt-bin`; Debian's dockerd with its own containerd,
iptables off, its default bridge on a bridge of the benchmark's own), loads the same
docker-archive busybox image (`<cli> load`), then sits idle. Memory is read from /proc:
Pss (from smaps_rollup: shared pages divided among the processes that map them) and
VmRSS (status), summed over the daemon's processes — pyrtd: its one process; docker:
dockerd and the containerd it started — sampled `--samples` times 0.5 s apart after
`--settle` seconds, the median of the samples kept. Then N containers (`run -d IMAGE
sleep 3600`, default bridge network) are started, the daemons settle again and are
measured again; the per-container shims (pyrt-shim, containerd-shim-runc-v2) are reported
on their own line, not in the daemon figure (their own benchmark is bench_shim_memory.py).
The ratio divides pyrt's PSS by docker's.

    python benchmarks/bench_daemon_memory.py [--containers N] [--quick] [--write-readme]

--quick: N = 3, shorter settling. podman has no daemon and is not part of this claim.
Afterwards no daemon, container, mount or cgroup made by the benchmark is left.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_shim_memory import read_mem
from peers import (
    DOCKER_CLI,
    DOCKERD,
    PeerError,
    PrivateDockerd,
    PrivatePyrtd,
    busybox_archive,
    pids_mentioning,
    unmount_all,
    write_results,
)

IMAGE = "bench/busybox:latest"
TARGET = 0.3


@dataclass
class Reading:
    pss_kb: float
    rss_kb: float
    procs: int


def sample(pids: list[int], samples: int) -> Reading:
    pss, rss = [], []
    for i in range(samples):
        if i:
            time.sleep(0.5)
        got = [read_mem(p) for p in pids]  # (VmRSS, Pss, RssAnon) in kB
        rss.append(sum(g[0] for g in got))
        pss.append(sum(g[1] for g in got))
    return Reading(statistics.median(pss), statistics.median(rss), len(pids))


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def shims(work: Path, name: str) -> list[int]:
    return [p for p in pids_mentioning(f"{work}/") if comm(p) == name]


@dataclass
class Result:
    tool: str
    idle: Reading
    busy: Reading | None = None
    shims: Reading | None = None
    version: str = ""


def sample_shims(tool: str, work: Path, comm_name: str, n: int, samples: int,
                 running: list[str]) -> Reading:
    """The shims' memory, once `running` (the tool's running containers) and the shim
    processes both number `n`."""
    if len(running) != n:
        raise PeerError(f"{tool}: {len(running)} containers running, expected {n}")
    sh = shims(work, comm_name)
    if len(sh) != n:
        raise PeerError(f"{tool}: expected {n} {comm_name} processes, found {len(sh)}")
    return sample(sh, samples)


def measure_pyrt(work: Path, bin_dir: Path, archive: Path, n: int, settle: float,
                 samples: int) -> Result:
    with PrivatePyrtd(work, bin_dir) as y:
        y.pyrt("load", "-i", str(archive))
        version = y.pyrt("version", "--format", "{{.Server.Version}}").strip()
        time.sleep(settle)
        idle = sample([y.proc.pid], samples)
        for _ in range(n):
            y.pyrt("run", "-d", IMAGE, "sleep", "3600")
        time.sleep(settle)
        busy = sample([y.proc.pid], samples)
        shim_reading = sample_shims("pyrt", work, "pyrt-shim", n, samples,
                                    y.pyrt("ps", "-q").split())
        return Result("pyrtd", idle, busy, shim_reading, f"pyrt {version}")


def measure_docker(work: Path, archive: Path, n: int, settle: float, samples: int) -> Result:
    with PrivateDockerd(work, bridge=True) as d:
        d.docker("load", "-i", str(archive))
        time.sleep(settle)

        def daemons() -> list[int]:
            pids = d.pids()
            if len(pids["containerd"]) != 1:
                raise PeerError(f"docker: containerd processes {pids['containerd']}")
            return pids["dockerd"] + pids["containerd"]

        idle = sample(daemons(), samples)
        for _ in range(n):
            d.docker("run", "-d", IMAGE, "sleep", "3600")
        time.sleep(settle)
        busy = sample(daemons(), samples)
        running = d.docker("ps", "-q").split()
        shim_reading = sample_shims("docker", work, "containerd-shim", n, samples, running)
        d.docker("rm", "-f", *running)
        return Result("dockerd + containerd", idle, busy, shim_reading,
                      f"dockerd {d.version} ({d.driver})")


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def render(results: list[Result], n: int) -> tuple[str, list[str]]:
    pyrt = next((r for r in results if r.tool == "pyrtd"), None)
    lines = ["| daemon | state | processes | PSS MB | RSS MB | pyrt ÷ this (PSS) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    verdicts = []
    for state in ("idle", "busy"):
        for r in results:
            rd: Reading | None = getattr(r, state)
            if rd is None:
                continue
            ours: Reading | None = getattr(pyrt, state) if pyrt is not None else None
            ratio = f"{ours.pss_kb / rd.pss_kb:.2f}" if ours is not None else "-"
            label = "idle, image loaded" if state == "idle" else f"{n} idle containers"
            lines.append(f"| {r.tool} | {label} | {rd.procs} | {mb(rd.pss_kb)} | "
                         f"{mb(rd.rss_kb)} | {ratio} |")
            if r is not pyrt and ours is not None:
                q = ours.pss_kb / rd.pss_kb
                verdicts.append(f"{label}: pyrtd ÷ {r.tool} = {q:.2f} (PSS; target ≤ "
                                f"{TARGET}: {'met' if q <= TARGET else 'NOT met'})")
    shim_text = "; ".join(f"{r.tool}: {mb(r.shims.pss_kb)} MB PSS over {r.shims.procs} shims"
                          for r in results if r.shims is not None)
    lines += ["", f"Shims with {n} containers (not in the daemon figures): {shim_text}."]
    return "\n".join(lines), verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--containers", type=int, default=None, help="idle containers (10)")
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="3 containers, short settling")
    ap.add_argument("--tools", default="pyrt,docker")
    ap.add_argument("--pyrt-bin", type=Path, default=Path(sys.executable).parent,
                    help="directory with the pyrt and pyrtd scripts (default: this venv's)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args(argv)
    n = args.containers if args.containers is not None else (3 if args.quick else 10)
    settle = 1.0 if args.quick else 3.0
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if os.geteuid() != 0:
        print("bench_daemon_memory: needs root", file=sys.stderr)
        return 1
    if "docker" in tools and not (DOCKERD.exists() and DOCKER_CLI.exists()):
        if not args.quick:
            print(f"bench_daemon_memory: {DOCKERD} or {DOCKER_CLI} missing", file=sys.stderr)
            return 1
        print("bench_daemon_memory: skipped docker: docker.io not installed")
        tools.remove("docker")
    work = Path(tempfile.mkdtemp(prefix="pyrt-bench-mem-", dir="/var/tmp"))
    results: list[Result] = []
    try:
        archive = work / "busybox.tar"
        busybox_archive(archive, IMAGE)
        for t in tools:
            if t == "pyrt":
                results.append(measure_pyrt(work / "pyrt", args.pyrt_bin, archive, n, settle,
                                            args.samples))
            elif t == "docker":
                results.append(measure_docker(work / "docker", archive, n, settle,
                                              args.samples))
            else:
                ap.error(f"unknown tool {t!r} (pyrt, docker)")
    finally:
        with contextlib.suppress(PeerError):
            unmount_all(work)
        shutil.rmtree(work, ignore_errors=True)
    table, verdicts = render(results, n)
    uname = platform.uname()
    block = "\n".join([
        table, "", *verdicts, "",
        f"Measured {datetime.date.today().isoformat()} on Linux {uname.release}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; "
        + "; ".join(r.version for r in results) + "."])
    print(block)
    if args.json:
        print(json.dumps({"bench": "daemon_memory", "containers": n, "results": [
            {"tool": r.tool, "idle_pss_kb": r.idle.pss_kb, "idle_rss_kb": r.idle.rss_kb,
             "busy_pss_kb": r.busy.pss_kb if r.busy else None,
             "busy_rss_kb": r.busy.rss_kb if r.busy else None} for r in results]}))
    if args.write_readme:
        write_results("bench_daemon_memory",
                      ".venv/bin/python benchmarks/bench_daemon_memory.py --write-readme", block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
