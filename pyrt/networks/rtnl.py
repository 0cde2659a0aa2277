"""rtnetlink (NETLINK_ROUTE) requests built and read by hand: the few the network driver
sends (pyroute2 did this before, for ~7 MB of the daemon's memory and ~0.3 s of imports).

    nl = Rtnl()                                   # bound to the calling thread's netns
    add_bridge(nl, "pyrt0", "02:42:0a:d2:00:01")
    index = link_index(nl, "pyrt0")               # or None
    add_address(nl, "pyrt0", index, "10.210.0.1", 24)
    set_link(nl, "pyrt0", index, up=True, alias="pyrt:/var/lib/pyrt")
    delete_link(nl, "pyrt0")
    nl.close()

The wire format (linux/netlink.h, linux/rtnetlink.h, all in host byte order): a message is
a 16-byte nlmsghdr (length, type, flags, sequence, port id), a family header (ifinfomsg
for links, ifaddrmsg for addresses), then attributes: a 4-byte rtattr header (length,
type), the payload, zero padding to a multiple of 4. An attribute may hold others
(IFLA_LINKINFO holds IFLA_INFO_KIND and IFLA_INFO_DATA). Every request asks for an ack
(NLM_F_ACK): an NLMSG_ERROR message whose error is 0 or -errno. The socket sets
NETLINK_CAP_ACK (the ack does not echo the request back) and NETLINK_EXT_ACK (the kernel
may append attributes to the ack; NLMSGERR_ATTR_MSG carries its own words, such as
"Attribute failed policy validation", which the errors here quote).

Errors name the interface, the errno and the kernel's words: Conflict for a link or
address that already exists, NotFound for a link that does not, InvalidArgument for a
name the kernel would refuse, SystemError_ (with .errno) for the rest.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import socket
import struct
from typing import NamedTuple

from pyrt.errors import Conflict, InvalidArgument, NotFound, SystemError_

SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK = 270, 10, 11
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200  # flags of an ack
NLMSG_ERROR, NLMSGERR_ATTR_MSG = 2, 1
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR = 16, 17, 18, 20
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO = 1, 3, 4, 10, 18
IFLA_IFALIAS, IFLA_NET_NS_FD = 20, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
IFF_UP = 0x1
NLA_TYPE_MASK = 0x3FFF  # an attribute's type without NLA_F_NESTED / NLA_F_NET_BYTEORDER
IFNAMSIZ = 16
NLMSGHDR = struct.Struct("IHHII")  # length, type, flags, sequence, port id
RTATTR = struct.Struct("HH")  # length, type


class Message(NamedTuple):
    kind: int
    flags: int
    seq: int
    payload: bytes  # what follows the nlmsghdr


class NetlinkError(OSError):
    """The kernel refused one request: the errno and, when it said more, its words."""

    def __init__(self, err: int, detail: str = "") -> None:
        super().__init__(err, os.strerror(err))
        self.detail = detail


# -- encoding and decoding (pure) ----------------------------------------------------------


def align(n: int) -> int:
    """n rounded up to netlink's 4-byte alignment."""
    return (n + 3) & ~3


def rtattr(kind: int, data: bytes) -> bytes:
    """One attribute: header, payload, padding. Nesting is an rtattr of rtattrs."""
    size = RTATTR.size + len(data)
    return RTATTR.pack(size, kind) + data + b"\0" * (align(size) - size)


def rtattr_str(kind: int, text: str) -> bytes:
    return rtattr(kind, text.encode() + b"\0")


def rtattr_u32(kind: int, value: int) -> bytes:
    return rtattr(kind, struct.pack("I", value))


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """The attributes of `data` by type (payloads without padding; a nested one is parsed
    by calling this again on its payload). A malformed one raises NetlinkError(EBADMSG)."""
    out: dict[int, bytes] = {}
    off = 0
    while off < len(data):
        if len(data) - off < RTATTR.size:
            raise NetlinkError(_errno.EBADMSG, f"{len(data) - off} stray bytes after attributes")
        size, kind = RTATTR.unpack_from(data, off)
        if size < RTATTR.size or off + size > len(data):
            raise NetlinkError(_errno.EBADMSG, f"attribute {kind} of length {size} at {off} "
                                               f"overruns {len(data)} bytes")  # fmt: skip
        out[kind & NLA_TYPE_MASK] = data[off + RTATTR.size:off + size]
        off += align(size)
    return out


