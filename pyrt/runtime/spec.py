"""Loading and validating an OCI runtime bundle's config.json (runtime-spec 1.0.0 - 1.2.x).

Every error is an InvalidArgument whose message starts with the file and the field path,
e.g. "config.json: linux.namespaces[2].type: unknown namespace 'foo'". Properties the spec
does not define are ignored (as the runtime spec asks); properties it defines but pyrt
cannot honour are refused rather than silently dropped.
"""

from __future__ import annotations

import os

from pyrt.errors import InvalidArgument
from pyrt.runtime.capabilities import check_cap_names

# pyrt-runc create loads this module in a fresh interpreter per container: no json, re or
# typing at import (see pyrt.runtime.state.json_loads)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

CONFIG_FILE = "config.json"

#: OCI namespace type -> the file under /proc/<pid>/ns/
NS_PROC_NAMES: dict[str, str] = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}

#: rlimit types from the runtime spec (Linux) and their numbers on Linux
RLIMITS: dict[str, int] = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}

CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
HOOK_KINDS = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)
PROPAGATIONS = (
    "shared",
    "rshared",
    "slave",
    "rslave",
    "private",
    "rprivate",
    "unbindable",
    "runbindable",
)
DEVICE_TYPES = ("c", "b", "u", "p")

_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1
_VERSION_SUFFIX_CHARS = frozenset(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.+-"
)


def _version_numbers(s: str) -> tuple[int, int, int] | None:
    """MAJOR.MINOR.PATCH of s, with an optional -pre or +build suffix; None if s is not one.

    Accepts what ^(\\d+)\\.(\\d+)\\.(\\d+)(?:[-+][0-9A-Za-z.+-]*)?$ matches (\\d: str.isdecimal,
    and $ also before a final newline)."""
    if s.endswith("\n"):
        s = s[:-1]
    major, dot1, rest = s.partition(".")
    minor, dot2, rest = rest.partition(".")
    if not (dot1 and dot2 and major.isdecimal() and minor.isdecimal()):
        return None
    n = 0
    while n < len(rest) and rest[n].isdecimal():
        n += 1
    patch, suffix = rest[:n], rest[n:]
    if not patch:
        return None
    if suffix and (suffix[0] not in "-+" or not _VERSION_SUFFIX_CHARS.issuperset(suffix[1:])):
        return None
    return int(major), int(minor), int(patch)


