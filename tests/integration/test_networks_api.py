"""pyrtd's /networks endpoints and the network side of container create/inspect, over HTTP
on its socket, with docker's status codes (201, 204, 403, 404, 409), and pyrt.Client's
network methods. Containers run busybox (`busybox ip`, `busybox wget`); nothing leaves the
machine (the daemon's dns is 127.0.0.1, see PyrtdProcess)."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.bundle as bundle
from pyrt.errors import Forbidden, NotFound
from tests.integration.test_api_containers import CtDaemon
from tests.integration.test_api_system import PyrtdProcess


def fetch_when_served(url: str, tries: int = 50) -> str:
    """The body at `url` once something serves it (a container's httpd starting up)."""
    import urllib.request

    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - local test URL
                return str(r.read().decode())
        except OSError:
            time.sleep(0.1)
    return ""


def network_daemon(tmp: Path) -> Iterator[CtDaemon]:
    """A CtDaemon on `tmp`; afterwards its containers and user networks are removed, it
    stops, and no link or nftables table it made may remain."""
    d = CtDaemon(tmp / "d")
    try:
        yield d
    finally:
        if d.proc.poll() is None:
            d.remove_all()
            for n in d.client().networks({"type": ["custom"]}):
                d.client().remove_network(n["Id"])
        d.cleanup()
        owner = str(tmp)
        assert [n for n, o in bundle.pyrt_links().items() if o.startswith(owner)] == []
        assert [n for n, o in bundle.pyrt_nft_tables().items() if o.startswith(owner)] == []


@pytest.fixture(scope="module")
def ctd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CtDaemon]:
    yield from network_daemon(tmp_path_factory.mktemp("netapi"))


def uname(prefix: str = "n") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_net(ctd: CtDaemon, name: str, **body: Any) -> str:
    status, out = ctd.api("POST", "/networks/create", {"Name": name, **body})
    assert status == 201, out
    return str(out["Id"])


def wait_logs(ctd: CtDaemon, cid: str) -> str:
    status, out = ctd.api("POST", f"/containers/{cid}/wait")
    assert status == 200, out
    _, raw = ctd.api("GET", f"/containers/{cid}/logs?stdout=1&stderr=1")
    data, text = bytes(raw), []
    while len(data) >= 8:
        size = int.from_bytes(data[4:8], "big")
        text.append(data[8:8 + size].decode())
        data = data[8 + size:]
    return "".join(text)


def test_create_list_inspect_remove(ctd: CtDaemon) -> None:
    name = uname()
    third = 200 + secrets.randbelow(50)
    nid = make_net(ctd, name, Labels={"k": "v"}, Options={"com.docker.network.driver.mtu":
                                                          "1400"},
                   IPAM={"Driver": "default", "Config": [{"Subnet": f"10.{third}.9.0/24"}]})
    status, out = ctd.api("POST", "/networks/create", {"Name": name})
    assert status == 409 and "already exists" in out["message"]
    status, out = ctd.api("GET", f"/networks/{name}")
    assert status == 200 and out["Id"] == nid and out["Labels"] == {"k": "v"}
    assert out["IPAM"]["Config"] == [{"Subnet": f"10.{third}.9.0/24",
                                      "Gateway": f"10.{third}.9.1"}]
    status, out = ctd.api("GET", f"/networks/{nid[:10]}")
    assert status == 200 and out["Name"] == name
    status, out = ctd.api("GET", '/networks?filters={"label":["k=v"]}')
    assert [n["Name"] for n in out] == [name]
    status, out = ctd.api("GET", '/networks?filters={"type":["builtin"]}')
    assert sorted(n["Name"] for n in out) == ["bridge", "host", "none"]
    status, out = ctd.api("GET", '/networks?filters={"bogus":["x"]}')
    assert status == 400
    assert ctd.api("DELETE", "/networks/bridge")[0] == 403
    assert ctd.api("DELETE", f"/networks/{name}")[0] == 204
    assert ctd.api("GET", f"/networks/{name}")[0] == 404
    assert ctd.api("DELETE", f"/networks/{name}")[0] == 404