def nlmsg(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    """A whole message: nlmsghdr (port id 0: the kernel fills ours in) and body."""
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def split_messages(buf: bytes) -> list[Message]:
    """The messages of one datagram (the kernel packs several into one)."""
    out = []
    off = 0
    while len(buf) - off >= NLMSGHDR.size:
        size, kind, flags, seq, _ = NLMSGHDR.unpack_from(buf, off)
        if size < NLMSGHDR.size or off + size > len(buf):
            raise NetlinkError(_errno.EBADMSG, f"message of length {size} at {off} overruns "
                                               f"{len(buf)} bytes")  # fmt: skip
        out.append(Message(kind, flags, seq, buf[off + NLMSGHDR.size:off + size]))
        off += align(size)
    return out


def parse_ack(msg: Message) -> tuple[int, str]:
    """(errno, the kernel's words or "") of an NLMSG_ERROR message; errno 0 is success.
    Its payload is struct nlmsgerr: the error (0 or -errno), the request's nlmsghdr and,
    unless NLM_F_CAPPED, the rest of the request; with NLM_F_ACK_TLVS attributes follow."""
    if len(msg.payload) < 4:
        raise NetlinkError(_errno.EBADMSG, "an ack without its error code")
    error = -struct.unpack_from("i", msg.payload)[0]
    detail = ""
    if msg.flags & NLM_F_ACK_TLVS and len(msg.payload) >= 4 + NLMSGHDR.size:
        echoed = NLMSGHDR.size if msg.flags & NLM_F_CAPPED else NLMSGHDR.unpack_from(
            msg.payload, 4)[0]  # fmt: skip
        said = parse_attrs(msg.payload[4 + align(echoed):]).get(NLMSGERR_ATTR_MSG, b"")
        detail = said.split(b"\0", 1)[0].decode(errors="replace")
    return error, detail


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    """struct ifinfomsg: family, type, index, flags, and which flags to change."""
    return struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


def ifaddrmsg(index: int, prefixlen: int, family: int = socket.AF_INET) -> bytes:
    """struct ifaddrmsg: family, prefix length, flags, scope (universe), index."""
    return struct.pack("BBBBI", family, prefixlen, 0, 0, index)


def check_ifname(name: str) -> None:
    """What the kernel takes as an interface name (dev_valid_name): 1 to 15 bytes, no '/',
    ':' or whitespace, not "." or "..". Checked here so the error says which rule."""
    size = len(name.encode())
    if not 0 < size < IFNAMSIZ:
        raise InvalidArgument(f"interface name {name!r} is {size} bytes long: it takes 1 to "
                              f"{IFNAMSIZ - 1}")  # fmt: skip
    if name in (".", "..") or any(c in "/:" or c.isspace() for c in name):
        raise InvalidArgument(f"interface name {name!r} is not valid: no '/', ':' or "
                              "whitespace, and not '.' or '..'")  # fmt: skip


def describe(what: str, e: NetlinkError) -> str:
    """`what` and why the kernel refused: "create bridge pyrt0: File exists (EEXIST)"."""
    code = _errno.errorcode.get(e.errno or 0, str(e.errno))
    return f"{what}: {e.strerror} ({code})" + (f": {e.detail}" if e.detail else "")


# -- the socket ------------------------------------------------------------------------------


class Rtnl:
    """One NETLINK_ROUTE socket, in the network namespace of the thread that makes it (a
    netlink socket keeps that namespace whatever the thread does later). Not thread-safe:
    one owner thread per socket."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  socket.NETLINK_ROUTE)  # fmt: skip
        try:
            self.sock.bind((0, 0))
            for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
                with contextlib.suppress(OSError):  # (kernels before 4.3 / 4.12: plain acks)
                    self.sock.setsockopt(SOL_NETLINK, opt, 1)
        except BaseException:
            self.sock.close()
            raise
        self._seq = 0

    def request(self, kind: int, body: bytes, flags: int = 0) -> list[Message]:
        """Send one request and wait for its ack: the replies before the ack (a get's
        answer), or NetlinkError with the kernel's errno and words."""
        self._seq = self._seq % 0xFFFFFFFF + 1  # (a u32 on the wire)
        seq = self._seq
        self.sock.send(nlmsg(kind, NLM_F_REQUEST | NLM_F_ACK | flags, seq, body))
        replies: list[Message] = []
        while True:
            for msg in split_messages(self.sock.recv(65536)):
                if msg.seq != seq:
                    continue  # (a late answer to an earlier request: not ours now)
                if msg.kind != NLMSG_ERROR:
                    replies.append(msg)
                    continue
                err, detail = parse_ack(msg)
                if err:
                    raise NetlinkError(err, detail)
                return replies

    def close(self) -> None:
        self.sock.close()


# -- the requests the driver sends ---------------------------------------------------------


def link_index(nl: Rtnl, name: str) -> int | None:
    """The index of link `name` in the socket's namespace, or None (RTM_GETLINK by name)."""
    check_ifname(name)
    try:
        replies = nl.request(RTM_GETLINK, ifinfomsg() + rtattr_str(IFLA_IFNAME, name))
    except NetlinkError as e:
        if e.errno == _errno.ENODEV:
            return None
        raise SystemError_(describe(f"look up link {name}", e), e.errno) from None
    for msg in replies:
        if msg.kind == RTM_NEWLINK and len(msg.payload) >= 16:
            return int(struct.unpack_from("i", msg.payload, 4)[0])
    raise SystemError_(f"look up link {name}: the kernel's answer holds no link")


def add_bridge(nl: Rtnl, name: str, mac: str, mtu: int = 0) -> None:
    """Create bridge `name` (down, no address) with the MAC `mac` ("02:42:..") and, when
    not 0, the MTU `mtu`. Conflict when a link of that name exists."""
    check_ifname(name)
    info = rtattr(IFLA_LINKINFO, rtattr(IFLA_INFO_KIND, b"bridge"))
    body = (ifinfomsg() + rtattr_str(IFLA_IFNAME, name)
            + rtattr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", ""))) + info
            + (rtattr_u32(IFLA_MTU, mtu) if mtu else b""))  # fmt: skip
    try:
        nl.request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL)
    except NetlinkError as e:
        text = describe(f"create bridge {name}", e)
        if e.errno == _errno.EEXIST:
            raise Conflict(f"{text}: a link named {name} exists already") from None
        raise SystemError_(text, e.errno) from None


