"""rtnetlink messages as pyrt.networks.rtnl builds and reads them: attribute packing and
alignment, nesting, message framing, acks (plain, capped, with the kernel's words), the
request loop, and the errors each request raises. No socket reaches the kernel here (the
kernel's side: tests/integration/test_networks_rtnl.py)."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from pyrt.errors import Conflict, InvalidArgument, NotFound, SystemError_
from pyrt.networks import rtnl
from pyrt.networks.rtnl import Message, NetlinkError

# -- attributes ----------------------------------------------------------------------------


def test_rtattr_counts_header_and_payload_and_pads_to_four() -> None:
    assert rtnl.rtattr(3, b"ab") == b"\x06\x00\x03\x00ab\x00\x00"  # length 6, 2 pad bytes
    assert rtnl.rtattr(3, b"abcd") == b"\x08\x00\x03\x00abcd"  # aligned already: no pad
    assert rtnl.rtattr(7, b"") == b"\x04\x00\x07\x00"
    assert rtnl.rtattr_str(3, "br0") == b"\x08\x00\x03\x00br0\x00"  # NUL-terminated
    assert rtnl.rtattr_u32(4, 1500) == struct.pack("HHI", 8, 4, 1500)
    assert [rtnl.align(n) for n in (0, 1, 4, 5, 8)] == [0, 4, 4, 8, 8]


def test_parse_attrs_reads_back_what_was_packed_and_drops_padding() -> None:
    data = (rtnl.rtattr_str(rtnl.IFLA_IFNAME, "pyrt0") + rtnl.rtattr(rtnl.IFLA_ADDRESS, b"\x02" * 6)
            + rtnl.rtattr_u32(rtnl.IFLA_MTU, 9000))  # fmt: skip
    got = rtnl.parse_attrs(data)
    assert got == {rtnl.IFLA_IFNAME: b"pyrt0\0", rtnl.IFLA_ADDRESS: b"\x02" * 6,
                   rtnl.IFLA_MTU: struct.pack("I", 9000)}  # fmt: skip
    assert rtnl.parse_attrs(b"") == {}


def test_nested_linkinfo_round_trips_and_the_nested_flag_is_masked() -> None:
    info = rtnl.rtattr(rtnl.IFLA_INFO_KIND, b"veth") + rtnl.rtattr(
        rtnl.IFLA_INFO_DATA, rtnl.rtattr(rtnl.VETH_INFO_PEER, rtnl.ifinfomsg()
                                         + rtnl.rtattr_str(rtnl.IFLA_IFNAME, "eth0")))
    outer = rtnl.parse_attrs(rtnl.rtattr(rtnl.IFLA_LINKINFO, info))
    inner = rtnl.parse_attrs(outer[rtnl.IFLA_LINKINFO])
    assert inner[rtnl.IFLA_INFO_KIND] == b"veth"
    peer = rtnl.parse_attrs(inner[rtnl.IFLA_INFO_DATA])[rtnl.VETH_INFO_PEER]
    assert rtnl.parse_attrs(peer[16:]) == {rtnl.IFLA_IFNAME: b"eth0\0"}  # after ifinfomsg
    # the kernel may set NLA_F_NESTED (0x8000) on a nest's type: the type is still 18
    flagged = struct.pack("HH", 4 + len(info), rtnl.IFLA_LINKINFO | 0x8000) + info
    assert list(rtnl.parse_attrs(flagged)) == [rtnl.IFLA_LINKINFO]


@pytest.mark.parametrize("data", [b"\x08\x00\x03\x00ab", b"\x02\x00\x03\x00", b"\x04\x00"])
def test_parse_attrs_refuses_a_malformed_attribute(data: bytes) -> None:
    with pytest.raises(NetlinkError) as e:
        rtnl.parse_attrs(data)
    assert e.value.errno == errno.EBADMSG


# -- messages and acks ---------------------------------------------------------------------


def test_messages_frame_and_split_with_padding() -> None:
    a = rtnl.nlmsg(rtnl.RTM_NEWLINK, rtnl.NLM_F_REQUEST, 7, b"xyz")  # 19 bytes, padded to 20
    b = rtnl.nlmsg(rtnl.NLMSG_ERROR, 0, 8, struct.pack("i", 0) + bytes(16))
    assert struct.unpack_from("IHHII", a) == (19, rtnl.RTM_NEWLINK, rtnl.NLM_F_REQUEST, 7, 0)
    got = rtnl.split_messages(a + b"\0" + b)
    assert got == [Message(rtnl.RTM_NEWLINK, rtnl.NLM_F_REQUEST, 7, b"xyz"),
                   Message(rtnl.NLMSG_ERROR, 0, 8, struct.pack("i", 0) + bytes(16))]
    with pytest.raises(NetlinkError):
        rtnl.split_messages(struct.pack("IHHII", 64, 16, 0, 1, 0))  # says 64, holds 16


def _ack(error: int, flags: int = 0, request: bytes = b"", tlvs: bytes = b"") -> Message:
    echoed = request or rtnl.nlmsg(rtnl.RTM_NEWLINK, 5, 1, b"")
    return Message(rtnl.NLMSG_ERROR, flags, 1, struct.pack("i", error) + echoed + tlvs)


def test_parse_ack_success_and_a_plain_error() -> None:
    assert rtnl.parse_ack(_ack(0, rtnl.NLM_F_CAPPED)) == (0, "")
    assert rtnl.parse_ack(_ack(-errno.EEXIST)) == (errno.EEXIST, "")


def test_parse_ack_reads_the_kernels_words_capped_or_after_the_echoed_request() -> None:
    words = rtnl.rtattr(rtnl.NLMSGERR_ATTR_MSG, b"mtu greater than device maximum\0")
    offs = rtnl.rtattr_u32(2, 40)  # NLMSGERR_ATTR_OFFS: ignored, but skipped over right
    capped = _ack(-errno.EINVAL, rtnl.NLM_F_CAPPED | rtnl.NLM_F_ACK_TLVS, tlvs=offs + words)
    assert rtnl.parse_ack(capped) == (errno.EINVAL, "mtu greater than device maximum")
    # not capped: the whole request (header and an unaligned 5-byte body) comes back first
    request = rtnl.nlmsg(rtnl.RTM_NEWLINK, 5, 1, b"abcde") + b"\0\0\0"
    full = _ack(-errno.EINVAL, rtnl.NLM_F_ACK_TLVS, request=request, tlvs=words)
    assert rtnl.parse_ack(full) == (errno.EINVAL, "mtu greater than device maximum")


# -- the request loop ----------------------------------------------------------------------


class FakeSock:
    """What Rtnl.request sends, and the datagrams queued as the kernel's answers."""

    def __init__(self, answers: list[bytes]) -> None:
        self.sent: list[bytes] = []
        self.answers = answers

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv(self, size: int) -> bytes:
        return self.answers.pop(0)

    def close(self) -> None:
        pass


