"""Container lifecycle: N sequential create + start + wait + delete of /bin/true.

Claim measured: how long one short-lived container costs through pyrt-runc (a Python
process per command), through pyrt's in-process API (pyrt.runtime.runtime.Runtime), and
through Debian's runc and crun, all in the same run, from the same busybox bundle.

For every tool and every container:
  <tool> --root R create --bundle B --pid-file P <id>   (the API: Runtime.create)
  pidfd_open(pid from P)                                  before start, so no exit is missed
  <tool> --root R start <id>
  poll(pidfd) until the init exits, then reap it (we are the child subreaper)
  <tool> --root R delete <id>
Each tool gets a fresh --root and one untimed warm-up container; ids are unique.

crun 1.8 refuses a hybrid cgroup layout whose unified hierarchy holds a controller (here
hugetlb). Only if crun fails for that reason, hugetlb is moved to a v1 hierarchy of its own
(mount -t cgroup -o hugetlb) for the whole run -- every tool then runs on that layout --
and put back at the end. The script says so when it does it.

With --rounds R every tool runs R times, round after round (so a burst of load from other
programs hits every tool alike); the table gives each tool's median round and the range of
the pyrt-runc ratio over the rounds. pyrt-runc runs with PYRT_RUNC_EXPLAIN set, so the
script can say whether every create was done natively by the C front end or handed to the
Python CLI.

    python benchmarks/bench_runtime.py [--quick | --count N] [--rounds R] [--tools a,b]
                                       [--write-readme]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # appended: the installed pyrt wins over the source tree

from tests.bundle import cgroup_hierarchies, make_bundle, random_suffix  # noqa: E402

README = REPO / "benchmarks" / "README.md"
TOP_README = REPO / "README.md"
HUGETLB_MNT = Path("/sys/fs/cgroup/hugetlb")
PR_SET_CHILD_SUBREAPER = 36
TOOLS = ("pyrt-runc", "pyrt-api", "runc", "crun")


class BenchError(Exception):
    pass


# -- waiting for a container's init ---------------------------------------------------------


def open_pidfd(pid: int) -> int | None:
    """A pidfd for pid, or None if it has already exited."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def wait_exit(pidfd: int | None, timeout: float = 30.0) -> None:
    """Block until the process behind pidfd has exited (same method for every tool)."""
    if pidfd is None:
        return
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            raise BenchError(f"container init did not exit within {timeout:.0f}s")
    finally:
        os.close(pidfd)


