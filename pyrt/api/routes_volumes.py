"""Volume endpoints over pyrt.volumes.VolumeService (engine.volumes), shaped as moby's
swagger 1.44:

GET /volumes (filters dangling, name, label, driver) -> {"Volumes": [...], "Warnings": []}
POST /volumes/create {Name, Driver, DriverOpts, Labels} -> 201 Volume
GET /volumes/{name} -> Volume; DELETE /volumes/{name}?force=1 -> 204
POST /volumes/prune (filters label, label!, all) -> {"VolumesDeleted", "SpaceReclaimed"}

Before API 1.42 a prune takes named volumes too (as docker did then); from 1.42 only
anonymous ones unless the filter all=true is given.
"""

from __future__ import annotations

from typing import Any

from pyrt.api.params import get_field, query_bool, query_filters
from pyrt.api.routing import (
    Request,
    Response,
    Router,
    empty_response,
    json_response,
    version_tuple,
)
from pyrt.errors import InvalidArgument
from pyrt.volumes.specs import string_map


def _svc(req: Request) -> Any:
    return req.app.engine.volumes


def list_volumes(req: Request) -> Response:
    return json_response({"Volumes": _svc(req).list(query_filters(req.query)), "Warnings": []})


def create(req: Request) -> Response:
    body = req.json("volume create", allow_empty=True) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("volume create: the body must be a JSON object")
    name = get_field(body, "Name", str, "") or None
    driver = get_field(body, "Driver", str, "") or "local"
    opts = string_map(body["DriverOpts"], "DriverOpts") if body.get("DriverOpts") is not None \
        else None
    out = _svc(req).create(name, driver=driver, driver_opts=opts,
                           labels=string_map(body.get("Labels"), "Labels"))
    return json_response(out, 201)


def inspect(req: Request) -> Response:
    return json_response(_svc(req).inspect(req.params["name"]))


def remove(req: Request) -> Response:
    _svc(req).remove(req.params["name"], force=query_bool(req.query, "force"))
    return empty_response(204)


def prune(req: Request) -> Response:
    filters = query_filters(req.query)
    if version_tuple(req.api_version) < (1, 42) and "all" not in filters:
        filters["all"] = ["true"]
    return json_response(_svc(req).prune(filters))


def register(router: Router) -> None:
    router.add("GET", "/volumes", list_volumes)
    router.add("POST", "/volumes/create", create)
    router.add("POST", "/volumes/prune", prune)
    router.add("GET", "/volumes/{name}", inspect)
    router.add("DELETE", "/volumes/{name}", remove)


__all__ = ["register"]
