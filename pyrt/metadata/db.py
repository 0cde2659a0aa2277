"""The metadata database: SQLite (stdlib sqlite3) in WAL mode.

- Every connection: WAL journal, foreign keys ON, a busy timeout so writers queue instead
  of failing, rows as `sqlite3.Row`, autocommit mode (transactions are explicit, via
  `transaction()`).
- Durability: a committed transaction survives power loss once `execute()` or
  `transaction()` has returned. SQLite's synchronous=FULL would fsync the WAL inside the
  commit, under the write lock, so concurrent writers would wait for each other's syncs;
  instead the connections run synchronous=NORMAL (atomic, never corrupt; SQLite syncs at
  checkpoints) and the writer fdatasyncs the WAL itself after releasing the write lock:
  concurrent writers' syncs overlap and the file system commits them together. A
  checkpoint syncs the WAL before copying it and the database file before the WAL is
  reused, so a commit is on disk in one or the other. `execute(..., sync=False)` skips
  the sync for a row that reconciling at start would redo anyway (a container still being
  created, the exit of a container, whose shim is gone after a power loss); the WAL is
  sequential, so the next synced write makes it durable too.
- Threads: one connection per thread, made on first use (`threading.local`); a thread that
  has ended leaves its connection to the next new thread (the daemon serves every request
  on a thread of its own: without reuse it would open, and keep, a connection per
  request). WAL lets readers run alongside the one writer; `transaction()` starts with
  BEGIN IMMEDIATE so a writer takes the write lock up front and can't deadlock upgrading
  from a read. Don't pass a connection or a cursor from one thread to another (a
  connection passes to another thread only once the thread that used it has ended).
- Writers in one process queue on a lock of this object (`_write_lock`) rather than on
  SQLite's file lock: SQLite's busy handler retries by sleeping (1, 2, 5, ... 100 ms), so
  threads contending on the file lock would sleep far longer than the writes take; the
  in-process lock hands over on release. Between processes the busy timeout still applies.
- Processes: several may open the same file (SQLite locks it); migrations are safe to race.
- Errors: a constraint violation (unique key, foreign key, CHECK) inside `transaction()` or
  `execute()` becomes `Conflict` with SQLite's text; the transaction is rolled back.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyrt.errors import Conflict, SystemError_
from pyrt.metadata.schema import MIGRATIONS, Migration, current_version, migrate


class Database:
    def __init__(self, path: str | Path, *, migrations: Sequence[Migration] = MIGRATIONS,
                 timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._conns: list[sqlite3.Connection] = []
        self._owners: list[threading.Thread] = []  # the thread using _conns[i]
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.applied_migrations = migrate(self.connection(), migrations)

    # -- connections -----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as e:
            raise SystemError_(f"open metadata database {self.path}: {e}") from e
        conn.row_factory = sqlite3.Row
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if str(mode).lower() != "wal":
            conn.close()
            raise SystemError_(f"metadata database {self.path}: cannot use WAL (got {mode})")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")  # and _sync after each write
        conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's connection."""
        if self._closed:
            raise SystemError_(f"metadata database {self.path} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            me = threading.current_thread()
            with self._lock:
                free = next((i for i, t in enumerate(self._owners) if not t.is_alive()), None)
                if free is not None:
                    self._owners[free] = me
                    conn = self._conns[free]
            if conn is None:
                conn = self._connect()
                with self._lock:
                    self._conns.append(conn)
                    self._owners.append(me)
            elif conn.in_transaction:  # never left so by transaction(); be safe anyway
                conn.rollback()
            self._local.conn = conn
            self._local.depth = 0
        return conn

    def close(self) -> None:
        """Close every thread's connection. Call when no thread uses the database."""
        with self._lock:
            self._closed = True
            for conn in self._conns:
                conn.close()
            self._conns.clear()
            self._owners.clear()
        self._local = threading.local()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold this process's writer lock (reentrant: nested writes of one thread pass)."""
        if not self._write_lock.acquire(timeout=self.timeout_s):
            raise SystemError_(f"metadata database {self.path}: another writer held it for "
                               f"more than {self.timeout_s:g}s")  # fmt: skip
        try:
            yield
        finally:
            self._write_lock.release()

    def _sync(self) -> None:
        """Put what is committed on disk: fdatasync the WAL (see Durability above). Called
        outside the writer lock, and not inside a transaction (its end syncs)."""
        if getattr(self._local, "depth", 0):
            return
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # no WAL: it was checkpointed into the (synced) database file
        try:
            os.fdatasync(fd)
        except OSError as e:
            raise SystemError_(f"metadata database {self.path}: sync: {e}") from e
        finally:
            os.close(fd)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE); commits on success, rolls back on error.
        Nested use becomes a SAVEPOINT, so an inner failure undoes only the inner part."""
        with self._writing():
            yield from self._transaction()
        self._sync()

    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.connection()
        depth: int = self._local.depth
        savepoint = f"sp{depth}"
        conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {savepoint}")
        self._local.depth = depth + 1
        try:
            yield conn
        except BaseException as e:
            if depth == 0:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            else:
                conn.execute(f"ROLLBACK TO {savepoint}")
                conn.execute(f"RELEASE {savepoint}")
            if isinstance(e, sqlite3.IntegrityError):
                raise Conflict(f"metadata: {e}") from e
            raise
        else:
            try:
                conn.execute("COMMIT" if depth == 0 else f"RELEASE {savepoint}")
            except sqlite3.Error as e:
                if depth == 0 and conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.IntegrityError):
                    raise Conflict(f"metadata: {e}") from e
                raise
        finally:
            self._local.depth = depth

    # -- conveniences ----------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = (), *,
                sync: bool = True) -> sqlite3.Cursor:
        """One statement (its own transaction unless inside `transaction()`); on disk when
        it returns unless sync=False (see Durability)."""
        try:
            with self._writing():
                cur = self.connection().execute(sql, params)
        except sqlite3.IntegrityError as e:
            raise Conflict(f"metadata: {e}") from e
        if sync:
            self._sync()
        return cur

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return list(self.connection().execute(sql, params).fetchall())

    def query_one(self, sql: str,
                  params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.connection().execute(sql, params).fetchone()
        return row

    def schema_version(self) -> int:
        return current_version(self.connection())
