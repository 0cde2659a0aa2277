"""Networks with real containers: the default bridge, user networks, names, published ports,
NAT to an "outside" namespace the test makes, host/none/container modes, connect and
disconnect, engine restart.

All traffic stays on this machine. Each engine gets a bridge and nftables table of its own
(named from its root), a default-bridge resolver of 127.0.0.1 and an embedded-DNS upstream
that is a fake server on loopback answering REFUSED: nothing here can reach the host's real
nameserver. After every test no link, table or namespace the test's engine made remains.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.bundle as bundle
from pyrt.engine import Engine
from pyrt.errors import Conflict, Forbidden, InvalidArgument
from pyrt.images.importer import import_rootfs
from tests.integration.test_engine import IMAGE, busybox_tar, shims_of, wait_for

__all__ = ["busybox_tar"]  # the session fixture, imported for this module's tests

HTTPD = ("mkdir -p /www && echo hello-$(hostname) > /www/index.html && "
         "exec httpd -f -p 80 -h /www")


class FakeUpstream:
    """A DNS server on 127.0.0.1 that answers every query REFUSED and counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 12:
                continue
            self.queries += 1
            flags = struct.unpack(">H", data[2:4])[0] | 0x8000 | 5  # QR, REFUSED
            self.sock.sendto(data[:2] + struct.pack(">H", flags) + data[4:], peer)

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        self.sock.close()


class NetEngines:
    def __init__(self, tmp_path: Path, tar: Path, upstream: FakeUpstream) -> None:
        self.tmp = tmp_path
        self.root, self.run_root = tmp_path / "root", tmp_path / "run"
        self.cgroup_parent = bundle.suite_cgroup_parent()
        self.tar, self.upstream = tar, upstream
        self.opened: list[Engine] = []

    def open(self) -> Engine:
        e = Engine(self.root, self.run_root, cgroup_parent=self.cgroup_parent,
                   dns=["127.0.0.1"], dns_upstreams=[("127.0.0.1", self.upstream.port)])
        self.opened.append(e)
        if not e.images.exists(IMAGE):
            import_rootfs(str(self.tar), store=e.content, service=e.images, reference=IMAGE)
        return e

    def teardown(self) -> None:
        live = [e for e in self.opened if not e._closed] or [self.open()]
        for e in live:
            for c in e.containers.list(all=True):
                e.containers.remove(c["Id"], force=True)
            for n in e.networks.list():
                if n["Name"] not in ("bridge", "host", "none"):
                    e.networks.remove(n["Id"])
            e.close()
        wait_for(lambda: not shims_of(self.root), 10, "the shims to exit")


def owned_links(owner_prefix: str) -> list[str]:
    return sorted(n for n, o in bundle.pyrt_links().items() if o.startswith(owner_prefix))


def owned_tables(owner_prefix: str) -> list[str]:
    return sorted(n for n, o in bundle.pyrt_nft_tables().items() if o.startswith(owner_prefix))


@pytest.fixture
def engines(tmp_path: Path, busybox_tar: Path) -> Iterator[NetEngines]:
    up = FakeUpstream()
    es = NetEngines(tmp_path, busybox_tar, up)
    try:
        yield es
        es.teardown()
        owner = str(tmp_path)
        assert owned_links(owner) == [], "links left behind"
        assert owned_tables(owner) == [], "nftables tables left behind"
        netns = es.run_root / "netns"
        assert not netns.is_dir() or os.listdir(netns) == [], "netns files left behind"
    finally:
        up.close()


@pytest.fixture
def engine(engines: NetEngines) -> Engine:
    return engines.open()


def start(engine: Engine, cmd: str, name: str | None = None, *,
          host: dict[str, Any] | None = None, networking: dict[str, Any] | None = None,
          **cfg: Any) -> str:
    config = {"Image": IMAGE, "Cmd": ["/bin/sh", "-c", cmd], **cfg}
    cid = engine.containers.create(config, host or {}, name=name, networking_config=networking)
    engine.containers.start(cid)
    return cid


def run(engine: Engine, cmd: str, **kw: Any) -> tuple[int, str]:
    # `; exit $?`: sh must not exec the last command as pid 1 (busybox `timeout` signals
    # the process it runs, and pid 1 of a namespace ignores SIGTERM)
    cid = start(engine, f"{cmd}; exit $?", **kw)
    code = int(engine.containers.wait(cid, timeout=60)["StatusCode"])
    out = b"".join(e.log for e in engine.containers.logs(cid)).decode()
    engine.containers.remove(cid)
    return code, out


