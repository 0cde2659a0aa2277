"""docker-py (the `docker` package, a test dependency) against pyrtd's networks: the
networks collection (create with IPAM, get, list with filters, connect, disconnect,
remove, prune) and containers.run with `network=`, `ports=` and networking config. The
daemon runs on temp roots; teardown removes everything it made."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator

import docker
import docker.errors
import pytest
from docker.types import IPAMConfig, IPAMPool

from tests.integration.test_api_containers import IMAGE, CtDaemon
from tests.integration.test_networks_api import fetch_when_served, network_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(scope="module")
def ctd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CtDaemon]:
    yield from network_daemon(tmp_path_factory.mktemp("netpy"))


@pytest.fixture
def dc(ctd: CtDaemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=f"unix://{ctd.sock}", version="1.44", timeout=60)
    yield c
    c.close()


def test_networks_collection(dc: docker.DockerClient) -> None:
    name = f"py-{uuid.uuid4().hex[:8]}"
    third = 200 + secrets.randbelow(50)
    ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=f"10.{third}.30.0/24",
                                             gateway=f"10.{third}.30.1")])
    net = dc.networks.create(name, driver="bridge", ipam=ipam, labels={"x": "y"})
    assert dc.networks.get(name).id == net.id
    assert [n.name for n in dc.networks.list(filters={"label": "x=y"})] == [name]
    assert {n.name for n in dc.networks.list(names=["bridge", "host"])} >= {"bridge", "host"}
    srv = dc.containers.run(IMAGE, ["sleep", "60"], detach=True, network=name)
    net.reload()
    assert srv.id in net.attrs["Containers"]
    assert net.attrs["Containers"][srv.id]["IPv4Address"].startswith(f"10.{third}.30.")
    net.disconnect(srv)
    srv.reload()
    assert name not in srv.attrs["NetworkSettings"]["Networks"]
    net.connect(srv, aliases=["again"], ipv4_address=f"10.{third}.30.77")
    srv.reload()
    got = srv.attrs["NetworkSettings"]["Networks"][name]
    assert got["IPAddress"] == f"10.{third}.30.77" and got["Aliases"] == ["again"]
    with pytest.raises(docker.errors.APIError) as e:
        net.remove()
    assert e.value.status_code == 403
    srv.remove(force=True)
    net.remove()
    with pytest.raises(docker.errors.NotFound):
        dc.networks.get(name)
    spare = dc.networks.create(f"spare-{uuid.uuid4().hex[:6]}")
    assert spare.name in (dc.networks.prune().get("NetworksDeleted") or [])


def test_run_with_ports(dc: docker.DockerClient) -> None:
    c = dc.containers.run(IMAGE, ["sh", "-c", "mkdir /w && echo py > /w/i && exec busybox "
                                  "httpd -f -p 80 -h /w"], detach=True,
                          ports={"80/tcp": ("127.0.0.1", None)})
    try:
        c.reload()
        port = c.ports["80/tcp"][0]["HostPort"]
        assert fetch_when_served(f"http://127.0.0.1:{port}/i") == "py\n"
    finally:
        c.remove(force=True)
