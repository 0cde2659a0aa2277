"""pyrt-runc: runc's command line over pyrt.runtime.Runtime.

Kept lean on purpose (it is benchmarked against runc): argparse only, the runtime and
everything heavy imported when a command needs it. Errors go to stderr and, with --log,
to that file (--log-format json writes {"level","msg","time"} lines, as containerd reads).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from pyrt.runtime.runtime import Runtime

VERSION = "0.1.0"
COMMIT = "dev"
SPEC_VERSION = "1.2.0"
DEFAULT_ROOT = "/run/pyrt-runc"


class UsageError(Exception):
    """Bad command line: reported like any error, exit status 1."""


# ------------------------------------------------------------------ signals


def parse_signal(text: str) -> int:
    """A signal from '9', 'KILL', 'SIGKILL', 'sigkill', 'RTMIN+1'; UsageError otherwise."""
    s = text.strip()
    if not s:
        raise UsageError("invalid signal: empty")
    if s.isdigit():
        n = int(s)
        if n <= 0 or n >= signal.NSIG:
            raise UsageError(f"invalid signal number {n}")
        return n
    name = s.upper()
    if name.startswith("SIG"):
        name = name[3:]
    for base, value in (("RTMIN", signal.SIGRTMIN), ("RTMAX", signal.SIGRTMAX)):
        if name == base:
            return int(value)
        for sep in ("+", "-"):
            if name.startswith(base + sep) and name[len(base) + 1 :].isdigit():
                off = int(name[len(base) + 1 :])
                n = int(value) + off if sep == "+" else int(value) - off
                if signal.SIGRTMIN <= n <= signal.SIGRTMAX:
                    return n
                raise UsageError(f"invalid signal {text!r}: out of the realtime range")
    sig = getattr(signal.Signals, "SIG" + name, None)
    if not isinstance(sig, signal.Signals) or name.startswith("_"):
        raise UsageError(f"unknown signal {text!r}")
    return int(sig)


# ------------------------------------------------------------------ argument parsing


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


# long options that Go-style callers may spell with one dash (-root) or as --flag=true
_BOOL_FLAGS = {
    "debug", "systemd-cgroup", "no-pivot", "no-new-keyring", "detach", "tty", "force",
    "all", "quiet", "no-new-privs", "keep", "no-subreaper", "ignore-paused", "stats",
}  # fmt: skip
_VALUE_FLAGS = {
    "root", "log", "log-format", "criu", "rootless", "bundle", "pid-file", "console-socket",
    "preserve-fds", "process", "cwd", "env", "user", "cap", "process-label", "apparmor",
    "format", "additional-gids", "cgroup", "resources", "memory", "memory-reservation",
    "memory-swap", "pids-limit", "cpu-share", "cpu-shares", "cpu-quota", "cpu-period",
    "cpuset-cpus", "cpuset-mems", "blkio-weight", "interval", "cpu-rt-period",
    "cpu-rt-runtime", "kernel-memory", "kernel-memory-tcp", "l3-cache-schema",
    "mem-bw-schema", "image-path", "work-path",
}  # fmt: skip


def normalize_args(argv: Sequence[str]) -> list[str]:
    """Accept Go flag spellings: -root x → --root x, --detach=true → --detach, =false dropped.

    Stops at '--' and at the first word of the container's own command (exec/run args are
    passed through untouched after the container id).
    """
    out: list[str] = []
    for i, a in enumerate(argv):
        if a == "--":
            out.extend(argv[i:])
            break
        if a.startswith("-") and len(a) > 2:
            body = a[2:] if a.startswith("--") else a[1:]
            name, eq, value = body.partition("=")
            if name in _BOOL_FLAGS or name in _VALUE_FLAGS:
                if name in _BOOL_FLAGS and eq:
                    v = value.lower()
                    if v in ("true", "1", "t"):
                        out.append("--" + name)
                        continue
                    if v in ("false", "0", "f"):
                        continue
                out.append("--" + body)
                continue
        out.append(a)
    return out


def _add_create_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", "-b", default=".")
    p.add_argument("--console-socket", default=None)
    p.add_argument("--pid-file", default=None)
    p.add_argument("--no-pivot", action="store_true")
    p.add_argument("--no-new-keyring", action="store_true")
    p.add_argument("--preserve-fds", type=_nonneg_int, default=0)
    p.add_argument("container_id")


def _nonneg_int(s: str) -> int:
    try:
        n = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pyrt-runc", add_help=True)
    p.add_argument("--root", default=DEFAULT_ROOT)
    p.add_argument("--log", default=None)
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("--rootless", default="auto")
    p.add_argument("--criu", default=None)
    p.add_argument("--version", "-v", action="store_true")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    c = sub.add_parser("create")
    _add_create_flags(c)

    r = sub.add_parser("run")
    _add_create_flags(r)
    r.add_argument("--detach", "-d", action="store_true")
    r.add_argument("--keep", action="store_true")
    r.add_argument("--no-subreaper", action="store_true")

    for name in ("start", "state", "pause", "resume"):
        sub.add_parser(name).add_argument("container_id")

    k = sub.add_parser("kill")
    k.add_argument("--all", "-a", action="store_true")
    k.add_argument("container_id")
    k.add_argument("signal", nargs="?", default="SIGTERM")

    d = sub.add_parser("delete")
    d.add_argument("--force", "-f", action="store_true")
    d.add_argument("container_id")

    e = sub.add_parser("exec")
    e.add_argument("--process", "-p", default=None)
    e.add_argument("--tty", "-t", action="store_true")
    e.add_argument("--detach", "-d", action="store_true")
    e.add_argument("--pid-file", default=None)
    e.add_argument("--console-socket", default=None)
    e.add_argument("--cwd", default=None)
    e.add_argument("--env", "-e", action="append", default=[])
    e.add_argument("--user", "-u", default=None)
    e.add_argument("--additional-gids", "-g", action="append", default=[])
    e.add_argument("--cap", "-c", action="append", default=[])
    e.add_argument("--no-new-privs", action="store_true")
    e.add_argument("--preserve-fds", type=_nonneg_int, default=0)
    e.add_argument("--process-label", default=None)
    e.add_argument("--apparmor", default=None)
    e.add_argument("--cgroup", action="append", default=[])
    e.add_argument("--ignore-paused", action="store_true")
    e.add_argument("container_id")
    e.add_argument("args", nargs=argparse.REMAINDER)

    ps = sub.add_parser("ps")
    ps.add_argument("--format", "-f", default="table", choices=["table", "json"])
    ps.add_argument("container_id")
    ps.add_argument("ps_args", nargs=argparse.REMAINDER)

    ls = sub.add_parser("list")
    ls.add_argument("--format", "-f", default="table", choices=["table", "json"])
    ls.add_argument("--quiet", "-q", action="store_true")

    sp = sub.add_parser("spec")
    sp.add_argument("--bundle", "-b", default=".")
    sp.add_argument("--rootless", action="store_true", dest="spec_rootless")

    sub.add_parser("features")

    u = sub.add_parser("update")
    u.add_argument("--resources", "-r", default=None)
    for flag in ("--memory", "--memory-reservation", "--memory-swap", "--pids-limit",
                 "--cpu-share", "--cpu-quota", "--cpu-period", "--blkio-weight",
                 "--cpu-rt-period", "--cpu-rt-runtime"):  # fmt: skip
        u.add_argument(flag, type=int, default=None)
    u.add_argument("--cpuset-cpus", default=None)
    u.add_argument("--cpuset-mems", default=None)
    u.add_argument("container_id")

    ev = sub.add_parser("events")
    ev.add_argument("--stats", action="store_true")
    ev.add_argument("--interval", default="5s")
    ev.add_argument("container_id")

    for name in ("checkpoint", "restore"):
        x = sub.add_parser(name)
        x.add_argument("rest", nargs=argparse.REMAINDER)
    return p


# ------------------------------------------------------------------ logging


class _Log:
    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path = path
        self.fmt = fmt
        self.debug_on = debug

    def _emit(self, level: str, msg: str) -> None:
        if self.fmt == "json":
            t = time.time()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
            stamp += f".{int((t % 1) * 1e9):09d}Z"
            line = json.dumps({"level": level, "msg": msg, "time": stamp})
        else:
            line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {level}: {msg}"
        if self.path is None:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass

    def error(self, msg: str) -> None:
        self._emit("error", msg)

    def warning(self, msg: str) -> None:
        self._emit("warning", msg)

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self._emit("debug", msg)


# ------------------------------------------------------------------ commands


def _runtime(args: argparse.Namespace) -> Runtime:
    from pyrt.runtime.runtime import Runtime

    return Runtime(args.root)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


class _Forwarder:
    """Forward the usual terminating signals to a foreground container process."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
               signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)  # fmt: skip

    def __init__(self) -> None:
        self.pid = 0
        for s in self.SIGNALS:
            signal.signal(s, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def started(self, pid: int) -> None:
        self.pid = pid


def cmd_create(args: argparse.Namespace) -> int:
    _runtime(args).create(
        args.container_id, args.bundle, console_socket=args.console_socket,
        pid_file=args.pid_file, no_pivot=args.no_pivot, preserve_fds=args.preserve_fds,
    )  # fmt: skip
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    fwd = None if args.detach else _Forwarder()
    return _runtime(args).run(
        args.container_id, args.bundle, console_socket=args.console_socket,
        pid_file=args.pid_file, no_pivot=args.no_pivot, preserve_fds=args.preserve_fds,
        detach=args.detach, keep=args.keep, on_started=fwd.started if fwd else None,
    )  # fmt: skip


def cmd_start(args: argparse.Namespace) -> int:
    _runtime(args).start(args.container_id)
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    _print_json(_runtime(args).state(args.container_id))
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    sig = parse_signal(args.signal)
    _runtime(args).kill(args.container_id, sig, all=args.all)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _runtime(args).delete(args.container_id, force=args.force)
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    _runtime(args).pause(args.container_id)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    _runtime(args).resume(args.container_id)
    return 0


def parse_user(text: str) -> tuple[int, int | None]:
    """'uid' or 'uid:gid' (numbers) → (uid, gid or None)."""
    u, sep, g = text.partition(":")
    try:
        uid = int(u)
        gid = int(g) if sep else None
    except ValueError:
        raise UsageError(f"--user: expected uid[:gid] as numbers, got {text!r}") from None
    if uid < 0 or (gid is not None and gid < 0):
        raise UsageError(f"--user: ids must not be negative: {text!r}")
    return uid, gid


def build_exec_process(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    """The process.json of an exec: from --process, or the container's process + flags."""
    if args.process:
        try:
            with open(args.process, "rb") as f:
                loaded = json.loads(f.read())
        except OSError as e:
            raise UsageError(f"--process {args.process}: {e.strerror}") from None
        except ValueError as e:
            raise UsageError(f"--process {args.process}: invalid JSON: {e}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"--process {args.process}: must hold a JSON object")
        given: dict[str, Any] = loaded
        if args.tty:
            given["terminal"] = True
        return given
    cmd = list(args.args)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("exec: a command is needed (trailing args or --process)")
    proc: dict[str, Any] = json.loads(json.dumps(base))  # deep copy
    proc["args"] = cmd
    proc["terminal"] = bool(args.tty)
    proc.pop("consoleSize", None)
    if args.cwd:
        proc["cwd"] = args.cwd
    env = list(proc.get("env") or [])
    for item in args.env:
        key = item.split("=", 1)[0]
        env = [x for x in env if x.split("=", 1)[0] != key]
        env.append(item)
    proc["env"] = env
    if args.user:
        uid, gid = parse_user(args.user)
        user = dict(proc.get("user") or {})
        user["uid"] = uid
        user["gid"] = gid if gid is not None else 0
        proc["user"] = user
    if args.additional_gids:
        user = dict(proc.get("user") or {"uid": 0, "gid": 0})
        try:
            user["additionalGids"] = [int(g) for g in args.additional_gids]
        except ValueError:
            raise UsageError("--additional-gids: numbers expected") from None
        proc["user"] = user
    if args.cap:
        caps = dict(proc.get("capabilities") or {})
        for key in ("bounding", "effective", "permitted", "ambient"):
            have = list(caps.get(key) or [])
            for c in args.cap:
                name = c.upper() if c.upper().startswith("CAP_") else "CAP_" + c.upper()
                if name not in have:
                    have.append(name)
            caps[key] = have
        proc["capabilities"] = caps
    if args.no_new_privs:
        proc["noNewPrivileges"] = True
    return proc


def cmd_exec(args: argparse.Namespace) -> int:
    rt = _runtime(args)
    base: dict[str, Any] = {}
    if not args.process:
        base = dict(rt.config(args.container_id).get("process") or {})
    proc = build_exec_process(args, base)
    fwd = None if args.detach else _Forwarder()
    result = rt.exec(
        args.container_id, proc, detach=args.detach, console_socket=args.console_socket,
        pid_file=args.pid_file, preserve_fds=args.preserve_fds,
        on_started=fwd.started if fwd else None,
    )  # fmt: skip
    return 0 if args.detach else result


def cmd_ps(args: argparse.Namespace) -> int:
    pids = _runtime(args).ps(args.container_id)
    if args.format == "json":
        sys.stdout.write(json.dumps(pids) + "\n")
        return 0
    import subprocess

    ps_args = [a for a in args.ps_args if a != "--"] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise UsageError(f"ps {' '.join(ps_args)}: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0]
    cols = header.split()
    try:
        pid_col = cols.index("PID")
    except ValueError:
        raise UsageError("ps output has no PID column") from None
    wanted = set(pids)
    sys.stdout.write(header + "\n")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in wanted:
            sys.stdout.write(line + "\n")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    states = _runtime(args).list()
    if args.quiet:
        for s in states:
            sys.stdout.write(s["id"] + "\n")
        return 0
    if args.format == "json":
        sys.stdout.write(json.dumps(states) + "\n")
        return 0
    rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
    for s in states:
        rows.append([s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"],
                     s.get("owner") or "root"])  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        sys.stdout.write("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        sys.stdout.write("\n")
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    from pyrt.runtime.default_spec import default_spec
    from pyrt.runtime.state import atomic_write

    path = os.path.join(args.bundle, "config.json")
    if os.path.lexists(path):
        raise UsageError(f"File {path} exists. Remove it first")
    if not os.path.isdir(args.bundle):
        raise UsageError(f"bundle {args.bundle}: not a directory")
    spec = default_spec(rootless=args.spec_rootless)
    atomic_write(path, (json.dumps(spec, indent="\t") + "\n").encode(), 0o666 & ~_umask())
    return 0


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def cmd_features(args: argparse.Namespace) -> int:
    from pyrt.runtime.runtime import Runtime

    _print_json(Runtime(args.root).features())
    return 0


def resources_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The linux.resources object of `update`: from --resources (file or '-') or flags."""
    if args.resources is not None:
        try:
            if args.resources == "-":
                raw = sys.stdin.read()
            else:
                with open(args.resources) as f:
                    raw = f.read()
            loaded = json.loads(raw)
        except OSError as e:
            raise UsageError(f"--resources {args.resources}: {e.strerror}") from None
        except ValueError as e:
            raise UsageError(f"--resources: invalid JSON: {e}") from None
        if not isinstance(loaded, dict):
            raise UsageError("--resources: must hold a JSON object")
        given: dict[str, Any] = loaded
        return given
    res: dict[str, Any] = {}
    mem: dict[str, Any] = {}
    for flag, key in (("memory", "limit"), ("memory_reservation", "reservation"),
                      ("memory_swap", "swap")):  # fmt: skip
        if getattr(args, flag) is not None:
            mem[key] = getattr(args, flag)
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    for flag, key in (("cpu_share", "shares"), ("cpu_quota", "quota"), ("cpu_period", "period"),
                      ("cpu_rt_period", "realtimePeriod"),
                      ("cpu_rt_runtime", "realtimeRuntime"),
                      ("cpuset_cpus", "cpus"), ("cpuset_mems", "mems")):  # fmt: skip
        if getattr(args, flag) is not None:
            cpu[key] = getattr(args, flag)
    if cpu:
        res["cpu"] = cpu
    if args.pids_limit is not None:
        res["pids"] = {"limit": args.pids_limit}
    if args.blkio_weight is not None:
        res["blockIO"] = {"weight": args.blkio_weight}
    if not res:
        raise UsageError("update: nothing to update (give --resources or a limit flag)")
    return res


def cmd_update(args: argparse.Namespace) -> int:
    res = resources_from_flags(args)
    _runtime(args).update(args.container_id, res)
    return 0


def _parse_interval(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            try:
                v = float(text[: -len(suffix)]) * units[suffix]
            except ValueError:
                break
            if v > 0:
                return v
            break
    raise UsageError(f"--interval: expected a duration like 5s or 500ms, got {text!r}")


def cmd_events(args: argparse.Namespace) -> int:
    rt = _runtime(args)
    interval = _parse_interval(args.interval)
    while True:
        st = rt.state(args.container_id)
        if st["status"] == "stopped":
            if args.stats:
                raise UsageError(f"container '{args.container_id}' is not running")
            return 0
        event = {"type": "stats", "id": args.container_id, "data": rt.stats(args.container_id)}
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()
        if args.stats:
            return 0
        time.sleep(interval)


def cmd_unsupported(args: argparse.Namespace) -> int:
    raise UsageError(f"{args.command} is not supported by pyrt-runc")


COMMANDS = {
    "create": cmd_create,
    "run": cmd_run,
    "start": cmd_start,
    "state": cmd_state,
    "kill": cmd_kill,
    "delete": cmd_delete,
    "exec": cmd_exec,
    "ps": cmd_ps,
    "list": cmd_list,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "spec": cmd_spec,
    "features": cmd_features,
    "update": cmd_update,
    "events": cmd_events,
    "checkpoint": cmd_unsupported,
    "restore": cmd_unsupported,
}


def version_text() -> str:
    return f"pyrt-runc version {VERSION}\ncommit: {COMMIT}\nspec: {SPEC_VERSION}\n"


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    log = _Log(None, "text", False)
    try:
        args = build_parser().parse_args(normalize_args(raw))
        log = _Log(args.log, args.log_format, args.debug)
        if args.version:
            sys.stdout.write(version_text())
            return 0
        if args.command is None:
            raise UsageError("a command is needed (create, start, state, kill, delete, ...)")
        if args.systemd_cgroup:
            raise UsageError("--systemd-cgroup is not supported")
        if args.rootless not in ("false", "auto", "true"):
            raise UsageError(f"--rootless: expected true, false or auto, got {args.rootless!r}")
        if args.rootless == "true":
            raise UsageError("--rootless=true is not supported")
        log.debug(f"command: {' '.join(raw)}")
        code = COMMANDS[args.command](args)
        sys.stdout.flush()
        return code
    except UsageError as e:
        return _fail(log, str(e))
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        from pyrt.errors import PyrtError

        if isinstance(e, PyrtError | OSError):
            return _fail(log, str(e))
        raise


def _fail(log: _Log, msg: str) -> int:
    sys.stderr.write(f"pyrt-runc: {msg}\n")
    log.error(msg)
    return 1


if __name__ == "__main__":
    sys.exit(main())
