"""Build OCI bundles for tests and benchmarks: a busybox rootfs plus a config.json.

    from tests.bundle import make_bundle          # or: from bundle import make_bundle
    bundle = make_bundle(tmp_path / "b", ["/bin/sh", "-c", "echo hi"],
                         **{"process.user.uid": 1000})

The rootfs is built from Debian's busybox-static (/bin/busybox): bin/ holds busybox and
one symlink per applet, etc/ a passwd and group with root and nobody, and empty proc, sys,
dev and tmp (1777). Building it once per process and copying it per bundle keeps tests
fast (see `cached_busybox_rootfs`).

Every cgroupsPath this module writes starts with `/pyrt-test-<session>-`, where <session>
is one random token per test session (shared through the PYRT_TEST_SESSION environment
variable), so the leak check can tell this session's cgroups from anybody else's and
`remove_cgroup_parents` can tidy up the parent directories runtimes leave behind.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUSYBOX = Path(os.environ.get("PYRT_TEST_BUSYBOX", "/bin/busybox"))
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PREFIX = "pyrt-test"

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnobody:x:65534:\n"


def session_token() -> str:
    """One random token per test session; child processes inherit it through the env."""
    token = os.environ.get("PYRT_TEST_SESSION")
    if not token:
        token = secrets.token_hex(4)
        os.environ["PYRT_TEST_SESSION"] = token
    return token


def random_suffix(nbytes: int = 4) -> str:
    return secrets.token_hex(nbytes)


def busybox_applets(busybox: Path = BUSYBOX) -> list[str]:
    """The applet names this busybox binary provides (`busybox --list`)."""
    if not busybox.is_file():
        raise FileNotFoundError(
            f"busybox: {busybox} not found; install Debian's busybox-static package"
        )
    out = subprocess.run(
        [str(busybox), "--list"], check=True, capture_output=True, text=True
    ).stdout
    names = [n.strip() for n in out.splitlines() if n.strip()]
    bad = [n for n in names if "/" in n or n in (".", "..")]
    if bad:
        raise ValueError(f"busybox --list: unexpected applet names {bad!r}")
    if "true" not in names or "sh" not in names:
        raise ValueError(f"busybox: {busybox} lacks the 'sh' or 'true' applet")
    return names


def make_busybox_rootfs(dest: Path) -> Path:
    """Build a minimal busybox root filesystem at `dest` (which must not exist yet)."""
    dest = Path(dest)
    dest.mkdir(parents=True)
    bindir = dest / "bin"
    bindir.mkdir()
    shutil.copy2(BUSYBOX, bindir / "busybox")
    os.chmod(bindir / "busybox", 0o755)
    for name in busybox_applets():
        if name == "busybox":
            continue
        (bindir / name).symlink_to("busybox")
    etc = dest / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(_PASSWD)
    (etc / "group").write_text(_GROUP)
    (etc / "hostname").write_text("pyrt-test\n")
    for d in ("proc", "sys", "dev", "root", "run", "var"):
        (dest / d).mkdir(mode=0o755)
    tmp = dest / "tmp"
    tmp.mkdir()
    os.chmod(tmp, 0o1777)
    return dest


def copy_rootfs(src: Path, dest: Path) -> Path:
    """Copy a rootfs (symlinks, modes and owners kept; no hard links shared with src)."""
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"copy_rootfs: destination {dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--", str(src), str(dest)], check=True)
    return dest


def pyrt_runc_command() -> list[str]:
    """argv prefix that runs pyrt-runc: this interpreter's venv's script if there is one."""
    exe = Path(sys.prefix) / "bin" / "pyrt-runc"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("pyrt-runc")
    return [found] if found else [sys.executable, "-m", "pyrt.runtime.cli"]


_cached_rootfs: Path | None = None


def cached_busybox_rootfs(cache_dir: Path | None = None) -> Path:
    """A busybox rootfs built once per process; copy it, never modify it."""
    global _cached_rootfs
    if _cached_rootfs is not None and (_cached_rootfs / "bin" / "busybox").is_file():
        return _cached_rootfs
    base = (
        Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp(prefix="pyrt-rootfs-"))
    )
    _cached_rootfs = make_busybox_rootfs(base / "busybox-rootfs")
    return _cached_rootfs


def set_dotted(doc: dict[str, Any], dotted: str, value: Any) -> None:
    """Set doc["a"]["b"]["c"] = value for dotted == "a.b.c", creating dicts on the way.

    A path component that is an integer indexes a list ("process.args.0").
    """
    parts = dotted.split(".")
    if not dotted or any(p == "" for p in parts):
        raise ValueError(f"override {dotted!r}: empty path component")
    node: Any = doc
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = node[_index(part, where, len(node))]
        elif isinstance(node, dict):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, dict | list):
                raise ValueError(f"override {dotted!r}: {where} is a {type(nxt).__name__}")
            node = nxt
        else:
            raise ValueError(f"override {dotted!r}: cannot descend into {type(node).__name__}")
    last = parts[-1]
    if isinstance(node, list):
        node[_index(last, dotted, len(node))] = value
    else:
        node[last] = value


def _index(part: str, where: str, length: int) -> int:
    try:
        idx = int(part)
    except ValueError:
        raise ValueError(f"override: {where} indexes a list, {part!r} is not an integer") from None
    if not -length <= idx < length:
        raise ValueError(f"override: {where} index {idx} out of range (length {length})")
    return idx


def make_config(
    args: list[str], *, container_id: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """The config.json document make_bundle writes (see there)."""
    from pyrt.runtime.default_spec import default_spec

    if not args or not all(isinstance(a, str) for a in args):
        raise ValueError(f"make_bundle: args must be a non-empty list of str, got {args!r}")
    cid = container_id or f"c-{random_suffix()}"
    config: dict[str, Any] = copy.deepcopy(default_spec())
    process = config.setdefault("process", {})
    process["terminal"] = False
    process["args"] = list(args)
    config["hostname"] = f"pyrt-{random_suffix(3)}"
    config.setdefault("root", {})["path"] = "rootfs"
    linux = config.setdefault("linux", {})
    linux["cgroupsPath"] = f"/{CGROUP_PREFIX}-{session_token()}-{random_suffix()}/{cid}"
    for dotted, value in overrides.items():
        set_dotted(config, dotted, value)
    return config


def make_bundle(
    dest: Path,
    args: list[str],
    *,
    rootfs: Path | None = None,
    container_id: str | None = None,
    **overrides: Any,
) -> Path:
    """Write an OCI bundle at `dest`: dest/rootfs (busybox) and dest/config.json.

    config.json is pyrt's default spec (like `runc spec`) with process.terminal False, the
    given args, a unique hostname and linux.cgroupsPath "/pyrt-test-<random>/<id>", then
    each dotted-path override applied: make_bundle(d, ["id"], **{"process.user.uid": 1000}).
    The rootfs is a copy of `rootfs` if given, else of the per-process cached busybox
    rootfs; an existing dest/rootfs is kept as it is.
    """
    dest = Path(dest)
    config = make_config(args, container_id=container_id, **overrides)
    dest.mkdir(parents=True, exist_ok=True)
    root_path = Path(config["root"]["path"])
    rootfs_dest = root_path if root_path.is_absolute() else dest / root_path
    if not rootfs_dest.exists():
        copy_rootfs(rootfs if rootfs is not None else cached_busybox_rootfs(), rootfs_dest)
    tmp = dest / "config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, dest / "config.json")
    return dest


# -- cgroups made through these bundles ------------------------------------------------------


def cgroup_hierarchies() -> list[Path]:
    """Mount points of every cgroup hierarchy (v1 and unified) in /proc/self/mounts."""
    found: list[Path] = []
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 3 and fields[2] in ("cgroup", "cgroup2"):
                path = Path(_unescape_mount(fields[1]))
                if path not in found:
                    found.append(path)
    return found


def _unescape_mount(field: str) -> str:
    """Undo the octal escapes (\\040 for space...) of /proc/mounts fields."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def remove_cgroup_parents(token: str | None = None) -> list[str]:
    """rmdir the empty top-level `/pyrt-test-<token>-*` cgroup dirs in every hierarchy.

    Runtimes remove the container's own cgroup on delete but not the parents they created
    on the way. Only empty directories go (rmdir fails on a cgroup with children or
    processes); returns the ones that could not be removed.
    """
    prefix = f"{CGROUP_PREFIX}-{token or session_token()}-"
    left: list[str] = []
    for hier in cgroup_hierarchies():
        try:
            entries = list(os.scandir(hier))
        except OSError:
            continue
        for entry in entries:
            if not (entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False)):
                continue
            try:
                os.rmdir(entry.path)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    left.append(entry.path)
    return left


