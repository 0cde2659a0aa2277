"""The network service on its fakes (pyrt.networks.fakes): records, IPAM, endpoints from
network modes, setup/teardown, published ports, names, connect/disconnect, reconcile. No
root: the kernel work is what FakeLinks and FakeFirewall record."""

from __future__ import annotations

import itertools
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyrt.containers.options import ContainerConfig, HostConfig
from pyrt.containers.record import ContainerRecord
from pyrt.errors import Conflict, Forbidden, InvalidArgument, NotFound, SystemError_
from pyrt.events import EventBus
from pyrt.metadata.db import Database
from pyrt.networks.fakes import FakeFirewall, FakeLinks
from pyrt.networks.ipam import Pool
from pyrt.networks.netlink import process_netns
from pyrt.networks.nft import PortRule
from pyrt.networks.service import NetworkService, default_names, host_ifname

IMAGE_ID = "sha256:" + "a" * 64


class FakeDNS:
    def __init__(self, resolve: Any, upstreams: Any, reverse: Any = None) -> None:
        self.resolve, self.upstreams, self.reverse = resolve, upstreams, reverse
        self.members: dict[str, dict[str, Any]] = {}
        self.removed_with: list[bool] = []

    def add_container(self, cid: str, path: str, **kw: Any) -> None:
        self.members[cid] = {"path": path, **kw}

    def remove_container(self, cid: str, *, drop_redirect: bool = True) -> None:
        self.removed_with.append(drop_redirect)
        self.members.pop(cid, None)

    def close(self) -> None:
        self.members.clear()


class World:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = Database(tmp / "metadata.db")
        self.db.execute("INSERT INTO images (id, config_json, architecture, os, added_at) "
                        "VALUES (?, ?, 'amd64', 'linux', 0)",
                        (IMAGE_ID, json.dumps({"config": {"ExposedPorts": {"8080/tcp": {}}}})))
        self.links, self.fw = FakeLinks(), FakeFirewall()
        self.dns: FakeDNS | None = None
        self._pids = itertools.count(5_000_000)  # above any pid_max: no real process
        self.svc = self.open()
        self.etc = tmp / "etc"
        self.etc.mkdir()

    def open(self) -> NetworkService:
        def factory(*a: Any, **kw: Any) -> FakeDNS:
            self.dns = FakeDNS(*a, **kw)
            return self.dns

        svc = NetworkService(db=self.db, run_root=self.tmp / "run", events=EventBus(),
                             links=self.links, firewall=self.fw,
                             pools=[Pool("10.50.0.0/16", 24)], bridge_name="pyrttest0",
                             dns_factory=factory, owner="pyrt:/test")  # fmt: skip
        # the containers' processes are the fake's (no /proc/<pid> to open): an fd that
        # stands for the namespace while the process runs
        svc._open_process_netns = self.open_process_netns  # type: ignore[method-assign]
        svc._new_netns = self.new_netns  # type: ignore[method-assign]
        return svc

    def new_netns(self, pid: int, cid: str) -> str:
        if pid not in self.links.processes:
            raise SystemError_(f"container {cid}: process {pid} is gone")
        return process_netns(pid)

    def open_process_netns(self, cid: str) -> tuple[int, int]:
        row = self.db.query_one("SELECT pid FROM containers WHERE id = ?", (cid,))
        pid = int(row["pid"]) if row is not None else 0
        if pid not in self.links.processes:
            raise SystemError_(f"container {cid}: process {pid} is gone")
        return pid, os.open(os.devnull, os.O_RDONLY)

    def pid(self, cid: str) -> int:
        return int(self.record(cid).pid)

    def container(self, name: str, host: dict[str, Any] | None = None,
                  networking: dict[str, Any] | None = None, **cfg: Any) -> ContainerRecord:
        cid = secrets.token_hex(32)
        hc = HostConfig.from_api(host or {})
        hc = HostConfig.from_api({**hc.to_api(), "NetworkMode":
                                  self.svc.network_mode(hc.NetworkMode)})
        cc = ContainerConfig.from_api({"Image": "x", **cfg})
        self.db.execute(
            "INSERT INTO containers (id, name, image_id, created, state, config_json, "
            "host_config_json) VALUES (?, ?, ?, '2026-01-01T00:00:00Z', 'created', ?, ?)",
            (cid, name, IMAGE_ID, json.dumps(cc.to_api()), json.dumps(hc.to_api())))
        ns = self.svc.prepare(cid, hc, networking)
        self.db.execute("UPDATE containers SET spec_json = ? WHERE id = ?", (json.dumps(
            {"mounts": [{"destination": "/etc/hosts", "source": str(self.etc / "hosts")}],
             "ns": ns}), cid))
        return self.record(cid)

    def record(self, cid: str) -> ContainerRecord:
        row = self.db.query_one("SELECT * FROM containers WHERE id = ?", (cid,))
        assert row is not None
        return ContainerRecord.from_row(row)

    def start(self, rec: ContainerRecord) -> ContainerRecord:
        ready = self.svc.setup(rec, self.etc)
        pid = next(self._pids)  # the runtime's create: a process in a new namespace
        self.links.processes.add(pid)
        ready(pid)  # the second half done, in that namespace
        self.db.execute("UPDATE containers SET state = 'running', pid = ? WHERE id = ?",
                        (pid, rec.id))  # fmt: skip
        return self.record(rec.id)

    def stop(self, rec: ContainerRecord) -> None:
        self.links.exit(self.pid(rec.id))
        self.db.execute("UPDATE containers SET state = 'exited' WHERE id = ?", (rec.id,))
        self.svc.teardown(rec.id)


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    yield world
    world.db.close()


