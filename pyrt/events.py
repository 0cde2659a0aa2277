"""The engine's event bus, in the shape of Docker's /events.

    bus = EventBus()
    sub = bus.subscribe(filters={"type": ["container"], "event": ["die"]})
    bus.publish("container", "die", cid, {"name": "web", "exitCode": "0"})
    ev = sub.get(timeout=1)          # {"Type": "container", "Action": "die", ...}
    for ev in sub: ...               # blocks; ends when sub.close() or bus.close()

An event is Docker's JSON: Type, Action, Actor {ID, Attributes}, scope "local", time
(seconds) and timeNano. For containers and images the old top-level fields (status, id,
from) are filled in too, as Docker does. The bus keeps the last `history` events so a
subscriber with `since` gets those first; with `until` the subscription ends at that time.

Filters (Docker's): type, event (action; "health_status" also matches
"health_status: healthy"), container (id, its 12-char prefix, or name), image (the image
attribute or the actor of an image event), volume (name) and network (id or name) of
their own events, label ("key" or "key=value" against the actor's attributes). Values of
one key are ORed, keys are ANDed.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pyrt.errors import InvalidArgument

TYPES = ("container", "image", "volume", "network", "daemon", "plugin", "node", "service",
         "secret", "config", "builder")  # fmt: skip
FILTER_KEYS = ("type", "event", "container", "image", "label", "volume", "network")
ACTIONS = (
    "create", "start", "die", "oom", "kill", "stop", "restart", "pause", "unpause",
    "destroy", "rename", "attach", "detach", "resize", "exec_create", "exec_start",
    "exec_die", "health_status", "pull", "tag", "untag", "delete", "import", "load",
    "save", "push", "commit", "export", "copy", "top", "update",
)  # fmt: skip

Event = dict[str, Any]
_END = object()


def _to_ns(value: float | int | str | None, what: str) -> int | None:
    """Unix seconds (int/float, or a string of them) -> nanoseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value
        try:
            value = float(text)
        except ValueError:
            from pyrt.containers.logs import parse_time_ns

            try:
                return parse_time_ns(text)
            except InvalidArgument:
                raise InvalidArgument(f"events: {what}: {value!r} is not a time") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"events: {what}: {value!r} is not a time")
    return int(value * 1_000_000_000)


