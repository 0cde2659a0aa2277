"""The embedded DNS server: what a container on a user network finds at 127.0.0.11:53.

Docker's model: every container on a user-defined network gets `nameserver 127.0.0.11` in
its /etc/resolv.conf. Names of the other containers on its networks (names, aliases, short
ids) are answered by the engine; every other question goes to the host's resolvers.

Shape:
- One server thread (a `selectors` loop) serves every container. For each container it
  holds a UDP socket and a listening TCP socket on 127.0.0.11 *inside the container's
  network namespace*: they are created by a short-lived thread that joins the namespace
  with setns(2) and then goes back; a socket keeps the namespace it was made in. As
  Docker does, they listen on free ports and an nftables table in that namespace (table
  ip pyrt_dns) DNATs 127.0.0.11:53 to them, so port 53 stays free for the container's
  own programs; without nftables they listen on port 53 itself.
- The messages are parsed and built here (stdlib only). Bad input never reaches past the
  parser: a packet too short for a header, or one that is itself a response, is dropped;
  anything else malformed gets FORMERR, an opcode other than QUERY gets NOTIMP.
- Forwarding never blocks the loop: each forwarded query gets a non-blocking socket of
  its own towards the upstream (UDP for UDP clients, TCP for TCP clients), a fresh random
  query id, and a deadline; a timeout, a refused port or a SERVFAIL/REFUSED/NOTIMP answer
  moves on to the next upstream; when none is left the client gets SERVFAIL.
- The forwarder runs in the host's network namespace, so it reaches what the host
  reaches (loopback resolvers included); a container whose networks are all `--internal`
  is added with forward=False and gets SERVFAIL for outside names.

Thread safety: add_container, remove_container and close may be called from any thread;
they hand their work to the server thread and wait for it. `resolve` and `reverse` are
called on the server thread: they must be quick and must not call back into this object.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import heapq
import ipaddress
import itertools
import logging
import os
import secrets
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar, cast

from pyrt.containers.etcfiles import host_resolv_conf, is_loopback, parse_resolv_conf
from pyrt.errors import FailedPrecondition, InvalidArgument, SystemError_
from pyrt.networks.nft import Nft
from pyrt.ownthread import run_on_own_thread

log = logging.getLogger("pyrt.networks.dns")

DNS_ADDRESS = "127.0.0.11"
DNS_PORT = 53
TTL = 600  # seconds, as Docker's resolver answers
UDP_LIMIT = 512  # a UDP answer to a client without EDNS (RFC 1035 4.2.1)
MAX_UDP_PAYLOAD = 4096  # what we accept from a client's EDNS payload size, at most

# header flags
QR = 0x8000
OPCODE_MASK = 0x7800
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
RCODE_MASK = 0x000F

# response codes
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5

# types and classes
TYPE_A = 1
TYPE_PTR = 12
TYPE_AAAA = 28
TYPE_OPT = 41
TYPE_ANY = 255
CLASS_IN = 1
CLASS_ANY = 255

MAX_NAME = 255  # wire length of a name, root label included
MAX_LABEL = 63

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_Q_FIXED = struct.Struct("!HH")  # qtype, qclass
_NAME_PTR_QUESTION = b"\xc0\x0c"  # compression pointer to the question's name at offset 12

_T = TypeVar("_T")

CLONE_NEWNET = 0x40000000
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
# struct in_pktinfo {ifindex; spec_dst; addr}: send from 127.0.0.11 whatever the socket has
_FROM_DNS_ADDRESS = [
    (socket.SOL_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, socket.inet_aton(DNS_ADDRESS), bytes(4)))
]


# -- wire format ------------------------------------------------------------------------------


class FormatError(ValueError):
    """A DNS message that does not parse."""


@dataclass(frozen=True)
class Query:
    """A parsed query: one question, and the EDNS payload size when the client sent one."""

    id: int
    flags: int
    labels: tuple[bytes, ...]  # as sent (case kept)
    qtype: int
    qclass: int
    question: bytes  # the question section as sent, echoed in replies
    udp_limit: int  # largest UDP reply the client takes

    @property
    def name(self) -> str:
        """The name in presentation form: ASCII lowercased, no trailing dot."""
        return name_text(self.labels)


def read_name(msg: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """Read the (possibly compressed) name at `offset`: (labels, offset after the name).

    A compression pointer must point before the start of the label run that contains it,
    so every jump goes strictly backwards and no message can make this loop; the name's
    wire length is bounded by 255 as well.
    """
    labels: list[bytes] = []
    wire_len = 1
    end = -1
    pos = run_start = offset
    while True:
        if pos >= len(msg):
            raise FormatError("name runs past the end of the message")
        length = msg[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= len(msg):
                raise FormatError("compression pointer cut short")
            target = ((length & 0x3F) << 8) | msg[pos + 1]
            if target >= run_start:
                raise FormatError(f"compression pointer at {pos} does not point backwards")
            if end < 0:
                end = pos + 2
            pos = run_start = target
            continue
        if kind:
            raise FormatError(f"unsupported label type 0x{kind:02x} at {pos}")
        if length == 0:
            return tuple(labels), end if end >= 0 else pos + 1
        label = msg[pos + 1 : pos + 1 + length]
        if len(label) != length:
            raise FormatError("label runs past the end of the message")
        wire_len += length + 1
        if wire_len > MAX_NAME:
            raise FormatError("name longer than 255 bytes")
        labels.append(label)
        pos += 1 + length


def _label_text(label: bytes) -> str:
    out = []
    for b in label.lower():
        if b in b".\\":
            out.append("\\" + chr(b))
        elif 0x21 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")  # RFC 1035 5.1 escape: never an ambiguous name
    return "".join(out)


def name_text(labels: Sequence[bytes]) -> str:
    """Presentation form of a name: ASCII lowercased, dots between labels, no final dot;
    dots, backslashes and unprintable bytes inside a label escaped (RFC 1035 5.1)."""
    return ".".join(_label_text(label) for label in labels)


def encode_name(name: str) -> bytes:
    """Wire form of a host name ("web.net" or "web.net."), uncompressed."""
    out = bytearray()
    for part in name.rstrip(".").split(".") if name.strip(".") else []:
        label = part.encode("ascii")
        if not 0 < len(label) <= MAX_LABEL:
            raise InvalidArgument(f"DNS name {name!r}: label {part!r} must be 1..63 bytes")
        out += bytes([len(label)]) + label
    out += b"\x00"
    if len(out) > MAX_NAME:
        raise InvalidArgument(f"DNS name {name!r}: longer than 255 bytes")
    return bytes(out)


def _skip_record(msg: bytes, offset: int) -> tuple[int, int, int]:
    """Skip the resource record at offset: (type, class, offset after it)."""
    _, pos = read_name(msg, offset)
    if pos + _RR_FIXED.size > len(msg):
        raise FormatError("resource record cut short")
    rtype, rclass, _, rdlength = _RR_FIXED.unpack_from(msg, pos)
    pos += _RR_FIXED.size + rdlength
    if pos > len(msg):
        raise FormatError("resource record data runs past the end of the message")
    return rtype, rclass, pos


def parse_query(msg: bytes) -> Query:
    """Parse a query with exactly one question; raise FormatError when it is malformed."""
    if len(msg) < _HEADER.size:
        raise FormatError("shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(msg)
    if qdcount != 1:
        raise FormatError(f"{qdcount} questions; a query has one")
    labels, pos = read_name(msg, _HEADER.size)
    if pos + _Q_FIXED.size > len(msg):
        raise FormatError("question cut short")
    qtype, qclass = _Q_FIXED.unpack_from(msg, pos)
    pos += _Q_FIXED.size
    question = msg[_HEADER.size : pos]
    for _ in range(ancount + nscount):
        _, _, pos = _skip_record(msg, pos)
    udp_limit = UDP_LIMIT
    seen_opt = False
    for _ in range(arcount):
        rtype, rclass, pos = _skip_record(msg, pos)
        if rtype == TYPE_OPT:
            if seen_opt:
                raise FormatError("more than one OPT record")  # RFC 6891 6.1.1
            seen_opt = True
            udp_limit = max(UDP_LIMIT, min(rclass, MAX_UDP_PAYLOAD))
    return Query(qid, flags, labels, qtype, qclass, question, udp_limit)


def reply_header(qid: int, query_flags: int, rcode: int, counts: tuple[int, int, int, int],
                 *, authoritative: bool = False) -> bytes:  # fmt: skip
    """A response header: the query's id, opcode and RD kept; QR and RA set."""
    flags = QR | (query_flags & (OPCODE_MASK | RD)) | RA | (rcode & RCODE_MASK)
    if authoritative:
        flags |= AA
    return _HEADER.pack(qid, flags, *counts)