def _fake_rtnl(answers: list[bytes]) -> tuple[rtnl.Rtnl, FakeSock]:
    nl = rtnl.Rtnl.__new__(rtnl.Rtnl)  # no socket: the fake stands for it
    fake = FakeSock(answers)
    nl.sock = fake  # type: ignore[assignment]
    nl._seq = 0
    return nl, fake


def test_request_sends_one_message_with_ack_and_collects_the_replies() -> None:
    answer = rtnl.nlmsg(rtnl.RTM_NEWLINK, 0, 1, rtnl.ifinfomsg(index=42))
    stale = rtnl.nlmsg(rtnl.RTM_NEWLINK, 0, 99, b"")  # another sequence number: skipped
    ack = rtnl.nlmsg(rtnl.NLMSG_ERROR, rtnl.NLM_F_CAPPED, 1, struct.pack("i", 0) + bytes(16))
    nl, fake = _fake_rtnl([stale, answer + ack])
    assert rtnl.link_index(nl, "pyrt0") == 42
    [sent] = fake.sent
    size, kind, flags, seq, _ = struct.unpack_from("IHHII", sent)
    assert (size, kind, seq) == (len(sent), rtnl.RTM_GETLINK, 1)
    assert flags == rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK
    assert rtnl.parse_attrs(sent[32:]) == {rtnl.IFLA_IFNAME: b"pyrt0\0"}


