"""The image configuration (OCI image config == Docker container image v1 config).

- `parse_image_config(blob)` validates the JSON and returns an `ImageConfig`; the original
  document stays available as `.raw` (fields pyrt does not model, e.g. docker's
  `container_config`, are kept there untouched).
- `image_id(blob)` is the digest of the config blob: that is the image's ID.
- `chain_ids(diff_ids)`: chainID(L0) = diffID(L0); chainID(Ln) = sha256(chainID(Ln-1) + " " +
  diffID(Ln)). A chain ID names a layer *together with everything under it*, which is what an
  unpacked snapshot is.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyrt.errors import InvalidArgument
from pyrt.oci.digest import Digest, digest_bytes
from pyrt.oci.platform import Platform, normalize

_PORT = re.compile(r"(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?")


@dataclass(frozen=True)
class HealthConfig:
    test: tuple[str, ...] = ()
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    start_interval_ns: int = 0
    retries: int = 0


@dataclass(frozen=True)
class ContainerConfig:
    """The `config` object: defaults for containers made from the image."""

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    stop_signal: str = ""
    args_escaped: bool = False
    healthcheck: HealthConfig | None = None
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] | None = None

    def env_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.env:
            k, _, v = item.partition("=")
            out[k] = v
        return out


@dataclass(frozen=True)
class HistoryEntry:
    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False


@dataclass(frozen=True)
class ImageConfig:
    architecture: str
    os: str
    diff_ids: tuple[str, ...]
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    created: str = ""
    author: str = ""
    config: ContainerConfig = field(default_factory=ContainerConfig)
    rootfs_type: str = "layers"
    history: tuple[HistoryEntry, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def platform(self) -> Platform:
        return normalize(Platform(self.os, self.architecture, self.variant, self.os_version,
                                  self.os_features))

    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """Chain IDs of a layer stack, bottom first."""
    out: list[str] = []
    for i, diff in enumerate(diff_ids):
        d = str(Digest.parse(diff, what=f"diff_ids[{i}]"))
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def image_id(config_blob: bytes) -> str:
    """The image ID: the sha256 digest of the config blob, exactly as stored."""
    return str(digest_bytes(config_blob))


# --- parsing ------------------------------------------------------------------------------

def _str(obj: dict[str, Any], key: str, what: str, *, required: bool = False) -> str:
    val = obj.get(key)
    if val is None:
        if required:
            raise InvalidArgument(f"{what}.{key}: required")
        return ""
    if not isinstance(val, str):
        raise InvalidArgument(f"{what}.{key}: expected a string, got {type(val).__name__}")
    if required and not val:
        raise InvalidArgument(f"{what}.{key}: must not be empty")
    return val


def _str_list(obj: dict[str, Any], key: str, what: str) -> tuple[str, ...] | None:
    val = obj.get(key)
    if val is None:
        return None
    if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
        raise InvalidArgument(f"{what}.{key}: expected a list of strings")
    return tuple(val)


def _set_keys(obj: dict[str, Any], key: str, what: str) -> tuple[str, ...]:
    """Docker's "set" encoding: {"80/tcp": {}, ...}."""
    val = obj.get(key)
    if val is None:
        return ()
    if not isinstance(val, dict):
        raise InvalidArgument(f"{what}.{key}: expected an object whose keys are the entries")
    return tuple(val.keys())


def _int(obj: dict[str, Any], key: str, what: str) -> int:
    val = obj.get(key, 0)
    if val is None:
        return 0
    if isinstance(val, bool) or not isinstance(val, int) or val < 0:
        raise InvalidArgument(f"{what}.{key}: expected a non-negative integer, got {val!r}")
    return val


def _parse_health(obj: Any, what: str) -> HealthConfig | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what}: expected an object")
    test = _str_list(obj, "Test", what) or ()
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise InvalidArgument(
            f"{what}.Test: first element must be NONE, CMD or CMD-SHELL, got {test[0]!r}"
        )
    return HealthConfig(
        test=test,
        interval_ns=_int(obj, "Interval", what),
        timeout_ns=_int(obj, "Timeout", what),
        start_period_ns=_int(obj, "StartPeriod", what),
        start_interval_ns=_int(obj, "StartInterval", what),
        retries=_int(obj, "Retries", what),
    )


