"""The LinkDriver conformance suite on the kernel (NetlinkDriver), and what only the
kernel shows: the container side of an endpoint, lo up in a new namespace."""

from __future__ import annotations

import subprocess
from pathlib import Path

import tests.bundle as bundle
from pyrt.networks.netlink import EndpointLink, NetlinkDriver, is_netns_mount
from tests.net_conformance import check_link_driver


def test_netlink_driver_conforms(tmp_path: Path) -> None:
    d = NetlinkDriver()
    try:
        check_link_driver(d, tmp_path, f"pyrt:{tmp_path}")
    finally:
        d.close()
    assert not [n for n, o in bundle.pyrt_links().items() if o == str(tmp_path)]


def test_namespace_and_endpoint_inside(tmp_path: Path) -> None:
    d = NetlinkDriver()
    ns = str(tmp_path / "ns")
    owner = f"pyrt:{tmp_path}"
    try:
        d.create_netns(ns)
        assert is_netns_mount(ns)
        d.ensure_bridge("pyrtk" + tmp_path.name[-6:].replace("_", ""), "10.199.77.1", 24,
                        1400, owner)
        br = [n for n, o in bundle.pyrt_links().items() if o == str(tmp_path)][0]
        d.add_endpoint(EndpointLink(ns, "pvk" + tmp_path.name[-6:].replace("_", ""), "eth0", br,
                                    "02:42:0a:c7:4d:02", "10.199.77.2", 24, "10.199.77.1",
                                    mtu=1400, alias=owner))
        out = subprocess.run(["nsenter", f"--net={ns}", "sh", "-c",
                              "ip -o addr; ip route; ip -o link"], capture_output=True,
                             text=True, check=True).stdout
        assert "127.0.0.1/8" in out  # lo is up
        assert "10.199.77.2/24" in out and "default via 10.199.77.1 dev eth0" in out
        assert "02:42:0a:c7:4d:02" in out and "mtu 1400" in out
        assert d.links()[0].name  # the host's links are listed
    finally:
        for n, o in bundle.pyrt_links().items():
            if o == str(tmp_path):
                d.delete_link(n)
        d.delete_netns(ns)
        d.close()
    assert not is_netns_mount(ns)
