"""A private containerd for compat tests, with pyrt-runc as the runc binary of its shim.

    from tests.compat.containerd_fixture import busybox_image_fixture, containerd_fixture

    def test_x(containerd: Containerd, busybox_image: str) -> None:
        res = containerd.run(busybox_image, containerd.new_id("x"), "true")  # ctr run --rm

`containerd` (module scope) starts /usr/bin/containerd with a config of its own: root,
state, config and log under pytest's tmp dir; the gRPC and ttrpc sockets in a short dir
under /tmp (a unix socket path must stay under ~100 bytes); the CRI plugin, the restart
monitor, /opt (the `opt` plugin would create /opt/containerd) and the
snapshotters that cannot work here are disabled; overlayfs is the snapshotter. Every test
uses one namespace, `pyrt-test-<session>-<random>`: the default cgroupsPath containerd
writes for a container is /<namespace>/<id>, so the suite's cgroup conventions
(tests/bundle.py) apply to it.

`busybox_image` (module scope) is a one-layer OCI image built here by hand from
tests.bundle.make_busybox_rootfs and imported with `ctr images import`.

The runtime containerd's shim runs is a traced pyrt-runc: a small shell script that runs the
real pyrt-runc (the venv's script, else `python -m pyrt.runtime.cli` from this tree) and
appends each call's argv, exit status and what the call wrote to its --log file to a trace
file: containerd deletes the bundle (and the log.json in it) with the task, so a failed
`ctr run --rm` would otherwise leave nothing to read. `Containerd.diagnostics()` puts that
trace, ctr's output and the end of containerd's debug log into one assertion message.

Teardown kills and removes what tests left (tasks, containers, images, the namespace),
stops containerd (SIGTERM, then SIGKILL), then removes by force, and reports through the
session's LeakScanner.forced_cleanups, anything that should have gone by itself: shims of
this instance, container processes, mounts under its directories, the containers' cgroups,
shim sockets under /run/containerd/s, runc state outside the private --runc-root.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.bundle import (
    CGROUP_PREFIX,
    LeakScanner,
    cgroup_hierarchies,
    make_busybox_rootfs,
    random_suffix,
    read_mounts,
    session_token,
)

CONTAINERD = "containerd"
CTR = "ctr"
SHIM = "containerd-shim-runc-v2"
IMAGE_NAME = "docker.io/library/pyrt-busybox:test"
# where containerd 1.6 puts shim sockets whatever its config says (runtime/v2/shim), and
# where ctr makes fifos without --fifo-dir: created on first use, removed here if we made them
RUN_DIR = Path("/run/containerd")
SHIM_SOCKET_DIR = RUN_DIR / "s"
DEFAULT_FIFO_DIR = RUN_DIR / "fifo"
DEFAULT_RUNC_ROOT = RUN_DIR / "runc"

DISABLED_PLUGINS = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.restart",
    "io.containerd.internal.v1.opt",
    "io.containerd.internal.v1.tracing",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
]

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


# -- the runtime ---------------------------------------------------------------------------


def pyrt_runc_argv() -> list[str]:
    """How to run pyrt-runc: the venv's script, else this interpreter over the source tree.

    PYRT_COMPAT_RUNC=/usr/sbin/runc runs the same tests against another runtime, to check
    the tests themselves against the reference."""
    other = os.environ.get("PYRT_COMPAT_RUNC")
    if other:
        return [other]
    exe = Path(sys.prefix) / "bin" / "pyrt-runc"
    if exe.exists():
        return [str(exe)]
    repo = Path(__file__).resolve().parents[2]
    return ["env", f"PYTHONPATH={repo}", sys.executable, "-m", "pyrt.runtime.cli"]


def _sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def write_traced_runtime(dest: Path, trace: Path, argv: list[str] | None = None) -> Path:
    """An executable at `dest` that runs pyrt-runc with its arguments and appends to `trace`
    the call, its exit status and what it added to the file named by --log."""
    runtime = " ".join(_sh_quote(a) for a in (argv or pyrt_runc_argv()))
    dest.write_text(
        f"""#!/bin/sh
