"""Type stubs for pyrt._core, the C core (csrc/)."""

from collections.abc import Callable
from typing import NotRequired, TypedDict

class CoreError(OSError):
    """A system call in the C core failed; .errno is set, str() names the context."""

class MountSpec(TypedDict):
    target: str  # absolute path inside the container
    source: NotRequired[str | None]
    fstype: NotRequired[str | None]  # None for a bind mount
    data: NotRequired[str | None]
    flags: NotRequired[int]  # MS_* flags; MS_BIND marks a bind mount
    propagation: NotRequired[int]  # MS_SHARED/SLAVE/PRIVATE/UNBINDABLE (|MS_REC) or 0

class DeviceSpec(TypedDict):
    path: str
    type: str  # "c", "b" or "p"
    major: int
    minor: int
    mode: int  # permission bits
    uid: int
    gid: int

class HookSpec(TypedDict):
    path: str
    args: list[str]
    env: list[str]
    timeout: int

class SpawnConfig(TypedDict):
    """What pyrt.runtime hands the C core: the OCI spec already resolved to numbers.

    Init mode has "rootfs"; exec mode has "target_pid" instead and joins that
    container's namespaces (listed in "join") and root.
    """

    argv: list[str]
    env: list[str]
    cwd: str
    new_ns: NotRequired[int]  # CLONE_NEW* flags to create
    join: NotRequired[list[tuple[int, str]]]  # (CLONE_NEW*, /proc/.../ns/... path)
    uid_map: NotRequired[str | None]
    gid_map: NotRequired[str | None]
    cgroup_procs: NotRequired[list[str]]  # cgroup.procs files the pid is written to
    rootfs: NotRequired[str | None]
    rootfs_readonly: NotRequired[bool]
    no_pivot: NotRequired[bool]
    rootfs_propagation: NotRequired[int]
    mounts: NotRequired[list[MountSpec]]
    devices: NotRequired[list[DeviceSpec]]
    masked_paths: NotRequired[list[str]]
    readonly_paths: NotRequired[list[str]]
    hostname: NotRequired[str | None]
    domainname: NotRequired[str | None]
    sysctl: NotRequired[dict[str, str]]
    target_pid: NotRequired[int]
    uid: NotRequired[int]
    gid: NotRequired[int]
    additional_gids: NotRequired[list[int] | None]  # None: leave groups alone
    umask: NotRequired[int | None]
    rlimits: NotRequired[list[tuple[int, int, int]]]  # (RLIMIT_*, soft, hard)
    # (bounding, effective, inheritable, permitted, ambient) bit masks; None: leave alone
    capabilities: NotRequired[tuple[int, int, int, int, int] | None]
    no_new_privileges: NotRequired[bool]
    seccomp_bpf: NotRequired[bytes | None]  # struct sock_filter[]
    seccomp_flags: NotRequired[int]
    oom_score_adj: NotRequired[int | None]
    terminal: NotRequired[bool]
    console_fd: NotRequired[int]  # with terminal: connected socket that gets the pty master
    stdio: NotRequired[tuple[int, int, int]]  # -1 keeps the caller's fd
    preserve_fds: NotRequired[int]
    exec_fifo: NotRequired[str | None]  # block on this fifo after setup until start
    barrier: NotRequired[bool]  # call on_barrier(pid) after mounts, before pivot_root
    start_hooks: NotRequired[list[HookSpec]]
    state_json: NotRequired[str]

def spawn(config: SpawnConfig, on_barrier: Callable[[int], None] | None = None) -> int:
    """Spawn a container process; return its host pid once it is set up.

    The process is the caller's child. With "exec_fifo" it then waits until something
    opens the fifo for reading (the runtime's start); without, it executes at once.
    Raises CoreError (errno + context) and leaves nothing behind on failure. The GIL is
    released while waiting on the child.
    """

def spawn_exec(argv: list[str], env: list[str], fds: list[int] = ...) -> int:
    """Start argv[0] (a path) with env ("NAME=value" strings) through vfork, with the GIL
    released until it has exec'd; its pid (the caller's child, to reap). The
    caller's memory is not copied (vfork). stdin/stdout/stderr are /dev/null, fds[i] is
    its fd 3+i (each must be 3+i itself or not one of those targets); empty signal mask,
    SIGPIPE and SIGXFSZ at their defaults. Raises CoreError.
    """

def remove_all(path: str) -> bool:
    """rm -rf of path in C with the GIL released, as shutil.rmtree(ignore_errors=True):
    symlinks are removed, never followed; a directory on another file system below path
    (a mount point) is left alone. True when path is gone (or was not there).
    """

def spawn_detached(
    config: SpawnConfig, shim_argv: list[str], keep_fds: list[int] = ...
) -> tuple[int, int]:
    """Spawn a container from a detached helper that then execs shim_argv; return
    (container pid, shim pid). The shim is the container's parent and outlives the caller.

    An argument equal to "--pid=" is completed with the container's pid; keep_fds stay
    open in the shim. No barrier hooks; no exec_fifo restrictions (create/start works).
    """

def cgroup_write(path: str, value: str) -> None:
    """Write value to a cgroup file in one write(2); CoreError names 'value' and the path."""

def cgroup_write_many(writes: list[tuple[str, str]]) -> None:
    """Write each (path, value) in order; stop at the first failure. GIL released."""

def cgroup_mkdir(path: str) -> None:
    """mkdir -p a cgroup directory (0755)."""

def cgroup_rmdir(path: str, retries: int = 50, delay_ms: int = 20) -> None:
    """rmdir a cgroup, retrying on EBUSY; a missing directory is fine."""

def cgroup_device_filter(cgroup_dir: str, rules: list[tuple[str, int, int, str, bool]]) -> None:
    """Attach a cgroup v2 device eBPF filter built from (type 'a'|'b'|'c', major or -1,
    minor or -1, access 'rwm' subset, allow) rules; last match wins, no match denies.
    Replaces the filters attached before. Bad rules raise ValueError."""

def cgroup_device_filter_count(cgroup_dir: str) -> int:
    """How many device filters are attached to the cgroup v2 directory."""

# -- layers: sha256, unpack, pack (csrc/core/digest.c, tar.c; bind_layer.cpp) ---------------

class LayerResult(TypedDict):
    digest: str  # "sha256:<hex>" of the blob (the compressed bytes read or written)
    diff_id: str  # "sha256:<hex>" of the uncompressed tar
    size: int
    diff_size: int
    entries: int

def sha256_file(path: str) -> str:
    """sha256 of a file's content as 'sha256:<hex>' (1 MiB reads, GIL released)."""

def sha256_fd(fd: int) -> str:
    """sha256 of everything readable from fd until EOF, as 'sha256:<hex>'. Never seeks."""

class Sha256:
    """Streaming sha256 over libcrypto."""

    def __init__(self) -> None: ...
    def update(self, data: bytes | bytearray | memoryview) -> None: ...
    def hexdigest(self) -> str:
        """64 hex digits of everything so far; the object can keep being updated."""

def unpack_layer(
    fd: int, dest: str, expected_digest: str | None = None, allow_devices: bool = True
) -> LayerResult:
    """Read a gzip/zstd/plain layer from fd until EOF and extract it beneath dest.

    CoreError on failure, with .bad_input True when the archive or the digest was at fault
    (dest may be partly filled: the caller discards it). GIL released.
    """

def pack_layer(
    src_dir: str, out_fd: int, compression: str = "gzip", whiteouts: bool = True
) -> LayerResult:
    """Write a reproducible tar ('gzip' or 'none') of src_dir's contents to out_fd."""
