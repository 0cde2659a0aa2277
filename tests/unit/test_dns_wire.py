"""The embedded DNS server's wire format, from raw packets: parsing, answers, truncation,
and what malformed input gets (a reply code or nothing, never an exception)."""

from __future__ import annotations

import random
import struct

import pytest

from pyrt.errors import InvalidArgument
from pyrt.networks import dns
from pyrt.networks.dns import FormatError, Query, handle_query, parse_query, read_name


def wire_name(name: str) -> bytes:
    out = b""
    for label in name.split(".") if name else []:
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def header(qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0,
           ar: int = 0) -> bytes:  # fmt: skip
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def query(name: str, qtype: int = 1, qclass: int = 1, qid: int = 0x1234, flags: int = 0x0100,
          edns: int | None = None) -> bytes:  # fmt: skip
    msg = header(qid, flags, ar=1 if edns is not None else 0)
    msg += wire_name(name) + struct.pack("!HH", qtype, qclass)
    if edns is not None:
        msg += b"\x00" + struct.pack("!HHIH", 41, edns, 0, 0)
    return msg


def unpack_header(msg: bytes) -> tuple[int, int, int, int, int, int]:
    return struct.unpack_from("!HHHHHH", msg)  # type: ignore[return-value]


def answers_a(msg: bytes) -> list[tuple[str, int]]:
    """(address, ttl) of the A records in a reply whose answers point at the question."""
    _, _, qd, an, _, _ = unpack_header(msg)
    assert qd == 1
    _, pos = read_name(msg, 12)
    pos += 4
    out = []
    for _ in range(an):
        _, pos = read_name(msg, pos)
        rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", msg, pos)
        pos += 10
        assert (rtype, rclass, rdlen) == (1, 1, 4)
        out.append((".".join(str(b) for b in msg[pos : pos + 4]), ttl))
        pos += rdlen
    assert pos == len(msg)
    return out


NAMES = {"web": ["10.88.0.2"], "db.mynet": ["10.88.0.3", "10.88.0.4"], "noaddr": []}


def resolve(name: str) -> list[str] | None:
    return NAMES.get(name)


# -- names -------------------------------------------------------------------------------------


def test_read_name_plain_and_compressed() -> None:
    msg = header() + wire_name("web.mynet") + b"\x03www\xc0\x0c"
    labels, end = read_name(msg, 12)
    assert labels == (b"web", b"mynet") and end == 12 + 11
    labels, end = read_name(msg, 23)
    assert labels == (b"www", b"web", b"mynet") and end == len(msg)


def test_read_name_pointer_chain_backwards() -> None:
    # c -> pointer to b's run -> pointer to a's run: all jumps go backwards, so it is fine
    msg = header() + wire_name("a") + b"\x01b\xc0\x0c" + b"\x01c\xc0\x0f"
    labels, end = read_name(msg, 12 + 3 + 4)
    assert labels == (b"c", b"b", b"a") and end == len(msg)


@pytest.mark.parametrize(
    "tail, why",
    [
        (b"\xc0\x0c", "points at itself"),
        (b"\x01a\xc0\x0c", "points at the start of its own run"),
        (b"\xc0\x0e\x01a\x00", "points forwards"),
        (b"\xc0", "pointer cut short"),
        (b"\x05ab", "label cut short"),
        (b"\x03abc", "no terminating root label"),
        (b"\x41abc\x00", "extended label type 0x40"),
        (b"\x81abc\x00", "reserved label type 0x80"),
        (b"", "nothing at all"),
    ],
)
def test_read_name_rejects(tail: bytes, why: str) -> None:
    with pytest.raises(FormatError):
        read_name(header() + tail, 12)


def test_read_name_mutual_pointer_loop() -> None:
    # two runs pointing at each other: the second jump would go forwards again
    msg = header() + b"\x01a\xc0\x10" + b"\x01b\xc0\x0c"
    with pytest.raises(FormatError, match="backwards"):
        read_name(msg, 12)
    with pytest.raises(FormatError, match="backwards"):
        read_name(msg, 16)