def error_reply(msg: bytes, rcode: int) -> bytes:
    """An answer with `rcode` and no sections, for a query whose question cannot be used."""
    qid, flags = struct.unpack_from("!HH", msg)
    return reply_header(qid, flags, rcode, (0, 0, 0, 0))


def build_reply(query: Query, rcode: int, answers: Sequence[bytes] = (),
                *, authoritative: bool = False) -> bytes:  # fmt: skip
    """A response to `query`: its question echoed, then the given answer records."""
    head = reply_header(query.id, query.flags, rcode, (1, len(answers), 0, 0),
                        authoritative=authoritative)  # fmt: skip
    return head + query.question + b"".join(answers)


_A_HEAD = _NAME_PTR_QUESTION + _RR_FIXED.pack(TYPE_A, CLASS_IN, TTL, 4)


def a_record(address: str, ttl: int = TTL) -> bytes:
    """An A record for the question's name (compressed to a pointer at offset 12).
    Raises ValueError unless address is a dotted-quad IPv4 address."""
    try:
        packed = socket.inet_pton(socket.AF_INET, address)  # strict, unlike inet_aton
    except (OSError, TypeError):
        raise ValueError(f"{address!r} is not an IPv4 address") from None
    head = _A_HEAD if ttl == TTL else _NAME_PTR_QUESTION + _RR_FIXED.pack(TYPE_A, CLASS_IN, ttl, 4)
    return head + packed


def ptr_record(target: str, ttl: int = TTL) -> bytes:
    """A PTR record for the question's name pointing at `target`."""
    rdata = encode_name(target)
    return _NAME_PTR_QUESTION + _RR_FIXED.pack(TYPE_PTR, CLASS_IN, ttl, len(rdata)) + rdata


def truncate(reply: bytes, limit: int) -> bytes:
    """`reply` if it fits in `limit` bytes, else its header and question with TC set."""
    if len(reply) <= limit:
        return reply
    qid, flags, qdcount = struct.unpack_from("!HHH", reply)
    end = _HEADER.size
    try:
        for _ in range(qdcount):
            _, end = read_name(reply, end)
            end += _Q_FIXED.size
        if end > min(len(reply), limit):
            raise FormatError("question does not fit")
    except FormatError:
        end, qdcount = _HEADER.size, 0
    return _HEADER.pack(qid, flags | TC, qdcount, 0, 0, 0) + reply[_HEADER.size : end]


