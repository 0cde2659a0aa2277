"""Container commands: run, create, ps, logs, exec, start, stop, restart, kill, rm, wait,
rename, pause, unpause, inspect, top, stats, cp, diff, export, commit, port.

`run` does what docker's client does: create (on "No such image": "Unable to find image
'x:latest' locally", pull with progress on stderr, create again), attach before start,
start, then stream; with -t on a terminal the local terminal is in raw mode, its size is
sent at start and on every SIGWINCH, and ctrl-p ctrl-q detaches; without -t the signals
the CLI gets are forwarded to the container (docker's --sig-proxy). The exit status is the
container's own (125 when the daemon refuses, 126 cannot invoke, 127 not found)."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
from collections.abc import Callable

from pyrt.cli import EXIT_DAEMON, STATE, CLIError, client, fail, report, write_archive
from pyrt.cli.output import human_size, iso_time, print_rows, short_id, since
from pyrt.cli.system import parse_filters
from pyrt.errors import NotFound, PyrtError

# typing costs ~5 ms of imports on every CLI command: annotations only need it for mypy
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q


def _parse_detach_keys(spec: str | None) -> bytes:
    if not spec:
        return DETACH_KEYS
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if key.startswith("ctrl-") and len(key) == 6:
            c = key[5]
            if c.isalpha() or c in "@[\\]^_":
                out.append(ord(c.upper()) & 0x1F)
                continue
        elif len(key) == 1:
            out.append(ord(key))
            continue
        fail(f"invalid detach keys {spec!r}: {key!r} is not ctrl-<letter> or one character",
             125)
    return bytes(out)


def exit_code_of_start_error(exc: BaseException) -> int:
    """docker's statuses for a start that fails: 127 not found, 126 cannot invoke."""
    text = str(exc).lower()
    if "no such file" in text or "not found" in text and "executable" in text:
        return 127
    if "permission denied" in text or "cannot invoke" in text or "exec format" in text:
        return 126
    return 125


def build_config(image: str, command: list[str], *, env: list[str] | None = None,
                 env_file: list[str] | None = None, workdir: str | None = None,
                 user: str | None = None, entrypoint: str | None = None,
                 tty: bool = False, interactive: bool = False, labels: list[str] | None = None,
                 hostname: str | None = None, rm: bool = False, restart: str | None = None,
                 volumes: list[str] | None = None, memory: str | None = None,
                 stop_signal: str | None = None, attach: bool = True,
                 mount: list[str] | None = None, tmpfs: list[str] | None = None,
                 volumes_from: list[str] | None = None,
                 network: str | None = None, publish: list[str] | None = None,
                 publish_all: bool = False, ip: str | None = None,
                 network_alias: list[str] | None = None, dns: list[str] | None = None
                 ) -> dict[str, Any]:
    """The POST /containers/create body of docker's flags."""
    envs: list[str] = []
    for path in env_file or []:
        try:
            with open(path) as f:
                for line in f:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        envs.append(line)
        except OSError as e:
            fail(f"open {path}: {e.strerror}", 125)
    for item in env or []:
        if "=" not in item:
            value = os.environ.get(item)
            if value is None:
                continue
            item = f"{item}={value}"
        envs.append(item)
    lbls: dict[str, str] = {}
    for item in labels or []:
        k, _, v = item.partition("=")
        lbls[k] = v
    host: dict[str, Any] = {"AutoRemove": rm}
    if restart:
        name, _, count = restart.partition(":")
        if name not in ("no", "always", "unless-stopped", "on-failure"):
            fail(f"invalid restart policy {restart!r}: expected no, always, unless-stopped "
                 "or on-failure[:max-retries]", 125)
        host["RestartPolicy"] = {"Name": name, "MaximumRetryCount": int(count or 0)}
    if volumes:
        host["Binds"] = list(volumes)
    if mount:
        host["Mounts"] = [parse_mount_flag(m) for m in mount]
    for item in tmpfs or []:
        dest, _, opts = item.partition(":")
        host.setdefault("Tmpfs", {})[dest] = opts
    if volumes_from:
        host["VolumesFrom"] = list(volumes_from)
    if memory:
        host["Memory"] = parse_bytes(memory)
    config: dict[str, Any] = {
        "Image": image, "Cmd": command or None, "Env": envs, "Tty": tty,
        "OpenStdin": interactive, "StdinOnce": interactive, "AttachStdin": interactive,
        "AttachStdout": attach, "AttachStderr": attach, "Labels": lbls,
        "HostConfig": host}
    if entrypoint is not None:
        config["Entrypoint"] = [entrypoint] if entrypoint else [""]
    if workdir:
        config["WorkingDir"] = workdir
    if user:
        config["User"] = user
    if hostname:
        config["Hostname"] = hostname
    if stop_signal:
        config["StopSignal"] = stop_signal
    from pyrt.cli.networks import network_options

    net_cfg, net_host, networking = network_options(publish, publish_all, network, ip,
                                                    network_alias, dns)  # fmt: skip
    config.update(net_cfg)
    host.update(net_host)
    if networking:
        config["NetworkingConfig"] = networking
    return config