def ip_of(engine: Engine, cid: str, network: str) -> str:
    return str(engine.containers.inspect(cid)["NetworkSettings"]["Networks"][network]
               ["IPAddress"])


def http_get(url: str, timeout: float = 3.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - local test URL
        return str(r.read().decode())


def serving(url: str) -> Callable[[], bool]:
    def ok() -> bool:
        try:
            return http_get(url, 1.0).startswith("hello-")
        except OSError:
            return False

    return ok


def http_ready(engine: Engine, cid: str, network: str) -> str:
    url = f"http://{ip_of(engine, cid, network)}/"
    wait_for(serving(url), 10, f"httpd at {url}")
    return url


# -- the default bridge -------------------------------------------------------------------------


def test_default_bridge_address_route_and_release(engine: Engine) -> None:
    cid = start(engine, "sleep 60")
    st = engine.containers.inspect(cid)["NetworkSettings"]
    net = engine.networks.inspect("bridge")
    subnet = net["IPAM"]["Config"][0]["Subnet"]
    gw = net["IPAM"]["Config"][0]["Gateway"]
    assert st["IPAddress"] and st["Gateway"] == gw and st["Networks"]["bridge"]["IPAddress"]
    assert st["MacAddress"].startswith("02:42:") and st["SandboxKey"].endswith(cid)
    assert not subnet.startswith("172.17.")
    assert net["Containers"][cid]["IPv4Address"].startswith(st["IPAddress"] + "/")
    bridge = net["Options"]["com.docker.network.bridge.name"]
    assert bridge in bundle.pyrt_links()
    code, out = run(engine, f"ip -4 addr show eth0; ip route; ping -c 1 -W 2 {gw}")
    assert code == 0, out
    assert "default via " + gw in out and "1 packets received" in out
    engine.containers.stop(cid, timeout=1)
    st = engine.containers.inspect(cid)["NetworkSettings"]
    assert st["IPAddress"] == "" and engine.networks.inspect("bridge")["Containers"] == {}
    wait_for(lambda: not any(n.startswith("pv") for n in owned_links(str(engine.root))), 5,
             "the veth to go (released in the background)")


def _netns_ino(pid: int | str) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def test_bridge_namespace_is_the_runtimes_each_start_and_pinned_on_need(engine: Engine
                                                                         ) -> None:
    """A bridge container's namespace is made by the runtime's clone, a new one each start:
    its veth, address and route go in by its process; connect reaches it so too; it is
    pinned at the engine's path only for inspect's SandboxKey, and the pin goes at stop."""
    from tests.integration.test_engine_ops import run_exec

    engine.networks.create("side")
    cid = start(engine, "sleep 60")
    path = engine.networks.netns_path(cid)
    pid = engine.containers.get_record(cid).pid
    assert _netns_ino(pid) != _netns_ino("self") and not os.path.exists(path)
    engine.networks.connect("side", cid)  # (on the process's namespace: nothing pinned)
    assert not os.path.exists(path)
    _, code, out = run_exec(engine, cid, ["sh", "-c", "ip -4 addr; ip route"])
    ips = {n: s["IPAddress"] for n, s in engine.networks.settings(
        engine.containers.get_record(cid), sandbox=False)["Networks"].items()}
    gw = engine.networks.inspect("bridge")["IPAM"]["Config"][0]["Gateway"]
    text = out.decode()
    assert code == 0 and f"{ips['bridge']}/" in text and f"{ips['side']}/" in text, text
    assert f"default via {gw} dev eth0" in text and "127.0.0.1" in text, text
    assert not os.path.exists(path)
    st = engine.containers.inspect(cid)["NetworkSettings"]
    assert st["SandboxKey"] == path and os.stat(path).st_ino == _netns_ino(pid)
    engine.containers.restart(cid, timeout=1)
    assert not os.path.exists(path)  # the pin went with the first start's namespace
    again = engine.containers.get_record(cid).pid
    assert again != pid and _netns_ino(again) != _netns_ino("self")
    _, code, out = run_exec(engine, cid, ["sh", "-c", f"ls /sys/class/net; ping -c 1 -W 2 {gw}"])
    assert code == 0 and out.decode().split()[:3] == ["eth0", "eth1", "lo"], out
    engine.containers.stop(cid, timeout=1)
    assert not os.path.exists(path)


def test_a_process_in_the_engines_namespace_gets_no_network(engine: Engine) -> None:
    """The veths go into a new container's namespace by its pid: never into the engine's,
    had a runtime left the process there."""
    from pyrt.errors import SystemError_

    with pytest.raises(SystemError_, match="engine's network namespace"):
        engine.networks._new_netns(os.getpid(), "f" * 64)


def test_two_containers_on_the_default_bridge_reach_each_other_by_address(engine: Engine
                                                                          ) -> None:
    web = start(engine, HTTPD)
    url = http_ready(engine, web, "bridge")
    code, out = run(engine, f"timeout 3 wget -q -O- {url}")
    assert code == 0 and out.strip() == f"hello-{web[:12]}", out


# -- user networks --------------------------------------------------------------------------


def test_user_network_names_and_isolation(engine: Engine) -> None:
    a = engine.networks.create("neta")
    engine.networks.create("netb")
    web = start(engine, HTTPD, name="web", host={"NetworkMode": "neta"},
                networking={"EndpointsConfig": {"neta": {"Aliases": ["www"]}}})
    other = start(engine, HTTPD, name="other", host={"NetworkMode": "netb"})
    http_ready(engine, web, "neta")
    other_ip = ip_of(engine, other, "netb")
    code, out = run(engine, "cat /etc/resolv.conf; timeout 3 wget -q -O- http://web/; "
                    "timeout 3 wget -q -O- http://www/", host={"NetworkMode": "neta"})
    assert code == 0, out
    assert "nameserver 127.0.0.11" in out and out.count(f"hello-{web[:12]}") == 2, out
    code, out = run(engine, f"timeout 2 wget -q -O- http://{other_ip}/",
                    host={"NetworkMode": "neta"})
    assert code != 0, f"a container on neta reached one on netb: {out}"
    code, out = run(engine, "timeout 2 wget -q -O- http://other/", host={"NetworkMode": "neta"})
    assert code != 0, out
    with pytest.raises(Forbidden, match="active endpoints"):
        engine.networks.remove("neta")
    assert engine.networks.inspect("neta")["Id"] == a


def test_subnet_gateway_ip_range_and_fixed_ip(engine: Engine) -> None:
    third = 200 + secrets.randbelow(50)
    subnet = f"10.{third}.77.0/24"
    engine.networks.create("fixed", subnet=subnet, gateway=f"10.{third}.77.254",
                           ip_range=f"10.{third}.77.128/25", labels={"team": "x"})
    c1 = start(engine, "sleep 60", host={"NetworkMode": "fixed"})
    c2 = start(engine, "sleep 60", host={"NetworkMode": "fixed"},
               networking={"EndpointsConfig": {"fixed": {
                   "IPAMConfig": {"IPv4Address": f"10.{third}.77.9"}}}})
    assert ip_of(engine, c1, "fixed") == f"10.{third}.77.129"
    assert ip_of(engine, c2, "fixed") == f"10.{third}.77.9"
    net = engine.networks.inspect("fixed")
    assert net["IPAM"]["Config"] == [{"Subnet": subnet, "Gateway": f"10.{third}.77.254",
                                      "IPRange": f"10.{third}.77.128/25"}]
    assert net["Labels"] == {"team": "x"} and set(net["Containers"]) == {c1, c2}
    with pytest.raises(Forbidden, match="overlaps"):
        engine.networks.create("clash", subnet=f"10.{third}.77.0/25")
    with pytest.raises(Conflict, match="already exists"):
        engine.networks.create("fixed")
    with pytest.raises(InvalidArgument, match="user defined networks only"):
        engine.containers.create({"Image": IMAGE}, {}, networking_config={
            "EndpointsConfig": {"bridge": {"IPAMConfig": {"IPv4Address": "10.1.1.1"}}}})
    taken = engine.containers.create({"Image": IMAGE, "Cmd": ["true"]},
                                     {"NetworkMode": "fixed"}, networking_config={
        "EndpointsConfig": {"fixed": {"IPAMConfig": {"IPv4Address": f"10.{third}.77.9"}}}})
    with pytest.raises(Conflict, match="already in use"):
        engine.containers.start(taken)
    assert engine.containers.inspect(taken)["State"]["Running"] is False


def test_internal_network_reaches_only_itself(engine: Engine, tmp_path: Path) -> None:
    with Outside(tmp_path) as out:
        engine.networks.create("inner", internal=True)
        web = start(engine, HTTPD, name="innerweb", host={"NetworkMode": "inner"})
        url = f"http://{ip_of(engine, web, 'inner')}/"
        wait_for(serving(url), 10, "httpd on the internal network")
        code, text = run(engine, "timeout 3 wget -q -O- http://innerweb/; ip route",
                         host={"NetworkMode": "inner"})
        assert code == 0 and f"hello-{web[:12]}" in text and "default" not in text, text
        code, text = run(engine, f"nc -w 2 {out.address} {out.port} </dev/null",
                         host={"NetworkMode": "inner"})
        assert code != 0 and out.peers() == [], text


# -- NAT and published ports -------------------------------------------------------------------


class Outside:
    """A namespace standing for the outside world: a veth pair (host end <net>.1/30, the
    other end <net>.2 inside) and a TCP server inside that records who connected."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.ns = str(tmp_path / "outside-ns")
        self.host_if = "pvo" + secrets.token_hex(4)
        third = secrets.randbelow(250)
        self.host_address = f"10.254.{third}.1"
        self.address = f"10.254.{third}.2"
        self.port = 7000 + secrets.randbelow(1000)
        self.server: subprocess.Popen[str] | None = None

    def __enter__(self) -> Outside:
        from pyrt.networks.netlink import NetlinkDriver

        drv = NetlinkDriver()
        try:
            drv.create_netns(self.ns)
        finally:
            drv.close()
        sh = (f"ip link add {self.host_if} type veth peer name eth0 netns {self._pid_ns()} && "
              f"ip link set {self.host_if} alias pyrt:{self.tmp} && "
              f"ip addr add {self.host_address}/30 dev {self.host_if} && "
              f"ip link set {self.host_if} up")
        subprocess.run(["sh", "-c", sh], check=True)
        self._in_ns(f"ip addr add {self.address}/30 dev eth0 && ip link set eth0 up && "
                    "ip link set lo up")
        script = ("import socket,sys\n"
                  "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                  f"s.bind(('0.0.0.0', {self.port})); s.listen(8); print('ready', flush=True)\n"
                  "while True:\n"
                  "    c, a = s.accept(); print(a[0], flush=True); c.sendall(b'outside\\n')\n"
                  "    c.close()\n")
        self.server = subprocess.Popen(["nsenter", f"--net={self.ns}", "python3", "-c", script],
                                       stdout=subprocess.PIPE, text=True)
        assert self.server.stdout is not None
        assert self.server.stdout.readline().strip() == "ready"
        self._lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _pid_ns(self) -> str:
        # `ip link ... netns` takes a pid: a sleeper inside the namespace stands for it
        self._holder = subprocess.Popen(["nsenter", f"--net={self.ns}", "sleep", "60"])
        time.sleep(0.05)
        return str(self._holder.pid)

    def _in_ns(self, sh: str) -> None:
        subprocess.run(["nsenter", f"--net={self.ns}", "sh", "-c", sh], check=True)

    def _read(self) -> None:
        assert self.server is not None and self.server.stdout is not None
        for line in self.server.stdout:
            self._lines.append(line.strip())

    def peers(self) -> list[str]:
        time.sleep(0.1)
        return list(self._lines)

    def __exit__(self, *exc: object) -> None:
        for p in (self.server, getattr(self, "_holder", None)):
            if p is not None:
                p.kill()
                p.wait()
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        from pyrt.networks.netlink import NetlinkDriver

        drv = NetlinkDriver()
        drv.delete_netns(self.ns)
        drv.close()


def test_outbound_nat_to_the_outside(engine: Engine, tmp_path: Path) -> None:
    with Outside(tmp_path) as out:
        code, text = run(engine, f"nc -w 3 {out.address} {out.port} </dev/null")
        assert code == 0 and "outside" in text, text
        engine.networks.create("usernat")
        code, text = run(engine, f"nc -w 3 {out.address} {out.port} </dev/null",
                         host={"NetworkMode": "usernat"})
        assert code == 0 and "outside" in text, text
        # masqueraded: the outside sees the host's address on its link, not the container's
        assert out.peers() == [out.host_address, out.host_address]


def test_forward_drop_policy_of_docker_does_not_stop_pyrt(engine: Engine, tmp_path: Path
                                                          ) -> None:
    """Docker's layout, made privately: a forward base chain with policy drop in `ip filter`
    that jumps to DOCKER-USER first. pyrt's accepts in DOCKER-USER let its traffic pass."""
    def nft(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nft", *cmd], capture_output=True, text=True, check=check)

    made_table = nft("list", "table", "ip", "filter", check=False).returncode != 0
    if not made_table and nft("list", "chain", "ip", "filter", "DOCKER-USER",
                              check=False).returncode == 0:
        pytest.skip("a DOCKER-USER chain exists on this host: not the test's to change")
    drop = "pyrt-test-fwd-" + secrets.token_hex(3)
    nft("add table ip filter; add chain ip filter DOCKER-USER; add chain ip filter "
        f"{drop} {{ type filter hook forward priority 0; policy drop; }}; "
        f"add rule ip filter {drop} jump DOCKER-USER")
    try:
        with Outside(tmp_path) as out:
            engine.networks.create("fwd")
            web = start(engine, HTTPD, host={"NetworkMode": "fwd"})
            url = http_ready(engine, web, "fwd")
            code, text = run(engine, f"nc -w 3 {out.address} {out.port} </dev/null; "
                             f"timeout 3 wget -q -O- {url}", host={"NetworkMode": "fwd"})
            assert code == 0 and "outside" in text and f"hello-{web[:12]}" in text, text
            ours = f"pyrt:{engine.networks.firewall.table}:"  # type: ignore[attr-defined]
            rules = nft("list", "chain", "ip", "filter", "DOCKER-USER").stdout
            assert ours in rules
            # without them the drop policy stops the same traffic: the test sees the drop
            nft("flush", "chain", "ip", "filter", "DOCKER-USER")
            code, text = run(engine, f"nc -w 2 {out.address} {out.port} </dev/null",
                             host={"NetworkMode": "fwd"})
            assert code != 0 and "outside" not in text, text
            engine.networks.create("fwd2")  # a network change puts them back
            code, text = run(engine, f"nc -w 3 {out.address} {out.port} </dev/null",
                             host={"NetworkMode": "fwd"})
            assert code == 0 and "outside" in text, text
            engine.containers.remove(web, force=True)
            engine.networks.remove("fwd")
            engine.networks.remove("fwd2")
            engine.close()
            rules = nft("list", "chain", "ip", "filter", "DOCKER-USER").stdout
            assert ours not in rules, rules  # (other engines on this host may have theirs)
    finally:
        nft("delete", "chain", "ip", "filter", drop, check=False)
        nft("flush chain ip filter DOCKER-USER; delete chain ip filter DOCKER-USER", check=False)
        if made_table:
            nft("delete", "table", "ip", "filter", check=False)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_published_port_on_localhost_and_a_host_address(engine: Engine, tmp_path: Path
                                                        ) -> None:
    with Outside(tmp_path) as out:
        p1, p2 = _free_port(), _free_port()
        web = start(engine, HTTPD, host={"PortBindings": {
            "80/tcp": [{"HostIp": "", "HostPort": str(p1)},
                       {"HostIp": "127.0.0.1", "HostPort": str(p2)}]}},
            ExposedPorts={"80/tcp": {}})
        http_ready(engine, web, "bridge")
        want = f"hello-{web[:12]}"
        assert http_get(f"http://127.0.0.1:{p1}/").strip() == want
        assert http_get(f"http://127.0.0.1:{p2}/").strip() == want
        assert http_get(f"http://{out.host_address}:{p1}/").strip() == want
        with pytest.raises(OSError):
            http_get(f"http://{out.host_address}:{p2}/", 1.0)  # bound to 127.0.0.1 only
        ports = engine.containers.inspect(web)["NetworkSettings"]["Ports"]
        assert ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(p1)},
                                    {"HostIp": "127.0.0.1", "HostPort": str(p2)}]}
        # from another container, through the host's address
        code, text = run(engine, f"timeout 3 wget -q -O- http://{out.host_address}:{p1}/")
        assert code == 0 and text.strip() == want, text
        # and from itself (hairpin through its bridge port)
        ex = engine.containers.exec_create(web, {"Cmd": [
            "timeout", "3", "wget", "-q", "-O", "/dev/null", f"http://{out.host_address}:{p1}/"]})
        assert engine.containers.exec_start(ex, detach=True).wait() == 0
        # the port is held: another container asking for it is refused, and not started
        again = engine.containers.create({"Image": IMAGE, "Cmd": ["sleep", "60"]}, {
            "PortBindings": {"80/tcp": [{"HostPort": str(p1)}]}})
        with pytest.raises(Conflict, match=f"0.0.0.0:{p1} failed: port is already allocated"):
            engine.containers.start(again)
        assert engine.containers.inspect(again)["State"]["Running"] is False
        engine.containers.stop(web, timeout=1)
        with pytest.raises(OSError):
            http_get(f"http://127.0.0.1:{p1}/", 1.0)
        engine.containers.start(again)  # released at stop: now it can have it


