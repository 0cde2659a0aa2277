"""The metadata schema, as an ordered list of migrations.

A database records the steps it has taken in `schema_version` (one row per step). Opening
a database applies, in order, only the steps newer than its highest version, each in its
own transaction (SQLite DDL is transactional: a step lands whole or not at all). A database
newer than this code is refused rather than guessed at.

Rules for adding a step: append, never edit a released one; give it the next version; make
it a list of SQL statements or a function of the connection (for data rewrites). A step
runs with foreign keys ON; a step that must rebuild a table (SQLite's 12-step ALTER dance)
should copy data into the new table rather than rely on disabling them.

Schema v1 (images and layers; containers come in a later step):

    images        id (config digest = image ID) PK, manifest/index digests, config JSON,
                  platform, size, timestamps
    tags          name (full reference "docker.io/library/busybox:latest") PK -> images;
                  RESTRICT: an image with tags can't be deleted until it is untagged
    repo_digests  name ("docker.io/library/busybox@sha256:...") PK -> images; CASCADE
    snapshots     chain_id PK, diff_id, parent -> snapshots (RESTRICT: no orphaned child),
                  size, refcount (kept by triggers on image_layers)
    image_layers  (image_id, position) PK -> images CASCADE; chain_id -> snapshots RESTRICT;
                  the compressed blob digest/media type/size in the content store

An image lists its chain (position 0 = bottom) in image_layers, so every ancestor of its
top layer is referenced, and a snapshot's refcount is the number of images using it. A
snapshot with refcount 0 and no children may be removed; the blobs to keep in the content
store are images.id, manifest_digest, index_digest and image_layers.blob_digest.

Schema v2 (containers):

    containers      id (64 hex) PK, name UNIQUE (no leading slash), image_id -> images
                    RESTRICT, the create options (config/host config JSON, API form), the
                    OCI spec, state (creating/created/running/paused/restarting/exited/
                    dead/removing) with pid, exit code, error, OOM flag, start/finish
                    times, restart count, whether a user stopped it, health (JSON), seq
                    (creation order, for before/since filters)
    exec_instances  id PK, container_id -> containers CASCADE, config JSON, running, pid,
                    exit code

Schema v3 (networks):

    networks        id (64 hex) PK, name UNIQUE, driver (bridge/host/null), the Linux bridge,
                    subnet, gateway, ip range, internal, attachable, MTU, options/labels/IPAM
                    as given (JSON), predefined (bridge, host, none: never removed)
    endpoints       (container_id -> containers CASCADE, network_id -> networks CASCADE) PK;
                    endpoint id, aliases, the IP asked for, the IP and MAC while the
                    container runs (UNIQUE per network), interface names, connect order
    published_ports container_id -> containers CASCADE, host ip/port, protocol, container
                    port: the host ports a running container holds (random ones included),
                    so a restarted daemon restores the same rules
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyrt.errors import FailedPrecondition, SystemError_

Step = Sequence[str] | Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    step: Step

    def apply(self, conn: sqlite3.Connection) -> None:
        if callable(self.step):
            self.step(conn)
        else:
            for sql in self.step:
                conn.execute(sql)


V1_IMAGES = Migration(
    1,
    "images, tags, repo digests, snapshots and image layers",
    (
        """CREATE TABLE images (
            id                  TEXT PRIMARY KEY,
            manifest_digest     TEXT,
            manifest_media_type TEXT,
            index_digest        TEXT,
            config_json         TEXT NOT NULL,
            created             TEXT,
            architecture        TEXT NOT NULL,
            os                  TEXT NOT NULL,
            variant             TEXT NOT NULL DEFAULT '',
            size                INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0),
            added_at            REAL NOT NULL
        )""",
        "CREATE INDEX images_manifest ON images(manifest_digest)",
        """CREATE TABLE tags (
            name       TEXT PRIMARY KEY,
            repository TEXT NOT NULL,
            image_id   TEXT NOT NULL REFERENCES images(id) ON DELETE RESTRICT,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX tags_image ON tags(image_id)",
        "CREATE INDEX tags_repository ON tags(repository)",
        """CREATE TABLE repo_digests (
            name       TEXT PRIMARY KEY,
            repository TEXT NOT NULL,
            image_id   TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
        )""",
        "CREATE INDEX repo_digests_image ON repo_digests(image_id)",
        """CREATE TABLE snapshots (
            chain_id   TEXT PRIMARY KEY,
            diff_id    TEXT NOT NULL,
            parent     TEXT REFERENCES snapshots(chain_id) ON DELETE RESTRICT,
            size       INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0),
            refcount   INTEGER NOT NULL DEFAULT 0 CHECK (refcount >= 0),
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX snapshots_parent ON snapshots(parent)",
        """CREATE TABLE image_layers (
            image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            position    INTEGER NOT NULL CHECK (position >= 0),
            chain_id    TEXT NOT NULL REFERENCES snapshots(chain_id) ON DELETE RESTRICT,
            blob_digest TEXT,
            media_type  TEXT,
            blob_size   INTEGER CHECK (blob_size IS NULL OR blob_size >= 0),
            PRIMARY KEY (image_id, position)
        )""",
        "CREATE INDEX image_layers_chain ON image_layers(chain_id)",
        "CREATE INDEX image_layers_blob ON image_layers(blob_digest)",
        """CREATE TRIGGER image_layers_ref AFTER INSERT ON image_layers BEGIN
            UPDATE snapshots SET refcount = refcount + 1 WHERE chain_id = NEW.chain_id;
        END""",
        """CREATE TRIGGER image_layers_unref AFTER DELETE ON image_layers BEGIN
            UPDATE snapshots SET refcount = refcount - 1 WHERE chain_id = OLD.chain_id;
        END""",
        """CREATE TRIGGER image_layers_move AFTER UPDATE OF chain_id ON image_layers BEGIN
            UPDATE snapshots SET refcount = refcount - 1 WHERE chain_id = OLD.chain_id;
            UPDATE snapshots SET refcount = refcount + 1 WHERE chain_id = NEW.chain_id;
        END""",
    ),
)

V2_CONTAINERS = Migration(
    2,
    "containers and exec instances",
    (
        # image_id RESTRICT: an image a container uses can't be deleted (only untagged)
        """CREATE TABLE containers (
            id               TEXT PRIMARY KEY CHECK (length(id) = 64),
            name             TEXT NOT NULL UNIQUE,
            image_id         TEXT NOT NULL REFERENCES images(id) ON DELETE RESTRICT,
            image_name       TEXT NOT NULL DEFAULT '',
            created          TEXT NOT NULL,
            state            TEXT NOT NULL CHECK (state IN ('creating', 'created', 'running',
                             'paused', 'restarting', 'exited', 'dead', 'removing')),
            path             TEXT NOT NULL DEFAULT '',
            args_json        TEXT NOT NULL DEFAULT '[]',
            config_json      TEXT NOT NULL,
            host_config_json TEXT NOT NULL,
            spec_json        TEXT NOT NULL DEFAULT '{}',
            pid              INTEGER NOT NULL DEFAULT 0,
            exit_code        INTEGER NOT NULL DEFAULT 0,
            error            TEXT NOT NULL DEFAULT '',
            oom_killed       INTEGER NOT NULL DEFAULT 0,
            started_at       TEXT NOT NULL DEFAULT '',
            finished_at      TEXT NOT NULL DEFAULT '',
            restart_count    INTEGER NOT NULL DEFAULT 0,
            manually_stopped INTEGER NOT NULL DEFAULT 0,
            health_json      TEXT,
            seq              INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX containers_image ON containers(image_id)",
        "CREATE INDEX containers_seq ON containers(seq)",
        """CREATE TABLE exec_instances (
            id           TEXT PRIMARY KEY,
            container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
            config_json  TEXT NOT NULL,
            running      INTEGER NOT NULL DEFAULT 0,
            pid          INTEGER NOT NULL DEFAULT 0,
            exit_code    INTEGER,
            created_at   REAL NOT NULL
        )""",
        "CREATE INDEX exec_instances_container ON exec_instances(container_id)",
    ),
)