class _V:
    """Error helper: a file name ("config.json") that prefixes every message."""

    def __init__(self, where: str) -> None:
        self.where = where

    def err(self, path: str, msg: str) -> InvalidArgument:
        return InvalidArgument(f"{self.where}: {path}: {msg}")

    def obj(self, value: object, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.err(path, f"must be an object, not {_tname(value)}")
        return value

    def lst(self, value: object, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.err(path, f"must be a list, not {_tname(value)}")
        return value

    def string(self, value: object, path: str, *, nonempty: bool = False) -> str:
        if not isinstance(value, str):
            raise self.err(path, f"must be a string, not {_tname(value)}")
        if nonempty and not value:
            raise self.err(path, "must not be empty")
        return value

    def abspath(self, value: object, path: str) -> str:
        s = self.string(value, path, nonempty=True)
        if not s.startswith("/"):
            raise self.err(path, f"must be an absolute path, not {s!r}")
        return s

    def boolean(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.err(path, f"must be true or false, not {_tname(value)}")
        return value

    def integer(self, value: object, path: str, lo: int, hi: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.err(path, f"must be an integer, not {_tname(value)}")
        if not lo <= value <= hi:
            raise self.err(path, f"{value} is out of range ({lo} to {hi})")
        return value

    def strlist(self, value: object, path: str) -> list[str]:
        items = self.lst(value, path)
        for i, item in enumerate(items):
            self.string(item, f"{path}[{i}]")
        return items

    def env(self, value: object, path: str) -> list[str]:
        items = self.strlist(value, path)
        for i, item in enumerate(items):
            key, sep, _ = item.partition("=")
            if not sep or not key:
                raise self.err(f"{path}[{i}]", f"must be of the form KEY=VALUE, not {item!r}")
        return items


def _tname(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "list", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


# --- loading --------------------------------------------------------------------------------


def read_json(path: str, where: str) -> Any:
    """Reads a JSON file; InvalidArgument with line and column when it does not parse."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise InvalidArgument(f"{where}: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"{where}: cannot read {path}: {e}") from None
    from pyrt.runtime.state import json_loads

    try:
        return json_loads(text)
    except ValueError as e:
        import json

        if not isinstance(e, json.JSONDecodeError):
            raise
        raise InvalidArgument(
            f"{where}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None


def load_spec(bundle: str, *, require_process: bool = True) -> dict[str, Any]:
    """Reads and validates <bundle>/config.json; returns the spec as a dict.

    `require_process` is true for create and run (the spec must say what to execute).
    """
    spec = read_json(os.path.join(bundle, CONFIG_FILE), CONFIG_FILE)
    validate_spec(spec, bundle, require_process=require_process)
    assert isinstance(spec, dict)
    return spec


def load_process(path: str) -> dict[str, Any]:
    """Reads and validates a process.json (`exec -p`)."""
    where = os.path.basename(path) or path
    process = read_json(path, where)
    validate_process(process, where, path="")
    assert isinstance(process, dict)
    return process


def parse_version(version: object, where: str = CONFIG_FILE) -> tuple[int, int, int]:
    """Parses ociVersion; InvalidArgument unless it is a 1.0 - 1.2 version."""
    v = _V(where)
    s = v.string(version, "ociVersion", nonempty=True)
    numbers = _version_numbers(s)
    if numbers is None:
        raise v.err("ociVersion", f"{s!r} is not a version (MAJOR.MINOR.PATCH)")
    major, minor, patch = numbers
    if major != 1 or minor > 2:
        raise v.err("ociVersion", f"unsupported version {s!r} (supported: 1.0.0 to 1.2.x)")
    return major, minor, patch


# --- the whole spec ---------------------------------------------------------------------------


def validate_spec(
    spec: object, bundle: str, *, where: str = CONFIG_FILE, require_process: bool = True
) -> None:
    """Validates a parsed config.json; raises InvalidArgument naming the field."""
    v = _V(where)
    if not isinstance(spec, dict):
        raise InvalidArgument(f"{where}: the top level must be an object, not {_tname(spec)}")
    parse_version(spec.get("ociVersion"), where)

    # root
    if "root" not in spec or spec["root"] is None:
        raise v.err("root", "is required")
    root = v.obj(spec["root"], "root")
    if "path" not in root:
        raise v.err("root.path", "is required")
    rpath = v.string(root["path"], "root.path", nonempty=True)
    full = rpath if os.path.isabs(rpath) else os.path.join(os.path.abspath(bundle), rpath)
    if not os.path.exists(full):
        raise v.err("root.path", f"{full} does not exist")
    if not os.path.isdir(full):
        raise v.err("root.path", f"{full} is not a directory")
    if "readonly" in root:
        v.boolean(root["readonly"], "root.readonly")

    linux = v.obj(spec.get("linux", {}), "linux")
    namespaces = _validate_namespaces(v, linux)

    # process
    if spec.get("process") is None:
        if require_process:
            raise v.err("process", "is required")
    else:
        validate_process(spec["process"], where)

    # hostname, domainname
    for key in ("hostname", "domainname"):
        if spec.get(key) is not None:
            name = v.string(spec[key], key)
            if name and not _own_namespace(namespaces, "uts"):
                raise v.err(key, "can only be set with a uts namespace of the container's own")

    _validate_mounts(v, spec.get("mounts"))
    _validate_hooks(v, spec.get("hooks"))

    ann = spec.get("annotations")
    if ann is not None:
        for key, value in v.obj(ann, "annotations").items():
            v.string(value, f"annotations.{key}")

    _validate_linux(v, linux, namespaces)


def _own_namespace(namespaces: Mapping[str, str | None], ns: str) -> bool:
    """Whether the container has namespace `ns` that is not the host's.

    A new one counts; a joined one counts unless its path is the runtime's own namespace.
    """
    if ns not in namespaces:
        return False
    path = namespaces[ns]
    if path is None:
        return True
    try:
        theirs = os.stat(path)
        ours = os.stat(f"/proc/self/ns/{NS_PROC_NAMES[ns]}")
    except OSError:
        return True
    return (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino)


def _validate_namespaces(v: _V, linux: dict[str, Any]) -> dict[str, str | None]:
    """Validates linux.namespaces; returns {type: path or None}."""
    result: dict[str, str | None] = {}
    raw = linux.get("namespaces")
    if raw is None:
        return result
    for i, ns in enumerate(v.lst(raw, "linux.namespaces")):
        p = f"linux.namespaces[{i}]"
        v.obj(ns, p)
        if "type" not in ns:
            raise v.err(f"{p}.type", "is required")
        kind = v.string(ns["type"], f"{p}.type")
        if kind not in NS_PROC_NAMES:
            raise v.err(f"{p}.type", f"unknown namespace {kind!r}")
        if kind in result:
            raise v.err(f"{p}.type", f"duplicate namespace {kind!r}")
        path = ns.get("path")
        if path is not None and path != "":
            path = v.abspath(path, f"{p}.path")
            if not os.path.exists(path):
                raise v.err(f"{p}.path", f"{path} does not exist")
            result[kind] = path
        else:
            result[kind] = None
    return result


# --- process ------------------------------------------------------------------------------------


def validate_process(process: object, where: str, *, path: str = "process") -> None:
    """Validates an OCI process object (config.json's "process" or an exec process.json).

    `path` is the field prefix used in messages ("" for a file that is the process itself).
    """
    v = _V(where)

    def p(name: str) -> str:
        return f"{path}.{name}" if path else name

    proc = v.obj(process, path or "process")

    if "terminal" in proc:
        v.boolean(proc["terminal"], p("terminal"))
    if proc.get("consoleSize") is not None:
        cs = v.obj(proc["consoleSize"], p("consoleSize"))
        for key in ("height", "width"):
            if key in cs:
                v.integer(cs[key], p(f"consoleSize.{key}"), 0, 0xFFFF)

    if "args" not in proc:
        raise v.err(p("args"), "is required")
    args = v.strlist(proc["args"], p("args"))
    if not args:
        raise v.err(p("args"), "must not be empty")
    if not args[0]:
        raise v.err(p("args[0]"), "must not be empty")

    if "cwd" not in proc:
        raise v.err(p("cwd"), "is required")
    v.abspath(proc["cwd"], p("cwd"))

    if proc.get("env") is not None:
        v.env(proc["env"], p("env"))

    if "user" in proc:
        user = v.obj(proc["user"], p("user"))
        for key in ("uid", "gid"):
            if key not in user:
                raise v.err(p(f"user.{key}"), "is required")
            v.integer(user[key], p(f"user.{key}"), 0, _U32_MAX)
        if user.get("umask") is not None:
            v.integer(user["umask"], p("user.umask"), 0, 0o777)
        if user.get("additionalGids") is not None:
            for i, gid in enumerate(v.lst(user["additionalGids"], p("user.additionalGids"))):
                v.integer(gid, p(f"user.additionalGids[{i}]"), 0, _U32_MAX)
        if user.get("username") is not None:
            v.string(user["username"], p("user.username"))

    if proc.get("capabilities") is not None:
        caps = v.obj(proc["capabilities"], p("capabilities"))
        for key in CAP_SETS:
            if caps.get(key) is not None:
                check_cap_names(caps[key], f"{where}: {p(f'capabilities.{key}')}")

    if proc.get("rlimits") is not None:
        seen: set[str] = set()
        for i, rl in enumerate(v.lst(proc["rlimits"], p("rlimits"))):
            rp = p(f"rlimits[{i}]")
            v.obj(rl, rp)
            kind = rl.get("type")
            if kind not in RLIMITS:
                raise v.err(f"{rp}.type", f"unknown rlimit type {kind!r}")
            if kind in seen:
                raise v.err(f"{rp}.type", f"duplicate rlimit {kind}")
            seen.add(kind)
            for key in ("soft", "hard"):
                if key not in rl:
                    raise v.err(f"{rp}.{key}", "is required")
                v.integer(rl[key], f"{rp}.{key}", 0, _U64_MAX)
            if rl["soft"] > rl["hard"]:
                raise v.err(rp, f"soft limit {rl['soft']} is above the hard limit {rl['hard']}")

    if "noNewPrivileges" in proc:
        v.boolean(proc["noNewPrivileges"], p("noNewPrivileges"))
    if proc.get("oomScoreAdj") is not None:
        v.integer(proc["oomScoreAdj"], p("oomScoreAdj"), -1000, 1000)
    for key in ("apparmorProfile", "selinuxLabel"):
        if proc.get(key):
            v.string(proc[key], p(key))
    for key in ("scheduler", "ioPriority", "execCPUAffinity"):
        if proc.get(key) is not None:
            raise v.err(p(key), "is not supported by pyrt")


# --- mounts, hooks ---------------------------------------------------------------------------


def _validate_mounts(v: _V, mounts: object) -> None:
    if mounts is None:
        return
    for i, m in enumerate(v.lst(mounts, "mounts")):
        mp = f"mounts[{i}]"
        v.obj(m, mp)
        if "destination" not in m:
            raise v.err(f"{mp}.destination", "is required")
        v.abspath(m["destination"], f"{mp}.destination")
        if m.get("type") is not None:
            v.string(m["type"], f"{mp}.type")
        if m.get("source") is not None:
            v.string(m["source"], f"{mp}.source")
        if m.get("options") is not None:
            for j, opt in enumerate(v.strlist(m["options"], f"{mp}.options")):
                if opt in ("idmap", "ridmap", "tmpcopyup"):
                    raise v.err(f"{mp}.options[{j}]", f"option {opt!r} is not supported")
        for key in ("uidMappings", "gidMappings"):
            if m.get(key):
                raise v.err(f"{mp}.{key}", "id-mapped mounts are not supported")


def _validate_hooks(v: _V, hooks: object) -> None:
    if hooks is None:
        return
    v.obj(hooks, "hooks")
    assert isinstance(hooks, dict)
    for kind in HOOK_KINDS:
        if hooks.get(kind) is None:
            continue
        for i, hook in enumerate(v.lst(hooks[kind], f"hooks.{kind}")):
            hp = f"hooks.{kind}[{i}]"
            v.obj(hook, hp)
            if "path" not in hook:
                raise v.err(f"{hp}.path", "is required")
            v.abspath(hook["path"], f"{hp}.path")
            if hook.get("args") is not None:
                v.strlist(hook["args"], f"{hp}.args")
            if hook.get("env") is not None:
                v.env(hook["env"], f"{hp}.env")
            if hook.get("timeout") is not None:
                v.integer(hook["timeout"], f"{hp}.timeout", 1, 1 << 31)


# --- linux --------------------------------------------------------------------------------------


def _validate_mappings(v: _V, raw: object, path: str) -> None:
    for i, m in enumerate(v.lst(raw, path)):
        mp = f"{path}[{i}]"
        v.obj(m, mp)
        for key in ("containerID", "hostID", "size"):
            if key not in m:
                raise v.err(f"{mp}.{key}", "is required")
            v.integer(m[key], f"{mp}.{key}", 0, _U32_MAX)
        if m["size"] == 0:
            raise v.err(f"{mp}.size", "must be at least 1")


def sysctl_namespace(key: str) -> str | None:
    """The namespace a sysctl belongs to ("ipc", "network", "uts"), or None if global."""
    k = key.replace("/", ".")
    if (
        k.startswith(("kernel.msg", "kernel.shm"))
        or k == "kernel.sem"
        or k.startswith("fs.mqueue.")
    ):
        return "ipc"
    if k.startswith("net."):
        return "network"
    if k in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None


def _validate_linux(v: _V, linux: dict[str, Any], namespaces: dict[str, str | None]) -> None:
    # id mappings
    for key in ("uidMappings", "gidMappings"):
        if linux.get(key) is not None:
            _validate_mappings(v, linux[key], f"linux.{key}")
    has_maps = bool(linux.get("uidMappings")) or bool(linux.get("gidMappings"))
    if "user" in namespaces and namespaces["user"] is None:
        if not linux.get("uidMappings") or not linux.get("gidMappings"):
            raise v.err(
                "linux.uidMappings",
                "a new user namespace needs both uidMappings and gidMappings",
            )
    elif has_maps:
        raise v.err("linux.uidMappings", "mappings are only allowed with a new user namespace")

    # sysctl
    if linux.get("sysctl") is not None:
        for key, value in v.obj(linux["sysctl"], "linux.sysctl").items():
            sp = f"linux.sysctl.{key}"
            v.string(value, sp)
            ns = sysctl_namespace(key)
            if ns is None:
                raise v.err(sp, "is not a namespaced sysctl and cannot be set in a container")
            if not _own_namespace(namespaces, ns):
                raise v.err(
                    sp,
                    f"needs a {ns} namespace of the container's own (add it to linux.namespaces)",
                )

    # devices
    if linux.get("devices") is not None:
        for i, dev in enumerate(v.lst(linux["devices"], "linux.devices")):
            dp = f"linux.devices[{i}]"
            v.obj(dev, dp)
            if "path" not in dev:
                raise v.err(f"{dp}.path", "is required")
            v.abspath(dev["path"], f"{dp}.path")
            kind = dev.get("type")
            if kind not in DEVICE_TYPES:
                raise v.err(f"{dp}.type", f"unknown device type {kind!r} (c, b, u or p)")
            for key in ("major", "minor"):
                if kind != "p" and key not in dev:
                    raise v.err(f"{dp}.{key}", f"is required for a device of type {kind!r}")
                if dev.get(key) is not None:
                    v.integer(dev[key], f"{dp}.{key}", 0, _U32_MAX)
            if dev.get("fileMode") is not None:
                v.integer(dev["fileMode"], f"{dp}.fileMode", 0, 0o7777)
            for key in ("uid", "gid"):
                if dev.get(key) is not None:
                    v.integer(dev[key], f"{dp}.{key}", 0, _U32_MAX)

    for key in ("maskedPaths", "readonlyPaths"):
        if linux.get(key) is not None:
            for i, item in enumerate(v.lst(linux[key], f"linux.{key}")):
                v.abspath(item, f"linux.{key}[{i}]")

    if linux.get("rootfsPropagation"):
        prop = v.string(linux["rootfsPropagation"], "linux.rootfsPropagation")
        if prop not in PROPAGATIONS:
            raise v.err("linux.rootfsPropagation", f"unknown propagation {prop!r}")

    if linux.get("cgroupsPath") is not None:
        v.string(linux["cgroupsPath"], "linux.cgroupsPath")
    if linux.get("resources") is not None:
        v.obj(linux["resources"], "linux.resources")
    if linux.get("mountLabel"):
        v.string(linux["mountLabel"], "linux.mountLabel")

    if linux.get("seccomp") is not None:
        from pyrt.runtime.seccomp import validate_seccomp  # only specs with seccomp pay

        validate_seccomp(linux["seccomp"], v.where, "linux.seccomp")

    if linux.get("timeOffsets"):
        raise v.err("linux.timeOffsets", "is not supported by pyrt")
    if linux.get("personality") is not None:
        raise v.err("linux.personality", "is not supported by pyrt")
    if linux.get("intelRdt") is not None:
        raise v.err("linux.intelRdt", "is not supported by pyrt")
