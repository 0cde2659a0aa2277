"""The real docker CLI (28.x) against pyrtd's network endpoints: network create (subnet,
gateway, ip-range, internal, labels, options), ls (filters, -q, --format), inspect, rm,
prune, connect/disconnect; run --network/--ip/--network-alias/-p/-P, port, and container
inspect's NetworkSettings. Traffic stays on this machine (busybox nc/wget between
containers and to 127.0.0.1)."""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.test_api_containers import IMAGE, CtDaemon
from tests.integration.test_api_system import DOCKER
from tests.integration.test_networks_api import fetch_when_served, network_daemon

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not DOCKER.exists(), reason=f"{DOCKER} not installed"),
]


@pytest.fixture(scope="module")
def ctd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CtDaemon]:
    yield from network_daemon(tmp_path_factory.mktemp("netcli"))


def dk(ctd: CtDaemon, *args: str, code: int = 0) -> str:
    r = ctd.docker(*args, timeout=60)
    assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr)
    return r.stdout.decode() if code == 0 else r.stderr.decode()


def uname(p: str = "cn") -> str:
    return f"{p}-{uuid.uuid4().hex[:8]}"


def test_network_create_ls_inspect_rm(ctd: CtDaemon) -> None:
    name = uname()
    third = 200 + secrets.randbelow(50)
    nid = dk(ctd, "network", "create", "--subnet", f"10.{third}.20.0/24", "--gateway",
             f"10.{third}.20.254", "--ip-range", f"10.{third}.20.64/26", "--label", "l=1",
             "-o", "com.docker.network.driver.mtu=1450", name).strip()
    assert len(nid) == 64
    assert name in dk(ctd, "network", "ls")
    assert dk(ctd, "network", "ls", "-q", "--filter", "label=l=1").split() == [nid[:12]]
    assert dk(ctd, "network", "ls", "--format", "{{.Name}} {{.Driver}}", "--filter",
              f"name={name}").strip() == f"{name} bridge"
    doc = json.loads(dk(ctd, "network", "inspect", name))[0]
    assert doc["IPAM"]["Config"][0] == {"Subnet": f"10.{third}.20.0/24",
                                        "Gateway": f"10.{third}.20.254",
                                        "IPRange": f"10.{third}.20.64/26"}
    assert dk(ctd, "network", "inspect", "-f", "{{.Options}}", name).strip() == \
        "map[com.docker.network.driver.mtu:1450]"
    err = dk(ctd, "network", "create", name, code=1)
    assert "already exists" in err
    assert "pre-defined" in dk(ctd, "network", "rm", "bridge", code=1)
    assert dk(ctd, "network", "rm", name).strip() == name
    assert "not found" in dk(ctd, "network", "inspect", name, code=1)


def test_run_on_a_user_network_with_ip_alias_and_names(ctd: CtDaemon) -> None:
    net = uname()
    third = 200 + secrets.randbelow(50)
    dk(ctd, "network", "create", "--subnet", f"10.{third}.21.0/24", net)
    srv = uname("srv")
    dk(ctd, "run", "-d", "--name", srv, "--network", net, "--ip", f"10.{third}.21.50",
       "--network-alias", "db", IMAGE, "sh", "-c",
       "mkdir /w && echo pong > /w/i && exec busybox httpd -f -p 80 -h /w")
    assert dk(ctd, "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}',
              srv).strip() == f"10.{third}.21.50"
    out = ""
    for _ in range(50):
        out = dk(ctd, "run", "--rm", "--network", net, IMAGE, "sh", "-c",
                 f"busybox wget -q -O- http://db/i; busybox wget -q -O- http://{srv}/i; "
                 "exit 0")
        if out.count("pong") == 2:
            break
        time.sleep(0.1)
    assert out.count("pong") == 2, out
    assert "active endpoints" in dk(ctd, "network", "rm", net, code=1)
    # connect/disconnect a running container to the default bridge
    dk(ctd, "network", "connect", "bridge", srv)
    nets = json.loads(dk(ctd, "inspect", "-f", "{{json .NetworkSettings.Networks}}", srv))
    assert set(nets) == {net, "bridge"}
    dk(ctd, "network", "disconnect", "bridge", srv)
    dk(ctd, "rm", "-f", srv)
    dk(ctd, "network", "rm", net)


def test_publish_and_port(ctd: CtDaemon) -> None:
    name = uname("web")
    dk(ctd, "run", "-d", "--name", name, "-p", "127.0.0.1::80", "-P", "--expose", "81",
       IMAGE, "sh", "-c", "mkdir /w && echo web > /w/i && exec busybox httpd -f -p 80 -h /w")
    lines = dk(ctd, "port", name).splitlines()
    by = dict(line.split(" -> ") for line in lines)
    assert by["80/tcp"].startswith("127.0.0.1:") and "81/tcp" in by, lines
    port = by["80/tcp"].rsplit(":", 1)[1]
    assert fetch_when_served(f"http://127.0.0.1:{port}/i") == "web\n"
    assert f"127.0.0.1:{port}->80/tcp" in dk(ctd, "ps", "--filter", f"name={name}")
    r = ctd.docker("run", "-d", "-p", f"127.0.0.1:{port}:80", IMAGE, "sleep", "30")
    assert r.returncode != 0 and b"port is already allocated" in r.stderr, r.stderr
    dk(ctd, "rm", "-f", name)


def test_host_and_none_and_prune(ctd: CtDaemon) -> None:
    out = dk(ctd, "run", "--rm", "--network", "none", IMAGE, "ls", "/sys/class/net")
    assert out.split() == ["lo"]
    out = dk(ctd, "run", "--rm", "--network", "host", IMAGE, "ls", "/sys/class/net")
    assert {"lo", "eth0"} <= set(out.split())  # the host's own interfaces
    a, b = uname("pa"), uname("pb")
    dk(ctd, "network", "create", a)
    dk(ctd, "network", "create", b)
    cid = dk(ctd, "create", "--network", b, IMAGE, "true").strip()
    out = dk(ctd, "network", "prune", "-f")
    assert a in out and b not in out
    dk(ctd, "rm", cid)
    dk(ctd, "network", "rm", b)
