"""Attach to a container: its output as it comes (and its stdin), through the shim.

    with engine.containers.attach("web", stdin=True, logs=True) as a:
        a.write(b"ls\\n"); a.close_stdin()
        for stream, data in a:          # stream 1 stdout, 2 stderr; ends at the exit
            ...
        a.exit_code                     # once the stream ended with the exit

With logs=True what the json-file log already holds is replayed first (as docker attach
--logs does); stream=False gives only that replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pyrt.errors import Conflict, FailedPrecondition

if TYPE_CHECKING:
    from pyrt.containers.record import ContainerRecord
    from pyrt.containers.service import ContainerService
    from pyrt.containers.shim_client import AttachStream

STDOUT, STDERR = 1, 2


class Attachment:
    def __init__(self, stream: AttachStream | None, replay: list[tuple[int, bytes]]) -> None:
        self._stream = stream
        self._replay = replay
        self.exit_code: int | None = None

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        yield from self._replay
        self._replay = []
        if self._stream is None:
            return
        for frame in self._stream:
            if frame.stream == 3:
                ex = self._stream.exit
                self.exit_code = ex.code if ex is not None else None
                return
            yield frame.stream, frame.data

    def read_all(self) -> dict[int, bytes]:
        out = {STDOUT: b"", STDERR: b""}
        for stream, data in self:
            out[stream] = out.get(stream, b"") + data
        return out

    def _live(self) -> AttachStream:
        if self._stream is None:
            raise FailedPrecondition("attach: not attached to a live stream")
        return self._stream

    def write(self, data: bytes) -> None:
        self._live().write(data)

    def close_stdin(self) -> None:
        self._live().close_stdin()

    def resize(self, rows: int, cols: int) -> None:
        self._live().resize(rows, cols)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach(svc: ContainerService, rec: ContainerRecord, *, stdin: bool = False,
           logs: bool = False, stream: bool = True) -> Attachment:
    replay: list[tuple[int, bytes]] = []
    if logs:
        for entry in svc.logs(rec.id):
            replay.append((STDOUT if entry.stream == "stdout" else STDERR, entry.log))
    live = None
    if stream:
        if rec.state not in ("running", "paused"):
            if not logs:
                raise Conflict(f"You cannot attach to a stopped container, start it first "
                               f"({rec.id})")  # fmt: skip
        else:
            try:
                live = svc._client(rec.id).attach(stdin=stdin and rec.config.OpenStdin)
            except FailedPrecondition:
                live = None
    return Attachment(live, replay)


__all__ = ["Attachment", "attach"]