# -- leak detection ------------------------------------------------------------------------


def read_mounts(path: str = "/proc/self/mountinfo") -> list[tuple[str, str, str]]:
    """(mount point, fs type, source) for every mount this process can see."""
    out: list[tuple[str, str, str]] = []
    with open(path) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf, rf = left.split(), right.split()
            if len(lf) < 5 or len(rf) < 2:
                continue
            out.append((_unescape_mount(lf[4]), rf[0], _unescape_mount(rf[1])))
    return out


def cgroup_dirs_named(pattern: str) -> set[str]:
    """Every cgroup directory, in every hierarchy, whose path below the hierarchy's root
    contains `pattern` (so a container's cgroup under a pyrt-test-* parent counts too)."""
    found: set[str] = set()
    for hier in cgroup_hierarchies():
        for dirpath, dirnames, _ in os.walk(hier, onerror=lambda e: None):
            inside = pattern in os.path.relpath(dirpath, hier)
            for d in dirnames:
                if inside or pattern in d:
                    found.add(os.path.join(dirpath, d))
    return found


def _proc_read(pid: str, name: str) -> str:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    cmdline: str
    why: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.why}): {self.cmdline[:200]}"


def processes_referencing(roots: list[str], cgroup_marker: str | None) -> list[ProcInfo]:
    """Processes whose cmdline mentions one of `roots`, or whose cgroup path contains
    `cgroup_marker` (container processes: their cmdline is the container's own)."""
    me = os.getpid()
    out: list[ProcInfo] = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        cmdline = _proc_read(pid, "cmdline").replace("\0", " ").strip()
        if not cmdline:  # kernel thread or already gone
            continue
        why = next((f"cmdline mentions {r}" for r in roots if r and r in cmdline), "")
        if not why and cgroup_marker:
            cg = _proc_read(pid, "cgroup")
            if cgroup_marker in cg:
                why = f"in a cgroup named {cgroup_marker}*"
        if why:
            out.append(ProcInfo(int(pid), cmdline, why))
    return out


