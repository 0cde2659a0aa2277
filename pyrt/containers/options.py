"""Typed models of the Engine API's container options: ContainerConfig and HostConfig.

    config, host = parse_create_body(body)        # the body of POST /containers/create
    config = ContainerConfig.from_api(body)       # the top-level fields
    host = HostConfig.from_api(body["HostConfig"])

Attribute names are the API's own (``config.Cmd``, ``host.NanoCpus``), so what a client
sends and what the engine reads are spelled the same. Parsing checks types and Docker's
rules; every error is an InvalidArgument whose message starts with the field path, e.g.
``HostConfig.Memory: minimum memory limit allowed is 6MB`` (Docker's wording where Docker
has one). Unknown fields are ignored and JSON nulls mean "not set", as the API does.

The API carries numbers (bytes, nanoseconds, nano-CPUs), never the CLI's "512m" or "1.5":
turning CLI strings into these numbers belongs to the CLI. Binds, Mounts, NetworkMode,
PortBindings and friends are kept as data for the volume and network services.

``to_api()`` gives back the API dict (round trip: ``from_api(x.to_api()) == x``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from pyrt.errors import InvalidArgument

#: Docker's smallest memory limit and reservation (6 MiB)
MIN_MEMORY = 6 * 1024 * 1024
#: the smallest healthcheck interval/timeout/start period Docker accepts (1 ms in ns)
MIN_HEALTH_DURATION = 1_000_000
#: ulimit names Docker accepts -> the runtime spec's rlimit type
ULIMIT_TYPES: dict[str, str] = {
    name: f"RLIMIT_{name.upper()}"
    for name in (
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    )
}
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
#: options a tmpfs mount takes (Docker's list): flags, and the key=value ones
TMPFS_FLAGS = frozenset(
    [
        "ro",
        "rw",
        "exec",
        "noexec",
        "suid",
        "nosuid",
        "dev",
        "nodev",
        "sync",
        "async",
        "dirsync",
        "atime",
        "noatime",
        "diratime",
        "nodiratime",
        "relatime",
        "norelatime",
        "strictatime",
        "nostrictatime",
    ]
)
TMPFS_KEYS = frozenset(["size", "mode", "nr_inodes", "nr_blocks", "uid", "gid", "mpol", "huge"])
RLIM_INFINITY = (1 << 64) - 1

_ENV_KEY_RE = re.compile(r"^[^=\x00]+$")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_PORT_RE = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?$")
_CPUSET_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_SIZE_RE = re.compile(r"^\d+[kKmMgGtTpPeE%]?$")
_MODE_RE = re.compile(r"^[0-7]{1,4}$")

T = TypeVar("T")


# --- field checkers ----------------------------------------------------------------------------


def _err(path: str, msg: str) -> InvalidArgument:
    return InvalidArgument(f"{path}: {msg}" if path else msg)


def _tname(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer"}.get(
        type(value), type(value).__name__
    )


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _obj(value: object, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err(path, f"must be an object, not {_tname(value)}")
    return value


def _str(value: object, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _err(path, f"must be a string, not {_tname(value)}")
    if "\x00" in value:
        raise _err(path, "must not contain a NUL byte")
    return value


def _bool(value: object, path: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _err(path, f"must be true or false, not {_tname(value)}")
    return value


def _opt_bool(value: object, path: str) -> bool | None:
    return None if value is None else _bool(value, path)


def _int(value: object, path: str) -> int:
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _err(path, f"must be an integer, not {_tname(value)}")
    if not -(1 << 63) <= value < (1 << 63):
        raise _err(path, f"{value} does not fit in a signed 64-bit integer")
    return value


def _opt_int(value: object, path: str) -> int | None:
    return None if value is None else _int(value, path)


def _strlist(value: object, path: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _err(path, f"must be a list of strings, not {_tname(value)}")
    out: list[str] = []
    for i, item in enumerate(value):
        if item is None:
            raise _err(f"{path}[{i}]", "must be a string, not null")
        out.append(_str(item, f"{path}[{i}]"))
    return out


def _strslice(value: object, path: str) -> list[str] | None:
    """Docker's StrSlice: null (not set), a string (one element) or a list of strings."""
    if value is None:
        return None
    if isinstance(value, str):
        return [_str(value, path)]
    return _strlist(value, path)


