"""Progress events of a pull or a push, one stream per layer, in the shape docker shows.

A pull emits, per layer: Waiting -> Downloading (current/total, repeated) -> Verifying
Checksum -> Download complete, or Already exists when the store has the blob. The image
service, which unpacks, adds Extracting (current/total) and Pull complete. A push emits:
Preparing -> Waiting -> Pushing (current/total) -> Pushed, or Layer already exists, or
Mounted from <repo>.

Events go to a `ProgressSink` (any callable taking one event). Sinks are called from the
transfer's worker threads: `ProgressRecorder` is a thread-safe sink that keeps them.
`ProgressEvent.to_json()` gives docker's JSON-message form
({"status", "id", "progressDetail": {"current", "total"}}), for the Engine API.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ProgressKind(enum.Enum):
    """Kinds of event; the value is docker's status text."""

    # pull
    WAITING = "Waiting"
    DOWNLOADING = "Downloading"
    VERIFYING = "Verifying Checksum"
    DOWNLOAD_COMPLETE = "Download complete"
    EXTRACTING = "Extracting"
    PULL_COMPLETE = "Pull complete"
    ALREADY_EXISTS = "Already exists"
    # push
    PREPARING = "Preparing"
    PUSHING = "Pushing"
    PUSHED = "Pushed"
    LAYER_EXISTS = "Layer already exists"
    MOUNTED = "Mounted from"
    # either
    FAILED = "Failed"


#: kinds that carry a byte count (current/total)
BYTE_KINDS = frozenset({ProgressKind.DOWNLOADING, ProgressKind.EXTRACTING, ProgressKind.PUSHING})
#: kinds after which no more events come for that layer in this transfer
FINAL_PULL_KINDS = frozenset(
    {ProgressKind.DOWNLOAD_COMPLETE, ProgressKind.ALREADY_EXISTS, ProgressKind.FAILED}
)
FINAL_PUSH_KINDS = frozenset(
    {ProgressKind.PUSHED, ProgressKind.LAYER_EXISTS, ProgressKind.MOUNTED, ProgressKind.FAILED}
)


def short_id(digest: str) -> str:
    """Docker's per-layer id: the first 12 hex digits of the digest."""
    return digest.partition(":")[2][:12] or digest[:12]


@dataclass(frozen=True)
class ProgressEvent:
    """One event for one blob.

    digest: the blob's digest ("sha256:..."); id: its 12-digit short form.
    current/total: bytes done and expected, for the byte kinds (total -1 when unknown).
    detail: the source repository for MOUNTED, the error text for FAILED, else "".
    """

    kind: ProgressKind
    digest: str
    current: int = 0
    total: int = -1
    detail: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ProgressKind):
            raise TypeError(f"ProgressEvent.kind: expected ProgressKind, got {self.kind!r}")
        if self.current < 0:
            raise ValueError(f"ProgressEvent.current: negative ({self.current})")

    @property
    def id(self) -> str:
        return short_id(self.digest)

    @property
    def status(self) -> str:
        """The text docker prints ("Mounted from library/busybox", "Downloading")."""
        if self.kind is ProgressKind.MOUNTED and self.detail:
            return f"{self.kind.value} {self.detail}"
        return self.kind.value

    def to_json(self) -> dict[str, Any]:
        """Docker's JSON message (one line of the /images/create stream)."""
        msg: dict[str, Any] = {"status": self.status, "id": self.id}
        if self.kind in BYTE_KINDS:
            detail: dict[str, int] = {"current": self.current}
            if self.total >= 0:
                detail["total"] = self.total
            msg["progressDetail"] = detail
        elif self.kind is ProgressKind.FAILED:
            msg["error"] = self.detail
        else:
            msg["progressDetail"] = {}
        return msg

    def __str__(self) -> str:
        if self.kind in BYTE_KINDS:
            total = "?" if self.total < 0 else str(self.total)
            return f"{self.id}: {self.status} {self.current}/{total}"
        if self.kind is ProgressKind.FAILED:
            return f"{self.id}: {self.status}: {self.detail}"
        return f"{self.id}: {self.status}"


ProgressSink = Callable[[ProgressEvent], None]


def discard(event: ProgressEvent) -> None:
    """A sink that drops every event."""


class ProgressRecorder:
    """A thread-safe sink that keeps every event, in arrival order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[ProgressEvent] = []

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[ProgressEvent]:
        with self._lock:
            return list(self._events)

    def for_digest(self, digest: str) -> list[ProgressEvent]:
        return [e for e in self.events if e.digest == digest]

    def kinds(self, digest: str) -> list[ProgressKind]:
        """The kinds seen for one blob, consecutive repeats collapsed."""
        out: list[ProgressKind] = []
        for e in self.for_digest(digest):
            if not out or out[-1] is not e.kind:
                out.append(e.kind)
        return out

    def last(self, digest: str) -> ProgressEvent | None:
        evs = self.for_digest(digest)
        return evs[-1] if evs else None


class ByteProgress:
    """Emits byte-count events for one blob, at most every `interval` seconds (and always
    the first and the final count), so a fast download does not flood the sink."""

    def __init__(
        self,
        sink: ProgressSink,
        kind: ProgressKind,
        digest: str,
        total: int,
        *,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if kind not in BYTE_KINDS:
            raise ValueError(f"ByteProgress: {kind.value!r} does not carry a byte count")
        self._sink = sink
        self._kind = kind
        self._digest = digest
        self._total = total
        self._interval = interval
        self._clock = clock
        self._last_emit: float | None = None
        self._last_value = -1

    def update(self, current: int, *, force: bool = False) -> None:
        now = self._clock()
        due = self._last_emit is None or now - self._last_emit >= self._interval
        done = self._total >= 0 and current >= self._total
        if current == self._last_value or not (due or done or force):
            return
        self._last_emit = now
        self._last_value = current
        self._sink(ProgressEvent(self._kind, self._digest, current, self._total))