def reap(pid: int) -> None:
    """Reap pid if it was re-parented to us (we are a child subreaper)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def read_pid_file(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError) as e:
        raise BenchError(f"pid file {path}: {e}") from None


# -- the tools ------------------------------------------------------------------------------


@dataclass
class CliTool:
    name: str
    argv0: list[str]
    root: Path
    log: Path
    env: dict[str, str] | None = None

    def cmd(self, *args: str) -> None:
        # stdout/stderr go to a file: a pipe would be inherited by the container's init and
        # keep the command "running" until the container exits
        # no timeout=: with one, subprocess polls for the exit at growing intervals
        # (1, 3, 7, 15, 31, 63 ms...), which rounds every command up and blurs the ratios;
        # a blocking wait returns when the command does. A hung tool is stopped by alarm.
        with open(self.log, "ab") as log:
            signal.alarm(60)
            try:
                res = subprocess.run(
                    [*self.argv0, "--root", str(self.root), *args],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env,
                )  # fmt: skip
            finally:
                signal.alarm(0)
        if res.returncode != 0:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
            raise BenchError(
                f"{self.name} {' '.join(args)}: exit {res.returncode}: " + " | ".join(tail)
            )

    def one(self, cid: str, bundle: Path, pid_file: Path) -> None:
        self.cmd("create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid)
        pid = read_pid_file(pid_file)
        pidfd = open_pidfd(pid)
        self.cmd("start", cid)
        wait_exit(pidfd)
        reap(pid)
        self.cmd("delete", cid)

    def cleanup(self) -> None:
        try:
            ids = [e.name for e in os.scandir(self.root) if e.is_dir()]
        except OSError:
            ids = []
        for cid in ids:
            with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
                self.cmd("delete", "--force", cid)


@dataclass
class ApiTool:
    name: str
    root: Path

    def __post_init__(self) -> None:
        from pyrt.runtime.runtime import Runtime

        self.rt = Runtime(str(self.root))

    def one(self, cid: str, bundle: Path, pid_file: Path) -> None:
        # stdio: the benchmark's own, as the CLI tools' containers get theirs
        pid = self.rt.create(cid, str(bundle), pid_file=str(pid_file))
        pidfd = open_pidfd(pid)
        self.rt.start(cid)
        wait_exit(pidfd)
        self.rt.delete(cid)  # the init is the API's child: the runtime reaps it

    def cleanup(self) -> None:
        for c in self.rt.list():
            with contextlib.suppress(Exception):
                self.rt.delete(str(c["id"]), force=True)


Tool = CliTool | ApiTool


def make_tool(name: str, work: Path) -> Tool:
    root = work / f"root-{name}"
    log = work / f"{name}.log"
    if name == "pyrt-api":
        return ApiTool(name, root)
    if name == "pyrt-runc":
        exe = Path(sys.prefix) / "bin" / "pyrt-runc"
        if not exe.exists():
            raise BenchError(f"{exe} not found: pip install . into this interpreter's venv")
        explain = {**os.environ, "PYRT_RUNC_EXPLAIN": str(work / "pyrt-runc-explain")}
        return CliTool(name, [str(exe)], root, log, explain)
    path = shutil.which(name)
    if path is None:
        raise BenchError(f"{name} not found on PATH (apt-get install {name})")
    return CliTool(name, [path], root, log)


# -- crun and the hybrid layout -------------------------------------------------------------


def hugetlb_hierarchy_id() -> int | None:
    with open("/proc/cgroups") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] == "hugetlb":
                return int(fields[1])
    return None


class HugetlbV1:
    """Moves hugetlb from the unified hierarchy to a v1 mount of its own, and back."""

    def __init__(self) -> None:
        self.mounted = False
        self.made_dir = False
        self.used = False  # mounted at some point of this run

    def mount(self) -> None:
        if not HUGETLB_MNT.exists():
            HUGETLB_MNT.mkdir()
            self.made_dir = True
        subprocess.run(
            ["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(HUGETLB_MNT)], check=True
        )
        self.mounted = self.used = True
        print(
            f"note: crun refused the hybrid layout; mounted hugetlb as cgroup v1 on "
            f"{HUGETLB_MNT} for this run (undone at the end)",
            flush=True,
        )

    def undo(self) -> None:
        if not self.mounted:
            return
        # The v1 hierarchy is only released when it is unmounted with no child cgroups;
        # a just-removed child can linger a moment, and other programs (podman's conmon)
        # may have made cgroups in it meanwhile. So: remove the children, unmount, and if
        # the kernel still lists hugetlb on a v1 hierarchy, remount and try again.
        ok = False
        for attempt in range(20):
            if os.path.ismount(HUGETLB_MNT):
                remove_cgroup_children(HUGETLB_MNT)
                subprocess.run(["umount", str(HUGETLB_MNT)], check=False)
            time.sleep(0.2 + 0.1 * attempt)
            if hugetlb_hierarchy_id() == 0:
                ok = True
                break
            subprocess.run(
                ["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(HUGETLB_MNT)],
                check=False,
            )
        if os.path.ismount(HUGETLB_MNT):
            subprocess.run(["umount", str(HUGETLB_MNT)], check=False)
        if self.made_dir and not os.path.ismount(HUGETLB_MNT):
            # a plain directory on /sys/fs/cgroup's tmpfs now; programs may have written
            # into it while it was not a mount
            shutil.rmtree(HUGETLB_MNT, ignore_errors=True)
        self.mounted = False
        if ok:
            print(f"note: unmounted {HUGETLB_MNT}; hugetlb is back on the unified hierarchy")
        else:
            print(
                "warning: hugetlb is still bound to a v1 hierarchy (a cgroup in it is busy); "
                "it returns to the unified hierarchy once that hierarchy is empty and "
                "unmounted",
                file=sys.stderr,
            )


def remove_cgroup_children(top: Path) -> None:
    """rmdir every cgroup below top, deepest first, retrying briefly while busy."""
    for dirpath, _, _ in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
        if Path(dirpath) == top:
            continue
        for _ in range(25):
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)


# -- the run --------------------------------------------------------------------------------


@dataclass
class Result:
    tool: str
    count: int
    seconds: float | None
    error: str | None = None
    rounds: list[float] | None = None  # every round's seconds (seconds: their median)

    @property
    def per_ms(self) -> float | None:
        return None if self.seconds is None else self.seconds / self.count * 1000


def merge_rounds(tool: str, count: int, rounds: list[Result]) -> Result:
    """One Result per tool: the median round, or the first error."""
    for r in rounds:
        if r.seconds is None:
            return r
    secs = [r.seconds for r in rounds if r.seconds is not None]
    return Result(tool, count, statistics.median(secs), rounds=secs)


def run_tool(
    tool: Tool, bundle: Path, work: Path, count: int, first: Callable[[], None] | None = None
) -> Result:
    tool.root.mkdir(parents=True, exist_ok=True)
    pid_file = work / f"{tool.name}.pid"
    tag = random_suffix(3)
    try:
        if first is not None:
            first()
        else:
            tool.one(f"bench-{tag}-warm", bundle, pid_file)
        start = time.perf_counter()
        for i in range(count):
            tool.one(f"bench-{tag}-{i}", bundle, pid_file)
        return Result(tool.name, count, time.perf_counter() - start)
    except (BenchError, OSError, subprocess.TimeoutExpired) as e:
        return Result(tool.name, count, None, f"{type(e).__name__}: {e}")
    except Exception as e:  # the API raises pyrt errors: report, don't hide the other rows
        return Result(tool.name, count, None, f"{type(e).__name__}: {e}")
    finally:
        tool.cleanup()


def crun_warmup(tool: Tool, bundle: Path, work: Path, huge: HugetlbV1) -> Callable[[], None]:
    def first() -> None:
        pid_file = work / "crun-warm.pid"
        cid = f"bench-crun-probe-{random_suffix(3)}"
        try:
            tool.one(cid, bundle, pid_file)
        except BenchError as e:
            if "hybrid" not in str(e) or huge.mounted:
                raise
            tool.cleanup()
            huge.mount()
            tool.one(cid + "b", bundle, pid_file)

    return first


def render_table(results: list[Result], count: int) -> str:
    by = {r.tool: r for r in results}
    ref = by.get("pyrt-runc")
    api = by.get("pyrt-api")

    def ratio(a: Result | None, b: Result) -> str:
        if a is None or a.seconds is None or b.seconds is None or b.seconds == 0:
            return "-"
        return f"{a.seconds / b.seconds:.2f}"

    def spread(a: Result | None, b: Result) -> str:
        """min-max over the rounds of a's time / b's time in the same round"""
        if a is None or not a.rounds or not b.rounds or len(a.rounds) != len(b.rounds):
            return "-"
        rs = [x / y for x, y in zip(a.rounds, b.rounds, strict=True) if y > 0]
        return f"{min(rs):.2f}–{max(rs):.2f}" if rs else "-"

    n_rounds = max((len(r.rounds or []) for r in results), default=1)
    what = f"{count} sequential create+start+wait+delete of /bin/true (busybox bundle)"
    if n_rounds > 1:
        what += f"; {n_rounds} rounds, median round shown"
    lines = [
        what,
        "",
        "| tool | total s | per container ms | pyrt-runc ÷ this | per round | pyrt API ÷ this |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if r.seconds is None:
            lines.append(f"| {r.tool} | failed | - | - | - | - |")
            continue
        lines.append(
            f"| {r.tool} | {r.seconds:.2f} | {r.per_ms:.1f} | {ratio(ref, r)} "
            f"| {spread(ref, r)} | {ratio(api, r)} |"
        )
    return "\n".join(lines)


def machine_line(huge_used: bool) -> str:
    uname = platform.uname()
    versions = []
    for tool in ("runc", "crun"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
            versions.append(out.splitlines()[0].strip())
    layout = "hybrid cgroups" + (" (hugetlb moved to v1 for crun)" if huge_used else "")
    return (
        f"Measured {datetime.date.today().isoformat()} on Linux {uname.release}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {layout}; "
        f"{'; '.join(versions)}."
    )


def remove_cgroup(parent: str) -> None:
    for hier in cgroup_hierarchies():
        top = hier / parent.strip("/")
        if top.exists():
            remove_cgroup_children(top)
            with contextlib.suppress(OSError):
                top.rmdir()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100, help="containers per tool (100)")
    ap.add_argument("--quick", action="store_true", help="3 containers per tool")
    ap.add_argument("--rounds", type=int, default=1, help="runs of every tool (1)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"subset of {','.join(TOOLS)}")
    ap.add_argument("--write-readme", action="store_true",
                    help="put the table into benchmarks/README.md and README.md")  # fmt: skip
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args(argv)
    count = 3 if args.quick else args.count
    if count < 1 or args.rounds < 1:
        ap.error("--count and --rounds must be at least 1")
    names = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in names if t not in TOOLS]
    if unknown or not names:
        ap.error(f"--tools: unknown {unknown or 'empty'}; choose from {','.join(TOOLS)}")
    if os.geteuid() != 0:
        print("bench_runtime: needs root (creates namespaces and cgroups)", file=sys.stderr)
        return 2

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")

    cg_parent = f"/pyrt-bench-{random_suffix()}"
    huge = HugetlbV1()
    results: list[Result] = []
    native_note = ""
    work = Path(tempfile.mkdtemp(prefix="pyrt-bench-"))
    old_term = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        bundle = make_bundle(
            work / "bundle", ["/bin/true"],
            # crun 1.8 knows spec 1.0.x only ("unknown version specified" for 1.2.0);
            # nothing in this bundle needs more, and every tool gets the same file
            **{"ociVersion": "1.0.2", "linux.cgroupsPath": f"{cg_parent}/c",
               "hostname": "bench"},
        )  # fmt: skip
        tools: list[Tool] = []
        for name in names:
            try:
                tools.append(make_tool(name, work))
            except BenchError as e:
                results.append(Result(name, count, None, str(e)))
        # crun first: if it needs the v1 hugetlb mount, every tool then runs on that layout
        tools.sort(key=lambda t: 0 if t.name == "crun" else 1)
        rounds: dict[str, list[Result]] = {t.name: [] for t in tools}
        for rnd in range(args.rounds):
            for tool in tools:
                first = crun_warmup(tool, bundle, work, huge) if tool.name == "crun" else None
                print(f"round {rnd + 1}: running {tool.name} x {count} ...", flush=True)
                rounds[tool.name].append(run_tool(tool, bundle, work, count, first))
        results.extend(merge_rounds(t.name, count, rounds[t.name]) for t in tools)
        explain = work / "pyrt-runc-explain"
        handed = len(explain.read_text().splitlines()) if explain.exists() else 0
        native_note = (
            "pyrt-runc created every container natively (C front end, no Python)"
            if handed == 0
            else f"pyrt-runc handed {handed} creates to its Python CLI (see PYRT_RUNC_EXPLAIN)"
        )
    finally:
        signal.signal(signal.SIGTERM, old_term)
        remove_cgroup(cg_parent)
        huge.undo()
        shutil.rmtree(work, ignore_errors=True)

    results.sort(key=lambda r: TOOLS.index(r.tool))
    table = render_table(results, count)
    block = table + "\n\n" + machine_line(huge.used)
    if any(r.tool == "pyrt-runc" and r.seconds is not None for r in results):
        block += " " + native_note + "."
    print()
    print(block)
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"error: {r.tool}: {r.error}", file=sys.stderr)
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    if args.write_readme and not failed:
        from peers import write_readme_section

        write_readme_section("bench_runtime", block, README)
        if TOP_README.exists():
            write_readme_section("bench_runtime", block, TOP_README)
        print(f"wrote the table into {README} and {TOP_README}")
    elif args.write_readme:
        print("not writing the READMEs: some tools failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
