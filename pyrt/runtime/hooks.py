"""OCI lifecycle hooks: run one hook with the container state on its stdin.

prestart/createRuntime/poststart/poststop run in the runtime's namespaces;
createContainer runs in the container's namespaces (entered with nsenter from util-linux,
at the spawn barrier, before pivot_root, so the hook path still resolves on the host);
startContainer runs inside the container and is handed to the C spawn (see to_hook_specs).
"""

from __future__ import annotations

import os
import sys

from pyrt.errors import InvalidArgument, SystemError_

TYPE_CHECKING = False  # typing is not imported at run time (pyrt-runc start-up)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

HOOK_NAMES = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)

# OCI namespace type -> nsenter flag
_NSENTER_FLAGS = {
    "mount": "--mount",
    "uts": "--uts",
    "ipc": "--ipc",
    "network": "--net",
    "pid": "--pid",
    "cgroup": "--cgroup",
    "user": "--user",
}


class HookError(SystemError_):
    """A lifecycle hook failed, timed out or could not be started."""


def hooks_of(spec: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The hooks of one kind in a spec, checked for shape ("hooks.<name>[i].path" ...)."""
    hooks = spec.get("hooks") or {}
    if not isinstance(hooks, dict):
        raise InvalidArgument("hooks: must be an object")
    lst = hooks.get(name) or []
    if not isinstance(lst, list):
        raise InvalidArgument(f"hooks.{name}: must be an array")
    for i, h in enumerate(lst):
        where = f"hooks.{name}[{i}]"
        if not isinstance(h, dict):
            raise InvalidArgument(f"{where}: must be an object")
        path = h.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise InvalidArgument(f"{where}.path: must be an absolute path, got {path!r}")
        for key in ("args", "env"):
            v = h.get(key)
            if v is not None and (
                not isinstance(v, list) or not all(isinstance(x, str) for x in v)
            ):
                raise InvalidArgument(f"{where}.{key}: must be an array of strings")
        t = h.get("timeout")
        if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t <= 0):
            raise InvalidArgument(f"{where}.timeout: must be a positive integer, got {t!r}")
    return lst


def to_hook_specs(hooks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hooks in the shape of pyrt._core.HookSpec (for startContainer)."""
    return [
        {
            "path": h["path"],
            "args": list(h.get("args") or [h["path"]]),
            "env": list(h.get("env") or []),
            "timeout": int(h.get("timeout") or 0),
        }
        for h in hooks
    ]


def run_hook(
    hook: dict[str, Any],
    state_json: str,
    *,
    kind: str,
    enter_pid: int | None = None,
    namespaces: Sequence[str] = (),
) -> None:
    """Run one hook, state_json on stdin; raise HookError if it fails or times out.

    With enter_pid, the hook runs in that process's namespaces listed in `namespaces`
    (OCI names: mount, uts, ipc, network, pid, cgroup, user).
    """
    import subprocess

    path: str = hook["path"]
    args: list[str] = list(hook.get("args") or [path])
    env_list: list[str] = list(hook.get("env") or [])
    env = {}
    for item in env_list:
        k, sep, v = item.partition("=")
        if sep:
            env[k] = v
    timeout = hook.get("timeout")
    argv: list[str]
    executable: str | None
    if enter_pid is not None:
        import shutil

        nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        flags = [_NSENTER_FLAGS[n] for n in namespaces if n in _NSENTER_FLAGS]
        # nsenter takes the program path; argv[0] of the hook cannot be kept this way
        argv = [nsenter, f"--target={enter_pid}", *flags, "--", path, *args[1:]]
        executable = None
    else:
        argv = args
        executable = path
    try:
        proc = subprocess.Popen(
            argv,
            executable=executable,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
        )
    except OSError as e:
        raise HookError(f"{kind} hook {path}: cannot run: {e.strerror}", e.errno) from None
    try:
        _, err = proc.communicate(state_json.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise HookError(f"{kind} hook {path}: timed out after {timeout}s") from None
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        detail = err.decode("utf-8", "replace").strip()
        status = (
            f"killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exit status {proc.returncode}"
        )
        raise HookError(f"{kind} hook {path} failed: {status}" + (f": {detail}" if detail else ""))


def run_hooks(
    hooks: Sequence[dict[str, Any]],
    state_json: str,
    *,
    kind: str,
    warn_only: bool = False,
    enter_pid: int | None = None,
    namespaces: Sequence[str] = (),
) -> None:
    """Run hooks in order. A failure stops and raises, or (warn_only) is printed and skipped."""
    for h in hooks:
        try:
            run_hook(h, state_json, kind=kind, enter_pid=enter_pid, namespaces=namespaces)
        except HookError as e:
            if not warn_only:
                raise
            print(f"warning: {e}", file=sys.stderr)
