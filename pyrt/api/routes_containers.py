"""Container routes of the Engine API (moby swagger v1.44).

POST /containers/create, GET /containers/json, GET /containers/{id}/json, POST start/stop/
kill/restart/pause/unpause/wait/rename/resize/attach, DELETE /containers/{id}, GET logs,
exec (POST /containers/{id}/exec, POST /exec/{id}/start|resize, GET /exec/{id}/json),
GET top, GET stats, GET/HEAD/PUT archive, GET export, GET changes, POST /commit.

Each route parses, calls the container service (req.app.engine.containers), and formats.
Streams of a container without a TTY are multiplexed: 8-byte frames [stream, 0, 0, 0,
size as big-endian uint32] then the data (stream 1 stdout, 2 stderr); with a TTY raw.

Attach before start (what `docker run` and `docker start -a` do): the connection is taken
over at once, stdin the client sends meanwhile stays in the socket's buffer, and once the
container has started its output is followed from the json-file log from the start time
on (so nothing written before the shim was reachable is lost); stdin goes through the shim.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from pyrt.api.params import (
    get_field,
    parse_json_body,
    query_bool,
    query_filters,
    query_int,
    query_list,
    query_str,
)
from pyrt.api.routing import (
    STREAM_BODY,
    Hijacked,
    Request,
    Response,
    Router,
    StreamResponse,
    empty_response,
    json_response,
)
from pyrt.errors import InvalidArgument, NotFound, PyrtError

RAW_STREAM = "application/vnd.docker.raw-stream"
MUX_STREAM = "application/vnd.docker.multiplexed-stream"
_FRAME = struct.Struct(">BxxxL")
_LIVE = ("running", "paused")


def _svc(req: Request) -> Any:
    return req.app.engine.containers


def frame(stream: int, data: bytes) -> bytes:
    """One multiplexed frame: stream 0 stdin, 1 stdout, 2 stderr."""
    return _FRAME.pack(stream, len(data)) + data


def _out(tty: bool, stream: int, data: bytes) -> bytes:
    return data if tty else frame(stream, data)


# -- create / list / inspect ------------------------------------------------------------------


def create(req: Request) -> Response:
    from pyrt.containers.options import parse_create_body

    name = query_str(req.query, "name") or None
    body = req.json("container create")
    config, host = parse_create_body(body)
    networking = body.get("NetworkingConfig") if isinstance(body, dict) else None
    cid = _svc(req).create(config, host, name, networking_config=networking)
    return json_response({"Id": cid, "Warnings": []}, 201)


def list_containers(req: Request) -> Response:
    q = req.query
    out = _svc(req).list(all=query_bool(q, "all"), filters=query_filters(q),
                         limit=query_int(q, "limit", -1), size=query_bool(q, "size"))
    return json_response(out)


def inspect(req: Request) -> Response:
    svc = _svc(req)
    out = svc.inspect(req.params["id"])
    if query_bool(req.query, "size"):  # SizeRw/SizeRootFs, as the list computes them
        for c in svc.list(all=True, filters={"id": [out["Id"]]}, size=True):
            out["SizeRw"], out["SizeRootFs"] = c["SizeRw"], c["SizeRootFs"]
    return json_response(out)


# -- lifecycle --------------------------------------------------------------------------------


def _signal_param(req: Request) -> str | None:
    from pyrt.containers.options import validate_signal

    sig = query_str(req.query, "signal")
    return validate_signal(sig, "signal") if sig else None


def _timeout_param(req: Request) -> int | None:
    if query_str(req.query, "t") == "":
        return None
    return query_int(req.query, "t")


def start(req: Request) -> Response:
    svc = _svc(req)
    rec = svc.resolve(req.params["id"])
    if rec.state == "running":
        return empty_response(304)
    try:
        svc.start(rec.id)
    except PyrtError:
        if rec.host_config.AutoRemove:  # as docker: a --rm container that cannot start goes
            with contextlib.suppress(PyrtError):  # (the CLI waits for its removal)
                svc.remove(rec.id, force=True, volumes=True)
        raise
    return empty_response(204)


def stop(req: Request) -> Response:
    svc = _svc(req)
    # a bad t or signal is 400 whatever the state, as dockerd reads them first
    timeout, sig = _timeout_param(req), _signal_param(req)
    rec = svc.resolve(req.params["id"])
    if rec.state not in (*_LIVE, "restarting"):
        return empty_response(304)
    svc.stop(rec.id, timeout=timeout, signal=sig)
    return empty_response(204)


def kill(req: Request) -> Response:
    _svc(req).kill(req.params["id"], _signal_param(req) or "SIGKILL")
    return empty_response(204)


def restart(req: Request) -> Response:
    _svc(req).restart(req.params["id"], timeout=_timeout_param(req), signal=_signal_param(req))
    return empty_response(204)


def pause(req: Request) -> Response:
    _svc(req).pause(req.params["id"])
    return empty_response(204)


def unpause(req: Request) -> Response:
    _svc(req).unpause(req.params["id"])
    return empty_response(204)


def wait(req: Request) -> StreamResponse:
    """The status line and headers go out at once; the body when the condition is met."""
    svc = _svc(req)
    condition = query_str(req.query, "condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"condition: '{condition}' is not one of not-running, "
                              "next-exit, removed")
    rec = svc.resolve(req.params["id"])
    done: queue.Queue[dict[str, Any]] = queue.Queue()

    def run() -> None:
        try:
            done.put(svc.wait(rec.id, condition))
        except Exception as e:  # reported in the body: the status line is gone
            done.put({"StatusCode": -1, "Error": {"Message": str(e) or type(e).__name__}})

    threading.Thread(target=run, name=f"pyrt-api-wait-{rec.id[:12]}", daemon=True).start()

    def exited_meanwhile() -> dict[str, Any] | None:
        """next-exit: an exit between the resolve above and the moment the waiting thread
        took its mark would be missed by it (the client starts the container as soon as
        it has the headers): seen here by the record's finish time."""
        if condition != "next-exit":
            return None
        try:
            cur = svc.get_record(rec.id)
        except NotFound:
            return None
        if cur.finished_at != rec.finished_at and cur.state not in (*_LIVE, "restarting"):
            return {"StatusCode": cur.exit_code, "Error": None}
        return None

    def chunks() -> Iterator[bytes]:
        while True:
            try:
                result = done.get(timeout=0.5)
            except queue.Empty:
                if req.client_gone():
                    return  # the waiting thread ends with the container
                late = exited_meanwhile()
                if late is None:
                    continue
                result = late
            yield json.dumps(_without_nulls(result)).encode() + b"\n"
            return

    return StreamResponse(chunks=chunks(), eager=True)