def _parse_container_config(obj: Any) -> ContainerConfig:
    what = "config"
    if obj is None:
        return ContainerConfig()
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what}: expected an object, got {type(obj).__name__}")
    env = _str_list(obj, "Env", what) or ()
    for i, item in enumerate(env):
        if "=" not in item or item.startswith("="):
            raise InvalidArgument(f"{what}.Env[{i}]: expected NAME=value, got {item!r}")
    ports = _set_keys(obj, "ExposedPorts", what)
    for p in ports:
        m = _PORT.fullmatch(p)
        if not m or not 0 < int(m.group(1)) <= 65535 or (
            m.group(2) and not int(m.group(1)) <= int(m.group(2)) <= 65535
        ):
            raise InvalidArgument(
                f"{what}.ExposedPorts: invalid port {p!r} (expected PORT[-PORT][/tcp|udp|sctp])"
            )
    labels = obj.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise InvalidArgument(f"{what}.Labels: expected an object of strings")
    args_escaped = obj.get("ArgsEscaped", False)
    if not isinstance(args_escaped, bool):
        raise InvalidArgument(f"{what}.ArgsEscaped: expected a boolean")
    return ContainerConfig(
        user=_str(obj, "User", what),
        exposed_ports=ports,
        env=env,
        entrypoint=_str_list(obj, "Entrypoint", what),
        cmd=_str_list(obj, "Cmd", what),
        volumes=_set_keys(obj, "Volumes", what),
        working_dir=_str(obj, "WorkingDir", what),
        labels=dict(labels),
        stop_signal=_str(obj, "StopSignal", what),
        args_escaped=args_escaped,
        healthcheck=_parse_health(obj.get("Healthcheck"), f"{what}.Healthcheck"),
        on_build=_str_list(obj, "OnBuild", what) or (),
        shell=_str_list(obj, "Shell", what),
    )


def parse_image_config(blob: bytes | str | dict[str, Any]) -> ImageConfig:
    """Parse and validate an image config (bytes as stored, or an already-decoded dict)."""
    if isinstance(blob, dict):
        obj: Any = blob
    else:
        try:
            obj = json.loads(blob)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InvalidArgument(f"invalid image config: malformed JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument("invalid image config: expected a JSON object")
    what = "image config"
    architecture = _str(obj, "architecture", what, required=True)
    os_name = _str(obj, "os", what, required=True)
    feats = _str_list(obj, "os.features", what) or ()

    rootfs = obj.get("rootfs")
    if not isinstance(rootfs, dict):
        raise InvalidArgument(f"{what}.rootfs: required object")
    rtype = rootfs.get("type")
    if rtype != "layers":
        raise InvalidArgument(f"{what}.rootfs.type: must be \"layers\", got {rtype!r}")
    diffs = rootfs.get("diff_ids")
    if diffs is None:
        diffs = []
    if not isinstance(diffs, list):
        raise InvalidArgument(f"{what}.rootfs.diff_ids: expected a list of digests")
    diff_ids = tuple(
        str(Digest.parse(d, what=f"{what}.rootfs.diff_ids[{i}]")) for i, d in enumerate(diffs)
    )

    hist_obj = obj.get("history") or []
    if not isinstance(hist_obj, list):
        raise InvalidArgument(f"{what}.history: expected a list")
    history: list[HistoryEntry] = []
    for i, h in enumerate(hist_obj):
        hw = f"{what}.history[{i}]"
        if not isinstance(h, dict):
            raise InvalidArgument(f"{hw}: expected an object")
        empty = h.get("empty_layer", False)
        if not isinstance(empty, bool):
            raise InvalidArgument(f"{hw}.empty_layer: expected a boolean")
        history.append(HistoryEntry(
            created=_str(h, "created", hw), created_by=_str(h, "created_by", hw),
            author=_str(h, "author", hw), comment=_str(h, "comment", hw), empty_layer=empty,
        ))
    if history:
        non_empty = sum(1 for h in history if not h.empty_layer)
        if non_empty != len(diff_ids):
            raise InvalidArgument(
                f"{what}: history has {non_empty} entries that are not empty_layer but "
                f"rootfs.diff_ids has {len(diff_ids)} layers; they must be equal"
            )

    return ImageConfig(
        architecture=architecture,
        os=os_name,
        diff_ids=diff_ids,
        variant=_str(obj, "variant", what),
        os_version=_str(obj, "os.version", what),
        os_features=feats,
        created=_str(obj, "created", what),
        author=_str(obj, "author", what),
        config=_parse_container_config(obj.get("config")),
        rootfs_type="layers",
        history=tuple(history),
        raw=obj,
    )
