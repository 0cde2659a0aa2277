"""NAT, published ports and isolation in one nftables table of pyrt's own (libnftables).

The table (family ip, name per engine: "pyrt" for the default root) holds:

    set bridges, set internal_br     the bridges of pyrt's networks (and the internal ones)
    set masq_nets                    subnets whose traffic out of their bridge is masqueraded
    map fwd_vmap                     bridge -> jump net-<bridge> (its forward policy)
    map ports_any, map ports_ip      published ports: [host ip .] proto . port -> ctr ip . port
    chains prerouting/output         DNAT to a published port for traffic to a local address
    chain postrouting                masquerade out of bridges; from 127.0.0.0/8 into a bridge
                                     (published ports on localhost: route_localnet is set on
                                     the bridges); a container's DNATed traffic into a bridge
                                     (to a published port: its own, or another container's)
    chain forward                    established/DNATed traffic passes; from a bridge only to
                                     itself or out of the host (not to another pyrt bridge);
                                     an internal network only to itself

Whole-table changes (a network up or down, the state at engine start) are one atomic batch
that replaces the table; a container's ports are map elements added or deleted in one
small batch. libnftables runs in process (ctypes): no `nft` process per change.

Coexistence with Docker: Docker's iptables (nft backend) FORWARD chain in table `ip filter`
has policy DROP, and a packet must pass every base chain on a hook. For each pyrt bridge
accept rules (commented "pyrt:<table>:<bridge>") are inserted at the top of DOCKER-USER
when it exists, else of FORWARD, and removed with the network.
"""

from __future__ import annotations

import ctypes
import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pyrt.errors import SystemError_

NFT_CTX_OUTPUT_HANDLE = 1 << 3
NFT_CTX_OUTPUT_JSON = 1 << 4


@dataclass(frozen=True)
class BridgeRules:
    bridge: str
    subnet: str
    internal: bool


@dataclass(frozen=True)
class PortRule:
    host_ip: str  # "" or "0.0.0.0": every local address
    host_port: int
    proto: str  # tcp | udp | sctp
    ctr_ip: str
    ctr_port: int


class Firewall(Protocol):
    """The nftables seam of the network service (NftFirewall; tests' FakeFirewall)."""

    def sync(self, bridges: Sequence[BridgeRules], ports: Sequence[PortRule]) -> None: ...
    def add_ports(self, ports: Sequence[PortRule]) -> None: ...
    def remove_ports(self, ports: Sequence[PortRule]) -> None: ...
    def delete(self) -> None: ...
    def close(self) -> None: ...


