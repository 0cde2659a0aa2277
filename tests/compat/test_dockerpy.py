"""docker-py 7.1 (the `docker` package from PyPI) against a pyrtd on a temporary socket and
root: ping/version, containers (run with its options, list/get/logs/exec_run, the
lifecycle, rename, attrs) and images (pull from a local docker-registry, list/get/tag/
remove, save and load).

The daemon is tests/integration's CtDaemon (a busybox image `ctbb:latest` imported at
start); the image tests push that image to a docker-registry on 127.0.0.1 through the
daemon and pull it back. Every container is removed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_api_containers import IMAGE, CtDaemon
from tests.registry_fixtures import Registry

docker = pytest.importorskip("docker", reason="docker-py missing: pip install '.[test]'")
from docker.errors import APIError, ContainerError, ImageNotFound, NotFound  # noqa: E402
from docker.models.containers import Container  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@dataclass
class Env:
    daemon: CtDaemon
    client: docker.DockerClient


@pytest.fixture(scope="module")
def env(ctdaemon: CtDaemon) -> Iterator[Env]:
    client = docker.DockerClient(base_url=f"unix://{ctdaemon.sock}", version="1.44",
                                 timeout=60)
    yield Env(ctdaemon, client)
    client.close()


@pytest.fixture
def dc(env: Env) -> Iterator[docker.DockerClient]:
    yield env.client
    # each test leaves no container behind (removed here so one failure does not fail the
    # next tests too), and the daemon is still serving
    left = env.client.containers.list(all=True)
    for c in left:
        c.remove(force=True)
    assert [c.name for c in left] == []
    assert env.daemon.proc.poll() is None


def uname() -> str:
    return f"dpy-{uuid.uuid4().hex[:8]}"


def wait_for(cond: object, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- system ---------------------------------------------------------------------------------


def test_ping_and_version(dc: docker.DockerClient) -> None:
    assert dc.ping() is True
    v = dc.version()
    assert v["ApiVersion"] == "1.44" and v["MinAPIVersion"] == "1.24"
    assert v["Os"] == "linux" and v["KernelVersion"] == os.uname().release
    assert dc.api.api_version == "1.44"
    info = dc.info()
    assert info["Driver"] == "overlay2" and info["Images"] >= 1


# -- containers.run -------------------------------------------------------------------------


def test_run_attached_returns_output(dc: docker.DockerClient) -> None:
    # not detached: run waits for the exit and returns the container's stdout
    assert dc.containers.run(IMAGE, "echo hello", remove=True) == b"hello\n"
    assert dc.containers.run(IMAGE, ["sh", "-c", "echo a b"], remove=True) == b"a b\n"
    out = dc.containers.run(IMAGE, ["sh", "-c", "echo $FOO $BAR; pwd; id -u; id -g"],
                            environment={"FOO": "x", "BAR": "y z"}, working_dir="/tmp",
                            user="1000:1001", remove=True)
    assert out == b"x y z\n/tmp\n1000\n1001\n"
    out = dc.containers.run(IMAGE, ["env"], environment=["ONE=1"], remove=True)
    assert b"ONE=1\n" in out
    # the entrypoint, as a string and as a list, with the command as its arguments
    assert dc.containers.run(IMAGE, "x y", entrypoint="echo", remove=True) == b"x y\n"
    assert dc.containers.run(IMAGE, ["1", "2"], entrypoint=["echo", "0"],
                             remove=True) == b"0 1 2\n"
    # stderr only when asked for
    out = dc.containers.run(IMAGE, ["sh", "-c", "echo o; echo e >&2"], stdout=False,
                            stderr=True, remove=True)
    assert out == b"e\n"


def test_run_failure_raises_container_error(dc: docker.DockerClient) -> None:
    name = uname()
    with pytest.raises(ContainerError) as ei:
        dc.containers.run(IMAGE, ["sh", "-c", "echo bad >&2; exit 3"], name=name)
    assert ei.value.exit_status == 3 and ei.value.stderr == b"bad\n"
    c = dc.containers.get(name)
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 3
    c.remove()
    # a command that does not exist fails the start, as with dockerd: 400 from start, and
    # the container stays (docker-py removes it only after a wait)
    name = uname()
    with pytest.raises(APIError) as ei2:
        dc.containers.run(IMAGE, "nosuchcmd", name=name, remove=True)
    assert ei2.value.status_code == 400
    assert "executable file not found" in str(ei2.value.explanation)
    c = dc.containers.get(name)
    assert c.attrs["State"]["ExitCode"] == 127
    c.remove()
    # (create, not run: run would pull the missing image from Docker Hub)
    with pytest.raises(ImageNotFound):
        dc.containers.create("no-such-image:1", "true")


def test_run_detached_get_attrs_and_list(dc: docker.DockerClient) -> None:
    name = uname()
    c = dc.containers.run(IMAGE, ["sleep", "60"], name=name, detach=True,
                          labels={"dpy": name}, environment={"E": "1"},
                          working_dir="/tmp", user="1000")
    try:
        assert isinstance(c, Container) and len(c.id) == 64 and c.name == name
        c.reload()
        assert c.status == "running"
        a = c.attrs
        assert a["Id"] == c.id and a["Name"] == f"/{name}"
        assert a["Config"]["Cmd"] == ["sleep", "60"] and a["Config"]["Image"] == IMAGE
        assert "E=1" in a["Config"]["Env"] and a["Config"]["WorkingDir"] == "/tmp"
        assert a["Config"]["User"] == "1000" and a["Config"]["Labels"] == {"dpy": name}
        assert a["State"]["Running"] is True and a["State"]["Pid"] > 0
        assert c.labels == {"dpy": name}
        assert c.image is not None and IMAGE in c.image.tags
        # get by name, by id and by a unique id prefix
        assert dc.containers.get(name).id == c.id
        assert dc.containers.get(c.id).name == name
        assert dc.containers.get(c.id[:12]).id == c.id
        with pytest.raises(NotFound):
            dc.containers.get("no-such-container")

        stopped = dc.containers.create(IMAGE, "true", name=uname(), labels={"dpy": name})
        try:
            assert stopped.status == "created"
            ids = {x.id for x in dc.containers.list()}
            assert c.id in ids and stopped.id not in ids
            ids = {x.id for x in dc.containers.list(all=True)}
            assert {c.id, stopped.id} <= ids
            by_label = dc.containers.list(all=True, filters={"label": f"dpy={name}"})
            assert {x.id for x in by_label} == {c.id, stopped.id}
            assert [x.id for x in dc.containers.list(filters={"name": name})] == [c.id]
            assert [x.id for x in dc.containers.list(
                all=True, filters={"status": "created", "label": f"dpy={name}"})] == \
                [stopped.id]
            assert [x.id for x in dc.containers.list(filters={"id": c.id[:12]})] == [c.id]
            assert dc.containers.list(all=True, filters={"label": "dpy=nothing"}) == []
            assert dc.containers.list(all=True, limit=1)[0].id in ids
            sparse = dc.containers.list(all=True, sparse=True,
                                        filters={"label": f"dpy={name}"})
            assert {x.id for x in sparse} == {c.id, stopped.id}
        finally:
            stopped.remove()
    finally:
        c.remove(force=True)
    with pytest.raises(NotFound):
        dc.containers.get(c.id)


def test_run_name_conflict(dc: docker.DockerClient) -> None:
    name = uname()
    c = dc.containers.create(IMAGE, "true", name=name)
    try:
        with pytest.raises(APIError) as ei:
            dc.containers.create(IMAGE, "true", name=name)
        assert ei.value.status_code == 409
        assert f'"/{name}" is already in use' in str(ei.value.explanation)
    finally:
        c.remove()


# -- logs -----------------------------------------------------------------------------------


def test_logs(dc: docker.DockerClient) -> None:
    c = dc.containers.run(IMAGE, ["sh", "-c", "echo one; echo two >&2; echo three"],
                          detach=True, name=uname())
    try:
        assert c.wait(timeout=30) == {"StatusCode": 0}
        assert c.logs() == b"one\ntwo\nthree\n" or sorted(c.logs().splitlines()) == \
            [b"one", b"three", b"two"]
        assert c.logs(stderr=False) == b"one\nthree\n"
        assert c.logs(stdout=False) == b"two\n"
        assert c.logs(stderr=False, tail=1) == b"three\n"
        stamped = c.logs(stderr=False, timestamps=True).decode().splitlines()
        assert [line.split(" ", 1)[1] for line in stamped] == ["one", "three"]
        assert all(line.split(" ", 1)[0].endswith("Z") for line in stamped)
        assert c.logs(stderr=False, since=int(time.time()) + 3600) == b""
        # a stream of an exited container ends by itself
        assert b"".join(c.logs(stream=True, stderr=False)) == b"one\nthree\n"
    finally:
        c.remove()


def test_logs_follow(dc: docker.DockerClient) -> None:
    c = dc.containers.run(IMAGE, ["sh", "-c", "echo a; sleep 1; echo b"], detach=True,
                          name=uname())
    try:
        start = time.monotonic()
        chunks = list(c.logs(stream=True, follow=True))
        # follow waited for the second line, written a second later, then ended with the exit
        assert b"".join(chunks) == b"a\nb\n" and time.monotonic() - start >= 0.5
    finally:
        c.remove(force=True)


# -- exec -----------------------------------------------------------------------------------


def test_exec_run(dc: docker.DockerClient) -> None:
    c = dc.containers.run(IMAGE, ["sleep", "60"], detach=True, name=uname())
    try:
        r = c.exec_run("echo hi")
        assert (r.exit_code, r.output) == (0, b"hi\n")
        r = c.exec_run(["sh", "-c", "exit 7"])
        assert r.exit_code == 7
        r = c.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
        assert r.output == (b"out\n", b"err\n")
        r = c.exec_run(["sh", "-c", "echo err >&2"], stdout=False, demux=True)
        assert r.output == (None, b"err\n")
        r = c.exec_run(["sh", "-c", "echo $A $B"], environment={"A": "1", "B": "two"})
        assert r.output == b"1 two\n"
        r = c.exec_run(["sh", "-c", "echo $A"], environment=["A=list"])
        assert r.output == b"list\n"
        assert c.exec_run("pwd", workdir="/tmp").output == b"/tmp\n"
        assert c.exec_run(["sh", "-c", "id -u; id -g"], user="1234:99").output == b"1234\n99\n"
        r = c.exec_run("nosuchcmd")
        assert r.exit_code == 127
        # a streamed exec yields its output; the exit code is read back by inspect
        r = c.exec_run(["sh", "-c", "echo 1; sleep 0.2; echo 2"], stream=True)
        assert r.exit_code is None and b"".join(r.output) == b"1\n2\n"
        # detached: the process runs on without us
        # (docker-py reads the exit code at once: null while it runs, which must be there)
        r = c.exec_run(["sh", "-c", "sleep 0.5; echo done > /tmp/d"], detach=True)
        assert r.output == "" and r.exit_code is None  # the (empty) response text
        wait_for(lambda: c.exec_run("cat /tmp/d").output == b"done\n", "the detached exec")
        # with a TTY the streams are one
        r = c.exec_run(["sh", "-c", "echo o; echo e >&2"], tty=True)
        assert r.output.replace(b"\r\n", b"\n") == b"o\ne\n"
    finally:
        c.remove(force=True)
    stopped = dc.containers.create(IMAGE, "true", name=uname())
    try:
        with pytest.raises(APIError) as ei:
            stopped.exec_run("true")
        assert ei.value.status_code == 409 and "not running" in str(ei.value.explanation)
    finally:
        stopped.remove()


# -- lifecycle ------------------------------------------------------------------------------


def test_stop_start_restart_kill_wait(dc: docker.DockerClient) -> None:
    name = uname()
    c = dc.containers.run(IMAGE, ["sleep", "60"], detach=True, name=name)
    try:
        started = c.attrs["State"]["StartedAt"]
        c.stop(timeout=1)
        c.reload()
        assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 137
        assert c.wait(timeout=10)["StatusCode"] == 137
        c.start()
        c.reload()
        assert c.status == "running" and c.attrs["State"]["StartedAt"] != started
        pid = c.attrs["State"]["Pid"]
        c.restart(timeout=1)
        c.reload()
        assert c.status == "running" and c.attrs["State"]["Pid"] != pid
        c.kill(signal="SIGKILL")
        assert c.wait(timeout=10) == {"StatusCode": 137}
        c.reload()
        assert c.status == "exited"
        with pytest.raises(APIError) as ei:
            c.kill()
        assert ei.value.status_code == 409 and "is not running" in str(ei.value.explanation)
        c.start()
        with pytest.raises(APIError) as ei:
            c.remove()
        assert ei.value.status_code == 409
        c.pause()
        c.reload()
        assert c.status == "paused"
        c.unpause()
        c.reload()
        assert c.status == "running"
    finally:
        c.remove(force=True)
    with pytest.raises(NotFound):
        dc.containers.get(name)


def test_wait_for_exit_code_and_kill_signal(dc: docker.DockerClient) -> None:
    c = dc.containers.run(IMAGE, ["sh", "-c", "trap 'exit 42' USR1; while :; do sleep 0.1; done"],
                          detach=True, name=uname())
    try:
        # the trap is set once the shell runs its loop: retry the signal until it exits
        deadline = time.monotonic() + 10
        while True:
            c.kill(signal="SIGUSR1")
            try:
                res = c.wait(timeout=0.5)
                break
            except Exception:  # requests' ReadTimeout: still running
                assert time.monotonic() < deadline, "the container ignored SIGUSR1"
        assert res == {"StatusCode": 42}
        r = dc.containers.run(IMAGE, ["sh", "-c", "exit 5"], detach=True, name=uname())
        try:
            assert r.wait(timeout=30)["StatusCode"] == 5
        finally:
            r.remove()
    finally:
        c.remove(force=True)


def test_rename_and_remove(dc: docker.DockerClient) -> None:
    name, new = uname(), uname()
    c = dc.containers.create(IMAGE, "true", name=name)
    try:
        c.rename(new)
        c.reload()
        assert c.name == new and dc.containers.get(new).id == c.id
        with pytest.raises(NotFound):
            dc.containers.get(name)
        other = dc.containers.create(IMAGE, "true", name=name)
        try:
            with pytest.raises(APIError) as ei:
                other.rename(new)
            assert ei.value.status_code == 409
        finally:
            other.remove()
    finally:
        c.remove()
    with pytest.raises(NotFound):
        c.reload()
    with pytest.raises(NotFound):
        dc.api.remove_container("no-such-container")
    # force removes a running container
    r = dc.containers.run(IMAGE, ["sleep", "60"], detach=True, name=uname())
    r.remove(force=True)
    with pytest.raises(NotFound):
        dc.containers.get(r.id)


def test_commit_with_a_config(dc: docker.DockerClient) -> None:
    c = dc.containers.run(IMAGE, ["sh", "-c", "echo made > /made"], detach=True,
                          name=uname(), environment={"KEPT": "1"})
    repo = f"dpy/commit-{uname()}"
    try:
        assert c.wait()["StatusCode"] == 0
        image = c.commit(repo, "v1", message="with conf", changes=["LABEL by=change"],
                         conf={"Cmd": ["sh", "-c", "cat /made; echo $KEPT $ADDED"],
                               "Env": ["ADDED=2"], "Labels": {"by": "conf", "x": "y"}})
        cfg = image.attrs["Config"]
        assert cfg["Labels"] == {"by": "change", "x": "y"}
        assert cfg["Env"] == ["ADDED=2", "KEPT=1"]
        out = dc.containers.run(f"{repo}:v1", remove=True)
        assert out == b"made\n1 2\n"
        with pytest.raises(APIError) as ei:
            c.commit(repo, "bad", conf={"Cmd": 7})
        assert ei.value.status_code == 400 and "Cmd" in str(ei.value)
    finally:
        c.remove(force=True)
        with contextlib.suppress(NotFound):
            dc.images.remove(f"{repo}:v1")


# -- images ---------------------------------------------------------------------------------


def test_images_push_pull_list_get_tag_remove(dc: docker.DockerClient, registry: Registry
                                              ) -> None:
    local = dc.images.get(IMAGE)
    assert local.id.startswith("sha256:") and IMAGE in local.tags
    repo = f"{registry.host}/dpy/bb"
    assert local.tag(repo, "v1") is True
    assert f"{repo}:v1" in dc.images.get(local.id).tags
    # push through the daemon to the registry, with docker's progress stream
    lines = list(dc.images.push(repo, tag="v1", stream=True, decode=True))
    assert not [x for x in lines if "error" in x or "errorDetail" in x], lines
    assert any(str(x.get("status", "")).startswith("v1: digest: sha256:") for x in lines), lines
    dc.images.remove(f"{repo}:v1")
    with pytest.raises(ImageNotFound):
        dc.images.get(f"{repo}:v1")

    pulled = dc.images.pull(repo, tag="v1")
    assert pulled.id == local.id and f"{repo}:v1" in pulled.tags
    assert pulled.attrs["RepoDigests"] and pulled.attrs["RepoDigests"][0].startswith(
        f"{repo}@sha256:")
    # all_tags: every tag of the repository (here its one tag), as a list
    assert [i.id for i in dc.images.pull(repo, all_tags=True)] == [local.id]
    # the pulled image runs
    assert dc.containers.run(f"{repo}:v1", "echo pulled", remove=True) == b"pulled\n"
    with pytest.raises(NotFound):
        dc.images.pull(f"{registry.host}/dpy/missing", tag="v1")

    ids = [i.id for i in dc.images.list()]
    assert ids.count(local.id) == 1
    assert [i.id for i in dc.images.list(name=repo)] == [local.id]
    assert dc.images.list(name="nothing-like-this") == []
    assert [i.id for i in dc.images.list(filters={"reference": f"{repo}:*"})] == [local.id]
    assert dc.images.list(filters={"dangling": True}) == []
    assert local.id in {i.id for i in dc.images.list(all=True)}

    img = dc.images.get(f"{repo}:v1")
    assert img.tag("dpy/other", "t2")
    assert sorted(dc.images.get(local.id).tags) == sorted([IMAGE, f"{repo}:v1",
                                                          "dpy/other:t2"])
    assert img.history()[0]["Id"] == local.id
    with pytest.raises(APIError) as ei:  # by id, in use under several names
        dc.images.remove(local.id)
    assert ei.value.status_code == 409
    dc.images.remove("dpy/other:t2")
    dc.images.remove(f"{repo}:v1")
    assert dc.images.get(local.id).tags == [IMAGE]
    with pytest.raises(ImageNotFound):
        dc.images.remove("no/such:1")
    with pytest.raises(ImageNotFound):
        dc.images.get("no/such:1")


def test_image_save_and_load(dc: docker.DockerClient, tmp_path: Path) -> None:
    local = dc.images.get(IMAGE)
    local.tag("dpy/saved", "1")
    archive = tmp_path / "saved.tar"
    with archive.open("wb") as f:
        for chunk in dc.images.get("dpy/saved:1").save(named="dpy/saved:1"):
            f.write(chunk)
    assert archive.stat().st_size > 1024
    # a container made from the image does not stop an untag while another name is left
    # (dockerd's rule); by id it is refused
    user = dc.containers.create("dpy/saved:1", "true", name=uname())
    try:
        dc.images.remove("dpy/saved:1")
        with pytest.raises(APIError) as ei:
            dc.images.remove(local.id)
        assert ei.value.status_code == 409
        assert user.image is not None and user.image.id == local.id
    finally:
        user.remove()
    with pytest.raises(ImageNotFound):
        dc.images.get("dpy/saved:1")
    loaded = dc.images.load(archive.read_bytes())
    assert [i.id for i in loaded] == [local.id]
    assert "dpy/saved:1" in dc.images.get(local.id).tags
    assert dc.containers.run("dpy/saved:1", "echo loaded", remove=True) == b"loaded\n"
    dc.images.remove("dpy/saved:1")
    assert dc.images.get(local.id).tags == [IMAGE]
