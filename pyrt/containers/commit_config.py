"""The container config a `docker commit` may carry in its request body (POST /commit).

docker-py's `container.commit(conf=...)` and the Engine API send a container Config whose
image-level fields describe the new image. moby applies the request's `changes` to that
config first, then fills what it leaves unset from the container's own config (its
`merge`): User, WorkingDir, StopSignal, Shell, OnBuild when empty; Env, Labels,
ExposedPorts and Volumes keep the body's entries and add the container's others;
Entrypoint/Cmd come from the container unless the body sets an Entrypoint (an empty one
drops it) or a Cmd; Healthcheck fields left zero come from the container's.

    cfg = parse_commit_config(body)            # InvalidArgument naming the field
    image_cfg = merge_commit_config(apply_changes(changes, cfg), container_cfg)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyrt.errors import InvalidArgument

#: the fields of docker's container Config that describe an image, and their JSON kinds
IMAGE_FIELDS: dict[str, str] = {
    "User": "string", "WorkingDir": "string", "StopSignal": "string",
    "Env": "strings", "Cmd": "strings", "Entrypoint": "strings", "Shell": "strings",
    "OnBuild": "strings", "Labels": "labels", "ExposedPorts": "set", "Volumes": "set",
    "Healthcheck": "healthcheck", "ArgsEscaped": "bool",
}

#: Config fields that only mean something to a running container: accepted (docker-py
#: sends a whole Config) and not kept in the image, as docker's image config drops them
CONTAINER_ONLY_FIELDS = frozenset({
    "Hostname", "Domainname", "AttachStdin", "AttachStdout", "AttachStderr", "Tty",
    "OpenStdin", "StdinOnce", "Image", "NetworkDisabled", "MacAddress", "StopTimeout",
})

_HEALTH_DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


def _strings(value: Any, what: str) -> list[str]:
    if isinstance(value, str):  # docker's StrSlice takes one string too
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"commit config {what}: expected a list of strings")
    return list(value)


def _healthcheck(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument("commit config Healthcheck: expected an object")
    out: dict[str, Any] = {}
    for key, v in value.items():
        if v is None:
            continue
        if key == "Test":
            out["Test"] = _strings(v, "Healthcheck.Test")
        elif key in (*_HEALTH_DURATIONS, "Retries"):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidArgument(f"commit config Healthcheck.{key}: expected a "
                                      "non-negative integer")
            out[key] = v
        else:
            raise InvalidArgument(f"commit config Healthcheck: unknown field {key!r}")
    return out


def parse_commit_config(body: Any) -> dict[str, Any]:
    """The image-level fields of a commit request's config body, checked; {} for none.
    InvalidArgument names the field that is wrong."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidArgument("commit config: expected a JSON object (a container Config)")
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in CONTAINER_ONLY_FIELDS:
            continue
        kind = IMAGE_FIELDS.get(key)
        if kind is None:
            raise InvalidArgument(f"commit config: unknown field {key!r}")
        if value is None:
            continue
        if kind == "string":
            if not isinstance(value, str):
                raise InvalidArgument(f"commit config {key}: expected a string")
            out[key] = value
        elif kind == "strings":
            out[key] = _strings(value, key)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise InvalidArgument(f"commit config {key}: expected true or false")
            out[key] = value
        elif kind == "labels":
            if not isinstance(value, dict) or not all(
                    isinstance(v, str) for v in value.values()):
                raise InvalidArgument(f"commit config {key}: expected an object of strings")
            out[key] = dict(value)
        elif kind == "set":
            if not isinstance(value, dict):
                raise InvalidArgument(f"commit config {key}: expected an object whose keys "
                                      "are the entries")
            out[key] = {k: {} for k in value}
        else:
            out[key] = _healthcheck(value)
    return out


def _env_key(entry: str) -> str:
    return entry.partition("=")[0]


def merge_commit_config(user: Mapping[str, Any], container: Mapping[str, Any]
                        ) -> dict[str, Any]:
    """moby's merge of a commit's config (body plus changes) with the container's config:
    what the user's config leaves unset comes from the container's."""
    out = dict(user)
    for key in ("User", "WorkingDir", "StopSignal", "Shell", "OnBuild"):
        if not out.get(key) and container.get(key):
            out[key] = container[key]
    env = list(out.get("Env") or [])
    keys = {_env_key(e) for e in env}
    env += [e for e in container.get("Env") or [] if _env_key(e) not in keys]
    if env:
        out["Env"] = env
    for key in ("Labels", "ExposedPorts", "Volumes"):
        merged = {**(container.get(key) or {}), **(out.get(key) or {})}
        if merged:
            out[key] = merged
    if not out.get("Entrypoint"):
        if not out.get("Cmd") and container.get("Cmd"):
            out["Cmd"] = container["Cmd"]
        if "Entrypoint" not in out and container.get("Entrypoint"):
            out["Entrypoint"] = container["Entrypoint"]
        if out.get("Entrypoint") == []:
            del out["Entrypoint"]
    hc = container.get("Healthcheck")
    if hc:
        mine = dict(out.get("Healthcheck") or {})
        for key, value in hc.items():
            if not mine.get(key):
                mine[key] = value
        out["Healthcheck"] = mine
    return out


__all__ = ["CONTAINER_ONLY_FIELDS", "IMAGE_FIELDS", "merge_commit_config",
           "parse_commit_config"]