def _without_nulls(view: dict[str, Any]) -> dict[str, Any]:
    """`view` less its null fields, which the API document types object, not nullable
    (wait's Error when there is none)."""
    return {k: v for k, v in view.items() if v is not None}


def remove(req: Request) -> Response:
    _svc(req).remove(req.params["id"], force=query_bool(req.query, "force"),
                     volumes=query_bool(req.query, "v"))
    return empty_response(204)


def rename(req: Request) -> Response:
    name = query_str(req.query, "name")
    if not name:
        raise InvalidArgument("name: the new name is required")
    _svc(req).rename(req.params["id"], name)
    return empty_response(204)


def resize(req: Request) -> Response:
    h = query_int(req.query, "h", 0, minimum=0)
    w = query_int(req.query, "w", 0, minimum=0)
    _svc(req).resize(req.params["id"], h, w)
    return Response(200, b"", None)


# -- logs -------------------------------------------------------------------------------------


def _tail(req: Request) -> int | None:
    text = query_str(req.query, "tail", "all")
    if text in ("all", ""):
        return None
    n = query_int(req.query, "tail")
    return None if n < 0 else n


def _streams(req: Request) -> tuple[bool, bool]:
    out, err = query_bool(req.query, "stdout"), query_bool(req.query, "stderr")
    if not (out or err):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    return out, err