def test_publish_all_and_a_port_in_use(engine: Engine) -> None:
    web = start(engine, HTTPD, ExposedPorts={"80/tcp": {}, "81/udp": {}},
                host={"PublishAllPorts": True})
    http_ready(engine, web, "bridge")
    ports = engine.networks.ports(web)
    by = {(p["PrivatePort"], p["Type"]): p["HostPort"] for p in ports}
    assert set(by) == {(80, "tcp"), (81, "udp")} and all(v > 0 for v in by.values())
    assert http_get(f"http://127.0.0.1:{by[(80, 'tcp')]}/").startswith("hello-")
    summary = engine.containers.list(filters={"id": [web]})[0]
    assert {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": by[(80, "tcp")],
            "Type": "tcp"} in summary["Ports"]
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        cid = engine.containers.create({"Image": IMAGE, "Cmd": ["sleep", "60"]},
                                       {"PortBindings": {"80/tcp": [{"HostPort": str(port)}]}})
        with pytest.raises(Conflict, match="port is already allocated"):
            engine.containers.start(cid)
        st = engine.containers.inspect(cid)
        assert st["State"]["Running"] is False and st["NetworkSettings"]["IPAddress"] == ""
    finally:
        busy.close()


# -- modes -----------------------------------------------------------------------------------


