"""pyrtd: the daemon. Serves the Docker Engine API over /run/pyrt/pyrt.sock.

    pyrtd [--data-root DIR] [--exec-root DIR] [-H unix:///path | -H tcp://HOST:PORT
          --tlsverify --tlscacert CA --tlscert CERT --tlskey KEY] [--pidfile FILE]
          [--config-file /etc/pyrt/daemon.json] [--registry-mirror URL]...
          [--insecure-registry HOST]... [--live-restore[=false]] [--log-level LEVEL]

Start: read daemon.json (flags and file may not both set a directive), bind every host
(a Unix socket where another daemon answers is refused; a stale one is replaced; mode
0660, group "docker" when it exists), open the engine on the data root, write the pid
file, serve. Logs go to stderr as JSON lines.

Signals: SIGTERM/SIGINT stop serving (requests in flight get a grace period), close the
engine and remove the socket and pid file; containers keep running (live restore).
SIGHUP reloads the configuration file: registry mirrors and insecure registries.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyrt import __version__
from pyrt.config import (
    DEFAULT_CONFIG_FILE,
    DaemonConfig,
    load_file,
    merge,
)
from pyrt.errors import Conflict, InvalidArgument, PyrtError

log = logging.getLogger("pyrt.daemon")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "error": logging.ERROR, "fatal": logging.CRITICAL}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, msg, logger and any `fields` given as
    extra={"fields": {...}}."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update({k: v for k, v in fields.items() if k not in out})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))


def _bool_flag(text: str) -> bool:
    if text in ("1", "true", "True"):
        return True
    if text in ("0", "false", "False"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyrtd", description="pyrt's daemon: the Docker "
                                "Engine API over a Unix socket")
    p.add_argument("--data-root", help="root of persistent state (default /var/lib/pyrt)")
    p.add_argument("--exec-root", help="root of runtime state (default /run/pyrt)")
    p.add_argument("-H", "--host", action="append", dest="hosts", metavar="HOST",
                   help="unix:///path or tcp://HOST:PORT (TLS required); repeatable")
    p.add_argument("--tlsverify", action="store_true",
                   help="require TLS with client certificates (mutual TLS) on tcp hosts")
    p.add_argument("--tlscacert", help="CA that signs the client certificates")
    p.add_argument("--tlscert", help="the server's certificate")
    p.add_argument("--tlskey", help="the server's key")
    p.add_argument("--pidfile", help="pid file (default <exec-root>/pyrtd.pid)")
    p.add_argument("--cgroup-parent", help="cgroup the containers' cgroups go below "
                   "(default /pyrt)")
    p.add_argument("--config-file", help=f"daemon.json (default {DEFAULT_CONFIG_FILE})")
    p.add_argument("--registry-mirror", action="append", dest="registry_mirrors",
                   metavar="URL", help="a Docker Hub mirror; repeatable")
    p.add_argument("--insecure-registry", action="append", dest="insecure_registries",
                   metavar="HOST", help="a registry reached without TLS checks; repeatable")
    p.add_argument("--live-restore", nargs="?", const=True, type=_bool_flag,
                   help="keep containers running while the daemon is down (default true)")
    p.add_argument("--log-level", choices=list(_LEVELS), help="log level (default info)")
    p.add_argument("-D", "--debug", action="store_true", default=None,
                   help="debug mode (log level debug)")
    p.add_argument("--group", default="docker",
                   help="group owning the Unix sockets (default docker; root if missing)")
    p.add_argument("-v", "--version", action="version", version=f"pyrtd {__version__}")
    return p


_FLAG_KEYS = {"data_root": "data-root", "exec_root": "exec-root", "hosts": "hosts",
              "pidfile": "pidfile", "registry_mirrors": "registry-mirrors",
              "insecure_registries": "insecure-registries", "live_restore": "live-restore",
              "log_level": "log-level", "debug": "debug", "cgroup_parent": "cgroup-parent"}


def flags_of(ns: argparse.Namespace) -> dict[str, Any]:
    """The daemon.json directives given on the command line."""
    out: dict[str, Any] = {}
    for attr, key in _FLAG_KEYS.items():
        v = getattr(ns, attr)
        if v is None:
            continue
        if key in ("data-root", "exec-root", "pidfile"):
            v = os.path.abspath(v)
        out[key] = v
    return out


def resolve_config(ns: argparse.Namespace) -> DaemonConfig:
    path = ns.config_file or DEFAULT_CONFIG_FILE
    file_cfg, keys = load_file(path, missing_ok=ns.config_file is None)
    cfg = merge(file_cfg, keys, flags_of(ns))
    if cfg.debug:
        cfg.log_level = "debug"
    tls = [ns.tlscacert, ns.tlscert, ns.tlskey]
    for h in cfg.listen:
        if h.startswith("tcp://") and not (ns.tlsverify and all(tls)):
            raise InvalidArgument(
                f"refusing to listen on {h} without mutual TLS: give --tlsverify, "
                "--tlscacert, --tlscert and --tlskey")
    return cfg


def check_pidfile(path: str) -> None:
    try:
        text = Path(path).read_text().strip()
    except FileNotFoundError:
        return
    except OSError as e:
        raise InvalidArgument(f"pid file {path}: {e.strerror}") from None
    if text.isdigit() and int(text) != os.getpid():
        pid = int(text)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        comm = ""
        with contextlib.suppress(OSError):
            comm = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        if "pyrt" in comm:
            raise Conflict(f"pid file found, ensure pyrtd is not running or delete {path} "
                           f"(process {pid} is running)")


def write_pidfile(path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    Path(tmp).write_text(f"{os.getpid()}")
    os.replace(tmp, path)


def daemon_id(data_root: str) -> str:
    p = Path(data_root) / "engine-id"
    with contextlib.suppress(OSError):
        text = p.read_text().strip()
        if text:
            return text
    new = str(uuid.uuid4())
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".engine-id.{os.getpid()}")
    tmp.write_text(new + "\n")
    os.replace(tmp, p)
    return new


def open_engine(cfg: DaemonConfig) -> Any:
    from pyrt.engine import Engine

    return Engine(root=cfg.data_root, run_root=cfg.exec_root,
                  insecure_registries=cfg.insecure_registries, mirrors=cfg.registry_mirrors,
                  cgroup_parent=cfg.cgroup_parent, bridge_name=cfg.bridge or None,
                  address_pools=[(p.base, p.size) for p in cfg.default_address_pools],
                  dns=cfg.dns)


def apply_registry_config(engine: Any, cfg: DaemonConfig) -> None:
    """Point the image service at the configured mirrors and insecure registries."""
    images = engine.images
    images.mirrors = tuple(cfg.registry_mirrors)
    images.insecure_registries = tuple(cfg.insecure_registries)


class IdleTrim:
    """Gives the C heap's free pages back to the kernel once the daemon goes quiet after
    work. glibc keeps what a burst of requests freed (an image load's buffers, the
    request threads' arenas): ~4 MB of an idle daemon's ~27 after `pyrt load`.
    tick() (the daemon's loop calls it every 0.5 s) trims when the process used no CPU
    since the previous tick but did before it: once per burst, after it, ~1 ms, and
    never while the daemon is busy. `trim` is glibc's malloc_trim; without one (another
    libc) tick() does nothing."""

    def __init__(self, trim: Callable[[int], object] | None = None,
                 cpu: Callable[[], float] | None = None) -> None:
        self._trim = trim if trim is not None else _malloc_trim()
        self._cpu = cpu or _cpu_time
        self._last = self._cpu()
        self._worked = False

    def tick(self) -> bool:
        """Trim if the daemon just went quiet; whether it did."""
        used = self._cpu()
        if used != self._last:
            self._last, self._worked = used, True
            return False
        if not self._worked or self._trim is None:
            return False
        self._worked = False
        self._trim(0)
        self._last = self._cpu()  # (the trim's own time is no work)
        return True


def _malloc_trim() -> Callable[[int], object] | None:
    import ctypes  # (loaded already: the volumes and networks use it)

    fn: Callable[[int], object] | None = getattr(ctypes.CDLL(None), "malloc_trim", None)
    return fn


def _cpu_time() -> float:
    """The process's CPU time so far (user + system, every thread)."""
    t = os.times()
    return t.user + t.system


class Daemon:
    def __init__(self, ns: argparse.Namespace, cfg: DaemonConfig) -> None:
        self.ns = ns
        self.cfg = cfg
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.engine: Any = None

    def run(self) -> int:
        from pyrt.api.routing import App
        from pyrt.api.server import APIServer, default_router, tls_context

        cfg = self.cfg
        check_pidfile(cfg.pid_path)
        app = App(engine=None, config=cfg)
        server = APIServer(default_router(), app)
        try:
            for h in cfg.listen:
                if h.startswith("unix://"):
                    server.listen_unix(h[len("unix://"):], group=self.ns.group)
                else:
                    host, _, port = h[len("tcp://"):].rpartition(":")
                    ctx = tls_context(self.ns.tlscacert, self.ns.tlscert, self.ns.tlskey)
                    addr = server.listen_tcp(host.strip("[]"), int(port), ctx)
                    log.info("listening", extra={"fields": {"host": f"tcp://{addr[0]}:"
                                                                     f"{addr[1]}", "tls": True}})
            self.engine = open_engine(cfg)
        except BaseException:
            server.shutdown(grace=0)
            raise
        app.engine = self.engine
        app.daemon_id = daemon_id(cfg.data_root)
        write_pidfile(cfg.pid_path)
        server.start()
        log.info("pyrtd started", extra={"fields": {
            "version": __version__, "data-root": cfg.data_root, "exec-root": cfg.exec_root,
            "hosts": cfg.listen, "pid": os.getpid(), "live-restore": cfg.live_restore}})
        try:
            idle = IdleTrim()
            while not self.stop.wait(0.5):
                if self.reload.is_set():
                    self.reload.clear()
                    self.do_reload(app)
                idle.tick()
        finally:
            log.info("pyrtd stopping")
            with contextlib.suppress(Exception):
                self.engine.events.close()  # ends /events streams
            if not server.shutdown(grace=10.0):
                log.warning("requests still running at shutdown were cut off")
            self.engine.close()
            with contextlib.suppress(OSError):
                if Path(cfg.pid_path).read_text().strip() == str(os.getpid()):
                    os.unlink(cfg.pid_path)
            log.info("pyrtd stopped; containers keep running")
        return 0

    def do_reload(self, app: Any) -> None:
        try:
            new = resolve_config(self.ns)
        except PyrtError as e:
            log.error("configuration reload failed; keeping the old one",
                      extra={"fields": {"error": str(e)}})
            return
        self.cfg.registry_mirrors = new.registry_mirrors
        self.cfg.insecure_registries = new.insecure_registries
        apply_registry_config(self.engine, self.cfg)
        log.info("configuration reloaded", extra={"fields": {
            "registry-mirrors": new.registry_mirrors,
            "insecure-registries": new.insecure_registries}})


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    setup_logging("info")
    try:
        cfg = resolve_config(ns)
    except PyrtError as e:
        log.error("invalid configuration", extra={"fields": {"error": str(e)}})
        return 1
    setup_logging(cfg.log_level)
    d = Daemon(ns, cfg)
    signal.signal(signal.SIGTERM, lambda *_: d.stop.set())
    signal.signal(signal.SIGINT, lambda *_: d.stop.set())
    signal.signal(signal.SIGHUP, lambda *_: d.reload.set())
    try:
        return d.run()
    except PyrtError as e:
        log.error("pyrtd failed to start", extra={"fields": {"error": str(e)}})
        return 1


if __name__ == "__main__":
    sys.exit(main())
