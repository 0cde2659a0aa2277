"""The embedded DNS server for real: network namespaces of the test's own, queries from
inside them (busybox nslookup, raw UDP and TCP clients), and fake upstream servers that
the test runs on 127.0.0.1 in the host namespace. Every test passes its upstreams
explicitly: nothing is ever sent to the host's own nameserver.

After each test no namespace, socket or thread of the test remains (the `no_leaks`
fixture checks the process's fds and threads).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pyrt.errors import FailedPrecondition, SystemError_
from pyrt.networks.dns import EmbeddedDNS

BUSYBOX = "/bin/busybox"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


# -- helpers: namespaces and clients ---------------------------------------------------------------


@dataclass
class Netns:
    name: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *args], capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip

    def lo_up(self) -> None:
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)

    def socket(self, kind: socket.SocketKind) -> socket.socket:
        """A socket made inside this namespace (by a thread that joins it and exits)."""
        made: list[socket.socket] = []
        errors: list[BaseException] = []

        def work() -> None:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
                made.append(socket.socket(socket.AF_INET, kind))
            except BaseException as e:
                errors.append(e)
            # the thread ends in the namespace: it is a real OS thread, gone with it

        t = threading.Thread(target=work)
        t.start()
        t.join()
        if errors:
            raise errors[0]
        return made[0]


@pytest.fixture
def no_leaks() -> Iterator[None]:
    fds = set(os.listdir("/proc/self/fd"))
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        threads = [t.name for t in threading.enumerate() if t.name.startswith("pyrt-dns")]
        if not threads:
            break
        time.sleep(0.05)
    assert threads == []
    leaked = {fd: _fd_target(fd) for fd in set(os.listdir("/proc/self/fd")) - fds}
    assert {fd: t for fd, t in leaked.items() if t is not None} == {}


def _fd_target(fd: str) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None  # the fd listdir itself used


def _make_netns(names: list[str], lo_up: bool = True) -> Netns:
    name = f"pyrt-dns-{uuid.uuid4().hex[:10]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    names.append(name)
    ns = Netns(name)
    if lo_up:
        ns.lo_up()
    return ns


@pytest.fixture
def netns_factory(no_leaks: None) -> Iterator[Namespaces]:
    names: list[str] = []
    yield lambda lo_up=True: _make_netns(names, lo_up)
    for name in names:
        subprocess.run(["ip", "netns", "delete", name], check=True)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(n in listed for n in names)


@pytest.fixture
def netns(netns_factory: Namespaces) -> Netns:
    return netns_factory()


# -- helpers: messages ---------------------------------------------------------------------------


def wire_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\x00"


def make_query(name: str, qtype: int = 1, qid: int = 0x5151, edns: int | None = None) -> bytes:
    msg = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    msg += wire_name(name) + struct.pack("!HH", qtype, 1)
    if edns:
        msg += b"\x00" + struct.pack("!HHIH", 41, edns, 0, 0)
    return msg


@dataclass
class Reply:
    id: int
    flags: int
    question: bytes
    addresses: list[str]
    ttls: list[int]
    raw: bytes

    @property
    def rcode(self) -> int:
        return self.flags & 0xF

    @property
    def tc(self) -> bool:
        return bool(self.flags & 0x0200)


def parse_reply(msg: bytes) -> Reply:
    """A reply to one of make_query's queries: its A records (names may be compressed)."""
    qid, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", msg)
    pos = 12
    for _ in range(qd):
        pos = msg.index(b"\x00", pos) + 5  # our questions are never compressed
    question = msg[12:pos]
    addresses, ttls = [], []
    for _ in range(an):
        while msg[pos] and msg[pos] & 0xC0 != 0xC0:
            pos += msg[pos] + 1
        pos += 2 if msg[pos] else 1
        rtype, _, ttl, rdlen = struct.unpack_from("!HHIH", msg, pos)
        pos += 10
        if rtype == 1:
            addresses.append(socket.inet_ntoa(msg[pos : pos + 4]))
            ttls.append(ttl)
        pos += rdlen
    return Reply(qid, flags, question, addresses, ttls, msg)


