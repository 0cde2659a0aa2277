"""Container records in SQLite (schema v2, see pyrt.metadata.schema) and the handle that
exec/cp/diff/commit/top/stats take (pyrt.containers.handle.ContainerHandle).

Where a container's files live:

    <root>/containers/<id>/          persistent (survives a reboot)
        <id>-json.log                the json-file log the shim writes
        hostname, hosts, resolv.conf the files bind-mounted on the container's /etc
        upper/, work/, merged/       the overlay's writable layer and mount point
    <run_root>/containers/<id>/      runtime state (gone after a reboot)
        config.json                  the OCI bundle is this directory
        shim.sock, exit.json, ...    the shim's state (its state dir is this one too)
    <run_root>/runtime/<id>/         the runtime's state (state.json, exec.fifo)

One directory per container on each side, no subdirectories: every directory is a new
inode per container, and on a journal-less ext4 each allocation scans past the inodes
freed in the last seconds (benchmarks/README.md, engine run). Containers made before this
layout keep theirs: a container whose directory holds etc/, fs/, bundle/ or shim/ is
read through them (`Paths` looks once per side).
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pyrt.containers.options import ContainerConfig, HostConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyrt.runtime.runtime import Runtime

STATES = ("creating", "created", "running", "paused", "restarting", "exited", "dead",
          "removing")  # fmt: skip


@dataclass(frozen=True)
class Paths:
    root: Path  # <root>/containers/<id>
    run: Path  # <run_root>/containers/<id>
    container_id: str

    @property
    def log(self) -> Path:
        return self.root / f"{self.container_id}-json.log"

    @cached_property
    def _old_root(self) -> bool:
        """Whether the data-root side has the layout of subdirectories (etc/, fs/): looked
        up once per Paths (a container keeps the layout it was made with)."""
        return os.path.isdir(self.root / "fs") or os.path.isdir(self.root / "etc")

    @cached_property
    def _old_run(self) -> bool:
        """The same for the run-root side (bundle/, shim/)."""
        return os.path.isdir(self.run / "bundle") or os.path.isdir(self.run / "shim")

    @property
    def etc(self) -> Path:
        """The directory of hostname, hosts and resolv.conf."""
        return self.root / "etc" if self._old_root else self.root

    @property
    def fs(self) -> Path:
        """The directory of the overlay's upper/, work/ and merged/."""
        return self.root / "fs" if self._old_root else self.root

    @property
    def upper(self) -> Path:
        return self.fs / "upper"

    @property
    def merged(self) -> Path:
        return self.fs / "merged"

    @property
    def bundle(self) -> Path:
        """The OCI bundle (config.json)."""
        return self.run / "bundle" if self._old_run else self.run

    @property
    def shim(self) -> Path:
        """The shim's state directory (see pyrt.containers.shim_client)."""
        return self.run / "shim" if self._old_run else self.run