def test_read_name_length_limit_through_pointers() -> None:
    # 5 runs of 60-byte labels chained by pointers: 305 bytes of name in a short message
    msg = bytearray(header())
    starts = []
    for i in range(5):
        starts.append(len(msg))
        msg += b"\x3c" + bytes([ord("a") + i]) * 60
        msg += b"\x00" if i == 0 else struct.pack("!H", 0xC000 | starts[i - 1])
    with pytest.raises(FormatError, match="255"):
        read_name(bytes(msg), starts[-1])
    labels, _ = read_name(bytes(msg), starts[3])  # 4 labels: 245 bytes, allowed
    assert len(labels) == 4


def test_name_text_lowercases_and_escapes() -> None:
    assert dns.name_text([b"WeB", b"MyNet"]) == "web.mynet"
    assert dns.name_text([b"a.b", b"c\\d", b"\x00\xff ", b"\xc3\x89"]) == (
        "a\\.b.c\\\\d.\\000\\255\\032.\\195\\137"
    )


def test_encode_name() -> None:
    assert dns.encode_name("web.mynet.") == wire_name("web.mynet")
    assert dns.encode_name("web") == wire_name("web")
    assert dns.encode_name(".") == b"\x00"
    with pytest.raises(InvalidArgument, match="1..63"):
        dns.encode_name("a" * 64 + ".net")
    with pytest.raises(InvalidArgument, match="1..63"):
        dns.encode_name("a..b")
    with pytest.raises(InvalidArgument, match="255"):
        dns.encode_name(".".join(["a" * 63] * 4))


# -- parsing queries -----------------------------------------------------------------------------


def test_parse_query_fields() -> None:
    q = parse_query(query("WeB.MyNet", qtype=28, qid=0xBEEF))
    assert (q.id, q.qtype, q.qclass, q.name) == (0xBEEF, 28, 1, "web.mynet")
    assert q.question == wire_name("WeB.MyNet") + b"\x00\x1c\x00\x01"
    assert q.udp_limit == 512


@pytest.mark.parametrize("size, limit", [(1232, 1232), (100, 512), (65000, 4096), (512, 512)])
def test_parse_query_edns_payload_size(size: int, limit: int) -> None:
    assert parse_query(query("web", edns=size)).udp_limit == limit


@pytest.mark.parametrize(
    "msg",
    [
        header(qd=0),
        header(qd=2) + (wire_name("a") + b"\x00\x01\x00\x01") * 2,
        header() + wire_name("web"),  # no qtype/qclass
        header() + wire_name("web") + b"\x00\x01\x00",
        query("web")[:4] + b"\x00\x01\x00\x00\x00\x00\x00\x01" + query("web")[12:],  # OPT missing
        header(ar=2) + wire_name("web") + b"\x00\x01\x00\x01"
        + (b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)) * 2,  # two OPT records
        header(ar=1) + wire_name("web") + b"\x00\x01\x00\x01"
        + b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 10) + b"abc",  # rdata cut short
    ],
)  # fmt: skip
def test_parse_query_malformed(msg: bytes) -> None:
    with pytest.raises(FormatError):
        parse_query(msg)


def test_parse_query_skips_answer_and_authority_records() -> None:
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + b"\x01\x02\x03\x04"
    msg = header(an=1, ns=1, ar=1) + wire_name("web") + b"\x00\x01\x00\x01" + rr + rr
    msg += b"\x00" + struct.pack("!HHIH", 41, 2000, 0, 0)
    assert parse_query(msg).udp_limit == 2000


# -- answering -------------------------------------------------------------------------------------


def test_a_answer_for_our_name() -> None:
    seen: list[str] = []

    def spy(name: str) -> list[str] | None:
        seen.append(name)
        return resolve(name)

    msg = query("DB.MyNet", qid=0x4242)
    reply = handle_query(msg, spy)
    assert isinstance(reply, bytes)
    qid, flags, qd, an, ns, ar = unpack_header(reply)
    assert seen == ["db.mynet"]
    assert qid == 0x4242 and (qd, an, ns, ar) == (1, 2, 0, 0)
    assert flags & dns.QR and flags & dns.AA and flags & dns.RD and flags & dns.RA
    assert flags & 0xF == dns.NOERROR and not flags & dns.TC
    assert reply[12 : 12 + len(msg) - 12] == msg[12:]  # question echoed as sent (case kept)
    assert answers_a(reply) == [("10.88.0.3", 600), ("10.88.0.4", 600)]