def test_host_mode_sees_the_host_interfaces(engine: Engine) -> None:
    code, out = run(engine, "ls /sys/class/net", host={"NetworkMode": "host"})
    assert code == 0
    with open("/proc/net/route") as f:  # the host's interface of its default route
        uplink = next(line.split()[0] for line in f if line.split()[1] == "00000000")
    assert {"lo", uplink} <= set(out.split()), out
    st = engine.containers.inspect(start(engine, "sleep 30", host={"NetworkMode": "host"}))
    assert set(st["NetworkSettings"]["Networks"]) == {"host"}
    assert st["HostConfig"]["NetworkMode"] == "host"


def test_none_mode_has_only_lo(engine: Engine) -> None:
    code, out = run(engine, "ls /sys/class/net; ip -4 addr", host={"NetworkMode": "none"})
    assert code == 0 and out.split()[0] == "lo" and "eth0" not in out and "127.0.0.1" in out


def test_none_mode_namespace_pinned_when_needed(engine: Engine) -> None:
    """The runtime makes a none container's namespace; a container: joiner and inspect's
    SandboxKey get it pinned at the engine's path, which goes when the container stops."""
    cid = start(engine, "sleep 60", host={"NetworkMode": "none"})
    path = engine.networks.netns_path(cid)
    assert [c["Id"] for c in engine.containers.list()] == [cid]
    assert not os.path.exists(path)  # nothing needed it yet (a listing does not)
    code, out = run(engine, "ip -4 addr show lo", host={"NetworkMode": f"container:{cid}"})
    assert code == 0 and "127.0.0.1" in out and "UP" in out, out
    st = engine.containers.inspect(cid)
    assert st["NetworkSettings"]["SandboxKey"] == path
    # the joiner's path is the container's namespace
    assert os.stat(path).st_ino == os.stat(f"/proc/{st['State']['Pid']}/ns/net").st_ino
    engine.containers.stop(cid, timeout=1)
    assert not os.path.exists(path)
    assert engine.containers.inspect(cid)["NetworkSettings"]["SandboxKey"] == ""


