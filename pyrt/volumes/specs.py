"""Docker's ways of asking for a mount -> one MountSpec each, with docker's rules.

    parse_bind("data:/var/lib/data:ro,nocopy", "HostConfig.Binds[0]")
    parse_mount({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20}},
                "HostConfig.Mounts[0]")
    specs = gather(config, host, image_volumes)   # the container's mounts, in order

- A Binds entry (`-v`) is "[SOURCE:]TARGET[:MODE]": an absolute SOURCE is a host path
  (created when missing, as docker does), another SOURCE a volume name, none an anonymous
  volume. MODE is a comma list of ro|rw, z|Z, nocopy, one propagation (bind only) and
  one consistency (accepted, ignored).
- A Mounts entry is the Engine API's Mount object (types bind, volume, tmpfs with their
  BindOptions, VolumeOptions, TmpfsOptions); a bind's missing source is an error.
- The order (docker's): VolumesFrom first, then Binds, then Mounts (a target given twice
  among these is InvalidArgument "Duplicate mount point"), then the container's and the
  image's VOLUMEs for targets nothing else (nor a HostConfig.Tmpfs entry) covers.

Volume names are docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, so a name can never be a path
(no "/", no leading "." and so no ".."). Errors are InvalidArgument naming the field.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyrt.errors import InvalidArgument

VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
PROPAGATIONS = ("shared", "rshared", "slave", "rslave", "private", "rprivate")
DEFAULT_PROPAGATION = "rprivate"
_CONSISTENCY = ("consistent", "cached", "delegated", "default")
MOUNT_TYPES = ("bind", "volume", "tmpfs")


def validate_volume_name(name: str, where: str = "volume name") -> str:
    if not isinstance(name, str) or not VOLUME_NAME_RE.match(name) or len(name) > 255:
        raise InvalidArgument(
            f'{where}: "{name}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path"
        )
    return name


@dataclass(frozen=True)
class MountSpec:
    """One mount a container asked for.

    type: bind (source: a host path), volume (source: a name, "" for a new anonymous
    one) or tmpfs (tmpfs_options: "size=...,mode=..."). mode: the mode text as given (what
    inspect's Mounts shows). create_source: a missing host directory is made (Binds).
    volumes_from: the container a VolumesFrom entry took it from."""

    type: str
    target: str
    source: str = ""
    read_only: bool = False
    propagation: str = ""
    nocopy: bool = False
    mode: str = ""
    create_source: bool = False
    recursive: bool = True
    tmpfs_options: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    driver: str = "local"
    driver_opts: dict[str, str] = field(default_factory=dict)
    volumes_from: str = ""


def clean_target(target: str, where: str, kind: str) -> str:
    if not isinstance(target, str) or not target:
        raise InvalidArgument(f'{where}: invalid mount config for type "{kind}": field Target '
                              "must not be empty")  # fmt: skip
    if not target.startswith("/"):
        raise InvalidArgument(f'{where}: invalid mount config for type "{kind}": invalid mount '
                              f"path: '{target}' mount path must be absolute")  # fmt: skip
    clean = posixpath.normpath(target)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    if clean == "/":
        raise InvalidArgument(f"{where}: invalid specification: destination can't be '/'")
    return clean


def _mode_ok(mode: str) -> bool:
    try:
        _parse_mode(mode)
    except ValueError:
        return False
    return True


def _parse_mode(mode: str) -> dict[str, str]:
    """'ro,nocopy,rslave' -> {"rw": "ro", "nocopy": "nocopy", "propagation": "rslave"};
    ValueError for an unknown or repeated kind."""
    out: dict[str, str] = {}
    for opt in mode.split(","):
        if opt in ("ro", "rw"):
            kind = "rw"
        elif opt in ("z", "Z"):
            kind = "label"
        elif opt == "nocopy":
            kind = "nocopy"
        elif opt in PROPAGATIONS:
            kind = "propagation"
        elif opt in _CONSISTENCY:
            kind = "consistency"
        else:
            raise ValueError(opt)
        if kind in out:
            raise ValueError(opt)
        out[kind] = opt
    return out


def parse_bind(spec: str, where: str) -> MountSpec:
    """A HostConfig.Binds entry (docker's `-v`) -> MountSpec (see the module doc)."""
    if not isinstance(spec, str) or not spec:
        raise InvalidArgument(f"{where}: invalid volume specification: '{spec}'")
    parts = spec.split(":")
    if len(parts) > 3 or any(not p for p in parts):
        raise InvalidArgument(f"{where}: invalid volume specification: '{spec}'")
    source, mode = "", ""
    if len(parts) == 1:
        target = parts[0]
    elif len(parts) == 2:
        if _mode_ok(parts[1]) and parts[0].startswith("/") and not parts[1].startswith("/"):
            target, mode = parts
        else:
            source, target = parts
    else:
        source, target, mode = parts
    if not target.startswith("/"):
        raise InvalidArgument(f"{where}: invalid volume specification: '{spec}': invalid mount "
                              f"config for type \"volume\": invalid mount path: '{target}' "
                              "mount path must be absolute")  # fmt: skip
    try:
        opts = _parse_mode(mode) if mode else {}
    except ValueError as e:
        raise InvalidArgument(f"{where}: invalid volume specification: '{spec}': invalid "
                              f"mode: {e.args[0]}") from None  # fmt: skip
    kind = "bind" if source.startswith("/") else "volume"
    target = clean_target(target, where, kind)
    if kind == "bind":
        if "nocopy" in opts:
            raise InvalidArgument(f"{where}: invalid volume specification: '{spec}': nocopy "
                                  "is for volumes, not host directories")  # fmt: skip
        return MountSpec(type="bind", target=target, source=posixpath.normpath(source),
                         read_only=opts.get("rw") == "ro", mode=mode,
                         propagation=opts.get("propagation", DEFAULT_PROPAGATION),
                         create_source=True)  # fmt: skip
    if "propagation" in opts:
        raise InvalidArgument(f"{where}: invalid volume specification: '{spec}': propagation "
                              f"'{opts['propagation']}' is for bind mounts only")  # fmt: skip
    if source:
        validate_volume_name(source, where)
    return MountSpec(type="volume", target=target, source=source,
                     read_only=opts.get("rw") == "ro", nocopy="nocopy" in opts,
                     mode=mode or "z")  # fmt: skip


def _opt_obj(m: Mapping[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = m.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}.{key}: must be an object")
    return value


def _opt_bool(obj: Mapping[str, Any], key: str, where: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidArgument(f"{where}.{key}: must be a boolean")
    return value


def string_map(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidArgument(f"{where}: must be an object of strings")
    return dict(value)


def parse_mount(m: object, where: str) -> MountSpec:
    """A HostConfig.Mounts entry (the API's Mount object) -> MountSpec."""
    if not isinstance(m, dict):
        raise InvalidArgument(f"{where}: must be an object")
    kind = m.get("Type")
    if kind not in MOUNT_TYPES:
        raise InvalidArgument(f'{where}: invalid mount config for type "{kind}": mount type '
                              "unknown (bind, volume or tmpfs)")  # fmt: skip
    assert isinstance(kind, str)
    err = f'{where}: invalid mount config for type "{kind}"'
    target = clean_target(m.get("Target", ""), where, kind)
    source = m.get("Source") or ""
    if not isinstance(source, str):
        raise InvalidArgument(f"{where}.Source: must be a string")
    read_only = _opt_bool(m, "ReadOnly", where)
    bind_opts = _opt_obj(m, "BindOptions", where)
    vol_opts = _opt_obj(m, "VolumeOptions", where)
    tmpfs_opts = _opt_obj(m, "TmpfsOptions", where)
    for key, present in (("BindOptions", bind_opts), ("VolumeOptions", vol_opts),
                         ("TmpfsOptions", tmpfs_opts)):  # fmt: skip
        if present is not None and not key.lower().startswith(kind):
            raise InvalidArgument(f"{err}: field {key} must not be specified")
    if kind == "bind":
        if not source:
            raise InvalidArgument(f"{err}: field Source must not be empty")
        if not source.startswith("/"):
            raise InvalidArgument(f"{err}: invalid mount path: '{source}' mount path must be "
                                  "absolute")  # fmt: skip
        b = bind_opts or {}
        prop = b.get("Propagation") or DEFAULT_PROPAGATION
        if prop not in PROPAGATIONS:
            raise InvalidArgument(f"{err}: invalid propagation mode: {prop}")
        create = _opt_bool(b, "CreateMountpoint", f"{where}.BindOptions")
        if not create and not os.path.exists(source):
            raise InvalidArgument(f"{err}: bind source path does not exist: {source}")
        return MountSpec(type="bind", target=target, source=posixpath.normpath(source),
                         read_only=read_only, propagation=prop, create_source=create,
                         recursive=not _opt_bool(b, "NonRecursive", f"{where}.BindOptions"),
                         mode="" if not read_only else "ro")  # fmt: skip
    if kind == "volume":
        if source:
            validate_volume_name(source, f"{where}.Source")
        v = vol_opts or {}
        if v.get("Subpath"):
            raise InvalidArgument(f"{err}: VolumeOptions.Subpath is not supported")
        driver_cfg = v.get("DriverConfig") or {}
        if not isinstance(driver_cfg, dict):
            raise InvalidArgument(f"{where}.VolumeOptions.DriverConfig: must be an object")
        driver = driver_cfg.get("Name") or "local"
        if not isinstance(driver, str):
            raise InvalidArgument(f"{where}.VolumeOptions.DriverConfig.Name: must be a string")
        return MountSpec(type="volume", target=target, source=source, read_only=read_only,
                         nocopy=_opt_bool(v, "NoCopy", f"{where}.VolumeOptions"), mode="z",
                         labels=string_map(v.get("Labels"), f"{where}.VolumeOptions.Labels"),
                         driver=driver,
                         driver_opts=string_map(driver_cfg.get("Options"),
                                              f"{where}.VolumeOptions.DriverConfig.Options"),
                         )  # fmt: skip
    if source:
        raise InvalidArgument(f"{err}: field Source must not be specified")
    t = tmpfs_opts or {}
    opts: list[str] = []
    size = t.get("SizeBytes")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument(f"{err}: invalid tmpfs size {size!r}")
        if size > 0:
            opts.append(f"size={size}")
    mode = t.get("Mode")
    if mode is not None:
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
            raise InvalidArgument(f"{err}: invalid tmpfs mode {mode!r}")
        opts.append(f"mode={mode:o}")
    for i, pair in enumerate(t.get("Options") or []):
        if (not isinstance(pair, list) or not 1 <= len(pair) <= 2
                or not all(isinstance(x, str) for x in pair)):  # fmt: skip
            raise InvalidArgument(f"{where}.TmpfsOptions.Options[{i}]: must be [key] or "
                                  "[key, value]")  # fmt: skip
        opts.append("=".join(pair))
    if read_only:
        opts.append("ro")
    return MountSpec(type="tmpfs", target=target, read_only=read_only,
                     tmpfs_options=",".join(opts))  # fmt: skip


def parse_volumes_from(entry: str, where: str) -> tuple[str, str]:
    """"container[:ro|rw]" -> (container, "ro"|"rw"|"")."""
    if not isinstance(entry, str) or not entry:
        raise InvalidArgument(f"{where}: a container name or id is required")
    ref, _, mode = entry.partition(":")
    if not ref or mode not in ("", "ro", "rw"):
        raise InvalidArgument(f"{where}: invalid VolumesFrom {entry!r}: expected "
                              "CONTAINER[:ro|rw]")  # fmt: skip
    return ref, mode


def gather(*, binds: Iterable[str], mounts: Iterable[object],
           from_containers: Iterable[MountSpec] = (), volumes: Iterable[str] = (),
           tmpfs_targets: Iterable[str] = ()) -> list[MountSpec]:
    """The container's mounts in docker's order (see the module doc). `volumes`: the
    container's and the image's VOLUME paths (anonymous volumes where nothing else is)."""
    by_target: dict[str, MountSpec] = {}
    for spec in from_containers:
        by_target[spec.target] = spec
    explicit: set[str] = set()
    parsed = [parse_bind(b, f"HostConfig.Binds[{i}]") for i, b in enumerate(binds)]
    parsed += [parse_mount(m, f"HostConfig.Mounts[{i}]") for i, m in enumerate(mounts)]
    for spec in parsed:
        if spec.target in explicit:
            raise InvalidArgument(f"Duplicate mount point: {spec.target}")
        explicit.add(spec.target)
        by_target[spec.target] = spec
    covered = set(by_target) | {posixpath.normpath(t) for t in tmpfs_targets}
    for path in volumes:
        target = clean_target(path, "Volumes", "volume")
        if target not in covered:
            covered.add(target)
            by_target[target] = MountSpec(type="volume", target=target, mode="")
    return list(by_target.values())


__all__ = [
    "DEFAULT_PROPAGATION",
    "MOUNT_TYPES",
    "PROPAGATIONS",
    "VOLUME_NAME_RE",
    "MountSpec",
    "clean_target",
    "gather",
    "parse_bind",
    "parse_mount",
    "parse_volumes_from",
    "string_map",
    "validate_volume_name",
]
