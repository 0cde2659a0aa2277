"""Progress events: docker's status texts and JSON messages, throttled byte counts, the
thread-safe recorder."""

from __future__ import annotations

import threading

import pytest

from pyrt.images.progress import (
    ByteProgress,
    ProgressEvent,
    ProgressKind,
    ProgressRecorder,
    short_id,
)

D = "sha256:" + "0123456789ab" + "f" * 52


def test_short_id_and_status_texts() -> None:
    assert short_id(D) == "0123456789ab"
    assert ProgressEvent(ProgressKind.WAITING, D).status == "Waiting"
    assert ProgressEvent(ProgressKind.VERIFYING, D).status == "Verifying Checksum"
    assert ProgressEvent(ProgressKind.ALREADY_EXISTS, D).status == "Already exists"
    assert ProgressEvent(ProgressKind.LAYER_EXISTS, D).status == "Layer already exists"
    ev = ProgressEvent(ProgressKind.MOUNTED, D, detail="library/busybox")
    assert ev.status == "Mounted from library/busybox"
    assert str(ev) == "0123456789ab: Mounted from library/busybox"


def test_json_messages_match_docker_shape() -> None:
    ev = ProgressEvent(ProgressKind.DOWNLOADING, D, 100, 1000)
    assert ev.to_json() == {
        "status": "Downloading", "id": "0123456789ab",
        "progressDetail": {"current": 100, "total": 1000},
    }
    assert ProgressEvent(ProgressKind.PUSHING, D, 5).to_json()["progressDetail"] == {
        "current": 5
    }
    assert ProgressEvent(ProgressKind.PULL_COMPLETE, D).to_json() == {
        "status": "Pull complete", "id": "0123456789ab", "progressDetail": {},
    }
    failed = ProgressEvent(ProgressKind.FAILED, D, detail="boom").to_json()
    assert failed["error"] == "boom"
    assert str(ProgressEvent(ProgressKind.EXTRACTING, D, 3, 9)) == (
        "0123456789ab: Extracting 3/9"
    )


def test_event_validation() -> None:
    with pytest.raises(TypeError, match="kind"):
        ProgressEvent("Waiting", D)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="current"):
        ProgressEvent(ProgressKind.DOWNLOADING, D, -1, 10)
    with pytest.raises(ValueError, match="byte count"):
        ByteProgress(lambda e: None, ProgressKind.WAITING, D, 10)


def test_byte_progress_throttles_but_keeps_first_and_last() -> None:
    rec = ProgressRecorder()
    now = [0.0]
    bp = ByteProgress(rec, ProgressKind.DOWNLOADING, D, 1000, interval=1.0, clock=lambda: now[0])
    for i in range(1, 1001):  # 1000 updates within 0.5 s
        now[0] = i * 0.0005
        bp.update(i)
    currents = [e.current for e in rec.events]
    assert currents == [1, 1000]  # the first, then the final count (due to completion)
    now[0] = 5.0
    bp.update(1000)  # same value again: nothing new
    assert len(rec.events) == 2

    rec2 = ProgressRecorder()
    bp2 = ByteProgress(rec2, ProgressKind.PUSHING, D, -1, interval=1.0, clock=lambda: now[0])
    now[0] = 10.0
    bp2.update(10)
    now[0] = 10.5
    bp2.update(20)  # too soon, total unknown
    bp2.update(30, force=True)
    now[0] = 12.0
    bp2.update(40)
    assert [e.current for e in rec2.events] == [10, 30, 40]
    assert all(e.total == -1 for e in rec2.events)


def test_recorder_is_thread_safe_and_collapses_kinds() -> None:
    rec = ProgressRecorder()

    def worker(n: int) -> None:
        for i in range(500):
            rec(ProgressEvent(ProgressKind.DOWNLOADING, f"sha256:{n:064x}", i, 500))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(rec.events) == 4000
    d0 = f"sha256:{0:064x}"
    rec(ProgressEvent(ProgressKind.DOWNLOAD_COMPLETE, d0))
    assert rec.kinds(d0) == [ProgressKind.DOWNLOADING, ProgressKind.DOWNLOAD_COMPLETE]
    last = rec.last(d0)
    assert last is not None and last.kind is ProgressKind.DOWNLOAD_COMPLETE
    assert rec.last("sha256:" + "e" * 64) is None
