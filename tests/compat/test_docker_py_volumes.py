"""docker-py (the `docker` package, a test dependency) against pyrtd's volumes: the
volumes collection (create, get, list with filters, remove, prune) and containers.run
with `volumes=` (named and host directories, :ro) and `mounts=` (docker.types.Mount of
types volume and tmpfs). The daemon runs on temp roots; teardown removes everything.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from docker.types import Mount

from tests.integration.test_volumes_api import VIMAGE, VolDaemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(scope="module")
def vd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VolDaemon]:
    d = VolDaemon(tmp_path_factory.mktemp("volpy") / "d")
    try:
        yield d
    finally:
        d.cleanup()


@pytest.fixture
def dc(vd: VolDaemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=f"unix://{vd.sock}", version="1.44", timeout=60)
    yield c
    c.close()


def test_volumes_collection(dc: docker.DockerClient) -> None:
    name = f"py-{uuid.uuid4().hex[:8]}"
    v = dc.volumes.create(name, driver="local", labels={"k": "v"},
                          driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    assert v.name == name and v.attrs["Labels"] == {"k": "v"}
    assert dc.volumes.get(name).attrs["Options"]["type"] == "tmpfs"
    assert [x.name for x in dc.volumes.list(filters={"label": "k=v"})] == [name]
    c = dc.containers.run(VIMAGE, ["sh", "-c", "echo in > /v/f; cat /v/f"],
                          volumes={name: {"bind": "/v", "mode": "rw"}}, detach=True)
    assert c.wait(timeout=30)["StatusCode"] == 0 and c.logs() == b"in\n"
    c.remove(v=True)
    with pytest.raises(docker.errors.NotFound):
        dc.volumes.get("py-no-such-volume")
    with pytest.raises(docker.errors.APIError):
        dc.volumes.create("../bad")
    anon = dc.volumes.create()
    pruned = dc.volumes.prune()
    assert anon.name in (pruned["VolumesDeleted"] or []) and name not in pruned["VolumesDeleted"]
    v.remove(force=True)
    assert name not in [x.name for x in dc.volumes.list()]


def test_containers_run_with_volumes_and_mounts(dc: docker.DockerClient, tmp_path: Path
                                                ) -> None:
    host = tmp_path / "py-host"
    host.mkdir()
    (host / "f").write_text("host\n")
    name = f"py-{uuid.uuid4().hex[:8]}"
    c = dc.containers.run(
        VIMAGE, ["sh", "-c", "cat /h/f; touch /h/x 2>/dev/null || echo ro; echo d > /d/f; "
                 "grep -c ' /t tmpfs' /proc/mounts"],
        volumes=[f"{host}:/h:ro"],
        mounts=[Mount("/d", name, type="volume"),
                Mount("/t", None, type="tmpfs", tmpfs_size=1 << 20)],
        detach=True)
    assert c.wait(timeout=30)["StatusCode"] == 0
    assert c.logs() == b"host\nro\n1\n"
    c.reload()
    kinds = {m["Destination"]: m["Type"] for m in c.attrs["Mounts"]}
    assert kinds == {"/h": "bind", "/d": "volume", "/t": "tmpfs", "/seed": "volume"}
    with pytest.raises(docker.errors.APIError) as e:
        dc.volumes.get(name).remove()
    assert e.value.status_code == 409
    c.remove(v=True)
    dc.volumes.get(name).remove()
    assert sorted(os.listdir(host)) == ["f"]
