# ruff: noqa: B008 - typer declares parameters with calls in their defaults
"""`pyrt network create|ls|inspect|rm|prune|connect|disconnect`, and the -p/--publish
parser of run and create. Thin: parse, one client call, format."""

from __future__ import annotations

import sys
from typing import Any

from pyrt.cli import CLIError, client, fail, inspect_each, report
from pyrt.cli.output import print_rows, short_id
from pyrt.cli.system import parse_filters


def parse_publish(spec: str) -> tuple[str, dict[str, str]]:
    """docker's -p: [ip:][hostPort:]containerPort[/proto] -> ("80/tcp", {"HostIp",
    "HostPort"}). Ranges (8000-8010) pass through; the daemon checks the numbers."""
    rest, _, proto = spec.partition("/")
    proto = proto or "tcp"
    parts = rest.rsplit(":", 2)
    if len(parts) == 1:
        ip, host_port, ctr = "", "", parts[0]
    elif len(parts) == 2:
        ip, (host_port, ctr) = "", parts
    else:
        ip, host_port, ctr = parts
    ip = ip.strip("[]")
    if not ctr or not all(p.isdigit() for p in ctr.split("-")) or (
            host_port and not all(p.isdigit() for p in host_port.split("-"))):  # fmt: skip
        fail(f"invalid publish spec {spec!r}: expected [ip:][hostPort:]containerPort[/proto]",
             125)
    return f"{ctr}/{proto}", {"HostIp": ip, "HostPort": host_port}