def logs(req: Request) -> StreamResponse:
    svc = _svc(req)
    q = req.query
    out, err = _streams(req)
    rec = svc.resolve(req.params["id"])
    tty = bool(rec.config.Tty)
    since = query_str(q, "since") or None
    until = query_str(q, "until") or None
    if since in ("0",):
        since = None
    if until in ("0",):
        until = None
    follow = query_bool(q, "follow")
    if not follow:
        entries = svc.logs(rec.id, tail=_tail(req), since=since, until=until,
                           timestamps=query_bool(q, "timestamps"), stdout=out, stderr=err)
    else:
        # the service's follow ends only with the container: the reader is run here with a
        # stop that also sees the client leave (`docker logs -f` then ^C on a quiet one)
        from pyrt.containers.logs import read_logs

        def stop() -> bool:
            if req.client_gone():
                return True
            try:
                return bool(svc.get_record(rec.id).state not in (*_LIVE, "restarting"))
            except NotFound:
                return True

        entries = read_logs(svc.paths(rec.id).log, follow=True, tail=_tail(req), since=since,
                            until=until, timestamps=query_bool(q, "timestamps"), stdout=out,
                            stderr=err, stop=stop, poll_interval=0.05,
                            wait=svc.exit_waiter(rec.id))

    def chunks() -> Iterator[bytes]:
        for e in entries:
            yield _out(tty, 1 if e.stream == "stdout" else 2, e.text)

    return StreamResponse(chunks=chunks(), content_type=RAW_STREAM if tty else MUX_STREAM,
                          eager=True)


# -- hijacked streams -------------------------------------------------------------------------


def _take_buffered(h: Hijacked) -> bytes:
    """What the server had already read past the request head (stdin the client sent with
    it), without blocking. Called once, in the handler's thread, right after the hijack:
    from then on stdin is read from the socket itself, so no thread ever blocks holding
    the server's reader (whose close at the end of the request would then hang)."""
    reader: Any = h.rfile
    try:
        h.sock.setblocking(False)
        try:
            data = reader.read1(65536)
        finally:
            h.sock.setblocking(True)
    except (OSError, ValueError):
        return b""
    return bytes(data or b"")


def _end(h: Hijacked) -> None:
    """Both directions shut: the client sees the end, a stdin thread wakes up with EOF."""
    with contextlib.suppress(OSError):
        h.wfile.flush()
    with contextlib.suppress(OSError):
        h.sock.shutdown(socket.SHUT_RDWR)


DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
_CTRL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(text: str, what: str = "detachKeys") -> bytes:
    """docker's detach keys: "ctrl-p,ctrl-q", "a,ctrl-x"... -> the byte sequence."""
    out = bytearray()
    for key in text.split(","):
        k = key.strip()
        if len(k) == 1:
            out.append(ord(k))
        elif k.lower().startswith("ctrl-") and len(k) == 6:
            c = k[5].lower()
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in _CTRL:
                out.append(_CTRL[c])
            else:
                raise InvalidArgument(f"{what}: invalid key {k!r}")
        else:
            raise InvalidArgument(f"{what}: invalid key {k!r} (a character or ctrl-<value>, "
                                  "comma-separated)")
    if not out:
        raise InvalidArgument(f"{what}: no key given")
    return bytes(out)