_MOUNT_KEYS = {"src": "source", "dst": "target", "destination": "target", "ro": "readonly"}


def parse_mount_flag(text: str) -> dict[str, Any]:
    """docker's --mount CSV (type=bind,source=/x,target=/y,readonly,bind-propagation=...,
    volume-nocopy, volume-opt=k=v, volume-label=k=v, volume-driver=..., tmpfs-size=...,
    tmpfs-mode=...) -> the API's Mount object."""
    m: dict[str, Any] = {"Type": "volume"}

    def sub(key: str) -> dict[str, Any]:
        d: dict[str, Any] = m.setdefault(key, {})
        return d

    for field in (f.strip() for f in text.split(",")):
        if not field:
            continue
        key, eq, value = field.partition("=")
        key = _MOUNT_KEYS.get(key.lower(), key.lower())
        flag = value.lower() in ("", "1", "true") if eq else True
        if key == "type":
            m["Type"] = value
        elif key == "source":
            m["Source"] = value
        elif key == "target":
            m["Target"] = value
        elif key == "readonly":
            m["ReadOnly"] = flag
        elif key == "consistency":
            m["Consistency"] = value
        elif key == "bind-propagation":
            sub("BindOptions")["Propagation"] = value
        elif key == "bind-nonrecursive":
            sub("BindOptions")["NonRecursive"] = flag
        elif key == "bind-create-mountpoint":
            sub("BindOptions")["CreateMountpoint"] = flag
        elif key == "volume-nocopy":
            sub("VolumeOptions")["NoCopy"] = flag
        elif key == "volume-label":
            k, _, v = value.partition("=")
            sub("VolumeOptions").setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            sub("VolumeOptions").setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            k, _, v = value.partition("=")
            cfg = sub("VolumeOptions").setdefault("DriverConfig", {})
            cfg.setdefault("Options", {})[k] = v
        elif key == "tmpfs-size":
            sub("TmpfsOptions")["SizeBytes"] = parse_bytes(value)
        elif key == "tmpfs-mode":
            try:
                sub("TmpfsOptions")["Mode"] = int(value, 8)
            except ValueError:
                fail(f"invalid --mount {text!r}: tmpfs-mode {value!r} is not octal", 125)
        else:
            fail(f"invalid --mount {text!r}: unexpected key '{key}'", 125)
    if "Target" not in m:
        fail(f"invalid --mount {text!r}: target is required", 125)
    return m


def parse_bytes(text: str) -> int:
    """docker's RAMInBytes: 512m, 1g, 1024 (binary units)."""
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().removesuffix("b") or "0"
    mult = 1
    if t[-1] in units:
        mult, t = units[t[-1]], t[:-1]
    try:
        return int(float(t) * mult)
    except ValueError:
        fail(f"invalid size {text!r}: expected a number with an optional b, k, m, g unit",
             125)


