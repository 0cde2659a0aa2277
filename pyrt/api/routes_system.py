"""System endpoints: /_ping, /version, /info, /events, /system/df."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from pyrt import __version__
from pyrt.api import API_VERSION, MIN_API_VERSION
from pyrt.api.params import query_filters, query_str
from pyrt.api.routing import (
    App,
    Request,
    Response,
    Router,
    StreamResponse,
    json_response,
)
from pyrt.images import models as image_models


def _ping_headers() -> dict[str, str]:
    return {"Builder-Version": "1", "Cache-Control": "no-cache, no-store, must-revalidate",
            "Pragma": "no-cache"}


def ping(req: Request) -> Response:
    body = b"" if req.method == "HEAD" else b"OK"
    return Response(200, body, "text/plain; charset=utf-8", _ping_headers())


@cache
def git_commit() -> str:
    """The commit of the source tree pyrt runs from, or "unknown" for an installed copy."""
    tree = Path(__file__).resolve().parents[2]
    if not (tree / ".git").exists():
        return "unknown"
    try:
        out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short=7", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


@cache
def build_time() -> str:
    """When the pyrt package was built or installed (its files' time)."""
    mtime = Path(__file__).resolve().parent.parent.joinpath("__init__.py").stat().st_mtime
    return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000000+00:00")


def runtime_version() -> str:
    """The language runtime pyrtd runs on (docker puts its Go version here)."""
    return f"python{platform.python_version()}"


def arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(m, m)


def version(req: Request) -> Response:
    kernel = os.uname().release
    details = {
        "ApiVersion": API_VERSION, "Arch": arch(), "BuildTime": build_time(),
        "Experimental": "false", "GitCommit": git_commit(), "GoVersion": runtime_version(),
        "KernelVersion": kernel, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
    }
    return json_response({
        "Platform": {"Name": f"pyrt {__version__}"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": git_commit(),
        "GoVersion": runtime_version(),
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": kernel,
        "BuildTime": build_time(),
    })


def _os_release() -> tuple[str, str]:
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            k, sep, v = line.partition("=")
            if sep:
                fields[k] = v.strip().strip('"')
    return fields.get("PRETTY_NAME", "Linux"), fields.get("VERSION_ID", "")


def _mem_total() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def cgroup_version() -> str:
    return "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1"


def registry_config(cfg: Any) -> dict[str, Any]:
    mirrors = list(getattr(cfg, "registry_mirrors", []) or [])
    insecure = list(getattr(cfg, "insecure_registries", []) or [])
    cidrs = ["127.0.0.0/8", "::1/128"] + [r for r in insecure if "/" in r]
    index: dict[str, Any] = {"docker.io": {"Name": "docker.io", "Mirrors": mirrors,
                                           "Secure": True, "Official": True}}
    for r in insecure:
        if "/" not in r:
            index[r] = {"Name": r, "Mirrors": [], "Secure": False, "Official": False}
    return {"AllowNondistributableArtifactsCIDRs": [],
            "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": cidrs, "IndexConfigs": index, "Mirrors": mirrors}


def _counts(engine: Any) -> dict[str, Any]:
    if hasattr(engine, "info"):
        return dict(engine.info())
    return {"Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0,
            "ContainersStopped": 0, "Images": len(engine.images.all()),
            "Driver": "overlay2", "DockerRootDir": str(engine.images.root)}


def info(req: Request) -> Response:
    app: App = req.app
    cfg = app.config
    counts = _counts(app.engine)
    os_name, os_version = _os_release()
    cg = cgroup_version()
    security = ["name=seccomp,profile=builtin"]
    if cg == "2":
        security.append("name=cgroupns")
    warnings: list[str] = []
    live = bool(getattr(cfg, "live_restore", True))
    root = counts.get("DockerRootDir", "")
    body = {
        "ID": app.daemon_id,
        "Containers": counts.get("Containers", 0),
        "ContainersRunning": counts.get("ContainersRunning", 0),
        "ContainersPaused": counts.get("ContainersPaused", 0),
        "ContainersStopped": counts.get("ContainersStopped", 0),
        "Images": counts.get("Images", 0),
        "Driver": counts.get("Driver", "overlay2"),
        "DriverStatus": [["Backing Filesystem", _fs_type(root)],
                         ["Supports d_type", "true"], ["Using metacopy", "false"],
                         ["Native Overlay Diff", "true"], ["userxattr", "false"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
                    "Authorization": [], "Log": ["json-file", "local"]},
        "MemoryLimit": True, "SwapLimit": cg == "2", "CpuCfsPeriod": True,
        "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True, "PidsLimit": True,
        "IPv4Forwarding": _ip_forward(), "Debug": bool(getattr(cfg, "debug", False)),
        "NFd": _nfd(), "OomKillDisable": cg == "1", "NGoroutines": _nthreads(),
        "SystemTime": datetime.now(UTC).astimezone().isoformat(timespec="microseconds"),
        "LoggingDriver": getattr(cfg, "log_driver", "json-file"),
        "CgroupDriver": "cgroupfs", "CgroupVersion": cg,
        "NEventsListener": 0,
        "KernelVersion": os.uname().release,
        "OperatingSystem": os_name, "OSVersion": os_version, "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": registry_config(cfg),
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "GenericResources": [],
        "DockerRootDir": root,
        "HttpProxy": os.environ.get("HTTP_PROXY", os.environ.get("http_proxy", "")),
        "HttpsProxy": os.environ.get("HTTPS_PROXY", os.environ.get("https_proxy", "")),
        "NoProxy": os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")),
        "Name": app.name or os.uname().nodename,
        "Labels": list(app.labels),
        "ExperimentalBuild": False,
        "ServerVersion": __version__,
        "Runtimes": {"runc": {"path": "pyrt-runc"}},
        "DefaultRuntime": "runc",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": live,
        "InitBinary": "pyrt-init",
        "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": git_commit()},
        "InitCommit": {"ID": git_commit()},
        "SecurityOptions": security,
        "DefaultAddressPools": [p.to_json() for p in getattr(cfg, "default_address_pools",
                                                               [])],
        "Warnings": warnings,
    }
    return json_response(body)


def _fs_type(path: str) -> str:
    best, fstype = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                mnt = parts[1]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(
                        best):
                    best, fstype = mnt, parts[2]
    return {"ext4": "extfs", "ext3": "extfs", "ext2": "extfs"}.get(fstype, fstype)


def _ip_forward() -> bool:
    try:
        return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    except OSError:
        return False


def _nfd() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _nthreads() -> int:
    import threading

    return threading.active_count()


def events(req: Request) -> StreamResponse:
    app: App = req.app
    filters = query_filters(req.query)
    since = query_str(req.query, "since") or None
    until = query_str(req.query, "until") or None
    sub = app.engine.events.subscribe(filters=filters, since=since, until=until)

    def stream() -> Iterator[bytes]:
        try:
            while True:
                try:
                    ev = sub.get(timeout=1.0)
                except TimeoutError:
                    if req.client_gone():
                        return
                    continue
                if ev is None:
                    return
                yield json.dumps(ev).encode() + b"\n"
        finally:
            sub.close()

    return StreamResponse(chunks=stream(), eager=True)


def system_df(req: Request) -> Response:
    app: App = req.app
    engine = app.engine
    images = engine.images.all()
    users: dict[str, int] = {}
    containers: list[dict[str, Any]] = []
    if hasattr(engine, "containers"):
        containers = engine.containers.list(all=True, size=True)
        for c in containers:
            users[c.get("ImageID", "")] = users.get(c.get("ImageID", ""), 0) + 1
    layer_sizes: dict[str, int] = {}
    summaries = []
    for image in images:
        for layer in image.layers:
            layer_sizes[layer.chain_id] = layer.size
        s = dict(image_models.summary(image))
        s["Containers"] = users.get(image.id, 0)
        summaries.append(s)
    shared: dict[str, int] = {}
    for image in images:
        for layer in image.layers:
            shared[layer.chain_id] = shared.get(layer.chain_id, 0) + 1
    for s, image in zip(summaries, images, strict=True):
        s["SharedSize"] = sum(layer.size for layer in image.layers
                              if shared[layer.chain_id] > 1)
    return json_response({
        "LayersSize": sum(layer_sizes.values()),
        "Images": summaries,
        "Containers": containers,
        "Volumes": engine.volumes.usage() if hasattr(engine, "volumes") else [],
        "BuildCache": [],
    })


def register(router: Router) -> None:
    router.add("GET", "/_ping", ping)
    router.add("HEAD", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
    router.add("GET", "/events", events)
    router.add("GET", "/system/df", system_df)


__all__ = ["cgroup_version", "git_commit", "register", "registry_config"]
