"""The metadata database: pragmas, transactions, migrations, and the v1 image schema."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyrt.errors import Conflict, FailedPrecondition, SystemError_
from pyrt.metadata import MIGRATIONS, Database, Migration, migrate
from pyrt.metadata.schema import check_migrations, current_version
from pyrt.oci.image_config import chain_ids

D = ["sha256:" + f"{i:x}" * 64 for i in range(1, 10)]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = Database(tmp_path / "meta" / "pyrt.db")
    yield d
    d.close()


def test_pragmas_and_version(db: Database) -> None:
    conn = db.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    latest = len(MIGRATIONS)
    assert db.schema_version() == latest >= 2
    assert db.applied_migrations == list(range(1, latest + 1))
    rows = db.query("SELECT version, description FROM schema_version ORDER BY version")
    assert [tuple(r) for r in rows] == [(m.version, m.description) for m in MIGRATIONS]
    tables = {r["name"] for r in db.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"images", "tags", "repo_digests", "snapshots", "image_layers",
            "schema_version"} <= tables


def test_reopen_applies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    Database(path).close()
    again = Database(path)
    assert again.applied_migrations == [] and again.schema_version() == len(MIGRATIONS)
    again.close()


def test_transaction_commit_rollback_nested(db: Database) -> None:
    db.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("boom")
    assert [r[0] for r in db.query("SELECT x FROM t")] == [1]
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (3)")
        with pytest.raises(Conflict, match="UNIQUE constraint failed"), db.transaction() as c2:
            c2.execute("INSERT INTO t VALUES (4)")
            c2.execute("INSERT INTO t VALUES (1)")  # duplicate: inner part undone
        conn.execute("INSERT INTO t VALUES (5)")
    assert [r[0] for r in db.query("SELECT x FROM t ORDER BY x")] == [1, 3, 5]
    assert not db.connection().in_transaction


def test_commits_are_synced_after_the_write_lock(db: Database,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A write returns once the WAL is fdatasync'ed (one sync per top-level write, none
    inside a transaction or with sync=False), and the sync runs outside the writer lock."""
    import os

    db.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    wal = os.stat(f"{db.path}-wal")
    synced: list[bool] = []  # per sync of the WAL: was the writer lock released by then
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == (wal.st_dev, wal.st_ino):
            synced.append(not db._write_lock._is_owned())  # type: ignore[attr-defined]
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    db.execute("INSERT INTO t VALUES (1)")
    assert synced == [True]
    db.execute("INSERT INTO t VALUES (2)", sync=False)
    assert synced == [True]
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (3)")
        db.execute("INSERT INTO t VALUES (4)")  # inside: the transaction's end syncs
        assert synced == [True]
    assert synced == [True, True]
    with pytest.raises(Conflict), db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    assert synced == [True, True]  # nothing committed, nothing synced
    assert [r[0] for r in db.query("SELECT x FROM t ORDER BY x")] == [1, 2, 3, 4]


def test_threads_get_their_own_connection(db: Database) -> None:
    db.execute("CREATE TABLE c (thread TEXT, n INTEGER)")
    seen: list[int] = []
    errors: list[BaseException] = []
    alive = threading.Barrier(4)  # all alive at once: an ended thread's connection is reused

    def work(name: str) -> None:
        try:
            seen.append(id(db.connection()))
            alive.wait(30)
            for n in range(50):
                with db.transaction() as conn:
                    conn.execute("INSERT INTO c VALUES (?, ?)", (name, n))
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(set(seen)) == 4 and id(db.connection()) not in seen
    assert db.query_one("SELECT COUNT(*) AS n FROM c")["n"] == 200  # type: ignore[index]


def test_ended_threads_leave_their_connection_to_new_ones(db: Database) -> None:
    """A thread per request (the daemon's server) must not open, and keep, a connection
    per request: a new thread takes over the connection of one that has ended."""
    import os

    fds_before = len(os.listdir("/proc/self/fd"))
    seen: list[int] = []

    def one() -> None:
        with db.transaction() as conn:
            seen.append(id(conn))
            conn.execute("SELECT 1")

    for _ in range(50):
        t = threading.Thread(target=one)
        t.start()
        t.join()
    assert len(db._conns) == 2  # the main thread's and one shared by the 50 in turn
    assert len(set(seen)) == 1
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2
    # threads alive at the same time still get a connection each
    gate = threading.Barrier(3)
    conns: list[int] = []

    def together() -> None:
        conns.append(id(db.connection()))
        gate.wait()

    threads = [threading.Thread(target=together) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(conns)) == 3


