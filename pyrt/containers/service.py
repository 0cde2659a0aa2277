"""The container service: create/start/stop/kill/restart/pause/wait/remove/rename/inspect/
list/logs/attach of containers, in process.

- Records are rows of `containers` (pyrt.containers.record); a create inserts the row as
  "creating" first (that reserves the name), prepares the rootfs, etc files, spec and
  bundle, then marks it "created"; any failure removes all of it, and a crash in between
  is cleaned up by reconcile() at the next start.
- start: the overlay is mounted (it stays mounted while the record exists), then pyrt-shim
  is started by vfork (this big, many-threaded process is never forked) and runs
  pyrt-runc's native create (C: config.json, cgroups, spawn, state.json), so the shim is
  the container's parent (pipes or a pty held by the shim; json-file log; exit.json). A
  spec pyrt-runc leaves to Python (hooks, user namespaces, a seccomp profile not compiled
  yet...) is created by the in-process runtime instead, through
  pyrt._core.spawn_detached, which execs the shim in adopt mode. Either way the shim's
  `start` reads the runtime's exec fifo, readiness is one line on a pipe, and the exit one
  line on the shim's socket (pyrt.containers.monitor).
- Exit codes as Docker: 125 engine error, 126 not executable, 127 not found, 128+n
  killed by signal n (137 with State.OOMKilled when the memory cgroup's OOM killer
  struck, as the shim's exit record says).
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import json
import os
import re
import secrets
import select
import shutil
import signal as _signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, cast, overload

from pyrt.containers.names import generate_unique, validate_name
from pyrt.containers.options import ContainerConfig, HostConfig, signal_number
from pyrt.containers.record import INSERT_SQL, Container, ContainerRecord, Paths
from pyrt.containers.shapes import config_view, host_config_view
from pyrt.containers.trash import Trash
from pyrt.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PyrtError,
    SystemError_,
)

if TYPE_CHECKING:
    from pyrt.containers.attach import Attachment
    from pyrt.containers.exec import ExecConfig, ExecInstance, RunningExec
    from pyrt.containers.logs import LogEntry, TimeArg
    from pyrt.containers.monitor import Monitor
    from pyrt.engine import RunResult
    from pyrt.events import EventBus
    from pyrt.images.models import Image
    from pyrt.images.service import ImageService
    from pyrt.metadata.db import Database
    from pyrt.networks.service import NetworkService
    from pyrt.runtime.runtime import Runtime
    from pyrt.snapshots.service import SnapshotService
    from pyrt.volumes.service import VolumeService

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SIZE_RE = re.compile(r"^(\d+)([kmg]?)b?$", re.IGNORECASE)
DEFAULT_STOP_TIMEOUT = 10
ZERO_TIME = "0001-01-01T00:00:00Z"


def now_rfc3339() -> str:
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _parse_size(text: str, what: str) -> int:
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise InvalidArgument(f"{what}: {text!r} is not a size (like 10m)")
    mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
    return int(m.group(1)) * mult


def log_options(host: HostConfig) -> tuple[int, int]:
    """(max-size bytes, max-file) of a json-file LogConfig; InvalidArgument for others."""
    cfg = host.LogConfig or {}
    kind = cfg.get("Type") or "json-file"
    if kind != "json-file":
        raise InvalidArgument(f"HostConfig.LogConfig.Type: log driver '{kind}' is not "
                              "supported (json-file)")  # fmt: skip
    opts = cfg.get("Config") or {}
    if not isinstance(opts, dict):
        raise InvalidArgument("HostConfig.LogConfig.Config: must be an object")
    for key in opts:
        if key not in ("max-size", "max-file", "compress", "labels", "env", "tag"):
            raise InvalidArgument(f"HostConfig.LogConfig.Config: unknown log opt '{key}' "
                                  "for json-file")  # fmt: skip
    size = _parse_size(str(opts["max-size"]), "HostConfig.LogConfig.Config.max-size") if \
        opts.get("max-size") not in (None, "", "-1") else 0  # fmt: skip
    nfile = 1
    if opts.get("max-file") not in (None, ""):
        try:
            nfile = int(str(opts["max-file"]))
        except ValueError:
            nfile = 0
        if not 1 <= nfile <= 1000:
            raise InvalidArgument("HostConfig.LogConfig.Config.max-file: must be 1..1000")
    return size, nfile


@functools.cache
def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)  # once: loading it is most of an unmount's cost


def _umount(path: Path) -> None:
    import ctypes

    libc = _libc()
    if libc.umount2(str(path).encode(), 2) != 0:  # MNT_DETACH
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not mounted; ENOENT: gone
            raise SystemError_(f"umount {path}: {os.strerror(err)}", err)


def mounts_under(prefix: Path) -> list[str]:
    """Mount points at or below prefix (from /proc/self/mountinfo), deepest first."""
    out = []
    pre = str(prefix).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target.startswith(pre):
                out.append(target)
    return sorted(out, key=len, reverse=True)


class ContainerService:
    def __init__(
        self,
        *,
        root: Path,
        run_root: Path,
        db: Database,
        images: ImageService,
        snapshots: SnapshotService,
        runtime: Runtime,
        events: EventBus,
        cgroup_parent: str = "/pyrt",
        shim_path: Path | None = None,
        volumes: VolumeService | None = None,
    ) -> None:
        from pyrt.containers.monitor import Monitor
        from pyrt.dirhint import spread_subdirectories
        from pyrt.volumes.service import VolumeService

        self.root = root / "containers"
        self.run_root = run_root / "containers"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o710)
        self.run_root.mkdir(parents=True, exist_ok=True, mode=0o710)
        for d in (self.root, self.run_root):
            spread_subdirectories(d)  # each container's files in a block group of their own
        self.db = db
        self.images = images
        self.snapshots = snapshots
        self.runtime = runtime
        self.events = events
        self.cgroup_parent = cgroup_parent
        self._shim_path = shim_path
        self._runc_path: str | None = None  # pyrt-runc for _create_native ("": none)
        self._glock = threading.RLock()  # names: check-then-write of create and rename
        # guards _locks only, so taking one container's lock never waits for another's
        # create (which holds _glock across its database writes)
        self._locks_guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}
        # exits and removals: one lock, a condition per waited-for container (a notify wakes
        # only that container's waiters, not every waiting thread of the engine)
        self._cond_lock = threading.Lock()
        self._conds: dict[str, threading.Condition] = {}
        self._exit_gen: dict[str, int] = {}
        self._removed: dict[str, int] = {}  # id -> its last exit code
        # AutoRemove containers their creator removes itself after reading the logs (pyrt.run
        # with remove=True): the monitor leaves them be at their exit
        self.removed_by_caller: set[str] = set()
        self._execs: dict[str, _Exec] = {}  # exec id -> what this engine knows of it
        self._exec_lock = threading.Lock()
        self.monitor: Monitor = Monitor(self)
        # the mounts of containers (volumes, binds, tmpfs): pyrt.volumes
        self.volumes = volumes if volumes is not None else VolumeService(root, events=events)
        self.networks: NetworkService | None = None  # the Engine sets it
        # a removed container's directories: renamed away now, deleted in the background
        self.trash = Trash([root / "trash", run_root / "trash"])
        # the runtime's state directories go the same way (see Runtime.discard)
        self.runtime.discard = lambda path: self.trash.discard(Path(path))

    # ------------------------------------------------------------------ plumbing

    def _lock(self, cid: str) -> threading.RLock:
        with self._locks_guard:
            lk = self._locks.get(cid)
            if lk is None:
                lk = self._locks[cid] = threading.RLock()
            return lk

    def paths(self, cid: str) -> Paths:
        return Paths(self.root / cid, self.run_root / cid, cid)

    def shim_path(self) -> Path:
        if self._shim_path is None:
            from pyrt.containers.shim_client import find_shim

            self._shim_path = find_shim()
        return self._shim_path

    def _row(self, cid: str) -> ContainerRecord | None:
        row = self.db.query_one("SELECT * FROM containers WHERE id = ?", (cid,))
        return ContainerRecord.from_row(row) if row is not None else None

    def get_record(self, cid: str) -> ContainerRecord:
        rec = self._row(cid)
        if rec is None:
            raise NotFound(f"No such container: {cid}")
        return rec

    def resolve(self, ref: str) -> ContainerRecord:
        """By full id, name (with or without "/"), or unique id prefix."""
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("container: a name or id is required")
        if _HEX64.match(ref):
            rec = self._row(ref)
            if rec is not None and rec.state != "creating":
                return rec
        row = self.db.query_one("SELECT * FROM containers WHERE name = ? AND state != "
                                "'creating'", (ref.lstrip("/"),))  # fmt: skip
        if row is not None:
            return ContainerRecord.from_row(row)
        if re.fullmatch(r"[0-9a-f]{1,64}", ref):
            rows = self.db.query("SELECT * FROM containers WHERE id LIKE ? AND state != "
                                 "'creating' LIMIT 2", (ref + "%",))  # fmt: skip
            if len(rows) > 1:
                raise InvalidArgument(
                    f"multiple containers match the id prefix '{ref}': give more characters"
                )
            if rows:
                return ContainerRecord.from_row(rows[0])
        raise NotFound(f"No such container: {ref}")

    def _resolve_id(self, ref: str) -> str:
        """resolve(ref).id; a full id is checked without reading (and parsing) its whole
        record, for the operations that read it again under the container's lock."""
        if isinstance(ref, str) and _HEX64.match(ref):
            row = self.db.query_one("SELECT state FROM containers WHERE id = ?", (ref,))
            if row is not None and row["state"] != "creating":
                return ref
        return self.resolve(ref).id

    def _update(self, cid: str, *, sync: bool = True, **cols: Any) -> None:
        sets = ", ".join(f"{k} = :{k}" for k in cols)
        self.db.execute(f"UPDATE containers SET {sets} WHERE id = :id", {**cols, "id": cid},
                        sync=sync)  # fmt: skip

    def handle(self, ref: str) -> Container:
        """The ContainerHandle for exec/cp/diff/commit/top/stats."""
        rec = self.resolve(ref)
        lowers: list[str] = []
        chain = self._image_top_chain(rec.image_id)
        if chain is not None:
            with contextlib.suppress(PyrtError):
                lowers = self.snapshots.lower_dirs(chain)
                targets = self.snapshots.mount_targets(chain, create=False)
                lowers = [str(targets), *lowers] if targets is not None else lowers
        return Container(rec, self.paths(rec.id), self.runtime, lowers)

    def _image_top_chain(self, image_id: str) -> str | None:
        row = self.db.query_one("SELECT chain_id FROM image_layers WHERE image_id = ? "
                                "ORDER BY position DESC LIMIT 1", (image_id,))  # fmt: skip
        return str(row["chain_id"]) if row is not None else None

    def _publish(self, rec: ContainerRecord, action: str, **extra: str) -> None:
        attrs = {"image": rec.image_name or rec.image_id, "name": rec.name, **rec.config.Labels}
        attrs.update(extra)
        self.events.publish("container", action, rec.id, attrs)

    def image_user(self, image_id: str) -> str | None:
        """A container id using the image (for ImageService.remove's in_use), or None."""
        row = self.db.query_one("SELECT id FROM containers WHERE image_id = ? LIMIT 1",
                                (image_id,))  # fmt: skip
        return str(row["id"]) if row is not None else None

    def _name_taken(self, name: str) -> bool:
        return self.db.query_one("SELECT 1 FROM containers WHERE name = ?", (name,)) is not None

    def _name_conflict(self, name: str) -> Conflict:
        row = self.db.query_one("SELECT id FROM containers WHERE name = ?", (name,))
        owner = row["id"] if row is not None else "?"
        return Conflict(
            f'Conflict. The container name "/{name}" is already in use by container '
            f'"{owner}". You have to remove (or rename) that container to be able to reuse '
            "that name."
        )

    # ------------------------------------------------------------------ create

    def create(self, config: ContainerConfig | Mapping[str, Any],
               host_config: HostConfig | Mapping[str, Any] | None = None,
               name: str | None = None,
               networking_config: Mapping[str, Any] | None = None) -> str:
        """Create a container; its 64-hex id. NotFound "No such image: x" when the image is
        not here (the caller pulls), Conflict for a name in use, InvalidArgument for bad
        options; nothing is left behind on failure."""
        if not isinstance(config, ContainerConfig):
            config = ContainerConfig.from_api(dict(config))
        if host_config is None:
            host_config = HostConfig()
        elif not isinstance(host_config, HostConfig):
            host_config = HostConfig.from_api(dict(host_config))
        if not config.Image:
            raise InvalidArgument("Image: an image is required")
        if self.networks is not None:
            from dataclasses import replace

            host_config = replace(host_config,
                                  NetworkMode=self.networks.network_mode(host_config.NetworkMode))
        if name:
            name = validate_name(name)
        log_options(host_config)  # refuse a bad LogConfig before any work
        try:
            image = self.images.get(config.Image)
        except NotFound:
            raise NotFound(f"No such image: {config.Image}") from None
        cid = secrets.token_hex(32)
        given = name
        # No lock across the check and the insert: the one INSERT statement computes seq
        # and the unique index on name decides a race (a generated name is drawn again).
        while True:
            if given is None:
                name = generate_unique(self._name_taken)
            elif self._name_taken(given):
                raise self._name_conflict(given)
            assert name is not None
            rec = ContainerRecord(
                id=cid, name=name, image_id=image.id, image_name=config.Image,
                created=now_rfc3339(), state="creating", path="", args=[], config=config,
                host_config=host_config, config_api=config.to_api(),
                host_config_api=host_config.to_api(), spec_json="{}",
            )  # fmt: skip
            try:
                # not synced: a "creating" row is discarded at start; "created" is synced
                self.db.execute(INSERT_SQL, rec.insert_params(), sync=False)
                break
            except Conflict:
                if not self._name_taken(name):
                    raise
                if given is not None:
                    raise self._name_conflict(name) from None
        try:
            self._build(rec, image, networking_config)
        except BaseException:
            self._discard(cid)
            raise
        self._publish(rec, "create")
        return cid

    def _build(self, rec: ContainerRecord, image: Image,
               networking: Mapping[str, Any] | None = None) -> None:
        from pyrt.containers.etcfiles import write_etc_files
        from pyrt.containers.specgen import generate_spec
        from pyrt.runtime.state import atomic_write

        p = self.paths(rec.id)
        p.root.mkdir(mode=0o710)
        p.run.mkdir(mode=0o700)  # the bundle and the shim's state dir (see record.Paths)
        cfg, host = rec.config, rec.host_config
        self._mount_rootfs(rec, image.top_chain_id, p)
        extra_hosts = list(host.ExtraHosts)
        etc = write_etc_files(
            str(p.etc), hostname=cfg.Hostname or rec.id[:12], domainname=cfg.Domainname,
            extra_hosts=extra_hosts, dns=host.Dns, dns_search=host.DnsSearch,
            dns_options=host.DnsOptions,
            sync=not host.AutoRemove,  # (--rm: reconcile removes it after a crash)
        )  # fmt: skip
        init_path = None
        if host.Init:
            from pyrt.containers.shim_client import find_init

            init_path = str(find_init())
        image_cfg = json.loads(image.config_json).get("config") or {}
        ns_paths = self.networks.prepare(rec.id, host, networking) if self.networks else {}
        merged_cfg = cfg
        if cfg.Healthcheck is None and image_cfg.get("Healthcheck"):
            pass  # the image's healthcheck is merged when the monitor runs it
        mounts = self.volumes.prepare(rec.id, config=cfg, host=host, image_config=image_cfg,
                                      rootfs=str(p.merged),
                                      resolve=lambda ref: self.resolve(ref).id)  # fmt: skip
        spec = generate_spec(
            container_id=rec.id, image_config=image_cfg, config=merged_cfg, host=host,
            root_path=str(p.merged), etc_files=etc, init_path=init_path,
            cgroup_parent=self.cgroup_parent, mounts_extra=mounts, namespace_paths=ns_paths,
            image_id=image.id,
        )  # fmt: skip
        # not fsync'ed: the exec root does not outlive the machine (/run), and the spec is
        # in the database (spec_json) to be written again
        spec_json = json.dumps(spec)
        atomic_write(str(p.bundle / "config.json"), spec_json.encode(), 0o600)
        args = list(spec["process"]["args"])
        rec.set_spec(spec, spec_json)
        rec.state, rec.path, rec.args = "created", args[0], args[1:]
        # an --rm container's row is not synced (nor at start, exit and removal): after a
        # power loss reconcile discards it if it is still "creating", removes it once it
        # has run; the WAL is sequential, so the engine's next synced write carries it
        self._update(rec.id, state="created", spec_json=rec.spec_json, path=args[0],
                     args_json=json.dumps(args[1:]), sync=not host.AutoRemove)  # fmt: skip

    def _mount_rootfs(self, rec: ContainerRecord, chain: str | None, p: Paths) -> None:
        from dataclasses import replace

        mount = self.snapshots.prepare_container_rootfs(chain, p.fs, targets=True)
        p.merged.mkdir(mode=0o755, exist_ok=True)
        if rec.host_config.AutoRemove:
            # an --rm container's writable layer never outlives it (after a crash reconcile
            # removes it): overlayfs's "volatile" spares its unmount the sync of the whole file
            # system that holds the layer (syncfs of the upper), on the path to "removed".
            # One created but not started when the machine went down is mounted again here:
            # overlayfs refuses a volatile layer's work dir after a crash until its marker
            # goes (the layer holds at most the etc files' mount points: nothing to lose)
            shutil.rmtree(os.path.join(mount.workdir, "work", "incompat"), ignore_errors=True)
            try:
                replace(mount, options=(*mount.options, "volatile")).mount(p.merged)
                return
            except PyrtError:
                pass  # a kernel before 5.10: without
        mount.mount(p.merged)

    def _discard(self, cid: str, volumes: bool = True, sync: bool = True) -> None:
        """Remove everything of a container (its row last), whatever state it was left in;
        with `volumes`, the anonymous volumes made for it too; sync=False: the row's DELETE
        is not synced (see remove)."""
        p = self.paths(cid)
        with contextlib.suppress(PyrtError, OSError):
            self.runtime.delete(cid, force=True)
        if self.networks is not None:
            self.networks.teardown(cid)
        for target in mounts_under(p.root) if p.root.exists() else []:
            with contextlib.suppress(PyrtError):
                _umount(Path(target))
        self.volumes.release(cid, remove_anonymous=volumes)
        self.trash.discard(p.run)
        self.trash.discard(p.root)
        self.db.execute("DELETE FROM containers WHERE id = ?", (cid,), sync=sync)

    # ------------------------------------------------------------------ start

    def start(self, ref: str) -> None:
        cid = self._resolve_id(ref)
        with self._lock(cid):
            rec = self.get_record(cid)
            if rec.state == "paused":
                raise Conflict(f"cannot start a paused container {rec.id}, try unpause instead")
            if rec.state == "running":
                return  # docker: 304 not modified
            if rec.state in ("removing", "dead"):
                raise Conflict(f"container {rec.id} is marked for removal and cannot be started")
            self.monitor.cancel_restart(rec.id)
            self._start_locked(rec)

    def _start_locked(self, rec: ContainerRecord, *, restart: bool = False) -> None:
        p = self.paths(rec.id)
        if not os.path.ismount(p.merged):
            self._mount_rootfs(rec, self._image_top_chain(rec.image_id), p)
        self.volumes.ensure_mounted(rec.id)  # a device volume a reboot unmounted
        if self.runtime._dir(rec.id).exists():
            self.runtime.delete(rec.id, force=True)
        _reset_shim_dir(p)
        started = now_rfc3339()
        # addresses and ports now; links, rules and files while the runtime creates
        net_ready = self.networks.setup(rec, p.etc) if self.networks is not None else None
        try:
            pid = self._spawn(rec, p, net_ready)
        except SystemError_ as e:
            if self.networks is not None:
                self.networks.teardown(rec.id)
            code = {2: 127, 13: 126}.get(e.errno or 0, 128)
            msg = str(e)
            self._update(rec.id, exit_code=code, error=msg,
                         state="exited" if restart else rec.state)  # fmt: skip
            with contextlib.suppress(PyrtError, OSError):
                self.runtime.delete(rec.id, force=True)
            self._publish(rec, "die", exitCode=str(code))
            if code in (126, 127):
                raise InvalidArgument(f"failed to create task for container {rec.id}: {msg}"
                                      ) from None  # fmt: skip
            raise
        except BaseException:
            with contextlib.suppress(PyrtError, OSError):
                self.runtime.delete(rec.id, force=True)
            if self.networks is not None:
                self.networks.teardown(rec.id)
            raise
        cols: dict[str, Any] = {
            "state": "running", "pid": pid, "started_at": started, "exit_code": 0,
            "error": "", "oom_killed": 0, "manually_stopped": 0,
            "health_json": None,
        }  # fmt: skip
        if restart:
            cols["restart_count"] = rec.restart_count + 1
        self._update(rec.id, sync=not rec.host_config.AutoRemove, **cols)  # see _build
        rec.state, rec.pid, rec.health = "running", pid, None  # as cols wrote them
        if restart:
            rec.restart_count += 1
        self.monitor.watch(rec.id, started_mono=time.monotonic(), rec=rec)
        self.volumes.publish_mounts(rec.id, "mount")
        self._publish(rec, "start")

    def _spawn(self, rec: ContainerRecord, p: Paths,
               before_start: Callable[[int], None] | None = None) -> int:
        """Create the container under its shim, run before_start(pid), start it; its pid."""
        from pyrt.containers.shim_client import ShimClient

        pid = self._create_native(rec, p)
        line = f"created {pid}" if pid is not None else self._create_in_process(rec, p)
        if line.startswith("created "):
            try:
                if before_start is not None:  # the network is ready before the process
                    before_start(int(line.split()[1]))  # (its namespaces are made)
                ShimClient(p.shim).start()
            except PyrtError as e:
                line = f"error start: {e}"
        if not line.startswith("created "):
            raise SystemError_(f"container {rec.id}: the shim did not start it: "
                               f"{line.removeprefix('error ') or 'no answer'}")
        return int(line.split()[1])

    def _create_native(self, rec: ContainerRecord, p: Paths) -> int | None:
        """The shim, started by vfork (this process is never forked: a fork copies the
        page tables of a big, many-threaded process and makes every thread fault on its next
        writes), runs pyrt-runc's native create; the container's pid. None when there is no
        pyrt-runc or it did not create the container (a spec it leaves to Python, or any
        failure): nothing of the attempt remains and the caller creates in process, which
        also reports a failure in its own words."""
        from pyrt.runtime.state import ContainerDir

        runc = self._runc()
        if runc is None:
            return None
        cfg = rec.config
        max_size, max_file = log_options(rec.host_config)
        argv = [
            str(self.shim_path()), "--id", rec.id, "--bundle", str(p.bundle), "--runtime", runc,
            "--root", self.runtime.root, "--state-dir", str(p.shim),
            "--exec-fifo", ContainerDir(self.runtime.root, rec.id).fifo_path,
            "--log-path", str(p.log), "--log-max-size", str(max_size),
            "--log-max-file", str(max_file), "--ready-fd", "3",
        ]  # fmt: skip
        if cfg.Tty:
            argv.append("--tty")
        if cfg.OpenStdin:
            argv.append("--stdin")
        if rec.host_config.AutoRemove:
            argv.append("--no-sync")  # its exit needs no disk wait: see _build
        from pyrt import _core

        rfd, wfd = os.pipe()
        try:
            try:  # os.posix_spawn would hold the GIL until the child has exec'd
                child = _core.spawn_exec(argv, self._native_env(), [wfd])
            finally:
                os.close(wfd)
            try:
                line = _read_line_fd(rfd, 30.0)
            finally:
                # the shim forks away at once (it daemonizes); this reaps its first process
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(child, 0)
        except OSError:
            line = ""
        finally:
            os.close(rfd)
        if line.startswith("created "):
            with contextlib.suppress(ValueError):
                return int(line.split()[1])
        # pyrt-runc undid its create; a shim that failed after it leaves the container
        with contextlib.suppress(PyrtError, OSError):
            self.runtime.delete(rec.id, force=True)
        _reset_shim_dir(p)
        return None

    def _runc(self) -> str | None:
        if self._runc_path is None:
            from pyrt.containers.shim_client import find_runc

            found = find_runc()
            self._runc_path = str(found) if found is not None else ""
        return self._runc_path or None

    def _native_env(self) -> list[str]:
        # pyrt-runc fails a create it does not handle instead of running Python's CLI: the
        # engine redoes it in process (_create_in_process)
        env = {**os.environ, "PYRT_RUNC_NATIVE_ONLY": "1"}
        return [f"{k}={v}" for k, v in env.items()]

    def _create_in_process(self, rec: ContainerRecord, p: Paths) -> str:
        """The in-process runtime creates the container through _core.spawn_detached, whose
        helper execs the shim in adopt mode; the shim's ready line ("created PID", or
        "error ...")."""
        from pyrt.runtime.state import ContainerDir

        cfg = rec.config
        max_size, max_file = log_options(rec.host_config)
        fifo = ContainerDir(self.runtime.root, rec.id).fifo_path
        rfd, wfd = os.pipe()
        ours: list[int] = [wfd]  # fds to close once the shim has its copies
        theirs: list[int] = [wfd]
        argv = [
            str(self.shim_path()), "--id", rec.id, "--state-dir", str(p.shim), "--pid=",
            "--exec-fifo", fifo, "--log-path", str(p.log), "--log-max-size", str(max_size),
            "--log-max-file", str(max_file), "--ready-fd", str(wfd),
        ]  # fmt: skip
        if rec.host_config.AutoRemove:
            argv.append("--no-sync")
        console: str | None = None
        stdio: tuple[int, int, int] | None = None
        lsock: socket.socket | None = None
        dirfd = -1
        try:
            if cfg.Tty:
                argv.append("--tty")
                dirfd = os.open(p.shim, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                console = f"/proc/self/fd/{dirfd}/console.sock"
                lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                lsock.bind(console)
                lsock.listen(1)
                argv += ["--console-fd", str(lsock.fileno())]
                theirs.append(lsock.fileno())
            else:
                null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
                ours.append(null)
                in_r = null
                if cfg.OpenStdin:
                    in_r, in_w = os.pipe()
                    ours += [in_r, in_w]
                    theirs.append(in_w)
                    argv += ["--stdin-fd", str(in_w)]
                out_r, out_w = os.pipe()
                err_r, err_w = os.pipe()
                ours += [out_r, out_w, err_r, err_w]
                theirs += [out_r, err_r]
                argv += ["--stdout-fd", str(out_r), "--stderr-fd", str(err_r)]
                stdio = (in_r, out_w, err_w)
            if cfg.OpenStdin:
                argv.append("--stdin")
            self.runtime.create(
                rec.id, str(p.bundle), console_socket=console, stdio=stdio, shim=(argv, theirs)
            )
            # the shim holds its copy now: ours would keep the line below from seeing EOF
            ours.remove(wfd)
            os.close(wfd)
            return _read_line_fd(rfd, 30.0)
        finally:
            for fd in ours:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if lsock is not None:
                lsock.close()
                with contextlib.suppress(OSError):
                    os.unlink(p.shim / "console.sock")
            if dirfd >= 0:
                os.close(dirfd)
            os.close(rfd)

    # ------------------------------------------------------------------ signals

    def _client(self, cid: str) -> Any:
        from pyrt.containers.shim_client import ShimClient

        return ShimClient(self.paths(cid).shim)

    def _exit_generation(self, cid: str) -> int:
        with self._cond_lock:
            return self._exit_gen.get(cid, 0)

    def _cond(self, cid: str) -> threading.Condition:
        with self._cond_lock:
            cond = self._conds.get(cid)
            if cond is None:
                cond = self._conds[cid] = threading.Condition(self._cond_lock)
            return cond

    def _notify(self, cid: str) -> None:
        """Wake cid's waiters; call with _cond_lock held."""
        cond = self._conds.get(cid)
        if cond is not None:
            cond.notify_all()

    def _wait_exit(self, cid: str, gen: int, timeout: float | None) -> bool:
        cond = self._cond(cid)
        with cond:
            return cond.wait_for(
                lambda: self._exit_gen.get(cid, 0) != gen or cid in self._removed, timeout
            )

    def exit_waiter(self, cid: str) -> Callable[[float], None]:
        """A sleep(timeout) that returns early when cid exits (or is removed): a reader
        polling for the exit (the attach stream's log follow) sees it at once. Each call
        waits for an exit after the last one it saw, so a restarting container is not a
        busy loop."""
        seen = [self._exit_generation(cid)]

        def wait(timeout: float) -> None:
            self._wait_exit(cid, seen[0], timeout)
            seen[0] = self._exit_generation(cid)

        return wait

    def notify_exit(self, cid: str) -> None:
        with self._cond_lock:
            self._exit_gen[cid] = self._exit_gen.get(cid, 0) + 1
            self._notify(cid)

    def kill(self, ref: str, signal: int | str = "SIGKILL") -> None:
        rec = self.resolve(ref)
        sig = signal if isinstance(signal, int) else signal_number(signal)
        with self._lock(rec.id):
            rec = self.get_record(rec.id)
            if rec.state not in ("running", "paused"):
                raise Conflict(f"Container {rec.id} is not running")
            self._update(rec.id, manually_stopped=1)
            self._signal(rec, sig)
        self._publish(rec, "kill", signal=str(sig))

    def _signal(self, rec: ContainerRecord, sig: int) -> None:
        try:
            self._client(rec.id).kill(sig)
        except FailedPrecondition:
            return  # it exited meanwhile
        if rec.state == "paused" and sig == _signal.SIGKILL:
            with contextlib.suppress(PyrtError):
                self.runtime.resume(rec.id)

    def stop(self, ref: str, timeout: int | None = None, signal: int | str | None = None
             ) -> None:
        rec = self.resolve(ref)
        cfg = rec.config
        if signal is None:
            signal = cfg.StopSignal or "SIGTERM"
        sig = signal if isinstance(signal, int) else signal_number(signal)
        if timeout is None:
            timeout = cfg.StopTimeout if cfg.StopTimeout is not None else DEFAULT_STOP_TIMEOUT
        with self._lock(rec.id):
            rec = self.get_record(rec.id)
            self.monitor.cancel_restart(rec.id)
            if rec.state == "restarting":
                self._update(rec.id, state="exited", manually_stopped=1)
                return
            if rec.state not in ("running", "paused"):
                return  # docker: 304 not modified
            self._update(rec.id, manually_stopped=1)
            gen = self._exit_generation(rec.id)
            self._signal(rec, sig)
            if rec.state == "paused":
                with contextlib.suppress(PyrtError):
                    self.runtime.resume(rec.id)
        self._publish(rec, "kill", signal=str(sig))
        if not self._wait_exit(rec.id, gen, None if timeout < 0 else float(timeout)):
            self._publish(rec, "kill", signal=str(int(_signal.SIGKILL)))
            with contextlib.suppress(PyrtError):
                self._client(rec.id).kill(_signal.SIGKILL)
            if not self._wait_exit(rec.id, gen, 30.0):
                raise SystemError_(f"container {rec.id}: did not exit after SIGKILL")
        self._publish(rec, "stop")

    def restart(self, ref: str, timeout: int | None = None, signal: int | str | None = None
                ) -> None:
        rec = self.resolve(ref)
        self.stop(rec.id, timeout=timeout, signal=signal)
        self.start(rec.id)
        self._publish(rec, "restart")

    def pause(self, ref: str) -> None:
        rec = self.resolve(ref)
        with self._lock(rec.id):
            rec = self.get_record(rec.id)
            if rec.state != "running":
                raise Conflict(f"Container {rec.id} is not running" if rec.state != "paused"
                               else f"Container {rec.id} is already paused")  # fmt: skip
            self.runtime.pause(rec.id)
            self._update(rec.id, state="paused")
        self._publish(rec, "pause")

    def unpause(self, ref: str) -> None:
        rec = self.resolve(ref)
        with self._lock(rec.id):
            rec = self.get_record(rec.id)
            if rec.state != "paused":
                raise Conflict(f"Container {rec.id} is not paused")
            self.runtime.resume(rec.id)
            self._update(rec.id, state="running")
        self._publish(rec, "unpause")

    # ------------------------------------------------------------------ wait / remove

    def wait(self, ref: str, condition: str = "not-running", timeout: float | None = None
             ) -> dict[str, Any]:
        """Docker's wait: {"StatusCode": n, "Error": None}. TimeoutError after timeout."""
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"wait: condition '{condition}' is not one of not-running, "
                                  "next-exit, removed")  # fmt: skip
        cid = self._resolve_id(ref)
        if condition == "removed":
            cond = self._cond(cid)
            with cond:
                ok = cond.wait_for(lambda: cid in self._removed, timeout)
                if not ok:
                    raise TimeoutError(f"container {cid}: not removed in time")
                return {"StatusCode": self._removed[cid], "Error": None}
        gen = self._exit_generation(cid)
        if condition == "not-running":
            state, code = self._state_and_code(cid)
            if state not in ("running", "paused", "restarting"):
                return {"StatusCode": code, "Error": None}
        if not self._wait_exit(cid, gen, timeout):
            raise TimeoutError(f"container {cid}: still running")
        with self._cond_lock:
            if cid in self._removed:
                return {"StatusCode": self._removed[cid], "Error": None}
        return {"StatusCode": self._state_and_code(cid)[1], "Error": None}

    def _state_and_code(self, cid: str) -> tuple[str, int]:
        """A container's state and exit code (two columns: not the whole record)."""
        row = self.db.query_one("SELECT state, exit_code FROM containers WHERE id = ?", (cid,))
        if row is None:
            raise NotFound(f"No such container: {cid}")
        return str(row["state"]), int(row["exit_code"])

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        cid = self._resolve_id(ref)
        with self._lock(cid):
            rec = self.get_record(cid)
            if rec.state in ("running", "paused") and not force:
                raise Conflict(
                    f"You cannot remove a {rec.state} container {cid}. Stop the container "
                    "before attempting removal or force remove"
                )
            if rec.state == "removing":
                raise Conflict(f"removal of container {cid} is already in progress")
            self.monitor.cancel_restart(cid)
            prev = rec.state
            # an --rm container's removal is not synced (here and its DELETE): after a power
            # loss reconcile removes an AutoRemove container whatever row survived (running:
            # its shim is gone, so it is recorded as exited; exited; removing)
            durable = not rec.host_config.AutoRemove
            # an --rm container that has run and exited goes within this hold of its lock:
            # no one can see it "removing", and a crash midway leaves its row exited, which
            # reconcile removes; that state's write (the writer lock is the engine's most
            # contended, with 20 containers at a time) is spared
            at_once = not durable and prev == "exited" and bool(rec.started_at)
            if at_once:
                self.monitor.forget(cid)
                code = rec.exit_code
                self._discard(cid, volumes=volumes, sync=False)
            else:
                self._update(cid, state="removing", sync=durable)
            gen = self._exit_generation(cid)
            if prev in ("running", "paused"):
                with contextlib.suppress(PyrtError):
                    self._client(cid).kill(_signal.SIGKILL)
                if prev == "paused":
                    with contextlib.suppress(PyrtError):
                        self.runtime.resume(cid)
        if prev in ("running", "paused"):
            self._publish(rec, "kill", signal=str(int(_signal.SIGKILL)))
            if not self._wait_exit(cid, gen, 30.0):
                raise SystemError_(f"container {cid}: did not exit after SIGKILL")
        if not at_once:
            with self._lock(cid):
                self.monitor.forget(cid)
                code = self.get_record(cid).exit_code
                self._discard(cid, volumes=volumes, sync=durable)
        with self._cond_lock:
            self._removed[cid] = code
            self._notify(cid)
            self._conds.pop(cid, None)
        with self._locks_guard:
            self._locks.pop(cid, None)
        self._publish(rec, "destroy")

    def rename(self, ref: str, new_name: str) -> None:
        rec = self.resolve(ref)
        new = validate_name(new_name)
        if new == rec.name:
            raise Conflict("Renaming a container with the same name as its current name")
        with self._glock:
            if self._name_taken(new):
                raise self._name_conflict(new)
            try:
                self._update(rec.id, name=new)
            except Conflict:
                raise self._name_conflict(new) from None
        self._publish(rec, "rename", oldName=f"/{rec.name}", name=new)

    # ------------------------------------------------------------------ inspect / list

    def _state(self, rec: ContainerRecord) -> dict[str, Any]:
        running = rec.state in ("running", "paused", "restarting")
        status = {"creating": "created", "removing": "removing"}.get(rec.state, rec.state)
        st: dict[str, Any] = {
            "Status": status,
            "Running": rec.state in ("running", "paused"),
            "Paused": rec.state == "paused",
            "Restarting": rec.state == "restarting",
            "OOMKilled": rec.oom_killed,
            "Dead": rec.state == "dead",
            "Pid": rec.pid if rec.state in ("running", "paused") else 0,
            "ExitCode": rec.exit_code,
            "Error": rec.error,
            "StartedAt": rec.started_at or ZERO_TIME,
            "FinishedAt": rec.finished_at or ZERO_TIME,
        }
        if rec.health is not None:
            st["Health"] = rec.health
        del running
        return st

    def inspect(self, ref: str) -> dict[str, Any]:
        rec = self.resolve(ref)
        p = self.paths(rec.id)
        handle = self.handle(rec.id)
        execs = [r["id"] for r in self.db.query(
            "SELECT id FROM exec_instances WHERE container_id = ? AND exit_code IS NULL "
            "ORDER BY created_at", (rec.id,))]  # fmt: skip
        config = config_view(rec.config_api)
        config["Hostname"] = config.get("Hostname") or rec.id[:12]
        config["Env"] = list(rec.spec.get("process", {}).get("env", config.get("Env", [])))
        config["Cmd"] = rec.config.Cmd
        config["Image"] = rec.image_name
        if config.get("Healthcheck") is None:
            config.pop("Healthcheck", None)
        return {
            "Id": rec.id,
            "Created": rec.created,
            "Path": rec.path,
            "Args": rec.args,
            "State": self._state(rec),
            "Image": rec.image_id,
            "ResolvConfPath": str(p.etc / "resolv.conf"),
            "HostnamePath": str(p.etc / "hostname"),
            "HostsPath": str(p.etc / "hosts"),
            "LogPath": str(p.log),
            "Name": f"/{rec.name}",
            "RestartCount": rec.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": execs or None,
            "HostConfig": host_config_view(rec.host_config_api),
            "GraphDriver": {
                "Name": "overlay2",
                "Data": {
                    "LowerDir": ":".join(handle.lower_dirs),
                    "UpperDir": str(p.upper),
                    "WorkDir": str(p.fs / "work"),
                    "MergedDir": str(p.merged),
                },
            },
            "Mounts": self.volumes.mount_points(rec.id),
            "Config": config,
            "NetworkSettings": self.networks.settings(rec) if self.networks else {
                "Bridge": "", "SandboxID": "", "HairpinMode": False, "Ports": {},
                "SandboxKey": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                "MacAddress": "", "Networks": {},
            },  # fmt: skip
        }

    def _status_text(self, rec: ContainerRecord) -> str:
        def ago(ts: str) -> str:
            from pyrt.containers.logs import parse_time_ns

            secs = max(0.0, time.time() - parse_time_ns(ts) / 1e9) if ts else 0.0
            if secs < 1:
                return "Less than a second"
            if secs < 60:
                return f"{int(secs)} seconds"
            if secs < 3600:
                m = int(secs // 60)
                return "About a minute" if m == 1 else f"{m} minutes"
            h = int(secs // 3600)
            return "About an hour" if h == 1 else f"{h} hours"

        if rec.state in ("running", "paused"):
            text = f"Up {ago(rec.started_at)}"
            if rec.state == "paused":
                text += " (Paused)"
            elif rec.health is not None:
                hs = rec.health.get("Status")
                text += " (health: starting)" if hs == "starting" else f" ({hs})"
            return text
        if rec.state == "restarting":
            return f"Restarting ({rec.exit_code}) {ago(rec.finished_at)} ago"
        if rec.state == "exited" and rec.started_at:
            return f"Exited ({rec.exit_code}) {ago(rec.finished_at)} ago"
        if rec.state == "removing":
            return "Removal In Progress"
        if rec.state == "dead":
            return "Dead"
        return "Created"

    def list(self, all: bool = False,  # noqa: A002 - docker's parameter name
             filters: Mapping[str, Any] | None = None, limit: int = -1, size: bool = False,
             ) -> builtins.list[dict[str, Any]]:
        """docker ps: ContainerSummary dicts, newest first."""
        flt = _normalize_filters(filters)
        recs = [ContainerRecord.from_row(r) for r in self.db.query(
            "SELECT * FROM containers WHERE state != 'creating' ORDER BY seq DESC")]
        if limit is not None and limit > 0:
            all = True
        by_ref = {}
        for key in ("before", "since"):
            for v in flt.get(key, []):
                by_ref[key] = self.resolve(v).seq
        out = []
        for rec in recs:
            if not all and not flt.get("status") and rec.state not in ("running", "paused",
                                                                          "restarting"):
                continue
            if not _match(rec, flt, by_ref, self):
                continue
            out.append(self._summary(rec, size))
            if limit is not None and limit > 0 and len(out) >= limit:
                break
        return out

    def _summary(self, rec: ContainerRecord, size: bool) -> dict[str, Any]:
        cmd = " ".join([rec.path, *rec.args]).strip()
        summary: dict[str, Any] = {
            "Id": rec.id,
            "Names": [f"/{rec.name}"],
            "Image": rec.image_name,
            "ImageID": rec.image_id,
            "Command": cmd,
            "Created": int(_ts(rec.created)),
            "Ports": [],
            "Labels": dict(rec.config.Labels),
            "State": {"creating": "created"}.get(rec.state, rec.state),
            "Status": self._status_text(rec),
            "HostConfig": {"NetworkMode": rec.host_config.NetworkMode or "none"},
            "NetworkSettings": {"Networks": {}},
            "Mounts": self.volumes.mount_points(rec.id),
        }
        if self.networks is not None:
            summary["Ports"], summary["NetworkSettings"]["Networks"] = \
                self.networks.summary(rec)  # fmt: skip
        if size:
            upper = self.paths(rec.id).upper
            summary["SizeRw"] = _du(upper)
            row = self.db.query_one("SELECT size FROM images WHERE id = ?", (rec.image_id,))
            summary["SizeRootFs"] = summary["SizeRw"] + (int(row["size"]) if row else 0)
        return summary

    # ------------------------------------------------------------------ logs / attach

    def logs(self, ref: str, *, follow: bool = False, tail: int | None = None,
             since: TimeArg = None, until: TimeArg = None, timestamps: bool = False,
             stdout: bool = True, stderr: bool = True) -> Iterator[LogEntry]:
        from pyrt.containers.logs import log_files, read_logs

        cid = self._resolve_id(ref)
        path = self.paths(cid).log

        def stopped() -> bool:
            r = self._row(cid)
            return r is None or r.state not in ("running", "paused", "restarting")

        if not follow and not log_files(path):
            return iter(())
        return read_logs(path, follow=follow, tail=tail, since=since, until=until,
                         timestamps=timestamps, stdout=stdout, stderr=stderr,
                         stop=stopped if follow else None, poll_interval=0.05)  # fmt: skip

    def attach(self, ref: str, *, stdin: bool = False, logs: bool = False,
               stream: bool = True) -> Attachment:
        from pyrt.containers.attach import attach

        rec = self.resolve(ref)
        out = attach(self, rec, stdin=stdin, logs=logs, stream=stream)
        self._publish(rec, "attach")
        return out

    def resize(self, ref: str, rows: int, cols: int) -> None:
        rec = self.resolve(ref)
        if rec.state not in ("running", "paused"):
            raise Conflict(f"Container {rec.id} is not running")
        self._client(rec.id).resize(rows, cols)

    # ------------------------------------------------------------------ exec

    def exec_create(self, ref: str, config: ExecConfig | Mapping[str, Any]) -> str:
        """docker exec create: a new exec instance (its 64-hex id) for a running container.

        config: docker's ExecConfig JSON (Cmd, Env, User, WorkingDir, Tty, AttachStdin/
        Stdout/Stderr, Privileged, DetachKeys, ConsoleSize) or an ExecConfig. Conflict
        when the container is not running or is paused. The instance is recorded in
        exec_instances; the event is docker's "exec_create: <command>"."""
        from pyrt.containers.exec import ExecConfig as _ExecConfig
        from pyrt.containers.exec import create_exec

        if not isinstance(config, _ExecConfig):
            if not isinstance(config, Mapping):
                raise InvalidArgument("exec config: expected a JSON object")
            config = _ExecConfig.from_api(dict(config))
        rec = self.resolve(ref)
        self._prune_execs()
        with self._lock(rec.id):
            inst = create_exec(self.handle(rec.id), config)
            self.db.execute(
                "INSERT INTO exec_instances (id, container_id, config_json, running, pid, "
                "exit_code, created_at) VALUES (?, ?, ?, 0, 0, NULL, ?)",
                (inst.id, rec.id, json.dumps(_exec_config_api(config)), time.time()))
            with self._exec_lock:
                self._execs[inst.id] = _Exec(inst)
        self._publish(rec, f"exec_create: {' '.join(config.Cmd)}", execID=inst.id)
        return inst.id

    def _prune_execs(self) -> None:
        """Forget ended execs whose container was removed (their rows went with it)."""
        with self._exec_lock:
            ended = {ex.instance.container_id for ex in self._execs.values()
                     if ex.done.is_set()}  # fmt: skip
        gone = {cid for cid in ended if self._row(cid) is None}
        if gone:
            with self._exec_lock:
                for i in [i for i, ex in self._execs.items()
                          if ex.done.is_set() and ex.instance.container_id in gone]:
                    del self._execs[i]

    def _exec(self, exec_id: str) -> _Exec:
        with self._exec_lock:
            ex = self._execs.get(exec_id)
        if ex is not None:
            return ex
        raise NotFound(f"No such exec instance: {exec_id}")

    def exec_start(self, exec_id: str, *, detach: bool = False,
                   console_size: tuple[int, int] | None = None,
                   stdio: tuple[int, int, int] | None = None,
                   before_spawn: Callable[[], None] | None = None) -> RunningExec:
        """docker exec start: run the exec's process; the RunningExec gives its pipes or
        pty (see pyrt.containers.exec) and `wait()`s for its exit code.

        detach: the process's stdio is /dev/null, or with a tty the engine keeps the pty
        (for exec_resize) and reads and drops what is written to it. console_size (height,
        width) replaces the one given at create. stdio: fds for a process without a tty
        (the caller keeps them). Conflict when the exec was started already or the
        container is not running. The ExitCode is recorded (and "exec_die" published with
        it) by a waiter thread when the process ends; a command that does not exist or
        cannot be executed ends at once with 127 or 126. before_spawn: see
        pyrt.containers.exec.start_exec."""
        from dataclasses import replace

        from pyrt.containers.exec import start_exec

        ex = self._exec(exec_id)
        inst = ex.instance
        rec = self.get_record(inst.container_id)
        own: list[int] = []
        with self._lock(rec.id), ex.lock:
            if console_size is not None:
                inst.config = replace(inst.config, ConsoleSize=console_size)
            if detach and not inst.config.Tty:
                null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
                own.append(null)
                stdio = (null, null, null)
            try:
                run = start_exec(self.handle(rec.id), inst, stdio, before_spawn)
            finally:
                for fd in own:
                    os.close(fd)
            ex.run = run
            self._exec_update(inst)
            pidfd = -1
            if run.pid > 0:
                try:
                    pidfd = os.pidfd_open(run.pid)
                except OSError:
                    pidfd = -1  # reaped already (or gone): the waiter waits by pid
        self._publish(rec, f"exec_start: {' '.join(inst.config.Cmd)}", execID=inst.id)
        if run.pid <= 0:  # it could not be started: finished already
            self._exec_ended(rec, ex, run, detach)
        else:
            threading.Thread(target=self._exec_waiter, args=(rec, ex, run, pidfd, detach),
                             name=f"pyrt-exec-{inst.id[:12]}", daemon=True).start()
        return run

    def _exec_waiter(self, rec: ContainerRecord, ex: _Exec, run: RunningExec, pidfd: int,
                     detach: bool) -> None:
        drain = run.pty if detach else None
        try:
            if pidfd >= 0:
                watch = [pidfd] if drain is None else [pidfd, drain]
                while True:
                    ready, _, _ = select.select(watch, [], [])
                    if drain is not None and drain in ready:
                        try:
                            data = os.read(drain, 65536)
                        except OSError:
                            data = b""
                        if not data:
                            watch.remove(drain)
                            drain = None
                    if pidfd in ready:
                        break
            run.wait()
        finally:
            if pidfd >= 0:
                os.close(pidfd)
        self._exec_ended(rec, ex, run, detach)

    def _exec_ended(self, rec: ContainerRecord, ex: _Exec, run: RunningExec, detach: bool
                    ) -> None:
        code = run.wait()
        if detach:
            run.close()
        with contextlib.suppress(PyrtError, sqlite3.Error):
            self._exec_update(ex.instance)
            rec = self._row(rec.id) or rec
        with contextlib.suppress(PyrtError):
            self._publish(rec, "exec_die", execID=ex.instance.id, exitCode=str(code))
        ex.done.set()

    def _exec_update(self, inst: ExecInstance) -> None:
        self.db.execute("UPDATE exec_instances SET running = ?, pid = ?, exit_code = ? "
                        "WHERE id = ?", (int(inst.running), inst.pid, inst.exit_code, inst.id))

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        """docker's ExecInspect (NotFound for an unknown id or one whose container was
        removed). An exec another engine started on this root is shown as recorded, and
        as running only while its container runs and its pid exists."""
        from pyrt.containers.exec import ExecConfig as _ExecConfig
        from pyrt.containers.exec import ExecInstance as _ExecInstance

        row = self.db.query_one("SELECT * FROM exec_instances WHERE id = ?", (exec_id,))
        if row is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        with self._exec_lock:
            ex = self._execs.get(exec_id)
        if ex is not None:
            return ex.instance.inspect()
        code = row["exit_code"]
        pid = int(row["pid"])
        running = False
        if row["running"] and code is None and pid > 0:
            crec = self._row(str(row["container_id"]))
            running = (crec is not None and crec.state in ("running", "paused")
                       and os.path.exists(f"/proc/{pid}"))  # fmt: skip
        inst = _ExecInstance(
            id=exec_id, container_id=str(row["container_id"]),
            config=_ExecConfig.from_api(json.loads(row["config_json"])), running=running,
            exit_code=None if code is None else int(code), pid=pid,
            can_remove=code is not None, started=pid > 0 or code is not None)  # fmt: skip
        return inst.inspect()

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        """Set the window size of a running exec's tty (FailedPrecondition without a
        tty, Conflict when it is not running)."""
        ex = self._exec(exec_id)
        if ex.run is None and ex.lock.acquire(timeout=10):
            # exec_start holds the lock while it spawns (the API has sent its headers by
            # then, so a client's resize can come first): wait for it, as dockerd does
            ex.lock.release()
        run = ex.run
        if run is None or not ex.instance.running:
            raise Conflict(f"exec {exec_id} is not running")
        run.resize(height, width)

    def exec_wait(self, exec_id: str, timeout: float | None = None) -> int:
        """The exec's exit code once it has ended and been recorded (TimeoutError after
        timeout; Conflict when it was never started)."""
        ex = self._exec(exec_id)
        if ex.run is None:
            raise Conflict(f"exec {exec_id} has not been started")
        if not ex.done.wait(timeout):
            raise TimeoutError(f"exec {exec_id} still running after {timeout}s")
        return ex.run.wait()

    # ------------------------------------------------------------------ cp / export / diff

    def stat_path(self, ref: str, path: str) -> dict[str, Any]:
        """docker's container path stat (X-Docker-Container-Path-Stat); NotFound when the
        path does not exist in the container."""
        from pyrt.containers import copy as cp

        rec = self.resolve(ref)
        with self._lock(rec.id):
            return cp.stat_path(self.handle(rec.id), path)

    def get_archive(self, ref: str, path: str) -> tuple[dict[str, Any], Iterator[bytes]]:
        """docker cp out: (stat document, tar stream) of `path`; event "archive-path"."""
        from pyrt.containers import copy as cp

        rec = self.resolve(ref)
        with self._lock(rec.id):
            out = cp.get_archive(self.handle(rec.id), path)
        self._publish(rec, "archive-path")
        return out

    def put_archive(self, ref: str, path: str, stream: IO[bytes], *,
                    no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False
                    ) -> None:
        """docker cp in: extract a tar stream (plain/gzip/bzip2/xz) into the directory
        `path` of the container; event "extract-to-dir"."""
        from pyrt.containers import copy as cp

        rec = self.resolve(ref)
        with self._lock(rec.id):
            cp.put_archive(self.handle(rec.id), path, stream,
                           no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
                           copy_uid_gid=copy_uid_gid)  # fmt: skip
        self._publish(rec, "extract-to-dir")

    def export(self, ref: str) -> Iterator[bytes]:
        """docker export: a tar stream of the container's root filesystem; event "export"."""
        from pyrt.containers import copy as cp

        rec = self.resolve(ref)
        with self._lock(rec.id):
            out = cp.export(self.handle(rec.id))
        self._publish(rec, "export")
        return out

    def changes(self, ref: str) -> builtins.list[dict[str, Any]]:
        """docker diff: [{"Path": ..., "Kind": 0 modified | 1 added | 2 deleted}, ...]."""
        from pyrt.containers.changes import changes

        rec = self.resolve(ref)
        return changes(self.handle(rec.id))

    # ------------------------------------------------------------------ commit / top / stats

    def commit(self, ref: str, *, repo_tag: str | None = None, author: str = "",
               message: str = "", changes: Sequence[str] = (), pause: bool = True,
               config: Mapping[str, Any] | None = None) -> str:
        """docker commit: the container's writable layer as a new image on top of its
        own (pyrt.containers.commit); its id "sha256:<hex>". `config`: a container Config
        for the image (POST /commit's body), the changes applied on top. Event "commit"
        (comment, imageID, imageRef)."""
        from pyrt.containers.commit import commit

        rec = self.resolve(ref)
        with self._lock(rec.id):
            image_id = commit(self.handle(rec.id), store=self.images.store, images=self.images,
                              repo_tag=repo_tag, author=author, message=message,
                              changes=changes, pause=pause, user_config=config)
        self._publish(rec, "commit", comment=message, imageID=image_id, imageRef=repo_tag or "")
        return image_id

    def top(self, ref: str, ps_args: str = "-ef") -> dict[str, Any]:
        """docker top: {"Titles": [...], "Processes": [[...], ...]}; Conflict when the
        container is not running. Event "top"."""
        from pyrt.containers.top import top

        rec = self.resolve(ref)
        out = top(self.handle(rec.id), ps_args)
        self._publish(rec, "top")
        return out

    @overload
    def stats(self, ref: str, *, stream: Literal[False] = False, interval: float = 1.0
              ) -> dict[str, Any]: ...

    @overload
    def stats(self, ref: str, *, stream: Literal[True], interval: float = 1.0
              ) -> Iterator[dict[str, Any]]: ...

    def stats(self, ref: str, *, stream: bool = False, interval: float = 1.0
              ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """docker stats: one sample (stream=False), or samples every `interval` seconds,
        each with the previous as precpu_stats, until the container stops."""
        from pyrt.containers.stats import stats, stream_stats

        rec = self.resolve(ref)
        if stream:
            return stream_stats(self.handle(rec.id), interval)
        return stats(self.handle(rec.id))

    # ------------------------------------------------------------------ run

    def run(self, image: str, command: str | builtins.list[str] | None = None,
            **options: Any) -> RunResult:
        """pyrt.run with this service (create, start, wait, logs, remove): see pyrt.engine.run
        for the options (remove, name, pull, timeout and Config/HostConfig fields)."""
        from pyrt.engine import Engine, run

        for key in ("engine", "root", "run_root"):
            if key in options:
                raise InvalidArgument(f"run: '{key}' is the engine's own; not an option here")
        view = _EngineView(self.images, self)
        return run(image, command, engine=cast(Engine, view), **options)

    # ------------------------------------------------------------------ reconcile

    def reconcile(self) -> dict[str, builtins.list[str]]:
        """At engine start (see Engine): readopt, record exits, clean half-made ones."""
        from pyrt.containers.shim_client import ShimClient

        report: dict[str, builtins.list[str]] = {"adopted": [], "exited": [], "removed": [],
                                        "restarted": [], "lost": []}  # fmt: skip
        recs = [ContainerRecord.from_row(r) for r in self.db.query("SELECT * FROM containers")]
        known = {r.id for r in recs}
        to_restart: builtins.list[str] = []
        for rec in recs:
            if rec.state == "creating":
                self._discard(rec.id)
                report["removed"].append(rec.id)
                continue
            if rec.state == "removing":
                self._discard(rec.id)
                report["removed"].append(rec.id)
                continue
            p = self.paths(rec.id)
            if rec.state in ("running", "paused"):
                client = ShimClient(p.shim) if p.shim.is_dir() else None
                if client is not None and client.shim_alive():
                    self.monitor.watch(rec.id, started_mono=None)
                    report["adopted"].append(rec.id)
                    continue
                ex = client.exit_status() if client is not None else None
                if ex is not None:
                    self.monitor.record_exit(rec.id, ex, reconciling=True)
                    report["exited"].append(rec.id)
                else:
                    with contextlib.suppress(PyrtError, OSError):
                        self.runtime.delete(rec.id, force=True)
                    self._update(rec.id, state="exited", exit_code=255, pid=0,
                                 finished_at=now_rfc3339(),
                                 error="the container's shim died without an exit record")
                    report["lost"].append(rec.id)
                rec = self.get_record(rec.id)
            if rec.state == "restarting":
                self._update(rec.id, state="exited")
                rec.state = "exited"
            if rec.state == "exited" and rec.started_at and rec.host_config.AutoRemove:
                # an --rm container that exited while no engine ran (or whose removal a
                # power loss undid: remove does not sync it) is removed, as dockerd does
                self._discard(rec.id, volumes=True)
                report["removed"].append(rec.id)
                continue
            if rec.state == "exited" and rec.started_at and _restart_at_boot(rec):
                to_restart.append(rec.id)
        # what has no record: runtime states, dirs, mounts
        for d in (self.root, self.run_root):
            for entry in os.listdir(d):
                if entry in known:
                    continue
                for target in mounts_under(d / entry):
                    with contextlib.suppress(PyrtError):
                        _umount(Path(target))
                with contextlib.suppress(PyrtError, OSError):
                    self.runtime.delete(entry, force=True)
                shutil.rmtree(d / entry, ignore_errors=True)
        from pyrt.runtime.state import list_ids

        for rid in list_ids(self.runtime.root):
            if rid not in known:
                with contextlib.suppress(PyrtError, OSError):
                    self.runtime.delete(rid, force=True)
        self.volumes.reconcile(r["id"] for r in self.db.query("SELECT id FROM containers"))
        for cid in to_restart:
            try:
                with self._lock(cid):
                    rec = self.get_record(cid)
                    self._start_locked(rec, restart=True)
                report["restarted"].append(cid)
            except PyrtError as e:
                self._update(cid, error=f"restart at engine start failed: {e}")
        return report


class _Exec:
    """An exec instance this engine created, and its process once started."""

    def __init__(self, instance: ExecInstance) -> None:
        self.instance = instance
        self.run: RunningExec | None = None
        self.lock = threading.Lock()
        self.done = threading.Event()  # set once its exit is recorded


class _EngineView:
    """What pyrt.engine.run uses of an Engine: its images and containers."""

    def __init__(self, images: ImageService, containers: ContainerService) -> None:
        self.images = images
        self.containers = containers


def _exec_config_api(c: ExecConfig) -> dict[str, Any]:
    """An ExecConfig as docker's JSON (what exec_instances.config_json holds)."""
    return {
        "Cmd": list(c.Cmd), "Env": list(c.Env), "User": c.User, "WorkingDir": c.WorkingDir,
        "Tty": c.Tty, "AttachStdin": c.AttachStdin, "AttachStdout": c.AttachStdout,
        "AttachStderr": c.AttachStderr, "Privileged": c.Privileged,
        "DetachKeys": c.DetachKeys,
        "ConsoleSize": list(c.ConsoleSize) if c.ConsoleSize is not None else None,
    }  # fmt: skip


def _restart_at_boot(rec: ContainerRecord) -> bool:
    """Docker with live-restore off: "always" containers come back at daemon start,
    "unless-stopped" ones unless a user stopped them."""
    policy = rec.host_config.RestartPolicy.Name
    if policy == "always":
        return True
    return policy == "unless-stopped" and not rec.manually_stopped


def _reset_shim_dir(p: Paths) -> None:
    """The shim's state dir, emptied of a previous shim's files (the container's own run
    directory; a container of the older layout has it as a shim/ subdirectory)."""
    from pyrt.containers.shim_client import reset_state_dir

    if p.shim != p.run:
        shutil.rmtree(p.shim, ignore_errors=True)
    reset_state_dir(p.shim)


def _read_line_fd(fd: int, timeout: float) -> str:
    """A line from fd; "" at EOF or after timeout."""
    from pyrt.containers.shim_client import readable

    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if not readable(fd, left):
            break
        chunk = os.read(fd, 512)
        if not chunk:
            break
        buf += chunk
    return buf.decode(errors="replace").strip()


def _ts(rfc: str) -> float:
    from pyrt.containers.logs import parse_time_ns

    return parse_time_ns(rfc) / 1e9 if rfc else 0.0


def _du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


_LIST_FILTERS = ("status", "name", "label", "ancestor", "id", "exited", "before", "since",
                 "health")  # fmt: skip
_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def _normalize_filters(filters: Mapping[str, Any] | None) -> dict[str, builtins.list[str]]:
    out: dict[str, builtins.list[str]] = {}
    for key, value in (filters or {}).items():
        if key not in _LIST_FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
        if isinstance(value, str):
            vals = [value]
        elif isinstance(value, Mapping):
            vals = [k for k, v in value.items() if v]
        else:
            vals = [str(v) for v in value]
        if key == "status":
            for v in vals:
                if v not in _STATUSES:
                    raise InvalidArgument(f"invalid filter 'status={v}'")
        if key == "exited":
            for v in vals:
                if not re.fullmatch(r"-?\d+", v):
                    raise InvalidArgument(f"invalid filter 'exited={v}': not an integer")
        out[key] = vals
    return out


def _match(rec: ContainerRecord, flt: Mapping[str, builtins.list[str]],
           by_ref: Mapping[str, int], svc: ContainerService) -> bool:
    state = {"creating": "created"}.get(rec.state, rec.state)
    if "status" in flt and state not in flt["status"]:
        return False
    if "id" in flt and not any(rec.id.startswith(v) for v in flt["id"]):
        return False
    if "name" in flt and not any(re.search(v.lstrip("/"), rec.name) for v in flt["name"]):
        return False
    if "label" in flt:
        labels = rec.config.Labels
        for v in flt["label"]:
            k, eq, want = v.partition("=")
            if k not in labels or (eq and labels[k] != want):
                return False
    if "exited" in flt and not (rec.state == "exited" and rec.started_at
                                and str(rec.exit_code) in flt["exited"]):  # fmt: skip
        return False
    if "before" in by_ref and rec.seq >= by_ref["before"]:
        return False
    if "since" in by_ref and rec.seq <= by_ref["since"]:
        return False
    if "health" in flt:
        hs = (rec.health or {}).get("Status", "none")
        if hs not in flt["health"]:
            return False
    if "ancestor" in flt:
        ok = False
        for v in flt["ancestor"]:
            try:
                img = svc.images.get(v)
            except PyrtError:
                continue
            if img.id == rec.image_id:
                ok = True
        if not ok:
            return False
    return True


__all__ = ["DEFAULT_STOP_TIMEOUT", "ContainerService", "log_options", "now_rfc3339"]