def test_predefined_networks_and_names() -> None:
    assert default_names("/var/lib/pyrt") == ("pyrt0", "pyrt")
    b, t = default_names("/tmp/x")
    assert b.startswith("pyrt") and len(b) <= 15 and t.startswith("pyrt_") and b != "pyrt0"
    assert default_names("/tmp/x") == (b, t) != default_names("/tmp/y")
    assert len(host_ifname("a" * 64, "b" * 64)) <= 15


def test_create_list_inspect_remove(w: World) -> None:
    assert sorted(n["Name"] for n in w.svc.list()) == ["bridge", "host", "none"]
    nid = w.svc.create("front", labels={"a": "1"}, options={"com.docker.network.driver.mtu":
                                                            "1400"})
    doc = w.svc.inspect("front")
    assert doc["Id"] == nid and doc["IPAM"]["Config"] == [{"Subnet": "10.50.0.0/24",
                                                          "Gateway": "10.50.0.1"}]
    assert w.links.bridges[f"br-{nid[:12]}"] == ("10.50.0.1", 24, 1400, "pyrt:/test")
    assert [b.bridge for b in w.fw.bridges] == [f"br-{nid[:12]}"]
    w.svc.create("back", internal=True)
    assert w.svc.inspect("back")["IPAM"]["Config"][0]["Subnet"] == "10.50.1.0/24"
    assert [n["Name"] for n in w.svc.list({"label": ["a=1"]})] == ["front"]
    assert [n["Name"] for n in w.svc.list({"type": ["custom"], "name": ["ba"]})] == ["back"]
    assert w.svc.inspect(nid[:8])["Name"] == "front"
    with pytest.raises(Conflict):
        w.svc.create("front")
    with pytest.raises(Forbidden):
        w.svc.create("host")
    with pytest.raises(Forbidden):
        w.svc.remove("none")
    with pytest.raises(InvalidArgument):
        w.svc.list({"nope": ["1"]})
    with pytest.raises(InvalidArgument, match="gateway"):
        w.svc.create("bad", subnet="10.60.0.0/24", gateway="10.61.0.1")
    with pytest.raises(Forbidden, match="overlaps"):
        w.svc.create("dup", subnet="10.50.0.0/16")
    w.svc.remove("front")
    assert f"br-{nid[:12]}" not in w.links.bridges
    with pytest.raises(NotFound):
        w.svc.inspect("front")