def reverse_address(labels: Sequence[bytes]) -> str | None:
    """The IPv4 address of an in-addr.arpa name ("4.3.2.1.in-addr.arpa" -> "1.2.3.4")."""
    if len(labels) != 6 or [x.lower() for x in labels[4:]] != [b"in-addr", b"arpa"]:
        return None
    octets = labels[3::-1]
    if not all(o.isdigit() and len(o) <= 3 and int(o) <= 255 for o in octets):
        return None
    return ".".join(str(int(o)) for o in octets)


Lookup = Callable[[str], "list[str] | None"]


def handle_query(msg: bytes, resolve: Lookup, reverse: Lookup | None = None,
                 *, udp: bool = True) -> bytes | Query | None:  # fmt: skip
    """Answer a client's message: the reply (already cut to the client's UDP size when
    `udp`), the parsed Query when it must be forwarded upstream, or None to drop it.

    resolve(name) gives the IPv4 addresses of a name that is ours (an empty list: ours,
    but without an address) or None (not ours); reverse(address) gives the names of one
    of our addresses, or None. Only class IN (or ANY) questions are looked up.
    """
    if len(msg) < _HEADER.size:
        return None  # no id to answer to
    flags = struct.unpack_from("!H", msg, 2)[0]
    if flags & QR:
        return None  # a response: answering it could start a loop between two servers
    if flags & OPCODE_MASK:
        return error_reply(msg, NOTIMP)
    try:
        query = parse_query(msg)
    except FormatError as e:
        log.debug("dns: malformed query: %s", e)
        return error_reply(msg, FORMERR)
    if query.qclass not in (CLASS_IN, CLASS_ANY) or not query.labels:
        return query
    answers: list[bytes]
    if query.qtype == TYPE_PTR and reverse is not None:
        address = reverse_address(query.labels)
        names = reverse(address) if address is not None else None
        if not names:
            return query
        answers = []
        for n in names:
            try:
                answers.append(ptr_record(n))
            except InvalidArgument as e:
                log.warning("dns: %s: %s; left out", query.name, e)
    else:
        addresses = resolve(query.name)
        if addresses is None:
            return query
        answers = []
        if query.qtype in (TYPE_A, TYPE_ANY):
            for a in addresses:
                try:
                    answers.append(a_record(a))
                except ValueError:
                    log.warning("dns: %s: %r is not an IPv4 address; left out", query.name, a)
        # AAAA and every other type of one of our names: NOERROR without answers (NODATA),
        # so the client does not go on to ask the upstreams about it
    reply = build_reply(query, NOERROR, answers, authoritative=True)
    return truncate(reply, query.udp_limit) if udp else reply


def reply_matches(reply: bytes, upstream_id: int, query: Query) -> bool:
    """Whether an upstream's message answers our forwarded query (id, QR, question)."""
    if len(reply) < _HEADER.size:
        return False
    rid, flags, qdcount = struct.unpack_from("!HHH", reply)
    if rid != upstream_id or not flags & QR:
        return False
    if qdcount == 0:
        return bool(flags & RCODE_MASK != NOERROR)  # FORMERR/NOTIMP... may come without question
    try:
        labels, pos = read_name(reply, _HEADER.size)
        if qdcount != 1 or pos + _Q_FIXED.size > len(reply):
            return False
    except FormatError:
        return False
    same_name = [x.lower() for x in labels] == [x.lower() for x in query.labels]
    return same_name and _Q_FIXED.unpack_from(reply, pos) == (query.qtype, query.qclass)


# -- upstreams ------------------------------------------------------------------------------------


def host_upstreams(resolv_text: str) -> list[tuple[str, int]]:
    """The upstreams to forward to, from the host's resolv.conf text.

    The host's nameservers that are not loopback addresses, in the host's order. When the
    host has only loopback ones (a local dnsmasq; systemd-resolved's stub is already
    replaced by its upstream list in etcfiles.host_resolv_conf), those: the forwarder runs
    in the host's network namespace, where they answer, while Docker, which forwards from
    inside the container, has to fall back to public servers there.
    """
    servers = []
    for ns in parse_resolv_conf(resolv_text).nameservers:
        try:
            ipaddress.ip_address(ns.split("%", 1)[0])
        except ValueError:
            continue  # what the C library would skip too
        servers.append(ns)
    outside = [s for s in servers if not is_loopback(s)]
    return [(s, DNS_PORT) for s in outside or servers]


# -- network namespaces ---------------------------------------------------------------------------

_libc: ctypes.CDLL | None = None