class _Detacher:
    """Spots the detach sequence in the client's stdin, across reads: what could be its
    start is held back until the next bytes tell."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""
        self.detached = threading.Event()

    def feed(self, data: bytes) -> bytes:
        """The bytes to forward; sets `detached` (and forwards nothing after the keys)."""
        out = bytearray()
        buf = self.held + data
        self.held = b""
        i = 0
        while i < len(buf):
            rest = buf[i:i + len(self.keys)]
            if rest == self.keys:
                self.detached.set()
                return bytes(out)
            if self.keys.startswith(rest) and i + len(rest) == len(buf):
                self.held = bytes(rest)  # a possible start at the end: wait for more
                return bytes(out)
            out.append(buf[i])
            i += 1
        return bytes(out)


def _pump_stdin(h: Hijacked, pending: bytes, write: Callable[[bytes], None],
                close: Callable[[], None], detacher: _Detacher | None = None,
                on_detach: Callable[[], None] | None = None, *,
                close_on_detach: bool = False) -> threading.Thread:
    """Client -> container stdin in a thread (`pending` first), until the client's EOF or
    _end(); with a detacher, until its keys too (then a container's stdin stays open, as
    docker's; `close_on_detach` for an fd of the pump's own)."""

    def run() -> None:
        detached = False
        try:
            data = pending
            while True:
                if data:
                    fwd = detacher.feed(data) if detacher is not None else data
                    if fwd:
                        write(fwd)
                    if detacher is not None and detacher.detached.is_set():
                        detached = True
                        if on_detach is not None:
                            on_detach()
                        return
                data = h.sock.recv(65536)
                if not data:
                    break
        except (OSError, PyrtError, ValueError):
            pass
        finally:
            if not detached or close_on_detach:
                with contextlib.suppress(OSError, PyrtError, ValueError):
                    close()

    t = threading.Thread(target=run, name="pyrt-api-stdin", daemon=True)
    t.start()
    return t


def _send(h: Hijacked, data: bytes) -> bool:
    try:
        h.wfile.write(data)
        h.wfile.flush()
        return True
    except (OSError, ValueError):
        return False


def _hung_up(h: Hijacked) -> bool:
    """The client closed the connection both ways (a half-close, which the docker CLI does
    when it sends no stdin, is not leaving)."""
    try:
        p = select.poll()
        p.register(h.sock.fileno(), select.POLLHUP | select.POLLERR)
        return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
                   for _, ev in p.poll(0))
    except (OSError, ValueError):
        return True


def _interrupt(att: Any) -> None:
    """Wake a thread blocked reading the attachment's shim socket: shut the socket down
    (closing it would not wake a blocked recv). The Attachment offers no method for this,
    so its stream's fd is used (through a dup, which shares the socket)."""
    stream = getattr(att, "_stream", None)
    if stream is None:
        return
    s = socket.socket(fileno=os.dup(stream.fileno()))
    try:
        s.shutdown(socket.SHUT_RDWR)
    finally:
        s.close()


def _close_on_hangup(h: Hijacked, finished: threading.Event, close: Callable[[], None]
                     ) -> None:
    """Call `close` when the client hangs up before `finished` is set (a quiet container
    would otherwise hold the handler until it writes or exits)."""

    def run() -> None:
        while not finished.wait(0.25):
            if _hung_up(h):
                with contextlib.suppress(OSError, PyrtError):
                    close()
                return

    threading.Thread(target=run, name="pyrt-api-hangup", daemon=True).start()


def _started_since(svc: Any, cid: str, before: str) -> Any:
    """The record when the container has started since its start time was `before`; None
    when not (yet); NotFound when it is gone."""
    rec = svc.get_record(cid)
    return rec if rec.started_at and rec.started_at != before else None


def _stdin_when_started(h: Hijacked, pending: bytes, svc: Any, cid: str, before: str,
                        done: threading.Event, detacher: _Detacher) -> None:
    """Once the container has started, forward the client's stdin (what it sent before is
    still in the socket's buffer) through a shim attach; its output is dropped (the
    handler sends the output from the log)."""

    def run() -> None:
        try:
            while _started_since(svc, cid, before) is None:
                if done.wait(0.02):
                    return
            att = svc.attach(cid, stdin=True, stream=True)
        except PyrtError:
            return
        _pump_stdin(h, pending, att.write, att.close_stdin, detacher, lambda: _interrupt(att))
        try:
            for _ in att:
                pass
        except (OSError, PyrtError):
            pass
        finally:
            att.close()

    threading.Thread(target=run, name="pyrt-api-attach-stdin", daemon=True).start()


def attach(req: Request) -> None:
    svc = _svc(req)
    for name in ("stream", "logs", "stdin", "stdout", "stderr"):
        query_bool(req.query, name)  # a bad value is a 400 before the hijack
    keys = parse_detach_keys(query_str(req.query, "detachKeys") or DEFAULT_DETACH_KEYS)
    rec = svc.resolve(req.params["id"])
    tty = bool(rec.config.Tty)
    h = req.hijack(RAW_STREAM if tty else MUX_STREAM)
    pending = _take_buffered(h)
    try:
        _attach_stream(req, svc, rec, h, pending, _Detacher(keys))
    finally:
        _end(h)
    return None


