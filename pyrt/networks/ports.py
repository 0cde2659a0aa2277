"""Published ports: HostConfig.PortBindings / PublishAllPorts into host-port reservations.

    wanted = requested_ports(host.PortBindings, exposed, host.PublishAllPorts)
    held = reserve(wanted)          # sockets bound on the host ports (random ones chosen)

A published port is served by DNAT (pyrt.networks.nft), not by a proxy process; the engine
keeps a socket bound (not listening) on each host port while the container runs, so the
port is reserved the way Docker's proxy holds it: another program (or container) asking
for it gets EADDRINUSE, and a port already in use refuses the start with a clear error.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyrt.errors import Conflict, InvalidArgument, SystemError_

PROTOS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class PortRequest:
    ctr_port: int
    proto: str
    host_ip: str  # "" = every address
    host_port: int  # 0 = a free one
    host_port_end: int = 0  # a range HostPort "8000-8010": the first free one


def parse_port_key(key: str, what: str = "port") -> tuple[int, str]:
    """ "80/tcp" -> (80, "tcp"); the protocol defaults to tcp."""
    num, _, proto = key.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in PROTOS:
        raise InvalidArgument(f"{what} {key!r}: protocol {proto!r} is not tcp, udp or sctp")
    try:
        port = int(num)
    except ValueError:
        raise InvalidArgument(f"{what} {key!r}: {num!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise InvalidArgument(f"{what} {key!r}: port {port} is out of 1..65535")
    return port, proto


def _host_port(text: str, what: str) -> tuple[int, int]:
    if not text:
        return 0, 0
    lo, dash, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi) if dash else 0
    except ValueError:
        raise InvalidArgument(f"{what}: HostPort {text!r} is not a port or range") from None
    if not 0 <= a <= 65535 or (dash and not a <= b <= 65535):
        raise InvalidArgument(f"{what}: HostPort {text!r} is out of range")
    return a, b


def requested_ports(bindings: Mapping[str, Any], exposed: Iterable[str],
                    publish_all: bool) -> list[PortRequest]:
    """What to publish: each binding, plus (with publish_all) every exposed port on a free
    host port."""
    out: list[PortRequest] = []
    seen: set[tuple[int, str]] = set()
    for key, binds in (bindings or {}).items():
        ctr_port, proto = parse_port_key(key, "HostConfig.PortBindings")
        seen.add((ctr_port, proto))
        for i, b in enumerate(binds or [{}]):
            what = f"HostConfig.PortBindings[{key!r}][{i}]"
            if not isinstance(b, Mapping):
                raise InvalidArgument(f"{what}: must be an object")
            host_ip = str(b.get("HostIp") or "")
            if host_ip and host_ip != "0.0.0.0":
                try:
                    socket.inet_aton(host_ip)
                except OSError:
                    raise InvalidArgument(f"{what}: HostIp {host_ip!r} is not an IPv4 "
                                          "address") from None  # fmt: skip
            hp, hp_end = _host_port(str(b.get("HostPort") or ""), what)
            out.append(PortRequest(ctr_port, proto, "" if host_ip == "0.0.0.0" else host_ip,
                                   hp, hp_end))  # fmt: skip
    if publish_all:
        for key in exposed:
            ctr_port, proto = parse_port_key(key, "ExposedPorts")
            if (ctr_port, proto) not in seen:
                seen.add((ctr_port, proto))
                out.append(PortRequest(ctr_port, proto, "", 0))
    return out


@dataclass
class HeldPort:
    host_ip: str
    host_port: int
    proto: str
    ctr_port: int
    sock: socket.socket | None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _bind(host_ip: str, port: int, proto: str) -> socket.socket:
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind((host_ip or "0.0.0.0", port))
    except BaseException:
        s.close()
        raise
    return s


def hold(host_ip: str, host_port: int, proto: str, ctr_port: int) -> HeldPort:
    """Reserve one host port (0: a free one); Conflict when it is in use."""
    try:
        s = _bind(host_ip, host_port, "tcp" if proto == "sctp" else proto)
    except OSError as e:
        where = f"{host_ip or '0.0.0.0'}:{host_port}"
        if e.errno == errno.EADDRINUSE:
            raise Conflict(f"Bind for {where} failed: port is already allocated") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise InvalidArgument(f"Bind for {where} failed: {host_ip} is not an address "
                                  "of this host") from None  # fmt: skip
        raise SystemError_(f"Bind for {where} failed: {e.strerror}", e.errno) from None
    return HeldPort(host_ip, int(s.getsockname()[1]), proto, ctr_port, s)


def reserve(wanted: Sequence[PortRequest]) -> list[HeldPort]:
    """Hold every requested port, or none (the first failure raises, the rest released)."""
    held: list[HeldPort] = []
    try:
        for r in wanted:
            if r.host_port and r.host_port_end:
                last: Exception | None = None
                for port in range(r.host_port, r.host_port_end + 1):
                    try:
                        held.append(hold(r.host_ip, port, r.proto, r.ctr_port))
                        break
                    except Conflict as e:
                        last = e
                else:
                    raise last or Conflict("no free port in the range")
            else:
                held.append(hold(r.host_ip, r.host_port, r.proto, r.ctr_port))
    except BaseException:
        for h in held:
            with contextlib.suppress(OSError):
                h.close()
        raise
    return held


__all__ = ["PROTOS", "HeldPort", "PortRequest", "hold", "parse_port_key", "requested_ports",
           "reserve"]
