"""The volume service: named and anonymous volumes of the local driver, and the mounts of
each container (volumes, host directories, tmpfs).

    vs = VolumeService(root)                       # what Engine opens as engine.volumes
    vs.create("data", labels={"a": "b"})           # docker's Volume document
    vs.list({"dangling": ["true"]}); vs.inspect("data"); vs.remove("data"); vs.prune()
    mounts = vs.prepare(cid, config=..., host=..., image_config=..., rootfs=merged,
                        resolve=lambda ref: containers.resolve(ref).id)
    vs.mount_points(cid)                           # inspect's Mounts
    vs.release(cid, remove_anonymous=True)         # at container removal (rm -v, --rm)

On disk (no SQLite: each volume is its own directory, so nothing needs a migration):

    <root>/volumes/<name>/_data          the volume's data (a device volume's mount point)
    <root>/volumes/<name>/volume.json    {Name, Driver, Labels, Options, CreatedAt}
    <root>/volumes/_containers/<id>.json a container's mount points and the anonymous
                                         volumes made for it (its references)

A volume appears whole or not at all (made in a ".tmp-" directory, renamed into place)
and disappears the same way (renamed to ".rm-" first). `_containers` and the dot names
can never be volume names (those start with a letter or digit).

References: a volume is in use while a container (running or not) that mounts it exists:
remove refuses it (Conflict) unless forced, prune and the dangling filter skip it. A
volume with driver options (type/device/o) is mounted on its _data when the first
container using it is created and unmounted when the last one is removed; at engine start
(reconcile) the references are read back and mounts made or undone to match them.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyrt.errors import Conflict, InvalidArgument, NotFound, PyrtError, SystemError_
from pyrt.volumes import local
from pyrt.volumes.specs import (
    MountSpec,
    gather,
    parse_volumes_from,
    string_map,
    validate_volume_name,
)

if TYPE_CHECKING:
    from pyrt.containers.options import ContainerConfig, HostConfig
    from pyrt.events import EventBus

META = "volume.json"
DATA = "_data"
REFS = "_containers"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
log = logging.getLogger("pyrt.volumes")
_LIST_FILTERS = ("dangling", "name", "label", "driver")
_PRUNE_FILTERS = ("label", "label!", "all")


@dataclass
class Volume:
    name: str
    driver: str
    labels: dict[str, str]
    options: dict[str, str] | None
    created: str
    path: Path

    @property
    def mountpoint(self) -> Path:
        return self.path / DATA

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in self.labels

    def to_api(self) -> dict[str, Any]:
        return {"CreatedAt": self.created, "Driver": self.driver, "Labels": dict(self.labels),
                "Mountpoint": str(self.mountpoint), "Name": self.name,
                # {} without driver options: the API document types it object (dockerd: null)
                "Options": dict(self.options or {}),
                "Scope": "local"}  # fmt: skip


@dataclass
class _Uses:
    """What one container mounts: inspect's mount points, the volumes it references and
    those that were made for it (anonymous: removed with it on rm -v)."""

    mounts: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    anonymous: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps({"Mounts": self.mounts, "Volumes": self.volumes,
                           "Anonymous": self.anonymous}).encode()  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes) -> _Uses:
        d = json.loads(raw)
        return cls(list(d.get("Mounts") or []), list(d.get("Volumes") or []),
                   list(d.get("Anonymous") or []))  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write(path: Path, data: bytes) -> None:
    """Atomic (temp file beside it, fsync, rename); the temp name is unique per call."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _bool_filter(key: str, values: list[str]) -> bool:
    out = None
    for v in values:
        low = v.lower()
        if low not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter '{key}={v}'")
        out = low in ("true", "1")
    return bool(out)


def _labels_match(labels: Mapping[str, str], wanted: Iterable[str]) -> bool:
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def dir_size(path: Path) -> int:
    """Bytes of the files below path (symlinks not followed, other filesystems skipped)."""
    total = 0
    try:
        dev = os.lstat(path).st_dev
    except OSError:
        return 0
    for dirpath, dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
        keep = []
        for name in dirs:
            with contextlib.suppress(OSError):
                if os.lstat(os.path.join(dirpath, name)).st_dev == dev:
                    keep.append(name)
        dirs[:] = keep
    return total