def network_options(publish: list[str] | None, publish_all: bool, network: str | None,
                    ip: str | None, aliases: list[str] | None, dns: list[str] | None
                    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(config fields, HostConfig fields, NetworkingConfig) of the network flags of run
    and create."""
    cfg: dict[str, Any] = {}
    host: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in publish or []:
        key, bind = parse_publish(spec)
        bindings.setdefault(key, []).append(bind)
    if bindings:
        host["PortBindings"] = bindings
        cfg["ExposedPorts"] = {k: {} for k in bindings}
    if publish_all:
        host["PublishAllPorts"] = True
    if dns:
        host["Dns"] = list(dns)
    mode = network or "default"
    if network:
        host["NetworkMode"] = network
    networking: dict[str, Any] = {}
    if ip or aliases:
        ep: dict[str, Any] = {}
        if ip:
            ep["IPAMConfig"] = {"IPv4Address": ip}
        if aliases:
            ep["Aliases"] = list(aliases)
        networking = {"EndpointsConfig": {mode: ep}}
    return cfg, host, networking


# -- commands ---------------------------------------------------------------------------------


def create_command(name: str, driver: str, subnet: str | None, gateway: str | None,
                   ip_range: str | None, internal: bool, attachable: bool,
                   labels: list[str] | None, opts: list[str] | None) -> None:
    def kv(items: list[str] | None) -> dict[str, str]:
        return {k: v for k, _, v in (i.partition("=") for i in items or [])}

    nid = client().create_network(name, driver=driver, subnet=subnet or "",
                                  gateway=gateway or "", ip_range=ip_range or "",
                                  internal=internal, attachable=attachable,
                                  options=kv(opts), labels=kv(labels))  # fmt: skip
    sys.stdout.write(nid + "\n")


def ls_command(quiet: bool, filters: list[str] | None, fmt: str | None, no_trunc: bool
               ) -> None:
    nets = client().networks(parse_filters(filters) or None)
    rows = [{"ID": n["Id"] if no_trunc else short_id(n["Id"]), "Name": n["Name"],
             "Driver": n["Driver"], "Scope": n.get("Scope", "local"),
             "Internal": str(n.get("Internal", False)).lower(),
             "Labels": ",".join(f"{k}={v}" for k, v in (n.get("Labels") or {}).items())}
            for n in nets]  # fmt: skip
    print_rows(rows, [("NETWORK ID", "ID"), ("NAME", "Name"), ("DRIVER", "Driver"),
                      ("SCOPE", "Scope")], fmt, quiet=quiet)  # fmt: skip


def inspect_command(names: list[str], fmt: str | None) -> int:
    return inspect_each(client().inspect_network, names, fmt)


def rm_command(names: list[str]) -> int:
    c = client()
    status = 0
    for n in names:
        try:
            c.remove_network(n)
            sys.stdout.write(n + "\n")
        except Exception as e:
            status = report(e)
    return status


def prune_command(force: bool, filters: list[str] | None) -> None:
    if not force:
        if not sys.stdin.isatty():
            raise CLIError("network prune: pass -f (--force) to prune without asking", 1)
        if input("WARNING! This will remove all custom networks not used by at least one "
                 "container.\nAre you sure you want to continue? [y/N] ").lower() != "y":
            return
    out = client().prune_networks(parse_filters(filters) or None)
    deleted = out.get("NetworksDeleted") or []
    if deleted:
        sys.stdout.write("Deleted Networks:\n" + "".join(n + "\n" for n in deleted))


def connect_command(network: str, container: str, aliases: list[str] | None, ip: str | None
                    ) -> None:
    client().connect_network(network, container, aliases=aliases, ip=ip or "")


def disconnect_command(network: str, container: str, force: bool) -> None:
    client().disconnect_network(network, container, force=force)


def register(net_app: Any) -> None:
    """The `network` group's commands on a (selective) typer app."""
    import typer

    from pyrt.cli.app import _exit

    Opt, Arg = typer.Option, typer.Argument  # noqa: N806

    def create(name: str = Arg(..., metavar="NETWORK"),
               driver: str = Opt("bridge", "-d", "--driver"),
               subnet: str | None = Opt(None, "--subnet"),
               gateway: str | None = Opt(None, "--gateway"),
               ip_range: str | None = Opt(None, "--ip-range"),
               internal: bool = Opt(False, "--internal", help="Restrict external access"),
               attachable: bool = Opt(False, "--attachable"),
               label: list[str] | None = Opt(None, "--label"),
               o: list[str] | None = Opt(None, "-o", "--opt", help="Driver options")) -> None:
        create_command(name, driver, subnet, gateway, ip_range, internal, attachable, label, o)

    def ls(quiet: bool = Opt(False, "-q", "--quiet"),
           filt: list[str] | None = Opt(None, "-f", "--filter"),
           fmt: str | None = Opt(None, "--format"),
           no_trunc: bool = Opt(False, "--no-trunc")) -> None:
        ls_command(quiet, filt, fmt, no_trunc)

    def inspect(names: list[str] = Arg(..., metavar="NETWORK..."),
                fmt: str | None = Opt(None, "-f", "--format")) -> None:
        _exit(inspect_command(names, fmt))

    def rm(names: list[str] = Arg(..., metavar="NETWORK...")) -> None:
        _exit(rm_command(names))

    def prune(force: bool = Opt(False, "-f", "--force"),
              filt: list[str] | None = Opt(None, "--filter")) -> None:
        prune_command(force, filt)

    def connect(network: str = Arg(...), container: str = Arg(...),
                alias: list[str] | None = Opt(None, "--alias"),
                ip: str | None = Opt(None, "--ip")) -> None:
        connect_command(network, container, alias, ip)

    def disconnect(network: str = Arg(...), container: str = Arg(...),
                   force: bool = Opt(False, "-f", "--force")) -> None:
        disconnect_command(network, container, force)

    for name, fn, hlp in (("create", create, "Create a network"),
                          ("ls", ls, "List networks"),
                          ("inspect", inspect, "Display detailed information on networks"),
                          ("rm", rm, "Remove one or more networks"),
                          ("prune", prune, "Remove all unused networks"),
                          ("connect", connect, "Connect a container to a network"),
                          ("disconnect", disconnect, "Disconnect a container from a network")):
        net_app.command(name, help=hlp)(fn)


__all__ = ["network_options", "parse_publish", "register"]