@pytest.mark.parametrize("qtype", [28, 15, 16, 33])  # AAAA, MX, TXT, SRV
def test_other_types_of_our_names_get_nodata(qtype: int) -> None:
    reply = handle_query(query("web", qtype=qtype), resolve)
    assert isinstance(reply, bytes)
    _, flags, qd, an, _, _ = unpack_header(reply)
    assert flags & 0xF == dns.NOERROR and (qd, an) == (1, 0)


def test_any_query_gets_the_a_records() -> None:
    reply = handle_query(query("web", qtype=255), resolve)
    assert isinstance(reply, bytes) and answers_a(reply) == [("10.88.0.2", 600)]


def test_our_name_without_address_is_nodata() -> None:
    reply = handle_query(query("noaddr"), resolve)
    assert isinstance(reply, bytes)
    assert unpack_header(reply)[1] & 0xF == dns.NOERROR and unpack_header(reply)[3] == 0


def test_invalid_address_from_resolve_is_left_out() -> None:
    reply = handle_query(query("x"), lambda n: ["10.0.0.1", "fd00::1", "nonsense"])
    assert isinstance(reply, bytes) and answers_a(reply) == [("10.0.0.1", 600)]


@pytest.mark.parametrize(
    "msg",
    [query("example.org"), query("web", qclass=3), query(""), query("other", qtype=28)],
)
def test_not_ours_is_forwarded(msg: bytes) -> None:
    result = handle_query(msg, resolve)
    assert isinstance(result, Query) and result.id == 0x1234


def test_ptr_answer_and_forward() -> None:
    def reverse(address: str) -> list[str] | None:
        return ["web.mynet"] if address == "10.88.0.2" else None

    reply = handle_query(query("2.0.88.10.in-addr.arpa", qtype=12), resolve, reverse)
    assert isinstance(reply, bytes)
    _, flags, qd, an, _, _ = unpack_header(reply)
    assert (qd, an) == (1, 1) and flags & dns.AA
    _, pos = read_name(reply, 12)
    pos += 4
    _, pos = read_name(reply, pos)
    rtype, _, ttl, rdlen = struct.unpack_from("!HHIH", reply, pos)
    assert (rtype, ttl) == (12, 600)
    assert read_name(reply, pos + 10) == ((b"web", b"mynet"), len(reply))
    other = handle_query(query("9.0.88.10.in-addr.arpa", qtype=12), resolve, reverse)
    assert isinstance(other, Query)
    bad = handle_query(query("999.0.88.10.in-addr.arpa", qtype=12), resolve, reverse)
    assert isinstance(bad, Query)
    # a name that cannot be encoded is left out, not a failure
    reply = handle_query(
        query("2.0.88.10.in-addr.arpa", qtype=12), resolve, lambda a: ["x" * 64, "ok.net"]
    )
    assert isinstance(reply, bytes) and unpack_header(reply)[3] == 1


def test_reverse_address() -> None:
    labels = tuple(x.encode() for x in ["4", "3", "2", "1", "IN-ADDR", "arpa"])
    assert dns.reverse_address(labels) == "1.2.3.4"
    assert dns.reverse_address((b"3", b"2", b"1", b"in-addr", b"arpa")) is None
    assert dns.reverse_address((b"x", b"3", b"2", b"1", b"in-addr", b"arpa")) is None


def test_drops_what_cannot_be_answered() -> None:
    assert handle_query(b"", resolve) is None
    assert handle_query(b"\x12\x34\x01\x00\x00\x01\x00", resolve) is None  # short header
    assert handle_query(query("web", flags=0x8180), resolve) is None  # a response