def test_container_mode_shares_the_namespace(engine: Engine) -> None:
    first = start(engine, "sleep 60", name="first")
    ip = ip_of(engine, first, "bridge")
    code, out = run(engine, "ip -4 addr show eth0", host={"NetworkMode": "container:first"})
    assert code == 0 and ip in out, out
    engine.containers.stop(first, timeout=1)
    joiner = engine.containers.create({"Image": IMAGE, "Cmd": ["true"]},
                                      {"NetworkMode": f"container:{first}"})
    with pytest.raises(Conflict, match="non running container"):
        engine.containers.start(joiner)


def test_connect_and_disconnect_a_running_container(engine: Engine) -> None:
    engine.networks.create("extra")
    web = start(engine, HTTPD, name="late", host={"NetworkMode": "extra"})
    cid = start(engine, "sleep 60")
    engine.networks.connect("extra", cid, aliases=["buddy"])
    st = engine.containers.inspect(cid)["NetworkSettings"]["Networks"]
    assert set(st) == {"bridge", "extra"} and st["extra"]["Aliases"] == ["buddy"]
    url = http_ready(engine, web, "extra")
    ex = engine.containers.exec_create(cid, {"Cmd": ["sh", "-c", "ls /sys/class/net; timeout 3 "
                                                     f"wget -q -O- {url}"], "AttachStdout": True})
    run_ = engine.containers.exec_start(ex, detach=True)
    assert run_.wait() == 0
    code, out = run(engine, "nslookup buddy 127.0.0.11 || true", host={"NetworkMode": "extra"})
    assert ip_of(engine, cid, "extra") in out, out
    with pytest.raises(Forbidden, match="already exists"):
        engine.networks.connect("extra", cid)
    engine.networks.disconnect("extra", cid)
    st = engine.containers.inspect(cid)["NetworkSettings"]["Networks"]
    assert set(st) == {"bridge"}
    code, out = run(engine, "ls /sys/class/net", host={"NetworkMode": f"container:{cid}"})
    assert out.split() == ["eth0", "lo"], out
    with pytest.raises(Forbidden, match="not connected"):
        engine.networks.disconnect("extra", cid)


