"""pyrt version, pyrt info, pyrt system df, pyrt system events.

`version_command` runs without typer (the fast path of pyrt.cli.app.main)."""

from __future__ import annotations

import os
import sys
import time

from pyrt import __version__
from pyrt.api import API_VERSION
from pyrt.cli import client, fail
from pyrt.cli.output import human_size, print_object, print_rows

# typing costs ~5 ms of imports on every CLI command: annotations only need it for mypy
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _python_version() -> str:
    """platform.python_version() without importing platform (~3 ms)."""
    return ".".join(map(str, sys.version_info[:3]))


def _client_version() -> dict[str, Any]:
    return {"Version": __version__, "ApiVersion": API_VERSION,
            "GoVersion": f"python{_python_version()}",
            "Os": sys.platform, "Arch": os.uname().machine}


def version_command(fmt: str | None = None) -> int:
    """Client and server versions, as `docker version`; the server part needs the daemon."""
    out: dict[str, Any] = {"Client": _client_version(), "Server": None}
    error: BaseException | None = None
    try:
        out["Server"] = client().version()
    except Exception as e:  # shown after the client part, as docker does
        error = e
    if fmt:
        print_object(out, fmt)
    else:
        c = out["Client"]
        lines = ["Client:", f" Version:           {c['Version']}",
                 f" API version:       {c['ApiVersion']}", f" Python version:    "
                 f"{_python_version()}", f" OS/Arch:           {c['Os']}/{c['Arch']}"]
        s = out["Server"]
        if s:
            lines += ["", "Server: pyrt engine", " Engine:",
                      f"  Version:          {s.get('Version', '')}",
                      f"  API version:      {s.get('ApiVersion', '')} (minimum version "
                      f"{s.get('MinAPIVersion', '')})",
                      f"  Git commit:       {s.get('GitCommit', '')}",
                      f"  Built:            {s.get('BuildTime', '')}",
                      f"  OS/Arch:          {s.get('Os', '')}/{s.get('Arch', '')}",
                      f"  Kernel version:   {s.get('KernelVersion', '')}"]
        sys.stdout.write("\n".join(lines) + "\n")
    if error is not None:
        from pyrt.cli import report

        return report(error)
    return 0


def info_command(fmt: str | None = None) -> None:
    info = client().info()
    if fmt:
        print_object(info, fmt)
        return
    reg = info.get("RegistryConfig") or {}
    lines = [
        "Client:", f" Version:    {__version__}", "",
        "Server:",
        f" Containers: {info.get('Containers', 0)}",
        f"  Running: {info.get('ContainersRunning', 0)}",
        f"  Paused: {info.get('ContainersPaused', 0)}",
        f"  Stopped: {info.get('ContainersStopped', 0)}",
        f" Images: {info.get('Images', 0)}",
        f" Server Version: {info.get('ServerVersion', '')}",
        f" Storage Driver: {info.get('Driver', '')}",
        f" Logging Driver: {info.get('LoggingDriver', '')}",
        f" Cgroup Driver: {info.get('CgroupDriver', '')}",
        f" Cgroup Version: {info.get('CgroupVersion', '')}",
        f" Default Runtime: {info.get('DefaultRuntime', '')}",
        f" Kernel Version: {info.get('KernelVersion', '')}",
        f" Operating System: {info.get('OperatingSystem', '')}",
        f" OSType: {info.get('OSType', '')}",
        f" Architecture: {info.get('Architecture', '')}",
        f" CPUs: {info.get('NCPU', 0)}",
        f" Total Memory: {human_size(info.get('MemTotal', 0))}",
        f" Name: {info.get('Name', '')}",
        f" ID: {info.get('ID', '')}",
        f" Docker Root Dir: {info.get('DockerRootDir', '')}",
        f" Debug Mode: {str(info.get('Debug', False)).lower()}",
        f" Live Restore Enabled: {str(info.get('LiveRestoreEnabled', False)).lower()}",
    ]
    insecure = reg.get("InsecureRegistryCIDRs") or []
    names = [k for k in (reg.get("IndexConfigs") or {})
             if not (reg["IndexConfigs"][k] or {}).get("Secure", True)]
    if insecure or names:
        lines.append(" Insecure Registries:")
        lines += [f"  {x}" for x in [*names, *insecure]]
    mirrors = reg.get("Mirrors") or []
    if mirrors:
        lines.append(" Registry Mirrors:")
        lines += [f"  {m}" for m in mirrors]
    sys.stdout.write("\n".join(lines) + "\n")