def test_closed(tmp_path: Path) -> None:
    d = Database(tmp_path / "c.db")
    d.close()
    with pytest.raises(SystemError_, match="is closed"):
        d.connection()


# --- migrations ---------------------------------------------------------------------------

def _add_image(db: Database, image_id: str, diff_ids: list[str]) -> list[str]:
    chains = chain_ids(diff_ids)
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO images (id, manifest_digest, config_json, architecture, os, size,"
            " added_at) VALUES (?, ?, ?, 'amd64', 'linux', 10, ?)",
            (image_id, D[8], json.dumps({"x": 1}), time.time()),
        )
        parent = None
        for pos, (diff, chain) in enumerate(zip(diff_ids, chains, strict=True)):
            conn.execute(
                "INSERT OR IGNORE INTO snapshots (chain_id, diff_id, parent, size, created_at)"
                " VALUES (?, ?, ?, 1, ?)",
                (chain, diff, parent, time.time()),
            )
            conn.execute(
                "INSERT INTO image_layers (image_id, position, chain_id, blob_digest)"
                " VALUES (?, ?, ?, ?)",
                (image_id, pos, chain, D[7]),
            )
            parent = chain
    return chains


def test_migration_v2_upgrades_v1_db(tmp_path: Path) -> None:
    path = tmp_path / "up.db"
    v1 = Database(path, migrations=MIGRATIONS[:1])
    _add_image(v1, D[0], [D[1], D[2]])
    v1.execute("INSERT INTO tags VALUES ('docker.io/library/a:latest', 'docker.io/library/a',"
               " ?, 0)", (D[0],))
    v1.close()

    calls: list[int] = []

    def v2_step(conn: sqlite3.Connection) -> None:
        calls.append(2)
        conn.execute(
            "CREATE TABLE containers (id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
            " image_id TEXT NOT NULL REFERENCES images(id) ON DELETE RESTRICT)"
        )

    def v1_again(conn: sqlite3.Connection) -> None:
        raise AssertionError("v1 must not run again")

    migrations = [Migration(1, MIGRATIONS[0].description, v1_again),
                  Migration(2, "containers", v2_step)]
    v2 = Database(path, migrations=migrations)
    assert v2.applied_migrations == [2] and calls == [2]
    assert v2.schema_version() == 2
    # the v1 data survived, and the new table works with it
    assert v2.query_one("SELECT image_id FROM tags")["image_id"] == D[0]  # type: ignore[index]
    v2.execute("INSERT INTO containers VALUES ('c1', 'web', ?)", (D[0],))
    with pytest.raises(Conflict, match="FOREIGN KEY"):
        v2.execute("INSERT INTO containers VALUES ('c2', 'db', ?)", (D[5],))
    v2.close()
    # and old code refuses the newer database instead of guessing
    with pytest.raises(FailedPrecondition, match="schema version 2 is newer than this pyrt "
                       r"supports \(1\)"):
        Database(path, migrations=MIGRATIONS[:1])


def test_real_migrations_upgrade_a_v1_db(tmp_path: Path) -> None:
    path = tmp_path / "real.db"
    v1 = Database(path, migrations=MIGRATIONS[:1])
    _add_image(v1, D[0], [D[1], D[2]])
    v1.close()
    latest = Database(path)
    assert latest.applied_migrations == list(range(2, len(MIGRATIONS) + 1))
    assert latest.query_one("SELECT id FROM images")["id"] == D[0]  # type: ignore[index]
    latest.close()


def test_failed_migration_rolls_back(tmp_path: Path) -> None:
    path = tmp_path / "fail.db"
    Database(path, migrations=MIGRATIONS[:1]).close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(SystemError_, match=r"metadata migration 2 \(broken\) failed: "
                       "no such table"):
        Database(path, migrations=[MIGRATIONS[0], Migration(2, "broken", broken)])
    conn = sqlite3.connect(path)
    assert current_version(conn) == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name='half'").fetchone() is None
    conn.close()