def _attach_stream(req: Request, svc: Any, rec: Any, h: Hijacked, pending: bytes,
                   detacher: _Detacher) -> None:
    from pyrt.containers.logs import read_logs

    q = req.query
    stream, logs_ = query_bool(q, "stream"), query_bool(q, "logs")
    want_in = query_bool(q, "stdin")
    want = {1: query_bool(q, "stdout"), 2: query_bool(q, "stderr")}
    tty = bool(rec.config.Tty)
    if rec.state in _LIVE:
        with svc.attach(rec.id, stdin=want_in, logs=logs_, stream=stream) as att:
            if want_in and rec.config.OpenStdin and stream:
                _pump_stdin(h, pending, att.write, att.close_stdin, detacher,
                            lambda: _interrupt(att))
            finished = threading.Event()
            _close_on_hangup(h, finished, lambda: _interrupt(att))
            try:
                for s, data in att:
                    if want.get(s) and not _send(h, _out(tty, s, data)):
                        break
            except (OSError, PyrtError):
                pass  # closed on the client's hang-up
            finally:
                finished.set()
        return None
    # not running: replay what the log holds (logs=1), then (stream=1) follow the log of the
    # next run from its first byte: the file is made now, so the shim appends to the very
    # file this reader has open, even if the container is removed (--rm) right at its exit
    if logs_:
        for e in svc.logs(rec.id):
            s = 1 if e.stream == "stdout" else 2
            if want[s] and not _send(h, _out(tty, s, e.log)):
                return None
    if not stream:
        return None
    since = time.time()
    log_path = svc.paths(rec.id).log
    with contextlib.suppress(FileExistsError):
        os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640))
    before = rec.started_at
    seen = {"started": False}

    def stop() -> bool:
        if _hung_up(h) or detacher.detached.is_set():
            return True
        try:
            cur = _started_since(svc, rec.id, before)
        except NotFound:
            return True
        if cur is not None:
            seen["started"] = True
            return bool(cur.state not in (*_LIVE, "restarting"))
        return False

    done = threading.Event()
    if want_in and rec.config.OpenStdin:
        _stdin_when_started(h, pending, svc, rec.id, before, done, detacher)
    try:
        # the poll wakes on the exit: `run` waits for this stream's end, not for a poll
        for e in read_logs(log_path, follow=True, since=since, stop=stop,
                           poll_interval=0.02, wait=svc.exit_waiter(rec.id)):
            s = 1 if e.stream == "stdout" else 2
            if want[s] and not _send(h, _out(tty, s, e.log)):
                break
    finally:
        done.set()
    return None


# -- exec -------------------------------------------------------------------------------------


def exec_create(req: Request) -> Response:
    eid = _svc(req).exec_create(req.params["id"], req.json("exec create"))
    return json_response({"Id": eid}, 201)


def _console_size(body: Any) -> tuple[int, int] | None:
    size = get_field(body, "ConsoleSize", list, what="exec start")
    if size is None:
        return None
    if (len(size) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in size)):
        raise InvalidArgument("exec start: ConsoleSize must be [height, width]")
    return int(size[0]), int(size[1])


def exec_start(req: Request) -> Response | None:
    svc = _svc(req)
    body = parse_json_body(req.body(), "exec start", allow_empty=True)
    if body is None:
        body = {}
    detach = bool(get_field(body, "Detach", bool, False, what="exec start"))
    get_field(body, "Tty", bool, False, what="exec start")  # the exec's own Tty decides
    size = _console_size(body)
    eid = req.params["id"]
    if detach:
        svc.exec_start(eid, detach=True, console_size=size)
        return Response(200, b"", None)
    tty = bool(svc.exec_inspect(eid)["ProcessConfig"]["tty"])
    hijacked: list[Hijacked] = []

    def send_headers() -> None:
        # before the spawn, as dockerd: output sent right behind the headers would land in
        # the client's HTTP read buffer, where docker-py (reading the raw socket) misses it
        hijacked.append(req.hijack(RAW_STREAM if tty else MUX_STREAM))

    try:
        run = svc.exec_start(eid, console_size=size, before_spawn=send_headers)
    except PyrtError as e:
        if not hijacked:
            raise  # an HTTP error: nothing was sent yet
        # the headers are out: the error goes on the stream, as dockerd writes it
        _send(hijacked[0], _out(tty, 1, f"{e}\r\n".encode()))
        _end(hijacked[0])
        return None
    try:
        h = hijacked[0]
        try:
            keys = run.instance.config.DetachKeys or DEFAULT_DETACH_KEYS
            detacher = _Detacher(parse_detach_keys(keys, "DetachKeys"))
            if _exec_stream(h, _take_buffered(h), run, tty, detacher):
                with contextlib.suppress(TimeoutError, PyrtError):
                    svc.exec_wait(eid, timeout=30)  # an inspect right after sees the exit code
        finally:
            _end(h)
    finally:
        run.close()
    return None