def _create(c: Any, config: dict[str, Any], name: str | None, quiet_pull: bool = False
            ) -> str:
    try:
        return str(c.create_container(config, name)["Id"])
    except NotFound as e:
        if "image" not in str(e).lower():
            raise
    from pyrt.cli.images import show_progress, split_tag

    image = config["Image"]
    repo, tag = split_tag(image)
    shown = f"{repo}:{tag}" if tag else repo
    sys.stderr.write(f"Unable to find image '{shown}' locally\n")
    msgs = c.pull(repo, tag=tag)
    if quiet_pull:
        for _ in msgs:
            pass
    else:
        show_progress(msgs, out=sys.stderr)
    return str(c.create_container(config, name)["Id"])


class _Terminal:
    """Raw mode on the local terminal for the duration, restored on exit."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved: Any = None

    def __enter__(self) -> _Terminal:
        import termios
        import tty

        self.saved = termios.tcgetattr(self.fd)
        tty.setraw(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        import termios

        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def terminal_size(fd: int) -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


#: after the process is known to have exited, output still arriving is read until the
#: connection is quiet this long (the daemon may keep a hijacked connection open)
DRAIN_QUIET_S = 0.3


def stream_io(sock: socket.socket, rest: bytes, multiplexed: bool, *, stdin: bool,
              tty: bool, detach_keys: bytes, out_fd: int = 1, err_fd: int = 2,
              in_fd: int = 0, wake_fd: int | None = None) -> bool:
    """Pump the hijacked connection: socket -> stdout/stderr (demultiplexed), stdin ->
    socket (half-closed at EOF), until the connection ends, or `wake_fd` is readable (the
    process exited) and the connection has gone quiet. Returns True when the user
    detached."""
    buf = bytearray(rest)
    watched = [sock.fileno()]
    if stdin:
        watched.append(in_fd)
    if wake_fd is not None:
        watched.append(wake_fd)
    draining = False
    matched = 0

    def write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def flush() -> None:
        nonlocal buf
        if not multiplexed:
            if buf:
                write_all(out_fd, bytes(buf))
                buf = bytearray()
            return
        while len(buf) >= 8:
            size = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                return
            kind, data = buf[0], bytes(buf[8:8 + size])
            del buf[:8 + size]
            write_all(err_fd if kind == 2 else out_fd, data)

    flush()
    while True:
        try:
            ready, _, _ = select.select(watched, [], [], DRAIN_QUIET_S if draining else None)
        except InterruptedError:
            continue
        if draining and not ready:
            flush()
            return False
        if wake_fd is not None and wake_fd in ready:
            watched.remove(wake_fd)
            draining = True
        if sock.fileno() in ready:
            data = sock.recv(65536)
            if not data:
                flush()
                return False
            buf += data
            flush()
        if in_fd in ready and stdin:
            data = os.read(in_fd, 65536)
            if not data:
                watched.remove(in_fd)
                stdin = False
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                continue
            if tty and detach_keys:
                send = bytearray()
                for b in data:
                    if b == detach_keys[matched]:
                        matched += 1
                        if matched == len(detach_keys):
                            if send:
                                sock.sendall(bytes(send))
                            return True
                        continue
                    if matched:
                        send += detach_keys[:matched]
                        matched = 0
                    send.append(b)
                data = bytes(send)
            if data:
                sock.sendall(data)


def _attached_session(c: Any, cid: str, sock: socket.socket, rest: bytes, mux: bool, *,
                      interactive: bool, tty: bool, detach_keys: bytes,
                      resize: Callable[[int, int], None],
                      done: Callable[[], Any] | None = None) -> bool:
    """Raw mode + SIGWINCH around stream_io when -t on a terminal. `done` blocks until the
    process has exited; it runs in a thread that wakes stream_io then (and is joined
    before returning, unless the user detached)."""
    import threading

    wake_r, wake_w = os.pipe()
    waiter: threading.Thread | None = None
    failure: list[BaseException] = []
    if done is not None:
        def run_done() -> None:
            try:
                done()
            except BaseException as e:  # re-raised in the calling thread
                failure.append(e)
            finally:
                with contextlib.suppress(OSError):
                    os.write(wake_w, b"x")

        waiter = threading.Thread(target=run_done, name="pyrt-cli-wait", daemon=True)
        waiter.start()
    try:
        detached = _session(sock, rest, mux, interactive=interactive, tty=tty,
                            detach_keys=detach_keys, resize=resize,
                            wake_fd=wake_r if done is not None else None)
        if not detached and waiter is not None:
            waiter.join()
            if failure:
                raise failure[0]
        return detached
    finally:
        if waiter is None or not waiter.is_alive():
            os.close(wake_w)
        os.close(wake_r)


def _session(sock: socket.socket, rest: bytes, mux: bool, *, interactive: bool, tty: bool,
             detach_keys: bytes, resize: Callable[[int, int], None], wake_fd: int | None
             ) -> bool:
    local_tty = tty and sys.stdin.isatty()
    old_handler: Any = None
    if local_tty:
        def on_winch(_sig: int, _frame: Any) -> None:
            size = terminal_size(0)
            if size:
                with contextlib.suppress(PyrtError):
                    resize(*size)

        import signal

        old_handler = signal.signal(signal.SIGWINCH, on_winch)
        on_winch(0, None)
    try:
        if local_tty:
            with _Terminal(0):
                return stream_io(sock, rest, mux, stdin=interactive, tty=True,
                                 detach_keys=detach_keys, wake_fd=wake_fd)
        return stream_io(sock, rest, mux, stdin=interactive, tty=tty,
                         detach_keys=detach_keys, wake_fd=wake_fd)
    finally:
        if local_tty:
            import signal

            signal.signal(signal.SIGWINCH, old_handler)
        sock.close()


def run_command(image: str, command: list[str], *, detach: bool, rm: bool, name: str | None,
                interactive: bool, tty: bool, detach_keys: str | None, quiet: bool,
                **create_opts: Any) -> int:
    STATE.error_code = EXIT_DAEMON  # docker run: a failure that is not the container's is 125
    keys = _parse_detach_keys(detach_keys)
    if tty and interactive and not sys.stdin.isatty():
        fail("the input device is not a TTY", 1)
    c = client(timeout=None)
    config = build_config(image, command, tty=tty, interactive=interactive and not detach,
                          rm=rm, attach=not detach, **create_opts)
    cid = _create(c, config, name, quiet_pull=quiet)
    if detach:
        try:
            c.start(cid)
        except PyrtError as e:
            code = exit_code_of_start_error(e)
            raise CLIError(f"Error response from daemon: {e}", code) from None
        sys.stdout.write(cid + "\n")
        return 0
    # docker's --sig-proxy (on by default): without a TTY, the signals the CLI gets go to
    # the container until it has exited
    with proxy_signals(c, cid) if not tty else contextlib.nullcontext():
        return _run_attached(c, cid, rm=rm, interactive=interactive, tty=tty, keys=keys)


#: the signals `run` forwards to its container through the kill API while it is attached
#: without a TTY, as docker's CLI does: those a process can catch, but SIGCHLD, SIGPIPE,
#: SIGURG and the fault signals (csrc/cli/main.c, the C front end, has the same list)
PROXIED_SIGNALS = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGTERM",
                   "SIGCONT", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGXCPU", "SIGXFSZ",
                   "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR")


@contextlib.contextmanager
def proxy_signals(c: Any, cid: str) -> Iterator[None]:
    """Forward PROXIED_SIGNALS to container `cid` (POST /containers/{id}/kill) for the
    duration; a failed forward (the container has exited, say) is ignored, as docker's is."""
    import signal

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(PyrtError, OSError):
            c.kill(cid, signal.Signals(signum).name)

    saved = {num: signal.signal(num, forward)
             for num in (signal.Signals[name] for name in PROXIED_SIGNALS)}
    try:
        yield
    finally:
        for num, old in saved.items():
            signal.signal(num, old)


