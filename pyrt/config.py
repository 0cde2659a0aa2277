"""The daemon's configuration: /etc/pyrt/daemon.json, in dockerd's shape, merged with flags.

    cfg = load_file("/etc/pyrt/daemon.json")            # DaemonConfig (defaults filled in)
    cfg = merge(cfg, flags, file_keys)                  # flags win; a key set both ways: error

Keys (dockerd's names): data-root, exec-root, hosts, pidfile, registry-mirrors,
insecure-registries, default-address-pools ([{"base": "10.10.0.0/16", "size": 24}]),
log-driver, log-opts ({"max-size": "10m"}), live-restore (default true), log-level,
debug, bridge (the default network's Linux bridge; "" = pyrt0, or a name derived from a
data root that is not the default), dns (nameservers for containers on the default bridge
and the upstreams of the embedded DNS; default: the host's). An unknown key, a wrong type
or a bad value is InvalidArgument naming the key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from dataclasses import dataclass, field
from typing import Any

from pyrt.errors import InvalidArgument

DEFAULT_CONFIG_FILE = "/etc/pyrt/daemon.json"
DEFAULT_DATA_ROOT = "/var/lib/pyrt"
DEFAULT_EXEC_ROOT = "/run/pyrt"
DEFAULT_SOCKET = "/run/pyrt/pyrt.sock"
DEFAULT_HOST = f"unix://{DEFAULT_SOCKET}"
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
LOG_DRIVERS = ("json-file", "local", "none")


@dataclass(frozen=True)
class AddressPool:
    base: str  # a network in CIDR form
    size: int  # the prefix length of the subnets carved out of it

    def to_json(self) -> dict[str, Any]:
        return {"Base": self.base, "Size": self.size}


@dataclass
class DaemonConfig:
    data_root: str = DEFAULT_DATA_ROOT
    exec_root: str = DEFAULT_EXEC_ROOT
    hosts: list[str] = field(default_factory=list)
    pidfile: str = ""  # "" -> <exec-root>/pyrtd.pid
    registry_mirrors: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    default_address_pools: list[AddressPool] = field(default_factory=list)
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    live_restore: bool = True
    cgroup_parent: str = "/pyrt"  # containers' cgroups go below it, as dockerd's --cgroup-parent
    bridge: str = ""
    dns: list[str] = field(default_factory=list)
    log_level: str = "info"
    debug: bool = False

    @property
    def pid_path(self) -> str:
        return self.pidfile or os.path.join(self.exec_root, "pyrtd.pid")

    @property
    def listen(self) -> list[str]:
        return self.hosts or [DEFAULT_HOST]


#: daemon.json key -> DaemonConfig attribute
KEYS = {f.name.replace("_", "-"): f.name for f in dataclasses.fields(DaemonConfig)}


def _str(key: str, v: Any) -> str:
    if not isinstance(v, str):
        raise InvalidArgument(f"daemon config: {key!r} must be a string, got "
                              f"{type(v).__name__}")
    return v


def _str_list(key: str, v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InvalidArgument(f"daemon config: {key!r} must be a list of strings")
    return list(v)


def _path(key: str, v: Any) -> str:
    p = _str(key, v)
    if not os.path.isabs(p):
        raise InvalidArgument(f"daemon config: {key!r} must be an absolute path, got {p!r}")
    return os.path.normpath(p)


def check_mirror(m: str) -> str:
    if not (m.startswith("http://") or m.startswith("https://")):
        raise InvalidArgument(f"daemon config: registry-mirrors: invalid mirror {m!r}: "
                              "expected an http:// or https:// URL")
    rest = m.split("://", 1)[1]
    host, _, path = rest.partition("/")
    if not host or path.strip("/"):
        raise InvalidArgument(f"daemon config: registry-mirrors: invalid mirror {m!r}: "
                              "a mirror is a host (and port) without a path")
    return m.rstrip("/")


def check_insecure(r: str) -> str:
    if "://" in r:
        raise InvalidArgument(f"daemon config: insecure-registries: {r!r}: give a host, "
                              "host:port or CIDR, without a scheme")
    if "/" in r:
        try:
            ipaddress.ip_network(r, strict=False)
        except ValueError:
            raise InvalidArgument(f"daemon config: insecure-registries: {r!r} is not a "
                                  "valid CIDR") from None
    elif not r:
        raise InvalidArgument("daemon config: insecure-registries: empty entry")
    return r


def check_host(h: str) -> str:
    if h.startswith("unix://"):
        if not os.path.isabs(h[len("unix://"):]):
            raise InvalidArgument(f"hosts: {h!r}: a unix socket path must be absolute")
        return h
    if h.startswith("tcp://"):
        rest = h[len("tcp://"):]
        host, sep, port = rest.rpartition(":")
        if not sep or not port.isdigit() or not (0 < int(port) < 65536):
            raise InvalidArgument(f"hosts: {h!r}: expected tcp://HOST:PORT")
        return h
    if h.startswith("/"):
        return "unix://" + h
    raise InvalidArgument(f"hosts: {h!r}: expected unix:///path or tcp://HOST:PORT")


def _pools(key: str, v: Any) -> list[AddressPool]:
    if not isinstance(v, list):
        raise InvalidArgument(f"daemon config: {key!r} must be a list of "
                              '{"base": CIDR, "size": N}')
    out = []
    for i, p in enumerate(v):
        if not isinstance(p, dict) or set(p) != {"base", "size"}:
            raise InvalidArgument(f"daemon config: {key}[{i}]: expected exactly the keys "
                                  "'base' and 'size'")
        base, size = p["base"], p["size"]
        try:
            net = ipaddress.ip_network(base, strict=True) if isinstance(base, str) else None
        except ValueError as e:
            raise InvalidArgument(f"daemon config: {key}[{i}].base: {e}") from None
        if net is None:
            raise InvalidArgument(f"daemon config: {key}[{i}].base must be a CIDR string")
        if isinstance(size, bool) or not isinstance(size, int):
            raise InvalidArgument(f"daemon config: {key}[{i}].size must be an integer")
        if not (net.prefixlen <= size <= net.max_prefixlen):
            raise InvalidArgument(f"daemon config: {key}[{i}].size {size} must be between "
                                  f"the base's prefix length {net.prefixlen} and "
                                  f"{net.max_prefixlen}")
        out.append(AddressPool(str(net), size))
    return out


def parse(raw: dict[str, Any]) -> tuple[DaemonConfig, set[str]]:
    """A daemon.json object -> (config with defaults, the keys it set)."""
    if not isinstance(raw, dict):
        raise InvalidArgument("daemon config: expected a JSON object")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise InvalidArgument("daemon config: the following directives don't match any "
                              f"configuration option: {', '.join(unknown)}")
    cfg = DaemonConfig()
    for key, value in raw.items():
        setattr(cfg, KEYS[key], convert(key, value))
    return cfg, set(raw)


def convert(key: str, value: Any) -> Any:
    """Check and convert one daemon.json value."""
    if key in ("data-root", "exec-root", "pidfile"):
        return _path(key, value)
    if key == "cgroup-parent":
        parent = _str(key, value)
        if not parent.startswith("/") or ".." in parent.split("/"):
            raise InvalidArgument(f"daemon config: cgroup-parent {parent!r}: an absolute "
                                  "cgroup path without '..' is needed")
        return parent.rstrip("/") or "/"
    if key == "hosts":
        return [check_host(h) for h in _str_list(key, value)]
    if key == "registry-mirrors":
        return [check_mirror(m) for m in _str_list(key, value)]
    if key == "insecure-registries":
        return [check_insecure(r) for r in _str_list(key, value)]
    if key == "default-address-pools":
        return _pools(key, value)
    if key == "bridge":
        name = _str(key, value)
        if name and (len(name) > 15 or "/" in name or " " in name):
            raise InvalidArgument(f"daemon config: bridge {name!r} is not an interface name")
        return name
    if key == "dns":
        servers = _str_list(key, value)
        for d in servers:
            try:
                ipaddress.IPv4Address(d)
            except ValueError:
                raise InvalidArgument(f"daemon config: dns: {d!r} is not an IPv4 "
                                      "address") from None  # fmt: skip
        return servers
    if key == "log-driver":
        d = _str(key, value)
        if d not in LOG_DRIVERS:
            raise InvalidArgument(f"daemon config: log-driver {d!r}: one of "
                                  f"{', '.join(LOG_DRIVERS)}")
        return d
    if key == "log-opts":
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise InvalidArgument("daemon config: 'log-opts' must map strings to strings")
        return dict(value)
    if key in ("live-restore", "debug"):
        if not isinstance(value, bool):
            raise InvalidArgument(f"daemon config: {key!r} must be true or false")
        return value
    if key == "log-level":
        lvl = _str(key, value)
        if lvl not in LOG_LEVELS:
            raise InvalidArgument(f"daemon config: log-level {lvl!r}: one of "
                                  f"{', '.join(LOG_LEVELS)}")
        return lvl
    raise InvalidArgument(f"daemon config: unknown key {key!r}")


def load_file(path: str, *, missing_ok: bool = True) -> tuple[DaemonConfig, set[str]]:
    """Read daemon.json; a missing file gives the defaults when `missing_ok`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        if missing_ok:
            return DaemonConfig(), set()
        raise InvalidArgument(f"daemon config {path}: no such file") from None
    except OSError as e:
        raise InvalidArgument(f"daemon config {path}: {e.strerror}") from None
    if not data.strip():
        return DaemonConfig(), set()
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"daemon config {path}: not valid JSON: {e}") from None
    try:
        return parse(raw)
    except InvalidArgument as e:
        raise InvalidArgument(f"{path}: {e}") from None


def merge(file_cfg: DaemonConfig, file_keys: set[str], flags: dict[str, Any]
          ) -> DaemonConfig:
    """Apply flags (daemon.json key -> value, only those given on the command line) over
    the file's config; a directive set both ways is refused, as dockerd does."""
    both = sorted(k for k in flags if k in file_keys)
    if both:
        detail = ", ".join(f"{k}: (from flag: {flags[k]}, from file: "
                           f"{getattr(file_cfg, KEYS[k])})" for k in both)
        raise InvalidArgument("the following directives are specified both as a flag and "
                              f"in the configuration file: {detail}")
    cfg = dataclasses.replace(file_cfg)
    for key, value in flags.items():
        setattr(cfg, KEYS[key], convert(key, value))
    return cfg


__all__ = [
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_DATA_ROOT",
    "DEFAULT_EXEC_ROOT",
    "DEFAULT_HOST",
    "DEFAULT_SOCKET",
    "KEYS",
    "AddressPool",
    "DaemonConfig",
    "check_host",
    "check_insecure",
    "check_mirror",
    "convert",
    "load_file",
    "merge",
    "parse",
]
