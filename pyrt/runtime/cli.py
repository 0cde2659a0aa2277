"""pyrt-runc: runc's command line over pyrt.runtime.Runtime.

Kept lean on purpose (it is benchmarked against runc): a hand-written parser, the runtime
and everything heavy imported when a command needs it. The installed `pyrt-runc` is the C
front end csrc/runc/, which answers start/state/kill/delete itself, does create and run
itself for the specs it fully understands, and execs this module's main() for the rest.
Errors go to stderr and, with --log, to that file (--log-format json writes
{"level","msg","time"} lines, as containerd reads).
"""

from __future__ import annotations

import os
import sys
import time

# every pyrt-runc create runs this module in a fresh interpreter: json, signal,
# contextlib and typing are imported only where a command needs them
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from pyrt.runtime.runtime import Runtime

    _Opt = tuple[str, str, Any]  # (dest, kind, default)

VERSION = "0.1.0"
COMMIT = "dev"
SPEC_VERSION = "1.2.0"
DEFAULT_ROOT = "/run/pyrt-runc"


class UsageError(Exception):
    """Bad command line: reported like any error, exit status 1."""


# ------------------------------------------------------------------ signals


def parse_signal(text: str) -> int:
    """A signal from '9', 'KILL', 'SIGKILL', 'sigkill', 'RTMIN+1'; UsageError otherwise."""
    import signal

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
#
# A small hand-written parser (argparse alone costs ~15 ms of imports per command). It
# takes what runc's callers pass: --flag value, --flag=value, Go's single-dash -flag,
# --bool=true/false, short aliases (-b, -d, -t, ...), options before or between the
# positionals, "--" to end the options, and exec/ps trailing arguments verbatim.


