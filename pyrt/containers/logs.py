"""Read docker json-file logs, as pyrt-shim writes them.

Each line of the file is one JSON object:

    {"log":"hello\\n","stream":"stdout","time":"2026-11-28T03:30:15.123456789Z"}

A "log" without a trailing newline is a piece of a line longer than 16 KiB (or the last
output before the stream closed). At max-size the writer renames file -> file.1 -> file.2
... (file.N.gz when docker compressed them); read_logs reads the oldest first.

    for entry in read_logs(path, tail=10, timestamps=True):
        sys.stdout.buffer.write(entry.text)
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from pyrt.errors import InvalidArgument, NotFound

_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)

TimeArg = datetime | float | int | str | None


def parse_time_ns(text: str) -> int:
    """An RFC 3339 time (any number of fraction digits up to 9) as Unix nanoseconds."""
    m = _TIME.match(text)
    if not m:
        raise InvalidArgument(f"time {text!r}: not an RFC 3339 timestamp")
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        base = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=UTC)
    except ValueError as e:
        raise InvalidArgument(f"time {text!r}: {e}") from None
    secs = int(base.timestamp())
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    ns = int((frac or "").ljust(9, "0")) if frac else 0
    return secs * 1_000_000_000 + ns


def _to_ns(value: TimeArg, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidArgument(f"{name}: a timezone-aware datetime is needed")
        return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000
    if isinstance(value, bool):
        raise InvalidArgument(f"{name}: expected a time, got {value!r}")
    if isinstance(value, int | float):
        return int(value * 1_000_000_000)
    if isinstance(value, str):
        try:
            return int(float(value) * 1_000_000_000)  # docker accepts Unix seconds too
        except ValueError:
            return parse_time_ns(value)
    raise InvalidArgument(f"{name}: expected a datetime, Unix seconds or RFC 3339 text")


@dataclass(frozen=True)
class LogEntry:
    stream: str  # "stdout" or "stderr"
    log: bytes  # the output, as the container wrote it (UTF-8; invalid bytes replaced)
    time: str  # RFC 3339 as recorded
    time_ns: int  # the same, as Unix nanoseconds
    text: bytes  # what `docker logs` prints: log, prefixed by "<time> " with timestamps

    @property
    def partial(self) -> bool:
        """True when this piece does not end a line."""
        return not self.log.endswith(b"\n")


def log_files(path: Path | str) -> list[Path]:
    """The files of a json-file log, oldest first: path.N[.gz] ... path.1, path."""
    p = Path(path)
    rotated: list[tuple[int, Path]] = []
    try:
        names = os.listdir(p.parent)
    except FileNotFoundError:
        names = []
    prefix = p.name + "."
    for name in names:
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        if rest.endswith(".gz"):
            rest = rest[:-3]
        if rest.isdigit():
            rotated.append((int(rest), p.parent / name))
    rotated.sort(key=lambda t: -t[0])
    files = [f for _, f in rotated]
    if p.exists():
        files.append(p)
    return files


class _Filter:
    def __init__(
        self, since: int | None, until: int | None, stdout: bool, stderr: bool, stamps: bool
    ) -> None:
        self.since, self.until = since, until
        self.streams = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}
        self.stamps = stamps

    def parse(self, line: bytes, where: str) -> LogEntry | None:
        """The entry of one line if it passes the filters; InvalidArgument if malformed."""
        try:
            doc = json.loads(line)
            raw = doc["log"]
            stream = doc["stream"]
            stamp = doc["time"]
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidArgument(f"{where}: not a json-file log entry ({e})") from None
        if not isinstance(raw, str) or not isinstance(stream, str) or not isinstance(stamp, str):
            raise InvalidArgument(f"{where}: log, stream and time must be strings")
        if stream not in self.streams:
            return None
        t = parse_time_ns(stamp)
        if self.since is not None and t < self.since:
            return None
        if self.until is not None and t > self.until:
            return None
        data = raw.encode("utf-8", errors="surrogatepass")
        text = stamp.encode() + b" " + data if self.stamps else data
        return LogEntry(stream, data, stamp, t, text)


def _open(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _entries_of_file(path: Path, flt: _Filter) -> Iterator[LogEntry]:
    try:
        f = _open(path)
    except FileNotFoundError:
        return  # rotated away while we listed
    with f:
        for n, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                return  # the writer is in the middle of this one
            if not line.strip():
                continue
            e = flt.parse(line, f"{path}:{n}")
            if e is not None:
                yield e


def read_logs(
    path: Path | str,
    *,
    follow: bool = False,
    tail: int | None = None,
    since: TimeArg = None,
    until: TimeArg = None,
    timestamps: bool = False,
    stdout: bool = True,
    stderr: bool = True,
    stop: Callable[[], bool] | None = None,
    poll_interval: float = 0.1,
    wait: Callable[[float], object] | None = None,
) -> Iterator[LogEntry]:
    """The entries of a json-file log (and its rotated files), oldest first.

    tail: only the last N entries (after the stream/since/until filters); follow: then go
    on with what is written later, across rotations, until `stop()` returns True (checked
    every poll_interval; the rest already written is still returned) or the caller stops
    iterating. since/until: datetimes (aware), Unix seconds or RFC 3339 strings.
    wait: called with poll_interval instead of sleeping between polls; it may return early
    (on an event that can make `stop()` true, such as the container's exit), so the follow
    ends as soon as that happens instead of up to poll_interval later.
    """
    if tail is not None and tail < 0:
        raise InvalidArgument(f"tail: must be >= 0, got {tail}")
    if poll_interval <= 0:
        raise InvalidArgument(f"poll_interval: must be > 0, got {poll_interval}")
    p = Path(path)
    if not follow and not log_files(p):
        raise NotFound(f"log file {p} does not exist")
    flt = _Filter(_to_ns(since, "since"), _to_ns(until, "until"), stdout, stderr, timestamps)
    if not follow:
        yield from _read_existing(p, flt, tail)
        return
    yield from _follow(p, flt, tail, stop, poll_interval, wait or time.sleep)


def _read_existing(p: Path, flt: _Filter, tail: int | None) -> Iterator[LogEntry]:
    if tail == 0:
        return
    files = log_files(p)
    if tail is None:
        for f in files:
            yield from _entries_of_file(f, flt)
        return
    last: collections.deque[LogEntry] = collections.deque(maxlen=tail)
    for f in files:
        last.extend(_entries_of_file(f, flt))
    yield from last


def _follow(
    p: Path, flt: _Filter, tail: int | None, stop: Callable[[], bool] | None, interval: float,
    wait: Callable[[float], object],
) -> Iterator[LogEntry]:
    # open the current file first, so nothing written after the backlog is missed
    cur: IO[bytes] | None = None
    try:
        cur = open(p, "rb")  # noqa: SIM115
    except FileNotFoundError:
        cur = None
    backlog = [f for f in log_files(p) if f != p]
    last: collections.deque[LogEntry] | None = (
        collections.deque(maxlen=tail) if tail is not None else None
    )

    def emit(entries: Iterator[LogEntry]) -> Iterator[LogEntry]:
        if last is not None:
            last.extend(entries)
            return iter(())
        return entries

    for f in backlog:
        yield from emit(_entries_of_file(f, flt))
    pending = b""
    lineno = 0
    until = flt.until

    def drain() -> Iterator[LogEntry]:
        nonlocal pending, lineno
        if cur is None:
            return
        chunk = cur.read()
        if not chunk:
            return
        data = pending + chunk
        lines = data.split(b"\n")
        pending = lines.pop()
        for line in lines:
            lineno += 1
            if line.strip():
                e = flt.parse(line, f"{p}:{lineno}")
                if e is not None:
                    yield e

    yield from emit(drain())
    if last is not None:
        if tail != 0:
            yield from list(last)
        last = None
    while True:
        stopping = stop is not None and stop()
        if until is not None and time.time_ns() > until:
            stopping = True
        yield from drain()
        # rotated (a new file under the name) or truncated (max-file 1)?
        try:
            st = os.stat(p)
        except FileNotFoundError:
            st = None
        if cur is None and st is not None:
            cur = open(p, "rb")  # noqa: SIM115
            pending, lineno = b"", 0
            continue
        if cur is not None and st is not None:
            mine = os.fstat(cur.fileno())
            if (st.st_ino, st.st_dev) != (mine.st_ino, mine.st_dev):
                yield from drain()  # the rest of the renamed file
                cur.close()
                cur = open(p, "rb")  # noqa: SIM115
                pending, lineno = b"", 0
                continue
            # truncation shows as a file shorter than what was read (the writer truncates
            # only when full, so the new content is shorter than max-size)
            if st.st_size < cur.tell():
                cur.seek(0)
                pending, lineno = b"", 0
                continue
        if stopping:
            if cur is not None:
                cur.close()
            return
        wait(interval)
