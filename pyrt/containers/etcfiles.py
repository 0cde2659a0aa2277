"""Per-container /etc/hostname, /etc/hosts and /etc/resolv.conf, written on the host and
bind-mounted into the container (their host paths go to specgen's `etc_files`).

    paths = write_etc_files(container_dir, hostname="web", ip="172.18.0.5",
                            extra_hosts=host.ExtraHosts, dns=host.Dns, ...)
    # {"hostname": ".../hostname", "hosts": ".../hosts", "resolv.conf": ".../resolv.conf"}

resolv.conf is derived from the host's the way Docker does it: nameservers on loopback
(127.0.0.0/8, ::1) cannot be reached from the container's network namespace and are
dropped; when none is left, Google's public resolvers are written instead (8.8.8.8 and
8.8.4.4, plus their IPv6 twins when the container has IPv6). When the host's file only
points at systemd-resolved's stub (127.0.0.53), the real upstream list in
/run/systemd/resolve/resolv.conf is used. Dns / DnsSearch / DnsOptions replace the
nameserver, search and options lines; DnsSearch ["."] means no search domains at all.
Nothing here contacts any of these servers.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field

from pyrt.containers.options import parse_extra_host
from pyrt.errors import InvalidArgument

ETC_FILES = ("hostname", "hosts", "resolv.conf")
HOST_RESOLV_CONF = "/etc/resolv.conf"
SYSTEMD_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"
DEFAULT_DNS_V4 = ("8.8.8.8", "8.8.4.4")
DEFAULT_DNS_V6 = ("2001:4860:4860::8888", "2001:4860:4860::8844")

_HOSTS_DEFAULT = (
    ("127.0.0.1", "localhost"),
    ("::1", "localhost ip6-localhost ip6-loopback"),
    ("fe00::0", "ip6-localnet"),
    ("ff00::0", "ip6-mcastprefix"),
    ("ff02::1", "ip6-allnodes"),
    ("ff02::2", "ip6-allrouters"),
)


def hostname_content(hostname: str) -> str:
    return f"{hostname}\n"


def hosts_content(
    hostname: str,
    *,
    domainname: str = "",
    ips: Iterable[str] = (),
    extra_hosts: Iterable[str] = (),
    host_gateway: str | None = None,
    ipv6: bool = True,
) -> str:
    """The container's /etc/hosts: localhost lines, ExtraHosts, then its own addresses.

    `ips`: the container's addresses (none for --network none/host); `host_gateway`: what
    "host-gateway" in ExtraHosts stands for (an error if used without one); without
    `ipv6`, the IPv6 lines are left out.
    """
    lines = [f"{ip}\t{names}" for ip, names in _HOSTS_DEFAULT if ipv6 or ":" not in ip]
    for i, entry in enumerate(extra_hosts):
        name, ip = parse_extra_host(entry, f"HostConfig.ExtraHosts[{i}]")
        if ip == "host-gateway":
            if not host_gateway:
                raise InvalidArgument(
                    f"HostConfig.ExtraHosts[{i}]: 'host-gateway' has no address here "
                    "(no host gateway IP is configured)"
                )
            ip = host_gateway
        lines.append(f"{ip}\t{name}")
    names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
    for ip in ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f"container address {ip!r} is not an IP address") from None
        lines.append(f"{ip}\t{names}")
    return "\n".join(lines) + "\n"


@dataclass
class ResolvConf:
    nameservers: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # lines kept as they are (sortlist...)


def parse_resolv_conf(text: str) -> ResolvConf:
    rc = ResolvConf()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        fields = line.split()
        key, values = fields[0], fields[1:]
        if key == "nameserver" and values:
            rc.nameservers.append(values[0])
        elif key in ("search", "domain"):
            rc.search = values  # the last search/domain line wins
        elif key == "options":
            rc.options.extend(values)
        else:
            rc.other.append(line)
    return rc


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def resolv_conf_content(
    host_text: str,
    *,
    dns: Iterable[str] = (),
    dns_search: Iterable[str] = (),
    dns_options: Iterable[str] = (),
    ipv6: bool = False,
) -> str:
    """The container's resolv.conf from the host's text and the Dns* overrides."""
    return _resolv_conf_content(host_text, tuple(dns), tuple(dns_search), tuple(dns_options),
                                ipv6)  # fmt: skip


@functools.lru_cache(maxsize=64)  # the same few answers for every container made
def _resolv_conf_content(host_text: str, dns_given: tuple[str, ...],
                         search_given: tuple[str, ...], options_given: tuple[str, ...],
                         ipv6: bool) -> str:  # fmt: skip
    rc = parse_resolv_conf(host_text)
    dns, dns_search, dns_options = list(dns_given), list(search_given), list(options_given)
    if dns:
        servers = dns
    else:
        servers = [ns for ns in rc.nameservers if not is_loopback(ns)]
        if not ipv6:
            servers = [ns for ns in servers if ":" not in ns]
        if not servers:
            servers = list(DEFAULT_DNS_V4) + (list(DEFAULT_DNS_V6) if ipv6 else [])
    search = dns_search if dns_search else rc.search
    if search == ["."]:
        search = []
    options = dns_options if dns_options else rc.options
    lines = ["# Generated by pyrt from the host's resolv.conf; edits are kept until restart."]
    lines += [f"nameserver {ns}" for ns in servers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    lines += rc.other
    return "\n".join(lines) + "\n"


def host_resolv_conf(path: str = HOST_RESOLV_CONF, systemd_path: str = SYSTEMD_RESOLV_CONF) -> str:
    """The host's resolv.conf text (systemd-resolved's upstream list when the host's file
    only names its loopback stub); "" when there is none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return ""
    servers = parse_resolv_conf(text).nameservers
    if servers and all(ns == "127.0.0.53" for ns in servers):
        try:
            with open(systemd_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            pass
    return text


def _atomic_write_all(files: dict[str, str], mode: int = 0o644, sync: bool = True) -> None:
    """Replace each path with its content atomically: every temp file is written, then
    (sync) each fsync'ed, then renamed. Syncing them one after the other, once all are
    written, lets the first sync commit all three (ext4 commits the data of every file in
    the journal transaction), where write-sync-write-sync paid three commits."""
    temps: dict[str, str] = {}
    try:
        for path, content in files.items():
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path) or ".")
            temps[path] = tmp
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(content)
        for tmp in temps.values() if sync else ():
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for path, tmp in temps.items():
            os.replace(tmp, path)
    except BaseException:
        for tmp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def write_etc_files(
    directory: str,
    *,
    hostname: str,
    domainname: str = "",
    ips: Iterable[str] = (),
    extra_hosts: Iterable[str] = (),
    host_gateway: str | None = None,
    dns: Iterable[str] = (),
    dns_search: Iterable[str] = (),
    dns_options: Iterable[str] = (),
    ipv6: bool = False,
    host_resolv_path: str = HOST_RESOLV_CONF,
    sync: bool = True,
) -> dict[str, str]:
    """Write hostname, hosts and resolv.conf into `directory` (created if missing, each
    file replaced atomically, and on disk when it returns unless `sync` is False: for a
    container that never outlives a crash); returns {"hostname": path, "hosts": path,
    "resolv.conf": path}, ready for generate_spec's etc_files."""
    os.makedirs(directory, mode=0o711, exist_ok=True)
    contents = {
        "hostname": hostname_content(hostname),
        "hosts": hosts_content(
            hostname,
            domainname=domainname,
            ips=ips,
            extra_hosts=extra_hosts,
            host_gateway=host_gateway,
            ipv6=True,
        ),  # fmt: skip
        "resolv.conf": resolv_conf_content(
            host_resolv_conf(host_resolv_path),
            dns=dns,
            dns_search=dns_search,
            dns_options=dns_options,
            ipv6=ipv6,
        ),  # fmt: skip
    }
    paths = {name: os.path.join(directory, name) for name in contents}
    _atomic_write_all({paths[name]: content for name, content in contents.items()}, sync=sync)
    return paths


__all__ = [
    "DEFAULT_DNS_V4",
    "DEFAULT_DNS_V6",
    "ETC_FILES",
    "ResolvConf",
    "host_resolv_conf",
    "hostname_content",
    "hosts_content",
    "is_loopback",
    "parse_resolv_conf",
    "resolv_conf_content",
    "write_etc_files",
]