def _refusal(seq: int, err: int, words: str = "") -> bytes:
    tlvs = rtnl.rtattr(rtnl.NLMSGERR_ATTR_MSG, words.encode() + b"\0") if words else b""
    flags = rtnl.NLM_F_CAPPED | (rtnl.NLM_F_ACK_TLVS if words else 0)
    return rtnl.nlmsg(rtnl.NLMSG_ERROR, flags, seq, struct.pack("i", -err) + bytes(16) + tlvs)


def test_link_index_of_a_missing_link_is_none() -> None:
    nl, _ = _fake_rtnl([_refusal(1, errno.ENODEV)])
    assert rtnl.link_index(nl, "nothere") is None


# -- what each request sends -------------------------------------------------------------


class Recorder(rtnl.Rtnl):
    """An Rtnl that records requests and refuses with `refuse` (errno, words) if given."""

    def __init__(self, refuse: tuple[int, str] | None = None) -> None:
        self.calls: list[tuple[int, bytes, int]] = []
        self.refuse = refuse

    def request(self, kind: int, body: bytes, flags: int = 0) -> list[Message]:
        self.calls.append((kind, body, flags))
        if self.refuse:
            raise NetlinkError(*self.refuse)
        return []


def test_add_bridge_is_one_exclusive_newlink_with_kind_bridge() -> None:
    nl = Recorder()
    rtnl.add_bridge(nl, "pyrtb1", "02:42:0a:d2:00:01", mtu=1400)
    [(kind, body, flags)] = nl.calls
    assert kind == rtnl.RTM_NEWLINK and flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    assert body[:16] == rtnl.ifinfomsg()
    attrs = rtnl.parse_attrs(body[16:])
    assert attrs[rtnl.IFLA_IFNAME] == b"pyrtb1\0"
    assert attrs[rtnl.IFLA_ADDRESS] == bytes.fromhex("02420ad20001")
    assert attrs[rtnl.IFLA_MTU] == struct.pack("I", 1400)
    assert rtnl.parse_attrs(attrs[rtnl.IFLA_LINKINFO]) == {rtnl.IFLA_INFO_KIND: b"bridge"}
    rtnl.add_bridge(nl, "pyrtb2", "02:42:0a:d2:00:01")
    assert rtnl.IFLA_MTU not in rtnl.parse_attrs(nl.calls[1][1][16:])  # 0: the default


def test_add_veth_nests_the_peer_with_its_namespace() -> None:
    nl = Recorder()
    rtnl.add_veth(nl, "pv1", 7, "eth0", "02:42:0a:00:00:02", netns_fd=9, mtu=1450)
    [(kind, body, flags)] = nl.calls
    assert kind == rtnl.RTM_NEWLINK and flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    assert body[:16] == rtnl.ifinfomsg(flags=rtnl.IFF_UP, change=rtnl.IFF_UP)
    attrs = rtnl.parse_attrs(body[16:])
    assert attrs[rtnl.IFLA_MASTER] == struct.pack("I", 7)
    info = rtnl.parse_attrs(attrs[rtnl.IFLA_LINKINFO])
    peer = rtnl.parse_attrs(info[rtnl.IFLA_INFO_DATA])[rtnl.VETH_INFO_PEER]
    assert peer[:16] == rtnl.ifinfomsg()
    assert rtnl.parse_attrs(peer[16:]) == {
        rtnl.IFLA_IFNAME: b"eth0\0", rtnl.IFLA_NET_NS_FD: struct.pack("I", 9),
        rtnl.IFLA_ADDRESS: bytes.fromhex("02420a000002"), rtnl.IFLA_MTU: struct.pack("I", 1450)}