class Nft:
    """libnftables in process: run(commands) -> output; SystemError_ with nft's message."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL("libnftables.so.1")
        except OSError as e:
            raise SystemError_(f"nftables: cannot load libnftables.so.1 ({e}); install "
                               "the nftables package") from None  # fmt: skip
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        self._lib = lib
        self._ctx = lib.nft_ctx_new(0)
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)
        self._lock = threading.Lock()

    def run(self, commands: str, *, json_output: bool = False) -> str:
        with self._lock:
            if not self._ctx:
                raise SystemError_("nftables: the context is closed")
            self._lib.nft_ctx_output_set_flags(
                self._ctx, NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE if json_output else 0)
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
            out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if rc != 0:
            first = err.strip().splitlines()[0] if err.strip() else "failed"
            raise SystemError_(f"nftables: {first} (in: {commands.strip().splitlines()[0]}...)")
        return out

    def close(self) -> None:
        with self._lock:
            if self._ctx:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None


def _q(name: str) -> str:
    return json.dumps(name)  # an nft string literal: "br-1234"


def table_text(table: str, bridges: Sequence[BridgeRules], ports: Sequence[PortRule],
               comment: str = "") -> str:
    """The whole table, replacing whatever was there (one atomic batch); `comment` says
    who made it."""
    lines = [f"add table ip {table}", f"delete table ip {table}", f"table ip {table} {{",
             *([f"  comment {_q(comment)};"] if comment else []),
             "  set bridges { type ifname; }", "  set internal_br { type ifname; }",
             "  set masq_nets { type ipv4_addr; flags interval; }",
             "  map fwd_vmap { type ifname : verdict; }",
             "  map ports_any { type inet_proto . inet_service : ipv4_addr . inet_service; }",
             "  map ports_ip { type ipv4_addr . inet_proto . inet_service : "
             "ipv4_addr . inet_service; }",
             "  chain publish_ports {",
             "    dnat ip to ip daddr . meta l4proto . th dport map @ports_ip",
             "    dnat ip to meta l4proto . th dport map @ports_any", "  }",
             "  chain prerouting { type nat hook prerouting priority -100; policy accept;",
             "    fib daddr type local jump publish_ports", "  }",
             "  chain output { type nat hook output priority -100; policy accept;",
             "    fib daddr type local jump publish_ports", "  }",
             "  chain postrouting { type nat hook postrouting priority 100; policy accept;",
             "    ip saddr @masq_nets oifname != @bridges masquerade",
             "    ip saddr 127.0.0.0/8 oifname @bridges masquerade",
             "    ct status dnat ip saddr @masq_nets oifname @bridges masquerade",
             "  }"]  # fmt: skip
    for b in bridges:
        last = "drop" if b.internal else "oifname @bridges drop"
        lines.append(f"  chain net-{b.bridge} {{ oifname {_q(b.bridge)} accept; {last}; }}")
    lines += ["  chain forward { type filter hook forward priority 0; policy accept;",
              "    ct state established,related accept", "    ct status dnat accept",
              "    iifname vmap @fwd_vmap", "    oifname @internal_br drop", "  }",
              "}"]  # fmt: skip
    if bridges:
        names = ", ".join(_q(b.bridge) for b in bridges)
        lines.append(f"add element ip {table} bridges {{ {names} }}")
        vmap = ", ".join(f"{_q(b.bridge)} : jump net-{b.bridge}" for b in bridges)
        lines.append(f"add element ip {table} fwd_vmap {{ {vmap} }}")
        internal = [_q(b.bridge) for b in bridges if b.internal]
        if internal:
            lines.append(f"add element ip {table} internal_br {{ {', '.join(internal)} }}")
        masq = [b.subnet for b in bridges if not b.internal]
        if masq:
            lines.append(f"add element ip {table} masq_nets {{ {', '.join(masq)} }}")
    lines += port_commands("add", table, ports)
    return "\n".join(lines) + "\n"


def _any_ip(ip: str) -> bool:
    return ip in ("", "0.0.0.0")


def port_commands(verb: str, table: str, ports: Iterable[PortRule]) -> list[str]:
    """add/delete element commands for published ports."""
    out = []
    for p in ports:
        if _any_ip(p.host_ip):
            key, m = f"{p.proto} . {p.host_port}", "ports_any"
        else:
            key, m = f"{p.host_ip} . {p.proto} . {p.host_port}", "ports_ip"
        value = f" : {p.ctr_ip} . {p.ctr_port}" if verb == "add" else ""
        out.append(f"{verb} element ip {table} {m} {{ {key}{value} }}")
    return out


class NftFirewall:
    """Firewall on the real kernel: the table `table` (see the module doc)."""

    def __init__(self, table: str, comment: str = "") -> None:
        self.table = table
        self.comment = comment
        self._nft: Nft | None = None

    @property
    def nft(self) -> Nft:
        if self._nft is None:
            self._nft = Nft()
        return self._nft

    def sync(self, bridges: Sequence[BridgeRules], ports: Sequence[PortRule]) -> None:
        self.nft.run(table_text(self.table, bridges, ports, self.comment))
        self._sync_filter_accepts({b.bridge for b in bridges})

    def add_ports(self, ports: Sequence[PortRule]) -> None:
        if ports:
            self.nft.run("\n".join(port_commands("add", self.table, ports)) + "\n")

    def remove_ports(self, ports: Sequence[PortRule]) -> None:
        if ports:
            self.nft.run("\n".join(port_commands("delete", self.table, ports)) + "\n")

    def delete(self) -> None:
        """Remove the table and every accept rule of this table in `ip filter`."""
        self.nft.run(f"add table ip {self.table}\ndelete table ip {self.table}\n")
        self._sync_filter_accepts(set())

    # -- ip filter (Docker's iptables) ---------------------------------------------------------

    def _filter_rules(self) -> tuple[str | None, list[tuple[str, int, str]]]:
        """(the chain to add accepts to, or None; [(chain, handle, comment)] of ours)."""
        try:
            out = self.nft.run("list table ip filter", json_output=True)
        except SystemError_:
            return None, []
        items = json.loads(out).get("nftables", [])
        chains = {i["chain"]["name"] for i in items if "chain" in i}
        target = "DOCKER-USER" if "DOCKER-USER" in chains else (
            "FORWARD" if "FORWARD" in chains else None)  # fmt: skip
        prefix = f"pyrt:{self.table}:"
        ours = [(i["rule"]["chain"], int(i["rule"]["handle"]), str(i["rule"].get("comment")))
                for i in items if "rule" in i
                and str(i["rule"].get("comment", "")).startswith(prefix)]  # fmt: skip
        return target, ours

    def _sync_filter_accepts(self, bridges: set[str]) -> None:
        try:
            self._sync_filter_accepts_once(bridges)
        except SystemError_:  # `ip filter` changed under us (Docker restarting): look again
            self._sync_filter_accepts_once(bridges)

    def _sync_filter_accepts_once(self, bridges: set[str]) -> None:
        target, ours = self._filter_rules()
        have = {c.rsplit(":", 1)[1] for _, _, c in ours}
        cmds = [f"delete rule ip filter {chain} handle {h}" for chain, h, c in ours
                if c.rsplit(":", 1)[1] not in bridges]  # fmt: skip
        if target is not None:
            for br in sorted(bridges - have):
                note = _q(f"pyrt:{self.table}:{br}")
                cmds.append(f"insert rule ip filter {target} oifname {_q(br)} accept "
                            f"comment {note}")  # fmt: skip
                cmds.append(f"insert rule ip filter {target} iifname {_q(br)} accept "
                            f"comment {note}")  # fmt: skip
        if cmds:
            self.nft.run("\n".join(cmds) + "\n")

    def close(self) -> None:
        if self._nft is not None:
            self._nft.close()
            self._nft = None


def filter_accepts(nft: Nft, table: str) -> list[str]:
    """The comments of table `table`'s accept rules in `ip filter` (for tests and checks)."""
    fw = NftFirewall(table)
    fw._nft = nft
    return [c for _, _, c in fw._filter_rules()[1]]


def tables(nft: Nft) -> list[str]:
    """The names of the ip-family tables on this host."""
    items = json.loads(nft.run("list tables ip", json_output=True)).get("nftables", [])
    return [str(i["table"]["name"]) for i in items if "table" in i]




__all__ = ["BridgeRules", "Firewall", "Nft", "NftFirewall", "PortRule", "filter_accepts",
           "port_commands", "table_text", "tables"]