def test_wrong_opcode_is_notimp() -> None:
    for opcode in (1, 2, 4, 5, 15):  # IQUERY, STATUS, NOTIFY, UPDATE, unassigned
        reply = handle_query(query("web", qid=7, flags=opcode << 11), resolve)
        assert isinstance(reply, bytes)
        qid, flags, qd, an, ns, ar = unpack_header(reply)
        assert qid == 7 and flags & 0xF == dns.NOTIMP and (flags >> 11) & 0xF == opcode
        assert (qd, an, ns, ar) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "msg",
    [
        header(qid=9, qd=0),
        header(qid=9) + b"\xc0\x0c\x00\x01\x00\x01",  # question name points at itself
        header(qid=9) + b"\x03web",
        header(qid=9, qd=3) + wire_name("web") + b"\x00\x01\x00\x01",
    ],
)
def test_malformed_query_is_formerr(msg: bytes) -> None:
    reply = handle_query(msg, resolve)
    assert isinstance(reply, bytes)
    qid, flags, *counts = unpack_header(reply)
    assert qid == 9 and flags & dns.QR and flags & 0xF == dns.FORMERR and counts == [0, 0, 0, 0]


# -- truncation ---------------------------------------------------------------------------------


def many(n: int) -> dict[str, list[str]]:
    return {"big": [f"10.77.{i // 250}.{i % 250 + 1}" for i in range(n)]}


def test_local_answer_over_512_is_truncated_on_udp_only() -> None:
    names = many(40)  # 12 + 9 + 40 * 16 = 661 bytes
    reply = handle_query(query("big"), names.get)
    assert isinstance(reply, bytes) and len(reply) <= 512
    qid, flags, qd, an, ns, ar = unpack_header(reply)
    assert flags & dns.TC and (qd, an, ns, ar) == (1, 0, 0, 0)
    assert reply[12:] == query("big")[12:]
    full = handle_query(query("big"), names.get, udp=False)
    assert isinstance(full, bytes) and len(full) == 661 and not unpack_header(full)[1] & dns.TC
    assert len(answers_a(full)) == 40
    edns = handle_query(query("big", edns=1232), names.get)
    assert isinstance(edns, bytes) and len(answers_a(edns)) == 40


def test_local_answer_that_fits_is_not_truncated() -> None:
    reply = handle_query(query("big"), many(31).get)  # 12 + 9 + 31 * 16 = 517 > 512
    assert isinstance(reply, bytes) and unpack_header(reply)[1] & dns.TC
    reply = handle_query(query("big"), many(30).get)  # 501: fits
    assert isinstance(reply, bytes) and len(answers_a(reply)) == 30


def test_truncate_upstream_reply() -> None:
    question = query("example.org")[12:]
    big = header(flags=0x8180) + question
    big += b"\xff" * 600  # whatever follows the question is cut
    cut = dns.truncate(big, 512)
    assert cut == header(flags=0x8180 | dns.TC) + question
    assert dns.truncate(big, 4096) == big
    # a question that does not parse: header only
    junk = header(flags=0x8180) + b"\xc0\x0c" + b"\x00" * 600
    assert dns.truncate(junk, 512) == header(flags=0x8180 | dns.TC, qd=0)


# -- upstream replies ------------------------------------------------------------------------------


def upstream_reply(q: bytes, qid: int, flags: int = 0x8180, question: bytes | None = None) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0) + (question or q[12:])


def test_reply_matches() -> None:
    msg = query("Example.ORG")
    q = parse_query(msg)
    assert dns.reply_matches(upstream_reply(msg, 77), 77, q)
    assert dns.reply_matches(upstream_reply(msg, 77, question=query("EXAMPLE.org")[12:]), 77, q)
    assert not dns.reply_matches(upstream_reply(msg, 78), 77, q)
    assert not dns.reply_matches(upstream_reply(msg, 77, flags=0x0100), 77, q)  # not a response
    assert not dns.reply_matches(upstream_reply(msg, 77, question=query("other.org")[12:]), 77, q)
    assert not dns.reply_matches(
        upstream_reply(msg, 77, question=query("example.org", qtype=28)[12:]), 77, q
    )
    assert not dns.reply_matches(b"\x00\x4d\x81", 77, q)
    # an error without a question is an answer; a success without one is not
    assert dns.reply_matches(struct.pack("!HHHHHH", 77, 0x8182, 0, 0, 0, 0), 77, q)
    assert not dns.reply_matches(struct.pack("!HHHHHH", 77, 0x8180, 0, 0, 0, 0), 77, q)


