"""The network service: networks (bridge, host, none), endpoints, published ports, names.

    net = engine.networks
    nid = net.create("backend", subnet="10.30.0.0/24", internal=False, labels={"a": "b"})
    net.connect("backend", "web", aliases=["api"], ip="10.30.0.9")
    net.inspect("backend"); net.list(filters={"driver": ["bridge"]})
    net.disconnect("backend", "web"); net.remove("backend"); net.prune()

Networks are rows of `networks`; `bridge` (the default, on its own Linux bridge, "pyrt0"
for the default root), `host` and `none` are predefined and cannot be removed. A user
network is a Linux bridge "br-<12 hex of its id>" (or the bridge name option) with its
gateway address, and one nftables chain in pyrt's table (pyrt.networks.nft).

A container's place on networks is its rows of `endpoints`: made at create from
HostConfig.NetworkMode ("bridge"/"default", a user network, "host", "none",
"container:<name|id>") and NetworkingConfig.EndpointsConfig, or by connect. Every container
that is neither "host" nor "container:" mode runs in a network namespace of its own that
the runtime makes in its clone (lo is up in it). It is pinned at <run_root>/netns/<id> only
when something needs a path that outlives a moment (a `container:<id>` joiner, inspect's
SandboxKey: pin); the rest reach it through /proc/<pid>/ns/net of the container's process.
That spares every start a round trip through the netlink thread to make and pin a
namespace, the runtime the extra fork that joining one by path takes, and every stop the
unmount. (A spec made before this joins the pinned path: setup still makes that one.)

At start (setup) each endpoint gets an address (the lowest free one of the network's range,
or the one asked for) and its published ports are held on the host and DNATed, while
/etc/hosts and resolv.conf are rewritten (127.0.0.11, the embedded DNS, on user networks);
then, between the runtime's create and start (ready), a veth pair per endpoint (eth0,
eth1... inside) goes into the new namespace, with the default route through the first
network that has one, and the embedded DNS listens in it. When the container exits, stops
or is removed (teardown) all of that goes and the addresses are released, as Docker does.

Kernel objects exist only while needed: a network's bridge and rules come up at its
create or first use and go at its removal, or when the engine closes and no running
container uses it. Engine start (reconcile) removes what a crash left (namespaces, veths,
rules, port reservations of containers that are no longer running) and restores what the
running containers need.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyrt.errors import (
    Conflict,
    Forbidden,
    InvalidArgument,
    NotFound,
    PyrtError,
    SystemError_,
)
from pyrt.networks import ipam
from pyrt.networks.netlink import EndpointLink, LinkDriver, process_netns
from pyrt.networks.nft import BridgeRules, Firewall, PortRule

if TYPE_CHECKING:
    from pyrt.containers.options import HostConfig
    from pyrt.containers.record import ContainerRecord
    from pyrt.events import EventBus
    from pyrt.metadata.db import Database
    from pyrt.networks.ports import HeldPort

log = logging.getLogger("pyrt.networks")

PREDEFINED = ("bridge", "host", "none")
DRIVERS = ("bridge", "host", "null")
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
DNS_ADDRESS = "127.0.0.11"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_LIST_FILTERS = ("driver", "id", "label", "name", "scope", "type", "dangling")


def default_names(root: str, default_root: str = "/var/lib/pyrt") -> tuple[str, str]:
    """(bridge, nft table) for an engine root: "pyrt0"/"pyrt" for the default root, names
    derived from the root otherwise, so several engines on one host never share them."""
    if os.path.abspath(root) == default_root:
        return "pyrt0", "pyrt"
    h = hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:8]
    return f"pyrt{h}", f"pyrt_{h}"


@dataclass
class Network:
    id: str
    name: str
    driver: str
    created: str
    bridge: str = ""
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    internal: bool = False
    attachable: bool = False
    mtu: int = 0
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ipam: dict[str, Any] = field(default_factory=dict)
    predefined: bool = False

    @classmethod
    def from_row(cls, r: Any) -> Network:
        return cls(id=r["id"], name=r["name"], driver=r["driver"], created=r["created"],
                   bridge=r["bridge"], subnet=r["subnet"], gateway=r["gateway"],
                   ip_range=r["ip_range"], internal=bool(r["internal"]),
                   attachable=bool(r["attachable"]), mtu=int(r["mtu"]),
                   options=json.loads(r["options_json"]), labels=json.loads(r["labels_json"]),
                   ipam=json.loads(r["ipam_json"]), predefined=bool(r["predefined"]))  # fmt: skip

    @property
    def is_user(self) -> bool:
        """A user-defined network: names resolve through the embedded DNS."""
        return not self.predefined


@dataclass
class Endpoint:
    container_id: str
    network_id: str
    endpoint_id: str
    position: int
    aliases: list[str]
    requested_ip: str
    ip_address: str
    mac_address: str
    ifname: str
    host_ifname: str

    @classmethod
    def from_row(cls, r: Any) -> Endpoint:
        return cls(container_id=r["container_id"], network_id=r["network_id"],
                   endpoint_id=r["endpoint_id"], position=int(r["position"]),
                   aliases=json.loads(r["aliases_json"]), requested_ip=r["requested_ip"],
                   ip_address=r["ip_address"], mac_address=r["mac_address"],
                   ifname=r["ifname"], host_ifname=r["host_ifname"])  # fmt: skip


def _now() -> str:
    from pyrt.containers.service import now_rfc3339

    return now_rfc3339()


def host_ifname(cid: str, nid: str) -> str:
    """The host end of a container's veth on a network: stable, so teardown needs no state."""
    return "pv" + hashlib.sha256(f"{cid}/{nid}".encode()).hexdigest()[:11]


