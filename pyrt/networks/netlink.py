"""Links, addresses, routes and network namespaces, through rtnetlink (pyrt.networks.rtnl).

    links = NetlinkDriver()
    links.create_netns("/run/pyrt/netns/<cid>")          # a pinned, empty namespace
    links.ensure_bridge("pyrt0", "10.210.0.1", 24, mtu=0)
    links.add_endpoint(EndpointLink(netns="/run/pyrt/netns/<cid>", host_ifname="pv1234",
                                    ifname="eth0", bridge="pyrt0", mac="02:42:0a:d2:00:02",
                                    address="10.210.0.2", prefixlen=24, gateway="10.210.0.1"))
    links.delete_link("pv1234")                           # both ends of the veth go
    links.delete_netns("/run/pyrt/netns/<cid>")

All the work runs on one thread of the driver's own: setns(2) and unshare(2) change only
the calling thread's namespace, so that thread can step into a container's namespace for
a moment (configure its end with a few ioctls, step back) without forking, while its
netlink socket, made in the host's namespace, stays there. A netns is made with
unshare(CLONE_NEWNET) on that thread and pinned by bind-mounting /proc/thread-self/ns/net
onto a file; the thread then returns to the host's namespace.

Every netlink request is built by hand (rtnl.py): a veth pair is one RTM_NEWLINK, a bridge
one RTM_NEWLINK, its address one RTM_NEWADDR, a deletion one RTM_DELLINK. No netlink
library is imported, so an idle daemon holds none; the socket opens at the first use.
The container's end is set up with ioctls inside its namespace (_configure); listings come
from sysfs and /proc/net/route.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import errno as _errno
import fcntl
import ipaddress
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pyrt.errors import Conflict, NotFound, PyrtError, SystemError_
from pyrt.networks import rtnl

T = TypeVar("T")
log = logging.getLogger("pyrt.networks")
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
SIOCSIFFLAGS, SIOCGIFFLAGS = 0x8914, 0x8913
SIOCSIFADDR, SIOCSIFNETMASK, SIOCADDRT = 0x8916, 0x891C, 0x890B
RTF_UP, RTF_GATEWAY = 0x1, 0x2
IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x8, 0x40


@dataclass(frozen=True)
class EndpointLink:
    """One veth pair: `host_ifname` on `bridge`, `ifname` in the namespace at `netns`."""

    netns: str
    host_ifname: str
    ifname: str
    bridge: str
    mac: str
    address: str
    prefixlen: int
    gateway: str | None  # the default route through it, or None (internal, or not the first)
    mtu: int = 0
    alias: str = ""  # the host end's ifalias: who made it ("pyrt:<engine root>")


@dataclass(frozen=True)
class LinkInfo:
    name: str
    kind: str  # "bridge", "veth", "" ...
    master: str  # the bridge it is a port of, or ""


class LinkDriver(Protocol):
    """The netlink seam of the network service (NetlinkDriver; tests' FakeLinks)."""

    def create_netns(self, path: str) -> None: ...
    def delete_netns(self, path: str) -> None: ...
    def pin_netns(self, path: str, ns_fd: int) -> None: ...
    def ensure_bridge(self, name: str, gateway: str, prefixlen: int, mtu: int = 0,
                      alias: str = "") -> None: ...
    def delete_bridge(self, name: str) -> None: ...
    def add_endpoint(self, ep: EndpointLink) -> None: ...
    def delete_link(self, name: str) -> None: ...
    def release(self, links: list[str]) -> None: ...
    def links(self) -> list[LinkInfo]: ...
    def host_networks(self) -> list[ipaddress.IPv4Network]: ...
    def close(self) -> None: ...


def process_netns(pid: int) -> str:
    """The path of process `pid`'s network namespace (a container's, made by the runtime's
    clone, is reached so until something pins it)."""
    return f"/proc/{pid}/ns/net"


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _oserr(what: str) -> SystemError_:
    err = ctypes.get_errno()
    return SystemError_(f"{what}: {os.strerror(err)}", err)


def _sockaddr_in(ip: str) -> bytes:
    return struct.pack("HH4s8x", socket.AF_INET, 0, socket.inet_aton(ip))


def _configure(ep: EndpointLink) -> None:
    """The container end inside its namespace (the calling thread's): address, netmask,
    up, and the default route. Plain ioctls on one socket: no netlink socket or
    round trips to set up for four small changes."""
    name = ep.ifname.encode()
    mask = socket.inet_ntoa(((0xFFFFFFFF << (32 - ep.prefixlen)) & 0xFFFFFFFF).to_bytes(4, "big"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCSIFADDR, struct.pack("16s16s", name, _sockaddr_in(ep.address)))
        fcntl.ioctl(s.fileno(), SIOCSIFNETMASK, struct.pack("16s16s", name, _sockaddr_in(mask)))
        got = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("16sH14x", name, 0))
        flags = struct.unpack("16sH", got[:18])[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", name, flags | IFF_UP))
        if ep.gateway:
            any4 = _sockaddr_in("0.0.0.0")
            # struct rtentry (LP64): pad, dst, gateway, genmask, flags, ..., dev, mtu, ...
            rt = struct.pack("<Q16s16s16sHh4xQQh6xQQQH6x", 0, any4, _sockaddr_in(ep.gateway),
                             any4, RTF_UP | RTF_GATEWAY, 0, 0, 0, 0, 0, 0, 0, 0)
            fcntl.ioctl(s.fileno(), SIOCADDRT, rt)


def _loopback_up() -> None:
    """lo up in the calling thread's namespace: one ioctl, no netlink socket needed."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14s", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING, b"")
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, ifr)


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _sysctl(path: str, value: str) -> None:
    with contextlib.suppress(OSError):
        with open(path) as f:
            if f.read().strip() == value:
                return
        with open(path, "w") as f:
            f.write(value)


def is_netns_mount(path: str) -> bool:
    """Whether `path` is a bind mount of a network namespace (an nsfs file)."""
    target = os.path.abspath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == target and "nsfs" in line.split(" - ", 1)[-1].split()[0]:
                return True
    return False


class NetlinkDriver:
    """LinkDriver on the real kernel (see the module doc)."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pyrt-netlink")
        self._nl: rtnl.Rtnl | None = None  # the owner thread's socket, in the host's netns
        self._host_fd = -1
        self._libc: ctypes.CDLL | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._releaser = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="pyrt-netlink-release")
        self._release_nl: rtnl.Rtnl | None = None  # the releaser thread's socket
        self._releasing: dict[str, concurrent.futures.Future[None]] = {}

    # -- the owner thread ------------------------------------------------------------

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._closed:
                raise SystemError_("the netlink driver is closed")
            fut = self._pool.submit(self._on_thread, fn, *args)
        return fut.result()

    def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._nl is None:  # the first use: this thread is in the host's namespace
            self._libc = _libc()
            self._host_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            self._nl = rtnl.Rtnl()
        try:
            return fn(*args)
        except PyrtError:
            raise
        except OSError as e:
            raise SystemError_(f"netlink: {fn.__name__.strip('_')}: {e.strerror or e}",
                               e.errno) from None  # fmt: skip

    def _host_nl(self) -> rtnl.Rtnl:
        assert self._nl is not None, "called off the owner thread"
        return self._nl

    def _setns(self, fd: int) -> None:
        assert self._libc is not None
        if self._libc.setns(fd, CLONE_NEWNET) != 0:
            raise _oserr("setns")

    # -- namespaces ------------------------------------------------------------------

    def create_netns(self, path: str) -> None:
        self._run(self._create_netns, path)

    def _create_netns(self, path: str) -> None:
        assert self._libc is not None
        os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444)
        os.close(fd)
        if self._libc.unshare(CLONE_NEWNET) != 0:
            e = _oserr(f"unshare a network namespace for {path}")
            os.unlink(path)
            raise e
        try:
            if self._libc.mount(b"/proc/thread-self/ns/net", path.encode(), None, MS_BIND,
                                None) != 0:  # fmt: skip
                e = _oserr(f"pin the network namespace at {path}")
                os.unlink(path)
                raise e
            _loopback_up()
        finally:
            self._setns(self._host_fd)

    def pin_netns(self, path: str, ns_fd: int) -> None:
        """The network namespace open at `ns_fd` (a container's, made by the runtime) bound
        at `path`, as create_netns leaves its own. On the calling thread: a bind mount
        needs neither the namespace nor the driver's thread."""
        os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
        if _libc().mount(f"/proc/self/fd/{ns_fd}".encode(), path.encode(), None, MS_BIND,
                         None) != 0:  # fmt: skip
            e = _oserr(f"pin the network namespace at {path}")
            os.unlink(path)
            raise e

    def delete_netns(self, path: str) -> None:
        libc = _libc()
        if libc.umount2(path.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err not in (_errno.EINVAL, _errno.ENOENT):
                raise SystemError_(f"unpin the network namespace {path}: {os.strerror(err)}",
                                   err)  # fmt: skip
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    # -- bridges and endpoints ---------------------------------------------------------

    def ensure_bridge(self, name: str, gateway: str, prefixlen: int, mtu: int = 0,
                      alias: str = "") -> None:
        """The bridge with the gateway address, up (made when missing). `alias` goes to
        its ifalias, so whoever finds it knows which engine made it."""
        self._run(self._ensure_bridge, name, gateway, prefixlen, mtu, alias)

    def _ensure_bridge(self, name: str, gateway: str, prefixlen: int, mtu: int, alias: str
                       ) -> None:
        nl = self._host_nl()
        idx = rtnl.link_index(nl, name)
        if idx is None:
            mac = "02:" + ":".join(f"{b:02x}" for b in os.urandom(5))
            with contextlib.suppress(Conflict):  # (made meanwhile by someone else: fine)
                rtnl.add_bridge(nl, name, mac, mtu)
            idx = rtnl.link_index(nl, name)
            if idx is None:
                raise SystemError_(f"bridge {name} was gone as soon as it was made")
        with contextlib.suppress(Conflict):  # it has the address already
            rtnl.add_address(nl, name, idx, gateway, prefixlen)
        # published ports reach containers from 127.0.0.1 (DNAT in output, then masquerade)
        _sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")
        _sysctl("/proc/sys/net/ipv4/ip_forward", "1")  # as Docker: bridges route
        rtnl.set_link(nl, name, idx, up=True, alias=alias)

    def delete_bridge(self, name: str) -> None:
        self.delete_link(name)

    def add_endpoint(self, ep: EndpointLink) -> None:
        self._run(self._add_endpoint, ep)

    def _add_endpoint(self, ep: EndpointLink) -> None:
        with self._lock:
            pending = self._releasing.get(ep.host_ifname)
        if pending is not None:  # the same container again: its old veth goes first
            with contextlib.suppress(Exception):
                pending.result()
        nl = self._host_nl()
        try:
            br = int(_read(f"/sys/class/net/{ep.bridge}/ifindex"))
        except ValueError:
            raise SystemError_(f"bridge {ep.bridge} does not exist") from None
        fd = os.open(ep.netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            # one netlink message: the pair, the host end on the bridge and up, the other
            # end (its name, MAC and MTU) in the namespace
            rtnl.add_veth(nl, ep.host_ifname, br, ep.ifname, ep.mac, fd, ep.mtu)
        finally:
            os.close(fd)
        try:
            if ep.alias:  # (the kernel takes no alias in a newlink message; sysfs does)
                _write(f"/sys/class/net/{ep.host_ifname}/ifalias", ep.alias)
            # hairpin: a container reaches its own published port through a host address
            _sysctl(f"/sys/class/net/{ep.host_ifname}/brport/hairpin_mode", "1")
            self._in_netns(ep.netns, lambda: _configure(ep))
        except BaseException:
            with contextlib.suppress(PyrtError, OSError):
                rtnl.delete_link(nl, ep.host_ifname)
            raise

    def _in_netns(self, path: str, fn: Callable[[], None]) -> None:
        """fn() with this thread in the namespace at `path`, then back home."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._setns(fd)
        finally:
            os.close(fd)
        try:
            fn()
        finally:
            self._setns(self._host_fd)

    def delete_link(self, name: str) -> None:
        """Delete link `name`; one that is gone already is fine."""
        self._run(self._delete_link, name)

    def _delete_link(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            rtnl.delete_link(self._host_nl(), name)

    def release(self, links: list[str]) -> None:
        """Delete the links without waiting: a veth's deletion waits for the kernel's RCU
        grace period (~20 ms), which a stop need not wait for, nor the next start. It runs
        on a thread of its own (with its own socket); add_endpoint of a name still being
        released waits for that first; close() waits for all."""
        if not links:
            return
        with self._lock:
            if self._closed:
                return
            fut = self._releaser.submit(self._release, links)
            for name in links:
                self._releasing[name] = fut

    def _release(self, links: list[str]) -> None:
        for name in links:
            try:
                if self._release_nl is None:
                    self._release_nl = rtnl.Rtnl()
                rtnl.delete_link(self._release_nl, name)
            except NotFound:
                pass
            except (PyrtError, OSError) as e:  # nobody waits for this: say it
                log.warning("release link %s: %s", name, e)
            with self._lock:
                self._releasing.pop(name, None)

    def _close_releaser(self) -> None:
        if self._release_nl is not None:
            self._release_nl.close()
            self._release_nl = None

    def links(self) -> list[LinkInfo]:
        """The host's links, from sysfs: no netlink round trip for an engine that only
        checks what is there (its start)."""
        out = []
        base = "/sys/class/net"
        with contextlib.suppress(FileNotFoundError):
            for name in sorted(os.listdir(base)):
                d = f"{base}/{name}"
                kind = "bridge" if os.path.isdir(f"{d}/bridge") else ""
                if not kind and _read(f"{d}/iflink") != _read(f"{d}/ifindex"):
                    kind = "veth"  # (or another link with a peer)
                try:
                    master = os.path.basename(os.readlink(f"{d}/master"))
                except OSError:
                    master = ""
                out.append(LinkInfo(name, kind, master))
        return out

    def host_networks(self) -> list[ipaddress.IPv4Network]:
        """What the host routes (IPv4, main table, default route aside): subnets to keep
        clear of. From /proc/net/route, which holds the connected subnets of the host's
        addresses too."""
        out: set[ipaddress.IPv4Network] = set()
        with contextlib.suppress(OSError), open("/proc/net/route") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) < 8:
                    continue
                dst = int(fields[1], 16).to_bytes(4, "little")
                mask = int(fields[7], 16).to_bytes(4, "little")
                prefix = bin(int.from_bytes(mask, "big")).count("1")
                if prefix:
                    out.add(ipaddress.IPv4Network((dst, prefix), strict=False))
        return sorted(out)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            fut = self._pool.submit(self._close_on_thread)
            rel = self._releaser.submit(self._close_releaser)  # after the releases queued
        with contextlib.suppress(Exception):
            fut.result()
        with contextlib.suppress(Exception):
            rel.result()
        self._pool.shutdown(wait=True)
        self._releaser.shutdown(wait=True)

    def _close_on_thread(self) -> None:
        if self._nl is not None:
            self._nl.close()
            self._nl = None
        if self._host_fd >= 0:
            os.close(self._host_fd)
            self._host_fd = -1


__all__ = ["EndpointLink", "LinkDriver", "LinkInfo", "NetlinkDriver", "is_netns_mount",
           "process_netns"]
