"""The content store: verified atomic commits, resumable ingests, locking, and gc."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import pyrt
from pyrt.content import ContentStore, collect
from pyrt.content.store import ingest_key, is_locked
from pyrt.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound

BLOB = os.urandom(3 * 1024 * 1024 + 17)  # spans several read chunks
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content")


def test_write_commit_and_read(store: ContentStore) -> None:
    w = store.writer("pull-1", BLOB_DIGEST, len(BLOB))
    for i in range(0, len(BLOB), 65536):
        w.write(BLOB[i : i + 65536])
    assert w.offset == len(BLOB) and w.digest() == BLOB_DIGEST
    assert not store.exists(BLOB_DIGEST)  # not visible before commit
    assert w.commit() == BLOB_DIGEST
    hexpart = BLOB_DIGEST.split(":")[1]
    assert store.path(BLOB_DIGEST) == store.root / "blobs" / "sha256" / hexpart
    assert store.exists(BLOB_DIGEST)
    assert store.info(BLOB_DIGEST) == len(BLOB)
    assert store.read_bytes(BLOB_DIGEST, verify=True) == BLOB
    with store.open(BLOB_DIGEST) as f:
        assert f.read(10) == BLOB[:10]
    assert store.list() == [BLOB_DIGEST]
    assert store.ingests() == []  # the ingest is gone
    assert os.listdir(store.ingest_root) == []
    assert store.path(BLOB_DIGEST).stat().st_mode & 0o777 == 0o444
    with pytest.raises(FailedPrecondition, match="writer is closed"):
        w.write(b"more")
    store.delete(BLOB_DIGEST)
    assert not store.exists(BLOB_DIGEST) and store.list() == []


def test_not_found_and_bad_digest(store: ContentStore) -> None:
    missing = digest_of(b"missing")
    for call in (store.info, store.open, store.read_bytes, store.delete):
        with pytest.raises(NotFound, match=f"blob {missing} not found"):
            call(missing)
    with pytest.raises(InvalidArgument, match="sha256 needs 64"):
        store.exists("sha256:abc")
    with pytest.raises(InvalidArgument, match="expected digest"):
        store.writer("x", "nope")
    with pytest.raises(InvalidArgument, match="expected size"):
        store.writer("x", None, -1)
    with pytest.raises(InvalidArgument, match="ingest ref"):
        store.writer("")


def test_corrupt_blob_detected_on_verify(store: ContentStore) -> None:
    d = store.write_blob(b"good")
    path = store.path(d)
    os.chmod(path, 0o644)
    path.write_bytes(b"evil")
    assert store.read_bytes(d) == b"evil"
    with pytest.raises(InvalidArgument, match="is corrupt"):
        store.read_bytes(d, verify=True)


def test_digest_mismatch_removes_ingest(store: ContentStore) -> None:
    wrong = digest_of(b"something else")
    w = store.writer("bad", wrong, 5)
    w.write(b"hello")
    with pytest.raises(InvalidArgument) as exc:
        w.commit()
    assert str(exc.value) == f"digest mismatch for {wrong}: got {digest_of(b'hello')}"
    assert not store.exists(wrong) and not store.exists(digest_of(b"hello"))
    assert store.ingests() == []
    # and the ref is free again, starting from zero
    w2 = store.writer("bad", digest_of(b"hello"), 5)
    assert w2.offset == 0
    w2.write(b"hello")
    assert w2.commit() == digest_of(b"hello")


def test_size_mismatch(store: ContentStore) -> None:
    d = digest_of(b"hello")
    w = store.writer("short", d, 10)
    w.write(b"hello")
    with pytest.raises(InvalidArgument, match=f"size mismatch for {d}: expected 10 bytes, got 5"):
        w.commit()
    assert store.ingests() == [] and not store.exists(d)
    # too many bytes: refused as soon as they arrive, the ingest is dropped
    w = store.writer("long", d, 3)
    with pytest.raises(InvalidArgument, match="expected 3 bytes, got at least 5"):
        w.write(b"hello")
    assert store.ingests() == []
    with pytest.raises(FailedPrecondition):
        w.write(b"x")


def test_ingest_metadata(store: ContentStore) -> None:
    before = time.time()
    w = store.writer("meta", BLOB_DIGEST, len(BLOB))
    w.write(b"abc")
    meta = json.loads((w.path / "meta.json").read_text())
    assert meta["ref"] == "meta" and meta["expected"] == BLOB_DIGEST
    assert meta["expected_size"] == len(BLOB) and before <= meta["started_at"] <= time.time()
    assert w.path == store.ingest_root / ingest_key("meta")
    st = store.status("meta")
    assert (st.ref, st.offset, st.expected, st.expected_size) == ("meta", 3, BLOB_DIGEST,
                                                                   len(BLOB))
    w.close()
    with pytest.raises(NotFound, match="ingest 'other' not found"):
        store.status("other")


def test_resume_after_dropping_writer(store: ContentStore) -> None:
    half = len(BLOB) // 2
    w = store.writer("resume", BLOB_DIGEST, len(BLOB))
    w.write(BLOB[:half])
    del w  # dropped without commit or close: the lock goes with it, the bytes stay
    w2 = store.writer("resume", BLOB_DIGEST, len(BLOB))
    assert w2.offset == half
    w2.write(BLOB[half:])
    assert w2.digest() == BLOB_DIGEST  # the prefix was re-hashed
    assert w2.commit() == BLOB_DIGEST
    assert store.read_bytes(BLOB_DIGEST) == BLOB


def test_resume_with_other_expectation_restarts(store: ContentStore) -> None:
    w = store.writer("reused", digest_of(b"aaaa"), 4)
    w.write(b"aa")
    w.close()
    # same ref, other content: the old bytes are useless and dropped
    w = store.writer("reused", digest_of(b"bbbb"), 4)
    assert w.offset == 0
    w.write(b"bbbb")
    assert w.commit() == digest_of(b"bbbb")
    # partial data longer than the new expected size is dropped too
    w = store.writer("long", None, None)
    w.write(b"0123456789")
    w.close()
    w = store.writer("long", None, 4)
    assert w.offset == 0
    w.abort()


SIGKILL_CHILD = textwrap.dedent(
    """
    import sys, time
    from pyrt.content import ContentStore
    root, ref, digest, size, path = sys.argv[1:6]
    data = open(path, "rb").read()
    w = ContentStore(root).writer(ref, digest, int(size))
    w.write(data[: len(data) // 2])
    print("half", flush=True)
    time.sleep(120)
    """
)


def test_resume_after_sigkill(store: ContentStore, tmp_path: Path) -> None:
    src = tmp_path / "blob"
    src.write_bytes(BLOB)
    env = dict(os.environ, PYTHONPATH=str(Path(pyrt.__file__).resolve().parent.parent))
    child = subprocess.Popen(
        [sys.executable, "-c", SIGKILL_CHILD, str(store.root), "killed", BLOB_DIGEST,
         str(len(BLOB)), str(src)],
        stdout=subprocess.PIPE, env=env, text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "half"
        # while the child lives, its ingest is locked
        with pytest.raises(Conflict, match="ingest 'killed' is in use by another writer"):
            store.writer("killed", BLOB_DIGEST, len(BLOB))
        assert is_locked(store.ingest_root / ingest_key("killed"))
        gc = collect(store, set(), ingest_max_age_s=0, now=time.time() + 3600)
        assert gc.removed_ingests == [] and gc.skipped_locked_ingests == ["killed"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    w = store.writer("killed", BLOB_DIGEST, len(BLOB))
    assert w.offset == len(BLOB) // 2
    w.write(BLOB[w.offset :])
    assert w.commit() == BLOB_DIGEST
    assert store.read_bytes(BLOB_DIGEST) == BLOB


def test_second_writer_conflict_then_wait(store: ContentStore) -> None:
    d = digest_of(b"0123456789")
    first = store.writer("shared", d, 10)
    first.write(b"01234")
    with pytest.raises(Conflict, match="in use by another writer"):
        store.writer("shared", d, 10)
    with pytest.raises(Conflict, match="in use"):
        store.abort("shared")

    got: dict[str, object] = {}

    def waiter() -> None:
        w = store.writer("shared", d, 10, wait=True)  # blocks until `first` lets go
        got["offset"] = w.offset
        w.write(b"0123456789"[w.offset :])
        got["digest"] = w.commit()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    assert t.is_alive() and "offset" not in got  # really waiting
    first.write(b"567")
    first.close()  # keep the bytes: the waiter resumes from 8
    t.join(10)
    assert not t.is_alive()
    assert got == {"offset": 8, "digest": d}
    assert store.read_bytes(d) == b"0123456789"


def test_waiter_after_commit_starts_fresh(store: ContentStore) -> None:
    d = digest_of(b"abc")
    first = store.writer("ref", d, 3)
    first.write(b"abc")
    offsets: list[int] = []

    def waiter() -> None:
        w = store.writer("ref", d, 3, wait=True)
        offsets.append(w.offset)
        w.abort()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    first.commit()  # removes the directory the waiter is blocked on
    t.join(10)
    assert offsets == [0]  # it noticed, and got a new, empty ingest
    assert store.exists(d) and store.ingests() == []


def test_concurrent_writers_same_blob(store: ContentStore) -> None:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            w = store.writer(f"worker-{i}", BLOB_DIGEST, len(BLOB))
            for j in range(0, len(BLOB), 1 << 20):
                w.write(BLOB[j : j + (1 << 20)])
            assert w.commit() == BLOB_DIGEST
        except BaseException as e:  # noqa: BLE001 - collected and re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert store.list() == [BLOB_DIGEST]
    assert store.read_bytes(BLOB_DIGEST, verify=True) == BLOB
    assert store.ingests() == []


def test_commit_existing_blob_is_idempotent(store: ContentStore) -> None:
    d = store.write_blob(b"same")
    w = store.writer("again", d, 4)
    w.write(b"same")
    assert w.commit() == d
    assert store.list() == [d] and store.ingests() == []
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        store.write_blob(b"other", d)
    assert store.ingests() == []


def test_abort(store: ContentStore) -> None:
    assert store.abort("nothing") is False
    w = store.writer("x")
    w.write(b"partial")
    w.close()
    assert [s.ref for s in store.ingests()] == ["x"]
    assert store.abort("x") is True
    assert store.ingests() == []


def test_ingest_from_file(store: ContentStore, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(BLOB)
    assert store.ingest_from_file(src) == BLOB_DIGEST
    store.delete(BLOB_DIGEST)
    assert store.ingest_from_file(str(src), BLOB_DIGEST, len(BLOB)) == BLOB_DIGEST
    fd = os.open(src, os.O_RDONLY)
    try:
        os.lseek(fd, 10, os.SEEK_SET)
        assert store.ingest_from_file(fd) == digest_of(BLOB[10:])
        os.fstat(fd)  # not closed by the store
    finally:
        os.close(fd)
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        store.ingest_from_file(src, digest_of(b"x"))
    with pytest.raises(InvalidArgument, match="size mismatch"):
        store.ingest_from_file(src, BLOB_DIGEST, 5)
    assert store.ingests() == []


def test_gc(store: ContentStore) -> None:
    keep = [store.write_blob(f"keep-{i}".encode()) for i in range(3)]
    drop = [store.write_blob(f"drop-{i}".encode()) for i in range(2)]
    stale = store.writer("stale")
    stale.write(b"old bytes")
    stale.close()
    live = store.writer("live")
    live.write(b"in flight")
    fresh = store.writer("fresh")
    fresh.write(b"new")
    fresh.close()
    old = time.time() - 7200
    for name in ("stale", "live"):
        d = store.ingest_root / ingest_key(name)
        for p in (d, d / "data", d / "meta.json"):
            os.utime(p, (old, old))

    dry = collect(store, set(keep), ingest_max_age_s=3600, dry_run=True)
    assert sorted(dry.removed_blobs) == sorted(drop) and dry.removed_ingests == ["stale"]
    assert len(store.list()) == 5

    res = collect(store, set(keep), ingest_max_age_s=3600)
    assert sorted(res.removed_blobs) == sorted(drop)
    assert res.removed_ingests == ["stale"]
    assert res.skipped_locked_ingests == ["live"]
    assert res.kept_blobs == 3
    assert res.bytes_freed == sum(len(f"drop-{i}") for i in range(2)) + len(b"old bytes")
    assert store.list() == sorted(keep)
    assert sorted(s.ref for s in store.ingests()) == ["fresh", "live"]
    live.write(b"!")
    live.commit()  # the live writer was not disturbed
    with pytest.raises(InvalidArgument, match="referenced digest"):
        collect(store, {"bogus"}, ingest_max_age_s=0)


def test_gc_protects_recent_blobs(store: ContentStore) -> None:
    d = store.write_blob(b"just pulled")
    res = collect(store, set(), ingest_max_age_s=3600, protect_newer_than_s=60)
    assert res.removed_blobs == [] and store.exists(d)
    res = collect(store, set(), ingest_max_age_s=3600, protect_newer_than_s=60,
                  now=time.time() + 120)
    assert res.removed_blobs == [d] and not store.exists(d)


def test_list_ignores_foreign_files(store: ContentStore) -> None:
    d = store.write_blob(b"x")
    (store.blobs / "sha256" / "not-a-digest").write_bytes(b"")
    assert store.list() == [d]
    assert collect(store, set(), ingest_max_age_s=0).removed_blobs == [d]
    assert (store.blobs / "sha256" / "not-a-digest").exists()  # gc leaves unknown files