def test_network_rm_prune_and_predefined(engine: Engine) -> None:
    with pytest.raises(Forbidden, match="pre-defined"):
        engine.networks.remove("bridge")
    engine.networks.create("gone", labels={"keep": "no"})
    engine.networks.create("kept", labels={"keep": "yes"})
    stopped = engine.containers.create({"Image": IMAGE, "Cmd": ["true"]}, {"NetworkMode": "kept"})
    assert engine.networks.prune() == ["gone"]
    assert [n["Name"] for n in engine.networks.list(filters={"type": ["custom"]})] == ["kept"]
    engine.networks.remove("kept")  # a stopped container does not hold it (as Docker)
    with pytest.raises(Exception, match="not found"):
        engine.containers.start(stopped)
    engine.containers.remove(stopped)


# -- restart -----------------------------------------------------------------------------------


def test_engine_restart_keeps_running_containers_talking_by_name(engines: NetEngines) -> None:
    e1 = engines.open()
    e1.networks.create("keep")
    p = _free_port()
    web = start(e1, HTTPD, name="keepweb", host={
        "NetworkMode": "keep", "PortBindings": {"80/tcp": [{"HostPort": str(p)}]}})
    client = start(e1, "sleep 120", name="keepclient", host={"NetworkMode": "keep"})
    http_ready(e1, web, "keep")
    e1.close()
    # a leftover of a crash: a namespace file of a container that is not running
    stale = engines.run_root / "netns" / ("f" * 64)
    from pyrt.networks.netlink import NetlinkDriver

    drv = NetlinkDriver()
    drv.create_netns(str(stale))
    drv.close()
    e2 = engines.open()
    assert ("f" * 64) in e2.network_report["netns"] and not stale.exists()
    assert set(e2.network_report["restored"]) >= {web, client}
    ex = e2.containers.exec_create(client, {"Cmd": ["timeout", "3", "wget", "-q", "-O-",
                                                    "http://keepweb/"]})
    assert e2.containers.exec_start(ex, detach=True).wait() == 0
    assert http_get(f"http://127.0.0.1:{p}/").startswith("hello-")
    taken = socket.socket()
    with pytest.raises(OSError):  # the restarted engine holds the port again
        taken.bind(("0.0.0.0", p))
    taken.close()


def test_network_events_and_json(engine: Engine) -> None:
    nid = engine.networks.create("evt", options={"com.docker.network.bridge.name": "pyrtevt" +
                                                 secrets.token_hex(2)})
    doc = engine.networks.inspect(nid)
    json.dumps(doc)
    assert doc["Driver"] == "bridge" and doc["Scope"] == "local" and doc["Internal"] is False
    assert doc["Options"]["com.docker.network.bridge.name"] in bundle.pyrt_links()
    engine.networks.remove(nid)
    assert doc["Options"]["com.docker.network.bridge.name"] not in bundle.pyrt_links()


