"""pyrt.containers.logs: reading docker json-file logs (rotated files, filters, follow)."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pyrt.containers.logs import LogEntry, log_files, parse_time_ns, read_logs
from pyrt.errors import InvalidArgument, NotFound

T0 = 1_800_000_000  # 2027-01-15T08:00:00Z


def stamp(sec: int, ns: int = 0) -> str:
    base = datetime.fromtimestamp(sec, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ns:09d}Z"


def line(log: str, stream: str = "stdout", sec: int = T0, ns: int = 0) -> str:
    return json.dumps({"log": log, "stream": stream, "time": stamp(sec, ns)}) + "\n"


def logs(entries: list[LogEntry]) -> list[bytes]:
    return [e.log for e in entries]


def test_parse_time_ns_variants() -> None:
    assert parse_time_ns("1970-01-01T00:00:01Z") == 1_000_000_000
    assert parse_time_ns("1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert parse_time_ns("1970-01-01T00:00:01.000000001Z") == 1_000_000_001
    assert parse_time_ns("1970-01-01T01:00:01+01:00") == 1_000_000_000
    assert parse_time_ns(stamp(T0, 123456789)) == T0 * 10**9 + 123456789
    with pytest.raises(InvalidArgument, match="not an RFC 3339"):
        parse_time_ns("yesterday")
    with pytest.raises(InvalidArgument, match="month"):
        parse_time_ns("2026-13-01T00:00:00Z")


def test_reads_rotated_files_oldest_first(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    (tmp_path / "c.log.2").write_text(line("one\n", sec=T0))
    (tmp_path / "c.log.1").write_text(line("two\n", sec=T0 + 1) + line("three\n", sec=T0 + 2))
    log.write_text(line("four\n", sec=T0 + 3))
    (tmp_path / "c.log.x").write_text("not ours")
    (tmp_path / "other.log.1").write_text(line("nope\n"))
    assert [f.name for f in log_files(log)] == ["c.log.2", "c.log.1", "c.log"]
    assert logs(list(read_logs(log))) == [b"one\n", b"two\n", b"three\n", b"four\n"]


def test_gzip_rotated_file(tmp_path: Path) -> None:
    import gzip

    log = tmp_path / "c.log"
    with gzip.open(tmp_path / "c.log.1.gz", "wb") as f:
        f.write(line("old\n").encode())
    log.write_text(line("new\n"))
    assert logs(list(read_logs(log))) == [b"old\n", b"new\n"]


def test_streams_tail_since_until_timestamps(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_text(
        "".join(
            line(f"{i}\n", "stderr" if i % 2 else "stdout", sec=T0 + i, ns=i) for i in range(10)
        )
    )
    assert logs(list(read_logs(log, stderr=False))) == [b"0\n", b"2\n", b"4\n", b"6\n", b"8\n"]
    assert logs(list(read_logs(log, stdout=False, tail=2))) == [b"7\n", b"9\n"]
    assert logs(list(read_logs(log, tail=3))) == [b"7\n", b"8\n", b"9\n"]
    assert list(read_logs(log, tail=0)) == []
    got = list(read_logs(log, since=T0 + 3, until=stamp(T0 + 5, 5)))
    assert logs(got) == [b"3\n", b"4\n", b"5\n"]  # 3.000000003 >= 3.0; 5.000000005 <= until
    assert logs(list(read_logs(log, since=datetime.fromtimestamp(T0 + 8, tz=UTC)))) == [
        b"8\n",
        b"9\n",
    ]
    e = next(iter(read_logs(log, timestamps=True)))
    assert e.text == stamp(T0, 0).encode() + b" 0\n"
    assert e.stream == "stdout" and e.time_ns == T0 * 10**9
    plain = next(iter(read_logs(log)))
    assert plain.text == b"0\n"


def test_escapes_and_partial_lines(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_text(line('a"\\\t\x01\ufffdé\n') + line("x" * 16384) + line("end\n"))
    got = list(read_logs(log))
    assert got[0].log == 'a"\\\t\x01\ufffdé\n'.encode()
    assert got[1].partial and len(got[1].log) == 16384
    assert not got[2].partial


def test_bad_input(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with pytest.raises(NotFound, match="c.log"):
        list(read_logs(log))
    log.write_text(line("ok\n") + "{not json\n")
    with pytest.raises(InvalidArgument, match=r"c\.log:2"):
        list(read_logs(log))
    log.write_text(json.dumps({"log": 1, "stream": "stdout", "time": stamp(T0)}) + "\n")
    with pytest.raises(InvalidArgument, match="must be strings"):
        list(read_logs(log))
    log.write_text(line("ok\n"))
    with pytest.raises(InvalidArgument, match="tail"):
        list(read_logs(log, tail=-1))
    with pytest.raises(InvalidArgument, match="since"):
        list(read_logs(log, since=datetime(2020, 1, 1)))  # naive


def test_incomplete_last_line_is_not_read(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    full = line("done\n")
    log.write_text(full + line("half\n")[:20])
    assert logs(list(read_logs(log))) == [b"done\n"]


def test_follow_across_rotation_and_truncation(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_text(line("a\n") + line("b\n"))
    done = threading.Event()
    got: list[bytes] = []

    def reader() -> None:
        for e in read_logs(log, follow=True, tail=1, stop=done.is_set, poll_interval=0.01):
            got.append(e.log)

    t = threading.Thread(target=reader)
    t.start()
    try:
        time.sleep(0.1)
        with open(log, "a") as f:  # a line written in two pieces
            piece = line("c\n")
            f.write(piece[:10])
            f.flush()
            time.sleep(0.05)
            f.write(piece[10:])
        time.sleep(0.1)
        with open(log, "a") as f:  # written just before the rotation: must not be lost
            f.write(line("d\n"))
        os.rename(log, tmp_path / "c.log.1")
        log.write_text(line("eeeeeeee\n"))
        time.sleep(0.1)
        # truncated and rewritten (max-file 1): seen because the file became shorter than
        # what was read, as it does when the writer truncates at max-size
        log.write_text(line("f\n"))
        time.sleep(0.1)
        with open(log, "a") as f:
            f.write(line("g\n"))
    finally:
        done.set()
        t.join(10)
    assert not t.is_alive()
    assert got == [b"b\n", b"c\n", b"d\n", b"eeeeeeee\n", b"f\n", b"g\n"]


def test_follow_waits_for_the_file(tmp_path: Path) -> None:
    log = tmp_path / "late.log"
    done = threading.Event()
    got: list[bytes] = []

    def reader() -> None:
        for e in read_logs(log, follow=True, stop=done.is_set, poll_interval=0.01):
            got.append(e.log)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.05)
    log.write_text(line("hello\n"))
    time.sleep(0.1)
    done.set()
    t.join(10)
    assert got == [b"hello\n"]