def test_add_address_carries_local_address_and_broadcast() -> None:
    nl = Recorder()
    rtnl.add_address(nl, "pyrt0", 5, "10.210.3.1", 24)
    rtnl.add_address(nl, "pyrt0", 5, "10.210.4.0", 31)
    (kind, body, flags), (_, body31, _) = nl.calls
    assert kind == rtnl.RTM_NEWADDR and flags == rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    assert struct.unpack_from("BBBBI", body) == (socket.AF_INET, 24, 0, 0, 5)
    attrs = rtnl.parse_attrs(body[8:])
    assert attrs[rtnl.IFA_LOCAL] == attrs[rtnl.IFA_ADDRESS] == socket.inet_aton("10.210.3.1")
    assert attrs[rtnl.IFA_BROADCAST] == socket.inet_aton("10.210.3.255")
    assert rtnl.IFA_BROADCAST not in rtnl.parse_attrs(body31[8:])  # a /31 has none


def test_set_link_up_with_an_alias() -> None:
    nl = Recorder()
    rtnl.set_link(nl, "pyrt0", 5, up=True, alias="pyrt:/var/lib/pyrt")
    [(kind, body, flags)] = nl.calls
    assert kind == rtnl.RTM_NEWLINK and flags == 0  # a change, not a creation
    assert body[:16] == rtnl.ifinfomsg(5, rtnl.IFF_UP, rtnl.IFF_UP)
    assert rtnl.parse_attrs(body[16:]) == {rtnl.IFLA_IFALIAS: b"pyrt:/var/lib/pyrt"}


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "x" * 16, "é" * 8, "a/b", "a:b", "a b", "..", "."])
def test_interface_names_the_kernel_would_refuse(name: str) -> None:
    nl = Recorder()
    with pytest.raises(InvalidArgument) as e:
        rtnl.add_bridge(nl, name, "02:00:00:00:00:01")
    assert repr(name) in str(e.value)
    assert nl.calls == []  # refused before anything was sent
    rtnl.check_ifname("x" * 15)


def test_kernel_refusals_name_the_interface_the_errno_and_the_kernels_words() -> None:
    with pytest.raises(Conflict) as c:
        rtnl.add_bridge(Recorder((errno.EEXIST, "")), "pyrt0", "02:00:00:00:00:01")
    assert str(c.value) == ("create bridge pyrt0: File exists (EEXIST): a link named pyrt0 "
                            "exists already")
    with pytest.raises(Conflict, match=r"10\.0\.0\.1/24 to pyrt0: .*EEXIST.*already assigned"):
        rtnl.add_address(Recorder((errno.EEXIST, "ipv4: Address already assigned")), "pyrt0",
                         5, "10.0.0.1", 24)
    with pytest.raises(NotFound) as n:
        rtnl.delete_link(Recorder((errno.ENODEV, "")), "pv123")
    assert "delete link pv123" in str(n.value) and "ENODEV" in str(n.value)
    with pytest.raises(SystemError_) as s:
        rtnl.add_bridge(Recorder((errno.EINVAL, "mtu greater than device maximum")), "pyrt0",
                        "02:00:00:00:00:01", 70000)
    assert s.value.errno == errno.EINVAL
    assert str(s.value) == ("create bridge pyrt0: Invalid argument (EINVAL): mtu greater than "
                            "device maximum")
    with pytest.raises(SystemError_, match=r"add veth pv1: .*\(EEXIST\)") as v:
        rtnl.add_veth(Recorder((errno.EEXIST, "")), "pv1", 7, "eth0", "02:00:00:00:00:02", 9)
    assert v.value.errno == errno.EEXIST


def test_request_raises_the_refusal_of_its_own_sequence_number() -> None:
    nl, _ = _fake_rtnl([_refusal(5, errno.EPERM), _refusal(1, errno.EBUSY, "device busy")])
    with pytest.raises(NetlinkError) as e:
        nl.request(rtnl.RTM_DELLINK, rtnl.ifinfomsg())
    assert (e.value.errno, e.value.detail) == (errno.EBUSY, "device busy")
