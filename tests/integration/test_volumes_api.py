"""pyrtd's /volumes endpoints, containers' Binds/Mounts/Mounts-in-inspect and system df
over HTTP, pyrt.Client's volume methods, and the `pyrt volume ...` / `pyrt run -v
--mount --tmpfs --volumes-from` CLI against the same daemon (a subprocess on temp roots).
"""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.bundle as bundle
from pyrt.errors import Conflict, InvalidArgument, NotFound
from tests.integration.test_api_containers import CtDaemon
from tests.integration.test_pyrt_cli import CLI

VIMAGE = "volbb:latest"


def full_busybox_tar(tmp: Path) -> bytes:
    root = bundle.make_busybox_rootfs(tmp / f"vol-rootfs-{uuid.uuid4().hex[:8]}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(root, arcname=".")
        ti = tarfile.TarInfo("seed")
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(ti)
        data = b"seeded\n"
        ti = tarfile.TarInfo("seed/file")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


class VolDaemon(CtDaemon):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        try:
            self.client().import_image(io.BytesIO(full_busybox_tar(tmp.parent)), repo="volbb",
                                       tag="latest", changes=['VOLUME ["/seed"]'])
        except BaseException:
            self.cleanup()  # a daemon whose fixture never started must not outlive it
            raise

    def cleanup(self) -> None:
        try:
            if self.proc.poll() is None:
                self.remove_all()
                for v in self.client().volumes():
                    self.client().remove_volume(v["Name"], force=True)
        finally:
            super().cleanup()

    def run(self, cmd: str, **host: object) -> tuple[int, str, str]:
        """Run sh -c cmd with a HostConfig; (exit code, logs, id) - the container is kept."""
        cid = self.create(["sh", "-c", cmd], Image=VIMAGE, HostConfig=host)
        status, _ = self.api("POST", f"/containers/{cid}/start")
        assert status == 204
        _, out = self.api("POST", f"/containers/{cid}/wait")
        _, logs = self.api("GET", f"/containers/{cid}/logs?stdout=1&stderr=1")
        text = b"".join(data for _, data in _frames(logs)).decode()
        return int(out["StatusCode"]), text, cid


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    from tests.integration.test_api_containers import frames

    return frames(data)


@pytest.fixture(scope="module")
def vd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VolDaemon]:
    d = VolDaemon(tmp_path_factory.mktemp("volapi") / "d")
    try:
        yield d
    finally:
        d.cleanup()


def uname() -> str:
    return f"vol-{uuid.uuid4().hex[:8]}"


def test_volume_endpoints_shapes_and_statuses(vd: VolDaemon) -> None:
    name = uname()
    status, out = vd.api("POST", "/volumes/create", {"Name": name, "Labels": {"k": "v"},
                                                    "DriverOpts": {}})
    assert status == 201, out
    assert set(out) == {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options",
                        "Scope"}
    assert (out["Name"], out["Driver"], out["Scope"], out["Labels"], out["Options"]) == \
        (name, "local", "local", {"k": "v"}, {})
    assert out["CreatedAt"].endswith("Z") and out["Mountpoint"].startswith(str(vd.data_root))
    assert vd.api("GET", f"/volumes/{name}") == (200, out)
    status, listed = vd.api("GET", "/volumes")
    assert status == 200 and listed["Warnings"] == [] and out in listed["Volumes"]
    status, listed = vd.api("GET", '/volumes?filters={"label":["k=v"],"dangling":["true"]}')
    assert [v["Name"] for v in listed["Volumes"]] == [name]
    assert vd.api("GET", '/volumes?filters={"nope":["x"]}')[0] == 400
    assert vd.api("POST", "/volumes/create", {"Name": "../etc"})[0] == 400
    assert vd.api("POST", "/volumes/create", {"Name": "x", "Driver": "other"})[0] == 404
    assert vd.api("GET", "/volumes/no-such-volume")[0] == 404
    # in use: 409 until forced
    code, _, cid = vd.run("echo hi > /v/f", Binds=[f"{name}:/v"])
    assert code == 0
    status, err = vd.api("DELETE", f"/volumes/{name}")
    assert status == 409 and "in use" in err["message"]
    status, df = vd.api("GET", "/system/df")
    [mine] = [v for v in df["Volumes"] if v["Name"] == name]
    assert mine["UsageData"] == {"Size": 3, "RefCount": 1}
    assert vd.api("DELETE", f"/containers/{cid}")[0] == 204
    assert vd.api("DELETE", f"/volumes/{name}")[0] == 204
    assert vd.api("DELETE", f"/volumes/{name}")[0] == 404
    # prune: anonymous ones only, unless all=true (API >= 1.42); before 1.42 all of them
    keep = uname()
    vd.api("POST", "/volumes/create", {"Name": keep})
    status, anon = vd.api("POST", "/volumes/create", {})
    status, out = vd.api("POST", "/volumes/prune")
    assert status == 200 and anon["Name"] in out["VolumesDeleted"]
    assert keep not in out["VolumesDeleted"] and isinstance(out["SpaceReclaimed"], int)
    status, out = vd.api("POST", "/v1.41/volumes/prune")
    assert keep in out["VolumesDeleted"]