V3_NETWORKS = Migration(
    3,
    "networks, endpoints and published ports",
    (
        """CREATE TABLE networks (
            id           TEXT PRIMARY KEY CHECK (length(id) = 64),
            name         TEXT NOT NULL UNIQUE,
            driver       TEXT NOT NULL,
            created      TEXT NOT NULL,
            bridge       TEXT NOT NULL DEFAULT '',
            subnet       TEXT NOT NULL DEFAULT '',
            gateway      TEXT NOT NULL DEFAULT '',
            ip_range     TEXT NOT NULL DEFAULT '',
            internal     INTEGER NOT NULL DEFAULT 0,
            attachable   INTEGER NOT NULL DEFAULT 0,
            mtu          INTEGER NOT NULL DEFAULT 0,
            options_json TEXT NOT NULL DEFAULT '{}',
            labels_json  TEXT NOT NULL DEFAULT '{}',
            ipam_json    TEXT NOT NULL DEFAULT '{}',
            predefined   INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE endpoints (
            container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
            network_id   TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
            endpoint_id  TEXT NOT NULL,
            position     INTEGER NOT NULL DEFAULT 0,
            aliases_json TEXT NOT NULL DEFAULT '[]',
            requested_ip TEXT NOT NULL DEFAULT '',
            ip_address   TEXT NOT NULL DEFAULT '',
            mac_address  TEXT NOT NULL DEFAULT '',
            ifname       TEXT NOT NULL DEFAULT '',
            host_ifname  TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (container_id, network_id)
        )""",
        "CREATE INDEX endpoints_network ON endpoints(network_id)",
        "CREATE UNIQUE INDEX endpoints_ip ON endpoints(network_id, ip_address) "
        "WHERE ip_address != ''",
        """CREATE TABLE published_ports (
            container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
            host_ip      TEXT NOT NULL,
            host_port    INTEGER NOT NULL,
            proto        TEXT NOT NULL,
            ctr_port     INTEGER NOT NULL,
            PRIMARY KEY (container_id, host_ip, host_port, proto)
        )""",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (V1_IMAGES, V2_CONTAINERS, V3_NETWORKS)


def check_migrations(migrations: Sequence[Migration]) -> None:
    """Versions must be 1, 2, 3, ... in order."""
    for i, m in enumerate(migrations, start=1):
        if m.version != i:
            raise ValueError(
                f"migration list out of order: position {i} holds version {m.version}"
            )


_CREATE_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  REAL NOT NULL
)"""


def current_version(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if row is None:
        return 0
    (version,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(version)


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Bring the database up to the last migration; returns the versions applied now.

    `conn` must be in autocommit mode (isolation_level=None). Safe against a concurrent
    migrator: each step re-reads the version inside its own write transaction.
    """
    check_migrations(migrations)
    latest = migrations[-1].version if migrations else 0
    conn.execute(_CREATE_VERSION_TABLE)
    have = current_version(conn)
    if have > latest:
        raise FailedPrecondition(
            f"metadata database schema version {have} is newer than this pyrt supports "
            f"({latest}); upgrade pyrt"
        )
    applied: list[int] = []
    for m in migrations:
        if m.version <= have:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if current_version(conn) >= m.version:  # someone else got there first
                conn.execute("COMMIT")
                continue
            m.apply(conn)
            conn.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (m.version, m.description, time.time()),
            )
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise SystemError_(
                    f"metadata migration {m.version} ({m.description}) failed: {e}"
                ) from e
            raise
        applied.append(m.version)
    return applied
