"""One conformance suite for every LinkDriver (pyrt.networks.netlink.NetlinkDriver and
pyrt.networks.fakes.FakeLinks): what the network service relies on."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from pyrt.errors import SystemError_
from pyrt.networks.netlink import EndpointLink, LinkDriver


def check_link_driver(links: LinkDriver, tmp: Path, owner: str) -> None:
    tag = secrets.token_hex(3)
    bridge, veth = f"pyrtc{tag}", f"pvc{tag}"
    third = 100 + secrets.randbelow(100)
    ns = str(tmp / "netns" / f"c{tag}")
    links.create_netns(ns)
    try:
        with pytest.raises(SystemError_):  # no bridge yet
            links.add_endpoint(EndpointLink(ns, veth, "eth0", bridge, "02:42:0a:00:00:02",
                                            f"10.{third}.3.2", 24, None, alias=owner))
        links.ensure_bridge(bridge, f"10.{third}.3.1", 24, 0, owner)
        links.ensure_bridge(bridge, f"10.{third}.3.1", 24, 0, owner)  # idempotent
        assert any(n.overlaps(__import__("ipaddress").IPv4Network(f"10.{third}.3.0/24"))
                   for n in links.host_networks())  # fmt: skip
        links.add_endpoint(EndpointLink(ns, veth, "eth0", bridge, "02:42:0a:00:00:02",
                                        f"10.{third}.3.2", 24, f"10.{third}.3.1", alias=owner))
        by = {li.name: li for li in links.links()}
        assert by[bridge].kind == "bridge" and by[veth].master == bridge
        with pytest.raises(SystemError_):  # the name is taken
            links.add_endpoint(EndpointLink(ns, veth, "eth1", bridge, "02:42:0a:00:00:03",
                                            f"10.{third}.3.3", 24, None, alias=owner))
        links.delete_link(veth)
        links.delete_link(veth)  # gone already: fine
        assert veth not in {li.name for li in links.links()}
        links.add_endpoint(EndpointLink(ns, veth, "eth0", bridge, "02:42:0a:00:00:02",
                                        f"10.{third}.3.2", 24, None, alias=owner))
        links.release([veth])  # in the background
        links.add_endpoint(EndpointLink(ns, veth, "eth0", bridge, "02:42:0a:00:00:02",
                                        f"10.{third}.3.2", 24, None, alias=owner))  # waits
        links.delete_link(veth)
        assert veth not in {li.name for li in links.links()}
    finally:
        links.delete_netns(ns)
        links.delete_bridge(bridge)
    assert not Path(ns).exists() and bridge not in {li.name for li in links.links()}