def udp_ask(ns: Netns, msg: bytes, timeout: float = 5) -> Reply:
    with ns.socket(socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect(("127.0.0.11", 53))
        s.send(msg)
        return parse_reply(s.recv(65535))


def tcp_ask(ns: Netns, *msgs: bytes, timeout: float = 5) -> list[Reply]:
    """Send all messages on one connection (pipelined), read as many replies."""
    with ns.socket(socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(("127.0.0.11", 53))
        s.sendall(b"".join(struct.pack("!H", len(m)) + m for m in msgs))
        replies = []
        buf = b""
        while len(replies) < len(msgs):
            while len(buf) < 2 or len(buf) < 2 + struct.unpack_from("!H", buf)[0]:
                chunk = s.recv(65536)
                assert chunk, "server closed the connection early"
                buf += chunk
            size = struct.unpack_from("!H", buf)[0]
            replies.append(parse_reply(buf[2 : 2 + size]))
            buf = buf[2 + size :]
        return replies


def listeners(ns: Netns) -> list[str]:
    """The local addresses of the UDP and TCP sockets listening on 127.0.0.11."""
    out = ns.run("ss", "-Hulnt").stdout
    return sorted(
        f"{f[0]} {f[4]}" for f in map(str.split, out.splitlines()) if "127.0.0.11" in f[4]
    )


def nft_tables(ns: Netns) -> str:
    r = ns.run("nft", "list", "tables")
    assert r.returncode == 0, r
    return r.stdout


def nslookup(ns: Netns, *args: str) -> subprocess.CompletedProcess[str]:
    # the server is always given: busybox must never read the host's resolv.conf
    return ns.run(BUSYBOX, "nslookup", *args, "127.0.0.11")


# -- a fake upstream DNS server ------------------------------------------------------------------


@dataclass
class FakeUpstream:
    """A DNS server on 127.0.0.1 (UDP and TCP, one port) in the host namespace.

    mode: "answer" (one A record: `address`), "silent" (never answers), "servfail",
    "big" (60 A records: over 512 bytes). `seen` records (transport, id, name) of every
    query received.
    """

    mode: str = "answer"
    address: str = "192.0.2.53"
    seen: list[tuple[str, int, bytes]] = field(default_factory=list)
    delay: float = 0.0

    def __post_init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        for _ in range(50):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", 0))
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                self.tcp.bind(self.udp.getsockname())
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        self.tcp.listen(16)
        self._stop_r, self._stop_w = socket.socketpair()
        self._sel.register(self.udp, selectors.EVENT_READ, "udp")
        self._sel.register(self.tcp, selectors.EVENT_READ, "accept")
        self._sel.register(self._stop_r, selectors.EVENT_READ, "stop")
        self._thread = threading.Thread(target=self._run, name="fake-upstream")
        self._thread.start()

    @property
    def endpoint(self) -> tuple[str, int]:
        host, port = self.udp.getsockname()
        return host, port

    def answer(self, q: bytes) -> bytes | None:
        qid, _, _, _, _, _ = struct.unpack_from("!HHHHHH", q)
        end = q.index(b"\x00", 12) + 5
        question = q[12:end]
        if self.mode == "silent":
            return None
        if self.mode == "servfail":
            return struct.pack("!HHHHHH", qid, 0x8182, 1, 0, 0, 0) + question
        n = 60 if self.mode == "big" else 1
        rr = b""
        for i in range(n):
            addr = self.address if n == 1 else f"198.51.100.{i + 1}"
            rr += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton(addr)
        return struct.pack("!HHHHHH", qid, 0x8180, 1, n, 0, 0) + question + rr

    def _run(self) -> None:
        conns: dict[socket.socket, bytes] = {}
        while True:
            for key, _ in self._sel.select():
                what = key.data
                if what == "stop":
                    for c in conns:
                        c.close()
                    return
                if what == "udp":
                    q, peer = self.udp.recvfrom(65535)
                    self.seen.append(("udp", struct.unpack_from("!H", q)[0], q[12:]))
                    time.sleep(self.delay)
                    r = self.answer(q)
                    if r is not None:
                        self.udp.sendto(r, peer)
                elif what == "accept":
                    c, _ = self.tcp.accept()
                    conns[c] = b""
                    self._sel.register(c, selectors.EVENT_READ, "conn")
                else:
                    c = key.fileobj  # type: ignore[assignment]
                    assert isinstance(c, socket.socket)
                    data = c.recv(65536)
                    if not data:
                        self._sel.unregister(c)
                        c.close()
                        del conns[c]
                        continue
                    buf = conns[c] + data
                    while len(buf) >= 2 and len(buf) >= 2 + struct.unpack_from("!H", buf)[0]:
                        size = struct.unpack_from("!H", buf)[0]
                        q, buf = buf[2 : 2 + size], buf[2 + size :]
                        self.seen.append(("tcp", struct.unpack_from("!H", q)[0], q[12:]))
                        time.sleep(self.delay)
                        r = self.answer(q)
                        if r is not None:
                            c.sendall(struct.pack("!H", len(r)) + r)
                    conns[c] = buf

    def close(self) -> None:
        self._stop_w.send(b"x")
        self._thread.join()
        for s in (self.udp, self.tcp, self._stop_r, self._stop_w):
            s.close()
        self._sel.close()


@pytest.fixture
def upstream_factory(no_leaks: None) -> Iterator[Callable[..., FakeUpstream]]:
    made: list[FakeUpstream] = []

    def make(**kw: object) -> FakeUpstream:
        up = FakeUpstream(**kw)  # type: ignore[arg-type]
        made.append(up)
        return up

    yield make
    for up in made:
        up.close()


def closed_port() -> tuple[str, int]:
    """A port on 127.0.0.1 where nothing listens (UDP: ICMP port unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()  # type: ignore[no-any-return]


Upstreams = Callable[..., FakeUpstream]
Namespaces = Callable[..., Netns]  # (lo_up=True)

NAMES = {
    "c1": {
        "web": ["10.89.0.2"],
        "db": ["10.89.0.3", "10.89.0.4"],
        "many": [f"10.89.1.{i}" for i in range(1, 31)],  # a 503-byte answer over TCP
    },
    "c2": {"cache": ["10.90.0.5"]},
}


def resolve(cid: str, name: str) -> list[str] | None:
    return NAMES.get(cid, {}).get(name)


@contextlib.contextmanager
def server(upstreams: list[tuple[str, int]], **kw: object) -> Iterator[EmbeddedDNS]:
    d = EmbeddedDNS(resolve, upstreams, **kw)  # type: ignore[arg-type]
    try:
        yield d
    finally:
        d.close()


# -- tests ---------------------------------------------------------------------------------------


def test_busybox_nslookup(netns: Netns, upstream_factory: Upstreams) -> None:
    up = upstream_factory(address="192.0.2.77")
    with server([up.endpoint]) as d:
        d.add_container("c1", netns.path)
        r = nslookup(netns, "web")
        assert r.returncode == 0, r
        assert "Address: 10.89.0.2" in r.stdout
        r = nslookup(netns, "db")
        assert "Address: 10.89.0.3" in r.stdout and "Address: 10.89.0.4" in r.stdout
        r = nslookup(netns, "-type=aaaa", "web")
        assert r.returncode == 0 and "Address: " not in r.stdout.split("\n\n", 1)[1], r
        assert up.seen == []  # our names never went upstream
        r = nslookup(netns, "example.org")
        assert r.returncode == 0 and "Address: 192.0.2.77" in r.stdout, r
        assert ("udp", b"\x07example\x03org\x00\x00\x01\x00\x01") in [(t, q) for t, _, q in up.seen]
        r = nslookup(netns, "cache")  # c2's name: not visible to c1, so forwarded
        assert ("udp", wire_name("cache") + b"\x00\x01\x00\x01") in [(t, q) for t, _, q in up.seen]


def test_udp_reply_fields(netns: Netns, upstream_factory: Upstreams) -> None:
    up = upstream_factory()
    with server([up.endpoint]) as d:
        d.add_container("c1", netns.path)
        q = make_query("WeB", qid=0xA1B2)
        r = udp_ask(netns, q)
        assert r.id == 0xA1B2 and r.question == q[12:] and r.rcode == 0
        assert r.flags & 0x8000 and r.flags & 0x0400  # QR, AA
        assert r.addresses == ["10.89.0.2"] and r.ttls == [600]
        # forwarded: the client's id and question come back, whatever id went upstream
        q = make_query("Example.ORG", qid=0x0F0F)
        r = udp_ask(netns, q)
        assert r.id == 0x0F0F and r.question == q[12:] and r.addresses == ["192.0.2.53"]
        assert len(up.seen) == 1 and up.seen[0][2] == q[12:]


def test_tcp_pipelined_local_and_forwarded(netns: Netns, upstream_factory: Upstreams) -> None:
    up = upstream_factory(address="192.0.2.9")
    with server([up.endpoint]) as d:
        d.add_container("c1", netns.path)
        r1, r2, r3 = sorted(
            tcp_ask(netns, make_query("web", qid=1), make_query("a.example", qid=2),
                    make_query("db", qid=3)),
            key=lambda r: r.id,
        )  # fmt: skip
        assert (r1.id, r1.addresses) == (1, ["10.89.0.2"])
        assert (r2.id, r2.addresses) == (2, ["192.0.2.9"])
        assert (r3.id, r3.addresses) == (3, ["10.89.0.3", "10.89.0.4"])
        assert [t for t, _, _ in up.seen] == ["tcp"]  # a TCP query goes upstream over TCP


def test_tcp_client_that_half_closes_still_gets_answers(
    netns: Netns, upstream_factory: Upstreams
) -> None:
    up = upstream_factory(delay=0.3)  # the client has shut its side before the answer
    with server([up.endpoint]) as d, netns.socket(socket.SOCK_STREAM) as s:
        d.add_container("c1", netns.path)
        s.settimeout(5)
        s.connect(("127.0.0.11", 53))
        q = make_query("x.example", qid=44)
        s.sendall(struct.pack("!H", len(q)) + q)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert parse_reply(data[2:]).addresses == ["192.0.2.53"]  # answered, then closed


def test_big_upstream_answer_truncated_on_udp_full_on_tcp(
    netns: Netns, upstream_factory: Upstreams
) -> None:
    up = upstream_factory(mode="big")  # 60 records: 12 + 15 + 60 * 16 bytes
    with server([up.endpoint]) as d:
        d.add_container("c1", netns.path)
        r = udp_ask(netns, make_query("big.example", qid=5))
        assert r.id == 5 and r.tc and r.addresses == [] and len(r.raw) <= 512
        assert r.question == make_query("big.example")[12:]
        r = udp_ask(netns, make_query("big.example", qid=6, edns=4096))
        assert r.id == 6 and not r.tc and len(r.addresses) == 60
        (r,) = tcp_ask(netns, make_query("big.example", qid=7))
        assert r.id == 7 and not r.tc and len(r.addresses) == 60


def test_failover_to_next_upstream(netns: Netns, upstream_factory: Upstreams) -> None:
    silent = upstream_factory(mode="silent")
    servfail = upstream_factory(mode="servfail")
    good = upstream_factory(address="192.0.2.1")
    with server([closed_port(), silent.endpoint, servfail.endpoint, good.endpoint],
                timeout=0.5) as d:  # fmt: skip
        d.add_container("c1", netns.path)
        t0 = time.monotonic()
        r = udp_ask(netns, make_query("x.example", qid=9))
        took = time.monotonic() - t0
        assert r.id == 9 and r.rcode == 0 and r.addresses == ["192.0.2.1"]
        assert 0.5 <= took < 2.5  # one timeout (silent); refused and SERVFAIL move on at once
        assert len(silent.seen) == len(servfail.seen) == len(good.seen) == 1
        (r,) = tcp_ask(netns, make_query("y.example", qid=10))  # TCP: refused connect too
        assert r.id == 10 and r.addresses == ["192.0.2.1"]


def test_all_upstreams_fail_servfail(netns: Netns, upstream_factory: Upstreams) -> None:
    silent = [upstream_factory(mode="silent") for _ in range(2)]
    with server([s.endpoint for s in silent], timeout=0.3) as d:
        d.add_container("c1", netns.path)
        t0 = time.monotonic()
        r = udp_ask(netns, make_query("x.example", qid=11))
        assert r.id == 11 and r.rcode == 2 and r.question == make_query("x.example")[12:]
        assert 0.6 <= time.monotonic() - t0 < 2.5
        (r,) = tcp_ask(netns, make_query("x.example", qid=12))
        assert r.id == 12 and r.rcode == 2
        r = udp_ask(netns, make_query("web", qid=13))  # still answering our names
        assert r.addresses == ["10.89.0.2"]
    servfail = upstream_factory(mode="servfail")
    with server([servfail.endpoint, closed_port()], timeout=0.3) as d:
        d.add_container("c1", netns.path)
        r = udp_ask(netns, make_query("x.example", qid=14))
        assert r.id == 14 and r.rcode == 2  # the upstream's own SERVFAIL, passed on


def test_no_upstreams_servfail(netns: Netns) -> None:
    with server([]) as d:
        d.add_container("c1", netns.path)
        t0 = time.monotonic()
        r = udp_ask(netns, make_query("example.org", qid=15))
        assert r.id == 15 and r.rcode == 2 and time.monotonic() - t0 < 1
        assert udp_ask(netns, make_query("web")).addresses == ["10.89.0.2"]


def test_containers_see_their_own_names_and_do_not_block_each_other(
    netns_factory: Namespaces, upstream_factory: Upstreams
) -> None:
    ns1, ns2 = netns_factory(), netns_factory()
    silent = upstream_factory(mode="silent")
    with server([silent.endpoint], timeout=30.0) as d:
        d.add_container("c1", ns1.path)
        d.add_container("c2", ns2.path)
        assert d.containers() == ["c1", "c2"]
        assert udp_ask(ns1, make_query("web")).addresses == ["10.89.0.2"]
        assert udp_ask(ns2, make_query("cache")).addresses == ["10.90.0.5"]
        # queries waiting for a silent upstream, from both containers; "web" is c1's name,
        # not c2's: asked upstream for c2
        stuck = [ns.socket(socket.SOCK_DGRAM) for ns in (ns1, ns2) for _ in range(5)]
        try:
            for i, s in enumerate(stuck):
                s.connect(("127.0.0.11", 53))
                s.send(make_query("web" if i == 5 else f"slow{i}.example", qid=100 + i))
            deadline = time.monotonic() + 5
            while len(silent.seen) < 10 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(silent.seen) == 10  # all ten are pending upstream at once
            assert wire_name("web") + b"\x00\x01\x00\x01" in [q for _, _, q in silent.seen]
            t0 = time.monotonic()
            assert udp_ask(ns2, make_query("cache")).addresses == ["10.90.0.5"]
            assert udp_ask(ns1, make_query("web")).addresses == ["10.89.0.2"]
            (r,) = tcp_ask(ns1, make_query("db"))
            assert r.addresses == ["10.89.0.3", "10.89.0.4"]
            assert time.monotonic() - t0 < 5.0  # the pending queries (30 s each) stall nothing
        finally:
            for s in stuck:
                s.close()


def test_malformed_packets_do_not_hurt(netns: Netns) -> None:
    with server([]) as d:
        d.add_container("c1", netns.path)
        with netns.socket(socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.connect(("127.0.0.11", 53))
            for junk in (b"", b"\x01", b"\x00" * 11, b"\xff" * 512, os.urandom(700)):
                s.send(junk)
            # a question whose name points at itself: FORMERR with our id
            s.send(struct.pack("!HHHHHH", 0x7777, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01")
            r = parse_reply(s.recv(512))
            while r.id != 0x7777:  # replies to the random junk may come first
                r = parse_reply(s.recv(512))
            assert r.rcode == 1
            # an UPDATE: NOTIMP
            s.send(struct.pack("!HHHHHH", 0x7778, 5 << 11, 1, 0, 0, 0) + make_query("web")[12:])
            r = parse_reply(s.recv(512))
            assert r.id == 0x7778 and r.rcode == 4
        # TCP: a length prefix promising more than comes, then garbage: the server lives on
        with netns.socket(socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(("127.0.0.11", 53))
            s.sendall(b"\x00\x05\x01\x02\x03\x04\x05" + b"\x00\x00")  # 5 junk bytes, 0 length
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            assert data == b""  # junk too short for a header: dropped; then closed
        assert udp_ask(netns, make_query("web")).addresses == ["10.89.0.2"]
        (r,) = tcp_ask(netns, make_query("db"))
        assert r.addresses == ["10.89.0.3", "10.89.0.4"]


def test_add_before_lo_is_up(netns_factory: Namespaces) -> None:
    ns = netns_factory(lo_up=False)  # the engine may add the container this early
    with server([]) as d:
        d.add_container("c1", ns.path)
        ns.lo_up()
        assert udp_ask(ns, make_query("web")).addresses == ["10.89.0.2"]
        (r,) = tcp_ask(ns, make_query("web"))
        assert r.addresses == ["10.89.0.2"]
        assert "Address: 10.89.0.2" in nslookup(ns, "web").stdout


def test_add_is_idempotent_remove_closes(netns: Netns, netns_factory: Namespaces) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    with server([]) as d:
        d.add_container("c1", netns.path)
        after_add = len(os.listdir("/proc/self/fd"))
        d.add_container("c1", netns.path)
        assert len(os.listdir("/proc/self/fd")) == after_add
        listening = listeners(netns)
        assert [x.split()[0] for x in listening] == ["tcp", "udp"]  # one of each
        assert "table ip pyrt_dns" in nft_tables(netns)  # 127.0.0.11:53 -> their ports
        d.remove_container("c1")
        d.remove_container("c1")  # unknown now: ignored
        assert listeners(netns) == [] and "pyrt_dns" not in nft_tables(netns)
        with pytest.raises(OSError):  # ECONNREFUSED (ICMP) or a timeout
            udp_ask(netns, make_query("web"), timeout=1)
        d.add_container("c1", netns.path)
        assert udp_ask(netns, make_query("web")).addresses == ["10.89.0.2"]
        # the same container in another namespace (restarted): moved there
        other = netns_factory()
        d.add_container("c1", other.path)
        assert listeners(netns) == [] and "pyrt_dns" not in nft_tables(netns)
        assert udp_ask(other, make_query("web")).addresses == ["10.89.0.2"]
        assert d.containers() == ["c1"]
    assert len(os.listdir("/proc/self/fd")) == fds
    assert listeners(other) == []  # close() leaves the table: a restarted daemon replaces it


def test_errors_name_container_and_cause(netns: Netns, tmp_path: Path) -> None:
    with server([]) as d:
        with pytest.raises(
            SystemError_, match=r"container c9: open netns /nonexistent/ns.*No such file"
        ):
            d.add_container("c9", "/nonexistent/ns")
        not_ns = tmp_path / "plain"
        not_ns.write_text("")
        with pytest.raises(
            SystemError_, match=r"container c9: join netns .*plain: Invalid argument"
        ):
            d.add_container("c9", str(not_ns))
        assert d.containers() == []
    with server([], redirect=False) as d:
        # something else already on 127.0.0.11:53 in that namespace (with redirect, that
        # is allowed: see test_container_keeps_port_53)
        with netns.socket(socket.SOCK_DGRAM) as squatter:
            squatter.bind(("127.0.0.11", 53))
            with pytest.raises(
                SystemError_, match=r"container c9: listen on 127.0.0.11:53 in .*in use"
            ):
                d.add_container("c9", netns.path)
        assert d.containers() == []
    with pytest.raises(FailedPrecondition, match="closed"):
        d.add_container("c1", netns.path)
    d.close()  # idempotent


def test_close_with_pending_queries_and_open_connections(
    netns: Netns, upstream_factory: Upstreams
) -> None:
    silent = upstream_factory(mode="silent")
    d = EmbeddedDNS(resolve, [silent.endpoint], timeout=30)
    d.add_container("c1", netns.path)
    with netns.socket(socket.SOCK_DGRAM) as u, netns.socket(socket.SOCK_STREAM) as t:
        u.connect(("127.0.0.11", 53))
        u.send(make_query("p.example"))
        t.connect(("127.0.0.11", 53))
        q = make_query("q.example")
        t.sendall(struct.pack("!H", len(q)) + q)
        deadline = time.monotonic() + 5
        while len(silent.seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(silent.seen) == 2
        t0 = time.monotonic()
        d.close()
        assert time.monotonic() - t0 < 2
        t.settimeout(2)
        assert t.recv(100) == b""  # the server side is closed
    assert listeners(netns) == []


def test_limits(netns: Netns, upstream_factory: Upstreams) -> None:
    silent = upstream_factory(mode="silent")
    kw = {"timeout": 30, "max_pending_per_container": 3, "max_tcp_per_container": 2}
    with server([silent.endpoint], tcp_idle_timeout=0.5, **kw) as d:
        d.add_container("c1", netns.path)
        fds = len(os.listdir("/proc/self/fd"))
        with netns.socket(socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.connect(("127.0.0.11", 53))
            for i in range(4):
                s.send(make_query(f"n{i}.example", qid=200 + i))
            r = parse_reply(s.recv(512))  # the fourth: over the limit, SERVFAIL at once
            assert (r.id, r.rcode) == (203, 2)
            assert len(os.listdir("/proc/self/fd")) == fds + 1 + 3  # client + 3 upstream sockets
            # our names are still answered
            assert udp_ask(netns, make_query("web")).addresses == ["10.89.0.2"]
            d.remove_container("c1")  # drops the pending queries and their sockets
            assert len(os.listdir("/proc/self/fd")) == fds + 1 - 2  # listeners gone too
        d.add_container("c1", netns.path)
        # TCP: two connections at most; an idle one is closed after tcp_idle_timeout
        with netns.socket(socket.SOCK_STREAM) as a, netns.socket(socket.SOCK_STREAM) as b:
            a.connect(("127.0.0.11", 53))
            b.connect(("127.0.0.11", 53))
            with netns.socket(socket.SOCK_STREAM) as c:
                c.settimeout(2)
                c.connect(("127.0.0.11", 53))  # the kernel accepts; the server closes it
                assert c.recv(10) == b""
            a.settimeout(3)
            t0 = time.monotonic()
            assert a.recv(10) == b""  # idle: closed by the server
            assert 0.2 < time.monotonic() - t0 < 2.5
        (r,) = tcp_ask(netns, make_query("web"))
        assert r.addresses == ["10.89.0.2"]


def test_per_container_upstreams_and_no_forwarding(
    netns_factory: Namespaces, upstream_factory: Upstreams
) -> None:
    ns1, ns2 = netns_factory(), netns_factory()
    server_up = upstream_factory(address="192.0.2.1")
    own_up = upstream_factory(address="192.0.2.2")
    with server([server_up.endpoint]) as d:
        d.add_container("c1", ns1.path)
        d.add_container("c2", ns2.path, upstreams=[own_up.endpoint])  # docker run --dns
        assert udp_ask(ns1, make_query("x.example")).addresses == ["192.0.2.1"]
        assert udp_ask(ns2, make_query("x.example")).addresses == ["192.0.2.2"]
        (r,) = tcp_ask(ns2, make_query("y.example"))
        assert r.addresses == ["192.0.2.2"]
        assert len(server_up.seen) == 1 and len(own_up.seen) == 2
        # on --internal networks only: nothing goes out, our names still resolve
        d.add_container("c1", ns1.path, forward=False)
        r = udp_ask(ns1, make_query("x.example", qid=31))
        assert (r.id, r.rcode) == (31, 2)
        (r,) = tcp_ask(ns1, make_query("x.example", qid=32))
        assert (r.id, r.rcode) == (32, 2)
        assert udp_ask(ns1, make_query("web")).addresses == ["10.89.0.2"]
        assert len(server_up.seen) == 1
        d.add_container("c1", ns1.path)  # connected to a network with a way out again
        assert udp_ask(ns1, make_query("x.example")).addresses == ["192.0.2.1"]


def test_container_keeps_port_53(netns: Netns, upstream_factory: Upstreams) -> None:
    """A program in the container may run its own DNS server on 0.0.0.0:53 (Docker
    allows it): 127.0.0.11:53 still reaches the embedded server, through the DNAT."""
    up = upstream_factory()
    with server([up.endpoint]) as d:
        d.add_container("c1", netns.path)
        with (
            netns.socket(socket.SOCK_DGRAM) as own_udp,
            netns.socket(socket.SOCK_STREAM) as own_tcp,
        ):
            own_udp.bind(("0.0.0.0", 53))
            own_tcp.bind(("0.0.0.0", 53))
            own_tcp.listen()
            assert udp_ask(netns, make_query("web")).addresses == ["10.89.0.2"]
            (r,) = tcp_ask(netns, make_query("x.example"))
            assert r.addresses == ["192.0.2.53"]
            assert "Address: 10.89.0.2" in nslookup(netns, "web").stdout
            own_udp.settimeout(0.1)
            with pytest.raises(TimeoutError):
                own_udp.recv(512)  # nothing for 127.0.0.11 reached the program's socket
        d.remove_container("c1")
        assert "pyrt_dns" not in nft_tables(netns)


def test_without_redirect(netns_factory: Namespaces, upstream_factory: Upstreams) -> None:
    ns = netns_factory(lo_up=False)  # as in test_add_before_lo_is_up
    up = upstream_factory()
    with server([up.endpoint], redirect=False) as d:
        d.add_container("c1", ns.path)
        ns.lo_up()
        assert listeners(ns) == ["tcp 127.0.0.11:53", "udp 127.0.0.11:53"]
        assert "pyrt_dns" not in nft_tables(ns)
        assert udp_ask(ns, make_query("web")).addresses == ["10.89.0.2"]
        (r,) = tcp_ask(ns, make_query("x.example"))
        assert r.addresses == ["192.0.2.53"]
        assert "Address: 10.89.0.2" in nslookup(ns, "web").stdout
        d.remove_container("c1")
        assert listeners(ns) == []


def test_restarted_server_takes_over_the_namespace(netns: Netns) -> None:
    """A daemon restart: the old server's DNAT table is still in the namespace (close()
    leaves it); the new server replaces it with one to its own sockets."""
    with server([]) as d:
        d.add_container("c1", netns.path)
    assert listeners(netns) == [] and "pyrt_dns" in nft_tables(netns)
    with server([]) as d:
        d.add_container("c1", netns.path)
        rules = netns.run("nft", "list", "table", "ip", "pyrt_dns").stdout
        for entry in listeners(netns):
            assert f"dnat to {entry.split()[1]}" in rules
        assert udp_ask(netns, make_query("web")).addresses == ["10.89.0.2"]
        (r,) = tcp_ask(netns, make_query("db"))
        assert r.addresses == ["10.89.0.3", "10.89.0.4"]
        d.remove_container("c1", drop_redirect=False)  # the namespace is going away anyway
        assert "pyrt_dns" in nft_tables(netns)
        d.add_container("c1", netns.path)
        d.remove_container("c1")
        assert "pyrt_dns" not in nft_tables(netns)


def test_parallel_adds(netns_factory: Namespaces, upstream_factory: Upstreams) -> None:
    """Containers start in parallel: adds from many threads at once (the same container
    twice among them) all end up served, each in its own namespace."""
    spaces = [netns_factory() for _ in range(8)]
    up = upstream_factory()
    with server([up.endpoint]) as d:
        jobs = [(f"p{i}", ns.path) for i, ns in enumerate(spaces)] + [("p0", spaces[0].path)]
        errors: list[BaseException] = []

        def add(cid: str, path: str) -> None:
            try:
                d.add_container(cid, path)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=add, args=job) for job in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert d.containers() == [f"p{i}" for i in range(8)]
        for ns in spaces:
            assert udp_ask(ns, make_query("x.example")).addresses == ["192.0.2.53"]
            (r,) = tcp_ask(ns, make_query("y.example"))
            assert r.addresses == ["192.0.2.53"]
            rules = ns.run("nft", "list", "table", "ip", "pyrt_dns").stdout
            assert [f"dnat to {x.split()[1]}" in rules for x in listeners(ns)] == [True, True]


def test_tcp_client_that_does_not_read(netns: Netns) -> None:
    """A client that pipelines many queries and reads late: the server stops reading from
    it while its answers wait, serves others meanwhile, and loses nothing."""
    count = 20_000  # 0.5 MB of queries, 10 MB of answers: more than the kernel buffers
    query = make_query("many", qid=1)
    framed = struct.pack("!H", len(query)) + query
    with server([]) as d, netns.socket(socket.SOCK_STREAM) as s:
        d.add_container("c1", netns.path)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds little
        s.settimeout(30)
        s.connect(("127.0.0.11", 53))
        sender = threading.Thread(target=s.sendall, args=(framed * count,))
        sender.start()
        # watch the answers waiting in the server (its private state, read-only)
        (conn,) = d._call(lambda: list(d._containers["c1"].conns))
        most = 0
        deadline = time.monotonic() + 5
        while most < 200_000 and time.monotonic() < deadline:
            time.sleep(0.01)
            most = max(most, len(conn.outbuf))
        for _ in range(20):  # and it stays there
            time.sleep(0.01)
            most = max(most, len(conn.outbuf))
        assert 200_000 < most < 256 * 1024 + 600  # it stops answering at 256 KiB
        t0 = time.monotonic()
        assert udp_ask(netns, make_query("web")).addresses == ["10.89.0.2"]
        assert time.monotonic() - t0 < 1.0
        size = len(query) + 30 * 16  # 30 A records of 16 bytes after the question
        want = (struct.pack("!H", size) + query[:2]) * count
        got = bytearray()
        while len(got) < count * (size + 2):
            chunk = s.recv(1 << 20)
            assert chunk
            got += chunk
        sender.join()
        # every answer came, in order: the length prefix and the id of each
        assert b"".join(got[i : i + 4] for i in range(0, len(got), size + 2)) == want


def test_reverse_lookups(netns: Netns, upstream_factory: Upstreams) -> None:
    up = upstream_factory()

    def reverse(cid: str, address: str) -> list[str] | None:
        return ["web.mynet"] if (cid, address) == ("c1", "10.89.0.2") else None

    with server([up.endpoint], reverse=reverse) as d:
        d.add_container("c1", netns.path)
        r = nslookup(netns, "10.89.0.2")
        assert r.returncode == 0 and "name = web.mynet" in r.stdout, r
        assert up.seen == []
        nslookup(netns, "10.89.0.9")  # not ours: asked upstream
        assert [q for _, _, q in up.seen] == [
            wire_name("9.0.89.10.in-addr.arpa") + b"\x00\x0c\x00\x01"
        ]