def test_subnets_skip_host_routes(w: World) -> None:
    w.links.routes.append(__import__("ipaddress").IPv4Network("10.50.0.0/23"))
    w.svc.create("n")
    assert w.svc.inspect("n")["IPAM"]["Config"][0]["Subnet"] == "10.50.2.0/24"


def test_setup_allocates_and_teardown_releases(w: World) -> None:
    w.svc.create("app")
    a = w.start(w.container("a", {"NetworkMode": "app"}))
    b = w.start(w.container("b", {"NetworkMode": "app"}, networking={
        "EndpointsConfig": {"app": {"Aliases": ["bee"]}, "default": {}}}))
    eps = {e.host_ifname: e for e in w.links.endpoints.values()}
    ea = eps[host_ifname(a.id, w.svc.get("app").id)]
    assert (ea.address, ea.ifname, ea.gateway, ea.prefixlen) == ("10.50.0.2", "eth0",
                                                                 "10.50.0.1", 24)
    # in the namespace the runtime made (its process's), not one made and pinned here
    assert ea.mac == "02:42:0a:32:00:02" and ea.netns == process_netns(w.pid(a.id))
    assert not w.links.netns and not (w.tmp / "run" / "netns" / a.id).exists()
    b_eps = sorted((e.ifname, e.address, e.gateway) for e in w.links.endpoints.values()
                   if e.netns == process_netns(w.pid(b.id)))  # fmt: skip
    assert b_eps[0] == ("eth0", "10.50.0.3", "10.50.0.1") and b_eps[1][0] == "eth1"
    assert b_eps[1][2] is None  # one default route, through the first network
    assert w.svc.resolve_name(a.id, "bee") == ["10.50.0.3"]
    assert w.svc.resolve_name(a.id, "B") == ["10.50.0.3"]
    assert w.svc.resolve_name(a.id, b.id[:12]) == ["10.50.0.3"]
    assert w.svc.resolve_name(a.id, "b.app") == ["10.50.0.3"]
    assert w.svc.resolve_name(a.id, "nosuch") is None
    assert w.svc.resolve_address(a.id, "10.50.0.3") == ["b.app"]
    assert w.dns is not None and set(w.dns.members) == {a.id, b.id}
    assert w.dns.members[a.id]["path"] == process_netns(w.pid(a.id))
    assert w.dns.members[a.id]["forward"] is True
    settings = w.svc.settings(w.record(b.id))
    assert settings["Networks"]["app"]["Aliases"] == ["bee"]
    assert settings["IPAddress"] == settings["Networks"]["bridge"]["IPAddress"] != ""
    assert "nameserver 127.0.0.11" in (w.etc / "resolv.conf").read_text()
    w.stop(a)
    assert w.svc.netns_path(a.id) not in w.links.netns
    assert w.svc.resolve_name(b.id, "a") is None and a.id not in w.dns.members
    assert w.dns.removed_with == [False]  # the redirect table goes with the namespace
    c = w.start(w.container("c", {"NetworkMode": "app"}))
    assert w.svc.settings(c)["Networks"]["app"]["IPAddress"] == "10.50.0.2"  # reused


def test_a_start_that_read_the_default_bridge_before_its_subnet_was_chosen(w: World) -> None:
    a, b = w.container("a"), w.container("b")
    stale = w.svc.get("bridge")  # read before any start: no subnet yet
    assert stale.subnet == ""
    w.start(a)  # chooses it
    ep = w.svc._endpoints(container=b.id)[0]
    w.svc._address(b.id, stale, ep)  # a start that had read the network before
    assert stale.subnet == w.svc.get("bridge").subnet != "" and ep.ip_address == "10.50.0.3"