def test_migration_list_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="position 2 holds version 3"):
        check_migrations([MIGRATIONS[0], Migration(3, "x", ())])
    conn = sqlite3.connect(":memory:", isolation_level=None)
    assert migrate(conn, [Migration(1, "sql list", ("CREATE TABLE a (x)",))]) == [1]
    assert migrate(conn, [Migration(1, "sql list", ("CREATE TABLE a (x)",))]) == []
    conn.close()


# --- the v1 schema serves an image service and a snapshot service ----------------------------

def refcounts(db: Database) -> dict[str, int]:
    return {r["chain_id"]: r["refcount"] for r in db.query("SELECT * FROM snapshots")}


def test_image_and_snapshot_lifecycle(db: Database) -> None:
    # two images sharing their base layer
    a = _add_image(db, D[0], [D[1], D[2]])
    b = _add_image(db, D[3], [D[1], D[4]])
    assert a[0] == b[0]
    assert refcounts(db) == {a[0]: 2, a[1]: 1, b[1]: 1}

    # tag, retag (move), list, inspect by tag
    now = time.time()
    db.execute("INSERT INTO tags VALUES (?, ?, ?, ?)",
               ("docker.io/library/a:latest", "docker.io/library/a", D[0], now))
    db.execute("INSERT INTO tags VALUES (?, ?, ?, ?)",
               ("docker.io/library/a:1", "docker.io/library/a", D[0], now))
    db.execute("INSERT INTO repo_digests VALUES (?, ?, ?)",
               ("docker.io/library/a@" + D[8], "docker.io/library/a", D[0]))
    db.execute("UPDATE tags SET image_id = ? WHERE name = ?", (D[3], "docker.io/library/a:1"))
    rows = db.query("SELECT i.id, group_concat(t.name) AS tags FROM images i "
                    "LEFT JOIN tags t ON t.image_id = i.id GROUP BY i.id ORDER BY i.id")
    assert [(r["id"], r["tags"]) for r in rows] == [
        (D[0], "docker.io/library/a:latest"), (D[3], "docker.io/library/a:1")]
    with pytest.raises(Conflict, match="FOREIGN KEY"):
        db.execute("INSERT INTO tags VALUES ('x:y', 'x', ?, 0)", (D[6],))  # no such image
    with pytest.raises(Conflict, match="UNIQUE"):
        db.execute("INSERT INTO tags VALUES ('docker.io/library/a:1', 'x', ?, 0)", (D[0],))

    # a tagged image can't be deleted; untag, then delete: layers and digests cascade
    with pytest.raises(Conflict, match="FOREIGN KEY"):
        db.execute("DELETE FROM images WHERE id = ?", (D[0],))
    assert refcounts(db) == {a[0]: 2, a[1]: 1, b[1]: 1}  # the failed delete changed nothing
    with db.transaction() as conn:
        conn.execute("DELETE FROM tags WHERE image_id = ?", (D[0],))
        conn.execute("DELETE FROM images WHERE id = ?", (D[0],))
    assert db.query("SELECT * FROM repo_digests") == []
    assert refcounts(db) == {a[0]: 1, a[1]: 0, b[1]: 1}

    # the snapshot service removes unreferenced leaves; a parent with children stays
    with pytest.raises(Conflict, match="FOREIGN KEY"):
        db.execute("DELETE FROM snapshots WHERE chain_id = ?", (a[0],))
    unused = db.query("SELECT chain_id FROM snapshots s WHERE refcount = 0 AND NOT EXISTS "
                      "(SELECT 1 FROM snapshots c WHERE c.parent = s.chain_id)")
    assert [r["chain_id"] for r in unused] == [a[1]]
    db.execute("DELETE FROM snapshots WHERE chain_id = ?", (a[1],))
    # a snapshot in use by an image can't go
    with pytest.raises(Conflict, match="FOREIGN KEY"):
        db.execute("DELETE FROM snapshots WHERE chain_id = ?", (b[1],))
    # refcounts never go negative
    with pytest.raises(Conflict, match="CHECK"):
        db.execute("UPDATE snapshots SET refcount = -1 WHERE chain_id = ?", (b[1],))

    # the blobs gc must keep
    keep = {r[0] for r in db.query(
        "SELECT id FROM images UNION SELECT manifest_digest FROM images WHERE manifest_digest "
        "IS NOT NULL UNION SELECT blob_digest FROM image_layers WHERE blob_digest IS NOT NULL")}
    assert keep == {D[3], D[8], D[7]}