def pyrt_links() -> dict[str, str]:
    """Network links pyrt made (bridges, host ends of veths): name -> owner, from their
    ifalias "pyrt:<engine root>"."""
    out = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/sys/class/net"):
            try:
                with open(f"/sys/class/net/{name}/ifalias") as f:
                    alias = f.read().strip()
            except OSError:
                continue
            if alias.startswith("pyrt:"):
                out[name] = alias[5:]
    return out


def pyrt_nft_tables() -> dict[str, str]:
    """nftables tables pyrt made: "ip <name>" -> owner, from their comment "pyrt:<root>"."""
    import re

    out: dict[str, str] = {}
    try:
        listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                                timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return out
    for line in listed.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[0] != "table":
            continue
        text = subprocess.run(["nft", "list", "table", parts[1], parts[2]], capture_output=True,
                              text=True, timeout=10).stdout
        m = re.search(r'^\s*comment "pyrt:([^"]*)"', text, re.MULTILINE)
        if m:
            out[f"{parts[1]} {parts[2]}"] = m.group(1)
    return out


@dataclass
class Snapshot:
    mounts: set[tuple[str, str, str]]
    cgroups: set[str]
    pids: set[int]
    loops: set[tuple[str, str]] = field(default_factory=set)
    links: set[str] = field(default_factory=set)
    nft_tables: set[str] = field(default_factory=set)


