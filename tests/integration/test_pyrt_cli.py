"""The `pyrt` CLI as a subprocess against a pyrtd subprocess on temp roots (PYRT_HOST set):
output and exit statuses of each command, the daemon autostart, the hello-world pull
falling back to the embedded image (docker.io is unreachable here), pulls and pushes
with a local registry, and `run -it` through a pty (raw mode, size, SIGWINCH, detach
keys)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import tarfile
import termios
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bundle import pyrt_pythonpath, suite_cgroup_parent
from tests.integration.test_api_system import PyrtdProcess

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ls", "cat", "echo", "sleep", "id", "pwd", "env", "true", "stty", "tty")


@dataclass
class Run:
    code: int
    out: str
    err: str


class CLI:
    def __init__(self, host: str, env: dict[str, str] | None = None) -> None:
        self.host = host
        self.env = {**os.environ, "PYTHONPATH": pyrt_pythonpath(), "PYRT_HOST": host,
                    "PYRT_NO_AUTOSTART": "1", **(env or {})}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pyrt.cli.app", *args]

    def __call__(self, *args: str, input: bytes | None = None, timeout: float = 60,
                 env: dict[str, str] | None = None) -> Run:
        p = subprocess.run(self.argv(*args), input=input, capture_output=True,
                           env={**self.env, **(env or {})}, timeout=timeout, check=False,
                           cwd="/")
        return Run(p.returncode, p.stdout.decode(errors="replace"),
                   p.stderr.decode(errors="replace"))

    def ok(self, *args: str, **kw: object) -> str:
        r = self(*args, **kw)  # type: ignore[arg-type]
        assert r.code == 0, (args, r)
        return r.out


def make_rootfs_tar(tmp: Path) -> Path:
    root = tmp / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "tmp").mkdir()
    (root / "bin" / "busybox").write_bytes(BUSYBOX.read_bytes())
    (root / "bin" / "busybox").chmod(0o755)
    for a in APPLETS:
        (root / "bin" / a).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "nobody:x:65534:65534::/:/bin/sh\n")
    out = tmp / "rootfs.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(root, arcname=".")
    return out


@dataclass
class Env:
    daemon: PyrtdProcess
    cli: CLI
    tmp: Path
    image: str  # a busybox image imported with `pyrt import`


def _remove_all_containers(d: PyrtdProcess) -> None:
    with contextlib.suppress(Exception):
        c = d.client()
        for ct in c.containers(all=True):
            with contextlib.suppress(Exception):
                c.remove_container(ct["Id"], force=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("pyrtcli")
    d = PyrtdProcess(tmp / "d")
    try:
        cli = CLI(f"unix://{d.sock}")
        tar = make_rootfs_tar(tmp)
        image = f"bb-{uuid.uuid4().hex[:6]}:1"
        r = cli("import", "-c", 'CMD ["/bin/sh"]', str(tar), image)
        assert r.code == 0 and r.out.startswith("sha256:"), r
        yield Env(d, cli, tmp, image)
    finally:
        _remove_all_containers(d)
        d.cleanup()


# -- system -----------------------------------------------------------------------------------


def test_version_info_df(env: Env) -> None:
    out = env.cli.ok("version")
    assert out.startswith("Client:\n Version:") and "Server: pyrt engine" in out
    v = json.loads(env.cli.ok("version", "--format", "json"))
    assert v["Client"]["ApiVersion"] == v["Server"]["ApiVersion"] == "1.44"
    assert env.cli.ok("version", "--format", "{{.Server.ApiVersion}}") == "1.44\n"
    info = env.cli.ok("info")
    assert " Storage Driver: overlay2" in info and f" Docker Root Dir: {env.daemon.data_root}"\
        in info
    assert env.cli.ok("info", "--format", "{{.Driver}}") == "overlay2\n"
    assert json.loads(env.cli.ok("system", "info", "--format", "json"))["Driver"] == "overlay2"
    df = env.cli.ok("system", "df").splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert df[1].startswith("Images ") and df[2].startswith("Containers ")
    rows = [json.loads(x) for x in env.cli.ok("system", "df", "--format", "json").splitlines()]
    assert [r["Type"] for r in rows][:2] == ["Images", "Containers"]


def test_no_daemon_is_a_clear_error(env: Env, tmp_path: Path) -> None:
    cli = CLI(f"unix://{tmp_path}/nothing.sock")
    r = cli("images")
    assert r.code == 1 and "Cannot connect to the pyrt daemon" in r.err, r
    assert str(tmp_path) in r.err
    r = cli("version")  # the client part still prints, then the error
    assert r.code == 1 and r.out.startswith("Client:") and "Server" not in r.out
    r = CLI("tcp://127.0.0.1:1")("images")
    assert r.code == 1 and "only unix:// sockets" in r.err, r
    r = cli("daemon", "status")
    assert r.code == 3 and "not running" in r.out


def test_bad_flags_exit_125_failures_1(env: Env) -> None:
    r = env.cli("images", "--bogus")
    assert r.code == 125 and "--bogus" in r.err
    r = env.cli("ps", "--filter", "novalue")
    assert r.code == 125 and "key=value" in r.err
    r = env.cli("images", "--format", "{{.NoSuchField}}")
    assert r.code == 1 and r.err.startswith("pyrt: template: can't evaluate field"), r


def test_events_since_until_filter(env: Env) -> None:
    start = time.time()
    env.cli.ok("tag", env.image, "evt/tagged:1")
    env.cli.ok("rmi", "evt/tagged:1")
    until = str(time.time() + 0.5)
    t0 = time.monotonic()
    out = env.cli.ok("system", "events", "--since", f"{start - 1:.3f}", "--until", until,
                     "--filter", "type=image")
    assert time.monotonic() - t0 < 20
    lines = out.splitlines()
    assert any(" image tag " in ln and "name=evt/tagged:1" in ln for ln in lines), lines
    assert any(" image untag " in ln for ln in lines), lines
    assert all(" image " in ln for ln in lines)
    js = env.cli.ok("events", "--since", f"{start - 1:.3f}", "--until", until, "--filter",
                    "event=tag", "--format", "json").splitlines()
    assert js and all(json.loads(x)["Action"] == "tag" for x in js)
    tmpl = env.cli.ok("events", "--since", f"{start - 1:.3f}", "--until", until, "--filter",
                      "event=tag", "--format", "{{.Type}}/{{.Action}}").split()
    assert tmpl and set(tmpl) == {"image/tag"}


# -- daemon start / autostart ------------------------------------------------------------------


def test_autostart_and_daemon_commands(tmp_path: Path) -> None:
    sock = Path(f"/tmp/pyrt-cli-{uuid.uuid4().hex[:8]}.sock")
    root = tmp_path / "auto"
    root.mkdir()
    (root / "daemon.json").write_text("{}")
    flags = (f"--data-root {root}/root --exec-root {root}/run --pidfile {root}/pid "
             f"--config-file {root}/daemon.json --cgroup-parent {suite_cgroup_parent()}")
    cli = CLI(f"unix://{sock}", env={"PYRT_NO_AUTOSTART": "", "PYRT_DAEMON_FLAGS": flags})
    try:
        r = cli("images", "-q")
        assert r.code == 0, r
        assert r.err == f"pyrt: started pyrtd on unix://{sock}\n"
        assert (root / "root" / "pyrtd.log").is_file()  # the log is under the data root
        r = cli("daemon", "status")
        assert r.code == 0 and f"pyrtd is running on unix://{sock} (pid " in r.out
        r = cli("images")  # the second command finds it: nothing started
        assert r.code == 0 and r.err == ""
        r = cli("daemon", "start")
        assert r.code == 1 and "already running" in r.err
        r = cli("daemon", "stop")
        assert r.code == 0 and "stopped pyrtd" in r.out, r
        assert not sock.exists()
        r = cli("daemon", "status")
        assert r.code == 3
        r = cli("daemon", "start")
        assert r.code == 0 and f"started pyrtd on unix://{sock}" in r.out
        assert cli("daemon", "stop").code == 0
        # a daemon that cannot start: the error names the cause and the log
        bad = CLI(f"unix://{sock}", env={"PYRT_NO_AUTOSTART": "",
                                         "PYRT_DAEMON_FLAGS": flags + " --log-level nope"})
        r = bad("images")
        assert r.code == 1 and "cannot start pyrtd" in r.err and "exited with status" \
            in r.err, r
    finally:
        from pyrt.cli import daemon_pid

        pid = daemon_pid(str(sock)) if sock.exists() else None
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not sock.exists():
                    break
                time.sleep(0.1)
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()


# -- images -----------------------------------------------------------------------------------


def test_hello_world_falls_back_to_the_embedded_image(env: Env) -> None:
    with contextlib.suppress(Exception):
        env.daemon.client().remove_image("hello-world", force=True)
    t0 = time.monotonic()
    r = env.cli("run", "--rm", "hello-world", timeout=60)
    took = time.monotonic() - t0
    assert r.code == 0, r
    assert took < 20, f"the unreachable registry took {took:.1f}s"
    err = r.err.splitlines()
    assert err[0] == "Unable to find image 'hello-world:latest' locally"
    assert err[1] == "latest: Pulling from library/hello-world"
    assert "registry docker.io cannot be reached" in err[2]
    assert err[2].endswith("using the hello-world image built into pyrt")
    assert err[3].endswith(": Pull complete")
    assert err[4].startswith("Digest: sha256:")
    assert err[5] == "Status: Downloaded newer image for hello-world:latest"
    assert "Hello from pyrt!" in r.out
    assert env.cli.ok("ps", "-aq", "--filter", "ancestor=hello-world") == ""  # --rm
    # now it is local: no pull
    r = env.cli("run", "--rm", "hello-world")
    assert r.code == 0 and "Unable to find" not in r.err and "Hello from pyrt!" in r.out
    # pull again: up to date, from the embedded image
    r = env.cli("pull", "hello-world")
    assert r.code == 0, r
    assert r.out.splitlines()[-2:] == ["Status: Image is up to date for hello-world:latest",
                                       "docker.io/library/hello-world:latest"]
    # other images do not fall back
    r = env.cli("pull", "busybox:latest")
    assert r.code == 1 and r.err.startswith("Error response from daemon: registry docker.io")


def test_images_list_format_quiet_tag_rmi(env: Env) -> None:
    image_id = json.loads(env.cli.ok("image", "inspect", env.image))[0]["Id"]
    short = image_id.split(":")[1][:12]
    repo, tag = env.image.split(":")
    lines = env.cli.ok("images").splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    mine = [ln.split() for ln in lines[1:] if ln.startswith(repo + " ")]
    assert mine and mine[0][:3] == [repo, tag, short]
    assert short in env.cli.ok("images", "-q").split()
    assert env.cli.ok("images", "-q", repo) == short + "\n"
    assert env.cli.ok("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}",
                      "--filter", f"reference={repo}") == f"{env.image} {short}\n"
    rows = [json.loads(x) for x in env.cli.ok("images", "--format", "json", repo).splitlines()]
    assert rows[0]["ID"] == short and rows[0]["Repository"] == repo
    table = env.cli.ok("images", "--format", "table {{.ID}}\\t{{.Tag}}", repo).splitlines()
    assert table[0].split() == ["ID", "TAG"] and table[1].split() == [short, tag]
    assert env.cli.ok("images", "--no-trunc", "-q", repo) == image_id + "\n"
    # tag, rmi
    env.cli.ok("tag", env.image, "other/name:x")
    assert env.cli.ok("image", "inspect", "--format", "{{.Id}}", "other/name:x") == \
        image_id + "\n"
    assert env.cli.ok("rmi", "other/name:x") == "Untagged: other/name:x\n"
    r = env.cli("rmi", "other/name:x")
    assert r.code == 1 and "Error response from daemon:" in r.err and "other/name:x" in r.err
    r = env.cli("image", "inspect", "no/such:image")
    assert r.code == 1 and r.out == "[]\n"
    r = env.cli("inspect", "no-such-thing")
    assert r.code == 1 and "Error: No such object: no-such-thing" in r.err
    assert json.loads(env.cli.ok("inspect", env.image))[0]["Id"] == image_id


def test_history_save_load_import(env: Env) -> None:
    hist = env.cli.ok("history", env.image).splitlines()
    assert hist[0].split()[:2] == ["IMAGE", "CREATED"] and len(hist) == 2
    assert env.cli.ok("history", "-q", env.image).strip().startswith(("<missing>", ""))
    out = env.tmp / "saved.tar"
    assert env.cli.ok("save", "-o", str(out), env.image) == ""
    with tarfile.open(out) as t:
        assert "manifest.json" in t.getnames()
    env.cli.ok("rmi", env.image)
    assert env.cli.ok("images", "-q", env.image.split(":")[0]) == ""
    assert env.cli.ok("load", "-i", str(out)) == f"Loaded image: {env.image}\n"
    assert env.cli.ok("images", "-q", env.image.split(":")[0]) != ""
    # save to stdout and load from stdin
    r = subprocess.run(env.cli.argv("save", env.image), capture_output=True, env=env.cli.env,
                       check=True, timeout=60)
    assert r.stdout[:512].count(b"\0") > 0
    assert env.cli.ok("load", input=r.stdout) == f"Loaded image: {env.image}\n"
    r2 = env.cli("load", "-i", str(env.tmp / "missing.tar"))
    assert r2.code == 1 and "missing.tar" in r2.err
    # import from stdin, with a change
    tar = (env.tmp / "rootfs.tar").read_bytes()
    image_id = env.cli.ok("import", "-c", "ENV X=1", "-", "imported/x:2", input=tar).strip()
    cfg = json.loads(env.cli.ok("image", "inspect", "imported/x:2"))[0]
    assert cfg["Id"] == image_id and "X=1" in cfg["Config"]["Env"]
    env.cli.ok("rmi", "imported/x:2")


def test_pull_and_push_with_a_local_registry(env: Env, tmp_path: Path) -> None:
    from pyrt.content.store import ContentStore
    from tests.integration.test_api_images import publish
    from tests.registry_fixtures import REGISTRY_BIN, Registry, build_image

    if not REGISTRY_BIN.is_file():
        pytest.skip(f"{REGISTRY_BIN} missing: apt-get install docker-registry")
    reg = Registry(tmp_path / "registry")
    try:
        target = f"{reg.host}/cli/bb:v1"
        env.cli.ok("tag", env.image, target)
        r = env.cli("push", target)
        assert r.code == 0, r
        assert r.out.splitlines()[0] == f"The push refers to repository [{reg.host}/cli/bb]"
        assert r.out.splitlines()[-1].startswith("v1: digest: sha256:")
        env.cli.ok("rmi", target)
        r = env.cli("pull", target)  # its layer is still there (bb:1)
        assert r.code == 0, r
        lines = r.out.splitlines()
        assert lines[0] == "v1: Pulling from cli/bb"
        assert lines[1].endswith(": Already exists"), lines
        assert lines[-2] == f"Status: Downloaded newer image for {target}"
        env.cli.ok("rmi", target)
        # a new image: every layer downloaded
        image = build_image([{"etc/a.txt": b"alpha" * 1000}, {"etc/b.txt": b"beta"}],
                            label="cli")
        fresh = publish(reg, ContentStore(tmp_path / "src"), image, "cli/fresh:v2")
        r = env.cli("pull", fresh)
        assert r.code == 0, r
        lines = r.out.splitlines()
        assert lines[0] == "v2: Pulling from cli/fresh"
        for digest in image.layer_digests:
            lid = digest.split(":")[1][:12]
            mine = [ln for ln in lines if ln.startswith(lid + ":")]
            assert mine[0] == f"{lid}: Pulling fs layer" and mine[-1] == \
                f"{lid}: Pull complete", mine
        assert not any("Downloading" in ln for ln in lines)  # not a terminal: no bars
        assert lines[-3] == f"Digest: {image.digest}"
        assert lines[-2] == f"Status: Downloaded newer image for {fresh}"
        assert lines[-1] == fresh
        r = env.cli("pull", "-q", fresh)
        assert r.code == 0 and r.out == fresh + "\n"
        # --all-tags: every tag the registry holds, then the bare repository name
        bare = fresh.rsplit(":", 1)[0]
        r = env.cli("pull", "--all-tags", bare)
        assert r.code == 0, r
        lines = r.out.splitlines()
        assert lines[0] == "v2: Pulling from cli/fresh"
        assert lines[-2:] == [f"Status: Image is up to date for {bare}", bare]
        r = env.cli("pull", "-a", fresh)
        assert r.code == 125 and "tag can't be used with --all-tags/-a" in r.err
        r = env.cli("pull", f"{reg.host}/cli/missing:v1")
        assert r.code == 1 and r.err.startswith("Error response from daemon:")
        env.cli.ok("rmi", fresh)
    finally:
        reg.stop()


def test_login_logout_client_side(env: Env, tmp_path: Path) -> None:
    from tests.registry_fixtures import REGISTRY_BIN, Registry

    if not REGISTRY_BIN.is_file():
        pytest.skip(f"{REGISTRY_BIN} missing")
    try:
        import bcrypt  # noqa: F401
    except ImportError:
        pytest.skip("bcrypt missing (test extra)")
    reg = Registry(tmp_path / "registry", htpasswd={"alice": "s3cret"})
    home = tmp_path / "home"
    home.mkdir()
    envs = {"HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    try:
        r = env.cli("login", "-u", "alice", "--password-stdin", reg.host, input=b"wrong\n",
                    env=envs)
        assert r.code == 1 and "login to" in r.err, r
        r = env.cli("login", "-u", "alice", "--password-stdin", reg.host, input=b"s3cret\n",
                    env=envs)
        assert r.code == 0 and r.out.startswith("Login Succeeded"), r
        doc = json.loads((home / ".docker" / "config.json").read_text())
        assert reg.host in doc["auths"]
        r = env.cli("logout", reg.host, env=envs)
        assert r.code == 0 and "Removing login credentials" in r.out
        doc = json.loads((home / ".docker" / "config.json").read_text())
        assert reg.host not in doc.get("auths", {})
    finally:
        reg.stop()


# -- containers -------------------------------------------------------------------------------


def test_run_exit_codes_and_options(env: Env) -> None:
    r = env.cli("run", "--rm", env.image, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.code, r.out, r.err) == (3, "out\n", "err\n")
    r = env.cli("run", "--rm", env.image, "/nonexistent")
    assert r.code == 127 and "Error response from daemon:" in r.err
    assert "/nonexistent" in r.err
    r = env.cli("run", "--rm", env.image, "/etc/passwd")
    assert r.code == 126, r
    r = env.cli("run", "--rm", "-e", "A=1", "-e", "B", "-w", "/tmp", "-u", "65534", env.image,
                "sh", "-c", "echo $A-$B; pwd; id -u", env={"B": "from-client"})
    assert (r.code, r.out) == (0, "1-from-client\n/tmp\n65534\n"), r
    r = env.cli("run", "--rm", "--entrypoint", "/bin/echo", env.image, "a", "-n", "b")
    assert (r.code, r.out) == (0, "a -n b\n"), r
    r = env.cli("run", "--rm", "-i", env.image, "cat", input=b"piped stdin\n")
    assert (r.code, r.out) == (0, "piped stdin\n"), r
    r = env.cli("run", "--rm", "no-such/image:1")
    assert r.code == 125 and r.err.startswith("Unable to find image 'no-such/image:1' locally")
    r = env.cli("run", "-t", "-i", env.image, "sh", input=b"")
    assert r.code == 1 and "the input device is not a TTY" in r.err


def test_detached_container_lifecycle(env: Env) -> None:
    name = f"d-{uuid.uuid4().hex[:6]}"
    cid = env.cli.ok("run", "-d", "--name", name, env.image, "sh", "-c",
                     "echo hi; echo oops >&2; exec sleep 100").strip()
    assert len(cid) == 64
    ps = env.cli.ok("ps").splitlines()
    assert ps[0].split()[:2] == ["CONTAINER", "ID"]
    assert any(ln.startswith(cid[:12]) and ln.endswith(name) for ln in ps[1:]), ps
    assert cid[:12] in env.cli.ok("ps", "-q").split()
    assert env.cli.ok("ps", "--filter", f"name={name}", "--format",
                      "{{.Names}} {{.State}}") == f"{name} running\n"
    row = json.loads(env.cli.ok("ps", "--filter", f"name={name}", "--format", "json"))
    assert row["ID"] == cid[:12] and row["Image"] == env.image
    deadline = time.monotonic() + 10
    r = env.cli("logs", name)
    while "hi" not in r.out and time.monotonic() < deadline:
        time.sleep(0.1)
        r = env.cli("logs", name)
    assert (r.out, r.err) == ("hi\n", "oops\n"), r
    r = env.cli("logs", "-t", "--tail", "1", name)
    assert r.out == "" and r.err.endswith(" oops\n") and r.err[:4].isdigit(), r
    # exec: exit status, -e -u -w, stdin
    r = env.cli("exec", name, "sh", "-c", "echo in-exec; exit 4")
    assert (r.code, r.out) == (4, "in-exec\n")
    r = env.cli("exec", "-e", "V=9", "-u", "65534", "-w", "/tmp", name, "sh", "-c",
                "echo $V $(id -u) $(pwd)")
    assert (r.code, r.out) == (0, "9 65534 /tmp\n"), r
    r = env.cli("exec", "-i", name, "cat", input=b"to exec\n")
    assert (r.code, r.out) == (0, "to exec\n"), r
    r = env.cli("exec", name, "/nonexistent")
    assert r.code in (126, 127), r
    # top, stats, inspect
    top = env.cli.ok("top", name).splitlines()
    assert "PID" in top[0].split() and any("sleep 100" in ln for ln in top[1:])
    stats = env.cli.ok("stats", "--no-stream", name).splitlines()
    assert stats[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert stats[1].split()[:2] == [cid[:12], name]
    # stats streams a table a second until interrupted
    proc = subprocess.Popen(env.cli.argv("stats", name), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env.cli.env)
    time.sleep(3.5)
    proc.send_signal(signal.SIGINT)
    sout, serr = proc.communicate(timeout=30)
    assert proc.returncode == 0, serr
    tables = [ln for ln in sout.decode().splitlines() if ln.startswith("CONTAINER ID")]
    assert len(tables) >= 2 and sout.decode().count(f"{cid[:12]}   {name}") == len(tables)
    assert env.cli.ok("inspect", "--format", "{{.State.Status}}", name) == "running\n"
    assert env.cli.ok("container", "inspect", "-f", "{{.Name}}", cid[:12]) == f"/{name}\n"
    # cp both ways, diff, pause
    env.cli.ok("exec", name, "sh", "-c", "echo made-inside > /tmp/new")
    dest = env.tmp / f"copied-{name}"
    env.cli.ok("cp", f"{name}:/tmp/new", str(dest))
    assert dest.read_text() == "made-inside\n"
    src = env.tmp / "upload.txt"
    src.write_text("from-host\n")
    env.cli.ok("cp", str(src), f"{name}:/tmp/")
    assert env.cli.ok("exec", name, "cat", "/tmp/upload.txt") == "from-host\n"
    env.cli.ok("cp", str(src), f"{name}:/tmp/renamed.txt")
    assert env.cli.ok("exec", name, "cat", "/tmp/renamed.txt") == "from-host\n"
    diff = env.cli.ok("diff", name).splitlines()
    assert "C /tmp" in diff and "A /tmp/new" in diff and "A /tmp/upload.txt" in diff
    assert env.cli.ok("pause", name) == f"{name}\n"
    assert env.cli.ok("ps", "-f", f"name={name}", "--format", "{{.State}}") == "paused\n"
    assert env.cli.ok("unpause", name) == f"{name}\n"
    # rename, restart, stop, wait, commit, export, rm
    new = name + "-r"
    env.cli.ok("rename", name, new)
    assert env.cli.ok("restart", "-t", "1", new) == f"{new}\n"
    assert env.cli.ok("stop", "-t", "1", new) == f"{new}\n"
    assert env.cli.ok("wait", new) == "137\n"
    committed = f"committed-{name}:1"
    image_id = env.cli.ok("commit", "-m", "snap", new, committed).strip()
    assert image_id.startswith("sha256:")
    r = env.cli("run", "--rm", committed, "cat", "/tmp/new")
    assert (r.code, r.out) == (0, "made-inside\n"), r
    exported = env.tmp / f"{name}.tar"
    env.cli.ok("export", "-o", str(exported), new)
    with tarfile.open(exported) as t:
        names = t.getnames()
    assert any(n.lstrip("./") == "tmp/new" for n in names)
    assert env.cli.ok("rm", new) == f"{new}\n"
    r = env.cli("rm", new)
    assert r.code == 1 and "No such container" in r.err
    env.cli.ok("rmi", committed)


def test_kill_start_attach_and_port(env: Env) -> None:
    name = f"k-{uuid.uuid4().hex[:6]}"
    # the container's pid 1 gets SIGTERM only through its handler
    env.cli.ok("run", "-d", "--name", name, env.image, "sh", "-c",
               "trap 'exit 42' TERM; echo ready; while true; do sleep 0.1; done")
    deadline = time.monotonic() + 10
    while "ready" not in env.cli.ok("logs", name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert env.cli.ok("kill", "-s", "TERM", name) == f"{name}\n"
    assert env.cli.ok("wait", name) == "42\n"
    assert env.cli.ok("port", name) == ""
    r = env.cli("port", name, "80")
    assert r.code == 1 and "No public port '80/tcp'" in r.err
    env.cli.ok("rm", name)
    # logs -f follows until the container exits
    env.cli.ok("run", "-d", "--name", name, env.image, "sh", "-c",
               "for i in 1 2 3; do echo line$i; sleep 0.3; done")
    r = env.cli("logs", "-f", name, timeout=30)
    assert (r.code, r.out) == (0, "line1\nline2\nline3\n"), r
    env.cli.ok("rm", name)
    # create, then start -a: the container's output and exit status
    cid = env.cli.ok("create", "--name", name, env.image, "sh", "-c", "echo started; exit 6")
    assert len(cid.strip()) == 64
    r = env.cli("start", "-a", name)
    assert (r.code, r.out) == (6, "started\n"), r
    assert env.cli.ok("ps", "-a", "-f", f"name={name}", "--format", "{{.Status}}"
                      ).startswith("Exited (6)")
    r = env.cli("kill", name)
    assert r.code == 1 and "Error response from daemon" in r.err
    env.cli.ok("container", "rm", name)


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _read_until(fd: int, needle: bytes, timeout: float = 20) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen; got {buf!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def _pty_cli(env: Env, *args: str, rows: int = 33, cols: int = 101
             ) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = pty.openpty()
    _set_size(slave, rows, cols)
    proc = subprocess.Popen(env.cli.argv(*args), stdin=slave, stdout=slave, stderr=slave,
                            env=env.cli.env, start_new_session=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    return proc, master


def test_run_it_through_a_pty(env: Env) -> None:
    proc, master = _pty_cli(env, "run", "-it", "--rm", env.image, "sh")
    try:
        _read_until(master, b"built-in commands")
        os.write(master, b"stty size; tty; echo $((6*7))\r")
        out = _read_until(master, b"42\r\n")
        assert b"33 101" in out and b"/dev/pts/" in out, out
        # the local terminal is raw: no local echo doubling, ctrl-c goes to the container
        _set_size(master, 40, 120)
        os.kill(proc.pid, signal.SIGWINCH)
        time.sleep(0.5)
        os.write(master, b"stty size\r")
        assert b"40 120" in _read_until(master, b"40 120")
        os.write(master, b"exit 5\r")
        assert proc.wait(timeout=30) == 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_run_it_detach_keys(env: Env) -> None:
    name = f"det-{uuid.uuid4().hex[:6]}"
    # pyrtd closes the container's stdin when the attach connection ends (it does not
    # honour StdinOnce=false nor take detachKeys itself), so a shell would exit: the
    # container here does not read its stdin
    proc, master = _pty_cli(env, "run", "-it", "--name", name, env.image, "sh", "-c",
                            "echo started; exec sleep 100")
    try:
        _read_until(master, b"started")
        os.write(master, b"x\x10y\x10\x11")  # ... ctrl-p ctrl-q
        assert proc.wait(timeout=30) == 0
        assert b"read escape sequence" in _read_until(master, b"escape sequence")
        assert env.cli.ok("ps", "-f", f"name={name}", "--format", "{{.State}}") == "running\n"
        # exec -it into it through a pty
        proc2, master2 = _pty_cli(env, "exec", "-it", name, "sh", rows=20, cols=70)
        try:
            _read_until(master2, b"#")
            os.write(master2, b"stty size; exit 2\r")
            assert b"20 70" in _read_until(master2, b"20 70")
            assert proc2.wait(timeout=30) == 2
        finally:
            if proc2.poll() is None:
                proc2.kill()
                proc2.wait()
            os.close(master2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        env.cli("rm", "-f", name)
