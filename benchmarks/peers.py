"""Private peers for the benchmarks: a dockerd (+ its containerd), a podman and a pyrtd, each
on roots, sockets and networks of its own, and one busybox image that all three load.

    with PrivateDockerd(work / "docker") as d: d.docker("load", "-i", tar)
    with PrivatePodman(work / "podman") as p: p.podman("load", "-i", tar)
    with PrivatePyrtd(work / "pyrt", venv_bin) as y: y.pyrt("load", "-i", tar)

Every class's stop() ends the processes it started (by pid), unmounts what they mounted
under the work dir, and removes what they made outside it (a bridge, dockerd's key file,
netavark's chains) that was not there before. Used by bench_pull.py (dockerd),
bench_cli_run.py and bench_daemon_memory.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import ipaddress
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # appended: the installed pyrt wins over the source tree

from tests.bundle import make_busybox_rootfs, suite_cgroup_parent  # noqa: E402

DOCKER_CLI = Path("/usr/bin/docker")  # Debian's, the same version as its dockerd
DOCKERD = Path("/usr/sbin/dockerd")
PODMAN = Path("/usr/bin/podman")


class PeerError(RuntimeError):
    """A peer could not be started or did not do what the benchmark asked."""


def run(argv: list[str], what: str, *, env: dict[str, str] | None = None,
        timeout: float = 900, input: bytes | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, timeout=timeout, env=env, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL)
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise PeerError(f"{what} failed ({proc.returncode}): {err[-2000:]}")
    return proc.stdout.decode(errors="replace")


# -- mounts, processes, links -----------------------------------------------------------------


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` (from /proc/self/mountinfo), deepest first."""
    prefix = str(path.resolve())
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == prefix or mp.startswith(prefix + "/"):
                out.append(mp)
    return sorted(set(out), key=len, reverse=True)


def unmount_all(path: Path) -> None:
    for _ in range(5):  # a mount point may be mounted over more than once
        mps = mounts_under(path)
        if not mps:
            return
        for mp in mps:
            subprocess.run(["umount", mp], capture_output=True, stdin=subprocess.DEVNULL)
    for mp in mounts_under(path):
        subprocess.run(["umount", "-l", mp], capture_output=True, stdin=subprocess.DEVNULL)
    left = mounts_under(path)
    if left:
        raise PeerError(f"could not unmount {left}")


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line mentions `text` (a unique work dir)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            pids.append(int(entry))
    return pids


def end_processes(text: str) -> None:
    """SIGTERM, then SIGKILL, every process whose command line mentions `text`."""
    for attempt in range(60):
        left = pids_mentioning(text)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL if attempt > 20 else signal.SIGTERM)
        time.sleep(0.1)


def end_daemon(proc: subprocess.Popen[bytes] | None, work: Path, log: IO[bytes]) -> None:
    """SIGTERM a daemon and wait (SIGKILL to its group after 60 s), end every process still
    mentioning `work`, close its log and unmount what is left under `work`."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    end_processes(f"{work}/")
    log.close()
    unmount_all(work)


def processes_named(comm: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == comm:
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (through /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
    return out


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def free_subnet() -> ipaddress.IPv4Network:
    """A random /24 in 10.200.0.0/13 that no route or address on this host overlaps."""
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                            text=True, check=True).stdout
    used = []
    for line in routes.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("local", "broadcast", "unreachable", "blackhole", "prohibit"):
            word = line.split()[1]
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(word, strict=False))
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{200 + secrets.randbelow(8)}.{secrets.randbelow(256)}"
                                   ".0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net  # type: ignore[return-value]
    raise PeerError("no free /24 in 10.200.0.0/13")


# -- the image --------------------------------------------------------------------------------


def busybox_archive(dest: Path, tag: str) -> str:
    """A docker-archive tar (`docker save` format) at `dest`: one layer holding the busybox
    rootfs of tests/bundle.py, CMD ["sh"], tagged `tag`; returns the image id (sha256:...).
    docker load, podman load and pyrt load all read it."""
    rootfs = dest.parent / f"{dest.name}.rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    make_busybox_rootfs(rootfs)
    layer_buf = io.BytesIO()
    try:
        with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for p in sorted(rootfs.rglob("*")):
                ti = tf.gettarinfo(str(p), str(p.relative_to(rootfs)))
                ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 1_700_000_000, 0, 0, "", ""
                if ti.isreg():
                    with open(p, "rb") as f:
                        tf.addfile(ti, f)
                else:
                    tf.addfile(ti)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    layer = layer_buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:20Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                                          "/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "busybox rootfs"}],
    }, sort_keys=True).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    layer_hex = diff_id.split(":")[1]
    manifest = json.dumps([{"Config": f"{config_hex}.json", "RepoTags": [tag],
                            "Layers": [f"{layer_hex}/layer.tar"]}]).encode()
    with tarfile.open(dest, "w") as tf:
        for name, data in ((f"{layer_hex}/layer.tar", layer), (f"{config_hex}.json", config),
                           ("manifest.json", manifest)):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(data), 1_700_000_000, 0o644
            tf.addfile(ti, io.BytesIO(data))
    return f"sha256:{config_hex}"


class _Peer:
    """A peer started for a benchmark: a context manager whose exit stops it."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- dockerd ----------------------------------------------------------------------------------