def _check_filters(filters: Mapping[str, Iterable[str]] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, values in (filters or {}).items():
        if key not in FILTER_KEYS:
            raise InvalidArgument(
                f"events: invalid filter '{key}' (one of {', '.join(FILTER_KEYS)})"
            )
        if isinstance(values, str):
            values = [values]
        vals = list(values)
        if not all(isinstance(v, str) for v in vals):
            raise InvalidArgument(f"events: filter '{key}': values must be strings")
        if key == "type":
            for v in vals:
                if v not in TYPES:
                    raise InvalidArgument(f"events: filter 'type': unknown type '{v}'")
        if vals:
            out[key] = vals
    return out


def matches(event: Event, filters: Mapping[str, list[str]]) -> bool:
    """Docker's event filter semantics (see the module doc)."""
    actor = event.get("Actor") or {}
    attrs: dict[str, str] = actor.get("Attributes") or {}
    etype = event.get("Type", "")
    for key, values in filters.items():
        if key == "type":
            ok = etype in values
        elif key == "event":
            action = str(event.get("Action", ""))
            ok = any(action == v or action.split(":", 1)[0] == v for v in values)
        elif key == "container":
            if etype != "container":
                return False
            aid = str(actor.get("ID", ""))
            name = attrs.get("name", "")
            ok = any(v == name or v.lstrip("/") == name or (len(v) >= 1 and aid.startswith(v))
                     for v in values)  # fmt: skip
        elif key == "image":
            img = attrs.get("image", "")
            aid = str(actor.get("ID", "")) if etype == "image" else ""
            ok = any(v in (img, aid) or (img and img.split(":", 1)[0] == v) for v in values)
        elif key in ("volume", "network"):
            # a volume's actor is its name; a network's, its id (its name an attribute)
            aid = str(actor.get("ID", ""))
            ok = etype == key and any(v in (aid, attrs.get("name", "")) for v in values)
        else:  # label
            ok = False
            for v in values:
                k, eq, want = v.partition("=")
                if k in attrs and (not eq or attrs[k] == want):
                    ok = True
        if not ok:
            return False
    return True


class Subscription:
    """A stream of events. Iterate (blocking) or call get(timeout)."""

    def __init__(self, bus: EventBus, filters: dict[str, list[str]], until_ns: int | None
                 ) -> None:
        self._bus = bus
        self.filters = filters
        self.until_ns = until_ns
        self._q: queue.Queue[Any] = queue.Queue(maxsize=10000)
        self.closed = False
        self.dropped = 0

    def _offer(self, event: Event | object) -> None:
        if self.closed:
            return
        try:
            self._q.put_nowait(event)
        except queue.Full:
            self.dropped += 1  # a subscriber that does not read loses events, not the bus

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event; None at the end of the subscription; TimeoutError when none
        came within `timeout` seconds."""
        if self.closed and self._q.empty():
            return None
        wait = timeout
        if self.until_ns is not None:
            left = (self.until_ns - time.time_ns()) / 1e9
            if left <= 0 and self._q.empty():
                self.close()
                return None
            wait = max(left, 0.0) if wait is None else min(wait, max(left, 0.0))
        try:
            item = self._q.get(timeout=wait)
        except queue.Empty:
            if self.until_ns is not None and time.time_ns() >= self.until_ns:
                self.close()
                return None
            raise TimeoutError("events: no event in time") from None
        if item is _END:
            self.closed = True
            return None
        assert isinstance(item, dict)
        if self.until_ns is not None and int(item["timeNano"]) > self.until_ns:
            self.close()
            return None
        return item

    def __iter__(self) -> Iterator[Event]:
        while True:
            ev = self.get()
            if ev is None:
                return
            yield ev

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._bus._unsubscribe(self)
            self._offer_end()

    def _offer_end(self) -> None:
        with contextlib.suppress(queue.Full):
            self._q.put_nowait(_END)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self, history: int = 1024) -> None:
        if history < 0:
            raise InvalidArgument(f"events: history must be >= 0, got {history}")
        self._lock = threading.Lock()
        self._history: collections.deque[Event] = collections.deque(maxlen=history)
        self._subs: list[Subscription] = []
        self._last_ns = 0

    def publish(self, type: str, action: str, actor_id: str,  # noqa: A002 - docker's name
                attributes: Mapping[str, str] | None = None) -> Event:
        if type not in TYPES:
            raise InvalidArgument(f"events: unknown type '{type}'")
        attrs = {str(k): str(v) for k, v in (attributes or {}).items()}
        with self._lock:
            now = max(time.time_ns(), self._last_ns + 1)  # strictly increasing
            self._last_ns = now
            ev: Event = {
                "Type": type,
                "Action": action,
                "Actor": {"ID": actor_id, "Attributes": attrs},
                "scope": "local",
                "time": now // 1_000_000_000,
                "timeNano": now,
            }
            if type in ("container", "image"):
                ev["status"] = action
                ev["id"] = actor_id
                if type == "container" and "image" in attrs:
                    ev["from"] = attrs["image"]
            self._history.append(ev)
            subs = list(self._subs)
        for s in subs:
            if matches(ev, s.filters):
                s._offer(ev)
        return ev

    def subscribe(self, filters: Mapping[str, Iterable[str]] | None = None,
                  since: float | int | str | None = None,
                  until: float | int | str | None = None) -> Subscription:
        flt = _check_filters(filters)
        since_ns = _to_ns(since, "since")
        until_ns = _to_ns(until, "until")
        if since_ns is not None and until_ns is not None and until_ns < since_ns:
            raise InvalidArgument("events: until must not be before since")
        sub = Subscription(self, flt, until_ns)
        with self._lock:
            if since_ns is not None:
                for ev in self._history:
                    if ev["timeNano"] >= since_ns and matches(ev, flt) and (
                            until_ns is None or ev["timeNano"] <= until_ns):
                        sub._offer(ev)
            if until_ns is None or until_ns > time.time_ns():
                self._subs.append(sub)
            else:
                sub._offer_end()  # history only: the stream ends after it
        return sub

    def history(self) -> list[Event]:
        with self._lock:
            return list(self._history)

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def close(self) -> None:
        """End every subscription."""
        with self._lock:
            subs = list(self._subs)
            self._subs.clear()
        for s in subs:
            s._offer_end()


__all__ = ["ACTIONS", "FILTER_KEYS", "TYPES", "Event", "EventBus", "Subscription", "matches"]