def test_container_on_a_user_network_with_networking_config(ctd: CtDaemon) -> None:
    net = uname()
    third = 200 + secrets.randbelow(50)
    make_net(ctd, net, IPAM={"Config": [{"Subnet": f"10.{third}.10.0/24"}]})
    cid = ctd.create(["sh", "-c", "busybox ip -4 addr show eth0; busybox ip route; "
                      "cat /etc/resolv.conf; sleep 30"],
                     HostConfig={"NetworkMode": net},
                     NetworkingConfig={"EndpointsConfig": {net: {
                         "Aliases": ["svc"], "IPAMConfig": {"IPv4Address": f"10.{third}.10.7"}}}})
    assert ctd.api("POST", f"/containers/{cid}/start")[0] == 204
    status, info = ctd.api("GET", f"/containers/{cid}/json")
    ns = info["NetworkSettings"]
    assert ns["Networks"][net]["IPAddress"] == f"10.{third}.10.7"
    assert ns["Networks"][net]["Aliases"] == ["svc"] and ns["Networks"][net]["IPPrefixLen"] == 24
    assert ns["IPAddress"] == ""  # the top-level fields describe the default bridge only
    assert info["HostConfig"]["NetworkMode"] == net
    status, out = ctd.api("DELETE", f"/networks/{net}")
    assert status == 403 and "active endpoints" in out["message"]
    status, out = ctd.api("GET", f"/networks/{net}")
    assert out["Containers"][cid]["IPv4Address"] == f"10.{third}.10.7/24"
    # connect to the default bridge, then disconnect
    status, out = ctd.api("POST", "/networks/bridge/connect", {"Container": cid})
    assert status == 200, out
    _, info = ctd.api("GET", f"/containers/{cid}/json")
    assert set(info["NetworkSettings"]["Networks"]) == {net, "bridge"}
    assert info["NetworkSettings"]["IPAddress"] != ""
    status, out = ctd.api("POST", "/networks/bridge/disconnect", {"Container": cid})
    assert status == 200, out
    status, out = ctd.api("POST", "/networks/bridge/disconnect", {"Container": cid})
    assert status == 403
    status, out = ctd.api("POST", "/networks/nosuch/connect", {"Container": cid})
    assert status == 404
    assert ctd.api("POST", f"/containers/{cid}/kill")[0] == 204
    text = wait_logs(ctd, cid)
    assert f"inet 10.{third}.10.7/24" in text and f"default via 10.{third}.10.1" in text, text
    assert "nameserver 127.0.0.11" in text
    assert ctd.api("DELETE", f"/containers/{cid}")[0] == 204
    assert ctd.api("DELETE", f"/networks/{net}")[0] == 204


def test_default_key_means_the_bridge_and_ports_in_list(ctd: CtDaemon) -> None:
    cid = ctd.create(["sleep", "30"], ExposedPorts={"80/tcp": {}},
                     HostConfig={"NetworkMode": "default", "PublishAllPorts": True},
                     NetworkingConfig={"EndpointsConfig": {"default": {}}})
    assert ctd.api("POST", f"/containers/{cid}/start")[0] == 204
    _, info = ctd.api("GET", f"/containers/{cid}/json")
    assert info["HostConfig"]["NetworkMode"] == "bridge"
    assert set(info["NetworkSettings"]["Networks"]) == {"bridge"}
    port = info["NetworkSettings"]["Ports"]["80/tcp"][0]
    assert port["HostIp"] == "0.0.0.0" and int(port["HostPort"]) > 0
    _, listed = ctd.api("GET", f'/containers/json?filters={{"id":["{cid}"]}}')
    assert listed[0]["Ports"] == [{"IP": "0.0.0.0", "PrivatePort": 80,
                                   "PublicPort": int(port["HostPort"]), "Type": "tcp"}]
    assert "bridge" in listed[0]["NetworkSettings"]["Networks"]
    assert ctd.api("DELETE", f"/containers/{cid}?force=1")[0] == 204


def test_prune_and_client_methods(ctd: CtDaemon) -> None:
    c = ctd.client()
    keep, drop = uname("keep"), uname("drop")
    c.create_network(keep, labels={"stay": "1"})
    nid = c.create_network(drop)
    assert c.inspect_network(nid)["Name"] == drop
    assert {n["Name"] for n in c.networks({"name": [drop]})} == {drop}
    cid = ctd.create(["true"], HostConfig={"NetworkMode": keep})
    out = c.prune_networks()
    assert drop in (out["NetworksDeleted"] or []) and keep not in out["NetworksDeleted"]
    with pytest.raises(NotFound):
        c.inspect_network(drop)
    with pytest.raises(Forbidden):
        c.remove_network("host")
    c.connect_network("bridge", cid)  # a stopped container can be connected
    nets = c.inspect_container(cid)["NetworkSettings"]["Networks"]
    assert set(nets) == {keep, "bridge"} and nets["bridge"]["IPAddress"] == ""
    c.disconnect_network("bridge", cid)
    c.remove_container(cid)
    c.remove_network(keep)


