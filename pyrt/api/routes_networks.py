"""Network endpoints: /networks (list, inspect, create, remove, connect, disconnect, prune).

Thin: each route parses, calls one method of engine.networks (pyrt.networks.service) and
formats docker's JSON. Errors: 404 no such network/container, 409 a name in use, 403 a
predefined network or one with active endpoints (docker's statuses).
"""

from __future__ import annotations

from typing import Any

from pyrt.api.params import get_field, query_filters
from pyrt.api.routing import Request, Response, Router, empty_response, json_response
from pyrt.errors import InvalidArgument


def _svc(req: Request) -> Any:
    return req.app.engine.networks


def list_networks(req: Request) -> Response:
    return json_response(_svc(req).list(filters=query_filters(req.query)))


def inspect(req: Request) -> Response:
    return json_response(_svc(req).inspect(req.params["id"]))


def create(req: Request) -> Response:
    body = req.json("network create")
    name = get_field(body, "Name", str, what="network create")
    if not name:
        raise InvalidArgument("network create: Name is required")
    ipam = get_field(body, "IPAM", dict, {}, what="network create") or {}
    configs = get_field(ipam, "Config", list, [], what="IPAM") or []
    if len(configs) > 1:
        raise InvalidArgument("IPAM.Config: one IPv4 subnet per network is supported")
    cfg = configs[0] if configs else {}
    if not isinstance(cfg, dict):
        raise InvalidArgument("IPAM.Config[0]: must be an object")
    ipam_driver = get_field(ipam, "Driver", str, "", what="IPAM") or "default"
    if ipam_driver != "default":
        raise InvalidArgument(f"IPAM driver {ipam_driver!r} is not supported (default)")
    nid = _svc(req).create(
        name, driver=get_field(body, "Driver", str, "bridge", what="network create") or "bridge",
        subnet=get_field(cfg, "Subnet", str, "", what="IPAM.Config[0]") or "",
        gateway=get_field(cfg, "Gateway", str, "", what="IPAM.Config[0]") or "",
        ip_range=get_field(cfg, "IPRange", str, "", what="IPAM.Config[0]") or "",
        internal=bool(get_field(body, "Internal", bool, False, what="network create")),
        attachable=bool(get_field(body, "Attachable", bool, False, what="network create")),
        options=get_field(body, "Options", dict, {}, what="network create"),
        labels=get_field(body, "Labels", dict, {}, what="network create"),
        ipam_config=ipam,
        enable_ipv6=bool(get_field(body, "EnableIPv6", bool, False, what="network create")),
    )  # fmt: skip
    return json_response({"Id": nid, "Warning": ""}, 201)


def remove(req: Request) -> Response:
    _svc(req).remove(req.params["id"])
    return empty_response(204)


def _body_with_container(req: Request, what: str) -> tuple[dict[str, Any], str]:
    body = req.json(what)
    container = get_field(body, "Container", str, what=what)
    if not container:
        raise InvalidArgument(f"{what}: Container is required")
    return body, container


def connect(req: Request) -> Response:
    body, container = _body_with_container(req, "network connect")
    cfg = get_field(body, "EndpointConfig", dict, {}, what="network connect") or {}
    _svc(req).connect(req.params["id"], container, endpoint_config=cfg)
    return empty_response(200)


def disconnect(req: Request) -> Response:
    body, container = _body_with_container(req, "network disconnect")
    force = bool(get_field(body, "Force", bool, False, what="network disconnect"))
    _svc(req).disconnect(req.params["id"], container, force=force)
    return empty_response(200)


def prune(req: Request) -> Response:
    names = _svc(req).prune(filters=query_filters(req.query))
    return json_response({"NetworksDeleted": names or None})


def register(router: Router) -> None:
    router.add("GET", "/networks", list_networks)
    router.add("GET", "/networks/{id}", inspect)
    router.add("POST", "/networks/create", create)
    router.add("DELETE", "/networks/{id}", remove)
    router.add("POST", "/networks/{id}/connect", connect)
    router.add("POST", "/networks/{id}/disconnect", disconnect)
    router.add("POST", "/networks/prune", prune)


__all__ = ["register"]

