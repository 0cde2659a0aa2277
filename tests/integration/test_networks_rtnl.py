"""pyrt.networks.rtnl against the kernel, inside a network namespace of each test's own
(so nothing touches the host's links, and whatever a failure leaves goes with the
namespace): a bridge made, given an address, brought up with an alias, read back with
`ip -j`, deleted; and the kernel's refusals as clear errors."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyrt.errors import Conflict, InvalidArgument, NotFound, SystemError_
from pyrt.networks import rtnl
from pyrt.networks.netlink import NetlinkDriver, is_netns_mount

CLONE_NEWNET = 0x40000000


def _socket_in(ns: str) -> rtnl.Rtnl:
    """An Rtnl socket in the namespace at `ns`: made on a short-lived thread that joins
    the namespace first (a netlink socket keeps the namespace it was made in)."""
    box: dict[str, Any] = {}

    def make() -> None:
        try:
            fd = os.open(ns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            box["nl"] = rtnl.Rtnl()
        except BaseException as e:  # (handed to the test's thread)
            box["error"] = e

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    nl: rtnl.Rtnl = box["nl"]
    return nl


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[tuple[str, rtnl.Rtnl]]:
    """(path of a fresh network namespace, an Rtnl socket inside it); both go after."""
    ns = str(tmp_path / "ns")
    drv = NetlinkDriver()
    try:
        drv.create_netns(ns)
        nl = _socket_in(ns)
        try:
            yield ns, nl
        finally:
            nl.close()
            drv.delete_netns(ns)
    finally:
        drv.close()
    assert not is_netns_mount(ns) and not Path(ns).exists()


def ip_json(ns: str, *args: str) -> Any:
    out = subprocess.run(["nsenter", f"--net={ns}", "ip", "-j", "-d", *args],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_bridge_with_an_address_made_read_back_and_deleted(netns: tuple[str, rtnl.Rtnl]
                                                            ) -> None:
    ns, nl = netns
    name = "pyrtr" + secrets.token_hex(3)
    rtnl.add_bridge(nl, name, "02:42:0a:c8:07:01", mtu=1400)
    index = rtnl.link_index(nl, name)
    assert index is not None
    rtnl.add_address(nl, name, index, "10.200.7.1", 24)
    rtnl.set_link(nl, name, index, up=True, alias="pyrt:test-rtnl")
    [link] = ip_json(ns, "addr", "show", "dev", name)
    assert link["ifindex"] == index and link["ifname"] == name
    assert link["linkinfo"]["info_kind"] == "bridge"
    assert link["address"] == "02:42:0a:c8:07:01" and link["mtu"] == 1400
    assert "UP" in link["flags"] and link["ifalias"] == "pyrt:test-rtnl"
    inet = [a for a in link["addr_info"] if a["family"] == "inet"]
    assert [(a["local"], a["prefixlen"], a["broadcast"]) for a in inet] == [
        ("10.200.7.1", 24, "10.200.7.255")]
    # the namespace routes the bridge's subnet through it
    routes = ip_json(ns, "route", "show", "dev", name)
    assert any(r["dst"] == "10.200.7.0/24" for r in routes), routes
    rtnl.set_link(nl, name, index, up=False)
    assert "UP" not in ip_json(ns, "link", "show", "dev", name)[0]["flags"]
    rtnl.delete_link(nl, name)
    assert rtnl.link_index(nl, name) is None
    assert name not in {li["ifname"] for li in ip_json(ns, "link", "show")}


def test_refusals_name_the_interface_and_the_errno(netns: tuple[str, rtnl.Rtnl]) -> None:
    ns, nl = netns
    name = "pyrte" + secrets.token_hex(3)
    with pytest.raises(InvalidArgument, match="is 16 bytes long"):
        rtnl.add_bridge(nl, name + "x" * (16 - len(name)), "02:42:0a:c8:08:01")
    rtnl.add_bridge(nl, name, "02:42:0a:c8:08:01")
    with pytest.raises(Conflict) as exists:  # an existing bridge is left as it was
        rtnl.add_bridge(nl, name, "02:42:0a:c8:08:02", mtu=1300)
    assert f"create bridge {name}" in str(exists.value) and "EEXIST" in str(exists.value)
    [link] = ip_json(ns, "link", "show", "dev", name)
    assert link["address"] == "02:42:0a:c8:08:01" and link["mtu"] != 1300
    index = rtnl.link_index(nl, name)
    assert index is not None
    rtnl.add_address(nl, name, index, "10.200.8.1", 24)
    with pytest.raises(Conflict, match=f"10.200.8.1/24 to {name}: .*EEXIST"):
        rtnl.add_address(nl, name, index, "10.200.8.1", 24)
    with pytest.raises(SystemError_) as big:  # the kernel's own words come along
        rtnl.add_bridge(nl, "pyrtm" + secrets.token_hex(3), "02:42:0a:c8:08:03", mtu=70000)
    assert big.value.errno == errno.EINVAL and "(EINVAL)" in str(big.value)
    rtnl.delete_link(nl, name)
    with pytest.raises(NotFound) as missing:
        rtnl.delete_link(nl, name)
    assert str(missing.value).startswith(f"delete link {name}: No such device (ENODEV)")
    with pytest.raises(NotFound, match=f"set link {name} up: .*ENODEV"):
        rtnl.set_link(nl, name, index, up=True)
    with pytest.raises(NotFound, match=f"to {name}: .*ENODEV"):
        rtnl.add_address(nl, name, index, "10.200.8.1", 24)
    assert [li["ifname"] for li in ip_json(ns, "link", "show")] == ["lo"]


def test_the_driver_needs_no_netlink_library(tmp_path: Path) -> None:
    """The LinkDriver conformance suite in a process where pyroute2 cannot be imported,
    run in a network namespace of its own (`unshare`): bridges, addresses, veths and
    deletions all work, and no netlink library was loaded."""
    from tests.bundle import pyrt_pythonpath

    code = (
        "import sys\n"
        "sys.modules['pyroute2'] = None  # any import of it fails\n"
        "from pathlib import Path\n"
        "from pyrt.networks.netlink import NetlinkDriver\n"
        "from tests.net_conformance import check_link_driver\n"
        "d = NetlinkDriver()\n"
        "try:\n"
        f"    check_link_driver(d, Path({str(tmp_path)!r}), 'pyrt:{tmp_path}')\n"
        "finally:\n"
        "    d.close()\n"
        "print(sorted(m for m, v in sys.modules.items() if v is not None and 'pyroute' in m))\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    # (a mount namespace too, with a sysfs of the new network namespace: the driver reads
    # its links there)
    out = subprocess.run(["unshare", "--net", "--mount", "--", "sh", "-c",
                          'mount -t sysfs sysfs /sys && exec "$0" -c "$1"', sys.executable,
                          code],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": f"{pyrt_pythonpath()}:{root}"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[]", out.stdout
