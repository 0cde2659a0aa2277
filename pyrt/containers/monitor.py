"""Watching running containers: exits, restart policies, auto-remove, healthchecks.

- One thread per running container sends `wait` to its shim and blocks on the socket
  until the shim answers with the exit record (no polling); the exit is then recorded
  (runtime state and cgroup removed, State updated, `oom` and `die` events) and waiters
  are woken. Closing the engine shuts those sockets down; the containers keep running.
- Restart policies (Docker's): no; on-failure[:N] (a non-zero exit, at most N restarts
  when N > 0); always; unless-stopped. A container a user stopped or killed is not
  restarted. Delays: 100 ms, doubling after each restart, at most 1 minute, back to
  100 ms once a run lasted 10 s. At engine start (reconcile) "always" containers that
  have exited are started again, and "unless-stopped" ones unless a user stopped them -
  Docker's behaviour with live-restore off; on-failure ones are not.
- AutoRemove: the container is removed after its exit (unless it is restarted).
- Healthchecks (the container's Healthcheck, else the image's): CMD runs its argv,
  CMD-SHELL runs `/bin/sh -c` (or the container's Shell), NONE disables. Every
  Interval (default 30 s; StartInterval during StartPeriod when given) a probe runs in the
  container through Runtime.exec, killed after Timeout (default 30 s); exit 0 is a pass.
  Retries (default 3) consecutive failures make it unhealthy; failures during StartPeriod
  don't count. State.Health keeps the last 5 results and `health_status: <status>` is
  published on each change.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from pyrt.errors import PyrtError

if TYPE_CHECKING:
    from pyrt.containers.record import ContainerRecord
    from pyrt.containers.service import ContainerService
    from pyrt.containers.shim_client import ExitStatus

BACKOFF_START = 0.1
BACKOFF_MAX = 60.0
BACKOFF_RESET_AFTER = 10.0
HEALTH_DEFAULT_INTERVAL = 30.0
HEALTH_DEFAULT_TIMEOUT = 30.0
HEALTH_DEFAULT_RETRIES = 3
HEALTH_LOG_KEEP = 5
HEALTH_OUTPUT_MAX = 4096


def should_restart(rec: ContainerRecord, exit_code: int) -> bool:
    """Docker's restart decision after an exit the user did not ask for."""
    if rec.manually_stopped:
        return False
    policy = rec.host_config.RestartPolicy
    if policy.Name in ("always", "unless-stopped"):
        return True
    if policy.Name == "on-failure" and exit_code != 0:
        return policy.MaximumRetryCount == 0 or rec.restart_count < policy.MaximumRetryCount
    return False