class PrivateDockerd(_Peer):
    """dockerd (and the containerd it starts) with every path under `work`, on its own
    socket. With `bridge=True` its default bridge network is a Linux bridge this class
    makes (its own name and a free /24), so `docker run` without --network sets up a veth
    and an address as usual; iptables stays off (--iptables=false --ip-masq=false): the
    host's firewall is left alone, and docker adds no per-container rule for a container
    that publishes no port anyway. stop() ends both daemons (by pid), unmounts what they
    mounted, removes the bridge and the files they made outside `work`."""

    STRAY = (Path("/etc/docker/key.json"), Path("/run/docker"))

    def __init__(self, work: Path, *, registry: str | None = None, bridge: bool = False
                 ) -> None:
        self.work = work
        work.mkdir(parents=True)
        self.sock = work / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}",
                    "DOCKER_CONFIG": str(work / "client")}
        self.env.pop("DOCKER_TLS_VERIFY", None)
        self._preexisting = {p for p in self.STRAY if p.exists()}
        self.bridge: str | None = None
        self.subnet: ipaddress.IPv4Network | None = None
        config = work / "daemon.json"
        config.write_text("{}\n")
        self.log = work / "dockerd.log"
        self._logf = open(self.log, "wb")  # noqa: SIM115
        argv = [str(DOCKERD), "--config-file", str(config), "--data-root", str(work / "data"),
                "--exec-root", str(work / "exec"), "--pidfile", str(work / "dockerd.pid"),
                "-H", f"unix://{self.sock}", "--iptables=false", "--ip-masq=false"]
        if registry:
            argv += ["--insecure-registry", registry]
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            if bridge:
                self.bridge = f"pbd{secrets.token_hex(3)}"
                self.subnet = free_subnet()
                gw = f"{self.subnet.network_address + 1}/{self.subnet.prefixlen}"
                run(["ip", "link", "add", self.bridge, "type", "bridge"], "ip link add")
                run(["ip", "addr", "add", gw, "dev", self.bridge], "ip addr add")
                run(["ip", "link", "set", self.bridge, "up"], "ip link set up")
                argv += [f"--bridge={self.bridge}"]
            else:
                argv += ["--bridge=none"]
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._logf,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            self._wait_ready()
            info = json.loads(self.docker("info", "--format", "{{json .}}"))
            self.driver = str(info.get("Driver"))
            self.version = str(info.get("ServerVersion"))
        except BaseException:
            self.stop()
            raise

    def docker(self, *args: str, timeout: float = 900) -> str:
        return run([str(DOCKER_CLI), *args], f"docker {' '.join(args)}", env=self.env,
                   timeout=timeout)

    def _wait_ready(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PeerError(f"dockerd exited ({self.proc.returncode}): "
                                + self.log.read_text(errors="replace")[-2000:])
            if self.sock.exists():
                ok = subprocess.run([str(DOCKER_CLI), "version"], env=self.env,
                                    capture_output=True, stdin=subprocess.DEVNULL)
                if ok.returncode == 0:
                    return
            time.sleep(0.1)
        raise PeerError(f"dockerd not ready after {timeout}s: "
                        + self.log.read_text(errors="replace")[-2000:])

    def pids(self) -> dict[str, list[int]]:
        """{"dockerd": [...], "containerd": [...]}: the daemons (not shims or containers)."""
        assert self.proc is not None
        out: dict[str, list[int]] = {"dockerd": [self.proc.pid], "containerd": []}
        for pid in descendants(self.proc.pid):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "containerd":
                    out["containerd"].append(pid)
        return out

    def stop(self) -> None:
        # its containerd (and any shim) should be gone with it; what is left is ended too
        end_daemon(self.proc, self.work, self._logf)
        if self.bridge and link_exists(self.bridge):
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        for p in self.STRAY:
            if p not in self._preexisting and p.exists():
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink()


# -- podman -----------------------------------------------------------------------------------


def _rlimit_flags() -> list[str]:
    """--ulimit flags at this process's limits: podman's defaults ask for more than the
    hard limit, which fails here (no CAP_SYS_RESOURCE)."""
    import resource

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    # runc, started by conmon, cannot raise nproc to this host's hard limit (EPERM) here
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


class PrivatePodman(_Peer):
    """podman with its own --root, --runroot, --tmpdir and network config dir (cgroupfs,
    runc: crun 1.8 refuses hybrid cgroups; no events). Its default network (what `podman
    run` uses without --network) is a bridge network of this class's own (netavark, a bridge
    name and a free /24, no DNS), declared in a containers.conf given through
    CONTAINERS_CONF. stop() removes every container, unmounts, deletes the bridge and the
    netavark firewall chains that were not there before."""

    def __init__(self, work: Path) -> None:
        self.work = work
        work.mkdir(parents=True)
        self.bridge = f"pbp{secrets.token_hex(3)}"
        self.subnet = free_subnet()
        self.network = f"pyrtbench{secrets.token_hex(3)}"
        netdir = work / "networks"
        netdir.mkdir()
        (netdir / f"{self.network}.json").write_text(json.dumps({
            "name": self.network, "id": secrets.token_hex(32), "driver": "bridge",
            "network_interface": self.bridge, "created": "2026-01-01T00:00:00Z",
            "subnets": [{"subnet": str(self.subnet),
                         "gateway": str(self.subnet.network_address + 1)}],
            "ipv6_enabled": False, "internal": False, "dns_enabled": False,
            "ipam_options": {"driver": "host-local"}}, indent=1))
        conf = work / "containers.conf"
        conf.write_text(f'[network]\nnetwork_backend = "netavark"\n'
                        f'default_network = "{self.network}"\n'
                        f'network_config_dir = "{netdir}"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.base = [str(PODMAN), "--root", str(work / "root"), "--runroot",
                     str(work / "runroot"), "--tmpdir", str(work / "tmp"),
                     "--network-config-dir", str(netdir), "--storage-driver", "overlay",
                     "--events-backend", "none", "--cgroup-manager", "cgroupfs",
                     "--runtime", "runc"]
        self.run_flags = _rlimit_flags()
        self._fw_before = _netavark_chains()
        self._tables_before = _nft_tables()
        self.version = self.podman("--version").strip()

    def podman(self, *args: str, timeout: float = 900) -> str:
        argv = [*self.base, *args] if args[0] != "--version" else [str(PODMAN), *args]
        return run(argv, f"podman {' '.join(args)}", env=self.env, timeout=timeout)

    def stop(self) -> None:
        with contextlib.suppress(PeerError, subprocess.TimeoutExpired):
            self.podman("rm", "-a", "-f", "-t", "0", timeout=120)
        end_processes(f"{self.work}/")
        unmount_all(self.work)
        if link_exists(self.bridge):
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        _remove_netavark_chains(self._fw_before)
        _remove_empty_tables(self._tables_before)


def _nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return {ln.strip()[len("table "):] for ln in out.splitlines() if ln.startswith("table ")}


def _remove_empty_tables(before: set[str]) -> None:
    """Delete the iptables-nft tables (ip nat, ip filter) that netavark's iptables calls
    created, when they were not there before and hold no rule any more."""
    for table in sorted(_nft_tables() - before):
        if table not in ("ip nat", "ip filter"):
            continue
        listing = subprocess.run(["nft", "list", "table", *table.split()],
                                 capture_output=True, text=True).stdout
        body = [ln.strip() for ln in listing.splitlines() if ln.strip()]
        rules = [ln for ln in body if not ln.startswith(("table ", "chain ", "type ", "}",
                                                         "#"))]
        if not rules:
            subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True)