class Args:
    """The parsed command line: one attribute per flag (dashes as underscores)."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    def __getattr__(self, name: str) -> Any:  # only reached for attributes never set
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"Args({self.__dict__!r})"


# kinds: "bool", "str", "int" (any integer), "nonneg" (integer >= 0), "append" (list);
# an option is _Opt: (dest, kind, default)

_GLOBAL: dict[str, _Opt] = {
    "root": ("root", "str", DEFAULT_ROOT),
    "log": ("log", "str", None),
    "log-format": ("log_format", "str", "text"),
    "debug": ("debug", "bool", False),
    "systemd-cgroup": ("systemd_cgroup", "bool", False),
    "rootless": ("rootless", "str", "auto"),
    "criu": ("criu", "str", None),
    "version": ("version", "bool", False),
    "v": ("version", "bool", False),
    "help": ("help", "bool", False),
    "h": ("help", "bool", False),
}

_CREATE: dict[str, _Opt] = {
    "bundle": ("bundle", "str", "."),
    "b": ("bundle", "str", "."),
    "console-socket": ("console_socket", "str", None),
    "pid-file": ("pid_file", "str", None),
    "no-pivot": ("no_pivot", "bool", False),
    "no-new-keyring": ("no_new_keyring", "bool", False),
    "preserve-fds": ("preserve_fds", "nonneg", 0),
}

_UPDATE: dict[str, _Opt] = {
    "resources": ("resources", "str", None),
    "r": ("resources", "str", None),
    "cpuset-cpus": ("cpuset_cpus", "str", None),
    "cpuset-mems": ("cpuset_mems", "str", None),
}
_INT_FLAGS = (
    "memory", "memory-reservation", "memory-swap", "pids-limit", "cpu-share", "cpu-quota",
    "cpu-period", "blkio-weight", "cpu-rt-period", "cpu-rt-runtime",
)  # fmt: skip
for _f in _INT_FLAGS:
    _UPDATE[_f] = (_f.replace("-", "_"), "int", None)

# command -> (options, positionals (a trailing "?" marks an optional one, default after
# "="), the name of a list that takes everything after the positionals, or None)
_COMMANDS: dict[str, tuple[dict[str, _Opt], tuple[str, ...], str | None]] = {
    "create": (_CREATE, ("container_id",), None),
    "run": (
        {
            **_CREATE,
            "detach": ("detach", "bool", False),
            "d": ("detach", "bool", False),
            "keep": ("keep", "bool", False),
            "no-subreaper": ("no_subreaper", "bool", False),
        },
        ("container_id",),
        None,
    ),  # fmt: skip
    "start": ({}, ("container_id",), None),
    "state": ({}, ("container_id",), None),
    "pause": ({}, ("container_id",), None),
    "resume": ({}, ("container_id",), None),
    "kill": (
        {"all": ("all", "bool", False), "a": ("all", "bool", False)},
        ("container_id", "signal?=SIGTERM"),
        None,
    ),  # fmt: skip
    "delete": (
        {"force": ("force", "bool", False), "f": ("force", "bool", False)},
        ("container_id",),
        None,
    ),  # fmt: skip
    "exec": (
        {
            "process": ("process", "str", None),
            "p": ("process", "str", None),
            "tty": ("tty", "bool", False),
            "t": ("tty", "bool", False),
            "detach": ("detach", "bool", False),
            "d": ("detach", "bool", False),
            "pid-file": ("pid_file", "str", None),
            "console-socket": ("console_socket", "str", None),
            "cwd": ("cwd", "str", None),
            "env": ("env", "append", None),
            "e": ("env", "append", None),
            "user": ("user", "str", None),
            "u": ("user", "str", None),
            "additional-gids": ("additional_gids", "append", None),
            "g": ("additional_gids", "append", None),
            "cap": ("cap", "append", None),
            "c": ("cap", "append", None),
            "no-new-privs": ("no_new_privs", "bool", False),
            "preserve-fds": ("preserve_fds", "nonneg", 0),
            "process-label": ("process_label", "str", None),
            "apparmor": ("apparmor", "str", None),
            "cgroup": ("cgroup", "append", None),
            "ignore-paused": ("ignore_paused", "bool", False),
        },
        ("container_id",),
        "args",
    ),  # fmt: skip
    "ps": (
        {"format": ("format", "str", "table"), "f": ("format", "str", "table")},
        ("container_id",),
        "ps_args",
    ),  # fmt: skip
    "list": (
        {
            "format": ("format", "str", "table"),
            "f": ("format", "str", "table"),
            "quiet": ("quiet", "bool", False),
            "q": ("quiet", "bool", False),
        },
        (),
        None,
    ),  # fmt: skip
    "spec": (
        {
            "bundle": ("bundle", "str", "."),
            "b": ("bundle", "str", "."),
            "rootless": ("spec_rootless", "bool", False),
        },
        (),
        None,
    ),  # fmt: skip
    "features": ({}, (), None),
    "update": (_UPDATE, ("container_id",), None),
    "events": (
        {"stats": ("stats", "bool", False), "interval": ("interval", "str", "5s")},
        ("container_id",),
        None,
    ),  # fmt: skip
    "checkpoint": ({}, (), "rest"),
    "restore": ({}, (), "rest"),
}

_CHOICES = {"log_format": ("text", "json"), "format": ("table", "json")}
_TRUE = ("true", "1", "t")
_FALSE = ("false", "0", "f")

USAGE = (
    "usage: pyrt-runc [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND\n"
    "commands: create run start state kill delete exec ps list pause resume spec features\n"
    "          update events\n"
)


def _defaults(opts: dict[str, _Opt]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dest, kind, default in opts.values():
        out[dest] = [] if kind == "append" else default
    return out


def _take_option(
    where: str, argv: list[str], i: int, opts: dict[str, _Opt], ns: dict[str, Any]
) -> int | None:
    """Parse the option at argv[i] into ns; the index after it, or None if not an option."""
    a = argv[i]
    if not a.startswith("-") or a == "-":
        return None
    body = a[2:] if a.startswith("--") else a[1:]
    name, eq, value = body.partition("=")
    spec = opts.get(name)
    if spec is None:
        raise UsageError(f"{where}: unknown flag {a.partition('=')[0]!r}")
    dest, kind, _ = spec
    if kind == "bool":
        if not eq or value.lower() in _TRUE:
            ns[dest] = True
        elif value.lower() in _FALSE:
            ns[dest] = False
        else:
            raise UsageError(f"{where}: flag --{name}: expected true or false, got {value!r}")
        return i + 1
    if not eq:
        if i + 1 >= len(argv):
            raise UsageError(f"{where}: flag --{name} needs a value")
        value = argv[i + 1]
        i += 1
    if kind in ("int", "nonneg"):
        try:
            n = int(value)
        except ValueError:
            raise UsageError(f"{where}: flag --{name}: not an integer: {value!r}") from None
        if kind == "nonneg" and n < 0:
            raise UsageError(f"{where}: flag --{name}: must not be negative: {n}")
        ns[dest] = n
    elif kind == "append":
        ns[dest].append(value)
    else:
        choices = _CHOICES.get(dest)
        if choices is not None and value not in choices:
            raise UsageError(
                f"{where}: flag --{name}: expected one of {', '.join(choices)}, got {value!r}"
            )
        ns[dest] = value
    return i + 1


def parse_args(argv: Sequence[str]) -> Args:
    """The command line as an Args (command None when only global flags were given)."""
    args = list(argv)
    ns = _defaults(_GLOBAL)
    ns["command"] = None
    i = 0
    while i < len(args):
        if args[i] == "--":
            i += 1
            break
        nxt = _take_option("pyrt-runc", args, i, _GLOBAL, ns)
        if nxt is None:
            break
        i = nxt
    if i >= len(args) or ns["help"] or ns["version"]:
        return Args(**ns)
    command = args[i]
    entry = _COMMANDS.get(command)
    if entry is None:
        raise UsageError(f"unknown command {command!r} (commands: {', '.join(_COMMANDS)})")
    opts, positionals, rest_name = entry
    ns["command"] = command
    ns.update(_defaults(opts))
    where = f"pyrt-runc {command}"
    got: list[str] = []
    rest: list[str] = []
    i += 1
    options_done = False
    while i < len(args):
        a = args[i]
        if rest_name is not None and len(got) == len(positionals):
            rest = args[i:]  # exec/ps: everything after the id, verbatim
            break
        if not options_done and a == "--":
            options_done = True
            i += 1
            continue
        if not options_done and a in ("-h", "--help"):
            ns["help"] = True
            i += 1
            continue
        nxt = None if options_done else _take_option(where, args, i, opts, ns)
        if nxt is not None:
            i = nxt
            continue
        if len(got) >= len(positionals):
            raise UsageError(f"{where}: unexpected argument {a!r}")
        got.append(a)
        i += 1
    for k, pos in enumerate(positionals):
        name, optional, default = pos.partition("?=")
        if k < len(got):
            ns[name] = got[k]
        elif optional:
            ns[name] = default
        elif not ns["help"]:
            raise UsageError(f"{where}: a {name.replace('_', ' ')} is needed")
    if rest_name is not None:
        ns[rest_name] = rest
    return Args(**ns)


# ------------------------------------------------------------------ logging


class _Log:
    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path = path
        self.fmt = fmt
        self.debug_on = debug

    def _emit(self, level: str, msg: str) -> None:
        if self.fmt == "json":
            import json

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


def _runtime(args: Args) -> Runtime:
    from pyrt.runtime.runtime import Runtime

    return Runtime(args.root)


def _print_json(obj: Any) -> None:
    from pyrt.runtime.state import json_dumps

    sys.stdout.write(json_dumps(obj, indent=2) + "\n")


class _Forwarder:
    """Forward the usual terminating signals to a foreground container process."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")

    def __init__(self) -> None:
        import signal

        self.pid = 0
        for name in self.SIGNALS:
            signal.signal(getattr(signal, name), self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.pid > 0:
            from pyrt.runtime.state import suppress

            with suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def started(self, pid: int) -> None:
        self.pid = pid


def cmd_create(args: Args) -> int:
    _runtime(args).create(
        args.container_id, args.bundle, console_socket=args.console_socket,
        pid_file=args.pid_file, no_pivot=args.no_pivot, preserve_fds=args.preserve_fds,
    )  # fmt: skip
    return 0


def cmd_run(args: Args) -> int:
    fwd = None if args.detach else _Forwarder()
    return _runtime(args).run(
        args.container_id, args.bundle, console_socket=args.console_socket,
        pid_file=args.pid_file, no_pivot=args.no_pivot, preserve_fds=args.preserve_fds,
        detach=args.detach, keep=args.keep, on_started=fwd.started if fwd else None,
    )  # fmt: skip


def cmd_start(args: Args) -> int:
    _runtime(args).start(args.container_id)
    return 0


def cmd_state(args: Args) -> int:
    _print_json(_runtime(args).state(args.container_id))
    return 0


def cmd_kill(args: Args) -> int:
    sig = parse_signal(args.signal)
    _runtime(args).kill(args.container_id, sig, all=args.all)
    return 0


def cmd_delete(args: Args) -> int:
    _runtime(args).delete(args.container_id, force=args.force)
    return 0


def cmd_pause(args: Args) -> int:
    _runtime(args).pause(args.container_id)
    return 0


def cmd_resume(args: Args) -> int:
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


def build_exec_process(args: Args, base: dict[str, Any]) -> dict[str, Any]:
    """The process.json of an exec: from --process, or the container's process + flags."""
    import json

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


def cmd_exec(args: Args) -> int:
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


def cmd_ps(args: Args) -> int:
    import json

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


def cmd_list(args: Args) -> int:
    import json

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


def cmd_spec(args: Args) -> int:
    import json

    from pyrt.runtime.default_spec import default_spec
    from pyrt.runtime.state import atomic_write

    path = os.path.join(args.bundle, "config.json")
    if os.path.lexists(path):
        raise UsageError(f"File {path} exists. Remove it first")
    if not os.path.isdir(args.bundle):
        raise UsageError(f"bundle {args.bundle}: not a directory")
    spec = default_spec(rootless=args.spec_rootless)
    data = (json.dumps(spec, indent="\t") + "\n").encode()
    atomic_write(path, data, 0o666 & ~_umask(), durable=True)
    return 0


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def cmd_features(args: Args) -> int:
    from pyrt.runtime.runtime import Runtime

    _print_json(Runtime(args.root).features())
    return 0


def resources_from_flags(args: Args) -> dict[str, Any]:
    """The linux.resources object of `update`: from --resources (file or '-') or flags."""
    import json

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


def cmd_update(args: Args) -> int:
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


def cmd_events(args: Args) -> int:
    import json

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


def cmd_unsupported(args: Args) -> int:
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
        args = parse_args(raw)
        log = _Log(args.log, args.log_format, args.debug)
        if args.help:
            sys.stdout.write(USAGE)
            return 0
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
