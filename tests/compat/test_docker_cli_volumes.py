"""The real docker CLI (28.x) against pyrtd's volumes: docker volume create/ls/inspect/
rm/prune, docker run -v (named, anonymous, host dirs, :ro), --mount (volume, bind, tmpfs),
--tmpfs, --volumes-from, rm -v, inspect's Mounts and docker system df.

Needs root; the daemon runs on temp roots, and every container and volume is removed at
teardown (CtDaemon.cleanup checks that no mount is left).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_api_system import DOCKER
from tests.integration.test_volumes_api import VIMAGE, VolDaemon

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not DOCKER.exists(), reason=f"{DOCKER} not installed"),
]


@pytest.fixture(scope="module")
def vd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VolDaemon]:
    d = VolDaemon(tmp_path_factory.mktemp("volcli") / "d")
    try:
        yield d
    finally:
        d.cleanup()


def dk(vd: VolDaemon, *args: str, code: int = 0) -> subprocess.CompletedProcess[bytes]:
    r = vd.docker(*args, timeout=60)
    assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr)
    return r


def out(r: subprocess.CompletedProcess[bytes]) -> str:
    return r.stdout.decode()


def uname() -> str:
    return f"dv-{uuid.uuid4().hex[:8]}"


def test_docker_volume_commands(vd: VolDaemon) -> None:
    name = uname()
    assert out(dk(vd, "volume", "create", "--label", "a=b", name)) == f"{name}\n"
    info = json.loads(out(dk(vd, "volume", "inspect", name)))
    assert info[0]["Name"] == name and info[0]["Labels"] == {"a": "b"}
    assert info[0]["Driver"] == "local" and info[0]["Scope"] == "local"
    assert out(dk(vd, "volume", "ls", "-q", "--filter", "label=a=b")) == f"{name}\n"
    assert name in out(dk(vd, "volume", "ls", "--filter", "dangling=true"))
    ram = uname()
    dk(vd, "volume", "create", "-d", "local", "-o", "type=tmpfs", "-o", "device=tmpfs",
       "-o", "o=size=1m", ram)
    assert json.loads(out(dk(vd, "volume", "inspect", ram)))[0]["Options"] == \
        {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert out(dk(vd, "run", "--rm", "-v", f"{ram}:/r", VIMAGE, "sh", "-c",
                  "grep -c ' /r tmpfs ' /proc/mounts")) == "1\n"
    dk(vd, "run", "--name", name + "-c", "-v", f"{name}:/data", VIMAGE, "sh", "-c",
       "echo kept > /data/f")
    r = dk(vd, "volume", "rm", name, code=1)
    assert b"in use" in r.stderr
    dk(vd, "rm", name + "-c")
    assert out(dk(vd, "run", "--rm", "-v", f"{name}:/data:ro", VIMAGE, "sh", "-c",
                  "cat /data/f; touch /data/g 2>/dev/null || echo ro")) == "kept\nro\n"
    assert out(dk(vd, "volume", "rm", name, ram)) == f"{name}\n{ram}\n"
    r = dk(vd, "volume", "inspect", name, code=1)
    assert b"no such volume" in r.stderr.lower()
    anon = out(dk(vd, "volume", "create")).strip()
    named = uname()
    dk(vd, "volume", "create", named)
    pruned = out(dk(vd, "volume", "prune", "-f"))
    assert anon in pruned and named not in pruned
    assert named in out(dk(vd, "volume", "prune", "-a", "-f"))


def test_docker_run_volume_flags(vd: VolDaemon, tmp_path: Path) -> None:
    host = tmp_path / "h"  # made by -v (--mount needs it at create: made here, as docker)
    host.mkdir()
    cname = uname()
    dk(vd, "run", "--name", cname, "-v", "/anon", "-v", f"{host}:/h",
       "--mount", "type=tmpfs,dst=/t,tmpfs-size=1048576",
       "--mount", f"type=bind,src={host},dst=/hb,readonly",
       "--tmpfs", "/t2:size=1m,mode=1777", VIMAGE, "sh", "-c",
       "echo a > /anon/f; echo h > /h/f; cat /seed/file; touch /hb/x 2>/dev/null || echo ro")
    assert out(dk(vd, "logs", cname)) == "seeded\nro\n"
    assert (host / "f").read_text() == "h\n"
    mounts = json.loads(out(dk(vd, "inspect", "-f", "{{json .Mounts}}", cname)))
    by_dest = {m["Destination"]: m for m in mounts}
    assert set(by_dest) == {"/anon", "/h", "/t", "/hb", "/seed"}
    assert by_dest["/hb"]["RW"] is False and by_dest["/h"]["Type"] == "bind"
    anon = by_dest["/anon"]["Name"]
    assert out(dk(vd, "run", "--rm", "--volumes-from", cname, VIMAGE, "cat", "/anon/f",
                  "/h/f")) == "a\nh\n"
    r = dk(vd, "run", "--rm", "--mount", "type=bind,src=/no/such/dir,dst=/x", VIMAGE, "true",
           code=125)
    assert b"bind source path does not exist" in r.stderr
    assert "Local Volumes" in out(dk(vd, "system", "df"))
    dk(vd, "rm", "-v", cname)
    assert anon not in out(dk(vd, "volume", "ls", "-q"))
    rm_anon = dk(vd, "run", "--rm", "-v", "/gone", VIMAGE, "true")
    assert rm_anon.returncode == 0
    left = out(dk(vd, "volume", "ls", "-q")).split()
    for v in left:
        info = json.loads(out(dk(vd, "volume", "inspect", v)))[0]
        assert "com.docker.volume.anonymous" not in info["Labels"], info