def test_daemon_restart_restores_names_and_ports(tmp_path: Path) -> None:
    d = CtDaemon(tmp_path / "d")
    try:
        net = uname()
        make_net(d, net)
        web = d.create(["sh", "-c", "mkdir /w && echo up > /w/i && exec busybox httpd -f "
                        "-p 80 -h /w"], name="rweb", HostConfig={"NetworkMode": net})
        cli = d.create(["sleep", "120"], name="rcli", HostConfig={"NetworkMode": net})
        for cid in (web, cli):
            assert d.api("POST", f"/containers/{cid}/start")[0] == 204
        d.stop()
        d2 = CtDaemon.__new__(CtDaemon)  # the same roots (and image), a new daemon process
        PyrtdProcess.__init__(d2, d.tmp)
        try:
            deadline = time.monotonic() + 10
            while True:
                status, out = d2.api("POST", f"/containers/{cli}/exec", {
                    "Cmd": ["busybox", "wget", "-q", "-O-", "http://rweb/i"],
                    "AttachStdout": True})
                assert status == 201, out
                status, raw = d2.api("POST", f"/exec/{out['Id']}/start", {"Detach": False})
                if b"up" in bytes(raw) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert b"up" in bytes(raw), raw
        finally:
            d2.remove_all()
            d2.api("DELETE", f"/networks/{net}")
            d2.cleanup()
    finally:
        if d.proc.poll() is None:
            d.remove_all()
        d.cleanup()


def test_daemon_crash_leftovers_are_removed(tmp_path: Path) -> None:
    """pyrtd killed (SIGKILL) while two containers run; one of them dies meanwhile. The next
    pyrtd removes the dead one's veth, namespace file and port rule, and keeps the other's."""
    import os
    import signal
    import socket

    d = CtDaemon(tmp_path / "d")
    d2: CtDaemon | None = None
    try:
        net = uname()
        make_net(d, net)
        keep = d.create(["sleep", "120"], HostConfig={"NetworkMode": net})
        dies = d.create(["sleep", "120"], HostConfig={"NetworkMode": net, "PortBindings": {
            "80/tcp": [{"HostIp": "127.0.0.1"}]}})
        for cid in (keep, dies):
            assert d.api("POST", f"/containers/{cid}/start")[0] == 204
        d.api("GET", f"/containers/{keep}/json")  # (its SandboxKey pins its namespace)
        _, info = d.api("GET", f"/containers/{dies}/json")  # (and so dies')
        port = int(info["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
        pid = int(info["State"]["Pid"])
        owner = str(tmp_path)
        veths = {n for n, o in bundle.pyrt_links().items() if o.startswith(owner)
                 and n.startswith("pv")}  # fmt: skip
        assert len(veths) == 2
        os.killpg(d.proc.pid, signal.SIGKILL)
        d.proc.wait()
        os.kill(pid, signal.SIGKILL)
        netns = d.exec_root / "netns"
        d2 = CtDaemon.__new__(CtDaemon)
        PyrtdProcess.__init__(d2, d.tmp)
        _, info = d2.api("GET", f"/containers/{dies}/json")
        assert info["State"]["Running"] is False and info["NetworkSettings"]["Ports"] == {
            "80/tcp": None}
        def left() -> set[str]:
            return {n for n, o in bundle.pyrt_links().items() if o.startswith(owner)
                    and n.startswith("pv")}  # fmt: skip

        deadline = time.monotonic() + 5  # (released in the background)
        while (len(left()) != 1 or os.listdir(netns) != [keep]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(left()) == 1 and left() < veths
        assert sorted(os.listdir(netns)) == [keep]
        s = socket.socket()
        s.bind(("127.0.0.1", port))  # the dead one's port is free again
        s.close()
        _, info = d2.api("GET", f"/containers/{keep}/json")
        assert info["State"]["Running"] and info["NetworkSettings"]["Networks"][net]["IPAddress"]
    finally:
        if d2 is not None:
            d2.remove_all()
            d2.api("DELETE", f"/networks/{net}")
            d2.cleanup()
        if d.proc.poll() is None:
            d.remove_all()
        d.cleanup()
