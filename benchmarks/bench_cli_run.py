"""`pyrt run --rm busybox true` against `docker run --rm` and `podman run --rm`, with default
networking and with `--network none`: the whole CLI -> daemon -> container -> exit path.

Claims measured, in the same run, interleaved (one container per tool and mode in turn):
- Milestone 4: pyrt's time at most 0.2x docker's and 0.2x podman's, in both modes.
- Milestone 5: the cost networking adds to a start (median default - median none) for
  pyrt at most 0.2x docker's (podman's for information).

Each tool runs on its own: pyrtd from the venv (`--pyrt-bin`, default the directory of this
interpreter) on its own socket, data root, exec root and pid file; a private dockerd and its
containerd (Debian's docker.io, own data root, exec root, socket, pid file, its default
bridge network on a bridge and /24 of its own, iptables off); podman with its own --root,
--runroot and a default network of its own (netavark bridge, /24 of its own, no DNS), runc
(crun 1.8 refuses hybrid cgroups). The same busybox image, built here as a docker-archive
(tests/bundle.py's rootfs), is loaded into each with `<tool> load`; nothing is pulled.

Before timing, the benchmark checks what each mode really gives (a detached container's
inspect: NetworkSettings and HostConfig.NetworkMode; and the interfaces a container sees in
/proc/net/dev) and prints it. When pyrt's CLI has no --network flag or its default mode
gives the container no interface, pyrt's network cost is reported as not measured.

    python benchmarks/bench_cli_run.py [--runs N] [--quick] [--tools pyrt,docker,podman]
        [--modes default,none] [--write-readme] [--json]

`pyrt` is the venv's bin/pyrt (the C front end csrc/cli/, which runs this command itself);
the tool `pyrt-py` (not in the default list: `--tools pyrt,pyrt-py,...`) is the Python
CLI, bin/pyrt-py, against the same pyrtd, for information: what the front end saves.

--quick: 3 runs (one warm-up), peers that are not installed are skipped (saying so).
Afterwards no daemon, container, mount, bridge or firewall chain made by the benchmark is
left.
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
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from peers import (
    DOCKER_CLI,
    DOCKERD,
    PODMAN,
    PeerError,
    PrivateDockerd,
    PrivatePodman,
    PrivatePyrtd,
    busybox_archive,
    processes_named,
    shown_python,
    unmount_all,
    write_results,
)

IMAGE = "bench/busybox:latest"
TOOLS = ("pyrt", "docker", "podman")
#: tools that may be asked for by name; pyrt-py (the Python CLI) shares pyrt's daemon
OPTIONAL_TOOLS = ("pyrt-py",)
MODES = ("default", "none")
TARGET_START = 0.2  # pyrt ÷ peer, each mode (Milestone 4)
TARGET_NET = 0.2  # pyrt's network cost ÷ docker's (Milestone 5)


@dataclass
class Tool:
    name: str
    argv: list[str]  # the CLI up to (not including) "run"
    env: dict[str, str]
    run_flags: list[str] = field(default_factory=list)
    mode_flags: dict[str, list[str]] = field(default_factory=dict)
    mode_seen: dict[str, str] = field(default_factory=dict)  # what the mode really gave
    has_network: dict[str, bool] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)
    version: str = ""

    def cmd(self, mode: str, *args: str) -> list[str]:
        return [*self.argv, "run", *self.run_flags, *self.mode_flags[mode], *args]

    def run(self, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run([*self.argv, *args], capture_output=True, env=self.env,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise PeerError(f"{self.name} {' '.join(args)}: exit {proc.returncode}: "
                            f"{proc.stderr.decode(errors='replace').strip()[-800:]}")
        return proc.stdout.decode(errors="replace")

    def time_one(self, mode: str) -> float:
        argv = self.cmd(mode, "--rm", IMAGE, "true")
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise PeerError(f"{' '.join(argv)}: exit {proc.returncode}: "
                            f"{proc.stderr.decode(errors='replace').strip()[-800:]}")
        return elapsed


def interfaces_seen(tool: Tool, mode: str) -> list[str]:
    """The interfaces (but lo) a container of this mode has, from its /proc/net/dev."""
    out = tool.run(*tool.cmd(mode, "--rm", IMAGE, "cat", "/proc/net/dev")[len(tool.argv):])
    names = [ln.split(":")[0].strip() for ln in out.splitlines() if ":" in ln]
    return [n for n in names if n != "lo"]


def inspect_mode(tool: Tool, mode: str) -> str:
    """HostConfig.NetworkMode and NetworkSettings (networks, address) of a detached
    container started in this mode, as its daemon reports them."""
    cid = tool.run(*tool.cmd(mode, "-d", IMAGE, "sleep", "30")[len(tool.argv):]).strip()
    try:
        doc = json.loads(tool.run("inspect", cid))[0]
    finally:
        tool.run("rm", "-f", cid)
    ns = doc.get("NetworkSettings") or {}
    nets = ns.get("Networks") or {}
    addrs = [n.get("IPAddress") for n in nets.values() if n.get("IPAddress")]
    addrs = addrs or ([ns["IPAddress"]] if ns.get("IPAddress") else [])
    mode_name = (doc.get("HostConfig") or {}).get("NetworkMode", "?")
    return (f"NetworkMode={mode_name!r}, Networks={sorted(nets)}, "
            f"IPAddress={','.join(addrs) or 'none'}")


def pyrt_network_flag(tool: Tool) -> bool:
    """Whether this pyrt's `run` takes --network (it is being built): a container run
    with it either works or is refused for that flag."""
    proc = subprocess.run([*tool.argv, "run", "--rm", "--network", "none", IMAGE, "true"],
                          env=tool.env, capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=120)
    if proc.returncode == 0:
        return True
    err = proc.stderr.decode(errors="replace")
    if "--network" in err and ("unrecognized" in err or "no such option" in err.lower()):
        return False
    raise PeerError(f"pyrt run --network none: exit {proc.returncode}: {err.strip()[-800:]}")


def check_modes(tools: list[Tool], modes: list[str]) -> None:
    for t in tools:
        for m in modes:
            ifaces = interfaces_seen(t, m)
            t.has_network[m] = bool(ifaces)
            t.mode_seen[m] = (f"{inspect_mode(t, m)}; interfaces in the container: "
                              f"lo{''.join(', ' + i for i in ifaces)}")
            print(f"  {t.name} {m} ({' '.join(t.mode_flags[m]) or 'no flag'}): "
                  f"{t.mode_seen[m]}", flush=True)
            if m == "none" and ifaces:
                raise PeerError(f"{t.name} --network none gave the container {ifaces}")
            if m == "default" and not ifaces and not t.name.startswith("pyrt"):
                raise PeerError(f"{t.name}'s default network gave the container no interface")


def left_containers(t: Tool) -> list[str]:
    return t.run("ps", "-aq").split()


def median_ms(v: list[float]) -> float:
    return statistics.median(v) * 1000


def spread(v: list[float]) -> str:
    q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0]] * 3
    return f"{q[0] * 1000:.0f}–{q[2] * 1000:.0f}"


def render(tools: list[Tool], modes: list[str], runs: int) -> tuple[str, list[str]]:
    by = {t.name: t for t in tools}
    pyrt = by.get("pyrt")
    lines = [f"{runs} runs of `<tool> run --rm {IMAGE} true` per tool and mode, interleaved",
             "", "| tool | mode | median ms | p25–p75 ms | pyrt ÷ tool |",
             "| --- | --- | ---: | ---: | ---: |"]
    for m in modes:
        for t in tools:
            ratio = "-"
            if pyrt is not None and t.times.get(m) and pyrt.times.get(m):
                ratio = f"{median_ms(pyrt.times[m]) / median_ms(t.times[m]):.2f}"
            mode_text = m if t.mode_flags[m] or m == "default" else f"{m} (no flag)"
            lines.append(f"| {t.name} | {mode_text} | {median_ms(t.times[m]):.1f} | "
                         f"{spread(t.times[m])} | {ratio} |")
    verdicts: list[str] = []
    if pyrt is not None:
        for m in modes:
            for t in tools:
                if t is pyrt or t.name in OPTIONAL_TOOLS:
                    continue
                r = median_ms(pyrt.times[m]) / median_ms(t.times[m])
                ok = "met" if r <= TARGET_START else "NOT met"
                verdicts.append(f"start, {m}: pyrt ÷ {t.name} = {r:.2f} "
                                f"(target ≤ {TARGET_START}: {ok})")
    if set(modes) == {"default", "none"}:
        lines += ["", "Network cost (median default − median none):", "",
                  "| tool | default ms | none ms | network cost ms | pyrt ÷ tool |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        cost = {t.name: median_ms(t.times["default"]) - median_ms(t.times["none"])
                for t in tools}
        pyrt_measured = pyrt is not None and pyrt.has_network.get("default", False)
        for t in tools:
            ratio = "-"
            if pyrt_measured and t is not pyrt and t.name not in OPTIONAL_TOOLS and \
                    cost[t.name] > 0:
                ratio = f"{cost['pyrt'] / cost[t.name]:.2f}"
            shown = f"{cost[t.name]:.1f}"
            if t.name == "pyrt" and not pyrt_measured:
                shown = "not measured"
            lines.append(f"| {t.name} | {median_ms(t.times['default']):.1f} | "
                         f"{median_ms(t.times['none']):.1f} | {shown} | {ratio} |")
        if pyrt is not None and not pyrt_measured:
            verdicts.append("network cost: NOT measured — pyrt's default mode gave the "
                            "container no network interface (" + pyrt.mode_seen["default"]
                            + ")")
        elif pyrt is not None and "docker" in cost:
            r = cost["pyrt"] / cost["docker"] if cost["docker"] > 0 else float("inf")
            ok = "met" if r <= TARGET_NET else "NOT met"
            verdicts.append(f"network cost: pyrt ÷ docker = {r:.2f} (target ≤ {TARGET_NET}: "
                            f"{ok})")
    return "\n".join(lines), verdicts


def machine_line(tools: list[Tool]) -> str:
    uname = platform.uname()
    vers = "; ".join(f"{t.name} {t.version}" for t in tools if t.version)
    return (f"Measured {datetime.date.today().isoformat()} on Linux {uname.release}, "
            f"{os.cpu_count()} CPUs (shared with other work: medians and p25–p75 given), "
            f"Python {platform.python_version()}; {vers}.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=None, help="timed runs per tool and mode (30)")
    ap.add_argument("--quick", action="store_true", help="3 runs; skip missing peers")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--pyrt-bin", type=Path, default=Path(sys.executable).parent,
                    help="directory with the pyrt and pyrtd scripts (default: this venv's)")
    ap.add_argument("--json", action="store_true", help="print the raw times as JSON too")
    ap.add_argument("--write-readme", action="store_true",
                    help="put the table into benchmarks/README.md")
    args = ap.parse_args(argv)
    runs = args.runs or (3 if args.quick else 30)
    names = [t.strip() for t in args.tools.split(",") if t.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if any(n not in TOOLS + OPTIONAL_TOOLS for n in names) or \
            any(m not in MODES for m in modes) or runs < 1:
        ap.error(f"tools from {TOOLS + OPTIONAL_TOOLS}, modes from {MODES}, --runs >= 1")
    if "pyrt-py" in names and "pyrt" not in names:
        ap.error("pyrt-py runs against pyrt's daemon: --tools must name pyrt too")
    if os.geteuid() != 0:
        print("bench_cli_run: needs root", file=sys.stderr)
        return 1
    need = {"pyrt": [args.pyrt_bin / "pyrt", args.pyrt_bin / "pyrtd"],
            "pyrt-py": [args.pyrt_bin / "pyrt-py"],
            "docker": [DOCKERD, DOCKER_CLI], "podman": [PODMAN]}
    for n in list(names):
        missing = [str(p) for p in need[n] if not p.exists()]
        if missing:
            if not args.quick or n == "pyrt":
                print(f"bench_cli_run: {n}: {', '.join(missing)} not found", file=sys.stderr)
                return 1
            print(f"bench_cli_run: skipped {n}: {', '.join(missing)} not installed")
            names.remove(n)
    for pid in processes_named("dockerd"):
        print(f"bench_cli_run: note: a dockerd this benchmark did not start runs (pid {pid});"
              " it is left alone", flush=True)

    work = Path(tempfile.mkdtemp(prefix="pyrt-bench-cli-", dir="/var/tmp"))
    archive = work / "busybox.tar"
    busybox_archive(archive, IMAGE)
    peers: list[PrivateDockerd | PrivatePodman | PrivatePyrtd] = []
    tools: list[Tool] = []
    pyrtd: PrivatePyrtd | None = None
    try:
        for n in sorted(names, key=lambda n: n == "pyrt-py"):  # pyrt's daemon first
            if n in ("pyrt", "pyrt-py"):
                if pyrtd is None:
                    pyrtd = PrivatePyrtd(work / "pyrt", args.pyrt_bin)
                    peers.append(pyrtd)
                t = Tool(n, [str(args.pyrt_bin / n)], pyrtd.env)
                t.version = t.run("version", "--format", "{{.Server.Version}}").strip()
            elif n == "docker":
                d = PrivateDockerd(work / "docker", bridge=True)
                peers.append(d)
                t = Tool("docker", [str(DOCKER_CLI)], d.env, version=f"dockerd {d.version}")
            else:
                p = PrivatePodman(work / "podman")
                peers.append(p)
                t = Tool("podman", p.base, p.env, run_flags=p.run_flags, version=p.version)
            if n != "pyrt-py":  # its daemon is pyrt's: the image is there
                t.run("load", "-i", str(archive))
            t.mode_flags = {"default": [], "none": ["--network", "none"]}
            tools.append(t)
        for t in tools:
            if t.name.startswith("pyrt") and not pyrt_network_flag(t):
                t.mode_flags["none"] = []
                print("  pyrt: this pyrt's `run` has no --network flag yet; its none row runs"
                      " without it (what that gives is checked below)", flush=True)
        print("what each mode gives:", flush=True)
        check_modes(tools, modes)
        for t in tools:  # warm-up, untimed: page cache, the daemons' first-use paths
            for m in modes:
                for _ in range(1 if args.quick else 2):
                    t.time_one(m)
                t.times[m] = []
        for i in range(runs):
            for t in tools:
                for m in modes:
                    t.times[m].append(t.time_one(m))
            if (i + 1) % 10 == 0 or i + 1 == runs:
                print(f"  {i + 1}/{runs}: " + ", ".join(
                    f"{t.name}/{m} {median_ms(t.times[m]):.0f} ms" for t in tools
                    for m in modes), flush=True)
        for t in tools:
            left = left_containers(t)
            if left:
                raise PeerError(f"{t.name}: --rm left containers {left}")
    finally:
        for peer in reversed(peers):
            with contextlib.suppress(Exception):
                peer.stop()
        with contextlib.suppress(PeerError):
            unmount_all(work)
        shutil.rmtree(work, ignore_errors=True)

    table, verdicts = render(tools, modes, runs)
    modes_text = "\n".join(f"- {t.name} {m} (`{' '.join(t.mode_flags[m]) or 'no flag'}`): "
                           f"{t.mode_seen[m]}" for t in tools for m in modes)
    block = "\n".join([table, "", *verdicts, "", "What each mode gave (checked before timing):",
                       "", modes_text, "", machine_line(tools)])
    print()
    print(block)
    if args.json:
        print(json.dumps({"bench": "cli_run", "runs": runs, "times_s": {
            t.name: {m: [round(x, 5) for x in t.times[m]] for m in modes} for t in tools}}))
    if args.write_readme:
        # the interpreter and flags really used
        shown = " ".join([shown_python(), "benchmarks/bench_cli_run.py",
                          *(sys.argv[1:] if argv is None else argv)])
        write_results("bench_cli_run", shown, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
