"""Address management: subnets for networks out of address pools, addresses for endpoints.

    pick_subnet(pools, taken)                      # the first pool subnet clear of `taken`
    check_config(subnet, gateway, ip_range)        # validated (subnet, gateway, ip_range)
    allocate(subnet, gateway, ip_range, used, "")  # the lowest free address
    mac_for("10.210.0.2")                          # "02:42:0a:d2:00:02", as Docker derives it

The default pools (daemon.json `default-address-pools` replaces them) stay clear of
Docker's 172.17.0.0/16 and 172.16.0.0/12 pools; pick_subnet also skips whatever the host
routes or has addresses in, and the subnets of the other networks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pyrt.errors import Conflict, FailedPrecondition, InvalidArgument

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address


@dataclass(frozen=True)
class Pool:
    base: str
    size: int


DEFAULT_POOLS: tuple[Pool, ...] = (Pool("10.210.0.0/16", 24), Pool("10.211.0.0/16", 24))


def _net(text: str, what: str) -> IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"{what}: {text!r} is not a subnet in CIDR form") from None
    if not isinstance(net, IPv4Network):
        raise InvalidArgument(f"{what}: {text!r}: only IPv4 subnets are supported")
    return net


def _addr(text: str, what: str) -> IPv4Address:
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"{what}: {text!r} is not an IP address") from None
    if not isinstance(a, IPv4Address):
        raise InvalidArgument(f"{what}: {text!r}: only IPv4 addresses are supported")
    return a


def pick_subnet(pools: Sequence[Pool], taken: Iterable[IPv4Network]) -> IPv4Network:
    """The first subnet of the pools that overlaps nothing in `taken`."""
    busy = list(taken)
    for pool in pools:
        base = _net(pool.base, "default-address-pools base")
        if pool.size < base.prefixlen or pool.size > 30:
            raise InvalidArgument(f"default-address-pools: size {pool.size} does not fit "
                                  f"the base {pool.base}")  # fmt: skip
        for sub in base.subnets(new_prefix=pool.size):
            if not any(sub.overlaps(t) for t in busy):
                return sub
    raise FailedPrecondition("could not find an available, non-overlapping IPv4 address pool "
                             "among the defaults to assign to the network")  # fmt: skip


def check_config(subnet: str, gateway: str = "", ip_range: str = ""
                 ) -> tuple[IPv4Network, IPv4Address, IPv4Network | None]:
    """A network's IPAM config checked: the gateway defaults to the subnet's first host."""
    net = _net(subnet, "subnet")
    if net.prefixlen > 30:
        raise InvalidArgument(f"subnet {subnet}: too small (at most /30)")
    gw = _addr(gateway, "gateway") if gateway else net.network_address + 1
    if gw not in net or gw in (net.network_address, net.broadcast_address):
        raise InvalidArgument(f"gateway {gw} is not a host address of the subnet {net}")
    rng = None
    if ip_range:
        rng = _net(ip_range, "ip-range")
        if not rng.subnet_of(net):
            raise InvalidArgument(f"ip-range {rng} is not inside the subnet {net}")
    return net, gw, rng


def allocate(subnet: IPv4Network, gateway: IPv4Address, ip_range: IPv4Network | None,
             used: Iterable[str], requested: str = "") -> IPv4Address:
    """A free address: `requested` (checked), else the lowest free one of the range."""
    busy = {IPv4Address(u) for u in used if u} | {gateway}
    if requested:
        want = _addr(requested, "ip")
        if want not in subnet or want in (subnet.network_address, subnet.broadcast_address):
            raise InvalidArgument(f"ip {want} is not a host address of the subnet {subnet}")
        if want in busy:
            raise Conflict(f"Address already in use: {want} on the subnet {subnet}")
        return want
    space = ip_range if ip_range is not None else subnet
    for a in space.hosts() if space.prefixlen < 31 else iter(space):
        if a not in busy and a not in (subnet.network_address, subnet.broadcast_address):
            return a
    raise FailedPrecondition(f"no available IPv4 addresses on the subnet {subnet}"
                             + (f" range {ip_range}" if ip_range is not None else ""))


def mac_for(ip: str) -> str:
    """02:42 and the four bytes of the address: stable per address, as Docker's."""
    return "02:42:" + ":".join(f"{b:02x}" for b in IPv4Address(ip).packed)


__all__ = ["DEFAULT_POOLS", "Pool", "allocate", "check_config", "mac_for", "pick_subnet"]