# pyrt-runc as containerd's shim runs it, traced for tests/compat/test_containerd.py
trace={_sh_quote(str(trace))}
log=
prev=
for a in "$@"; do
  [ "$prev" = "--log" ] && log=$a
  case $a in --log=*) log=${{a#--log=}} ;; esac
  prev=$a
done
before=0
if [ -n "$log" ] && [ -f "$log" ]; then before=$(wc -c < "$log"); fi
{runtime} "$@"
rc=$?
{{
  printf '%s runtime %s -> exit %s\\n' "$(date +%T.%N)" "$*" "$rc"
  if [ -n "$log" ] && [ -f "$log" ]; then tail -c +$((before + 1)) "$log"; fi
}} >> "$trace" 2>&1
exit $rc
"""
    )
    dest.chmod(0o755)
    return dest


# -- the image -----------------------------------------------------------------------------


def _goarch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine
    )


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def _write_blob(blobs: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (blobs / digest.split(":", 1)[1]).write_bytes(data)
    return digest, len(data)


def build_oci_archive(rootfs: Path, dest: Path, name: str = IMAGE_NAME) -> Path:
    """Write at `dest` a tar of an OCI image layout holding one image: one gzip layer with
    the contents of `rootfs`, a config with Cmd ["sh"], its manifest, and index.json naming
    it `name` (io.containerd.image.name) with the tag as org.opencontainers.image.ref.name."""
    work = Path(tempfile.mkdtemp(prefix="oci-", dir=dest.parent))
    try:
        layout = work / "layout"
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        raw = work / "layer.tar"
        with tarfile.open(raw, "w", format=tarfile.PAX_FORMAT) as tar:
            for dirpath, dirnames, filenames in os.walk(rootfs):
                dirnames.sort()
                for entry in sorted(dirnames + filenames):
                    path = Path(dirpath) / entry
                    arc = str(path.relative_to(rootfs))
                    tar.add(path, arcname=arc, recursive=False, filter=_tar_filter)
        raw_bytes = raw.read_bytes()
        diff_id = "sha256:" + hashlib.sha256(raw_bytes).hexdigest()
        layer_digest, layer_size = _write_blob(blobs, gzip.compress(raw_bytes, mtime=0))
        config = {
            "created": "1970-01-01T00:00:00Z",
            "architecture": _goarch(),
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["sh"],
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "pyrt tests"}],
        }
        config_digest, config_size = _write_blob(blobs, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": layer_digest, "size": layer_size}],
        }
        manifest_digest, manifest_size = _write_blob(blobs, json.dumps(manifest).encode())
        tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else "latest"
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {
                    "mediaType": MEDIA_MANIFEST,
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "platform": {"architecture": _goarch(), "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
        (layout / "index.json").write_text(json.dumps(index))
        (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
            for entry in ("oci-layout", "index.json", "blobs"):
                tar.add(layout / entry, arcname=entry, filter=_tar_filter)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


# -- processes, mounts, cgroups --------------------------------------------------------------


def _cmdline(pid: str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[:1] != ["Z"]
    except OSError:
        return False


def shim_pids(address: str, container_id: str | None = None) -> list[int]:
    """Shims started by the containerd listening on `address` (matched on their -address
    argument), optionally only the one of `container_id` (its -id argument)."""
    out: list[int] = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        argv = _cmdline(pid)
        if not argv or not os.path.basename(argv[0]).startswith("containerd-shim"):
            continue
        pairs = dict(zip(argv[1:], argv[2:], strict=False))
        if pairs.get("-address") != address:
            continue
        if container_id is not None and pairs.get("-id") != container_id:
            continue
        if _alive(int(pid)):
            out.append(int(pid))
    return out


def pids_in_cgroups_named(marker: str) -> list[int]:
    """Live processes whose /proc/<pid>/cgroup names `marker` in some hierarchy."""
    out: list[int] = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                text = f.read()
        except OSError:
            continue
        if marker in text and _alive(int(pid)):
            out.append(int(pid))
    return out


def kill_and_wait(pids: list[int], timeout: float = 5.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.02)


def mounts_under(*dirs: Path) -> list[str]:
    """Mount points at or below one of `dirs`, deepest first."""
    prefixes = [str(d).rstrip("/") for d in dirs]
    found = {
        target
        for target, _, _ in read_mounts()
        if any(target == p or target.startswith(p + "/") for p in prefixes)
    }
    return sorted(found, key=lambda t: (-t.count("/"), t))


def cgroup_dirs(relative: str) -> list[Path]:
    """/sys/fs/cgroup/<hierarchy>/<relative> in every hierarchy where it exists."""
    rel = relative.strip("/")
    return [h / rel for h in cgroup_hierarchies() if (h / rel).is_dir()]


def remove_cgroup_tree(path: Path) -> bool:
    """rmdir `path` and its sub-cgroups, deepest first; False if some dir stayed."""
    walked = sorted(os.walk(path), key=lambda t: -t[0].count("/"))
    for dirpath, _, _ in walked:
        for _ in range(50):
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
    return not path.exists()


def shim_socket(address: str, namespace: str, container_id: str) -> Path:
    """The socket containerd 1.6 gives the shim of `container_id`:
    /run/containerd/s/<sha256 of "<grpc address>/<namespace>/<id>">."""
    key = os.path.join(address, namespace, container_id)
    return SHIM_SOCKET_DIR / hashlib.sha256(key.encode()).hexdigest()


# -- containerd ----------------------------------------------------------------------------


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a TOML basic string accepts JSON's escapes for these paths


@dataclass
class Containerd:
    """One private containerd: `ctr(...)` talks to it in the test namespace."""

    base: Path  # config, log, root, state, runc root, fifos, trace (under pytest's tmp)
    sockdir: Path  # the short dir holding the sockets
    namespace: str = field(default_factory=lambda: f"{CGROUP_PREFIX}-{session_token()}-"
                           f"{random_suffix()}")  # fmt: skip
    proc: subprocess.Popen[bytes] | None = None
    container_ids: set[str] = field(default_factory=set)
    # the dirs under /run/containerd that did not exist before this instance started
    made_run_dirs: list[Path] = field(default_factory=list)

    @property
    def address(self) -> str:
        return str(self.sockdir / "c.sock")

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def runc_root(self) -> Path:
        return self.base / "runc"

    @property
    def fifo_dir(self) -> Path:
        return self.base / "fifo"

    @property
    def log_path(self) -> Path:
        return self.base / "containerd.log"

    @property
    def trace_path(self) -> Path:
        return self.base / "runtime-trace.log"

    @property
    def runtime(self) -> Path:
        return self.base / "pyrt-runc"

    @property
    def runtime_state(self) -> Path:
        """The --root the shim gives pyrt-runc: the --runc-root plus the namespace."""
        return self.runc_root / self.namespace

    def bundle(self, container_id: str) -> Path:
        return self.state / "io.containerd.runtime.v2.task" / self.namespace / container_id

    def config_text(self) -> str:
        disabled = ", ".join(_toml_str(p) for p in DISABLED_PLUGINS)
        return (
            "version = 2\n"
            f"root = {_toml_str(str(self.root))}\n"
            f"state = {_toml_str(str(self.state))}\n"
            f"disabled_plugins = [{disabled}]\n"
            "\n[grpc]\n"
            f"  address = {_toml_str(self.address)}\n"
            "\n[ttrpc]\n"
            f"  address = {_toml_str(self.address + '.ttrpc')}\n"
            "\n[debug]\n"
            '  address = ""\n'
            '  level = "debug"\n'
            "\n[metrics]\n"
            '  address = ""\n'
        )

    # -- life cycle

    def start(self, timeout: float = 30.0) -> None:
        for d in (self.root, self.state, self.runc_root, self.fifo_dir):
            d.mkdir(parents=True, exist_ok=True)
        write_traced_runtime(self.runtime, self.trace_path)
        self.made_run_dirs = [
            d
            for d in (SHIM_SOCKET_DIR, DEFAULT_FIFO_DIR, DEFAULT_RUNC_ROOT, RUN_DIR)
            if not d.exists()
        ]
        config = self.base / "config.toml"
        config.write_text(self.config_text())
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [CONTAINERD, "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"containerd exited with {self.proc.returncode} while starting:\n"
                    + self.log_tail()
                )
            res = subprocess.run(
                [CTR, "--address", self.address, "version"],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            if res.returncode == 0 and "Server:" in res.stdout:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"containerd did not answer on {self.address} within {timeout}s: "
                    f"{res.stderr.strip()}\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def ctr(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """`ctr --address A --namespace N <args>`; never raises on a non-zero exit."""
        return subprocess.run(
            [CTR, "--address", self.address, "--namespace", self.namespace, *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def run_flags(self) -> list[str]:
        """The `ctr run` flags that make its shim use the traced pyrt-runc and keep the
        runtime's state and the fifos in this instance's own directories."""
        return [
            "--runc-binary", str(self.runtime),
            "--runc-root", str(self.runc_root),
            "--fifo-dir", str(self.fifo_dir),
        ]  # fmt: skip

    def exec_flags(self) -> list[str]:
        """The `ctr tasks exec` flags that keep its fifos in this instance's directory
        (a detached exec's fifos are never removed by ctr)."""
        return ["--fifo-dir", str(self.fifo_dir)]

    def run(
        self,
        image: str,
        container_id: str,
        *cmd: str,
        flags: tuple[str, ...] = ("--rm",),
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """`ctr run <flags> <run_flags()> <image> <id> <cmd...>`."""
        return self.ctr("run", *flags, *self.run_flags(), image, container_id, *cmd,
                        timeout=timeout)  # fmt: skip

    def exec(
        self,
        container_id: str,
        exec_id: str,
        *cmd: str,
        detach: bool = False,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """`ctr tasks exec [-d] --exec-id <exec_id> <id> <cmd...>`, fifos kept private."""
        detach_flag = ["--detach"] if detach else []
        return self.ctr("tasks", "exec", *detach_flag, *self.exec_flags(), "--exec-id", exec_id,
                        container_id, *cmd, timeout=timeout)  # fmt: skip

    def new_id(self, what: str) -> str:
        cid = f"{what}-{random_suffix()}"
        self.container_ids.add(cid)
        return cid

    # -- diagnostics

    def log_tail(self, nbytes: int = 12000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError as e:
            return f"(no containerd log: {e})"
        return data[-nbytes:].decode(errors="replace")

    def trace_tail(self, nbytes: int = 12000) -> str:
        try:
            data = self.trace_path.read_bytes()
        except OSError:
            return "(pyrt-runc was never called)"
        return data[-nbytes:].decode(errors="replace")

    def diagnostics(self, res: subprocess.CompletedProcess[str] | None = None) -> str:
        parts = []
        if res is not None:
            parts.append(
                f"$ {' '.join(map(str, res.args))}\nexit {res.returncode}\n"
                f"--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"
            )
        trace = self.trace_tail()
        parts.append(f"--- pyrt-runc calls and their --log output\n{trace}")
        calls = [line for line in trace.splitlines() if " -> exit " in line]
        if any(not line.endswith("-> exit 0") for line in calls):
            # a call failed; if it died before writing its --log, its stderr went to the
            # container's stdio: show whether pyrt-runc can start at all
            argv = [str(self.runtime), "--version"]
            probe = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            parts.append(
                f"--- probe: {' '.join(argv)} -> exit {probe.returncode}\n"
                f"{probe.stdout}{probe.stderr[-4000:]}"
            )
        parts.append(f"--- containerd log (end)\n{self.log_tail()}")
        return "\n".join(parts)

    # -- leftovers of one container

    def leftovers(self, container_id: str) -> list[str]:
        """What still exists of a container that containerd says it removed."""
        found: list[str] = []
        if shim_pids(self.address, container_id):
            found.append(f"shim of {container_id} still running")
        found += [f"mount {m}" for m in mounts_under(self.bundle(container_id))]
        if self.bundle(container_id).exists():
            found.append(f"bundle {self.bundle(container_id)}")
        if (self.runtime_state / container_id).exists():
            found.append(f"runtime state {self.runtime_state / container_id}")
        found += [f"cgroup {d}" for d in cgroup_dirs(f"{self.namespace}/{container_id}")]
        marker = f"/{self.namespace}/{container_id}"
        found += [f"process {p} in cgroup {marker}" for p in pids_in_cgroups_named(marker)]
        sock = shim_socket(self.address, self.namespace, container_id)
        if sock.exists():
            found.append(f"shim socket {sock}")
        return found

    def wait_gone(self, container_id: str, timeout: float = 10.0) -> list[str]:
        """Wait for the shim of a removed container to finish tidying; what is left then."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.leftovers(container_id)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)

    # -- teardown

    def _ids(self, *args: str) -> list[str]:
        res = self.ctr(*args, timeout=30)
        return [line.strip() for line in res.stdout.splitlines() if line.strip()]

    def remove_everything(self) -> list[str]:
        """Kill and delete tasks, containers, images and the namespace through containerd;
        returns what containerd refused."""
        problems: list[str] = []
        for cid in self._ids("tasks", "ls", "-q"):
            self.container_ids.add(cid)
            # kill, wait for the shim to see the exit, then a plain rm: no second kill
            if task_status(self, cid).get("status") != "STOPPED":
                self.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", cid, timeout=30)
                deadline = time.monotonic() + 15
                while task_status(self, cid).get("status") not in ("STOPPED", None):
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
            res = self.ctr("tasks", "rm", cid, timeout=60)
            if cid in self._ids("tasks", "ls", "-q"):
                res = self.ctr("tasks", "rm", "--force", cid, timeout=60)
            if cid in self._ids("tasks", "ls", "-q"):
                problems.append(f"ctr tasks rm [--force] {cid}: {res.stderr.strip()}")
        for cid in self._ids("containers", "ls", "-q"):
            self.container_ids.add(cid)
            res = self.ctr("containers", "rm", cid, timeout=60)
            if res.returncode != 0:
                problems.append(f"ctr containers rm {cid}: {res.stderr.strip()}")
        for ref in self._ids("images", "ls", "-q"):
            res = self.ctr("images", "rm", "--sync", ref, timeout=60)
            if res.returncode != 0:
                problems.append(f"ctr images rm {ref}: {res.stderr.strip()}")
        res = subprocess.run(
            [CTR, "--address", self.address, "namespaces", "rm", self.namespace],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if res.returncode != 0 and "not found" not in res.stderr:
            problems.append(f"ctr namespaces rm {self.namespace}: {res.stderr.strip()}")
        return problems

    def stop(self) -> list[str]:
        problems: list[str] = []
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return problems
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            problems.append("containerd ignored SIGTERM for 15s: killed")
            proc.kill()
            proc.wait(timeout=15)
        return problems

    def force_cleanup(self) -> list[str]:
        """Remove by force what containerd, its shims and the runtime should have removed;
        returns one line per thing removed so."""
        problems: list[str] = []
        shims = shim_pids(self.address)
        if shims:
            problems.append(f"shims left running: {shims}")
            kill_and_wait(shims)
        marker = f"/{self.namespace}/"
        procs = pids_in_cgroups_named(marker)
        if procs:
            problems.append(f"container processes left in cgroups {marker}*: {procs}")
            kill_and_wait(procs)
        for target in mounts_under(self.base, self.sockdir):
            problems.append(f"mount left: {target}")
            res = subprocess.run(["umount", target], capture_output=True, text=True)
            if res.returncode != 0:
                subprocess.run(["umount", "-l", target], capture_output=True, text=True)
        for top in cgroup_dirs(self.namespace):
            for sub in sorted(p for p in top.iterdir() if p.is_dir()):
                problems.append(f"cgroup left: {sub}")
            remove_cgroup_tree(top)  # the empty parent: runtimes never remove it
            if top.exists():
                problems.append(f"cgroup could not be removed: {top}")
        for cid in sorted(self.container_ids):
            sock = shim_socket(self.address, self.namespace, cid)
            if sock.exists():
                problems.append(f"shim socket left: {sock}")
                sock.unlink(missing_ok=True)
        stray_state = DEFAULT_RUNC_ROOT / self.namespace
        if stray_state.exists():
            problems.append(f"runtime state outside --runc-root: {stray_state}")
            shutil.rmtree(stray_state, ignore_errors=True)
        for d in self.made_run_dirs:  # deepest first; only when empty (another user may be in)
            if d.is_dir() and d != RUN_DIR and d.parent == RUN_DIR and any(d.iterdir()):
                problems.append(f"left in {d}: {sorted(p.name for p in d.iterdir())}")
            with contextlib.suppress(OSError):
                d.rmdir()
        return problems

    def teardown(self) -> list[str]:
        problems: list[str] = []
        if self.proc is not None and self.proc.poll() is None:
            try:
                problems += self.remove_everything()
            except subprocess.TimeoutExpired as e:
                problems.append(f"containerd cleanup timed out: {e}")
        problems += self.stop()
        problems += self.force_cleanup()
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self.sockdir, ignore_errors=True)
        return problems


def require_containerd() -> None:
    if os.geteuid() != 0:
        pytest.skip("containerd: needs euid 0")
    missing = [p for p in (CONTAINERD, CTR, SHIM) if shutil.which(p) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: apt-get install containerd")


@pytest.fixture(scope="module", name="containerd")
def containerd_fixture(
    tmp_path_factory: pytest.TempPathFactory, leak_scanner: LeakScanner
) -> Iterator[Containerd]:
    """A running private containerd; torn down (and checked) at the end of the module."""
    require_containerd()
    base = tmp_path_factory.mktemp("containerd")
    sockdir = Path(tempfile.mkdtemp(prefix="pyrt-ctrd-", dir="/tmp"))
    inst = Containerd(base=base, sockdir=sockdir)
    try:
        inst.start()
    except BaseException:
        leak_scanner.forced_cleanups += [f"containerd {p}" for p in inst.teardown()]
        raise
    yield inst
    leak_scanner.forced_cleanups += [f"containerd: {p}" for p in inst.teardown()]


@pytest.fixture(scope="module", name="busybox_image")
def busybox_image_fixture(containerd: Containerd, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The name of a busybox image imported into `containerd`'s namespace."""
    work = tmp_path_factory.mktemp("busybox-image")
    rootfs = make_busybox_rootfs(work / "rootfs")
    archive = build_oci_archive(rootfs, work / "busybox-oci.tar", IMAGE_NAME)
    shutil.rmtree(rootfs)
    res = containerd.ctr("images", "import", str(archive), timeout=120)
    assert res.returncode == 0, containerd.diagnostics(res)
    listed = containerd.ctr("images", "ls", "-q")
    assert IMAGE_NAME in listed.stdout.split(), (
        f"ctr images import did not create {IMAGE_NAME}:\n{res.stdout}\n{listed.stdout}"
    )
    archive.unlink()
    return IMAGE_NAME


def task_status(inst: Containerd, container_id: str) -> dict[str, Any]:
    """The row of `ctr tasks ls` for `container_id`: {"pid": int, "status": str}, or {}."""
    res = inst.ctr("tasks", "ls")
    for line in res.stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[0] == container_id:
            return {"pid": int(fields[1]), "status": fields[2]}
    return {}