def _run_attached(c: Any, cid: str, *, rm: bool, interactive: bool, tty: bool, keys: bytes
                  ) -> int:
    """run_command once the container is created: attach, wait, start, the stream."""
    sock, rest, mux = c.attach(cid, stdin=interactive, stdout=True, stderr=True, stream=True)
    waiter = c.wait_begin(cid, "removed" if rm else "next-exit")
    try:
        c.start(cid)
    except PyrtError as e:
        sock.close()
        code = exit_code_of_start_error(e)
        if rm:
            with contextlib.suppress(PyrtError):
                c.remove_container(cid, force=True)
        raise CLIError(f"Error response from daemon: {e}", code) from None
    result: dict[str, Any] = {}
    detached = _attached_session(c, cid, sock, rest, mux, interactive=interactive, tty=tty,
                                 detach_keys=keys,
                                 resize=lambda h, w: c.resize(cid, h, w),
                                 done=lambda: result.update(waiter()))
    if detached:
        sys.stderr.write("\r\nread escape sequence\r\n")
        return 0
    err = (result.get("Error") or {}).get("Message") if result.get("Error") else None
    if err:
        sys.stderr.write(f"Error: {err}\n")
    return int(result.get("StatusCode", 125))


def create_command(image: str, command: list[str], name: str | None, quiet: bool,
                   **create_opts: Any) -> None:
    c = client(timeout=None)
    config = build_config(image, command, **create_opts)
    sys.stdout.write(_create(c, config, name, quiet_pull=quiet) + "\n")