def _strmap(value: object, path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, item in _obj(value, path).items():
        out[key] = _str(item, f"{path}.{key}") if item is not None else ""
    return out


def _keyset(value: object, path: str) -> list[str]:
    """A JSON set as the API sends it ({"80/tcp": {}}): its keys, in order."""
    obj = _obj(value, path)
    for key, item in obj.items():
        if item is not None and not isinstance(item, dict):
            raise _err(f"{path}.{key}", f"must be an empty object, not {_tname(item)}")
    return list(obj)


def _abs(value: str, path: str) -> str:
    if not value.startswith("/"):
        raise _err(path, f"{value!r} is not an absolute path")
    return value


# --- nested models --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthConfig:
    """Healthcheck: Test ([] inherit, ["NONE"], ["CMD", ...], ["CMD-SHELL", cmd]) and
    durations in nanoseconds (0: inherit/default)."""

    Test: list[str] = field(default_factory=list)
    Interval: int = 0
    Timeout: int = 0
    Retries: int = 0
    StartPeriod: int = 0
    StartInterval: int = 0

    @classmethod
    def from_api(cls, raw: object, path: str = "Healthcheck") -> HealthConfig:
        d = _obj(raw, path)
        test = _strslice(d.get("Test"), f"{path}.Test") or []
        if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
            raise _err(
                f"{path}.Test",
                f"the first element must be NONE, CMD or CMD-SHELL, not {test[0]!r}",
            )
        if test[:1] == ["CMD-SHELL"] and len(test) != 2:
            raise _err(f"{path}.Test", "CMD-SHELL takes exactly one command string")
        if test[:1] == ["CMD"] and len(test) < 2:
            raise _err(f"{path}.Test", "CMD needs a command")
        durations = {}
        for key, label in (
            ("Interval", "Interval"),
            ("Timeout", "Timeout"),
            ("StartPeriod", "StartPeriod"),
            ("StartInterval", "StartInterval"),
        ):
            value = _int(d.get(key), f"{path}.{key}")
            if value != 0 and value < MIN_HEALTH_DURATION:
                raise _err(f"{path}.{key}", f"{label} in Healthcheck cannot be less than 1ms")
            durations[key] = value
        retries = _int(d.get("Retries"), f"{path}.Retries")
        if retries < 0:
            raise _err(f"{path}.Retries", "Retries in Healthcheck cannot be negative")
        return cls(Test=test, Retries=retries, **durations)


@dataclass(frozen=True)
class Ulimit:
    Name: str
    Soft: int
    Hard: int

    @property
    def rlimit_type(self) -> str:
        """The runtime spec's name: nofile -> RLIMIT_NOFILE."""
        return ULIMIT_TYPES[self.Name]

    @staticmethod
    def _limit(value: int) -> int:
        return RLIM_INFINITY if value == -1 else value

    @property
    def soft_limit(self) -> int:
        """Soft limit for the runtime spec (-1, unlimited, becomes RLIM_INFINITY)."""
        return self._limit(self.Soft)

    @property
    def hard_limit(self) -> int:
        return self._limit(self.Hard)

    @classmethod
    def from_api(cls, raw: object, path: str) -> Ulimit:
        d = _obj(raw, path)
        name = _str(d.get("Name"), f"{path}.Name")
        if name not in ULIMIT_TYPES:
            raise _err(f"{path}.Name", f"invalid ulimit type: {name}")
        soft = _int(d.get("Soft"), f"{path}.Soft")
        hard = _int(d.get("Hard"), f"{path}.Hard")
        for key, value in (("Soft", soft), ("Hard", hard)):
            if value < -1:
                raise _err(f"{path}.{key}", f"{value} is not a limit (-1 means unlimited)")
        if cls._limit(soft) > cls._limit(hard):
            raise _err(
                path, f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )
        return cls(Name=name, Soft=soft, Hard=hard)


@dataclass(frozen=True)
class RestartPolicy:
    Name: str = "no"
    MaximumRetryCount: int = 0

    @classmethod
    def from_api(cls, raw: object, path: str = "HostConfig.RestartPolicy") -> RestartPolicy:
        d = _obj(raw, path)
        name = _str(d.get("Name"), f"{path}.Name") or "no"
        if name not in RESTART_POLICIES:
            raise _err(f"{path}.Name", f"invalid restart policy '{name}'")
        count = _int(d.get("MaximumRetryCount"), f"{path}.MaximumRetryCount")
        if count < 0:
            raise _err(
                f"{path}.MaximumRetryCount",
                "invalid restart policy: maximum retry count cannot be negative",
            )
        if count and name != "on-failure":
            raise _err(
                f"{path}.MaximumRetryCount",
                "invalid restart policy: maximum retry count can only be used with 'on-failure'",
            )
        return cls(Name=name, MaximumRetryCount=count)


@dataclass(frozen=True)
class DeviceMapping:
    PathOnHost: str
    PathInContainer: str
    CgroupPermissions: str = "rwm"

    @classmethod
    def from_api(cls, raw: object, path: str) -> DeviceMapping:
        d = _obj(raw, path)
        host = _str(d.get("PathOnHost"), f"{path}.PathOnHost")
        if not host:
            raise _err(f"{path}.PathOnHost", "is required")
        _abs(host, f"{path}.PathOnHost")
        inside = _str(d.get("PathInContainer"), f"{path}.PathInContainer") or host
        _abs(inside, f"{path}.PathInContainer")
        perms = _str(d.get("CgroupPermissions"), f"{path}.CgroupPermissions") or "rwm"
        if not perms or any(c not in "rwm" for c in perms) or len(set(perms)) != len(perms):
            raise _err(
                f"{path}.CgroupPermissions",
                f"invalid device mode {perms!r} (a combination of r, w and m)",
            )
        return cls(PathOnHost=host, PathInContainer=inside, CgroupPermissions=perms)


@dataclass(frozen=True)
class SecurityOptions:
    """HostConfig.SecurityOpt, parsed.

    seccomp: None (Docker's default profile), "unconfined", or a profile (a dict in Docker's
    or the runtime spec's format) given inline as JSON or as an absolute path to a file.
    """

    seccomp: str | dict[str, Any] | None = None
    no_new_privileges: bool = False
    apparmor: str | None = None
    label: tuple[str, ...] = ()
    systempaths_unconfined: bool = False

    @property
    def seccomp_unconfined(self) -> bool:
        return self.seccomp == "unconfined"

    @classmethod
    def parse(cls, opts: list[str], path: str = "HostConfig.SecurityOpt") -> SecurityOptions:
        seccomp: str | dict[str, Any] | None = None
        nnp = False
        apparmor: str | None = None
        label: list[str] = []
        systempaths = False
        for i, opt in enumerate(opts):
            p = f"{path}[{i}]"
            if opt == "no-new-privileges":
                nnp = True
                continue
            # Docker takes key=value, and key:value for the older spelling
            sep = "=" if "=" in opt else ":"
            key, found, value = opt.partition(sep)
            if not found:
                raise _err(p, f"invalid --security-opt: {opt!r}")
            if key == "no-new-privileges":
                if value.lower() not in ("true", "false", "1", "0"):
                    raise _err(p, f"invalid --security-opt: {opt!r} (no-new-privileges:"
                               "true or false)")  # fmt: skip
                nnp = value.lower() in ("true", "1")
            elif key == "seccomp":
                seccomp = _seccomp_value(value, p)
            elif key == "apparmor":
                if not value:
                    raise _err(p, "apparmor: a profile name is required")
                apparmor = value
            elif key == "label":
                label.append(_label_value(value, p))
            elif key == "systempaths":
                if value != "unconfined":
                    raise _err(p, f"invalid --security-opt: {opt!r} (systempaths=unconfined)")
                systempaths = True
            else:
                raise _err(p, f"invalid --security-opt: {opt!r}")
        return cls(
            seccomp=seccomp,
            no_new_privileges=nnp,
            apparmor=apparmor,
            label=tuple(label),
            systempaths_unconfined=systempaths,
        )


def _seccomp_value(value: str, path: str) -> str | dict[str, Any] | None:
    if value in ("", "builtin", "default"):
        return None
    if value == "unconfined":
        return "unconfined"
    text = value
    if not value.lstrip().startswith("{"):
        if not value.startswith("/"):
            raise _err(
                path,
                "seccomp: expected 'unconfined', a JSON profile or an absolute path to one, "
                f"not {value!r}",
            )
        try:
            with open(value, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise _err(path, f"seccomp: cannot read profile {value}: {e.strerror}") from None
    try:
        profile = json.loads(text)
    except json.JSONDecodeError as e:
        raise _err(path, f"seccomp: the profile is not valid JSON: {e}") from None
    if not isinstance(profile, dict):
        raise _err(path, "seccomp: the profile must be a JSON object")
    return profile


def _label_value(value: str, path: str) -> str:
    if value in ("disable", "nested"):
        return value
    key, found, rest = value.partition(":")
    if not found or key not in ("user", "role", "type", "level", "filetype") or not rest:
        raise _err(path, f"invalid label option {value!r} (disable, nested, user:, role:, "
                   "type:, level: or filetype:)")  # fmt: skip
    return value


_RestartPolicy = RestartPolicy


# --- ContainerConfig ------------------------------------------------------------------------------


def _derived() -> Any:
    return field(default_factory=SecurityOptions, compare=False, metadata={"derived": True})


def _to_api(obj: object) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {
            f.name: _to_api(getattr(obj, f.name))
            for f in fields(obj)  # type: ignore[arg-type]
            if not f.metadata.get("derived")
        }
    if isinstance(obj, list | tuple):
        return [_to_api(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _to_api(v) for k, v in obj.items()}
    return obj


_SIGNAL_ALIASES = {"SIGCLD": "SIGCHLD", "SIGPOLL": "SIGIO", "SIGIOT": "SIGABRT"}


def validate_signal(value: str, path: str) -> str:
    """A StopSignal: "SIGTERM", "TERM", "15" or "SIGRTMIN+3"."""
    if value.isascii() and value.isdigit():  # str.isdigit alone takes "³", int() does not
        if not 1 <= int(value) <= signal.SIGRTMAX:
            raise _err(path, f"invalid signal: {value}")
        return value
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    m = re.fullmatch(r"SIGRTMIN\+(\d+)|SIGRTMAX-(\d+)", name)
    if m:
        n = int(m.group(1) or m.group(2))
        if signal.SIGRTMIN + n > signal.SIGRTMAX:
            raise _err(path, f"invalid signal: {value}")
        return value
    if name not in signal.Signals.__members__ and name not in _SIGNAL_ALIASES:
        raise _err(path, f"invalid signal: {value}")
    return value


def signal_number(value: str) -> int:
    """The number of a validated StopSignal."""
    if value.isdigit():
        return int(value)
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith("SIGRTMIN+"):
        return int(signal.SIGRTMIN) + int(name[9:])
    if name.startswith("SIGRTMAX-"):
        return int(signal.SIGRTMAX) - int(name[9:])
    return int(signal.Signals[_SIGNAL_ALIASES.get(name, name)])


def _env(value: object, path: str) -> list[str]:
    items = _strlist(value, path)
    for i, item in enumerate(items):
        key = item.partition("=")[0]
        if not key or not _ENV_KEY_RE.match(key):
            raise _err(f"{path}[{i}]", f"invalid environment variable {item!r}")
    return items


@dataclass(frozen=True)
class ContainerConfig:
    """The container's own settings (the create body's top level; image config overrides).

    Cmd and Entrypoint are None when not given, which is not the same as [] (an explicit
    empty Entrypoint drops the image's entrypoint but keeps the image's Cmd).
    """

    Image: str = ""
    Cmd: list[str] | None = None
    Entrypoint: list[str] | None = None
    Env: list[str] = field(default_factory=list)
    WorkingDir: str = ""
    User: str = ""
    Labels: dict[str, str] = field(default_factory=dict)
    Hostname: str = ""
    Domainname: str = ""
    Tty: bool = False
    OpenStdin: bool = False
    StdinOnce: bool = False
    AttachStdin: bool = False
    AttachStdout: bool = False
    AttachStderr: bool = False
    StopSignal: str = ""
    StopTimeout: int | None = None
    Healthcheck: HealthConfig | None = None
    ExposedPorts: list[str] = field(default_factory=list)
    Volumes: list[str] = field(default_factory=list)
    NetworkDisabled: bool = False
    MacAddress: str = ""
    Shell: list[str] = field(default_factory=list)

    @classmethod
    def from_api(cls, raw: object, where: str = "") -> ContainerConfig:
        d = _obj(raw, where or "body")

        def p(name: str) -> str:
            return _join(where, name)

        hostname = _str(d.get("Hostname"), p("Hostname"))
        if hostname and (len(hostname) > 64 or not _HOSTNAME_RE.match(hostname)):
            raise _err(p("Hostname"), f"invalid hostname format: {hostname}")
        domainname = _str(d.get("Domainname"), p("Domainname"))
        if domainname and (len(domainname) > 255 or not _HOSTNAME_RE.match(domainname)):
            raise _err(p("Domainname"), f"invalid domainname format: {domainname}")
        workdir = _str(d.get("WorkingDir"), p("WorkingDir"))
        if workdir and not workdir.startswith("/"):
            raise _err(
                p("WorkingDir"),
                f"the working directory '{workdir}' is invalid, it needs to be an absolute path",
            )
        stop_signal = _str(d.get("StopSignal"), p("StopSignal"))
        if stop_signal:
            validate_signal(stop_signal, p("StopSignal"))
        stop_timeout = _opt_int(d.get("StopTimeout"), p("StopTimeout"))
        if stop_timeout is not None and stop_timeout < -1:
            raise _err(p("StopTimeout"), f"{stop_timeout} is not a timeout (-1: wait forever)")
        health = (
            None
            if d.get("Healthcheck") is None
            else HealthConfig.from_api(d["Healthcheck"], p("Healthcheck"))
        )
        ports = _keyset(d.get("ExposedPorts"), p("ExposedPorts"))
        for port in ports:
            m = _PORT_RE.match(port)
            if not m or not all(0 < int(g) <= 65535 for g in m.groups()[:2] if g):
                raise _err(p(f"ExposedPorts.{port}"), f"invalid port {port!r} (PORT[/PROTO])")
        volumes = _keyset(d.get("Volumes"), p("Volumes"))
        for vol in volumes:
            _abs(vol, p(f"Volumes.{vol}"))
        return cls(
            Image=_str(d.get("Image"), p("Image")),
            Cmd=_strslice(d.get("Cmd"), p("Cmd")),
            Entrypoint=_strslice(d.get("Entrypoint"), p("Entrypoint")),
            Env=_env(d.get("Env"), p("Env")),
            WorkingDir=workdir,
            User=_str(d.get("User"), p("User")),
            Labels=_strmap(d.get("Labels"), p("Labels")),
            Hostname=hostname,
            Domainname=domainname,
            Tty=_bool(d.get("Tty"), p("Tty")),
            OpenStdin=_bool(d.get("OpenStdin"), p("OpenStdin")),
            StdinOnce=_bool(d.get("StdinOnce"), p("StdinOnce")),
            AttachStdin=_bool(d.get("AttachStdin"), p("AttachStdin")),
            AttachStdout=_bool(d.get("AttachStdout"), p("AttachStdout")),
            AttachStderr=_bool(d.get("AttachStderr"), p("AttachStderr")),
            StopSignal=stop_signal,
            StopTimeout=stop_timeout,
            Healthcheck=health,
            ExposedPorts=ports,
            Volumes=volumes,
            NetworkDisabled=_bool(d.get("NetworkDisabled"), p("NetworkDisabled")),
            MacAddress=_str(d.get("MacAddress"), p("MacAddress")),
            Shell=_strlist(d.get("Shell"), p("Shell")),
        )

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = _to_api(self)
        out["ExposedPorts"] = {k: {} for k in self.ExposedPorts}
        out["Volumes"] = {k: {} for k in self.Volumes}
        return out


# --- HostConfig ---------------------------------------------------------------------------


def parse_extra_host(entry: str, path: str) -> tuple[str, str]:
    """ "name:ip" or "name=ip" (ip may be IPv6, or "host-gateway") -> (name, ip)."""
    sep = "=" if "=" in entry else ":"
    name, found, ip = entry.partition(sep)
    if not found or not name:
        raise _err(path, f"invalid extra host {entry!r} (HOST:IP)")
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip != "host-gateway":
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise _err(path, f"invalid IP address in add-host: {ip!r}") from None
    if any(c.isspace() for c in name):
        raise _err(path, f"invalid host name {name!r} in add-host")
    return name, ip


def parse_tmpfs_options(opts: str, path: str) -> list[str]:
    """Validates a Tmpfs value ("rw,size=64m,mode=1777") -> the options as a list."""
    out: list[str] = []
    for opt in (o.strip() for o in opts.split(",")):
        if not opt:
            continue
        key, eq, value = opt.partition("=")
        if not eq:
            if key not in TMPFS_FLAGS:
                raise _err(path, f"invalid tmpfs option {opt!r}")
        elif key not in TMPFS_KEYS:
            raise _err(path, f"invalid tmpfs option {opt!r}")
        elif key == "size" and not _SIZE_RE.match(value):
            raise _err(path, f"invalid tmpfs size {value!r}")
        elif key == "mode" and not _MODE_RE.match(value):
            raise _err(path, f"invalid tmpfs mode {value!r} (octal)")
        elif key in ("uid", "gid", "nr_inodes", "nr_blocks") and not _SIZE_RE.match(value):
            raise _err(path, f"invalid tmpfs option {opt!r}")
        out.append(opt)
    return out


def _cpuset(value: str, path: str, what: str) -> str:
    if value and not _CPUSET_RE.match(value):
        raise _err(path, f"Invalid value {value} for cpuset {what}")
    for part in value.split(",") if value else []:
        lo, _, hi = part.partition("-")
        if hi and int(hi) < int(lo):
            raise _err(path, f"Invalid value {value} for cpuset {what}")
    return value


@dataclass(frozen=True)
class HostConfig:
    """Host-side settings. Numbers are the API's: bytes, nano-CPUs, microseconds."""

    # resources
    Memory: int = 0
    MemorySwap: int = 0
    MemoryReservation: int = 0
    MemorySwappiness: int | None = None
    OomKillDisable: bool | None = None
    NanoCpus: int = 0
    CpuShares: int = 0
    CpuPeriod: int = 0
    CpuQuota: int = 0
    CpusetCpus: str = ""
    CpusetMems: str = ""
    PidsLimit: int | None = None
    Ulimits: list[Ulimit] = field(default_factory=list)
    # lifecycle
    RestartPolicy: _RestartPolicy = field(default_factory=lambda: _RestartPolicy())
    AutoRemove: bool = False
    Init: bool | None = None
    # filesystem
    ReadonlyRootfs: bool = False
    Tmpfs: dict[str, str] = field(default_factory=dict)
    ShmSize: int = 0
    Binds: list[str] = field(default_factory=list)
    Mounts: list[dict[str, Any]] = field(default_factory=list)
    VolumesFrom: list[str] = field(default_factory=list)
    # security
    CapAdd: list[str] = field(default_factory=list)
    CapDrop: list[str] = field(default_factory=list)
    Privileged: bool = False
    SecurityOpt: list[str] = field(default_factory=list)
    Sysctls: dict[str, str] = field(default_factory=dict)
    Devices: list[DeviceMapping] = field(default_factory=list)
    OomScoreAdj: int = 0
    GroupAdd: list[str] = field(default_factory=list)
    # namespaces
    NetworkMode: str = ""
    PidMode: str = ""
    IpcMode: str = ""
    UTSMode: str = ""
    CgroupnsMode: str = ""
    CgroupParent: str = ""
    # networking data (for the network service)
    PortBindings: dict[str, Any] = field(default_factory=dict)
    PublishAllPorts: bool = False
    ExtraHosts: list[str] = field(default_factory=list)
    Dns: list[str] = field(default_factory=list)
    DnsSearch: list[str] = field(default_factory=list)
    DnsOptions: list[str] = field(default_factory=list)
    Links: list[str] = field(default_factory=list)
    LogConfig: dict[str, Any] = field(default_factory=dict)
    # SecurityOpt parsed (not part of the API form)
    security: SecurityOptions = _derived()

    @classmethod
    def from_api(
        cls, raw: object, where: str = "HostConfig", ncpu: int | None = None
    ) -> HostConfig:
        """Parses and validates a HostConfig dict. `ncpu` (default: this host's CPU count)
        bounds NanoCpus as Docker does."""
        d = _obj(raw, where)

        def p(name: str) -> str:
            return _join(where, name)

        memory = _int(d.get("Memory"), p("Memory"))
        if memory != 0 and memory < MIN_MEMORY:
            raise _err(p("Memory"), "minimum memory limit allowed is 6MB")
        swap = _int(d.get("MemorySwap"), p("MemorySwap"))
        if swap < -1:
            raise _err(p("MemorySwap"), f"{swap} is not a limit (-1 means unlimited)")
        if swap > 0 and memory == 0:
            raise _err(
                p("MemorySwap"),
                "you should always set the Memory limit when using Memoryswap limit",
            )
        if swap > 0 and swap < memory:
            raise _err(p("MemorySwap"), "minimum memoryswap limit should be larger than memory "
                       "limit")  # fmt: skip
        reservation = _int(d.get("MemoryReservation"), p("MemoryReservation"))
        if reservation != 0 and reservation < MIN_MEMORY:
            raise _err(p("MemoryReservation"), "minimum memory reservation allowed is 6MB")
        if memory > 0 and reservation > memory:
            raise _err(
                p("MemoryReservation"),
                "minimum memory limit can not be less than memory reservation limit",
            )
        swappiness = _opt_int(d.get("MemorySwappiness"), p("MemorySwappiness"))
        if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
            raise _err(
                p("MemorySwappiness"),
                f"invalid value: {swappiness}, valid memory swappiness range is 0-100",
            )
        if swappiness == -1:
            swappiness = None

        nano = _int(d.get("NanoCpus"), p("NanoCpus"))
        period = _int(d.get("CpuPeriod"), p("CpuPeriod"))
        quota = _int(d.get("CpuQuota"), p("CpuQuota"))
        ncpus = ncpu if ncpu is not None else (os.cpu_count() or 1)
        if nano and period:
            raise _err(
                p("NanoCpus"), "conflicting options: Nano CPUs and CPU Period cannot both be set"
            )
        if nano and quota:
            raise _err(
                p("NanoCpus"), "conflicting options: Nano CPUs and CPU Quota cannot both be set"
            )
        if nano < 0 or nano > ncpus * 1_000_000_000 or 0 < nano < 10_000_000:
            raise _err(
                p("NanoCpus"),
                f"range of CPUs is from 0.01 to {ncpus}.00, as there are only {ncpus} CPUs "
                "available",
            )
        if period != 0 and not 1000 <= period <= 1_000_000:
            raise _err(
                p("CpuPeriod"),
                "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s "
                "(i.e. 1000000)",
            )
        if quota != 0 and quota != -1 and quota < 1000:
            raise _err(p("CpuQuota"), "CPU cfs quota can not be less than 1ms (i.e. 1000)")
        shares = _int(d.get("CpuShares"), p("CpuShares"))
        if shares < 0:
            raise _err(p("CpuShares"), f"{shares} must not be negative")

        ulimits: list[Ulimit] = []
        raw_ul = d.get("Ulimits")
        if raw_ul is not None and not isinstance(raw_ul, list):
            raise _err(p("Ulimits"), f"must be a list, not {_tname(raw_ul)}")
        seen: set[str] = set()
        for i, item in enumerate(raw_ul or []):
            ul = Ulimit.from_api(item, p(f"Ulimits[{i}]"))
            if ul.Name in seen:
                raise _err(p(f"Ulimits[{i}]"), f"duplicate ulimit {ul.Name!r}")
            seen.add(ul.Name)
            ulimits.append(ul)

        restart = _RestartPolicy.from_api(d.get("RestartPolicy"), p("RestartPolicy"))
        auto_remove = _bool(d.get("AutoRemove"), p("AutoRemove"))
        if auto_remove and restart.Name != "no":
            raise _err(p("AutoRemove"), "can't create 'AutoRemove' container with restart policy")

        tmpfs = _strmap(d.get("Tmpfs"), p("Tmpfs"))
        for dest, opts in tmpfs.items():
            tp = p(f"Tmpfs[{dest}]")
            _abs(dest, tp)
            if os.path.normpath(dest) == "/":
                raise _err(tp, "a tmpfs cannot be mounted on /")
            parse_tmpfs_options(opts, tp)

        shm = _int(d.get("ShmSize"), p("ShmSize"))
        if shm < 0:
            raise _err(p("ShmSize"), "SHM size can not be less than 0")

        oom = _int(d.get("OomScoreAdj"), p("OomScoreAdj"))
        if not -1000 <= oom <= 1000:
            raise _err(
                p("OomScoreAdj"), f"invalid value {oom}, range for oom score adj is [-1000, 1000]"
            )

        devices = []
        raw_dev = d.get("Devices")
        if raw_dev is not None and not isinstance(raw_dev, list):
            raise _err(p("Devices"), f"must be a list, not {_tname(raw_dev)}")
        for i, item in enumerate(raw_dev or []):
            devices.append(DeviceMapping.from_api(item, p(f"Devices[{i}]")))

        security_opt = _strlist(d.get("SecurityOpt"), p("SecurityOpt"))
        security = SecurityOptions.parse(security_opt, p("SecurityOpt"))

        extra_hosts = _strlist(d.get("ExtraHosts"), p("ExtraHosts"))
        for i, entry in enumerate(extra_hosts):
            parse_extra_host(entry, p(f"ExtraHosts[{i}]"))
        dns = _strlist(d.get("Dns"), p("Dns"))
        for i, server in enumerate(dns):
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise _err(p(f"Dns[{i}]"), f"{server!r} is not an IP address") from None
        for key in ("DnsSearch", "DnsOptions"):
            for i, item in enumerate(_strlist(d.get(key), p(key))):
                if not item or any(c.isspace() for c in item):
                    raise _err(p(f"{key}[{i}]"), f"invalid value {item!r}")

        mounts = d.get("Mounts")
        if mounts is not None and (
            not isinstance(mounts, list) or not all(isinstance(m, dict) for m in mounts)
        ):
            raise _err(p("Mounts"), "must be a list of objects")
        for key in ("PortBindings", "LogConfig"):
            _obj(d.get(key), p(key))

        modes = {}
        for key, allowed in (
            ("PidMode", ("", "host", "private")),
            ("IpcMode", ("", "host", "private", "shareable", "none")),
            ("UTSMode", ("", "host", "private")),
            ("CgroupnsMode", ("", "host", "private")),
        ):
            mode = _str(d.get(key), p(key))
            if mode not in allowed and not (
                key in ("PidMode", "IpcMode") and mode.startswith("container:") and mode[10:]
            ):
                raise _err(p(key), f"invalid {key} {mode!r}")
            modes[key] = mode

        cgroup_parent = _str(d.get("CgroupParent"), p("CgroupParent"))
        if cgroup_parent and (".." in cgroup_parent.split("/")):
            raise _err(p("CgroupParent"), f"{cgroup_parent!r} must not contain '..'")

        caps_add = _strlist(d.get("CapAdd"), p("CapAdd"))
        caps_drop = _strlist(d.get("CapDrop"), p("CapDrop"))
        # imported here: capability names are checked against pyrt's table
        from pyrt.containers.specgen import normalize_caps

        normalize_caps(caps_add, p("CapAdd"))
        normalize_caps(caps_drop, p("CapDrop"))

        return cls(
            Memory=memory,
            MemorySwap=swap,
            MemoryReservation=reservation,
            MemorySwappiness=swappiness,
            OomKillDisable=_opt_bool(d.get("OomKillDisable"), p("OomKillDisable")),
            NanoCpus=nano,
            CpuShares=shares,
            CpuPeriod=period,
            CpuQuota=quota,
            CpusetCpus=_cpuset(_str(d.get("CpusetCpus"), p("CpusetCpus")), p("CpusetCpus"), "cpus"),
            CpusetMems=_cpuset(_str(d.get("CpusetMems"), p("CpusetMems")), p("CpusetMems"), "mems"),
            PidsLimit=_opt_int(d.get("PidsLimit"), p("PidsLimit")),
            Ulimits=ulimits,
            RestartPolicy=restart,
            AutoRemove=auto_remove,
            Init=_opt_bool(d.get("Init"), p("Init")),
            ReadonlyRootfs=_bool(d.get("ReadonlyRootfs"), p("ReadonlyRootfs")),
            Tmpfs=tmpfs,
            ShmSize=shm,
            Binds=_strlist(d.get("Binds"), p("Binds")),
            Mounts=list(mounts or []),
            VolumesFrom=_strlist(d.get("VolumesFrom"), p("VolumesFrom")),
            CapAdd=caps_add,
            CapDrop=caps_drop,
            Privileged=_bool(d.get("Privileged"), p("Privileged")),
            SecurityOpt=security_opt,
            Sysctls=_strmap(d.get("Sysctls"), p("Sysctls")),
            Devices=devices,
            OomScoreAdj=oom,
            GroupAdd=_strlist(d.get("GroupAdd"), p("GroupAdd")),
            NetworkMode=_str(d.get("NetworkMode"), p("NetworkMode")),
            CgroupParent=cgroup_parent,
            PortBindings=dict(_obj(d.get("PortBindings"), p("PortBindings"))),
            PublishAllPorts=_bool(d.get("PublishAllPorts"), p("PublishAllPorts")),
            ExtraHosts=extra_hosts,
            Dns=dns,
            DnsSearch=_strlist(d.get("DnsSearch"), p("DnsSearch")),
            DnsOptions=_strlist(d.get("DnsOptions"), p("DnsOptions")),
            Links=_strlist(d.get("Links"), p("Links")),
            LogConfig=dict(_obj(d.get("LogConfig"), p("LogConfig"))),
            security=security,
            **modes,
        )

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = _to_api(self)
        return out


def parse_create_body(body: object, ncpu: int | None = None) -> tuple[ContainerConfig, HostConfig]:
    """The body of POST /containers/create -> (ContainerConfig, HostConfig)."""
    d = _obj(body, "body")
    return ContainerConfig.from_api(d), HostConfig.from_api(d.get("HostConfig"), ncpu=ncpu)


__all__ = [
    "MIN_MEMORY",
    "RESTART_POLICIES",
    "ULIMIT_TYPES",
    "ContainerConfig",
    "DeviceMapping",
    "HealthConfig",
    "HostConfig",
    "RestartPolicy",
    "SecurityOptions",
    "Ulimit",
    "parse_create_body",
    "parse_extra_host",
    "parse_tmpfs_options",
    "signal_number",
    "validate_signal",
]