def loop_devices() -> set[tuple[str, str]]:
    """(loop device, backing file) of every loop device in use (volumes of a filesystem
    device are tested on loop devices over image files)."""
    out: set[tuple[str, str]] = set()
    with contextlib.suppress(OSError):
        for name in os.listdir("/sys/block"):
            if name.startswith("loop"):
                with contextlib.suppress(OSError):
                    backing = Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
                    out.add((f"/dev/{name}", backing))
    return out


@dataclass
class LeakScanner:
    """Finds what the suite left behind, relative to a snapshot taken at session start.

    roots: the session's temporary roots (pytest's basetemp...); a mount under one of
    them, or a process whose cmdline mentions one, is a leak. Any mount or cgroup dir whose
    path contains `marker` ("pyrt-test") and that was not there at the start is a leak too.
    """

    roots: list[str]
    marker: str = CGROUP_PREFIX
    cgroup_marker: str | None = None
    baseline: Snapshot | None = None
    # what fixtures had to clean up by force (a runtime that left things behind)
    forced_cleanups: list[str] = field(default_factory=list)

    def snapshot(self) -> Snapshot:
        return Snapshot(
            mounts=set(read_mounts()),
            cgroups=cgroup_dirs_named(self.marker),
            pids={p.pid for p in processes_referencing(self.roots, self.cgroup_marker)},
            loops=loop_devices(),
            links=set(pyrt_links()),
            nft_tables=set(pyrt_nft_tables()),
        )

    def take_baseline(self) -> None:
        self.baseline = self.snapshot()

    def _under_root(self, path: str) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in self.roots)

    def leaked_mounts(self) -> list[str]:
        base = self.baseline.mounts if self.baseline else set()
        return sorted(
            f"{target} ({fstype} from {source})"
            for (target, fstype, source) in set(read_mounts()) - base
            if self._under_root(target) or self.marker in target or self.marker in source
        )

    def leaked_cgroups(self) -> list[str]:
        base = self.baseline.cgroups if self.baseline else set()
        return sorted(c for c in cgroup_dirs_named(self.marker) - base if os.path.isdir(c))

    def leaked_loops(self) -> list[str]:
        base = self.baseline.loops if self.baseline else set()
        return sorted(f"{dev} (over {backing})" for dev, backing in loop_devices() - base
                      if self._under_root(backing.removesuffix(" (deleted)")))

    def leaked_processes(self) -> list[str]:
        base = self.baseline.pids if self.baseline else set()
        return [
            str(p)
            for p in processes_referencing(self.roots, self.cgroup_marker)
            if p.pid not in base
        ]

    def leaked_links(self) -> list[str]:
        """Bridges and veths an engine under one of the roots made and left."""
        base = self.baseline.links if self.baseline else set()
        return sorted(f"{name} (made by {owner})" for name, owner in pyrt_links().items()
                      if name not in base and self._under_root(owner))

    def leaked_nft_tables(self) -> list[str]:
        base = self.baseline.nft_tables if self.baseline else set()
        return sorted(f"{name} (made by {owner})" for name, owner in pyrt_nft_tables().items()
                      if name not in base and self._under_root(owner))

    def all_leaks(self) -> dict[str, list[str]]:
        return {
            "mounts": self.leaked_mounts(),
            "cgroups": self.leaked_cgroups(),
            "processes": self.leaked_processes(),
            "loop devices": self.leaked_loops(),
            "links": self.leaked_links(),
            "nft tables": self.leaked_nft_tables(),
            "forced cleanups": list(self.forced_cleanups),
        }