def _ports(ports: list[dict[str, Any]] | None) -> str:
    out = []
    for p in ports or []:
        text = f"{p.get('PrivatePort')}/{p.get('Type', 'tcp')}"
        if p.get("PublicPort"):
            text = f"{p.get('IP', '0.0.0.0')}:{p['PublicPort']}->{text}"
        out.append(text)
    return ", ".join(out)


def container_rows(items: list[dict[str, Any]], no_trunc: bool = False
                   ) -> list[dict[str, Any]]:
    rows = []
    for ct in items:
        cmd = str(ct.get("Command", ""))
        if not no_trunc and len(cmd) > 20:
            cmd = cmd[:19] + "…"
        rows.append({
            "ID": ct["Id"] if no_trunc else short_id(ct["Id"]),
            "Image": ct.get("Image", ""), "Command": f'"{cmd}"',
            "CreatedAt": iso_time(ct.get("Created", 0)),
            "RunningFor": since(ct.get("Created", 0)),
            "Ports": _ports(ct.get("Ports")), "State": ct.get("State", ""),
            "Status": ct.get("Status", ""),
            "Names": ",".join(n.lstrip("/") for n in ct.get("Names") or []),
            "Labels": ",".join(f"{k}={v}" for k, v in (ct.get("Labels") or {}).items()),
            "Size": (f"{human_size(ct.get('SizeRw', 0) or 0)} (virtual "
                     f"{human_size(ct.get('SizeRootFs', 0) or 0)})"),
            "Mounts": ",".join(m.get("Name") or m.get("Source", "")
                               for m in ct.get("Mounts") or []),
            "Networks": ",".join((ct.get("NetworkSettings") or {}).get("Networks") or {}),
        })
    return rows


