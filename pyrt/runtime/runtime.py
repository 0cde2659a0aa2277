"""The in-process OCI runtime: create/start/state/kill/delete and friends.

    rt = Runtime(root="/run/pyrt-runc")
    pid = rt.create("web", "/path/to/bundle")   # status: created (waits on exec.fifo)
    rt.start("web")                              # status: running
    rt.kill("web", signal.SIGTERM)
    rt.delete("web")

State lives in <root>/<id>/ (see pyrt.runtime.state). The container's init is a child of
the process that created it; a CLI create exits and leaves it to its subreaper.
"""

from __future__ import annotations

import os
import select
import stat
import sys
import time

from pyrt.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PyrtError,
    SystemError_,
)
from pyrt.runtime import hooks as _hooks
from pyrt.runtime.state import (
    SIGKILL,
    SIGTERM,
    ContainerDir,
    atomic_write,
    compute_status,
    json_dumps,
    list_ids,
    now_rfc3339,
    oci_state,
    pid_start_time,
    process_alive,
    suppress,
    validate_id,
)

# shutil and socket are imported where they are used, and contextlib, json, signal and
# typing not at all: pyrt-runc pays for every import at each command (see csrc/runc/main.c)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from typing import Any

OCI_VERSION = "1.2.0"
OCI_VERSION_MIN = "1.0.0"
DEFAULT_ROOT = "/run/pyrt-runc"

_NS_TYPES = ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"]
_MOUNT_OPTIONS = sorted(
    [
        "async",
        "atime",
        "bind",
        "defaults",
        "dev",
        "diratime",
        "dirsync",
        "exec",
        "iversion",
        "lazytime",
        "loud",
        "mand",
        "noatime",
        "nodev",
        "nodiratime",
        "noexec",
        "noiversion",
        "nolazytime",
        "nomand",
        "norelatime",
        "nostrictatime",
        "nosuid",
        "nosymfollow",
        "private",
        "rbind",
        "relatime",
        "remount",
        "ro",
        "rprivate",
        "rshared",
        "rslave",
        "runbindable",
        "rw",
        "shared",
        "silent",
        "slave",
        "strictatime",
        "suid",
        "symfollow",
        "sync",
        "unbindable",
        "ratime",
        "rnoatime",
        "rnodiratime",
        "rnorelatime",
        "rnostrictatime",
        "rrelatime",
        "rstrictatime",
        "rro",
        "rrw",
        "rnosuid",
        "rsuid",
        "rnodev",
        "rdev",
        "rnoexec",
        "rexec",
        "rnosymfollow",
        "rsymfollow",
    ]
)
_CAPS = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
]
_SECCOMP_ACTIONS = [
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
]
_SECCOMP_OPERATORS = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
]
_SECCOMP_ARCHS = ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"]