def _netavark_chains() -> set[tuple[str, str]]:
    """(table, chain) of iptables chains named NETAVARK* (iptables -S per table)."""
    out = set()
    for table in ("nat", "filter"):
        proc = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "-N" and parts[1].startswith("NETAVARK"):
                out.add((table, parts[1]))
    return out


def _remove_netavark_chains(before: set[tuple[str, str]]) -> None:
    """Remove the NETAVARK chains netavark left that were not there before (and the jumps
    to them), so the host's firewall is as the benchmark found it."""
    made = _netavark_chains() - before
    for table, chain in sorted(made):
        rules = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True,
                               text=True).stdout
        for line in rules.splitlines():
            parts = shlex.split(line)
            if parts[:1] == ["-A"] and parts[-2:] == ["-j", chain] and parts[1] != chain:
                subprocess.run(["iptables", "-t", table, "-D", *parts[1:]],
                               capture_output=True)
    for table, chain in sorted(made):
        subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True)
    for table, chain in sorted(made):
        subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True)


# -- pyrtd ------------------------------------------------------------------------------------


class PrivatePyrtd(_Peer):
    """pyrtd from a venv (`bin_dir`/pyrtd, the `pyrt` CLI beside it) on its own socket,
    data root, exec root, pid file and config, containers under a cgroup parent of its
    own; its default bridge network (a bridge and nftables table named after its data
    root) gets a free /24 as its only address pool. stop() removes every container, stops
    the daemon (SIGTERM, by pid), unmounts, and deletes its bridge and table if the daemon
    left them."""

    def __init__(self, work: Path, bin_dir: Path, *extra: str) -> None:
        self.work = work
        work.mkdir(parents=True)
        self.sock = work / "pyrt.sock"
        self.host = f"unix://{self.sock}"
        self.bin_dir = bin_dir
        self.subnet = free_subnet()
        (work / "daemon.json").write_text(json.dumps(
            {"default-address-pools": [{"base": str(self.subnet), "size": 24}]}) + "\n")
        self.env = {**os.environ, "PYRT_HOST": self.host, "PYRT_NO_AUTOSTART": "1"}
        self.env.pop("PYTHONPATH", None)  # the venv's pyrt, not the source tree
        self.log = work / "pyrtd.log"
        self._logf = open(self.log, "wb")  # noqa: SIM115
        self.cgroup_parent = suite_cgroup_parent()
        self.proc = subprocess.Popen(
            [str(bin_dir / "pyrtd"), "--data-root", str(work / "root"),
             "--exec-root", str(work / "run"), "-H", self.host,
             "--pidfile", str(work / "pyrtd.pid"), "--config-file", str(work / "daemon.json"),
             "--cgroup-parent", self.cgroup_parent, *extra],
            stdin=subprocess.DEVNULL, stdout=self._logf, stderr=subprocess.STDOUT,
            env=self.env, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def pyrt(self, *args: str, timeout: float = 900) -> str:
        return run([str(self.bin_dir / "pyrt"), *args], f"pyrt {' '.join(args)}",
                   env=self.env, timeout=timeout)

    def api(self, method: str, path: str) -> Any:
        """One Engine API call (JSON answer) over the socket, without pyrt's client."""
        import http.client
        import socket

        conn = http.client.HTTPConnection("localhost", timeout=60)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.sock))
        conn.sock = s
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status >= 400:
                raise PeerError(f"pyrtd {method} {path}: {resp.status} {body[:300]!r}")
            return json.loads(body) if body.strip() else None
        finally:
            conn.close()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PeerError(f"pyrtd exited ({self.proc.returncode}): "
                                + self.log.read_text(errors="replace")[-2000:])
            with contextlib.suppress(OSError, PeerError):
                if self.sock.exists():
                    self.api("GET", "/version")
                    return
            time.sleep(0.05)
        raise PeerError(f"pyrtd not ready after {timeout}s: "
                        + self.log.read_text(errors="replace")[-2000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                for c in self.api("GET", "/containers/json?all=1") or []:
                    self.api("DELETE", f"/containers/{c['Id']}?force=1")
        end_daemon(self.proc, self.work, self._logf)
        _remove_cgroup_dirs(self.cgroup_parent.strip("/"))
        with contextlib.suppress(ImportError):  # a pyrt without networks makes neither
            from pyrt.networks.service import default_names

            bridge, table = default_names(str(self.work / "root"))
            if link_exists(bridge):
                subprocess.run(["ip", "link", "del", bridge], capture_output=True)
            if f"ip {table}" in _nft_tables():
                subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)


def _remove_cgroup_dirs(name: str) -> None:
    """rmdir the (empty) cgroup `name` and what is below it, in every hierarchy."""
    root = Path("/sys/fs/cgroup")
    tops = [root / name] + [h / name for h in root.iterdir() if h.is_dir()]
    for top in tops:
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(str(p))):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


# -- results ----------------------------------------------------------------------------------

README = Path(__file__).resolve().parent / "README.md"
TOP_README = REPO / "README.md"


def shown_python() -> str:
    """This interpreter as a README's command shows it: relative to the repository root
    when it is inside (the .venv the README's commands use), else its absolute path."""
    exe = os.path.abspath(sys.executable)  # not resolved: a venv's python is a symlink
    rel = os.path.relpath(exe, REPO)
    return exe if rel.startswith("..") else rel


def write_results(name: str, command: str, block: str) -> None:
    """The results block `name` of benchmarks/README.md, and of the top-level README.md
    when it has that block's markers: the command that made it, then the block."""
    text = f"Command, from the repository root: `{command}`\n\n{block}"
    write_readme_section(name, text)
    if f"<!-- {name}:begin -->" in TOP_README.read_text():
        write_readme_section(name, text, TOP_README)


def write_readme_section(name: str, block: str, readme: Path = README) -> None:
    """Put `block` between <!-- name:begin --> and <!-- name:end --> in `readme` (replacing
    what was there, or appended at the end)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = readme.read_text() if readme.exists() else ""
    new = f"{begin}\n{block}\n{end}"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + new + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + new + "\n"
    readme.write_text(text)