def ps_command(all_: bool, quiet: bool, filters: list[str] | None, fmt: str | None,
               no_trunc: bool, last: int | None, latest: bool, size: bool) -> None:
    limit = 1 if latest else last
    items = client().containers(all=all_ or bool(limit), filters=parse_filters(filters) or None,
                                size=size, limit=limit)
    cols = [("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("COMMAND", "Command"),
            ("CREATED", "RunningFor"), ("STATUS", "Status"), ("PORTS", "Ports"),
            ("NAMES", "Names")]
    if size:
        cols.append(("SIZE", "Size"))
    print_rows(container_rows(items, no_trunc), cols, fmt, quiet)


def logs_command(cid: str, follow: bool, tail: str | None, timestamps: bool,
                 since_: str | None, until: str | None) -> None:
    c = client(timeout=None)
    try:
        for stream, data in c.logs(cid, follow=follow, tail=tail, timestamps=timestamps,
                                   since=since_, until=until):
            target = sys.stderr.buffer if stream == 2 else sys.stdout.buffer
            target.write(data)
            target.flush()
    except KeyboardInterrupt:
        return


def exec_command(cid: str, command: list[str], *, detach: bool, interactive: bool,
                 tty: bool, env: list[str] | None, user: str | None, workdir: str | None,
                 privileged: bool, detach_keys: str | None) -> int:
    if not command:
        fail("exec: a command is required", 125)
    keys = _parse_detach_keys(detach_keys)
    if tty and interactive and not sys.stdin.isatty():
        fail("the input device is not a TTY", 1)
    c = client(timeout=None)
    body: dict[str, Any] = {"Cmd": command, "Tty": tty, "AttachStdin": interactive and not
                            detach, "AttachStdout": not detach, "AttachStderr": not detach,
                            "Env": list(env or []), "Privileged": privileged}
    if user:
        body["User"] = user
    if workdir:
        body["WorkingDir"] = workdir
    eid = c.exec_create(cid, body)
    if detach:
        c.exec_start_detached(eid)
        return 0
    size = terminal_size(0) if tty and sys.stdin.isatty() else None
    sock, rest, mux = c.exec_start(eid, tty=tty, console_size=size)
    final: dict[str, Any] = {}

    def exited() -> None:
        import time

        while True:
            info = c.exec_inspect(eid)
            # ExitCode too: right after the headers the exec may not have started yet
            if not info.get("Running") and info.get("ExitCode") is not None:
                final.update(info)
                return
            time.sleep(0.1)

    detached = _attached_session(c, cid, sock, rest, mux, interactive=interactive, tty=tty,
                                 detach_keys=keys,
                                 resize=lambda h, w: c.exec_resize(eid, h, w), done=exited)
    if detached:
        sys.stderr.write("\r\nread escape sequence\r\n")
        return 0
    code = final.get("ExitCode")
    return 126 if code is None else int(code)


def each(ids: list[str], action: Callable[[str], Any], echo: bool = True) -> int:
    """Apply `action` to each container as docker does: print the name on success, report
    each failure, exit 1 when any failed."""
    status = 0
    for i in ids:
        try:
            action(i)
        except PyrtError as e:
            report(e)
            status = 1
        else:
            if echo:
                sys.stdout.write(i + "\n")
    return status


def start_command(ids: list[str], attach: bool, interactive: bool,
                  detach_keys: str | None) -> int:
    c = client(timeout=None)
    if not attach and not interactive:
        return each(ids, c.start)
    if len(ids) != 1:
        fail("you cannot start and attach multiple containers at once", 1)
    info = c.inspect_container(ids[0])
    tty = bool((info.get("Config") or {}).get("Tty"))
    sock, rest, mux = c.attach(ids[0], stdin=interactive, stream=True)
    waiter = c.wait_begin(ids[0], "next-exit")
    c.start(ids[0])
    result: dict[str, Any] = {}
    detached = _attached_session(c, ids[0], sock, rest, mux, interactive=interactive, tty=tty,
                                 detach_keys=_parse_detach_keys(detach_keys),
                                 resize=lambda h, w: c.resize(ids[0], h, w),
                                 done=lambda: result.update(waiter()))
    if detached:
        return 0
    return int(result.get("StatusCode", 125))


def wait_command(ids: list[str]) -> int:
    c = client(timeout=None)
    status = 0
    for i in ids:
        try:
            sys.stdout.write(f"{c.wait(i).get('StatusCode')}\n")
        except PyrtError as e:
            report(e)
            status = 1
    return status


def inspect_command(ids: list[str], fmt: str | None, size: bool) -> int:
    from pyrt.cli import inspect_each

    return inspect_each(client().inspect_container, ids, fmt)


def top_command(cid: str, ps_args: list[str]) -> None:
    out = client().top(cid, " ".join(ps_args) or None)
    titles = out.get("Titles") or []
    rows = [dict(zip(titles, p, strict=False)) for p in out.get("Processes") or []]
    print_rows(rows, [(t, t) for t in titles])


def _cpu_percent(s: dict[str, Any]) -> float:
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    d_cpu = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - \
        (pre.get("cpu_usage") or {}).get("total_usage", 0)
    d_sys = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    n = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage")
                                      or []) or 1
    return d_cpu / d_sys * n * 100 if d_sys > 0 and d_cpu > 0 else 0.0