def df_command(fmt: str | None = None) -> None:
    df = client().df()
    images = df.get("Images") or []
    containers = df.get("Containers") or []
    active_images = sum(1 for i in images if i.get("Containers", 0) > 0)
    total = df.get("LayersSize", 0)
    unused = sum(i.get("Size", 0) - i.get("SharedSize", 0) for i in images
                 if i.get("Containers", 0) == 0)
    running = sum(1 for c in containers if c.get("State") == "running")
    csize = sum(c.get("SizeRw", 0) or 0 for c in containers)
    cfree = sum(c.get("SizeRw", 0) or 0 for c in containers if c.get("State") != "running")
    volumes = df.get("Volumes") or []
    usage = [v.get("UsageData") or {} for v in volumes]
    vactive = sum(1 for u in usage if u.get("RefCount", 0) > 0)
    vsize = sum(max(u.get("Size", 0), 0) for u in usage)
    vfree = sum(max(u.get("Size", 0), 0) for u in usage if u.get("RefCount", 0) == 0)

    def pct(part: int, whole: int) -> str:
        return f"{human_size(part)} ({100 * part // whole if whole else 0}%)"

    rows = [
        {"Type": "Images", "TotalCount": len(images), "Active": active_images,
         "Size": human_size(total), "Reclaimable": pct(max(unused, 0), total)},
        {"Type": "Containers", "TotalCount": len(containers), "Active": running,
         "Size": human_size(csize), "Reclaimable": pct(cfree, csize)},
        {"Type": "Local Volumes", "TotalCount": len(volumes), "Active": vactive,
         "Size": human_size(vsize), "Reclaimable": pct(vfree, vsize)},
        {"Type": "Build Cache", "TotalCount": len(df.get("BuildCache") or []), "Active": 0,
         "Size": human_size(0), "Reclaimable": "0B"},
    ]
    print_rows(rows, [("TYPE", "Type"), ("TOTAL", "TotalCount"), ("ACTIVE", "Active"),
                      ("SIZE", "Size"), ("RECLAIMABLE", "Reclaimable")], fmt)


def parse_filters(items: list[str] | None) -> dict[str, list[str]]:
    """docker's --filter key=value (repeatable) as the API's filters map."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        if "=" not in item:
            fail(f"invalid filter {item!r}: expected key=value", 125)
        k, v = item.split("=", 1)
        out.setdefault(k.strip(), []).append(v)
    return out


def _event_time(ev: dict[str, Any]) -> str:
    ns = ev.get("timeNano") or int(ev.get("time", 0)) * 1_000_000_000
    secs, frac = divmod(int(ns), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def events_command(since: str | None, until: str | None, filters: list[str] | None,
                   fmt: str | None) -> None:
    """Stream events until --until (or forever): docker's one line per event."""
    from pyrt.cli.output import render

    stream = client(timeout=None).events(parse_filters(filters) or None, since, until)
    try:
        for ev in stream:
            if fmt == "json":
                import json

                line = json.dumps(ev)
            elif fmt:
                line = render(fmt, ev)
            else:
                actor = ev.get("Actor") or {}
                attrs = actor.get("Attributes") or {}
                shown = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))
                line = (f"{_event_time(ev)} {ev.get('Type', '')} {ev.get('Action', '')} "
                        f"{actor.get('ID', '')}" + (f" ({shown})" if shown else ""))
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        return


__all__ = ["df_command", "events_command", "info_command", "parse_filters",
           "version_command"]
