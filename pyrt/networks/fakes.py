"""Fakes of the network service's seams (LinkDriver, Firewall) for tests without root:
they keep what a real driver would have made in dictionaries, and refuse what the kernel
would refuse (an endpoint on a missing bridge or namespace, a name taken twice)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence

from pyrt.errors import SystemError_
from pyrt.networks.netlink import EndpointLink, LinkInfo, process_netns
from pyrt.networks.nft import BridgeRules, PortRule


class FakeLinks:
    def __init__(self, host_networks: Sequence[str] = ("192.0.2.0/24",)) -> None:
        self.netns: set[str] = set()
        self.bridges: dict[str, tuple[str, int, int, str]] = {}  # name -> gw, prefix, mtu, alias
        self.endpoints: dict[str, EndpointLink] = {}  # host ifname -> endpoint
        self.routes = [ipaddress.IPv4Network(n) for n in host_networks]
        self.closed = False
        # containers' processes, each in a network namespace of its own (process_netns)
        self.processes: set[int] = set()

    def exit(self, pid: int) -> None:
        """Process `pid` is gone: its namespace, and the veths in it, with it."""
        self.processes.discard(pid)
        for name in [n for n, e in self.endpoints.items() if e.netns == process_netns(pid)]:
            del self.endpoints[name]

    def create_netns(self, path: str) -> None:
        if path in self.netns:
            raise SystemError_(f"netns {path} exists")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w"):
            pass
        self.netns.add(path)

    def pin_netns(self, path: str, ns_fd: int) -> None:
        os.fstat(ns_fd)  # (a closed fd: EBADF, as the mount would fail)
        self.create_netns(path)

    def delete_netns(self, path: str) -> None:
        self.netns.discard(path)
        for name in [n for n, e in self.endpoints.items() if e.netns == path]:
            del self.endpoints[name]  # the kernel destroys the namespace's veths with it
        if os.path.exists(path):
            os.unlink(path)

    def ensure_bridge(self, name: str, gateway: str, prefixlen: int, mtu: int = 0,
                      alias: str = "") -> None:
        if name in self.endpoints:
            raise SystemError_(f"{name}: the name is a veth's")
        self.bridges[name] = (gateway, prefixlen, mtu, alias)

    def delete_bridge(self, name: str) -> None:
        self.delete_link(name)

    def add_endpoint(self, ep: EndpointLink) -> None:
        if ep.bridge not in self.bridges:
            raise SystemError_(f"bridge {ep.bridge} does not exist")
        # a pinned one made here, or a process's (the runtime made it)
        if ep.netns not in self.netns and ep.netns not in map(process_netns, self.processes):
            raise SystemError_(f"netns {ep.netns} does not exist")
        if ep.host_ifname in self.endpoints or ep.host_ifname in self.bridges:
            raise SystemError_(f"link {ep.host_ifname} exists")
        self.endpoints[ep.host_ifname] = ep

    def delete_link(self, name: str) -> None:
        self.endpoints.pop(name, None)
        if self.bridges.pop(name, None) is not None:
            for ifname in [n for n, e in self.endpoints.items() if e.bridge == name]:
                self.endpoints[ifname] = _detached(self.endpoints[ifname])

    def release(self, links: list[str]) -> None:
        for name in links:
            self.delete_link(name)

    def links(self) -> list[LinkInfo]:
        return ([LinkInfo(n, "bridge", "") for n in self.bridges]
                + [LinkInfo(n, "veth", e.bridge) for n, e in self.endpoints.items()])

    def host_networks(self) -> list[ipaddress.IPv4Network]:
        own = [ipaddress.IPv4Network(f"{gw}/{p}", strict=False)
               for gw, p, _, _ in self.bridges.values()]  # fmt: skip
        return sorted(set(self.routes + own))

    def close(self) -> None:
        self.closed = True


def _detached(ep: EndpointLink) -> EndpointLink:
    from dataclasses import replace

    return replace(ep, bridge="")


class FakeFirewall:
    def __init__(self) -> None:
        self.bridges: list[BridgeRules] = []
        self.ports: set[PortRule] = set()
        self.exists = False
        self.syncs = 0

    def sync(self, bridges: Sequence[BridgeRules], ports: Sequence[PortRule]) -> None:
        self.bridges, self.ports, self.exists = list(bridges), set(ports), True
        self.syncs += 1

    def add_ports(self, ports: Sequence[PortRule]) -> None:
        if not self.exists:
            raise SystemError_("nftables: no such table")
        self.ports |= set(ports)

    def remove_ports(self, ports: Sequence[PortRule]) -> None:
        for p in ports:
            if p not in self.ports:
                raise SystemError_("nftables: no such element")
            self.ports.discard(p)

    def delete(self) -> None:
        self.bridges, self.ports, self.exists = [], set(), False

    def close(self) -> None:
        pass


__all__ = ["FakeFirewall", "FakeLinks"]