def add_veth(nl: Rtnl, host_ifname: str, master: int, peer: str, peer_mac: str, netns_fd: int,
             mtu: int = 0) -> None:
    """Create a veth pair in one message: `host_ifname` a port of the bridge with index
    `master` and up; its peer `peer` with the MAC `peer_mac` in the namespace of
    `netns_fd` (down). MTU `mtu` on both ends when not 0. SystemError_ when refused."""
    check_ifname(host_ifname)
    check_ifname(peer)
    mtu_attr = rtattr_u32(IFLA_MTU, mtu) if mtu else b""
    other = (ifinfomsg() + rtattr_str(IFLA_IFNAME, peer)
             + rtattr_u32(IFLA_NET_NS_FD, netns_fd)
             + rtattr(IFLA_ADDRESS, bytes.fromhex(peer_mac.replace(":", ""))) + mtu_attr)
    info = rtattr(IFLA_INFO_KIND, b"veth") + rtattr(
        IFLA_INFO_DATA, rtattr(VETH_INFO_PEER, other))
    body = (ifinfomsg(flags=IFF_UP, change=IFF_UP) + rtattr_str(IFLA_IFNAME, host_ifname)
            + rtattr(IFLA_LINKINFO, info) + rtattr_u32(IFLA_MASTER, master) + mtu_attr)
    try:
        nl.request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL)
    except NetlinkError as e:
        raise SystemError_(describe(f"add veth {host_ifname}", e), e.errno) from None


def add_address(nl: Rtnl, name: str, index: int, address: str, prefixlen: int) -> None:
    """Add the IPv4 address/prefixlen (with its subnet's broadcast, as `ip addr add ...
    brd +` and Docker's bridges have) to link `name`, index `index`. Conflict when the
    link has it already."""
    packed = socket.inet_aton(address)
    body = ifaddrmsg(index, prefixlen) + rtattr(IFA_LOCAL, packed) + rtattr(IFA_ADDRESS, packed)
    if prefixlen < 31:  # (a /31 or /32 has no broadcast address)
        host = (1 << (32 - prefixlen)) - 1
        bcast = int.from_bytes(packed, "big") | host
        body += rtattr(IFA_BROADCAST, bcast.to_bytes(4, "big"))
    try:
        nl.request(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL)
    except NetlinkError as e:
        text = describe(f"add address {address}/{prefixlen} to {name}", e)
        if e.errno == _errno.EEXIST:
            raise Conflict(text) from None
        if e.errno == _errno.ENODEV:
            raise NotFound(text) from None
        raise SystemError_(text, e.errno) from None


def set_link(nl: Rtnl, name: str, index: int, up: bool, alias: str = "") -> None:
    """Bring link `name` (index `index`) up or down and, when given, set its ifalias."""
    body = ifinfomsg(index, IFF_UP if up else 0, IFF_UP)
    if alias:
        body += rtattr(IFLA_IFALIAS, alias.encode())
    try:
        nl.request(RTM_NEWLINK, body)
    except NetlinkError as e:
        text = describe(f"set link {name} {'up' if up else 'down'}", e)
        if e.errno == _errno.ENODEV:
            raise NotFound(text) from None
        raise SystemError_(text, e.errno) from None


def delete_link(nl: Rtnl, name: str) -> None:
    """Delete link `name` (a veth takes its peer with it). NotFound when there is none."""
    check_ifname(name)
    try:
        nl.request(RTM_DELLINK, ifinfomsg() + rtattr_str(IFLA_IFNAME, name))
    except NetlinkError as e:
        text = describe(f"delete link {name}", e)
        if e.errno == _errno.ENODEV:
            raise NotFound(f"{text}: there is no link named {name}") from None
        raise SystemError_(text, e.errno) from None


__all__ = ["NetlinkError", "Rtnl", "add_address", "add_bridge", "add_veth", "check_ifname",
           "delete_link", "link_index", "set_link"]