def test_modes(w: World) -> None:
    host = w.container("h", {"NetworkMode": "host"})
    assert w.svc.prepare(host.id, host.host_config) == {}
    none = w.container("n", {"NetworkMode": "none"})
    assert w.svc.prepare(none.id, none.host_config) == {}  # the runtime's new namespace
    w.start(none)
    assert not w.links.netns and not w.links.endpoints  # made by the runtime, pinned on need
    first = w.start(w.container("first"))
    join = w.container("j", {"NetworkMode": f"container:{first.name}"})
    assert w.svc.prepare(join.id, join.host_config) == {"network": w.svc.netns_path(first.id)}
    w.stop(first)
    with pytest.raises(Conflict, match="non running"):
        w.svc.setup(join, w.etc)
    with pytest.raises(InvalidArgument, match="user defined networks only"):
        w.container("x", networking={"EndpointsConfig": {"bridge": {
            "IPAMConfig": {"IPv4Address": "10.50.0.9"}}}})
    with pytest.raises(NotFound):
        w.container("y", {"NetworkMode": "nosuch"})


def test_ports_held_and_forwarded(w: World) -> None:
    rec = w.container("p", {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1"}]},
                            "PublishAllPorts": True})
    rec = w.start(rec)
    ports = {(p.ctr_port, p.proto, p.host_ip) for p in w.fw.ports}
    assert ports == {(80, "tcp", "127.0.0.1"), (8080, "tcp", "")}  # 8080: the image's
    rule = next(p for p in w.fw.ports if p.ctr_port == 80)
    assert rule.ctr_ip == w.svc.settings(rec)["IPAddress"] and rule.host_port > 0
    listed = w.svc.settings(rec)["Ports"]["80/tcp"]
    assert listed == [{"HostIp": "127.0.0.1", "HostPort": str(rule.host_port)}]
    other = w.container("q", {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1",
                                                          "HostPort": str(rule.host_port)}]}})
    with pytest.raises(Conflict, match="already allocated"):
        w.svc.setup(other, w.etc)
    assert w.svc.netns_path(other.id) not in w.links.netns  # undone
    w.stop(rec)
    assert w.fw.ports == set()


def test_connect_disconnect_and_remove_rules(w: World) -> None:
    w.svc.create("side", internal=True)
    rec = w.start(w.container("r"))
    w.svc.connect("side", "r", aliases=["ar"])
    side = [e for e in w.links.endpoints.values() if e.bridge.startswith("br-")]
    assert len(side) == 1 and side[0].ifname == "eth1" and side[0].gateway is None
    assert side[0].netns == process_netns(w.pid(rec.id))  # the running process's namespace
    with pytest.raises(Forbidden, match="active endpoints"):
        w.svc.remove("side")
    with pytest.raises(Forbidden, match="already exists"):
        w.svc.connect("side", rec.id)
    w.svc.disconnect("side", rec.id)
    assert not [e for e in w.links.endpoints.values() if e.bridge.startswith("br-")]
    with pytest.raises(Forbidden, match="not connected"):
        w.svc.disconnect("side", rec.id)
    w.svc.remove("side")


def test_connect_to_a_container_whose_process_is_gone(w: World) -> None:
    w.svc.create("late")
    rec = w.start(w.container("r"))
    w.links.exit(w.pid(rec.id))  # it exited; the engine has not recorded it yet
    with pytest.raises(SystemError_, match="is gone"):
        w.svc.connect("late", rec.id)
    assert [e.network_id for e in w.svc._endpoints(container=rec.id)] == [
        w.svc.get("bridge").id]  # the new endpoint undone, and nothing pinned
    assert not w.links.netns