def _setns(fd: int, nstype: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _bind_dns_sockets(port: int) -> tuple[socket.socket, socket.socket]:
    """UDP and listening TCP sockets on 127.0.0.11:port (0: any free port, one per
    protocol) in this thread's network namespace.

    IP_FREEBIND lets the bind succeed before the namespace's `lo` is up (the engine may
    call add_container before the runtime brings it up); packets flow once it is. A UDP
    socket bound that way sends from whatever address the route gives (127.0.0.1), which
    a client's connected socket would not accept: replies set their source explicitly.
    """
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp: socket.socket | None = None
    try:
        udp.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        udp.bind((DNS_ADDRESS, port))
        udp.setblocking(False)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        tcp.bind((DNS_ADDRESS, port))
        tcp.listen(64)
        tcp.setblocking(False)
    except BaseException:
        udp.close()
        if tcp is not None:
            tcp.close()
        raise
    return udp, tcp


NFT_TABLE = "pyrt_dns"


def _nft(commands: str) -> None:
    """Run nft commands, as one transaction, in this thread's network namespace: the
    libnftables context (and its netlink socket) is made here, so it talks to the
    namespace this thread is in. No process is started on a container's start path."""
    nft = Nft()
    try:
        nft.run(commands)
    finally:
        nft.close()


def _redirect_rules(udp_port: int, tcp_port: int, *, replace: bool) -> str:
    # replace: add + delete + create in one transaction, for a table an earlier daemon left;
    # else `create`, which fails if the table exists (deleting one is slow: the kernel waits
    # for an RCU grace period, ~10 ms, while creating takes well under 1 ms)
    head = f"add table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n" if replace else ""
    return f"""\
{head}create table ip {NFT_TABLE}
table ip {NFT_TABLE} {{
    chain output {{
        type nat hook output priority -100; policy accept;
        ip daddr {DNS_ADDRESS} udp dport {DNS_PORT} dnat to {DNS_ADDRESS}:{udp_port}
        ip daddr {DNS_ADDRESS} tcp dport {DNS_PORT} dnat to {DNS_ADDRESS}:{tcp_port}
    }}
}}
"""


def _open_listeners(redirect: bool) -> tuple[socket.socket, socket.socket, bool]:
    """The container's DNS sockets, made in its network namespace: (udp, tcp, redirected).

    redirect (Docker's way): listen on free ports of 127.0.0.11 and DNAT 127.0.0.11:53 to
    them with an nftables table in the container's namespace, so a program in the
    container can still bind port 53 itself (a DNS server on 0.0.0.0:53). When nftables
    cannot do it (no libnftables, no NAT in the kernel), listen on port 53 itself.
    """
    if redirect:
        udp, tcp = _bind_dns_sockets(0)
        ports = udp.getsockname()[1], tcp.getsockname()[1]
        try:
            try:
                _nft(_redirect_rules(*ports, replace=False))
            except SystemError_:
                _nft(_redirect_rules(*ports, replace=True))
            return udp, tcp, True
        except SystemError_ as e:
            log.warning("dns: no DNAT to the embedded DNS (%s): listening on port 53", e)
            udp.close()
            tcp.close()
    udp, tcp = _bind_dns_sockets(DNS_PORT)
    return udp, tcp, False


def _drop_redirect() -> None:
    _nft(f"add table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n")


def _unredirect(c: _Container) -> None:
    """Drop c's DNAT table, if c had one and its namespace is still there (a container
    disconnected from its last user network keeps running)."""
    if not c.redirected:
        return
    try:
        fd = os.open(c.netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # the namespace is gone, and the table with it
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == c.netns:
            in_netns(fd, _drop_redirect)
    except (OSError, SystemError_) as e:
        log.warning("dns: container %s: could not drop its DNAT table: %s", c.cid, e)
    finally:
        os.close(fd)


def in_netns(netns_fd: int, fn: Callable[[], _T]) -> _T:
    """fn() run in the network namespace `netns_fd` by a short-lived thread that joins it
    and then goes back (setns affects only the calling thread); what fn makes (sockets,
    netlink state) stays in that namespace."""

    def work() -> _T:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(netns_fd, CLONE_NEWNET)
            try:
                return fn()
            finally:
                try:
                    _setns(home, CLONE_NEWNET)
                except OSError as e:  # the thread ends now, and its namespace with it
                    log.warning("dns: could not return to the host netns: %s", e)
        finally:
            os.close(home)

    return run_on_own_thread(work, "pyrt-dns-setns")


# -- the server -----------------------------------------------------------------------------------


def _checked_upstreams(upstreams: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """(address, port) pairs with IP literals only: a host name would need a lookup, which
    would block the server thread."""
    out = []
    for entry in upstreams:
        try:
            host, port = entry
            ipaddress.ip_address(str(host).split("%", 1)[0])
            if not isinstance(port, int) or not 0 < port < 65536:
                raise ValueError(port)
        except (TypeError, ValueError):
            raise InvalidArgument(
                f"embedded DNS: upstream {entry!r}: want (IP address, port 1-65535)"
            ) from None
        out.append((str(host), port))
    return out


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


@dataclass(eq=False)
class _Container:
    cid: str
    netns_path: str
    netns: tuple[int, int]  # (st_dev, st_ino) of the namespace: its identity
    udp: socket.socket
    tcp: socket.socket
    redirected: bool  # an nftables DNAT from port 53 to our sockets in the namespace
    upstreams: list[tuple[str, int]] | None  # its own (docker run --dns), else the server's
    forward: bool  # False: names not ours get SERVFAIL (a container on --internal networks)
    conns: set[_TcpConn] = field(default_factory=set)
    pending: int = 0  # its queries waiting for an upstream
    closed: bool = False


@dataclass(eq=False)
class _TcpConn:
    sock: socket.socket
    container: _Container
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    deadline: float = 0.0  # idle until then, then closed
    eof: bool = False  # the client shut its side down
    pending: int = 0  # forwarded queries not answered yet
    closed: bool = False


@dataclass(eq=False)
class _Forward:
    query: Query
    msg: bytes
    container: _Container
    udp_peer: tuple[str, int] | None  # the UDP client's address; None: `conn` is the client
    conn: _TcpConn | None
    upstreams: list[tuple[str, int]] = field(default_factory=list)  # to ask, in order
    attempt: int = -1  # index of the upstream being asked
    upstream_id: int = 0
    sock: socket.socket | None = None
    outbuf: bytes = b""  # TCP: what is left to send
    inbuf: bytearray = field(default_factory=bytearray)  # TCP: what came back so far
    last_reply: bytes | None = None  # an earlier upstream's SERVFAIL/REFUSED, kept
    done: bool = False


_Handler = Callable[[int], None]
_TCP_OUTBUF_LIMIT = 256 * 1024


class EmbeddedDNS:
    """127.0.0.11:53 (UDP and TCP) in the network namespace of each added container.

    resolve(container_id, name) -> the IPv4 addresses of a name this container may see
    (name lowercased, no trailing dot), [] for one of our names without an address, or None
    for "not ours: ask the upstreams". reverse(container_id, address) -> the names of one
    of our addresses, or None, for PTR questions (optional).

    upstreams: (address, port) pairs to forward to, tried in order; default: from the
    host's /etc/resolv.conf (see host_upstreams: non-loopback servers, or the loopback
    ones when the host has nothing else, since this forwarder lives in the host's netns).
    An empty list answers SERVFAIL to every name that is not ours.
    timeout: seconds to wait for one upstream before trying the next.
    redirect: listen on free ports and DNAT 127.0.0.11:53 to them in the container's
    namespace (Docker's way: the container keeps port 53 for itself); False, or when
    nftables cannot: listen on 127.0.0.11:53 itself.
    max_pending, max_pending_per_container: queries waiting for upstreams at once (each
    holds a socket); over either, SERVFAIL at once, so one chatty container cannot use up
    the daemon's file descriptors or starve the others.
    """

    def __init__(
        self,
        resolve: Callable[[str, str], list[str] | None],
        upstreams: list[tuple[str, int]] | None = None,
        *,
        reverse: Callable[[str, str], list[str] | None] | None = None,
        timeout: float = 2.0,
        tcp_idle_timeout: float = 10.0,
        max_pending: int = 512,
        max_pending_per_container: int = 128,
        max_tcp_per_container: int = 32,
        redirect: bool = True,
    ) -> None:
        if upstreams is None:
            try:
                upstreams = host_upstreams(host_resolv_conf())
            except OSError as e:
                log.warning("dns: cannot read the host's resolv.conf (%s): no upstreams", e)
                upstreams = []
        self.upstreams = _checked_upstreams(upstreams)
        self._resolve = resolve
        self._reverse = reverse
        self._timeout = timeout
        self._tcp_idle = tcp_idle_timeout
        self._max_pending = max_pending
        self._max_pending_one = max_pending_per_container
        self._max_tcp = max_tcp_per_container
        self._redirect = redirect
        self._lock = threading.Lock()
        self._commands: deque[tuple[Callable[[], object], _Result]] = deque()
        self._add_locks: dict[str, threading.Lock] = {}
        self._thread: threading.Thread | None = None
        self._closed = False  # close() was called
        self._stopped = False  # the server thread has ended (closed, or failed)
        self._sel: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        # owned by the server thread
        self._containers: dict[str, _Container] = {}
        self._forwards: set[_Forward] = set()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    # -- public -----------------------------------------------------------------------------

    def add_container(
        self,
        container_id: str,
        netns_path: str,
        *,
        upstreams: list[tuple[str, int]] | None = None,
        forward: bool = True,
    ) -> None:
        """Listen on 127.0.0.11:53 (UDP, TCP) in the network namespace at netns_path.

        upstreams: this container's own servers (Docker forwards to a container's `--dns`
        servers from 127.0.0.11); None: the server's. forward=False: names that are not
        ours get SERVFAIL without asking anyone (Docker's behaviour for a container whose
        networks are all `--internal`).

        Idempotent: the same container in the same namespace keeps its sockets (and takes
        the new upstreams/forward); in another namespace (the container was restarted) its
        sockets move there.
        """
        if not container_id:
            raise InvalidArgument("embedded DNS: empty container id")
        with self._lock:
            lock = self._add_locks.setdefault(container_id, threading.Lock())
        # one add at a time per container: two racing ones would each make sockets and a
        # DNAT table, and the table left in place need not point at the sockets kept
        with lock:
            self._add_container(container_id, netns_path, upstreams, forward)

    def _add_container(self, container_id: str, netns_path: str,
                       upstreams: list[tuple[str, int]] | None, forward: bool) -> None:  # fmt: skip
        what = f"embedded DNS for container {container_id}"
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise SystemError_(f"{what}: open netns {netns_path}: {e.strerror}", e.errno) from e
        try:
            st = os.fstat(fd)
            identity = (st.st_dev, st.st_ino)
            own = _checked_upstreams(upstreams) if upstreams is not None else None
            if self._call(lambda: self._update(container_id, identity, own, forward)):
                return
            try:
                udp, tcp, redirected = in_netns(fd, partial(_open_listeners, self._redirect))
            except OSError as e:
                step = "join netns" if e.errno == errno.EINVAL else "listen on 127.0.0.11:53 in"
                raise SystemError_(f"{what}: {step} {netns_path}: {e.strerror}", e.errno) from e
        finally:
            os.close(fd)
        c = _Container(container_id, netns_path, identity, udp, tcp, redirected, own, forward)
        try:
            old = self._call(lambda: self._add(c))
        except BaseException:
            udp.close()
            tcp.close()
            raise
        if old is not None and old.netns != c.netns:  # the same netns: c's table now
            _unredirect(old)

    def remove_container(self, container_id: str, *, drop_redirect: bool = True) -> None:
        """Stop serving the container: close its sockets and, if its namespace is still
        there, drop its DNAT table. Unknown ids are ignored.

        drop_redirect=False leaves the table: for a namespace about to be destroyed anyway
        (the container stopped), as deleting a table costs ~10 ms (an RCU grace period).
        """
        with self._lock:
            self._add_locks.pop(container_id, None)
            if self._thread is None or self._closed:
                return
        c = self._call(lambda: self._remove(container_id))
        if c is not None and drop_redirect:
            _unredirect(c)

    def close(self) -> None:
        """Stop the server thread and close every socket. Idempotent. The DNAT tables stay
        in the namespaces: a daemon that stops leaves its containers running, and the next
        one replaces each table when it adds the container again."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._wake()
            thread.join()
        self._teardown()

    def containers(self) -> list[str]:
        """The ids of the containers being served."""
        with self._lock:
            if self._thread is None or self._closed:
                return []
        return self._call(lambda: sorted(self._containers))

    def __enter__(self) -> EmbeddedDNS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- hand-over to the server thread -----------------------------------------------------

    def _call(self, fn: Callable[[], _T]) -> _T:
        if threading.current_thread() is self._thread:
            return fn()  # from a resolve callback: already on the loop
        result = _Result()
        with self._lock:
            if self._closed or self._stopped:
                raise FailedPrecondition("embedded DNS: the server is closed")
            if self._thread is None:
                self._start()
            self._commands.append((fn, result))
        self._wake()
        return cast(_T, result.wait())

    def _start(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)
        self._thread = threading.Thread(target=self._run, name="pyrt-dns", daemon=True)
        self._thread.start()

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(BlockingIOError):  # a wake-up is pending already
                self._wake_w.send(b"\0")

    def _drain_wake(self, mask: int) -> None:
        assert self._wake_r is not None
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass

    def _run_commands(self) -> None:
        while True:
            with self._lock:
                if not self._commands:
                    return
                fn, result = self._commands.popleft()
            try:
                result.set(fn(), None)
            except BaseException as e:
                result.set(None, e)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:
            log.exception("dns: the server thread failed")  # no caller may wait forever
        finally:
            # commands queued while closing (or when the loop failed): tell their callers
            with self._lock:
                self._stopped = True
                leftover = list(self._commands)
                self._commands.clear()
            for _, result in leftover:
                result.set(None, FailedPrecondition("embedded DNS: the server is closed"))

    def _loop(self) -> None:
        assert self._sel is not None
        while True:
            self._run_commands()
            with self._lock:
                if self._closed:
                    return
            now = time.monotonic()
            delay = max(0.0, self._timers[0][0] - now) if self._timers else None
            for key, mask in self._sel.select(delay):
                handler: _Handler = key.data
                try:
                    handler(mask)
                except Exception:  # one bad event must not take the server down
                    log.exception("dns: handling an event failed")
            self._run_timers()

    def _teardown(self) -> None:
        for c in list(self._containers.values()):
            self._close_container(c)
        self._containers.clear()
        for fwd in list(self._forwards):
            self._end_forward(fwd)
        self._timers.clear()
        if self._sel is not None:
            self._sel.close()
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()

    # -- timers -------------------------------------------------------------------------------

    def _at(self, deadline: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (deadline, next(self._seq), fn))

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            try:
                fn()
            except Exception:
                log.exception("dns: a timer failed")

    # -- containers (server thread) -----------------------------------------------------------

    def _update(self, cid: str, identity: tuple[int, int],
                upstreams: list[tuple[str, int]] | None, forward: bool) -> bool:  # fmt: skip
        """Take the new settings if the container is served in that namespace already."""
        c = self._containers.get(cid)
        if c is None or c.netns != identity:
            return False
        c.upstreams, c.forward = upstreams, forward
        return True

    def _add(self, c: _Container) -> _Container | None:
        """Serve c; the container it replaces (served in another namespace) is returned."""
        assert self._sel is not None
        old = self._remove(c.cid)
        self._sel.register(c.udp, selectors.EVENT_READ, partial(self._on_udp, c))
        self._sel.register(c.tcp, selectors.EVENT_READ, partial(self._on_accept, c))
        self._containers[c.cid] = c
        return old

    def _remove(self, cid: str) -> _Container | None:
        c = self._containers.pop(cid, None)
        if c is not None:
            self._close_container(c)
        return c

    def _close_container(self, c: _Container) -> None:
        c.closed = True
        for fwd in [f for f in self._forwards if f.container is c]:
            self._end_forward(fwd)
        for conn in list(c.conns):
            self._close_conn(conn)
        for s in (c.udp, c.tcp):
            self._unregister(s)
            s.close()

    def _unregister(self, s: socket.socket) -> None:
        if self._sel is not None and s.fileno() >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(s)

    # -- queries from containers --------------------------------------------------------------

    def _answer(self, c: _Container, msg: bytes, *, udp: bool) -> bytes | Query | None:
        try:
            return handle_query(
                msg,
                lambda name: self._resolve(c.cid, name),
                (lambda a: self._reverse(c.cid, a)) if self._reverse is not None else None,  # type: ignore[misc]
                udp=udp,
            )
        except Exception:
            log.exception("dns: answering container %s failed", c.cid)
            try:
                return build_reply(parse_query(msg), SERVFAIL)
            except FormatError:
                return None

    def _on_udp(self, c: _Container, mask: int) -> None:
        for _ in range(64):  # a batch at a time: one busy container must not starve others
            try:
                msg, peer = c.udp.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug("dns: container %s: udp receive: %s", c.cid, e)
                return
            result = self._answer(c, msg, udp=True)
            if isinstance(result, bytes):
                self._send_udp(c, peer, result)
            elif result is not None:
                self._forward(_Forward(result, msg, c, peer, None))

    def _send_udp(self, c: _Container, peer: tuple[str, int], data: bytes) -> None:
        if c.closed:
            return
        try:
            c.udp.sendmsg([data], _FROM_DNS_ADDRESS, 0, peer)
        except OSError as e:  # a full buffer or a vanished client: UDP drops, the client retries
            log.debug("dns: container %s: udp send to %s: %s", c.cid, peer, e)

    def _on_accept(self, c: _Container, mask: int) -> None:
        assert self._sel is not None
        while True:
            try:
                sock, _ = c.tcp.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("dns: container %s: accept: %s", c.cid, e)
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # the connection stays queued and the listener readable: pause it, or
                    # the loop would spin on it
                    self._unregister(c.tcp)
                    self._at(time.monotonic() + 0.5, partial(self._resume_accept, c))
                return
            if len(c.conns) >= self._max_tcp:
                sock.close()
                continue
            sock.setblocking(False)
            conn = _TcpConn(sock, c)
            c.conns.add(conn)
            self._sel.register(sock, selectors.EVENT_READ, partial(self._on_conn, conn))
            self._touch(conn)
            self._at(conn.deadline, partial(self._conn_idle, conn))

    def _resume_accept(self, c: _Container) -> None:
        if not c.closed and self._sel is not None:
            self._sel.register(c.tcp, selectors.EVENT_READ, partial(self._on_accept, c))

    def _touch(self, conn: _TcpConn) -> None:
        conn.deadline = time.monotonic() + self._tcp_idle

    def _conn_idle(self, conn: _TcpConn) -> None:
        if conn.closed:
            return
        if conn.pending or conn.deadline > time.monotonic():
            self._at(max(conn.deadline, time.monotonic() + 0.1), partial(self._conn_idle, conn))
            return
        self._close_conn(conn)

    def _on_conn(self, conn: _TcpConn, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(conn)
        if mask & selectors.EVENT_READ and not conn.closed:
            self._read_conn(conn)
        self._service(conn)

    def _read_conn(self, conn: _TcpConn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close_conn(conn)
            return
        self._touch(conn)
        if data:
            conn.inbuf += data
        else:
            conn.eof = True  # answer what was asked, then close

    def _service(self, conn: _TcpConn) -> None:
        """Answer the complete queries received, as far as the answers waiting to be sent
        allow (a client that sends but does not read is not read from until it catches
        up), then watch for what the connection waits for, or close it when it waits for
        nothing more."""
        assert self._sel is not None
        while not conn.closed and len(conn.outbuf) < _TCP_OUTBUF_LIMIT and len(conn.inbuf) >= 2:
            size = struct.unpack_from("!H", conn.inbuf)[0]
            if len(conn.inbuf) < 2 + size:
                break
            msg = bytes(conn.inbuf[2 : 2 + size])
            del conn.inbuf[: 2 + size]
            result = self._answer(conn.container, msg, udp=False)
            if isinstance(result, bytes):
                self._send_tcp(conn, result)
            elif result is not None:
                conn.pending += 1
                self._forward(_Forward(result, msg, conn.container, None, conn))
        if conn.closed:
            return
        backlog = len(conn.outbuf) >= _TCP_OUTBUF_LIMIT
        if conn.eof and not conn.outbuf and not conn.pending:
            self._close_conn(conn)  # (a partial query left in inbuf will never complete)
            return
        events = 0 if conn.eof or backlog else selectors.EVENT_READ
        if conn.outbuf:
            events |= selectors.EVENT_WRITE
        if events:
            handler = partial(self._on_conn, conn)
            try:
                self._sel.modify(conn.sock, events, handler)
            except KeyError:  # unregistered while it waited only for upstreams
                self._sel.register(conn.sock, events, handler)
        else:
            self._unregister(conn.sock)  # waits only for forwarded answers

    def _send_tcp(self, conn: _TcpConn, data: bytes) -> None:
        if not conn.closed:
            conn.outbuf += struct.pack("!H", len(data)) + data
            self._flush(conn)

    def _flush(self, conn: _TcpConn) -> None:
        if conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
                del conn.outbuf[:sent]
                self._touch(conn)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close_conn(conn)

    def _close_conn(self, conn: _TcpConn) -> None:
        if conn.closed:
            return
        conn.closed = True
        conn.container.conns.discard(conn)
        self._unregister(conn.sock)
        conn.sock.close()

    # -- forwarding ---------------------------------------------------------------------------

    def _forward(self, fwd: _Forward) -> None:
        c = fwd.container
        if c.forward:
            fwd.upstreams = self.upstreams if c.upstreams is None else c.upstreams
        busy = len(self._forwards) >= self._max_pending or c.pending >= self._max_pending_one
        if busy:
            log.warning("dns: container %s: too many queries pending upstream (%d, %d in all);"
                        " SERVFAIL", c.cid, c.pending, len(self._forwards))  # fmt: skip
        if busy or not fwd.upstreams:
            fwd.done = True  # never pending: SERVFAIL at once
            self._reply(fwd, build_reply(fwd.query, SERVFAIL))
            if fwd.conn is not None:
                fwd.conn.pending -= 1  # (called from _service, which watches the conn next)
            return
        self._forwards.add(fwd)
        c.pending += 1
        self._next_upstream(fwd)

    def _next_upstream(self, fwd: _Forward) -> None:
        """Ask the next upstream, or answer with what we have when none is left."""
        assert self._sel is not None
        self._close_upstream(fwd)
        while fwd.attempt + 1 < len(fwd.upstreams):
            fwd.attempt += 1
            host, port = fwd.upstreams[fwd.attempt]
            fwd.upstream_id = secrets.randbits(16)
            msg = struct.pack("!H", fwd.upstream_id) + fwd.msg[2:]
            tcp = fwd.udp_peer is None
            kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
            try:
                sock = socket.socket(_family(host), kind)
                fwd.sock = sock
                sock.setblocking(False)
                if tcp:
                    fwd.outbuf = struct.pack("!H", len(msg)) + msg
                    fwd.inbuf.clear()
                    err = sock.connect_ex((host, port))
                    if err not in (0, errno.EINPROGRESS):
                        raise OSError(err, os.strerror(err))
                    events = selectors.EVENT_WRITE
                else:
                    # a connected socket of its own: only that upstream's packets reach it,
                    # and a random source port on top of the random id
                    sock.connect((host, port))
                    sock.send(msg)
                    events = selectors.EVENT_READ
            except OSError as e:
                log.debug("dns: upstream %s:%d: %s", host, port, e)
                self._close_upstream(fwd)
                continue
            self._sel.register(sock, events, partial(self._on_upstream, fwd))
            self._at(time.monotonic() + self._timeout, partial(self._expire, fwd, fwd.attempt))
            return
        self._finish(fwd, fwd.last_reply or build_reply(fwd.query, SERVFAIL))

    def _expire(self, fwd: _Forward, attempt: int) -> None:
        if not fwd.done and fwd.attempt == attempt:
            host, port = fwd.upstreams[attempt]
            log.debug("dns: upstream %s:%d: no answer in %.1fs", host, port, self._timeout)
            self._next_upstream(fwd)

    def _on_upstream(self, fwd: _Forward, mask: int) -> None:
        assert fwd.sock is not None and self._sel is not None
        try:
            if fwd.udp_peer is not None:
                reply: bytes | None = fwd.sock.recv(65535)
            else:
                reply = self._tcp_upstream_io(fwd, mask)
            if reply is None:
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:  # refused (ICMP port unreachable), reset...: next one
            log.debug("dns: upstream %s: %s", fwd.upstreams[fwd.attempt], e)
            self._next_upstream(fwd)
            return
        if not reply_matches(reply, fwd.upstream_id, fwd.query):
            if fwd.udp_peer is None:
                self._next_upstream(fwd)  # a TCP stream that answers something else
            return  # UDP: not the answer (a late or forged one); keep waiting
        rcode = struct.unpack_from("!H", reply, 2)[0] & RCODE_MASK
        if rcode in (SERVFAIL, REFUSED, NOTIMP) and fwd.attempt + 1 < len(fwd.upstreams):
            fwd.last_reply = reply  # as a resolver does: ask the next one
            self._next_upstream(fwd)
            return
        self._finish(fwd, reply)

    def _tcp_upstream_io(self, fwd: _Forward, mask: int) -> bytes | None:
        """Advance a TCP exchange with an upstream: the answer once it is complete."""
        assert fwd.sock is not None and self._sel is not None
        if fwd.outbuf:
            err = fwd.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            sent = fwd.sock.send(fwd.outbuf)
            fwd.outbuf = fwd.outbuf[sent:]
            if not fwd.outbuf:
                self._sel.modify(fwd.sock, selectors.EVENT_READ, partial(self._on_upstream, fwd))
            return None
        data = fwd.sock.recv(65536)
        if not data:
            raise OSError(errno.ECONNRESET, "upstream closed the connection before answering")
        fwd.inbuf += data
        if len(fwd.inbuf) < 2:
            return None
        size = struct.unpack_from("!H", fwd.inbuf)[0]
        if len(fwd.inbuf) < 2 + size:
            return None
        return bytes(fwd.inbuf[2 : 2 + size])

    def _finish(self, fwd: _Forward, reply: bytes) -> None:
        """Give the client the answer (with its own id back) and forget the query."""
        self._reply(fwd, reply)  # before _end_forward, which may close a TCP client's conn
        self._end_forward(fwd)

    def _reply(self, fwd: _Forward, reply: bytes) -> None:
        reply = struct.pack("!H", fwd.query.id) + reply[2:]
        if fwd.udp_peer is not None:
            self._send_udp(fwd.container, fwd.udp_peer, truncate(reply, fwd.query.udp_limit))
        elif fwd.conn is not None:
            self._send_tcp(fwd.conn, reply)

    def _end_forward(self, fwd: _Forward) -> None:
        if fwd.done:
            return
        fwd.done = True
        self._forwards.discard(fwd)
        fwd.container.pending -= 1
        self._close_upstream(fwd)
        if fwd.conn is not None:
            fwd.conn.pending -= 1
            if not fwd.container.closed:  # (closing: no more queries from its conns)
                self._service(fwd.conn)

    def _close_upstream(self, fwd: _Forward) -> None:
        if fwd.sock is not None:
            self._unregister(fwd.sock)
            fwd.sock.close()
            fwd.sock = None


class _Result:
    """The outcome of a command run on the server thread, waited for by its caller."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._value: object = None
        self._error: BaseException | None = None

    def set(self, value: object, error: BaseException | None) -> None:
        self._value, self._error = value, error
        self._event.set()

    def wait(self) -> object:
        self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value
