"""Memory of one idle container shim: pyrt-shim vs containerd-shim-runc-v2 vs conmon.

Each shim holds one `sleep` container from the same busybox rootfs; we read VmRSS from
/proc/<pid>/status and Pss from /proc/<pid>/smaps_rollup (what the process costs, with
shared pages divided among their users), several samples after the container settled.

    sudo PYTHONPATH=. /opt/pyrt-venv/bin/python benchmarks/bench_shim_memory.py [--quick]

- pyrt-shim: launched by pyrt.containers.shim_client, runtime pyrt-runc.
- containerd-shim-runc-v2: a private containerd (temp root, state and socket, no CRI
  plugin), `ctr run -d --rootfs` (no image needed), runtime runc.
- conmon: `podman run -d --rootfs` with temp --root/--runroot, cgroupfs manager.
Peers that cannot run here are reported as such, with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(_REPO))  # appended: the installed pyrt wins over the source tree

from tests.bundle import cgroup_hierarchies, make_bundle, make_busybox_rootfs  # noqa: E402


@dataclass
class Sample:
    name: str
    rss_kb: float | None
    pss_kb: float | None
    anon_kb: float | None = None  # RssAnon: memory of this shim alone (text is shared)
    note: str = ""


def read_mem(pid: int) -> tuple[int, int, int]:
    """(VmRSS, Pss, RssAnon) in kB of a live process."""
    rss = pss = anon = -1
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("RssAnon:"):
                anon = int(line.split()[1])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss, anon


def measure(name: str, pid: int, samples: int) -> Sample:
    rss, pss, anon = [], [], []
    for _ in range(samples):
        r, p, a = read_mem(pid)
        rss.append(r)
        pss.append(p)
        anon.append(a)
        time.sleep(0.2)
    n = len(rss)
    return Sample(name, sum(rss) / n, sum(pss) / n, sum(anon) / n)


def _wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def _pids_with(*needles: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmd for n in needles):
            out.append(int(d))
    return out


# ------------------------------------------------------------------ pyrt-shim


@contextlib.contextmanager
def pyrt_shim(work: Path, rootfs: Path) -> Iterator[int]:
    import pyrt
    from pyrt.containers.shim_client import ShimConfig, ShimProcess
    from pyrt.runtime.runtime import Runtime

    # the runtime must import the same pyrt as this process (the installed one in CI,
    # whose source tree has no compiled core): its parent dir, and -P against the cwd
    pkg_parent = Path(pyrt.__file__).resolve().parent.parent
    wrapper = work / "pyrt-runc"
    wrapper.write_text(
        f"#!/bin/sh\nPYTHONPATH='{pkg_parent}'; export PYTHONPATH\n"
        f"exec '{sys.executable}' -P -m pyrt.runtime.cli \"$@\"\n"
    )
    wrapper.chmod(0o755)
    cid = f"bench-shim-{os.getpid()}"
    bundle = make_bundle(work / "bundle", ["/bin/sleep", "1000"], rootfs=rootfs)
    root = work / "rt"
    cfg = ShimConfig(cid, bundle, work / "state", wrapper, root, log_path=work / "c.log")
    sp = ShimProcess.launch(cfg)
    client = sp.client()
    try:
        client.start()
        yield sp.shim_pid
    finally:
        with contextlib.suppress(Exception):
            client.kill(9)
            client.wait(10)
        with contextlib.suppress(Exception):
            Runtime(str(root)).delete(cid, force=True)
        # the runtime removes the container's cgroup; the parent make_bundle chose is ours
        parent = json.loads((bundle / "config.json").read_text())["linux"]["cgroupsPath"]
        remove_cgroup_tree(parent.rsplit("/", 1)[0])


def remove_cgroup_tree(path: str) -> None:
    """rmdir the (empty) cgroup `path` and what is below it, in every hierarchy."""
    for top in cgroup_hierarchies():
        base = top / path.strip("/")
        if not base.is_dir():
            continue
        for dirpath, _, _ in sorted(os.walk(base), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


# ------------------------------------------------------------------ containerd


@contextlib.contextmanager
def containerd_shim(work: Path, rootfs: Path) -> Iterator[int]:
    for exe in ("containerd", "ctr", "containerd-shim-runc-v2", "runc"):
        if not shutil.which(exe):
            raise RuntimeError(f"{exe} not installed")
    sock = work / "containerd.sock"
    cfg = work / "config.toml"
    cfg.write_text(
        "version = 2\n"
        f'root = "{work / "root"}"\nstate = "{work / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n'
    )
    log = open(work / "containerd.log", "wb")  # noqa: SIM115
    daemon = subprocess.Popen(["containerd", "--config", str(cfg)], stdout=log, stderr=log)
    ctr = ["ctr", "--address", str(sock), "--namespace", "pyrtbench"]
    cid = f"bench-{os.getpid()}"
    try:
        _wait_for(sock.exists, 20, "containerd's socket")
        res = subprocess.run(
            [*ctr, "run", "-d", "--rootfs", str(rootfs), cid, "/bin/sleep", "1000"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"ctr run: {res.stderr.strip()}")
        pids: list[int] = []

        def found() -> bool:
            pids[:] = _pids_with("containerd-shim-runc-v2", str(sock))
            return bool(pids)

        _wait_for(found, 10, "containerd-shim-runc-v2")
        time.sleep(1)
        yield pids[0]
    finally:
        subprocess.run([*ctr, "task", "kill", "-s", "9", cid], capture_output=True, timeout=30)
        time.sleep(0.5)
        subprocess.run([*ctr, "task", "delete", "-f", cid], capture_output=True, timeout=30)
        subprocess.run([*ctr, "container", "delete", cid], capture_output=True, timeout=30)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        for p in _pids_with("containerd-shim-runc-v2", str(sock)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        remove_cgroup_tree("pyrtbench")  # containerd's cgroups for the namespace


# ------------------------------------------------------------------ podman / conmon


@contextlib.contextmanager
def conmon(work: Path, rootfs: Path) -> Iterator[int]:
    for exe in ("podman", "conmon"):
        if not shutil.which(exe):
            raise RuntimeError(f"{exe} not installed")
    pod = [
        "podman", "--root", str(work / "root"), "--runroot", str(work / "runroot"),
        "--cgroup-manager", "cgroupfs", "--events-backend", "file",
        "--runtime", "runc",  # crun refuses hybrid cgroups
    ]  # fmt: skip
    # never ask for an rlimit above the hard one (no CAP_SYS_RESOURCE here)
    import resource

    limits = []
    for flag, res in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, hard = resource.getrlimit(res)
        limits += ["--ulimit", f"{flag}={soft}:{hard}"]
    name = f"bench-{os.getpid()}"
    try:
        res = subprocess.run(
            [*pod, "run", "-d", "--net", "none", *limits, "--name", name,
             "--rootfs", str(rootfs),
             "/bin/sleep", "1000"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if res.returncode != 0:
            why = (res.stderr + res.stdout).strip()[-300:]
            raise RuntimeError(f"podman run: exit {res.returncode}: {why}")
        out = subprocess.run(
            [*pod, "inspect", "-f", "{{.State.ConmonPid}}", name],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        pid = int(out.stdout.strip())
        time.sleep(1)
        yield pid
    finally:
        subprocess.run([*pod, "rm", "-f", "-t", "0", name], capture_output=True, timeout=120)
        subprocess.run([*pod, "system", "reset", "-f"], capture_output=True, timeout=120)


# ------------------------------------------------------------------ main


def run_one(name: str, fn: Callable[..., contextlib.AbstractContextManager[int]],
            rootfs: Path, samples: int) -> Sample:  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix=f"bench-shim-{name.split()[0]}-"))
    try:
        with fn(work, rootfs) as pid:
            return measure(name, pid, samples)
    except Exception as e:  # a peer that cannot run here: report why
        return Sample(name, None, None, note=f"not measured: {e}")
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["umount", "-R", "-l", str(work)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples, pyrt and containerd")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_shim_memory: needs root", file=sys.stderr)
        return 2
    samples = 3 if args.quick else 10
    base = Path(tempfile.mkdtemp(prefix="bench-shim-rootfs-"))
    try:
        rootfs = make_busybox_rootfs(base / "rootfs")
        peers: list[tuple[str, Callable[..., contextlib.AbstractContextManager[int]]]] = [
            ("pyrt-shim", pyrt_shim),
            ("containerd-shim-runc-v2", containerd_shim),
        ]
        if not args.quick:
            peers.append(("conmon (podman)", conmon))
        results = [run_one(n, fn, rootfs, samples) for n, fn in peers]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    ours = results[0]
    print(
        f"{'shim':<26}{'VmRSS kB':>10}{'Pss kB':>10}{'RssAnon kB':>12}"
        f"{'RSS ratio':>11}{'Pss ratio':>11}{'Anon ratio':>12}"
    )
    for r in results:
        if r.rss_kb is None or r.pss_kb is None:
            print(f"{r.name:<26}{r.note}")
            continue
        rr = (ours.rss_kb or 0) / r.rss_kb
        pr = (ours.pss_kb or 0) / r.pss_kb
        ar = (ours.anon_kb or 0) / r.anon_kb if r.anon_kb else float("nan")
        print(
            f"{r.name:<26}{r.rss_kb:>10.0f}{r.pss_kb:>10.0f}{r.anon_kb or 0:>12.0f}"
            f"{rr:>11.3f}{pr:>11.3f}{ar:>12.3f}"
        )
    print("ratio = pyrt-shim / peer (lower is better for pyrt)")
    return 0 if ours.rss_kb is not None else 1


if __name__ == "__main__":
    sys.exit(main())
