"""The pyrt CLI's start-up floor: what a command costs before (and apart from) the daemon.

Measured with the venv's interpreter and scripts (`--pyrt-bin`, default this interpreter's
directory), each command `--runs` times in turn, wall time and CPU time (user + system of
the child, from getrusage) per run; medians are reported (and the minimum wall time):

- `python -c pass`: the interpreter's own floor (site, the venv's .pth files);
- `import run path`: `python -c "import pyrt.cli.app, pyrt.cli.containers"`, the modules
  `pyrt run` loads before its first request;
- `import run path + removed modules`: the same plus http.client, urllib.parse, argparse,
  typing and platform, which the run path imported before (for comparison);
- `pyrt run` (C front end floor): the venv's bin/pyrt (csrc/cli/) parsing a `run`, building
  its create body and connecting to a socket nobody serves, then exec'ing /bin/true where
  it would exec the Python CLI: what the C front end costs before its first request;
- `pyrt version`: client and server versions, one request to a private pyrtd (bin/pyrt
  hands it to the Python CLI, bin/pyrt-py);
- `pyrt-py version`: the same, the Python CLI started directly (the difference is the
  front end's hand-over);
- `pyrt ps`: one request, on the fast path (no typer);
- `pyrt --help`: typer's help (no daemon);
- peers, for scale: `docker --version` and `podman --version` (Go clients, no daemon).

It also lists the modules the run path imports (`python -X importtime`), checks that none
of typer, pydantic, rich, pyroute2, http.client, email, ssl, argparse is among them, and
gives the import time they add up to.

    python benchmarks/bench_cli_startup.py [--runs N] [--quick] [--write-readme]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peers import DOCKER_CLI, PODMAN, PeerError, PrivatePyrtd, write_results

HEAVY = ("typer", "pydantic", "rich", "pyroute2", "http.client", "email", "ssl", "argparse",
         "urllib.parse", "typing")
RUN_PATH = "import pyrt.cli.app, pyrt.cli.containers"
REMOVED = "import http.client, urllib.parse, argparse, typing, platform"


def time_cmd(argv: list[str], env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds) of each of `runs` runs of argv (which must succeed)."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            raise PeerError(f"{' '.join(argv)}: exit {proc.returncode}: "
                            f"{proc.stderr.decode(errors='replace')[-500:]}")
    return walls, cpus


def run_path_modules(python: str, env: dict[str, str]) -> tuple[list[str], float]:
    """The modules the run path imports beyond the interpreter's start, and their
    cumulative import time in ms (python -X importtime, top-level entries)."""
    base = subprocess.run([python, "-X", "importtime", "-c", "pass"], env=env,
                          capture_output=True, text=True, check=True).stderr
    out = subprocess.run([python, "-X", "importtime", "-c", RUN_PATH], env=env,
                         capture_output=True, text=True, check=True).stderr

    def parse(text: str) -> list[tuple[str, int, bool]]:
        """(module, cumulative us, imported at top level) per `import time:` line."""
        rows = []
        for line in text.splitlines():
            parts = line.split("|")
            if not line.startswith("import time:") or len(parts) != 3 or \
                    "imported package" in line:
                continue
            name = parts[2].rstrip()
            rows.append((name.strip(), int(parts[1]), not name.startswith("  ")))
        return rows

    have = {n for n, _, _ in parse(base)}
    rows = parse(out)
    mods = [n for n, _, _ in rows if n not in have]
    total_us = sum(cum for n, cum, top in rows if top and n not in have)
    return mods, total_us / 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=None, help="runs per command (30)")
    ap.add_argument("--quick", action="store_true", help="8 runs; skip missing peers")
    ap.add_argument("--pyrt-bin", type=Path, default=Path(sys.executable).parent)
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args(argv)
    runs = args.runs or (8 if args.quick else 30)
    py, pyrt = str(args.pyrt_bin / "python"), str(args.pyrt_bin / "pyrt")
    pyrt_py = str(args.pyrt_bin / "pyrt-py")
    if not Path(pyrt).exists():
        print(f"bench_cli_startup: {pyrt} not found", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("bench_cli_startup: needs root (it starts a pyrtd)", file=sys.stderr)
        return 1
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's shell: compiled modules are cached
    work = Path(tempfile.mkdtemp(prefix="pyrt-bench-startup-", dir="/var/tmp"))
    rows: list[tuple[str, str, list[float], list[float]]] = []
    try:
        with PrivatePyrtd(work / "pyrt", args.pyrt_bin) as y:
            denv = {**env, "PYRT_HOST": y.host, "PYRT_NO_AUTOSTART": "1"}
            nobody = f"unix://{work}/nobody.sock"
            front = [pyrt, "-H", nobody, "run", "--rm", "-e", "A=1", "--name", "x", "img", "true"]
            # the front end execs $PYRT_CLI_PYTHON when nothing answers: /bin/true here
            extra_env = {"pyrt run (C front end floor)": {"PYRT_CLI_PYTHON": "/bin/true"}}
            cmds = [
                ("python -c pass", "the interpreter", [py, "-c", "pass"]),
                ("pyrt run (C front end floor)", "parse, create body, connect (no daemon), "
                 "exec /bin/true", front),
                ("import run path", RUN_PATH, [py, "-c", RUN_PATH]),
                ("import run path + removed modules", f"{REMOVED}; {RUN_PATH}",
                 [py, "-c", f"{REMOVED}; {RUN_PATH}"]),
                ("pyrt version", "one request (bin/pyrt execs pyrt-py)", [pyrt, "version"]),
                ("pyrt-py version", "one request (the Python CLI directly)",
                 [pyrt_py, "version"]),
                ("pyrt ps", "one request (fast path, no typer)", [pyrt, "ps"]),
                ("pyrt --help", "typer, no daemon", [pyrt, "--help"]),
            ]
            for name, exe in (("docker --version", DOCKER_CLI), ("podman --version", PODMAN)):
                if exe.exists():
                    cmds.append((name, "Go client, no daemon", [str(exe), "--version"]))
                elif not args.quick:
                    raise PeerError(f"{exe} not installed")
            for name, _, cmd in cmds:  # warm the page cache and __pycache__
                time_cmd(cmd, {**denv, **extra_env.get(name, {})}, 2)
            results: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n, _, _ in
                                                                   cmds}
            for _ in range(runs):  # interleaved, so load changes hit every command alike
                for name, _, cmd in cmds:
                    w, c = time_cmd(cmd, {**denv, **extra_env.get(name, {})}, 1)
                    results[name][0].extend(w)
                    results[name][1].extend(c)
            rows = [(n, what, *results[n]) for n, what, _ in cmds]
            mods, import_ms = run_path_modules(py, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    heavy = [m for m in mods if m in HEAVY or m.split(".")[0] in ("typer", "pydantic", "rich",
                                                                   "pyroute2", "email")]
    lines = [f"{runs} runs per command, interleaved; CPU = user + system of the process",
             "", "| command | what | median wall ms | min wall ms | median CPU ms |",
             "| --- | --- | ---: | ---: | ---: |"]
    for name, what, walls, cpus in rows:
        lines.append(f"| `{name}` | {what} | {statistics.median(walls) * 1000:.1f} | "
                     f"{min(walls) * 1000:.1f} | {statistics.median(cpus) * 1000:.1f} |")
    lines += ["", f"The run path imports {len(mods)} modules beyond the interpreter's own "
              f"({import_ms:.1f} ms by -X importtime): {', '.join(mods)}.",
              "Heavy modules on it: " + (", ".join(heavy) if heavy else "none") + f" (checked: "
              f"{', '.join(HEAVY)}, pydantic, rich, pyroute2, email).", "",
              f"Measured {datetime.date.today().isoformat()} on Linux "
              f"{platform.uname().release}, {os.cpu_count()} CPUs (shared with other work), "
              f"Python {platform.python_version()}."]
    block = "\n".join(lines)
    print(block)
    if args.write_readme:
        # the interpreter and flags really used
        shown = " ".join([sys.executable, "benchmarks/bench_cli_startup.py",
                          *(sys.argv[1:] if argv is None else argv)])
        write_results("bench_cli_startup", shown, block)
    return 1 if heavy else 0


if __name__ == "__main__":
    sys.exit(main())