def exit_status(wait_status: int) -> int:
    """A waitpid status as a shell exit status: the code, or 128+signal."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    if os.WIFEXITED(wait_status):
        return os.WEXITSTATUS(wait_status)
    return 255


def _core_error(e: OSError, what: str) -> SystemError_:
    msg = str(e) if str(e) else os.strerror(e.errno or 0)
    return SystemError_(f"{what}: {msg}", e.errno)


def _connect_console(path: str) -> socket.socket:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise InvalidArgument(f"console socket {path}: cannot connect: {e.strerror}") from None
    return s


def _write_pid_file(path: str, pid: int) -> None:
    """Into the file when it is a fifo or a pipe (/proc/self/fd/N: pyrt-shim's), else
    through a temp file and rename."""
    path = os.path.abspath(path)
    try:
        if stat.S_ISFIFO(os.stat(path).st_mode):
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)
            return
    except FileNotFoundError:
        pass
    except OSError as e:
        raise SystemError_(f"pid file {path}: {e.strerror}", e.errno) from None
    try:
        atomic_write(path, str(pid).encode(), 0o644)
    except OSError as e:
        raise SystemError_(f"pid file {path}: {e.strerror}", e.errno) from None


class Runtime:
    """pyrt's OCI runtime, in process. Every method raises a pyrt.errors.PyrtError."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = os.path.abspath(root)
        # takes a deleted container's state directory away instead of removing it in place
        # (an engine's trash: renamed now, deleted in the background): on ext4 with discard
        # a directory's removal waits for the device while it holds its parent, and every
        # create of a state directory beside it waits too. None: removed in place.
        self.discard: Callable[[str], None] | None = None
        # exit statuses of container processes this object reaped (pid -> wait status)
        self._reaped: dict[int, int] = {}

    # ---------------------------------------------------------------- helpers

    def _dir(self, container_id: str) -> ContainerDir:
        return ContainerDir(self.root, container_id)

    def _load(self, container_id: str) -> tuple[ContainerDir, dict[str, Any]]:
        cdir = self._dir(container_id)
        if not cdir.exists():
            raise NotFound(f"container '{container_id}' does not exist")
        return cdir, cdir.read()

    def _cgroup(self, record: dict[str, Any]) -> Any:
        from pyrt.runtime import cgroups

        data = record.get("cgroup")
        if not data:
            return None
        return cgroups.from_state(data)

    def _reap(self, pid: int) -> None:
        """Reap pid if it is our exited child (so it does not linger as a zombie)."""
        if pid <= 0 or pid in self._reaped:
            return
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if got == pid:
            self._reaped[pid] = status

    def _status(self, cdir: ContainerDir, record: dict[str, Any]) -> str:
        pid = int(record.get("pid") or 0)
        self._reap(pid)
        cg = None
        with suppress(PyrtError, OSError, KeyError, TypeError, ValueError):
            cg = self._cgroup(record)
        return compute_status(cdir, record, cg.freezer_state if cg is not None else None)

    def _wait_gone(self, pid: int, start: int | None, timeout: float = 10.0) -> None:
        """Wait until pid has exited (reaping it if it is our child)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._reap(pid)
            if not process_alive(pid, start):
                return
            time.sleep(0.005)
        raise SystemError_(f"process {pid} did not exit within {timeout:.0f}s")

    # ---------------------------------------------------------------- lifecycle

    def create(
        self,
        container_id: str,
        bundle: str,
        *,
        console_socket: str | None = None,
        pid_file: str | None = None,
        no_pivot: bool = False,
        preserve_fds: int = 0,
        stdio: tuple[int, int, int] | None = None,
        shim: tuple[list[str], list[int]] | None = None,
    ) -> int:
        """Create a container from an OCI bundle; return its init pid (status: created).

        shim: (argv, keep_fds) of a process that becomes the container's parent: the spawn
        goes through _core.spawn_detached, which execs argv (an "--pid=" argument is
        completed with the container's pid) with keep_fds open; its pid is recorded as
        "shim_pid". No prestart/createRuntime/createContainer hooks in that mode."""
        validate_id(container_id)
        if preserve_fds < 0:
            raise InvalidArgument(f"preserve-fds: must not be negative, got {preserve_fds}")
        from pyrt.runtime.spec import load_spec

        bundle = os.path.abspath(bundle)
        spec = load_spec(bundle)
        all_hooks = {name: _hooks.hooks_of(spec, name) for name in _hooks.HOOK_NAMES}
        process = spec.get("process") or {}
        if process.get("terminal") and console_socket is None:
            raise InvalidArgument(
                "process.terminal is true: a console socket is needed (--console-socket)"
            )
        cdir = self._dir(container_id)
        if not cdir.make():
            raise Conflict(f"container '{container_id}' already exists")
        cleanup = _Cleanup()
        cleanup.push(lambda: _rmtree(cdir.path))
        try:
            with cdir.locked():
                return self._create_locked(
                    cdir, spec, bundle, all_hooks, cleanup,
                    console_socket=console_socket, pid_file=pid_file, no_pivot=no_pivot,
                    preserve_fds=preserve_fds, stdio=stdio, shim=shim,
                )  # fmt: skip
        except BaseException:
            cleanup.run()
            raise

    def _create_locked(
        self,
        cdir: ContainerDir,
        spec: dict[str, Any],
        bundle: str,
        all_hooks: dict[str, list[dict[str, Any]]],
        cleanup: _Cleanup,
        *,
        console_socket: str | None,
        pid_file: str | None,
        no_pivot: bool,
        preserve_fds: int,
        stdio: tuple[int, int, int] | None,
        shim: tuple[list[str], list[int]] | None = None,
    ) -> int:
        from pyrt import _core
        from pyrt.runtime import cgroups, translate

        linux = spec.get("linux") or {}
        root_path = (spec.get("root") or {}).get("path", "rootfs")
        rootfs = os.path.normpath(os.path.join(bundle, root_path))
        record: dict[str, Any] = {
            "ociVersion": spec.get("ociVersion", OCI_VERSION),
            "id": cdir.id,
            "status": "creating",
            "pid": 0,
            "pid_start": None,
            "bundle": bundle,
            "rootfs": rootfs,
            "annotations": spec.get("annotations") or {},
            "created": now_rfc3339(),
            "owner": "",
            "cgroup": None,
            "config": spec,
        }
        cg = cgroups.open_cgroup(linux.get("cgroupsPath"), cdir.id)
        record["cgroup"] = cg.to_state()
        # one write before the cgroup exists: a delete after a failed create then finds it
        cdir.write(record)
        cg.create()
        cleanup.push(cg.destroy)
        resources = _with_default_devices(linux)
        if resources:
            cg.apply(resources)

        os.mkfifo(cdir.fifo_path, 0o622)
        # mkfifo obeys the umask; a container whose root maps to another uid must still
        # be able to open the fifo for writing
        os.chmod(cdir.fifo_path, 0o622)

        console: socket.socket | None = None
        if console_socket is not None:
            console = _connect_console(console_socket)
            cleanup.push(console.close)

        want_barrier = bool(
            all_hooks["prestart"] or all_hooks["createRuntime"] or all_hooks["createContainer"]
        )
        ns_types = [
            n.get("type", "") for n in (linux.get("namespaces") or []) if isinstance(n, dict)
        ]
        start_state = json_dumps(oci_state(record, "created"))
        spawned: list[int] = []
        barrier_error: list[BaseException] = []

        def on_barrier(pid: int) -> None:
            try:
                spawned.append(pid)
                record["pid"] = pid
                record["pid_start"] = pid_start_time(pid)
                cdir.write(record)
                state_json = json_dumps(oci_state(record, "creating"))
                for kind in ("prestart", "createRuntime"):
                    _hooks.run_hooks(all_hooks[kind], state_json, kind=kind)
                _hooks.run_hooks(
                    all_hooks["createContainer"], state_json, kind="createContainer",
                    enter_pid=pid, namespaces=ns_types,
                )  # fmt: skip
            except BaseException as e:
                barrier_error.append(e)
                raise

        cfg = translate.to_spawn_config(
            spec,
            bundle,
            exec_fifo=cdir.fifo_path,
            console_fd=console.fileno() if console is not None else None,
            preserve_fds=preserve_fds,
            cgroup_procs=cg.procs_files(),
            barrier=want_barrier,
            state_json=start_state,
            stdio=stdio,
            cgroup_dirs=_cgroup_dirs(cg),
            no_pivot=no_pivot,
            seccomp_cache=os.path.join(self.root, ".seccomp-cache"),
        )
        try:
            if shim is not None:
                if want_barrier:
                    raise InvalidArgument(
                        "prestart/createRuntime/createContainer hooks cannot run with a shim"
                    )
                pid, record["shim_pid"] = _core.spawn_detached(cfg, shim[0], shim[1])
            else:
                pid = _core.spawn(cfg, on_barrier if want_barrier else None)
        except BaseException as e:
            for p in spawned:
                self._kill_and_reap(p)
            if barrier_error and barrier_error[0] is not e:
                raise barrier_error[0] from None
            if isinstance(e, OSError):
                raise _core_error(e, f"container '{cdir.id}': spawn") from None
            raise
        cleanup.push(lambda: self._kill_and_reap(pid))
        if console is not None:
            console.close()

        record["pid"] = pid
        record["pid_start"] = pid_start_time(pid)
        record["status"] = "created"
        cdir.write(record)
        if pid_file:
            _write_pid_file(pid_file, pid)
        cleanup.clear()
        return pid

    def _kill_and_reap(self, pid: int) -> None:
        with suppress(ProcessLookupError):
            os.kill(pid, SIGKILL)
        with suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def start(self, container_id: str) -> None:
        """Let a created container's process exec its program; run poststart hooks."""
        cdir, record = self._load(container_id)
        with cdir.locked():
            record = cdir.read()
            status = self._status(cdir, record)
            if status != "created":
                if status == "stopped":
                    raise FailedPrecondition(
                        f"cannot start container '{container_id}': it has stopped"
                    )
                raise FailedPrecondition(
                    f"cannot start container '{container_id}': it is {status}, not created"
                )
            pid = int(record["pid"])
            start = record.get("pid_start")
            try:
                fd = os.open(cdir.fifo_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError:
                raise FailedPrecondition(
                    f"cannot start container '{container_id}': it was already started"
                ) from None
            try:
                while True:
                    r, _, _ = select.select([fd], [], [], 0.05)
                    if r:
                        try:
                            data = os.read(fd, 1)
                        except BlockingIOError:
                            continue
                        if data:
                            break
                    self._reap(pid)
                    if not process_alive(pid, start):
                        raise FailedPrecondition(
                            f"cannot start container '{container_id}': its process exited"
                        )
            finally:
                os.close(fd)
            with suppress(FileNotFoundError):
                os.unlink(cdir.fifo_path)
            record["status"] = "running"
            cdir.write(record)
            spec = record.get("config") or {}
            poststart = _hooks.hooks_of(spec, "poststart")
            if poststart:
                state_json = json_dumps(oci_state(record, "running"))
                _hooks.run_hooks(poststart, state_json, kind="poststart", warn_only=True)

    def config(self, container_id: str) -> dict[str, Any]:
        """The OCI spec the container was created from."""
        _, record = self._load(container_id)
        cfg = record.get("config") or {}
        return dict(cfg)

    def state(self, container_id: str) -> dict[str, Any]:
        """The OCI state of a container (plus runc's rootfs, created, owner)."""
        cdir, record = self._load(container_id)
        return oci_state(record, self._status(cdir, record))

    def kill(self, container_id: str, sig: int = SIGTERM, all: bool = False) -> None:
        """Send sig to the container's init (or, with all, to every process in it)."""
        cdir, record = self._load(container_id)
        status = self._status(cdir, record)
        if status in ("stopped", "creating"):
            raise FailedPrecondition(f"container '{container_id}': container not running")
        if all:
            cg = self._cgroup(record)
            if cg is None:
                raise FailedPrecondition(f"container '{container_id}' has no cgroup")
            try:
                cg.kill_all(sig)
            except OSError as e:
                raise _core_error(e, f"container '{container_id}': kill --all") from None
            return
        try:
            os.kill(int(record["pid"]), sig)
        except ProcessLookupError:
            raise FailedPrecondition(f"container '{container_id}': container not running") from None

    def delete(self, container_id: str, force: bool = False) -> None:
        """Remove a stopped (or created) container; with force, kill a running one first.
        Its state directory goes to self.discard when there is one."""
        import shutil

        discard = self.discard

        def remove(path: str) -> None:
            if discard is not None:
                discard(path)
            else:
                shutil.rmtree(path, ignore_errors=True)

        cdir = self._dir(container_id)
        if not cdir.exists():
            if force:
                return
            raise NotFound(f"container '{container_id}' does not exist")
        with cdir.locked():
            try:
                record = cdir.read()
            except NotFound:
                if force:
                    remove(cdir.path)
                    return
                raise
            status = self._status(cdir, record)
            pid = int(record.get("pid") or 0)
            start = record.get("pid_start")
            cg = None
            with suppress(PyrtError, OSError, KeyError, TypeError, ValueError):
                cg = self._cgroup(record)
            if status in ("running", "paused", "creating") and not force:
                raise FailedPrecondition(
                    f"cannot delete container '{container_id}' that is not stopped: {status}"
                )
            if status != "stopped":
                if cg is not None:
                    with suppress(OSError, PyrtError):
                        cg.thaw()
                if pid > 0 and process_alive(pid, start):
                    with suppress(ProcessLookupError):
                        os.kill(pid, SIGKILL)
                if cg is not None:
                    with suppress(OSError, PyrtError):
                        cg.kill_all(SIGKILL)
                if pid > 0:
                    self._wait_gone(pid, start)
            self._reap(pid)
            spec = record.get("config") or {}
            poststop = []
            with suppress(InvalidArgument):
                poststop = _hooks.hooks_of(spec, "poststop")
            if poststop:
                state_json = json_dumps(oci_state(record, "stopped"))
                _hooks.run_hooks(poststop, state_json, kind="poststop", warn_only=True)
            if cg is not None:
                try:
                    cg.destroy()
                except (OSError, PyrtError) as e:
                    print(f"warning: container '{container_id}': cgroup: {e}", file=sys.stderr)
            remove(cdir.path)

    def wait(self, container_id: str) -> int:
        """Wait for the init of a container created by this object; its exit status."""
        _, record = self._load(container_id)
        pid = int(record.get("pid") or 0)
        return self._wait_pid(pid)

    def _wait_pid(self, pid: int) -> int:
        if pid in self._reaped:
            return exit_status(self._reaped.pop(pid))
        while True:
            try:
                _, status = os.waitpid(pid, 0)
            except InterruptedError:
                continue
            except ChildProcessError:
                raise FailedPrecondition(
                    f"process {pid} is not a child of this runtime: cannot wait for it"
                ) from None
            return exit_status(status)

    def run(
        self,
        container_id: str,
        bundle: str,
        *,
        console_socket: str | None = None,
        pid_file: str | None = None,
        no_pivot: bool = False,
        preserve_fds: int = 0,
        stdio: tuple[int, int, int] | None = None,
        detach: bool = False,
        keep: bool = False,
        on_started: Callable[[int], None] | None = None,
    ) -> int:
        """create + start; unless detach, wait, delete (unless keep), return the exit status."""
        pid = self.create(
            container_id, bundle, console_socket=console_socket, pid_file=pid_file,
            no_pivot=no_pivot, preserve_fds=preserve_fds, stdio=stdio,
        )  # fmt: skip
        try:
            self.start(container_id)
        except BaseException:
            with suppress(PyrtError):
                self.delete(container_id, force=True)
            raise
        if detach:
            return 0
        if on_started is not None:
            on_started(pid)
        code = self._wait_pid(pid)
        if not keep:
            self.delete(container_id, force=True)
        return code

    def exec(
        self,
        container_id: str,
        process: dict[str, Any],
        *,
        detach: bool = False,
        console_socket: str | None = None,
        pid_file: str | None = None,
        preserve_fds: int = 0,
        stdio: tuple[int, int, int] | None = None,
        on_started: Callable[[int], None] | None = None,
    ) -> int:
        """Run another process in a running container: its pid (detach) or exit status."""
        from pyrt import _core
        from pyrt.runtime import translate
        from pyrt.runtime.spec import validate_process

        cdir, record = self._load(container_id)
        status = self._status(cdir, record)
        if status not in ("running", "created"):
            raise FailedPrecondition(f"cannot exec in container '{container_id}': it is {status}")
        validate_process(process, "process")
        if process.get("terminal") and console_socket is None:
            raise InvalidArgument("process.terminal is true: a console socket is needed")
        cg = self._cgroup(record)
        console = _connect_console(console_socket) if console_socket is not None else None
        try:
            cfg = translate.to_exec_config(
                process, record.get("config") or {}, int(record["pid"]),
                console_fd=console.fileno() if console is not None else None,
                preserve_fds=preserve_fds,
                cgroup_procs=cg.procs_files() if cg is not None else [],
                stdio=stdio,
            )  # fmt: skip
            try:
                pid = _core.spawn(cfg, None)
            except OSError as e:
                raise _core_error(e, f"exec in container '{container_id}'") from None
        finally:
            if console is not None:
                console.close()
        if pid_file:
            _write_pid_file(pid_file, pid)
        if detach:
            return pid
        if on_started is not None:
            on_started(pid)
        return self._wait_pid(pid)

    def ps(self, container_id: str) -> list[int]:
        """Host pids of the processes in the container's cgroup."""
        _, record = self._load(container_id)
        cg = self._cgroup(record)
        if cg is None:
            return []
        return sorted(int(p) for p in cg.pids())

    def list(self) -> list[dict[str, Any]]:
        """The state of every container under the root."""
        out = []
        for cid in list_ids(self.root):
            with suppress(NotFound):
                out.append(self.state(cid))
        return out

    def pause(self, container_id: str) -> None:
        self._freeze(container_id, True)

    def resume(self, container_id: str) -> None:
        self._freeze(container_id, False)

    def _freeze(self, container_id: str, frozen: bool) -> None:
        """pause (frozen) or resume a container through its cgroup freezer."""
        want, verb = ("running", "pause") if frozen else ("paused", "resume")
        cdir, record = self._load(container_id)
        with cdir.locked():
            status = self._status(cdir, record)
            if status != want:
                raise FailedPrecondition(f"container '{container_id}' is not {want}: {status}")
            cg = self._cgroup(record)
            try:
                if frozen:
                    cg.freeze()
                else:
                    cg.thaw()
            except OSError as e:
                raise _core_error(e, f"{verb} container '{container_id}'") from None

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """Apply new linux.resources to a live container's cgroup."""
        cdir, record = self._load(container_id)
        with cdir.locked():
            status = self._status(cdir, record)
            if status == "stopped":
                raise FailedPrecondition(f"container '{container_id}' is not running")
            cg = self._cgroup(record)
            try:
                cg.apply(resources)
            except OSError as e:
                raise _core_error(e, f"update container '{container_id}'") from None
            spec = record.get("config") or {}
            linux = spec.setdefault("linux", {})
            merged = dict(linux.get("resources") or {})
            for k, v in resources.items():
                if isinstance(v, dict) and isinstance(merged.get(k), dict):
                    merged[k] = {**merged[k], **v}
                else:
                    merged[k] = v
            linux["resources"] = merged
            cdir.write(record)

    def stats(self, container_id: str) -> dict[str, Any]:
        _, record = self._load(container_id)
        cg = self._cgroup(record)
        return dict(cg.stats()) if cg is not None else {}

    def features(self) -> dict[str, Any]:
        """What this runtime supports, in the shape of `runc features`."""
        return {
            "ociVersionMin": OCI_VERSION_MIN,
            "ociVersionMax": OCI_VERSION,
            "hooks": list(_hooks.HOOK_NAMES),
            "mountOptions": _MOUNT_OPTIONS,
            "linux": {
                "namespaces": list(_NS_TYPES),
                "capabilities": [f"CAP_{c}" for c in _CAPS],
                "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
                "seccomp": {
                    "enabled": True,
                    "actions": list(_SECCOMP_ACTIONS),
                    "operators": list(_SECCOMP_OPERATORS),
                    "archs": list(_SECCOMP_ARCHS),
                },
                "apparmor": {"enabled": False},
                "selinux": {"enabled": False},
            },
            "annotations": {"io.github.pyrt.runtime.version": "0.1.0"},
        }


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _cgroup_dirs(cg: Any) -> dict[str, str]:
    """v1/hybrid: hierarchy name ("memory", "cpu,cpuacct", "unified") -> the container's dir."""
    paths = getattr(cg, "paths", None)
    if not isinstance(paths, dict):
        return {}
    from pyrt.runtime.cgroups import detect_layout

    out: dict[str, str] = {}
    for ctrl, h in detect_layout().v1.items():
        d = paths.get(ctrl)
        if d:
            out[os.path.basename(h.mountpoint)] = d
    unified = getattr(cg, "unified", None)
    if isinstance(unified, str):
        out["unified"] = unified
    return out


def _with_default_devices(linux: dict[str, Any]) -> dict[str, Any] | None:
    """linux.resources with the device rules every container gets appended, as runc does:
    the spec's linux.devices and the standard nodes (null, zero, tty, ptmx, pts...)."""
    from pyrt.runtime.cgroups import DEFAULT_DEVICE_RULES

    resources = linux.get("resources")
    if not resources or resources.get("devices") is None:
        return resources
    rules = list(resources["devices"])
    for dev in linux.get("devices") or []:
        if dev.get("type") in ("c", "b"):
            rules.append({"allow": True, "type": dev["type"], "major": dev.get("major"),
                          "minor": dev.get("minor"), "access": "rwm"})  # fmt: skip
    for rule in DEFAULT_DEVICE_RULES:
        minor = None if rule.minor < 0 else rule.minor
        rules.append(
            {"allow": True, "type": rule.type, "major": rule.major, "minor": minor,
             "access": rule.access}
        )  # fmt: skip
    return {**resources, "devices": rules}


class _Cleanup:
    """Undo actions run in reverse order on failure."""

    def __init__(self) -> None:
        self._fns: list[Callable[[], object]] = []

    def push(self, fn: Callable[[], object]) -> None:
        self._fns.append(fn)

    def clear(self) -> None:
        self._fns.clear()

    def run(self) -> None:
        while self._fns:
            fn = self._fns.pop()
            try:
                fn()
            except Exception as e:  # keep undoing; report what could not be undone
                print(f"warning: cleanup: {e}", file=sys.stderr)


__all__ = ["DEFAULT_ROOT", "OCI_VERSION", "Runtime", "exit_status"]