class NetworkService:
    def __init__(self, *, db: Database, run_root: Path, events: EventBus,
                 links: LinkDriver, firewall: Firewall,
                 pools: Sequence[ipam.Pool] = ipam.DEFAULT_POOLS, bridge_name: str = "pyrt0",
                 dns_upstreams: Sequence[tuple[str, int]] | None = None,
                 default_dns: Sequence[str] = (), owner: str = "",
                 dns_factory: Callable[..., Any] | None = None) -> None:
        self.db = db
        self.events = events
        self.links = links
        self.firewall = firewall
        self.pools = list(pools) or list(ipam.DEFAULT_POOLS)
        self.bridge_name = bridge_name
        self.netns_dir = run_root / "netns"
        self.owner = owner  # the ifalias of the links made here ("pyrt:<engine root>")
        self.default_dns = list(default_dns)
        if dns_upstreams is None and self.default_dns:
            dns_upstreams = [(d, 53) for d in self.default_dns]
        self.dns_upstreams = list(dns_upstreams) if dns_upstreams is not None else None
        self._dns_factory = dns_factory
        self._dns: Any = None
        self._dns_members: set[str] = set()
        self._lock = threading.RLock()
        self._pin_lock = threading.Lock()  # (inspect and a joiner's start may pin at once)
        self._up: set[str] = set()  # networks whose bridge and rules are up
        self._held: dict[str, list[HeldPort]] = {}  # container -> its host port sockets
        # the second half of setups (links, rules, files) runs here, overlapping the
        # runtime's create; _pending: container -> that work
        self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="pyrt-netsetup")
        self._pending: dict[str, concurrent.futures.Future[None]] = {}
        self._ensure_predefined()

    # ------------------------------------------------------------------ records

    def _ensure_predefined(self) -> None:
        have = {str(r["name"]) for r in self.db.query(
            "SELECT name FROM networks WHERE predefined = 1")}  # fmt: skip
        for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            if name in have:
                continue
            bridge = self.bridge_name if name == "bridge" else ""
            opts = {OPT_BRIDGE_NAME: bridge} if bridge else {}
            with contextlib.suppress(Conflict):
                self.db.execute(
                    "INSERT INTO networks (id, name, driver, created, bridge, options_json, "
                    "predefined) VALUES (?, ?, ?, ?, ?, ?, 1)",
                    (secrets.token_hex(32), name, driver, _now(), bridge, json.dumps(opts)))
        # the default bridge's name follows the engine's configuration
        self.db.execute("UPDATE networks SET bridge = ?, options_json = ? WHERE name = 'bridge' "
                        "AND predefined = 1 AND bridge != ?",
                        (self.bridge_name, json.dumps({OPT_BRIDGE_NAME: self.bridge_name}),
                         self.bridge_name))  # fmt: skip

    def _net_row(self, nid: str) -> Network | None:
        row = self.db.query_one("SELECT * FROM networks WHERE id = ?", (nid,))
        return Network.from_row(row) if row is not None else None

    def get(self, ref: str) -> Network:
        """A network by full id, name, or unique id prefix (NotFound otherwise)."""
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("network: a name or id is required")
        if _HEX64.match(ref):
            n = self._net_row(ref)
            if n is not None:
                return n
        row = self.db.query_one("SELECT * FROM networks WHERE name = ?", (ref,))
        if row is not None:
            return Network.from_row(row)
        if re.fullmatch(r"[0-9a-f]{1,64}", ref):
            rows = self.db.query("SELECT * FROM networks WHERE id LIKE ? LIMIT 2", (ref + "%",))
            if len(rows) > 1:
                raise InvalidArgument(f"network {ref} is ambiguous ({len(rows)} matches found "
                                      "on id prefix)")  # fmt: skip
            if rows:
                return Network.from_row(rows[0])
        raise NotFound(f"network {ref} not found")

    def _endpoints(self, *, container: str | None = None, network: str | None = None
                   ) -> list[Endpoint]:
        where, args = [], []
        if container is not None:
            where.append("container_id = ?")
            args.append(container)
        if network is not None:
            where.append("network_id = ?")
            args.append(network)
        sql = "SELECT * FROM endpoints" + (" WHERE " + " AND ".join(where) if where else "")
        return [Endpoint.from_row(r) for r in self.db.query(sql + " ORDER BY position", args)]

    def _container(self, ref: str) -> dict[str, Any]:
        """{id, name, state, host_config} of a container by id, name or id prefix."""
        row = None
        if _HEX64.match(ref):
            row = self.db.query_one("SELECT id, name, state, host_config_json FROM containers "
                                    "WHERE id = ?", (ref,))  # fmt: skip
        if row is None:
            row = self.db.query_one("SELECT id, name, state, host_config_json FROM containers "
                                    "WHERE name = ?", (ref.lstrip("/"),))  # fmt: skip
        if row is None and re.fullmatch(r"[0-9a-f]{1,64}", ref):
            rows = self.db.query("SELECT id, name, state, host_config_json FROM containers "
                                 "WHERE id LIKE ? LIMIT 2", (ref + "%",))  # fmt: skip
            if len(rows) == 1:
                row = rows[0]
        if row is None or row["state"] == "creating":
            raise NotFound(f"No such container: {ref}")
        return {"id": row["id"], "name": row["name"], "state": row["state"],
                "host_config": json.loads(row["host_config_json"])}

    def _publish(self, action: str, net: Network, **attrs: str) -> None:
        self.events.publish("network", action, net.id, {"name": net.name, "type": net.driver,
                                                        **attrs})  # fmt: skip

    # ------------------------------------------------------------------ networks

    def create(self, name: str, *, driver: str = "bridge", subnet: str = "", gateway: str = "",
               ip_range: str = "", internal: bool = False, attachable: bool = False,
               options: Mapping[str, str] | None = None, labels: Mapping[str, str] | None = None,
               ipam_config: Mapping[str, Any] | None = None, enable_ipv6: bool = False) -> str:
        """docker network create; the new network's id. Conflict when the name is taken,
        InvalidArgument for bad options or a subnet overlapping another network's."""
        if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
            raise InvalidArgument(f"network name {name!r} is not valid: [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        driver = driver or "bridge"
        if name in PREDEFINED:
            raise Forbidden(f"{name} is a pre-defined network and cannot be created")
        if driver != "bridge":
            raise InvalidArgument(f"network driver {driver!r} is not supported here (bridge); "
                                  "host and none are the predefined networks")  # fmt: skip
        if enable_ipv6:
            raise InvalidArgument("IPv6 networks are not supported")
        opts = {str(k): str(v) for k, v in (options or {}).items()}
        bridge = opts.get(OPT_BRIDGE_NAME, "")
        if bridge and not _IFNAME.match(bridge):
            raise InvalidArgument(f"{OPT_BRIDGE_NAME}: {bridge!r} is not an interface name")
        mtu = 0
        if opts.get(OPT_MTU):
            try:
                mtu = int(opts[OPT_MTU])
            except ValueError:
                raise InvalidArgument(f"{OPT_MTU}: {opts[OPT_MTU]!r} is not a number") from None
            if not 68 <= mtu <= 65535:
                raise InvalidArgument(f"{OPT_MTU}: {mtu} is out of 68..65535")
        if self.db.query_one("SELECT 1 FROM networks WHERE name = ?", (name,)) is not None:
            raise Conflict(f"network with name {name} already exists")
        nid = secrets.token_hex(32)
        bridge = bridge or f"br-{nid[:12]}"
        with self._lock:
            taken = self._taken_subnets()
            if subnet:
                net, gw, rng = ipam.check_config(subnet, gateway, ip_range)
                for other_name, other in self._network_subnets():
                    if net.overlaps(other):
                        raise Forbidden(f"Pool overlaps with other one on this address space: "
                                        f"{net} overlaps the network {other_name} ({other})")
            else:
                if gateway or ip_range:
                    raise InvalidArgument("gateway and ip-range need a subnet")
                net = ipam.pick_subnet(self.pools, taken)
                _, gw, rng = ipam.check_config(str(net))
            if self.db.query_one("SELECT 1 FROM networks WHERE bridge = ?", (bridge,)):
                raise Conflict(f"bridge {bridge} is used by another network")
            given_ipam = dict(ipam_config or {})
            self.db.execute(
                "INSERT INTO networks (id, name, driver, created, bridge, subnet, gateway, "
                "ip_range, internal, attachable, mtu, options_json, labels_json, ipam_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (nid, name, driver, _now(), bridge, str(net), str(gw), str(rng or ""),
                 int(internal), int(attachable), mtu, json.dumps(opts),
                 json.dumps(dict(labels or {})), json.dumps(given_ipam)))  # fmt: skip
            n = self._net_row(nid)
            assert n is not None
            try:
                self._bring_up(n)
            except BaseException:
                self.db.execute("DELETE FROM networks WHERE id = ?", (nid,))
                raise
        self._publish("create", n)
        return nid

    def _network_subnets(self) -> list[tuple[str, ipam.IPv4Network]]:
        out = []
        for r in self.db.query("SELECT name, subnet FROM networks WHERE subnet != ''"):
            out.append((str(r["name"]), ipam.IPv4Network(r["subnet"])))
        return out

    def _taken_subnets(self) -> list[ipam.IPv4Network]:
        ours = [n for _, n in self._network_subnets()]
        return ours + self.links.host_networks()

    def remove(self, ref: str) -> None:
        """docker network rm: Forbidden for a predefined network or while a running
        container is attached; a stopped container's endpoint on it goes with it."""
        n = self.get(ref)
        if n.predefined:
            raise Forbidden(f"{n.name} is a pre-defined network and cannot be removed")
        with self._lock:
            active = self.db.query(
                "SELECT c.name FROM endpoints e JOIN containers c ON c.id = e.container_id "
                "WHERE e.network_id = ? AND c.state IN ('running', 'paused', 'restarting')",
                (n.id,))  # fmt: skip
            if active:
                raise Forbidden(f"error while removing network: network {n.name} id {n.id} has "
                                f"active endpoints ({', '.join(r['name'] for r in active)})")
            self.db.execute("DELETE FROM networks WHERE id = ?", (n.id,))
            self._bring_down(n)
        self._publish("destroy", n)

    def prune(self, filters: Mapping[str, Any] | None = None) -> builtins.list[str]:
        """docker network prune: remove user networks no container uses; their names."""
        flt = _filter_values(filters, ("until", "label", "label!"))
        out = []
        for n in self._all():
            if n.predefined or self._endpoints(network=n.id):
                continue
            if not _match_labels(n.labels, flt.get("label", []), flt.get("label!", [])):
                continue
            if "until" in flt and not _before(n.created, flt["until"]):
                continue
            try:
                self.remove(n.id)
            except PyrtError:
                continue
            out.append(n.name)
        return out

    def _all(self) -> builtins.list[Network]:
        return [Network.from_row(r) for r in self.db.query(
            "SELECT * FROM networks ORDER BY predefined DESC, created")]  # fmt: skip

    def inspect(self, ref: str) -> dict[str, Any]:
        return self._document(self.get(ref), containers=True)

    def list(self, filters: Mapping[str, Any] | None = None) -> builtins.list[dict[str, Any]]:
        """docker network ls (GET /networks): filters driver, id, label, name, scope, type
        (custom|builtin), dangling."""
        flt = _filter_values(filters, _LIST_FILTERS)
        out = []
        for n in self._all():
            if "driver" in flt and n.driver not in flt["driver"]:
                continue
            if "id" in flt and not any(n.id.startswith(v) for v in flt["id"]):
                continue
            if "name" in flt and not any(v in n.name for v in flt["name"]):
                continue
            if "scope" in flt and "local" not in flt["scope"]:
                continue
            if "type" in flt:
                kind = "builtin" if n.predefined else "custom"
                for v in flt["type"]:
                    if v not in ("custom", "builtin"):
                        raise InvalidArgument(f"invalid filter: 'type'='{v}'")
                if kind not in flt["type"]:
                    continue
            if "label" in flt and not _match_labels(n.labels, flt["label"], []):
                continue
            if "dangling" in flt:
                want = flt["dangling"][0] in ("1", "true")
                if (not n.predefined and not self._endpoints(network=n.id)) != want:
                    continue
            out.append(self._document(n, containers=False))
        return out

    def _document(self, n: Network, containers: bool) -> dict[str, Any]:
        cfg = []
        if n.subnet:
            c = {"Subnet": n.subnet, "Gateway": n.gateway}
            if n.ip_range:
                c["IPRange"] = n.ip_range
            cfg.append(c)
        doc: dict[str, Any] = {
            "Name": n.name, "Id": n.id, "Created": n.created, "Scope": "local",
            "Driver": n.driver, "EnableIPv6": False,
            "IPAM": {"Driver": str(n.ipam.get("Driver") or "default"),
                     "Options": dict(n.ipam.get("Options") or {}), "Config": cfg},
            "Internal": n.internal, "Attachable": n.attachable, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {},
            "Options": dict(n.options), "Labels": dict(n.labels),
        }  # fmt: skip
        if containers:
            rows = self.db.query(
                "SELECT e.*, c.name AS cname FROM endpoints e JOIN containers c ON "
                "c.id = e.container_id WHERE e.network_id = ? AND e.ip_address != '' "
                "ORDER BY e.container_id", (n.id,))  # fmt: skip
            prefix = n.subnet.rsplit("/", 1)[-1] if n.subnet else ""
            for r in rows:
                doc["Containers"][r["container_id"]] = {
                    "Name": r["cname"], "EndpointID": r["endpoint_id"],
                    "MacAddress": r["mac_address"],
                    "IPv4Address": f"{r['ip_address']}/{prefix}", "IPv6Address": "",
                }  # fmt: skip
        return doc

    # ------------------------------------------------------------------ kernel state

    def _bring_up(self, n: Network) -> None:
        """The network's bridge and rules (idempotent). Call with the lock held."""
        if n.driver != "bridge" or n.id in self._up:
            return
        if n.predefined and self._needs_new_subnet(n):
            net = ipam.pick_subnet(self.pools, [s for name, s in self._network_subnets()
                                                if name != n.name] + self.links.host_networks())
            n.subnet, n.gateway = str(net), str(net.network_address + 1)
            self.db.execute("UPDATE networks SET subnet = ?, gateway = ? WHERE id = ?",
                            (n.subnet, n.gateway, n.id))  # fmt: skip
        prefix = int(n.subnet.rsplit("/", 1)[1])
        self.links.ensure_bridge(n.bridge, n.gateway, prefix, n.mtu, self.owner)
        self._up.add(n.id)
        try:
            self._sync_firewall()
        except BaseException:
            self._up.discard(n.id)
            with contextlib.suppress(PyrtError):
                self.links.delete_bridge(n.bridge)
            raise

    def _needs_new_subnet(self, n: Network) -> bool:
        """The default bridge picks its subnet when it first comes up, and again when the
        host now routes its old one elsewhere (and no container holds an address in it)."""
        if not n.subnet:
            return True
        if any(e.ip_address for e in self._endpoints(network=n.id)):
            return False
        mine = ipam.IPv4Network(n.subnet)
        own = {li.name for li in self.links.links()}
        if n.bridge in own:
            return False
        return any(mine.overlaps(h) for h in self.links.host_networks())

    def _bring_down(self, n: Network) -> None:
        if n.driver != "bridge":
            return
        self._up.discard(n.id)
        self._sync_firewall()
        self.links.delete_bridge(n.bridge)

    def _sync_firewall(self) -> None:
        """The whole table from what is up and what is published: one batch."""
        nets = [n for n in (self._net_row(i) for i in sorted(self._up)) if n is not None]
        bridges = [BridgeRules(n.bridge, n.subnet, n.internal) for n in nets]
        if not bridges:
            self.firewall.delete()
            return
        self.firewall.sync(bridges, self._port_rules())

    def _port_rules(self, cid: str | None = None) -> builtins.list[PortRule]:
        sql = ("SELECT p.*, e.ip_address FROM published_ports p JOIN endpoints e ON "
               "e.container_id = p.container_id WHERE e.ip_address != '' AND e.position = "
               "(SELECT MIN(position) FROM endpoints e2 WHERE e2.container_id = p.container_id "
               "AND e2.ip_address != '')")  # fmt: skip
        rows = self.db.query(sql + (" AND p.container_id = ?" if cid else ""),
                             (cid,) if cid else ())  # fmt: skip
        return [PortRule(r["host_ip"], int(r["host_port"]), r["proto"], r["ip_address"],
                         int(r["ctr_port"])) for r in rows]  # fmt: skip

    # ------------------------------------------------------------------ containers

    def network_mode(self, mode: str) -> str:
        """HostConfig.NetworkMode as stored: "" and "default" are "bridge"."""
        return "bridge" if mode in ("", "default") else mode

    def netns_path(self, cid: str) -> str:
        return str(self.netns_dir / cid)

    def prepare(self, cid: str, host: HostConfig,
                networking: Mapping[str, Any] | None = None) -> dict[str, str]:
        """At container create: its endpoints from NetworkMode and NetworkingConfig; the
        namespace_paths for its spec: {"network": path} for container:<id> mode, else {}
        (a new namespace from the runtime's clone, or host mode's none)."""
        mode = self.network_mode(host.NetworkMode)
        eps = (networking or {}).get("EndpointsConfig") or {}
        if not isinstance(eps, Mapping):
            raise InvalidArgument("NetworkingConfig.EndpointsConfig: must be an object")
        if mode == "host":
            return {}
        if mode.startswith("container:"):
            other = self._container(mode.split(":", 1)[1])
            if other["id"] == cid:
                raise InvalidArgument("cannot join the network namespace of the container "
                                      "itself")  # fmt: skip
            other_mode = self.network_mode(other["host_config"].get("NetworkMode") or "")
            if other_mode == "host" or other_mode.startswith("container:"):
                raise InvalidArgument(f"cannot join the network of container {other['name']}: "
                                      f"it is in {other_mode} mode")  # fmt: skip
            if host.PortBindings or host.PublishAllPorts:
                raise InvalidArgument("conflicting options: port publishing and the container "
                                      "type network mode")  # fmt: skip
            return {"network": self.netns_path(other["id"])}
        if mode == "none":
            return {}  # a new namespace in the runtime's clone (see the module docstring)
        primary = self.get(mode)
        if primary.driver == "host" or primary.driver == "null":
            raise InvalidArgument(f"network mode {mode!r}: use --network {primary.name}")
        wanted: list[tuple[Network, Mapping[str, Any]]] = []
        seen: set[str] = set()
        first_cfg = eps.get(mode) or eps.get(primary.name) or (
            eps.get("default") if primary.name == "bridge" else None) or {}  # fmt: skip
        wanted.append((primary, first_cfg))
        seen.add(primary.id)
        for key, cfg in eps.items():
            net = self.get("bridge" if key == "default" else key)
            if net.id in seen:
                continue
            if net.driver != "bridge":
                raise InvalidArgument(f"container cannot be connected to network {net.name} "
                                      f"and to {primary.name}")  # fmt: skip
            seen.add(net.id)
            wanted.append((net, cfg or {}))
        for pos, (net, cfg) in enumerate(wanted):
            # not synced: the create's last write, synced (but for --rm, whose rows
            # reconcile discards after a crash), carries them: the WAL is sequential
            self._insert_endpoint(cid, net, cfg, pos, sync=False)
        return {}  # the runtime's new namespace: its veths come between create and start

    def _insert_endpoint(self, cid: str, net: Network, cfg: Mapping[str, Any], pos: int,
                         sync: bool = True) -> None:
        if not isinstance(cfg, Mapping):
            raise InvalidArgument(f"EndpointsConfig[{net.name}]: must be an object")
        aliases = [str(a) for a in (cfg.get("Aliases") or [])]
        ipam_cfg = cfg.get("IPAMConfig") or {}
        ip = str(ipam_cfg.get("IPv4Address") or "") if isinstance(ipam_cfg, Mapping) else ""
        if net.predefined and aliases:
            raise InvalidArgument("network-scoped alias is supported only for containers in "
                                  "user defined networks")  # fmt: skip
        if ip:
            if net.predefined:
                raise InvalidArgument("user specified IP address is supported on user defined "
                                      "networks only")  # fmt: skip
            sub = ipam.IPv4Network(net.subnet)
            if ipam.IPv4Address(_check_ip(ip)) not in sub:
                raise InvalidArgument(f"user specified IP address {ip} is not in the subnet "
                                      f"{sub} of the network {net.name}")  # fmt: skip
        used = {e.ifname for e in self._endpoints(container=cid)}
        n = 0
        while f"eth{n}" in used:
            n += 1
        try:
            self.db.execute(
                "INSERT INTO endpoints (container_id, network_id, endpoint_id, position, "
                "aliases_json, requested_ip, ifname, host_ifname) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (cid, net.id, secrets.token_hex(32), pos, json.dumps(aliases), ip, f"eth{n}",
                 host_ifname(cid, net.id)), sync=sync)  # fmt: skip
        except Conflict:
            raise Forbidden(f"endpoint with name {cid[:12]} already exists in network "
                            f"{net.name}") from None  # fmt: skip

    # -- start / stop ------------------------------------------------------------------

    def setup(self, rec: ContainerRecord, etc_dir: Path) -> Callable[[int], None]:
        """Before the container's process exists: its addresses and host ports (what can be
        refused: an address or a port in use); the port rules and etc files are made
        meanwhile on a thread of the service, overlapping the runtime's create. Returns
        `ready(pid)`, to call between the runtime's create and start with the container's
        pid: the veths go into the network namespace its clone made (/proc/<pid>/ns/net:
        the process waits on its exec fifo meanwhile), then the DNS. On failure (here or in
        ready) everything made is undone (teardown) and the error raised."""
        mode = self.network_mode(rec.host_config.NetworkMode)
        if mode == "host":
            return _nothing
        if mode.startswith("container:"):
            other = self._container(mode.split(":", 1)[1])
            if other["state"] not in ("running", "paused"):
                raise Conflict(f"cannot join network namespace of a non running container: "
                               f"container {other['id']} is {other['state']}")
            self.pin(other["id"])
            return _nothing
        path = self.netns_path(rec.id)
        # a spec made before the runtime made these namespaces joins the pinned path: that
        # one is made here, before the create, as it was
        joins_path = path in rec.spec_json
        if os.path.exists(path) or joins_path:  # (a pin an engine killed meanwhile left)
            with contextlib.suppress(PyrtError):
                self.links.delete_netns(path)
        if mode == "none" and not joins_path:
            return _nothing
        if mode != "none":
            self.get(mode)  # NotFound: removed while the container was stopped (as Docker)
        try:
            if joins_path:
                self.links.create_netns(path)
            if mode == "none":
                return _nothing
            plan: list[tuple[Network, Endpoint, bool]] = []
            have_gateway = False
            for ep in self._endpoints(container=rec.id):
                n = self._net_row(ep.network_id)
                if n is None:
                    raise NotFound(f"network {ep.network_id} not found (removed while the "
                                   f"container {rec.name} was stopped)")  # fmt: skip
                want = not (n.internal or have_gateway)
                self._address(rec.id, n, ep, sync=False)  # (see _address)
                plan.append((n, ep, want))
                have_gateway = have_gateway or want
            self._hold_ports(rec)
            fut = self._pool.submit(self._host_side, rec, etc_dir)
            self._pending[rec.id] = fut
        except BaseException:
            self.teardown(rec.id)
            raise

        def ready(pid: int) -> None:
            try:
                fut.result()
                netns = path if joins_path else self._new_netns(pid, rec.id)
                for n, ep, default_route in plan:
                    self._link(netns, n, ep, default_route)
                if any(n.is_user for n, _, _ in plan):
                    self._dns_add(rec.id, netns)
                else:  # (no user network: no embedded DNS, and no queries to learn that)
                    self._dns_remove(rec.id)
            except BaseException:
                self.teardown(rec.id)
                raise
            finally:
                self._pending.pop(rec.id, None)

        return ready

    def pin(self, cid: str) -> str:
        """The path of a running container's network namespace (netns_path), bound there
        first from its process (the runtime made the namespace). SystemError_ when the
        container's process is gone."""
        path = self.netns_path(cid)
        with self._pin_lock:
            if os.path.exists(path):
                return path
            pid, fd = self._open_process_netns(cid)
            try:
                self.links.pin_netns(path, fd)
            finally:
                os.close(fd)
        return path

    def _new_netns(self, pid: int, cid: str) -> str:
        """process_netns(pid) of container `cid`'s new process, checked to be a namespace
        of its own: never the engine's, where its eth0, address and default route would
        land if a runtime had not made it one."""
        path = process_netns(pid)
        try:
            theirs, ours = os.stat(path), os.stat("/proc/self/ns/net")
        except OSError as e:
            raise SystemError_(f"network namespace of container {cid}: process {pid}: "
                               f"{e.strerror}", e.errno) from None  # fmt: skip
        if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
            raise SystemError_(f"container {cid}: its process {pid} is in the engine's "
                               "network namespace, not a new one: no network set up there")
        return path

    def _open_process_netns(self, cid: str) -> tuple[int, int]:
        """(pid, an fd of its network namespace) of running container `cid`'s process.
        SystemError_ when the process is gone."""
        row = self.db.query_one("SELECT pid FROM containers WHERE id = ?", (cid,))
        pid = int(row["pid"]) if row is not None else 0
        try:
            fd = os.open(process_netns(pid), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise SystemError_(f"network namespace of container {cid}: process {pid}: "
                               f"{e.strerror}", e.errno) from None  # fmt: skip
        # the namespace is the container's only if the pid still is (not reused by another
        # process since the row was read)
        if not _runs_in(pid, cid):
            os.close(fd)
            raise SystemError_(f"network namespace of container {cid}: its process {pid} is "
                               "gone")  # fmt: skip
        return pid, fd

    def _netns_of(self, cid: str) -> str:
        """A path to running container `cid`'s network namespace: its pin when it has one,
        else its process's (checked to be the container's), which a bridge container's is
        after a start. SystemError_ when the process is gone."""
        path = self.netns_path(cid)
        if os.path.exists(path):
            return path
        pid, fd = self._open_process_netns(cid)
        os.close(fd)
        return process_netns(pid)

    def _host_side(self, rec: ContainerRecord, etc_dir: Path) -> None:
        """What a start needs outside the container's namespace: its port rules and etc
        files (on the service's pool while the runtime creates the container)."""
        rules = self._port_rules(rec.id)
        if rules:
            self.firewall.add_ports(rules)
        self._write_etc(rec, etc_dir)

    def _address(self, cid: str, n: Network, ep: Endpoint, sync: bool = True) -> None:
        """The endpoint's address (and MAC), recorded. A start need not sync it: its
        "running" row (synced but for --rm) carries it, and after a power loss, when
        nothing runs, reconcile releases the addresses of containers not running."""
        with self._lock:
            self._bring_up(n)  # (the default bridge may choose its subnet only now)
            fresh = self._net_row(n.id)  # (or another start chose it since n was read)
            if fresh is not None:
                n.subnet, n.gateway, n.ip_range = fresh.subnet, fresh.gateway, fresh.ip_range
            used = [str(r["ip_address"]) for r in self.db.query(
                "SELECT ip_address FROM endpoints WHERE network_id = ? AND ip_address != ''",
                (n.id,))]  # fmt: skip
            net, gw, rng = ipam.check_config(n.subnet, n.gateway, n.ip_range)
            ip = str(ipam.allocate(net, gw, rng, used, ep.requested_ip))
            mac = ipam.mac_for(ip)
            self.db.execute("UPDATE endpoints SET ip_address = ?, mac_address = ? WHERE "
                            "container_id = ? AND network_id = ?", (ip, mac, cid, n.id),
                            sync=sync)  # fmt: skip
        ep.ip_address, ep.mac_address = ip, mac

    def _link(self, netns: str, n: Network, ep: Endpoint, default_route: bool) -> None:
        """The endpoint's veth (its inner end in the namespace at path `netns`), address and
        (default_route) the default route through it."""
        self.links.add_endpoint(EndpointLink(
            netns=netns, host_ifname=ep.host_ifname, ifname=ep.ifname,
            bridge=n.bridge, mac=ep.mac_address, address=ep.ip_address,
            prefixlen=int(n.subnet.rsplit("/", 1)[1]),
            gateway=n.gateway if default_route else None, mtu=n.mtu,
            alias=self.owner))  # fmt: skip

    def _hold_ports(self, rec: ContainerRecord) -> None:
        """Reserve the container's published ports on the host (Conflict when one is in
        use) and record them; the DNAT rules follow them in _finish_setup."""
        from pyrt.networks.ports import requested_ports, reserve

        host = rec.host_config
        exposed = list(rec.config.ExposedPorts) + self._image_exposed(rec.image_id)
        wanted = requested_ports(host.PortBindings, exposed, host.PublishAllPorts)
        if not wanted:
            return
        if not any(e.ip_address and not self._internal(e.network_id)
                   for e in self._endpoints(container=rec.id)):  # fmt: skip
            return  # Docker: an internal network publishes nothing
        held = reserve(wanted)
        self._held[rec.id] = held
        # not synced, as the addresses (_address): the "running" row carries them
        self.db.execute("DELETE FROM published_ports WHERE container_id = ?", (rec.id,),
                        sync=False)  # fmt: skip
        for h in held:
            self.db.execute("INSERT OR IGNORE INTO published_ports (container_id, host_ip, "
                            "host_port, proto, ctr_port) VALUES (?, ?, ?, ?, ?)",
                            (rec.id, h.host_ip, h.host_port, h.proto, h.ctr_port),
                            sync=False)  # fmt: skip

    def _image_exposed(self, image_id: str) -> builtins.list[str]:
        row = self.db.query_one("SELECT config_json FROM images WHERE id = ?", (image_id,))
        if row is None:
            return []
        cfg = json.loads(row["config_json"]).get("config") or {}
        return [str(k) for k in (cfg.get("ExposedPorts") or {})]

    def _internal(self, nid: str) -> bool:
        n = self._net_row(nid)
        return n is None or n.internal

    def teardown(self, cid: str) -> None:
        """The container stopped (or is going): its links, ports, names and namespace go
        and its addresses are released. Never raises; safe to repeat."""
        fut = self._pending.pop(cid, None)
        if fut is not None:  # a setup still under way finishes first
            with contextlib.suppress(BaseException):
                fut.result()
        try:
            # the namespace goes below, and its redirect table with it: deleting the table
            # first would only wait (~12 ms) for the kernel to free it
            self._dns_remove(cid, drop_redirect=False)
            rules = self._port_rules(cid)
            for h in self._held.pop(cid, []):
                h.close()
            if rules:
                with contextlib.suppress(PyrtError):
                    self.firewall.remove_ports(rules)
            # no write when there is nothing to release (teardown runs at the exit and
            # again at the removal, and --network none has no address); none synced: after
            # a power loss reconcile releases what containers not running held (as the
            # exit's row is not synced either)
            if self.db.query_one("SELECT 1 FROM published_ports WHERE container_id = ? LIMIT 1",
                                 (cid,)) is not None:  # fmt: skip
                self.db.execute("DELETE FROM published_ports WHERE container_id = ?", (cid,),
                                sync=False)  # fmt: skip
            eps = self._endpoints(container=cid)
            veths = [ep.host_ifname for ep in eps if ep.ip_address]
            if any(ep.ip_address or ep.mac_address for ep in eps):
                self.db.execute("UPDATE endpoints SET ip_address = '', mac_address = '' WHERE "
                                "container_id = ?", (cid,), sync=False)  # fmt: skip
            # the veths go in the background (the kernel takes its time over one); the
            # same names made again wait for that (LinkDriver.release)
            self.links.release(veths)
            if os.path.exists(self.netns_path(cid)):
                self.links.delete_netns(self.netns_path(cid))
        except Exception as e:  # the container is gone either way; say what stayed
            log.warning("network teardown of container %s: %s", cid, e)

    # -- connect / disconnect -----------------------------------------------------------

    def connect(self, ref: str, container: str, *, aliases: Sequence[str] = (), ip: str = "",
                endpoint_config: Mapping[str, Any] | None = None) -> None:
        """docker network connect: a running container gets the interface at once."""
        n = self.get(ref)
        c = self._container(container)
        mode = self.network_mode(c["host_config"].get("NetworkMode") or "")
        if n.driver != "bridge":
            raise Forbidden("container cannot be disconnected from host network or connected "
                            "to host network" if n.driver == "host" else
                            f"container cannot be connected to the {n.name} network")
        if mode in ("host", "none") or mode.startswith("container:"):
            raise Forbidden(f"container sharing network namespace with another container or "
                            f"host cannot be connected to any other network (mode {mode})")
        cfg = dict(endpoint_config or {})
        if aliases:
            cfg["Aliases"] = list(cfg.get("Aliases") or []) + list(aliases)
        if ip:
            cfg["IPAMConfig"] = {**(cfg.get("IPAMConfig") or {}), "IPv4Address": ip}
        cid = c["id"]
        if any(e.network_id == n.id for e in self._endpoints(container=cid)):
            raise Forbidden(f"endpoint with name {c['name']} already exists in network {n.name}")
        pos = max((e.position for e in self._endpoints(container=cid)), default=-1) + 1
        self._insert_endpoint(cid, n, cfg, pos)
        if c["state"] in ("running", "paused"):
            ep = next(e for e in self._endpoints(container=cid) if e.network_id == n.id)
            has_gw = any(e.ip_address and not self._internal(e.network_id)
                         for e in self._endpoints(container=cid))  # fmt: skip
            try:
                netns = self._netns_of(cid)
                self._address(cid, n, ep)
                self._link(netns, n, ep, not (n.internal or has_gw))
            except BaseException:
                with contextlib.suppress(PyrtError):
                    self.links.delete_link(ep.host_ifname)
                self.db.execute("DELETE FROM endpoints WHERE container_id = ? AND "
                                "network_id = ?", (cid, n.id))  # fmt: skip
                raise
            self._refresh_etc(cid)
            self._dns_add(cid)
        self._publish("connect", n, container=cid)

    def disconnect(self, ref: str, container: str, force: bool = False) -> None:
        n = self.get(ref)
        try:
            c = self._container(container)
        except NotFound:
            if not force:
                raise
            return
        cid = c["id"]
        eps = [e for e in self._endpoints(container=cid) if e.network_id == n.id]
        if not eps:
            if n.driver == "host":
                raise Forbidden("container cannot be disconnected from host network or "
                                "connected to host network")  # fmt: skip
            raise Forbidden(f"container {cid} is not connected to network {n.name}")
        ep = eps[0]
        if ep.ip_address:
            with contextlib.suppress(PyrtError):
                self.links.delete_link(ep.host_ifname)
        self.db.execute("DELETE FROM endpoints WHERE container_id = ? AND network_id = ?",
                        (cid, n.id))  # fmt: skip
        if c["state"] in ("running", "paused"):
            self._refresh_etc(cid)
            self._dns_add(cid)
        self._publish("disconnect", n, container=cid)

    # -- etc files and DNS ---------------------------------------------------------------

    def _etc_dir(self, cid: str) -> Path | None:
        row = self.db.query_one("SELECT spec_json FROM containers WHERE id = ?", (cid,))
        if row is None:
            return None
        for m in json.loads(row["spec_json"]).get("mounts") or []:
            if m.get("destination") == "/etc/hosts":
                return Path(m["source"]).parent
        return None

    def _refresh_etc(self, cid: str) -> None:
        from pyrt.containers.record import ContainerRecord

        row = self.db.query_one("SELECT * FROM containers WHERE id = ?", (cid,))
        etc = self._etc_dir(cid)
        if row is not None and etc is not None:
            self._write_etc(ContainerRecord.from_row(row), etc)

    def _write_etc(self, rec: ContainerRecord, etc_dir: Path) -> None:
        """/etc/hosts with the container's addresses; resolv.conf pointing at the embedded
        DNS on user networks. Written in place: the files are bind-mounted."""
        from pyrt.containers.etcfiles import host_resolv_conf, hosts_content, resolv_conf_content

        cfg, host = rec.config, rec.host_config
        eps = [e for e in self._endpoints(container=rec.id) if e.ip_address]
        user = any(not n.predefined for n in (self._net_row(e.network_id) for e in eps) if n)
        gw = next((n.gateway for n in (self._net_row(e.network_id) for e in eps)
                   if n is not None and not n.internal), None)  # fmt: skip
        hosts = hosts_content(cfg.Hostname or rec.id[:12], domainname=cfg.Domainname,
                              ips=[e.ip_address for e in eps[:1]],
                              extra_hosts=host.ExtraHosts, host_gateway=gw)  # fmt: skip
        _write_in_place(etc_dir / "hosts", hosts)
        if user:
            options = list(host.DnsOptions) or ["ndots:0"]
            resolv = resolv_conf_content(host_resolv_conf(), dns=[DNS_ADDRESS],
                                         dns_search=host.DnsSearch, dns_options=options)
        else:
            resolv = resolv_conf_content(host_resolv_conf(), dns=host.Dns or self.default_dns,
                                         dns_search=host.DnsSearch,
                                         dns_options=host.DnsOptions)  # fmt: skip
        _write_in_place(etc_dir / "resolv.conf", resolv)

    def _dns_server(self) -> Any:
        if self._dns is None:
            factory = self._dns_factory
            if factory is None:
                from pyrt.networks.dns import EmbeddedDNS

                factory = EmbeddedDNS
            self._dns = factory(self.resolve_name, self.dns_upstreams,
                                reverse=self.resolve_address)
        return self._dns

    def _dns_add(self, cid: str, netns: str = "") -> None:
        """Register (or update) the container with the embedded DNS: while it is on a user
        network. Its own --dns servers are its upstreams; on internal networks only, it
        gets no forwarding at all (names not ours: SERVFAIL). `netns`: the path of its
        namespace, when the caller has it (found otherwise: _netns_of)."""
        nets = [n for n in (self._net_row(e.network_id) for e in self._endpoints(container=cid)
                            if e.ip_address) if n is not None and n.is_user]  # fmt: skip
        if not nets:
            self._dns_remove(cid)
            return
        row = self.db.query_one("SELECT host_config_json FROM containers WHERE id = ?", (cid,))
        own = json.loads(row["host_config_json"]).get("Dns") or [] if row is not None else []
        self._dns_server().add_container(
            cid, netns or self._netns_of(cid), upstreams=[(str(d), 53) for d in own] or None,
            forward=any(not n.internal for n in nets))  # fmt: skip
        self._dns_members.add(cid)

    def _dns_remove(self, cid: str, *, drop_redirect: bool = True) -> None:
        if cid in self._dns_members:
            self._dns_members.discard(cid)
            with contextlib.suppress(Exception):
                self._dns.remove_container(cid, drop_redirect=drop_redirect)

    def resolve_name(self, cid: str, name: str) -> builtins.list[str] | None:
        """What the embedded DNS answers container `cid` for `name`: the addresses of the
        containers on its user networks called so (name, alias, 12-hex short id or id)."""
        name = name.lower().rstrip(".")
        rows = self.db.query(
            "SELECT e2.ip_address, e2.aliases_json, c.name, c.id, n.name AS nname FROM "
            "endpoints e1 JOIN endpoints e2 ON e2.network_id = e1.network_id JOIN networks n "
            "ON n.id = e1.network_id JOIN containers c ON c.id = e2.container_id WHERE "
            "e1.container_id = ? AND e1.ip_address != '' AND e2.ip_address != '' AND "
            "n.predefined = 0 ORDER BY e2.position", (cid,))  # fmt: skip
        out: list[str] = []
        for r in rows:
            names = {str(r["name"]).lower(), str(r["id"])[:12], str(r["id"])}
            names |= {a.lower() for a in json.loads(r["aliases_json"])}
            names |= {f"{x}.{str(r['nname']).lower()}" for x in list(names)}
            if name in names and r["ip_address"] not in out:
                out.append(str(r["ip_address"]))
        return out or None

    def resolve_address(self, cid: str, address: str) -> builtins.list[str] | None:
        """PTR answers: "<name>.<network>" of a container sharing a user network with
        `cid` that has `address`."""
        rows = self.db.query(
            "SELECT c.name, n.name AS nname FROM endpoints e1 JOIN endpoints e2 ON "
            "e2.network_id = e1.network_id JOIN networks n ON n.id = e1.network_id JOIN "
            "containers c ON c.id = e2.container_id WHERE e1.container_id = ? AND "
            "e1.ip_address != '' AND e2.ip_address = ? AND n.predefined = 0",
            (cid, address))  # fmt: skip
        return [f"{r['name']}.{r['nname']}" for r in rows] or None

    # -- inspect ------------------------------------------------------------------------

    def settings(self, rec: ContainerRecord, sandbox: bool = True) -> dict[str, Any]:
        """NetworkSettings of a container's inspect; without `sandbox` no SandboxKey (which
        pins a none container's namespace)."""
        running = rec.state in ("running", "paused")
        nets: dict[str, Any] = {}
        top = {"IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "MacAddress": "",
               "EndpointID": ""}  # fmt: skip
        for ep in self._endpoints(container=rec.id):
            n = self._net_row(ep.network_id)
            if n is None:
                continue
            prefix = int(n.subnet.rsplit("/", 1)[1]) if n.subnet and ep.ip_address else 0
            d = {
                # [] where the API document says array (dockerd sends null)
                "IPAMConfig": {"IPv4Address": ep.requested_ip} if ep.requested_ip else None,
                "Links": [], "Aliases": list(ep.aliases),
                "MacAddress": ep.mac_address, "DriverOpts": None, "NetworkID": n.id,
                "EndpointID": ep.endpoint_id if ep.ip_address else "",
                "Gateway": n.gateway if ep.ip_address and not n.internal else "",
                "IPAddress": ep.ip_address, "IPPrefixLen": prefix, "IPv6Gateway": "",
                "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "DNSNames": ([rec.name, rec.id[:12], *ep.aliases] if n.is_user else []),
            }  # fmt: skip
            nets[n.name] = d
            if n.name == "bridge" and ep.ip_address:
                top = {k: d[k] for k in top}
        mode = self.network_mode(rec.host_config.NetworkMode)
        if mode in ("host", "none"):
            n = self.get(mode)
            nets[mode] = {"IPAMConfig": None, "Links": [], "Aliases": [], "MacAddress": "",
                          "DriverOpts": None, "NetworkID": n.id, "EndpointID": "",
                          "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                          "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                          "DNSNames": []}  # fmt: skip
        ports: dict[str, Any] = {}
        exposed = list(rec.config.ExposedPorts) + list(rec.host_config.PortBindings)
        for key in exposed:
            k = key if "/" in key else f"{key}/tcp"
            ports.setdefault(k, None)
        if running:
            for r in self.db.query("SELECT * FROM published_ports WHERE container_id = ? "
                                   "ORDER BY rowid", (rec.id,)):  # fmt: skip
                k = f"{r['ctr_port']}/{r['proto']}"
                lst = ports.get(k) or []
                lst.append({"HostIp": r["host_ip"] or "0.0.0.0", "HostPort": str(r["host_port"])})
                ports[k] = lst
        key = ""
        if sandbox and running and mode != "host" and not mode.startswith("container:"):
            with contextlib.suppress(PyrtError):  # (gone meanwhile: no key, as stopped)
                key = self.pin(rec.id)
        return {"Bridge": "", "SandboxID": rec.id if key else "", "SandboxKey": key,
                "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
                "Ports": ports, "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
                "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPv6Gateway": "", **top,
                "Networks": nets}  # fmt: skip

    def summary(self, rec: ContainerRecord) -> tuple[builtins.list[dict[str, Any]],
                                                     dict[str, Any]]:
        """(Ports, NetworkSettings.Networks) of a container in docker ps."""
        s = self.settings(rec, sandbox=False)
        ports = []
        for key, binds in s["Ports"].items():
            num, _, proto = key.partition("/")
            if not binds:
                ports.append({"PrivatePort": int(num), "Type": proto})
            for b in binds or []:
                ports.append({"IP": b["HostIp"], "PrivatePort": int(num),
                              "PublicPort": int(b["HostPort"]), "Type": proto})  # fmt: skip
        return ports, s["Networks"]

    def ports(self, ref: str) -> builtins.list[dict[str, Any]]:
        """The published ports of a running container (for `pyrt port`)."""
        c = self._container(ref)
        return [{"HostIp": r["host_ip"] or "0.0.0.0", "HostPort": int(r["host_port"]),
                 "PrivatePort": int(r["ctr_port"]), "Type": r["proto"]}
                for r in self.db.query("SELECT * FROM published_ports WHERE container_id = ?",
                                       (c["id"],))]  # fmt: skip

    def in_use(self) -> dict[str, int]:
        """For /info: the number of networks."""
        row = self.db.query_one("SELECT COUNT(*) AS n FROM networks")
        return {"Networks": int(row["n"]) if row is not None else 0}

    # ------------------------------------------------------------------ engine life

    def reconcile(self) -> dict[str, builtins.list[str]]:
        """At engine start, before the containers' reconcile: keep what running containers
        need and restore it (bridges, rules, port holds, DNS); remove what is left over."""
        report: dict[str, builtins.list[str]] = {"netns": [], "links": [], "restored": []}
        live = {str(r["id"]): r for r in self.db.query(
            "SELECT id, host_config_json FROM containers WHERE state IN ('running', 'paused')")}
        nets = [n for n in self._all() if n.driver == "bridge"]
        bridges = {n.bridge: n for n in nets}
        wanted_links = {e.host_ifname for e in self._endpoints() if e.ip_address
                        and e.container_id in live}  # fmt: skip
        present = self.links.links()
        present_names = {li.name for li in present}
        for li in present:
            if li.master in bridges and li.name not in wanted_links:
                with contextlib.suppress(PyrtError):
                    self.links.delete_link(li.name)
                report["links"].append(li.name)
        # after the veths: the kernel would take those with the namespace, but later
        if self.netns_dir.is_dir():
            for entry in os.listdir(self.netns_dir):
                if entry not in live:
                    with contextlib.suppress(PyrtError, OSError):
                        self.links.delete_netns(str(self.netns_dir / entry))
                    report["netns"].append(entry)
        self.db.execute("UPDATE endpoints SET ip_address = '', mac_address = '' WHERE "
                        "container_id NOT IN (SELECT id FROM containers WHERE state IN "
                        "('running', 'paused'))")  # fmt: skip
        self.db.execute("DELETE FROM published_ports WHERE container_id NOT IN (SELECT id "
                        "FROM containers WHERE state IN ('running', 'paused'))")  # fmt: skip
        with self._lock:
            active = {e.network_id for e in self._endpoints() if e.ip_address}
            for n in nets:
                if n.id in active or (n.bridge in present_names and not n.predefined):
                    with contextlib.suppress(PyrtError):
                        prefix = int(n.subnet.rsplit("/", 1)[1])
                        self.links.ensure_bridge(n.bridge, n.gateway, prefix, n.mtu,
                                                 self.owner)  # fmt: skip
                        self._up.add(n.id)
            if self._up:
                self._sync_firewall()
            else:
                with contextlib.suppress(PyrtError):
                    self.firewall.delete()
        from pyrt.networks.ports import hold

        for cid in live:
            kept: list[HeldPort] = []
            for r in self.db.query("SELECT * FROM published_ports WHERE container_id = ?",
                                   (cid,)):  # fmt: skip
                try:
                    kept.append(hold(r["host_ip"], int(r["host_port"]), r["proto"],
                                     int(r["ctr_port"])))  # fmt: skip
                except PyrtError as e:
                    log.warning("container %s: port %s no longer held: %s", cid,
                                r["host_port"], e)  # fmt: skip
            if kept:
                self._held[cid] = kept
            with contextlib.suppress(PyrtError, OSError):
                self._dns_add(cid)
            report["restored"].append(cid)
        return report

    def close(self) -> None:
        """Engine close: running containers keep their network; what nothing running uses
        comes down (bridges, rules, the table), and the engine's own threads stop."""
        try:
            with self._lock:
                active = {e.network_id for e in self._endpoints() if e.ip_address}
                for nid in sorted(self._up - active):
                    n = self._net_row(nid)
                    self._up.discard(nid)
                    if n is not None:
                        with contextlib.suppress(PyrtError):
                            self.links.delete_bridge(n.bridge)
                with contextlib.suppress(PyrtError):
                    self._sync_firewall()
            for held in self._held.values():
                for h in held:
                    h.close()
            self._held.clear()
            if self._dns is not None:
                with contextlib.suppress(Exception):
                    self._dns.close()
                self._dns = None
        finally:
            self._pool.shutdown(wait=True)
            self.links.close()
            self.firewall.close()


def _nothing(pid: int) -> None:
    return None


def _runs_in(pid: int, cid: str) -> bool:
    """Whether process `pid` is container `cid`'s: its cgroup names the container."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
            return cid in f.read()
    except OSError:
        return False


def _check_ip(ip: str) -> str:
    try:
        ipam.IPv4Address(ip)
    except ValueError:
        raise InvalidArgument(f"invalid IPv4 address: {ip}") from None
    return ip


def _write_in_place(path: Path, content: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)


def _filter_values(filters: Mapping[str, Any] | None, allowed: Iterable[str]
                   ) -> dict[str, builtins.list[str]]:
    out: dict[str, builtins.list[str]] = {}
    allowed = tuple(allowed)
    for key, value in (filters or {}).items():
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        out[key] = [value] if isinstance(value, str) else [str(v) for v in value]
    return out


def _match_labels(labels: Mapping[str, str], want: Iterable[str], unwanted: Iterable[str]
                  ) -> bool:
    def has(spec: str) -> bool:
        k, eq, v = spec.partition("=")
        return k in labels and (not eq or labels[k] == v)

    return all(has(s) for s in want) and not any(has(s) for s in unwanted)


def _before(created: str, until: Iterable[str]) -> bool:
    from pyrt.containers.logs import parse_time_ns

    t = parse_time_ns(created) / 1e9
    for u in until:
        try:
            limit = float(u)
        except ValueError:
            limit = parse_time_ns(u) / 1e9
        if t >= limit:
            return False
    return True


__all__ = ["DNS_ADDRESS", "Endpoint", "Network", "NetworkService", "default_names",
           "host_ifname"]
