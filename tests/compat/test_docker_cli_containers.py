"""The real docker CLI (28.x) against pyrtd's container endpoints: run (attached, detached,
--rm, -i, -e/-w/-u/--entrypoint, exit codes), ps, logs, exec, stop/start/restart/kill,
rm -f, inspect, wait, rename, pause/unpause, top, stats --no-stream, cp both ways.

Needs root (pyrtd runs containers); the daemon runs on temp roots and every container
is removed at teardown (CtDaemon.cleanup checks no mount is left).
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_api_containers import IMAGE, CtDaemon
from tests.integration.test_api_system import DOCKER

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not DOCKER.exists(), reason=f"{DOCKER} not installed"),
]


@pytest.fixture(scope="module")
def ctd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CtDaemon]:
    d = CtDaemon(tmp_path_factory.mktemp("ctcli") / "d")
    try:
        yield d
    finally:
        d.cleanup()


def dk(ctd: CtDaemon, *args: str, input: bytes | None = None, code: int = 0
       ) -> subprocess.CompletedProcess[bytes]:
    r = ctd.docker(*args, input=input, timeout=60)
    assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr)
    return r


def out(r: subprocess.CompletedProcess[bytes]) -> str:
    return r.stdout.decode()


def uname() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


def test_run_attached(ctd: CtDaemon) -> None:
    assert out(dk(ctd, "run", "--rm", IMAGE, "echo", "hi")) == "hi\n"
    r = dk(ctd, "run", "--rm", IMAGE, "sh", "-c", "echo o; echo e >&2; exit 3", code=3)
    assert (r.stdout, r.stderr) == (b"o\n", b"e\n")
    assert out(dk(ctd, "run", "--rm", "-i", IMAGE, "cat", input=b"from stdin\n")) == \
        "from stdin\n"
    r = dk(ctd, "run", "--rm", "-e", "FOO=bar", "-w", "/tmp", "-u", "1000:1000", IMAGE,
           "sh", "-c", "echo $FOO; pwd; id -u; id -g")
    assert out(r) == "bar\n/tmp\n1000\n1000\n"
    assert out(dk(ctd, "run", "--rm", "--entrypoint", "echo", IMAGE, "x", "y")) == "x y\n"
    r = dk(ctd, "run", "--rm", IMAGE, "nosuchcmd", code=127)
    assert b"nosuchcmd" in r.stderr
    name = uname()
    assert out(dk(ctd, "run", "--name", name, IMAGE, "sh", "-c", "exit 4", code=4)) == ""
    assert out(dk(ctd, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name)) == \
        "exited 4\n"
    dk(ctd, "rm", name)
    # --rm removed every one of them
    assert out(dk(ctd, "ps", "-aq")) == ""


def test_detached_lifecycle(ctd: CtDaemon, tmp_path: Path) -> None:
    name = uname()
    cid = out(dk(ctd, "run", "-d", "--name", name, IMAGE, "sleep", "60")).strip()
    assert len(cid) == 64
    r = dk(ctd, "ps", "--format", "{{.ID}} {{.Names}} {{.Image}} {{.Command}} {{.Status}}")
    assert f"{cid[:12]} {name} {IMAGE} \"sleep 60\" Up" in out(r)
    info = json.loads(out(dk(ctd, "inspect", name)))[0]
    assert info["Id"] == cid and info["State"]["Running"] is True
    assert info["Config"]["Cmd"] == ["sleep", "60"]
    # exec, with the exit code passed through and stdin
    assert out(dk(ctd, "exec", name, "echo", "hi")) == "hi\n"
    dk(ctd, "exec", name, "sh", "-c", "exit 3", code=3)
    assert out(dk(ctd, "exec", "-i", name, "cat", input=b"in\n")) == "in\n"
    assert out(dk(ctd, "exec", "-e", "V=1", "-w", "/tmp", name, "sh", "-c", "echo $V; pwd")) == \
        "1\n/tmp\n"
    # top, stats
    r = dk(ctd, "top", name)
    assert "PID" in out(r).splitlines()[0] and "sleep 60" in out(r)
    r = dk(ctd, "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", name)
    assert out(r) == f"{name} 1\n"
    # pause / unpause
    dk(ctd, "pause", name)
    assert "(Paused)" in out(dk(ctd, "ps", "--format", "{{.Status}}", "-f", f"name={name}"))
    dk(ctd, "unpause", name)
    assert out(dk(ctd, "inspect", "-f", "{{.State.Status}}", name)) == "running\n"
    # cp both ways
    src = tmp_path / "in.txt"
    src.write_text("copied in\n")
    dk(ctd, "cp", str(src), f"{name}:/tmp/in.txt")
    assert out(dk(ctd, "exec", name, "cat", "/tmp/in.txt")) == "copied in\n"
    dk(ctd, "exec", name, "sh", "-c", "echo made inside > /tmp/out.txt")
    dk(ctd, "cp", f"{name}:/tmp/out.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "made inside\n"
    r = dk(ctd, "cp", f"{name}:/nope", str(tmp_path / "x"), code=1)
    assert b"No such" in r.stderr or b"not find" in r.stderr
    # rename
    new = uname()
    dk(ctd, "rename", name, new)
    assert out(dk(ctd, "ps", "--format", "{{.Names}}", "-f", f"id={cid}")) == f"{new}\n"
    dk(ctd, "rename", new, name)
    # stop / start / restart / kill / wait
    dk(ctd, "stop", "-t", "1", name)
    assert out(dk(ctd, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name)) == \
        "exited 137\n"
    dk(ctd, "start", name)
    assert out(dk(ctd, "inspect", "-f", "{{.State.Running}}", name)) == "true\n"
    dk(ctd, "restart", "-t", "1", name)
    assert out(dk(ctd, "inspect", "-f", "{{.State.Running}} {{.RestartCount}}", name)) \
        .startswith("true")
    dk(ctd, "kill", name)
    assert out(dk(ctd, "wait", name)) == "137\n"
    dk(ctd, "kill", name, code=1)  # not running
    dk(ctd, "start", name)
    dk(ctd, "rm", name, code=1)  # running: refused without -f
    dk(ctd, "rm", "-f", name)
    r = dk(ctd, "inspect", name, code=1)
    assert f"No such object: {name}" in r.stderr.decode()


def test_logs(ctd: CtDaemon) -> None:
    name = uname()
    dk(ctd, "run", "--name", name, IMAGE, "sh", "-c",
       "echo one; echo two >&2; sleep 0.2; echo three")
    r = dk(ctd, "logs", name)
    assert out(r) == "one\nthree\n" and r.stderr == b"two\n"
    assert out(dk(ctd, "logs", "--tail", "1", name)) == "three\n"
    r = dk(ctd, "logs", "-t", name)
    assert out(r).splitlines()[0].endswith("Z one")
    dk(ctd, "rm", name)
    tty = uname()
    dk(ctd, "run", "-t", "--name", tty, IMAGE, "echo", "with tty")
    assert out(dk(ctd, "logs", tty)).replace("\r\n", "\n") == "with tty\n"
    dk(ctd, "rm", tty)
    follow = uname()
    dk(ctd, "run", "-d", "--name", follow, IMAGE, "sh", "-c", "echo a; sleep 1; echo b")
    assert out(dk(ctd, "logs", "-f", follow)) == "a\nb\n"
    dk(ctd, "rm", "-f", follow)


def test_errors(ctd: CtDaemon) -> None:
    r = dk(ctd, "start", "nosuch-container", code=1)
    assert "No such container: nosuch-container" in r.stderr.decode()
    name = uname()
    dk(ctd, "create", "--name", name, IMAGE, "true")
    r = dk(ctd, "create", "--name", name, IMAGE, "true", code=1)
    assert "is already in use" in r.stderr.decode()
    r = dk(ctd, "run", "--name", name, IMAGE, "true", code=125)
    assert "is already in use" in r.stderr.decode()
    dk(ctd, "rm", name)
    assert ctd.client().ping() and ctd.proc.poll() is None


def test_start_attach_diff_commit_export_prune(ctd: CtDaemon, tmp_path: Path) -> None:
    name = uname()
    dk(ctd, "create", "--name", name, IMAGE, "sh", "-c", "echo started; exit 2")
    for _ in range(2):  # each start -a shows that run's output only
        r = dk(ctd, "start", "-a", name, code=2)
        assert out(r) == "started\n"
    at = uname()
    dk(ctd, "run", "-d", "--name", at, IMAGE, "sh", "-c", "sleep 1; echo later")
    assert out(dk(ctd, "attach", at)) == "later\n"
    cm = uname()
    dk(ctd, "run", "-d", "--name", cm, IMAGE, "sh", "-c", "echo x > /root/f; sleep 60")
    deadline = time.monotonic() + 10
    while "A /root/f" not in out(dk(ctd, "diff", cm)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert out(dk(ctd, "diff", cm)).splitlines() == ["C /root", "A /root/f"]
    image = f"cli-commit-{uuid.uuid4().hex[:6]}:1"
    assert out(dk(ctd, "commit", "-m", "msg", "-c", "ENV Z=1", cm, image)).startswith("sha256:")
    assert out(dk(ctd, "run", "--rm", image, "sh", "-c", "cat /root/f; echo $Z")) == "x\n1\n"
    dk(ctd, "rmi", image)
    dk(ctd, "export", "-o", str(tmp_path / "fs.tar"), cm)
    with tarfile.open(tmp_path / "fs.tar") as tf:
        names = {n.lstrip("./") for n in tf.getnames()}
    assert {"bin/busybox", "root/f"} <= names
    dk(ctd, "rm", "-f", cm)
    # prune takes the stopped ones (name, at) and leaves a running one
    keep = uname()
    dk(ctd, "run", "-d", "--name", keep, IMAGE, "sleep", "60")
    r = dk(ctd, "container", "prune", "-f")
    assert "Deleted Containers:" in out(r)
    assert out(dk(ctd, "ps", "-a", "--format", "{{.Names}}")) == f"{keep}\n"
    dk(ctd, "rm", "-f", keep)


def test_run_with_a_terminal(ctd: CtDaemon) -> None:
    """docker run -it under script(1), which gives the CLI a pty."""
    env = dict(os.environ, DOCKER_HOST=f"unix://{ctd.sock}",
               DOCKER_CONFIG=str(ctd.tmp / "docker-config"))
    r = subprocess.run(["script", "-qec", f"{DOCKER} run --rm -it {IMAGE} sh -c 'tty; exit 4'",
                        "/dev/null"], env=env, capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert b"/dev/pts/" in r.stdout