def _exec_stream(h: Hijacked, pending: bytes, run: Any, tty: bool, detacher: _Detacher
                 ) -> bool:
    """The process's output to the client until its end (True), or until the client
    left (False)."""
    if tty:
        master = os.dup(run.pty)

        def write_pty(data: bytes) -> None:
            view = memoryview(data)
            while view:
                n = os.write(master, view)
                view = view[n:]

        _pump_stdin(h, pending, write_pty, lambda: os.close(master), detacher,
                    close_on_detach=True)
        fds = {run.pty: 1}
    else:
        if run.stdin is not None:
            fd_in = run.stdin
            run.stdin = None  # the pump owns it now

            def write_in(data: bytes) -> None:
                view = memoryview(data)
                while view:
                    n = os.write(fd_in, view)
                    view = view[n:]

            _pump_stdin(h, pending, write_in, lambda: os.close(fd_in), detacher,
                        close_on_detach=True)
        fds = {fd: s for fd, s in ((run.stdout, 1), (run.stderr, 2)) if fd is not None}
    while fds:
        ready, _, _ = select.select(list(fds), [], [], 0.25)
        if detacher.detached.is_set() or (not ready and _hung_up(h)):
            return False  # the client left or detached: the process goes on, as with docker
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the pty's other side is gone
                data = b""
            if not data:
                del fds[fd]
                continue
            if not _send(h, _out(tty, fds[fd], data)):
                return False
    return True


def exec_resize(req: Request) -> Response:
    h = query_int(req.query, "h", 0, minimum=0)
    w = query_int(req.query, "w", 0, minimum=0)
    _svc(req).exec_resize(req.params["id"], h, w)
    return Response(200, b"", None)


def exec_inspect(req: Request) -> Response:
    # ExitCode stays null until the exec has one, as dockerd sends it (the API document
    # says integer): docker-py's exec_run(detach=True) reads it at once, by index
    return json_response(_svc(req).exec_inspect(req.params["id"]))


# -- top / stats ------------------------------------------------------------------------------


def top(req: Request) -> Response:
    ps_args = query_str(req.query, "ps_args") or "-ef"
    return json_response(_svc(req).top(req.params["id"], ps_args))


def stats(req: Request) -> Response | StreamResponse:
    stream = query_bool(req.query, "stream", True)
    one_shot = query_bool(req.query, "one-shot")
    if one_shot and stream:
        raise InvalidArgument("one-shot: only valid with stream=false")
    svc = _svc(req)
    if not stream:
        return json_response(svc.stats(req.params["id"]))
    samples = svc.stats(req.params["id"], stream=True)

    def chunks() -> Iterator[bytes]:
        for s in samples:
            yield json.dumps(s).encode() + b"\n"

    return StreamResponse(chunks=chunks(), eager=True)


# -- archive / export / changes / commit ------------------------------------------------------


def _path_param(req: Request) -> str:
    path = query_str(req.query, "path")
    if not path:
        raise InvalidArgument("path: a path in the container is required")
    return path


def _stat_header(st: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(st).encode()).decode()


def archive_head(req: Request) -> Response:
    st = _svc(req).stat_path(req.params["id"], _path_param(req))
    return Response(200, b"", None, {"X-Docker-Container-Path-Stat": _stat_header(st)})


def archive_get(req: Request) -> StreamResponse:
    st, chunks = _svc(req).get_archive(req.params["id"], _path_param(req))
    return StreamResponse(chunks=chunks, content_type="application/x-tar",
                          headers={"X-Docker-Container-Path-Stat": _stat_header(st)})


def archive_put(req: Request) -> Response:
    q = req.query
    _svc(req).put_archive(req.params["id"], _path_param(req), req.stream(),
                          no_overwrite_dir_non_dir=query_bool(q, "noOverwriteDirNonDir"),
                          copy_uid_gid=query_bool(q, "copyUIDGID"))
    return Response(200, b"", None)