# -- fuzz ------------------------------------------------------------------------------------------


def test_random_and_mutated_packets_never_raise() -> None:
    rng = random.Random(0x0D05)
    seeds = [query("web"), query("db.mynet", edns=1232), query("example.org", qtype=28),
             query("2.0.88.10.in-addr.arpa", qtype=12)]  # fmt: skip

    def reverse(address: str) -> list[str] | None:
        return ["web"]

    outcomes = {"bytes": 0, "query": 0, "none": 0}
    for i in range(20000):
        if i % 4 == 0:
            msg = rng.randbytes(rng.randrange(0, 80))
        else:
            buf = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 6)):
                op = rng.randrange(3)
                pos = rng.randrange(len(buf) + 1)
                if op == 0 and buf:
                    buf[min(pos, len(buf) - 1)] = rng.randrange(256)
                elif op == 1:
                    del buf[pos : pos + rng.randrange(1, 4)]
                else:
                    buf[pos:pos] = rng.choice([b"\xc0\x0c", b"\xc0", b"\x3f", rng.randbytes(2)])
            msg = bytes(buf)
        for udp in (True, False):
            result = handle_query(msg, resolve, reverse, udp=udp)
            if isinstance(result, bytes):
                outcomes["bytes"] += 1
                assert len(result) >= 12 and result[:2] == msg[:2]
                assert result[2] & 0x80  # QR
                if udp:
                    assert len(result) <= 4096
            elif isinstance(result, Query):
                outcomes["query"] += 1
                assert result.id == struct.unpack_from("!H", msg)[0]
            else:
                outcomes["none"] += 1
    assert all(outcomes.values()), outcomes  # every kind of outcome was exercised


# -- upstreams from the host's resolv.conf ----------------------------------------------------


HOST_RESOLV = """\
# generated by something
nameserver 127.0.0.53
nameserver 10.1.2.3
nameserver fd00::53
nameserver ::1
nameserver not-an-address
domain corp.example
search corp.example lab.example
options edns0 trust-ad
options rotate
"""


def test_host_upstreams() -> None:
    assert dns.host_upstreams(HOST_RESOLV) == [("10.1.2.3", 53), ("fd00::53", 53)]
    # only loopback resolvers: they are reachable from the host netns, where we forward from
    assert dns.host_upstreams("nameserver 127.0.0.53\nnameserver ::1\n") == [
        ("127.0.0.53", 53),
        ("::1", 53),
    ]
    assert dns.host_upstreams("") == []
    assert dns.host_upstreams("nameserver fe80::1%eth0\n") == [("fe80::1%eth0", 53)]


# -- the server object, without namespaces -----------------------------------------------------


def test_upstreams_must_be_ip_literals() -> None:
    for bad in [[("dns.google", 53)], [("10.0.0.1", 0)], [("10.0.0.1", "53")], [("10.0.0.1",)]]:
        with pytest.raises(InvalidArgument, match="upstream"):
            dns.EmbeddedDNS(lambda c, n: None, bad)  # type: ignore[arg-type]
    d = dns.EmbeddedDNS(lambda c, n: None, [("10.0.0.1", 53), ("fd00::1", 5353)])
    assert d.upstreams == [("10.0.0.1", 53), ("fd00::1", 5353)]
    d.close()


def test_a_failed_server_thread_fails_callers_instead_of_hanging() -> None:
    d = dns.EmbeddedDNS(lambda c, n: None, [])
    assert d._call(lambda: 1) == 1  # what add_container does first: starts the thread

    def boom() -> None:
        raise RuntimeError("injected")

    d._run_timers = boom  # type: ignore[method-assign]
    with pytest.raises(dns.FailedPrecondition, match="closed"):
        d._call(lambda: 2)  # its wake-up runs the loop into the failure: this caller is told
    with pytest.raises(dns.FailedPrecondition, match="closed"):
        d._call(lambda: 3)  # and so is every later one
    assert d._thread is not None
    d._thread.join(5)
    assert not d._thread.is_alive()
    with pytest.raises(dns.FailedPrecondition, match="closed"):
        d.add_container("c1", "/proc/self/ns/net")
    d.close()