@dataclass
class ContainerRecord:
    """One row of `containers`, with the JSON columns parsed."""

    id: str
    name: str
    image_id: str
    image_name: str
    created: str
    state: str
    path: str
    args: list[str]
    config: ContainerConfig
    host_config: HostConfig
    config_api: dict[str, Any]
    host_config_api: dict[str, Any]
    # the OCI spec's JSON text: parsed (spec) only when read; Docker's seccomp profile makes
    # it the biggest column by far, and most lookups of a record never look at it
    spec_json: str
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: str = ""
    finished_at: str = ""
    restart_count: int = 0
    manually_stopped: bool = False
    health: dict[str, Any] | None = None
    seq: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    _spec: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def spec(self) -> dict[str, Any]:
        if self._spec is None:
            self._spec = json.loads(self.spec_json)
        return self._spec

    def set_spec(self, spec: dict[str, Any], text: str) -> None:
        """The spec, and `text`, its JSON (json.dumps(spec))."""
        self._spec, self.spec_json = spec, text

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ContainerRecord:
        config_json, host_json = row["config_json"], row["host_config_json"]
        return cls(
            id=row["id"], name=row["name"], image_id=row["image_id"],
            image_name=row["image_name"], created=row["created"], state=row["state"],
            path=row["path"], args=json.loads(row["args_json"]),
            config=_parsed(_CONFIGS, config_json, ContainerConfig.from_api),
            host_config=_parsed(_HOST_CONFIGS, host_json, HostConfig.from_api),
            config_api=json.loads(config_json), host_config_api=json.loads(host_json),
            spec_json=row["spec_json"], pid=int(row["pid"]),
            exit_code=int(row["exit_code"]), error=row["error"],
            oom_killed=bool(row["oom_killed"]), started_at=row["started_at"],
            finished_at=row["finished_at"], restart_count=int(row["restart_count"]),
            manually_stopped=bool(row["manually_stopped"]),
            health=json.loads(row["health_json"]) if row["health_json"] else None,
            seq=int(row["seq"]),
        )  # fmt: skip

    def insert_params(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "image_id": self.image_id,
            "image_name": self.image_name, "created": self.created, "state": self.state,
            "path": self.path, "args_json": json.dumps(self.args),
            "config_json": json.dumps(self.config_api),
            "host_config_json": json.dumps(self.host_config_api),
            "spec_json": self.spec_json,
        }  # fmt: skip

    @property
    def running(self) -> bool:
        return self.state in ("running", "paused")


_T = TypeVar("_T")
_PARSED_MAX = 256
# ContainerConfig / HostConfig (frozen) by the JSON text they were read from: every lookup
# of a record used to validate its whole configuration again
_CONFIGS: dict[str, ContainerConfig] = {}
_HOST_CONFIGS: dict[str, HostConfig] = {}


def _parsed(cache: dict[str, _T], text: str, from_api: Callable[[dict[str, Any]], _T]) -> _T:
    value = cache.get(text)
    if value is None:
        value = from_api(json.loads(text))  # objects of its own, shared with no record's
        if len(cache) >= _PARSED_MAX:
            cache.clear()
        cache[text] = value
    return value


INSERT_SQL = (
    "INSERT INTO containers (id, name, image_id, image_name, created, state, path, args_json,"
    " config_json, host_config_json, spec_json, seq) VALUES (:id, :name, :image_id,"
    " :image_name, :created, :state, :path, :args_json, :config_json, :host_config_json,"
    " :spec_json, (SELECT COALESCE(MAX(seq), 0) + 1 FROM containers))"
)  # seq: the next number, taken by the statement itself (no read-then-write race)


class Container:
    """The ContainerHandle of one container: a record snapshot plus live lookups."""

    def __init__(self, record: ContainerRecord, paths: Paths, runtime: Runtime,
                 lower_dirs: list[str]) -> None:
        self.record = record
        self.paths = paths
        self._runtime = runtime
        self._lower_dirs = lower_dirs

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def image_id(self) -> str:
        return self.record.image_id

    @property
    def config(self) -> ContainerConfig:
        return self.record.config

    @property
    def host_config(self) -> HostConfig:
        return self.record.host_config

    @property
    def spec(self) -> dict[str, Any]:
        return self.record.spec

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @property
    def runtime_id(self) -> str:
        return self.record.id

    @property
    def rootfs(self) -> str:
        return str(self.paths.merged)

    @property
    def upper_dir(self) -> str:
        return str(self.paths.upper)

    @property
    def lower_dirs(self) -> list[str]:
        return list(self._lower_dirs)

    def status(self) -> str:
        st = self.record.state
        if st in ("creating", "removing"):
            return "dead" if st == "removing" else "created"
        return st

    def pid(self) -> int:
        if self.record.state not in ("running", "paused"):
            return 0
        pid = self.record.pid
        return pid if pid > 0 and os.path.exists(f"/proc/{pid}") else 0


__all__ = ["INSERT_SQL", "STATES", "Container", "ContainerRecord", "Paths"]