def export(req: Request) -> StreamResponse:
    chunks = _svc(req).export(req.params["id"])
    # what the API document (and dockerd, by Go's sniffing) gives for an export
    return StreamResponse(chunks=chunks, content_type="application/octet-stream")


def changes(req: Request) -> Response:
    return json_response(_svc(req).changes(req.params["id"]))


def commit(req: Request) -> Response:
    q = req.query
    container = query_str(q, "container")
    if not container:
        raise InvalidArgument("container: the container to commit is required")
    body = parse_json_body(req.body(), "commit", allow_empty=True)
    repo, tag = query_str(q, "repo"), query_str(q, "tag")
    if tag and not repo:
        raise InvalidArgument("tag: a tag needs a repo")
    repo_tag = (f"{repo}:{tag}" if tag else repo) or None
    image_id = _svc(req).commit(container, repo_tag=repo_tag, author=query_str(q, "author"),
                                message=query_str(q, "comment"),
                                changes=query_list(q, "changes"),
                                pause=query_bool(q, "pause", True), config=body or None)
    return json_response({"Id": image_id}, 201)


def prune(req: Request) -> Response:
    """POST /containers/prune: remove the stopped containers (created, exited, dead) that
    match the filters (label=..., until=<time>). ContainerService has no prune, so this
    route composes list + remove."""
    from pyrt.containers.logs import parse_time_ns

    filters = query_filters(req.query)
    unknown = sorted(set(filters) - {"label", "until"})
    if unknown:
        raise InvalidArgument(f"filters: invalid filter '{unknown[0]}' for container prune "
                              "(label, until)")
    until: float | None = None
    for v in filters.get("until", []):
        try:
            until = float(v)
        except ValueError:
            until = parse_time_ns(v) / 1e9
    svc = _svc(req)
    flt: dict[str, list[str]] = {"status": ["created", "exited", "dead"]}
    if filters.get("label"):
        flt["label"] = filters["label"]
    deleted: list[str] = []
    reclaimed = 0
    for c in svc.list(all=True, filters=flt, size=True):
        if until is not None and c["Created"] >= until:
            continue
        try:
            svc.remove(c["Id"])
        except PyrtError:
            continue  # started or removed meanwhile: not this prune's to take
        deleted.append(c["Id"])
        reclaimed += int(c.get("SizeRw") or 0)
    return json_response({"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed})


def register(router: Router) -> None:
    router.add("POST", "/containers/create", create)
    router.add("GET", "/containers/json", list_containers)
    router.add("GET", "/containers/{id}/json", inspect)
    router.add("POST", "/containers/{id}/start", start)
    router.add("POST", "/containers/{id}/stop", stop)
    router.add("POST", "/containers/{id}/kill", kill)
    router.add("POST", "/containers/{id}/restart", restart)
    router.add("POST", "/containers/{id}/pause", pause)
    router.add("POST", "/containers/{id}/unpause", unpause)
    router.add("POST", "/containers/{id}/wait", wait)
    router.add("DELETE", "/containers/{id}", remove)
    router.add("POST", "/containers/{id}/rename", rename)
    router.add("POST", "/containers/{id}/resize", resize)
    router.add("GET", "/containers/{id}/logs", logs)
    router.add("POST", "/containers/{id}/attach", attach)
    router.add("POST", "/containers/{id}/exec", exec_create)
    router.add("POST", "/exec/{id}/start", exec_start)
    router.add("POST", "/exec/{id}/resize", exec_resize)
    router.add("GET", "/exec/{id}/json", exec_inspect)
    router.add("GET", "/containers/{id}/top", top)
    router.add("GET", "/containers/{id}/stats", stats)
    router.add("HEAD", "/containers/{id}/archive", archive_head)
    router.add("GET", "/containers/{id}/archive", archive_get)
    router.add("PUT", "/containers/{id}/archive", archive_put, max_body=STREAM_BODY)
    router.add("GET", "/containers/{id}/export", export)
    router.add("GET", "/containers/{id}/changes", changes)
    router.add("POST", "/commit", commit)
    router.add("POST", "/containers/prune", prune)


__all__ = ["DEFAULT_DETACH_KEYS", "MUX_STREAM", "RAW_STREAM", "frame", "parse_detach_keys",
           "register"]