class Monitor:
    def __init__(self, service: ContainerService) -> None:
        self.svc = service
        self._lock = threading.Lock()
        self._socks: dict[str, socket.socket] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._restart_cancel: dict[str, threading.Event] = {}
        self._health_stop: dict[str, threading.Event] = {}
        self._backoff: dict[str, float] = {}
        self._started: dict[str, float] = {}
        self._image_health: dict[str, dict[str, Any]] = {}  # image id -> its Healthcheck
        self.closing = False

    # ------------------------------------------------------------------ exits

    def watch(self, cid: str, started_mono: float | None,
              rec: ContainerRecord | None = None) -> None:
        """Watch cid's exit (and run its healthcheck); rec: its record as just written, if
        the caller has it (saves reading it again)."""
        if started_mono is not None:
            self._started[cid] = started_mono
        t = threading.Thread(target=self._watch, args=(cid,), name=f"pyrt-wait-{cid[:12]}",
                             daemon=True)  # fmt: skip
        with self._lock:
            self._threads[cid] = t
        t.start()
        self._start_health(cid, rec)

    def _watch(self, cid: str) -> None:
        try:
            self._run(cid)
        finally:
            # a finished watcher needs no join at close: drop it, or an engine that runs
            # container after container would keep every thread object it ever made
            with self._lock:
                if self._threads.get(cid) is threading.current_thread():
                    del self._threads[cid]

    def _run(self, cid: str) -> None:
        from pyrt.containers.shim_client import (
            ExitStatus,
            ShimClient,
            _check_reply,
            _connect,
            _read_line,
        )

        client = ShimClient(self.svc.paths(cid).shim)
        ex: ExitStatus | None = client.exit_status()
        if ex is None:
            try:
                s = _connect(client.socket_path, None)
            except OSError:
                s = None
            if s is not None:
                with self._lock:
                    self._socks[cid] = s
                try:
                    with contextlib.suppress(OSError):
                        s.sendall(b"wait\n")
                    try:
                        reply = _read_line(s)
                    except OSError:
                        reply = b""
                finally:
                    with self._lock:
                        self._socks.pop(cid, None)
                    s.close()
                if self.closing:
                    return
                if reply:
                    with contextlib.suppress(PyrtError, ValueError):
                        ex = ExitStatus.from_json(json.loads(_check_reply("wait", reply)))
            if ex is None:
                ex = client.exit_status()
            if ex is None:  # the shim went away between its exit file and our read
                with contextlib.suppress(PyrtError, TimeoutError):
                    ex = client.wait(timeout=5)
        if self.closing:
            return
        self.record_exit(cid, ex)

    def record_exit(self, cid: str, ex: ExitStatus | None, *, reconciling: bool = False
                    ) -> None:
        from pyrt.containers.service import now_rfc3339

        svc = self.svc
        self._stop_health(cid)
        with svc._lock(cid):
            rec = svc._row(cid)
            if rec is None:
                return
            if ex is not None:
                code, oom, when = ex.code, ex.oom_killed, ex.time
                error = ""
            else:
                code, oom, when = 255, False, now_rfc3339()
                error = "the container's shim died without an exit record"
            with contextlib.suppress(PyrtError, OSError):
                svc.runtime.delete(cid, force=True)
            removing = rec.state == "removing"
            cols: dict[str, Any] = {"exit_code": code, "oom_killed": int(oom), "pid": 0,
                                    "finished_at": when, "error": error}  # fmt: skip
            restart = False
            if not removing:
                rec.restart_count = rec.restart_count  # as recorded
                restart = not reconciling and should_restart(rec, code)
                cols["state"] = "restarting" if restart else "exited"
            # not synced: after a power loss the shim is gone and reconciling records an
            # exit (255) for a row still "running"; a later synced write carries this one
            svc._update(cid, sync=False, **cols)
            if svc.networks is not None:  # Docker releases the addresses at exit
                svc.networks.teardown(cid)
            if oom:
                svc._publish(rec, "oom")
            svc._publish(rec, "die", exitCode=str(code))
            svc.volumes.publish_mounts(cid, "unmount")
        svc.notify_exit(cid)
        if removing or reconciling:
            return
        if restart:
            started = self._started.get(cid)
            ran = time.monotonic() - started if started is not None else 0.0
            delay = self._backoff.get(cid, BACKOFF_START / 2) * 2
            if ran >= BACKOFF_RESET_AFTER:
                delay = BACKOFF_START
            delay = min(delay, BACKOFF_MAX)
            self._backoff[cid] = delay
            ev = threading.Event()
            with self._lock:
                self._restart_cancel[cid] = ev
            threading.Thread(target=self._restart_later, args=(cid, delay, ev),
                             name=f"pyrt-restart-{cid[:12]}", daemon=True).start()
        elif rec.host_config.AutoRemove and cid not in svc.removed_by_caller:
            # on this watcher thread, which is done with the container: a new thread only
            # added its start to every `run --rm` (called only from _run: reconcile returned)
            self._auto_remove(cid)

    def _restart_later(self, cid: str, delay: float, ev: threading.Event) -> None:
        if ev.wait(delay) or self.closing:
            return
        svc = self.svc
        with svc._lock(cid):
            with self._lock:
                if self._restart_cancel.get(cid) is not ev:
                    return
                self._restart_cancel.pop(cid, None)
            rec = svc._row(cid)
            if rec is None or rec.state != "restarting":
                return
            try:
                svc._start_locked(rec, restart=True)
            except PyrtError as e:
                svc._update(cid, state="exited", error=f"restart failed: {e}")
                svc.notify_exit(cid)

    def _auto_remove(self, cid: str) -> None:
        with contextlib.suppress(PyrtError):
            self.svc.remove(cid, force=True, volumes=True)  # --rm takes anonymous volumes

    def cancel_restart(self, cid: str) -> None:
        with self._lock:
            ev = self._restart_cancel.pop(cid, None)
        if ev is not None:
            ev.set()

    def forget(self, cid: str) -> None:
        self.cancel_restart(cid)
        self._stop_health(cid)
        self._backoff.pop(cid, None)
        self._started.pop(cid, None)

    def close(self) -> None:
        """Stop watching (containers keep running; a new engine re-adopts them)."""
        self.closing = True
        with self._lock:
            socks = list(self._socks.values())
            threads = list(self._threads.values())
            cancels = list(self._restart_cancel.values())
            health = list(self._health_stop.values())
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for ev in cancels + health:
            ev.set()
        for t in threads:
            if t is not threading.current_thread():
                t.join(timeout=5)

    # ------------------------------------------------------------------ health

    def _health_config(self, rec: ContainerRecord) -> dict[str, Any] | None:
        hc = rec.config.Healthcheck
        img = self._image_health.get(rec.image_id)
        if img is None:  # an image id names one config forever: read it once
            img = {}
            row = self.svc.db.query_one("SELECT config_json FROM images WHERE id = ?",
                                        (rec.image_id,))  # fmt: skip
            if row is not None:
                cfg = json.loads(row["config_json"]).get("config") or {}
                img = cfg.get("Healthcheck") or {}
                if len(self._image_health) >= 256:
                    self._image_health.clear()
                self._image_health[rec.image_id] = img
        test = (hc.Test if hc is not None and hc.Test else None) or img.get("Test") or []
        if not test or test[0] == "NONE":
            return None

        def dur(name: str, default: float) -> float:
            v = getattr(hc, name, 0) if hc is not None else 0
            v = v or int(img.get(name) or 0)
            return v / 1e9 if v else default

        retries = (hc.Retries if hc is not None else 0) or int(img.get("Retries") or 0)
        return {
            "test": list(test),
            "interval": dur("Interval", HEALTH_DEFAULT_INTERVAL),
            "timeout": dur("Timeout", HEALTH_DEFAULT_TIMEOUT),
            "start_period": dur("StartPeriod", 0.0),
            "start_interval": dur("StartInterval", 0.0),
            "retries": retries or HEALTH_DEFAULT_RETRIES,
        }

    def _start_health(self, cid: str, rec: ContainerRecord | None = None) -> None:
        if rec is None:
            rec = self.svc._row(cid)
        if rec is None:
            return
        hc = self._health_config(rec)
        if hc is None:
            return
        ev = threading.Event()
        with self._lock:
            old = self._health_stop.pop(cid, None)
            self._health_stop[cid] = ev
        if old is not None:
            old.set()
        if rec.health is None:
            health = {"Status": "starting", "FailingStreak": 0, "Log": []}
            self.svc._update(cid, health_json=json.dumps(health))
        threading.Thread(target=self._health_loop, args=(cid, hc, ev),
                         name=f"pyrt-health-{cid[:12]}", daemon=True).start()

    def _stop_health(self, cid: str) -> None:
        with self._lock:
            ev = self._health_stop.pop(cid, None)
        if ev is not None:
            ev.set()

    def _health_loop(self, cid: str, hc: dict[str, Any], stop: threading.Event) -> None:
        begun = time.monotonic()
        while True:
            in_start = time.monotonic() - begun < hc["start_period"]
            wait = hc["start_interval"] if in_start and hc["start_interval"] else hc["interval"]
            if stop.wait(wait) or self.closing:
                return
            rec = self.svc._row(cid)
            if rec is None or rec.state != "running":
                if rec is not None and rec.state == "paused":
                    continue
                return
            start = _now()
            code, output = self._probe(rec, hc)
            end = _now()
            if stop.is_set():
                return
            in_start = time.monotonic() - begun < hc["start_period"]
            self._record_health(rec, code, output, start, end, hc["retries"], in_start)

    def _record_health(self, rec: ContainerRecord, code: int, output: str, start: str,
                       end: str, retries: int, in_start: bool) -> None:
        svc = self.svc
        with svc._lock(rec.id):
            cur = svc._row(rec.id)
            if cur is None or cur.state not in ("running", "paused"):
                return
            health = cur.health or {"Status": "starting", "FailingStreak": 0, "Log": []}
            old_status = health.get("Status")
            log = list(health.get("Log") or [])
            log.append({"Start": start, "End": end, "ExitCode": code, "Output": output})
            health["Log"] = log[-HEALTH_LOG_KEEP:]
            if code == 0:
                health["Status"] = "healthy"
                health["FailingStreak"] = 0
            elif not in_start:
                health["FailingStreak"] = int(health.get("FailingStreak", 0)) + 1
                if health["FailingStreak"] >= retries:
                    health["Status"] = "unhealthy"
            svc._update(rec.id, health_json=json.dumps(health))
        if health["Status"] != old_status:
            svc._publish(cur, f"health_status: {health['Status']}")

    def _probe(self, rec: ContainerRecord, hc: dict[str, Any]) -> tuple[int, str]:
        """Run the test in the container: (exit code, output). -1 when it timed out."""
        test = hc["test"]
        if test[0] == "CMD-SHELL":
            shell = rec.config.Shell or ["/bin/sh", "-c"]
            args = [*shell, test[1]]
        else:
            args = list(test[1:])
        process = dict(rec.spec.get("process") or {})
        process["args"] = args
        process["terminal"] = False
        r, w = os.pipe()
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                pid = self.svc.runtime.exec(rec.id, process, detach=True, stdio=(null, w, w))
            except PyrtError as e:
                return -1, f"failed to run the healthcheck: {e}"
        finally:
            os.close(w)
            os.close(null)
        out = bytearray()
        timed_out = False
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = -1
        deadline = time.monotonic() + hc["timeout"]
        try:
            open_fds = [r] + ([pidfd] if pidfd >= 0 else [])
            exited = False
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    break
                ready, _, _ = select.select(open_fds, [], [], left)
                if r in ready:
                    chunk = os.read(r, 65536)
                    if not chunk:
                        open_fds.remove(r)
                    elif len(out) < HEALTH_OUTPUT_MAX:
                        out += chunk[: HEALTH_OUTPUT_MAX - len(out)]
                if pidfd in ready:
                    exited = True
                    open_fds.remove(pidfd)
                if exited and r not in open_fds:
                    break
                if exited:  # the probe is gone: take what is buffered, don't wait on
                    # its children holding the pipe
                    ready, _, _ = select.select([r], [], [], 0.05)
                    if not ready:
                        break
            _, status = os.waitpid(pid, 0)
        finally:
            os.close(r)
            if pidfd >= 0:
                os.close(pidfd)
        text = out.decode(errors="replace")
        if timed_out:
            return -1, f"Health check exceeded timeout ({hc['timeout']:g}s)"
        code = os.waitstatus_to_exitcode(status)
        return (128 - code if code < 0 else code), text


def _now() -> str:
    from pyrt.containers.service import now_rfc3339

    return now_rfc3339()


__all__ = ["Monitor", "should_restart"]