def test_each_start_is_a_new_namespace_and_old_specs_join_the_pinned_one(w: World) -> None:
    rec = w.container("r")
    first = w.pid(w.start(rec).id)
    w.stop(rec)
    again = w.pid(w.start(rec).id)
    assert first != again
    assert [e.netns for e in w.links.endpoints.values()] == [process_netns(again)]
    # a spec made before the runtime made these namespaces joins the path: made here
    old = w.container("old")
    path = w.svc.netns_path(old.id)
    w.db.execute("UPDATE containers SET spec_json = ? WHERE id = ?", (json.dumps(
        {"linux": {"namespaces": [{"type": "network", "path": path}]}}), old.id))
    w.start(w.record(old.id))
    assert path in w.links.netns
    assert {e.netns for e in w.links.endpoints.values()} == {process_netns(again), path}
    w.stop(w.record(old.id))
    assert path not in w.links.netns and not os.path.exists(path)


def test_only_internal_networks_get_no_forwarding(w: World) -> None:
    w.svc.create("in", internal=True)
    rec = w.start(w.container("i", {"NetworkMode": "in", "Dns": ["192.0.2.53"]}))
    assert w.dns is not None
    assert w.dns.members[rec.id]["forward"] is False
    assert w.dns.members[rec.id]["upstreams"] == [("192.0.2.53", 53)]
    ep = next(iter(w.links.endpoints.values()))
    assert ep.gateway is None


def test_reconcile_and_close(w: World) -> None:
    w.svc.create("keep")
    live = w.start(w.container("live", {"NetworkMode": "keep",
                                        "PortBindings": {"80/tcp": [{}]}}))
    dead = w.start(w.container("dead", {"NetworkMode": "keep"}))
    # inspect pinned dead's namespace; it exited while no engine ran: the pin kept the
    # namespace, and its veth, alive
    assert w.svc.settings(w.record(dead.id))["SandboxKey"] == w.svc.netns_path(dead.id)
    w.db.execute("UPDATE containers SET state = 'exited' WHERE id = ?", (dead.id,))
    for held in w.svc._held.values():  # the old engine's process is gone
        for h in held:
            h.close()
    svc2 = w.open()
    report = svc2.reconcile()
    assert report["netns"] == [dead.id] and report["restored"] == [live.id]
    assert report["links"] == [host_ifname(dead.id, svc2.get("keep").id)]
    live_ns = process_netns(w.pid(live.id))  # never pinned: reached through its process
    assert {e.netns for e in w.links.endpoints.values()} == {live_ns}
    assert w.dns is not None and w.dns.members[live.id]["path"] == live_ns  # DNS again
    assert not (w.tmp / "run" / "netns" / live.id).exists()
    assert [p.ctr_port for p in w.fw.ports] == [80]
    assert live.id in svc2._held
    svc2.close()
    assert w.links.closed and "br-" + svc2.get("keep").id[:12] in w.links.bridges
    w.stop(live)
    svc3 = w.open()
    svc3.reconcile()
    svc3.close()
    assert w.links.bridges == {} and not w.fw.exists


def test_port_rule_is_hashable() -> None:
    assert len({PortRule("", 1, "tcp", "10.0.0.2", 80), PortRule("", 1, "tcp", "10.0.0.2", 80)}
               ) == 1


def test_pyroute2_is_imported_only_for_network_work(tmp_path: Path) -> None:
    """Not by the CLI (network commands included), nor by a network service that only
    looks at what is there. (Nothing imports it now: netlink requests are built by hand,
    tests/integration/test_networks_rtnl.py runs the driver with pyroute2 unimportable.)"""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import pyrt.cli.app, pyrt.cli.networks, pyrt.api.routes_networks\n"
        "pyrt.cli.app.build_app(['network', 'ls'])\n"
        "import pyrt.engine, pyrt.networks.service, pyrt.networks.netlink, pyrt.networks.nft\n"
        "d = pyrt.networks.netlink.NetlinkDriver()\n"
        "d.links(); d.host_networks()\n"
        "before = 'pyroute2' in sys.modules\n"
        "d.close()\n"
        "print(before, 'pyroute2' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path, env={"PYTHONPATH": bundle_path()})
    assert out.stdout.split() == ["False", "False"], out


def bundle_path() -> str:
    from tests.bundle import pyrt_pythonpath

    return pyrt_pythonpath()
