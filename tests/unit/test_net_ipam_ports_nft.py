"""IPAM, published-port parsing and holding, the nftables text and the CLI's -p parser."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from pyrt.errors import Conflict, FailedPrecondition, InvalidArgument
from pyrt.networks import ipam
from pyrt.networks.nft import BridgeRules, PortRule, port_commands, table_text
from pyrt.networks.ports import PortRequest, hold, parse_port_key, requested_ports, reserve

N = ipaddress.IPv4Network


def test_pick_subnet_skips_what_is_taken() -> None:
    pools = [ipam.Pool("10.1.0.0/22", 24), ipam.Pool("10.9.0.0/16", 20)]
    assert ipam.pick_subnet(pools, []) == N("10.1.0.0/24")
    assert ipam.pick_subnet(pools, [N("10.1.0.0/23"), N("10.1.3.7/32")]) == N("10.1.2.0/24")
    assert ipam.pick_subnet(pools, [N("10.1.0.0/22")]) == N("10.9.0.0/20")
    with pytest.raises(FailedPrecondition, match="non-overlapping"):
        ipam.pick_subnet(pools, [N("10.0.0.0/8")])
    assert not any(s.overlaps(N("172.17.0.0/16")) for p in ipam.DEFAULT_POOLS
                   for s in [N(p.base)])  # fmt: skip


def test_check_config_and_allocate() -> None:
    net, gw, rng = ipam.check_config("10.2.0.0/24")
    assert (str(gw), rng) == ("10.2.0.1", None)
    with pytest.raises(InvalidArgument, match="not a host address"):
        ipam.check_config("10.2.0.0/24", "10.2.0.255")
    with pytest.raises(InvalidArgument, match="not inside"):
        ipam.check_config("10.2.0.0/24", "", "10.3.0.0/25")
    with pytest.raises(InvalidArgument, match="CIDR"):
        ipam.check_config("nonsense")
    with pytest.raises(InvalidArgument, match="IPv4"):
        ipam.check_config("fd00::/64")
    assert str(ipam.allocate(net, gw, None, [])) == "10.2.0.2"
    assert str(ipam.allocate(net, gw, None, ["10.2.0.2", "10.2.0.3"])) == "10.2.0.4"
    _, gw2, rng2 = ipam.check_config("10.2.0.0/24", "10.2.0.254", "10.2.0.128/25")
    assert str(ipam.allocate(net, gw2, rng2, [])) == "10.2.0.129"
    assert str(ipam.allocate(net, gw, None, [], "10.2.0.77")) == "10.2.0.77"
    with pytest.raises(Conflict, match="already in use"):
        ipam.allocate(net, gw, None, ["10.2.0.77"], "10.2.0.77")
    with pytest.raises(Conflict):
        ipam.allocate(net, gw, None, [], "10.2.0.1")  # the gateway's
    small, sgw, _ = ipam.check_config("10.4.0.0/30")
    assert str(ipam.allocate(small, sgw, None, [])) == "10.4.0.2"
    with pytest.raises(FailedPrecondition, match="no available"):
        ipam.allocate(small, sgw, None, ["10.4.0.2"])
    assert ipam.mac_for("10.2.0.2") == "02:42:0a:02:00:02"


def test_requested_ports() -> None:
    got = requested_ports({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"},
                                      {"HostPort": ""}],
                           "53/udp": None, "90": [{"HostPort": "9000-9010"}]},
                          ["80/tcp", "443/tcp"], True)
    assert got == [PortRequest(80, "tcp", "127.0.0.1", 8080), PortRequest(80, "tcp", "", 0),
                   PortRequest(53, "udp", "", 0), PortRequest(90, "tcp", "", 9000, 9010),
                   PortRequest(443, "tcp", "", 0)]
    assert requested_ports({}, ["80/tcp"], False) == []
    assert parse_port_key("53/UDP") == (53, "udp")
    for bad in ("x/tcp", "80/icmp", "0", "70000"):
        with pytest.raises(InvalidArgument):
            parse_port_key(bad)
    with pytest.raises(InvalidArgument, match="HostIp"):
        requested_ports({"80": [{"HostIp": "nope"}]}, [], False)


def test_hold_and_reserve_refuse_a_port_in_use() -> None:
    h = hold("127.0.0.1", 0, "tcp", 80)
    try:
        assert h.host_port > 0
        with pytest.raises(Conflict, match=f"127.0.0.1:{h.host_port} failed: port is already"):
            hold("127.0.0.1", h.host_port, "tcp", 80)
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        fport = free.getsockname()[1]
        free.close()
        with pytest.raises(Conflict):  # all or nothing: the free one is released again
            reserve([PortRequest(1, "tcp", "127.0.0.1", fport),
                     PortRequest(2, "tcp", "127.0.0.1", h.host_port)])
        again = hold("127.0.0.1", fport, "tcp", 1)
        again.close()
        ranged = reserve([PortRequest(3, "tcp", "127.0.0.1", h.host_port, h.host_port + 40)])
        assert ranged[0].host_port != h.host_port
        ranged[0].close()
        udp = hold("127.0.0.1", h.host_port, "udp", 80)  # another protocol: its own space
        udp.close()
    finally:
        h.close()


def test_table_text_and_port_commands() -> None:
    text = table_text("pyrt_t", [BridgeRules("br-a", "10.1.0.0/24", False),
                                 BridgeRules("br-b", "10.1.1.0/24", True)],
                      [PortRule("", 8080, "tcp", "10.1.0.2", 80)], comment="pyrt:/r")
    assert text.startswith("add table ip pyrt_t\ndelete table ip pyrt_t\ntable ip pyrt_t {")
    assert 'comment "pyrt:/r";' in text
    assert 'chain net-br-a { oifname "br-a" accept; oifname @bridges drop; }' in text
    assert 'chain net-br-b { oifname "br-b" accept; drop; }' in text
    assert 'add element ip pyrt_t internal_br { "br-b" }' in text
    assert "add element ip pyrt_t masq_nets { 10.1.0.0/24 }" in text
    assert "add element ip pyrt_t ports_any { tcp . 8080 : 10.1.0.2 . 80 }" in text
    assert port_commands("delete", "t", [PortRule("127.0.0.1", 1, "udp", "10.0.0.2", 2)]) == [
        "delete element ip t ports_ip { 127.0.0.1 . udp . 1 }"]


def test_cli_publish_flags() -> None:
    from pyrt.cli.networks import network_options, parse_publish

    assert parse_publish("8080:80") == ("80/tcp", {"HostIp": "", "HostPort": "8080"})
    assert parse_publish("127.0.0.1:8080:80/udp") == ("80/udp", {"HostIp": "127.0.0.1",
                                                                 "HostPort": "8080"})
    assert parse_publish("127.0.0.1::80") == ("80/tcp", {"HostIp": "127.0.0.1",
                                                         "HostPort": ""})
    assert parse_publish("80") == ("80/tcp", {"HostIp": "", "HostPort": ""})
    cfg, host, net = network_options(["80", "1:81"], True, "mynet", "10.0.0.5", ["a"], ["1.1.1.1"])
    assert cfg == {"ExposedPorts": {"80/tcp": {}, "81/tcp": {}}}
    assert host["NetworkMode"] == "mynet" and host["PublishAllPorts"] is True
    assert host["Dns"] == ["1.1.1.1"]
    assert net == {"EndpointsConfig": {"mynet": {"IPAMConfig": {"IPv4Address": "10.0.0.5"},
                                                 "Aliases": ["a"]}}}
