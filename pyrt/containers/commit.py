"""`docker commit`: a container's writable layer becomes a new image on top of its own.

    image_id = commit(handle, repo_tag="me/app:2", author="me", message="fixed",
                      changes=["CMD [\"/bin/app\"]"], store=store, images=images)

Steps: pause the container when it runs and `pause` is set (and resume it afterwards,
whatever happens); pack the overlay upper dir with the C tar writer (overlay whiteouts
become `.wh.` entries, opaque directories `.wh..wh..opq`, gzip) into the content store;
build the config: the image's, with the container's own settings applied as docker
does (Entrypoint/Cmd by docker's rule, Env merged by key, WorkingDir, User, Labels,
ExposedPorts, Volumes, StopSignal, Healthcheck, Shell when set), then the Dockerfile-style
`changes` (parsed by pyrt.images.importer.apply_changes), rootfs.diff_ids plus the new
diff id and one history entry (created_by: the container's command, comment: message,
author); write a Docker schema 2 manifest; register it with the image service (which
unpacks the new layer into a snapshot and records the tag).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyrt import _core
from pyrt.containers.commit_config import merge_commit_config, parse_commit_config
from pyrt.containers.specgen import merge_env
from pyrt.errors import FailedPrecondition, InvalidArgument, PyrtError, SystemError_
from pyrt.images.importer import apply_changes
from pyrt.oci import mediatypes as mt
from pyrt.oci.image_config import parse_image_config

if TYPE_CHECKING:
    from pyrt.containers.handle import ContainerHandle
    from pyrt.containers.options import ContainerConfig
    from pyrt.content.store import ContentStore
    from pyrt.images.service import ImageService

_DOCKER_LAYER_TYPE = {
    "gzip": mt.DOCKER_LAYER_TAR_GZIP,
    "": mt.DOCKER_LAYER_TAR,
}


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def merge_container_config(image_cfg: dict[str, Any], c: ContainerConfig) -> dict[str, Any]:
    """The image's `config` with the container's own settings applied (docker commit)."""
    out = copy.deepcopy(image_cfg)
    if c.Entrypoint is not None:
        out["Entrypoint"] = list(c.Entrypoint) or None
        out["Cmd"] = list(c.Cmd) if c.Cmd is not None else None
    elif c.Cmd is not None:
        out["Cmd"] = list(c.Cmd)
    if c.Env:
        out["Env"] = merge_env(out.get("Env") or [], c.Env)
    if c.WorkingDir:
        out["WorkingDir"] = c.WorkingDir
    if c.User:
        out["User"] = c.User
    if c.Labels:
        out["Labels"] = {**(out.get("Labels") or {}), **c.Labels}
    if c.ExposedPorts:
        out["ExposedPorts"] = {**(out.get("ExposedPorts") or {}),
                               **{p: {} for p in c.ExposedPorts}}
    if c.Volumes:
        out["Volumes"] = {**(out.get("Volumes") or {}), **{v: {} for v in c.Volumes}}
    if c.StopSignal:
        out["StopSignal"] = c.StopSignal
    if c.Shell:
        out["Shell"] = list(c.Shell)
    if c.Healthcheck is not None:
        hc = c.Healthcheck
        out["Healthcheck"] = {k: v for k, v in {
            "Test": list(hc.Test) if hc.Test else None, "Interval": hc.Interval,
            "Timeout": hc.Timeout, "StartPeriod": hc.StartPeriod,
            "StartInterval": hc.StartInterval, "Retries": hc.Retries,
        }.items() if v}
    for key in [k for k, v in out.items() if v is None]:
        del out[key]
    return out


def _created_by(handle: ContainerHandle) -> str:
    args = (handle.spec.get("process") or {}).get("args") or []
    return shlex.join(str(a) for a in args)


def _pack_upper(upper: str, store: ContentStore) -> tuple[str, str, int]:
    """(blob digest, diff id, size) of the gzip layer of `upper`, now in the store."""
    fd, tmp = tempfile.mkstemp(prefix="commit-", suffix=".tar.gz",
                               dir=os.fspath(store.root))
    try:
        try:
            res = _core.pack_layer(upper, fd, "gzip", True)
        except OSError as e:
            raise SystemError_(f"commit: packing the writable layer {upper}: {e}",
                               e.errno) from None
        os.lseek(fd, 0, os.SEEK_SET)
        digest = store.ingest_from_file(fd, res["digest"], res["size"])
        return digest, res["diff_id"], res["size"]
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def commit(handle: ContainerHandle, *, store: ContentStore, images: ImageService,
           repo_tag: str | None = None, author: str = "", message: str = "",
           changes: Sequence[str] = (), pause: bool = True,
           user_config: Mapping[str, Any] | None = None) -> str:
    """Commit the container as a new image; returns its id ("sha256:<hex>"). user_config:
    the request's container Config (pyrt.containers.commit_config), under the changes."""
    new_cfg_changes = list(changes)
    # refuse a bad config or bad changes before any work
    body_cfg = parse_commit_config(user_config) if user_config is not None else None
    apply_changes(new_cfg_changes, {})
    base = images.get(handle.image_id)
    base_cfg: dict[str, Any] = json.loads(base.config_json)
    layers: list[dict[str, Any]] = []
    for layer in base.layers:
        if not layer.blob_digest or not layer.media_type or layer.blob_size is None \
                or not store.exists(layer.blob_digest):
            raise FailedPrecondition(f"commit: layer {layer.diff_id} of image {base.id} has "
                                     "no blob in the content store")
        mtype = layer.media_type
        with contextlib.suppress(InvalidArgument):
            mtype = _DOCKER_LAYER_TYPE.get(mt.layer_compression(mtype), mtype)
        layers.append({"mediaType": mtype, "size": layer.blob_size,
                       "digest": layer.blob_digest})

    paused = False
    if pause and handle.status() == "running":
        handle.runtime.pause(handle.runtime_id)
        paused = True
    try:
        digest, diff_id, size = _pack_upper(handle.upper_dir, store)
    finally:
        if paused:
            with contextlib.suppress(PyrtError):
                handle.runtime.resume(handle.runtime_id)

    created = _now()
    config = copy.deepcopy(base_cfg)
    for legacy in ("container", "container_config", "docker_version", "id", "parent"):
        config.pop(legacy, None)
    cfg = merge_container_config(base_cfg.get("config") or {}, handle.config)
    if body_cfg:  # moby's order: the changes apply to the body's config, then the merge
        config["config"] = merge_commit_config(apply_changes(new_cfg_changes, body_cfg), cfg)
    else:
        config["config"] = apply_changes(new_cfg_changes, cfg)
    config["created"] = created
    if author:
        config["author"] = author
    else:
        config.pop("author", None)
    rootfs = dict(config.get("rootfs") or {"type": "layers"})
    rootfs["type"] = "layers"
    rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), diff_id]
    config["rootfs"] = rootfs
    entry: dict[str, Any] = {"created": created, "created_by": _created_by(handle)}
    if author:
        entry["author"] = author
    if message:
        entry["comment"] = message
    config["history"] = [*(config.get("history") or []), entry]
    config_blob = _json(config)
    parse_image_config(config_blob)  # the same validation a pull gets
    config_digest = store.write_blob(config_blob)
    manifest = _json({
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_V2,
        "config": {"mediaType": mt.DOCKER_CONFIG, "size": len(config_blob),
                   "digest": config_digest},
        "layers": [*layers, {"mediaType": mt.DOCKER_LAYER_TAR_GZIP, "size": size,
                             "digest": digest}],
    })
    manifest_digest = store.write_blob(manifest)
    image = images.register(manifest_digest, tags=[repo_tag] if repo_tag else [])
    return image.id


__all__ = ["commit", "merge_container_config"]