class VolumeService:
    def __init__(self, root: Path, *, events: EventBus | None = None) -> None:
        self.root = root / "volumes"
        self.root.mkdir(mode=0o701, parents=True, exist_ok=True)
        self.refs_dir = self.root / REFS
        self.refs_dir.mkdir(mode=0o700, exist_ok=True)
        self.events = events
        self._lock = threading.RLock()
        self._uses: dict[str, _Uses] = {}
        self._copy_locks: dict[str, threading.Lock] = {}
        for entry in os.listdir(self.root):
            if entry.startswith((".tmp-", ".rm-")):  # left by a crash: never visible
                try:
                    self._destroy_dir(self.root / entry)
                except SystemError_ as e:  # kept (something is mounted there), not fatal
                    log.warning("volumes: %s", e)
        for entry in os.listdir(self.refs_dir):
            if entry.endswith(".json") and not entry.startswith("."):
                with contextlib.suppress(OSError, ValueError):
                    self._uses[entry[:-5]] = _Uses.from_json((self.refs_dir / entry).read_bytes())

    # ------------------------------------------------------------------ volumes

    def _publish(self, action: str, name: str, **attrs: str) -> None:
        if self.events is not None:
            self.events.publish("volume", action, name, {"driver": "local", **attrs})

    def _load(self, name: str) -> Volume:
        if not isinstance(name, str) or not name:
            raise InvalidArgument("volume: a name is required")
        path = self.root / name
        try:
            validate_volume_name(name)
            d = json.loads((path / META).read_bytes())
        except (InvalidArgument, OSError, ValueError):
            raise NotFound(f"get {name}: no such volume") from None
        return Volume(name=name, driver=str(d.get("Driver") or "local"),
                      labels=dict(d.get("Labels") or {}), options=d.get("Options"),
                      created=str(d.get("CreatedAt") or ""), path=path)  # fmt: skip

    def get(self, name: str) -> Volume:
        return self._load(name)

    def exists(self, name: str) -> bool:
        try:
            self._load(name)
        except NotFound:
            return False
        return True

    def all(self) -> list[Volume]:
        out = []
        for entry in sorted(os.listdir(self.root)):
            if entry == REFS or entry.startswith("."):
                continue
            with contextlib.suppress(NotFound):
                out.append(self._load(entry))
        return out

    def create(self, name: str | None = None, driver: str = "local",
               driver_opts: Mapping[str, str] | None = None,
               labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        """docker volume create: the Volume document. A volume of that name that exists
        already is returned as it is (Conflict if its driver differs); no name makes an
        anonymous volume (a 64-hex name, label com.docker.volume.anonymous)."""
        with self._lock:
            return self._create(name, driver, driver_opts, labels).to_api()

    def _create(self, name: str | None, driver: str, driver_opts: Mapping[str, str] | None,
                labels: Mapping[str, str] | None) -> Volume:
        driver = driver or "local"
        if driver != "local":
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not '
                           "found")  # fmt: skip
        opts = local.check_options(dict(driver_opts or {}))
        lbls = string_map(dict(labels or {}), "Labels")
        if name:
            validate_volume_name(name)
            with contextlib.suppress(NotFound):
                existing = self._load(name)
                if existing.driver != driver:
                    raise Conflict(f"volume name {name} already in use with driver "
                                   f"{existing.driver}")  # fmt: skip
                return existing
        else:
            name = secrets.token_hex(32)
            lbls[ANONYMOUS_LABEL] = ""
        tmp = self.root / f".tmp-{secrets.token_hex(8)}"
        tmp.mkdir(mode=0o701)
        try:
            (tmp / DATA).mkdir(mode=0o755)
            meta = {"Name": name, "Driver": driver, "Labels": lbls,
                    "Options": opts if driver_opts is not None else None,
                    "CreatedAt": _now()}  # fmt: skip
            _write(tmp / META, json.dumps(meta).encode())
            os.rename(tmp, self.root / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._publish("create", name)
        return self._load(name)

    def inspect(self, name: str) -> dict[str, Any]:
        return self._load(name).to_api()

    def users(self, name: str) -> list[str]:
        """Ids of the containers that use the volume."""
        with self._lock:
            return sorted(cid for cid, u in self._uses.items() if name in u.volumes)

    def list(self, filters: Mapping[str, Iterable[str]] | None = None) -> list[dict[str, Any]]:
        """docker volume ls: Volume documents matching the filters (dangling, name: part
        of the name, label: key or key=value, driver)."""
        flt = {k: [str(x) for x in v] for k, v in (filters or {}).items()}
        for key in flt:
            if key not in _LIST_FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        dangling = _bool_filter("dangling", flt["dangling"]) if flt.get("dangling") else None
        with self._lock:
            used = {n for u in self._uses.values() for n in u.volumes}
            vols = self.all()
        out = []
        for v in vols:
            if dangling is not None and (v.name not in used) != dangling:
                continue
            if flt.get("name") and not any(n in v.name for n in flt["name"]):
                continue
            if flt.get("driver") and v.driver not in flt["driver"]:
                continue
            if not _labels_match(v.labels, flt.get("label", [])):
                continue
            out.append(v.to_api())
        return out

    def remove(self, name: str, force: bool = False) -> None:
        """docker volume rm: Conflict while a container uses it, unless forced."""
        with self._lock:
            vol = self._load(name)
            users = self.users(name)
            if users and not force:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
            self._remove_locked(vol)

    def _remove_locked(self, vol: Volume) -> None:
        if local.is_mounted(str(vol.mountpoint)):
            local.unmount(str(vol.mountpoint))
        self._destroy_dir(vol.path, rename=True)
        self._copy_locks.pop(vol.name, None)
        self._publish("destroy", vol.name)

    def _destroy_dir(self, path: Path, rename: bool = False) -> None:
        """Remove a volume's directory; never while anything is mounted below it (its
        files would be a host directory's or a device's)."""
        prefix = str(path) + "/"
        with open("/proc/self/mountinfo") as f:
            busy = [ln.split()[4] for ln in f if (ln.split()[4] + "/").startswith(prefix)]
        if busy:
            raise SystemError_(f"volume directory {path}: still mounted at {busy[0]}")
        gone = path
        if rename:
            gone = self.root / f".rm-{secrets.token_hex(8)}"
            os.rename(path, gone)
        shutil.rmtree(gone, ignore_errors=True)

    def prune(self, filters: Mapping[str, Iterable[str]] | None = None) -> dict[str, Any]:
        """docker volume prune: removes unused volumes matching the filters (label,
        label!, all); without all=true only anonymous ones, as API 1.42+ does."""
        flt = {k: [str(x) for x in v] for k, v in (filters or {}).items()}
        for key in flt:
            if key not in _PRUNE_FILTERS:
                raise InvalidArgument(f"invalid filter '{key}' for volume prune (label, "
                                      "label!, all)")  # fmt: skip
        every = _bool_filter("all", flt["all"]) if flt.get("all") else False
        deleted: list[str] = []
        reclaimed = 0
        with self._lock:
            used = {n for u in self._uses.values() for n in u.volumes}
            for v in self.all():
                if v.name in used or (not every and not v.anonymous):
                    continue
                if not _labels_match(v.labels, flt.get("label", [])):
                    continue
                if any(_labels_match(v.labels, [x]) for x in flt.get("label!", [])):
                    continue
                size = dir_size(v.mountpoint)
                self._remove_locked(v)
                deleted.append(v.name)
                reclaimed += size
        return {"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def usage(self) -> builtins.list[dict[str, Any]]:
        """The Volume documents with UsageData {Size, RefCount} (system df)."""
        with self._lock:
            counts: dict[str, int] = {}
            for u in self._uses.values():
                for n in u.volumes:
                    counts[n] = counts.get(n, 0) + 1
            vols = self.all()
        out = []
        for v in vols:
            doc = v.to_api()
            doc["UsageData"] = {"Size": dir_size(v.mountpoint), "RefCount": counts.get(v.name, 0)}
            out.append(doc)
        return out

    # ------------------------------------------------------------------ containers

    def mount_points(self, cid: str) -> builtins.list[dict[str, Any]]:
        """inspect's Mounts of a container ([] when it mounts nothing)."""
        with self._lock:
            u = self._uses.get(cid)
            return [dict(m) for m in u.mounts] if u is not None else []

    def publish_mounts(self, cid: str, action: str) -> None:
        """docker's volume events of a container: "mount" (with where and how) as it
        starts, "unmount" once it has stopped, one per volume it uses."""
        for m in self.mount_points(cid):
            if m["Type"] != "volume":
                continue
            if action == "mount":
                self._publish("mount", m["Name"], container=cid, destination=m["Destination"],
                              propagation=m["Propagation"],
                              **{"read/write": "true" if m["RW"] else "false"})  # fmt: skip
            else:
                self._publish("unmount", m["Name"], container=cid)

    def prepare(self, cid: str, *, config: ContainerConfig, host: HostConfig,
                image_config: Mapping[str, Any], rootfs: str,
                resolve: Callable[[str], str]) -> builtins.list[dict[str, Any]]:
        """Resolve a container's mounts: volumes made or found (and referenced by `cid`),
        device volumes mounted, missing -v host directories made, empty volumes filled
        from the image (copy-up); the runtime-spec mounts to bind. `resolve` turns a
        VolumesFrom reference into a container id. On failure nothing is left referenced
        and the anonymous volumes made here are removed."""
        inherited: builtins.list[MountSpec] = []
        for i, entry in enumerate(host.VolumesFrom):
            ref, mode = parse_volumes_from(entry, f"HostConfig.VolumesFrom[{i}]")
            inherited += self._inherit(resolve(ref), mode)
        image_vols = list((image_config.get("Volumes") or {}).keys())
        specs = gather(binds=host.Binds, mounts=host.Mounts, from_containers=inherited,
                       volumes=[*config.Volumes, *image_vols],
                       tmpfs_targets=host.Tmpfs.keys())  # fmt: skip
        if not specs:
            return []  # nothing to reference: no file written on the plain create path
        uses = _Uses()
        try:
            with self._lock:
                if cid in self._uses:
                    raise Conflict(f"container {cid}: its mounts are prepared already")
                self._uses[cid] = uses
                vols = {}
                for spec in specs:
                    if spec.type == "volume":
                        vols[spec.target] = self._reference(cid, spec, uses)
                _write(self.refs_dir / f"{cid}.json", uses.to_json())
            out = []
            for spec in specs:
                out.append(self._spec_mount(spec, vols.get(spec.target), rootfs))
                uses.mounts.append(_mount_point(spec, vols.get(spec.target)))
            with self._lock:
                _write(self.refs_dir / f"{cid}.json", uses.to_json())
            return out
        except BaseException:
            self.release(cid, remove_anonymous=True)
            raise

    def _inherit(self, other: str, mode: str) -> builtins.list[MountSpec]:
        with self._lock:
            u = self._uses.get(other)
            mounts = list(u.mounts) if u is not None else []
        out = []
        for m in mounts:
            ro = (not m.get("RW", True)) if not mode else mode == "ro"
            if m.get("Type") == "volume":
                out.append(MountSpec(type="volume", target=m["Destination"], source=m["Name"],
                                     read_only=ro, mode=m.get("Mode", ""), nocopy=True,
                                     volumes_from=other))  # fmt: skip
            elif m.get("Type") == "bind":
                out.append(MountSpec(type="bind", target=m["Destination"], source=m["Source"],
                                     read_only=ro, mode=m.get("Mode", ""),
                                     propagation=m.get("Propagation") or "rprivate",
                                     volumes_from=other))  # fmt: skip
        return out

    def _reference(self, cid: str, spec: MountSpec, uses: _Uses) -> Volume:
        """The volume of a spec (found or made) referenced by cid; a device volume is
        mounted when it gets its first user. Called with the lock held."""
        if spec.source:
            try:
                vol = self._load(spec.source)
            except NotFound:
                if spec.volumes_from:
                    raise
                vol = self._create(spec.source, spec.driver, spec.driver_opts or None,
                                   spec.labels)  # fmt: skip
        else:
            vol = self._create(None, spec.driver, spec.driver_opts or None, spec.labels)
            uses.anonymous.append(vol.name)
        first = not any(vol.name in u.volumes for u in self._uses.values())
        uses.volumes.append(vol.name)
        opts = vol.options or {}
        if first and local.needs_mount(opts) and not local.is_mounted(str(vol.mountpoint)):
            local.mount_device(opts, str(vol.mountpoint))
        return vol

    def _spec_mount(self, spec: MountSpec, vol: Volume | None, rootfs: str
                    ) -> dict[str, Any]:
        from pyrt.containers.specgen import tmpfs_mount

        if spec.type == "tmpfs":
            return tmpfs_mount(spec.target, spec.tmpfs_options)
        if spec.type == "bind":
            if not os.path.exists(spec.source):
                if not spec.create_source:
                    raise InvalidArgument(f'invalid mount config for type "bind": bind source '
                                          f"path does not exist: {spec.source}")  # fmt: skip
                try:
                    os.makedirs(spec.source, mode=0o755, exist_ok=True)
                except OSError as e:
                    raise SystemError_(f"create host directory {spec.source} for a bind "
                                       f"mount: {e.strerror}", e.errno) from None  # fmt: skip
            source = spec.source
            propagation = spec.propagation or "rprivate"
        else:
            assert vol is not None
            source = str(vol.mountpoint)
            propagation = "rprivate"
            if not spec.nocopy and not spec.volumes_from:
                self._copy_up(vol, rootfs, spec.target)
        opts = ["rbind" if spec.recursive else "bind", propagation]
        if spec.read_only:
            opts.append("ro")
        return {"destination": spec.target, "type": "bind", "source": source, "options": opts}

    def _copy_up(self, vol: Volume, rootfs: str, target: str) -> None:
        from pyrt.volumes.copyup import copy_up

        with self._lock:
            lk = self._copy_locks.setdefault(vol.name, threading.Lock())
        with lk:
            copy_up(rootfs, target, str(vol.mountpoint))

    def ensure_mounted(self, cid: str) -> None:
        """Before a container starts: its device volumes are mounted (one whose mount was
        lost, to a reboot or a failure at engine start, is mounted again or the start
        fails), so it never writes into the bare _data directory instead."""
        with self._lock:
            u = self._uses.get(cid)
            for name in dict.fromkeys(u.volumes if u is not None else []):
                with contextlib.suppress(NotFound):  # removed by force: the start says so
                    vol = self._load(name)
                    opts = vol.options or {}
                    if local.needs_mount(opts) and not local.is_mounted(str(vol.mountpoint)):
                        local.mount_device(opts, str(vol.mountpoint))

    def release(self, cid: str, remove_anonymous: bool = False) -> None:
        """A container is gone: its references are dropped (a device volume nobody uses
        is unmounted) and, with remove_anonymous, the anonymous volumes made for it are
        removed (rm -v, --rm). Unknown ids are ignored."""
        with self._lock:
            u = self._uses.pop(cid, None)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.refs_dir / f"{cid}.json")
            if u is None:
                return
            used = {n for other in self._uses.values() for n in other.volumes}
            for name in dict.fromkeys(u.volumes):
                if name in used:
                    continue
                try:
                    vol = self._load(name)
                except NotFound:
                    continue  # removed by force meanwhile
                if local.is_mounted(str(vol.mountpoint)):
                    local.unmount(str(vol.mountpoint))
                if remove_anonymous and name in u.anonymous:
                    self._remove_locked(vol)

    def reconcile(self, known: Iterable[str]) -> None:
        """At engine start: references of containers that no longer exist are dropped;
        device volumes are mounted when used and unmounted when not."""
        keep = set(known)
        with self._lock:
            for cid in [c for c in self._uses if c not in keep]:
                self.release(cid)
            used = {n for u in self._uses.values() for n in u.volumes}
            for vol in self.all():
                opts = vol.options or {}
                mounted = local.is_mounted(str(vol.mountpoint))
                try:
                    if vol.name in used and local.needs_mount(opts) and not mounted:
                        local.mount_device(opts, str(vol.mountpoint))
                    elif vol.name not in used and mounted:
                        local.unmount(str(vol.mountpoint))
                except PyrtError as e:  # one volume's device must not keep the engine down
                    log.warning("volume %s: %s", vol.name, e)


def _mount_point(spec: MountSpec, vol: Volume | None) -> dict[str, Any]:
    """One entry of inspect's Mounts (docker's MountPoint)."""
    if spec.type == "volume":
        assert vol is not None
        return {"Type": "volume", "Name": vol.name, "Source": str(vol.mountpoint),
                "Destination": spec.target, "Driver": vol.driver, "Mode": spec.mode,
                "RW": not spec.read_only, "Propagation": ""}  # fmt: skip
    if spec.type == "bind":
        return {"Type": "bind", "Source": spec.source, "Destination": spec.target,
                "Mode": spec.mode, "RW": not spec.read_only,
                "Propagation": spec.propagation}  # fmt: skip
    return {"Type": "tmpfs", "Source": "", "Destination": spec.target, "Mode": "",
            "RW": not spec.read_only, "Propagation": ""}  # fmt: skip


__all__ = ["ANONYMOUS_LABEL", "Volume", "VolumeService", "dir_size"]