# -- forced cleanup of a runtime root ----------------------------------------------------


def _container_ids(root: Path) -> set[str]:
    """Containers under a runtime root: Runtime.list(), or the root's subdirectories
    when the runtime cannot be asked."""
    try:
        from pyrt.runtime.runtime import Runtime

        ids: set[str] = set()
        for c in Runtime(str(root)).list():
            cid = c if isinstance(c, str) else getattr(c, "id", None)
            if isinstance(c, dict):
                cid = c.get("id")
            if isinstance(cid, str):
                ids.add(cid)
        return ids
    except Exception:  # cleanup goes on with what the directory shows
        with contextlib.suppress(OSError):
            return {e.name for e in os.scandir(root) if e.is_dir() and e.name[0] != "."}
        return set()


def _destroy(root: Path, cid: str) -> list[str]:
    """Kill and delete one container; returns the errors met (empty when it went fine)."""
    errors: list[str] = []
    try:
        from pyrt.errors import NotFound
        from pyrt.runtime.runtime import Runtime

        rt = Runtime(str(root))
        with contextlib.suppress(Exception):
            rt.kill(cid, signal.SIGKILL, all=True)
        with contextlib.suppress(NotFound):
            rt.delete(cid, force=True)
        return []
    except Exception as e:
        errors.append(f"Runtime.delete({cid!r}, force=True): {type(e).__name__}: {e}")
    cmd = [*pyrt_runc_command(), "--root", str(root), "delete", "--force", cid]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        errors.append(f"{' '.join(cmd)}: {e}")
    else:
        if res.returncode != 0:
            errors.append(f"{' '.join(cmd)}: exit {res.returncode}: {res.stderr.strip()[:300]}")
    return errors


def _kill_processes(procs: list[ProcInfo]) -> None:
    for p in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p.pid) for p in procs):
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie has left its cgroups)."""
    stat = _proc_read(str(pid), "stat")
    return bool(stat) and stat.rpartition(")")[2].split()[:1] != ["Z"]


def _remove_cgroup_tree(path: str) -> None:
    for dirpath, _, _ in sorted(os.walk(path), key=lambda t: -t[0].count("/")):
        for _ in range(50):
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)


def clean_runtime_root(root: Path, scanner: LeakScanner | None = None) -> list[str]:
    """Kill and delete every container under `root`. What the runtime did not remove by
    itself (containers it refused to delete, processes, cgroups) is removed here by force
    and reported in the returned list (and in scanner.forced_cleanups)."""
    problems: list[str] = []
    for cid in sorted(_container_ids(root)):
        problems += _destroy(root, cid)
    if os.geteuid() == 0:
        marker = f"{CGROUP_PREFIX}-{session_token()}-"
        stray = processes_referencing([str(root)], marker)
        if stray:
            problems += [f"process left running: {p}" for p in stray]
            _kill_processes(stray)
        left = remove_cgroup_parents()
        if left:
            problems += [f"cgroup left: {c}" for c in cgroup_dirs_named(marker)]
            for c in left:
                _remove_cgroup_tree(c)
    if scanner is not None:
        scanner.forced_cleanups += [f"{root}: {p}" for p in problems]
    return problems


def pyrt_pythonpath() -> str:
    """PYTHONPATH for a subprocess that must import the same pyrt as this test process:
    the source tree in a dev build, the venv's installed package in CI (whose source tree
    has no compiled _core)."""
    import pyrt

    return str(Path(pyrt.__file__).resolve().parent.parent)


def suite_cgroup_parent() -> str:
    """A cgroup parent of the suite's own for an engine or daemon under test: the suite
    removes empty ones after each test and its leak check reports anything left in them."""
    return f"/{CGROUP_PREFIX}-{session_token()}-{random_suffix()}"