def stats_rows(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for s in samples:
        mem = s.get("memory_stats") or {}
        usage = mem.get("usage", 0) - (mem.get("stats") or {}).get("inactive_file", 0)
        limit = mem.get("limit", 0)
        nets = s.get("networks") or {}
        rx = sum(n.get("rx_bytes", 0) for n in nets.values())
        tx = sum(n.get("tx_bytes", 0) for n in nets.values())
        blk = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
        rd = sum(b.get("value", 0) for b in blk if str(b.get("op", "")).lower() == "read")
        wr = sum(b.get("value", 0) for b in blk if str(b.get("op", "")).lower() == "write")
        rows.append({
            "ID": short_id(s.get("id", "")), "Container": short_id(s.get("id", "")),
            "Name": str(s.get("name", "")).lstrip("/"),
            "CPUPerc": f"{_cpu_percent(s):.2f}%",
            "MemUsage": f"{_bin_size(usage)} / {_bin_size(limit)}",
            "MemPerc": f"{(100 * usage / limit if limit else 0):.2f}%",
            "NetIO": f"{human_size(rx)} / {human_size(tx)}",
            "BlockIO": f"{human_size(rd)} / {human_size(wr)}",
            "PIDs": str((s.get("pids_stats") or {}).get("current", 0)),
        })
    return rows


def _bin_size(n: float) -> str:
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i, v = 0, float(n)
    while v >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return f"{v:.4g}{units[i]}" if i else f"{int(v)}B"


STATS_INTERVAL_S = 1.0


def stats_command(ids: list[str], all_: bool, no_stream: bool, fmt: str | None) -> None:
    """One table (--no-stream), else a table a second until interrupted: redrawn in place
    on a terminal, appended on a pipe. Without ids: the running containers (-a: all),
    looked up again every round, as docker does."""
    import time

    c = client()
    cols = [("CONTAINER ID", "ID"), ("NAME", "Name"), ("CPU %", "CPUPerc"),
            ("MEM USAGE / LIMIT", "MemUsage"), ("MEM %", "MemPerc"), ("NET I/O", "NetIO"),
            ("BLOCK I/O", "BlockIO"), ("PIDS", "PIDs")]
    tty = sys.stdout.isatty()
    try:
        while True:
            wanted = ids or [ct["Id"] for ct in c.containers(all=all_)]
            samples = []
            for i in wanted:
                try:
                    samples.append(c.stats(i))
                except NotFound:
                    if ids:
                        raise
            if tty and not no_stream:
                sys.stdout.write("\x1b[2J\x1b[H")
            print_rows(stats_rows(samples), cols, fmt)
            sys.stdout.flush()
            if no_stream:
                return
            time.sleep(STATS_INTERVAL_S)
    except KeyboardInterrupt:
        return


def diff_command(cid: str) -> None:
    kinds = {0: "C", 1: "A", 2: "D"}
    for ch in client().changes(cid):
        sys.stdout.write(f"{kinds.get(ch.get('Kind', 0), '?')} {ch.get('Path', '')}\n")


def export_command(cid: str, output: str | None) -> None:
    c = client(timeout=None)
    write_archive(output, lambda out: c.export(cid, out))


def commit_command(cid: str, reference: str | None, author: str | None, message: str | None,
                   changes: list[str] | None, pause: bool) -> None:
    from pyrt.cli.images import split_tag

    repo, tag = split_tag(reference) if reference else ("", "")
    sys.stdout.write(client().commit(cid, repo=repo, tag=tag, author=author or "",
                                     comment=message or "", changes=changes,
                                     pause=pause) + "\n")


def port_command(cid: str, private: str | None) -> int:
    info = client().inspect_container(cid)
    ports = ((info.get("NetworkSettings") or {}).get("Ports")) or {}
    want = None
    if private:
        want = private if "/" in private else f"{private}/tcp"
        if want not in ports:
            fail(f"Error: No public port '{want}' published for {cid}", 1)
    for key, bindings in sorted(ports.items()):
        if want and key != want:
            continue
        for b in bindings or []:
            host = b.get("HostIp") or "0.0.0.0"
            line = f"{host}:{b.get('HostPort')}"
            sys.stdout.write(line + "\n" if want else f"{key} -> {line}\n")
    return 0


def _split_cp(arg: str) -> tuple[str | None, str]:
    if ":" in arg and not arg.startswith(("/", ".")):
        ctr, _, path = arg.partition(":")
        if ctr:
            return ctr, path
    return None, arg


def cp_command(src: str, dest: str, archive: bool) -> None:
    """docker cp in both directions (container:path <-> local path; - is a tar stream)."""
    import io
    import tarfile
    import tempfile

    s_ctr, s_path = _split_cp(src)
    d_ctr, d_path = _split_cp(dest)
    if (s_ctr is None) == (d_ctr is None):
        fail("copying between containers or between local paths is not supported: "
             "one side must be container:path", 1)
    c = client(timeout=None)
    if s_ctr is not None:
        if d_path == "-":
            c.get_archive(s_ctr, s_path, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        parent = os.path.dirname(os.path.abspath(d_path)) or "."
        if not os.path.isdir(parent):
            fail(f"destination directory {parent!r} does not exist", 1)
        with tempfile.SpooledTemporaryFile(64 << 20) as buf:
            st = c.get_archive(s_ctr, s_path, buf)
            buf.seek(0)
            with tarfile.open(fileobj=buf, mode="r|*") as tar, \
                    tempfile.TemporaryDirectory(dir=parent, prefix=".pyrt-cp-") as tmp:
                tar.extractall(tmp, filter="tar" if archive else "data")
                top = os.path.join(tmp, str(st.get("name") or os.path.basename(
                    s_path.rstrip("/")) or "."))
                target = d_path
                if os.path.isdir(d_path):
                    target = os.path.join(d_path, os.path.basename(top))
                if os.path.isdir(target) and os.path.isdir(top):
                    for entry in os.listdir(top):
                        os.replace(os.path.join(top, entry), os.path.join(target, entry))
                else:
                    os.replace(top, target)
        return
    assert d_ctr is not None
    if s_path == "-":
        c.put_archive(d_ctr, d_path, sys.stdin.buffer)
        return
    if not os.path.lexists(s_path):
        fail(f"stat {s_path}: no such file or directory", 1)
    try:
        st = c.stat_path(d_ctr, d_path)
        is_dir = bool(int(st.get("mode", 0)) & (1 << 31))
    except NotFound:
        is_dir = False
    if is_dir:
        into, arcname = d_path, os.path.basename(os.path.abspath(s_path))
    else:
        into = os.path.dirname(d_path.rstrip("/")) or "/"
        arcname = os.path.basename(d_path.rstrip("/"))
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        tar.add(s_path, arcname=arcname)
    data.seek(0)
    c.put_archive(d_ctr, into, data, copy_uid_gid=archive)


__all__ = ["PROXIED_SIGNALS", "build_config", "container_rows", "cp_command", "create_command",
           "diff_command", "each", "exec_command", "export_command", "inspect_command",
           "logs_command", "port_command", "proxy_signals", "ps_command", "run_command",
           "start_command", "stats_command", "stats_rows", "stream_io", "top_command",
           "wait_command"]