def test_container_mounts_over_the_api(vd: VolDaemon, tmp_path: Path) -> None:
    host = tmp_path / "made-by-bind"
    code, out, cid = vd.run(
        "cat /seed/file; echo b > /b/f; ls /t; echo n > /n/f",
        Binds=[f"{host}:/b"], Mounts=[
            {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20}},
            {"Type": "volume", "Target": "/n", "VolumeOptions": {"Labels": {"x": "y"}}}])
    assert (code, out) == (0, "seeded\n")
    assert (host / "f").read_text() == "b\n"
    _, info = vd.api("GET", f"/containers/{cid}/json")
    by_dest = {m["Destination"]: m for m in info["Mounts"]}
    assert set(by_dest) == {"/b", "/t", "/n", "/seed"}
    assert by_dest["/t"] == {"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "",
                             "RW": True, "Propagation": ""}
    anon = by_dest["/seed"]["Name"]
    assert vd.api("GET", f"/volumes/{by_dest['/n']['Name']}")[1]["Labels"] == \
        {"x": "y", "com.docker.volume.anonymous": ""}
    status, err = vd.api("POST", "/containers/create", {
        "Image": VIMAGE, "HostConfig": {"Mounts": [{"Type": "bind", "Source": "/nonexistent-x",
                                                    "Target": "/x"}]}})
    assert status == 400 and "bind source path does not exist" in err["message"]
    assert vd.api("DELETE", f"/containers/{cid}?v=1")[0] == 204
    assert vd.api("GET", f"/volumes/{anon}")[0] == 404


def test_client_volume_methods(vd: VolDaemon) -> None:
    c = vd.client()
    name = uname()
    v = c.create_volume(name, labels={"a": "1"})
    assert c.inspect_volume(name) == v
    assert name in [x["Name"] for x in c.volumes({"name": [name]})]
    with pytest.raises(InvalidArgument):
        c.create_volume("bad/name")
    code, _, cid = vd.run("true", Binds=[f"{name}:/x"])
    with pytest.raises(Conflict):
        c.remove_volume(name)
    c.remove_container(cid)
    assert c.prune_volumes({"all": ["true"], "label": ["a=1"]})["VolumesDeleted"] == [name]
    with pytest.raises(NotFound):
        c.inspect_volume(name)


def test_pyrt_cli_volume_commands_and_run_flags(vd: VolDaemon, tmp_path: Path) -> None:
    cli = CLI(f"unix://{vd.sock}")
    name = uname()
    assert cli.ok("volume", "create", "--label", "team=x", name) == f"{name}\n"
    assert ["local", name] in [line.split() for line in cli.ok("volume", "ls").splitlines()]
    assert cli.ok("volume", "ls", "-q", "--filter", "label=team=x") == f"{name}\n"
    assert cli.ok("volume", "inspect", "-f", "{{.Driver}} {{.Labels.team}}", name) == "local x\n"
    host = tmp_path / "cli-bind"
    out = cli.ok("run", "--rm", "-v", f"{name}:/data", "-v", f"{host}:/h", "--tmpfs",
                 "/t:size=1m", "--mount", "type=volume,src=" + name + ",dst=/m,readonly",
                 VIMAGE, "sh", "-c",
                 "echo d > /data/f; echo h > /h/f; grep -c ' /t ' /proc/mounts; "
                 "touch /m/x 2>/dev/null || echo ro")
    assert out == "1\nro\n"
    assert (host / "f").read_text() == "h\n"
    src = cli.ok("create", "-v", f"{name}:/data", VIMAGE, "true").strip()
    assert cli.ok("run", "--rm", "--volumes-from", src, VIMAGE, "cat", "/data/f") == "d\n"
    r = cli("volume", "rm", name)
    assert r.code == 1 and "in use" in r.err
    cli.ok("rm", src)
    assert cli.ok("volume", "rm", name) == f"{name}\n"
    r = cli("volume", "inspect", name)
    assert r.code == 1 and "no such volume" in r.err and r.out == "[]\n"
    anon = cli.ok("volume", "create").strip()
    assert len(anon) == 64
    out = cli.ok("volume", "prune", "-f")
    assert anon in out and "Total reclaimed space" in out
    assert "Local Volumes" in cli.ok("system", "df")


def test_volumes_survive_a_daemon_restart(tmp_path: Path) -> None:
    first = VolDaemon(tmp_path / "d")
    second: VolDaemon | None = None
    try:
        first.api("POST", "/volumes/create", {"Name": "kept"})
        first.api("POST", "/volumes/create", {"Name": "ram", "DriverOpts": {
            "type": "tmpfs", "device": "tmpfs", "o": "size=1m"}})
        code, _, cid = first.run("echo persisted > /k/f; echo r > /r/f",
                                 Binds=["kept:/k", "ram:/r"])
        assert code == 0
        point = first.api("GET", "/volumes/ram")[1]["Mountpoint"]
        first.stop()  # SIGTERM: the daemon goes, its containers and their volumes stay
        second = VolDaemon(tmp_path / "d")
        assert second.api("GET", "/volumes/kept")[0] == 200
        code, out, other = second.run("cat /k/f /r/f", Binds=["kept:/k", "ram:/r"])
        assert (code, out) == (0, "persisted\nr\n")
        assert second.api("DELETE", "/volumes/ram")[0] == 409  # still used by both
        for c in (cid, other):
            assert second.api("DELETE", f"/containers/{c}")[0] == 204
        assert point not in Path("/proc/self/mounts").read_text()
        assert second.api("DELETE", "/volumes/ram")[0] == 204
    finally:
        if second is None and first.proc.poll() is not None:
            second = VolDaemon(tmp_path / "d")  # the containers are removed by a daemon
        (second or first).cleanup()
