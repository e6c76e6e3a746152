"""The SQLite metadata store: cluster state for a one-host deployment.

Every write is its own transaction (``isolation_level=None`` plus explicit
BEGIN IMMEDIATE where a read-modify-write must be atomic), and the file runs
in WAL mode with synchronous=FULL: metadata changes are rare and must survive
a crash like acknowledged records do.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from kawa.metadata.sqlite_registry import SqliteRegistry
from kawa.metadata.store import CommittedOffset, TopicExists, TopicRecord, UnknownTopic

SCHEMA_VERSION = 3

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE topics (
        name TEXT PRIMARY KEY,
        topic_id TEXT NOT NULL UNIQUE,
        partitions INTEGER NOT NULL CHECK (partitions > 0),
        configs TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO counters (name, value) VALUES ('producer_id', 1000);
    """,
    # Consumer group committed offsets (OffsetCommit), one row per group and partition.
    2: """
    CREATE TABLE group_offsets (
        group_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        committed_offset INTEGER NOT NULL,
        leader_epoch INTEGER NOT NULL,
        metadata TEXT NOT NULL,
        commit_timestamp_ms INTEGER NOT NULL,
        PRIMARY KEY (group_id, topic, partition)
    ) WITHOUT ROWID;
    """,
    # The deployment's lifecycle state and the broker registry (kawa.metadata.registry).
    # IF NOT EXISTS: entering maintenance creates `deployment` on a pre-3 store.
    3: """
    CREATE TABLE IF NOT EXISTS deployment (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT OR IGNORE INTO deployment (key, value) VALUES ('lifecycle', 'installed');
    CREATE TABLE brokers (
        broker_id INTEGER PRIMARY KEY,
        address TEXT NOT NULL,
        state TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at_ms INTEGER NOT NULL,
        heartbeat_at_ms INTEGER NOT NULL,
        partitions_led INTEGER NOT NULL DEFAULT 0,
        http_address TEXT NOT NULL DEFAULT ''
    );
    """,
}


class SqliteMetadataStore(SqliteRegistry):
    schema_version = SCHEMA_VERSION

    def __init__(
        self, path: Path, *, create: bool = True, migrate: bool = True, busy_timeout_s: float = 5.0
    ) -> None:
        """Open or create, and migrate: for in-process use (tests, tools). kawa's brokers and
        CLI use ``open()`` (never creates or migrates) and ``install()``: only `kawa install`
        and `kawa migrate` create or upgrade a deployment's schema (kawa.metadata.sqlite_registry).
        """
        self.path = path
        self._db = self._connect(path, create, busy_timeout_s)
        if migrate:
            self._migrate()

    def _migrate(self) -> None:
        current = self._db.execute("PRAGMA user_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"metadata store {self.path} has schema version {current}, newer than this "
                f"kawa ({SCHEMA_VERSION}); upgrade kawa"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            self._db.execute("BEGIN IMMEDIATE")
            for statement in _MIGRATIONS[version].split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {version}")
            self._db.execute("COMMIT")

    def list_topics(self) -> list[TopicRecord]:
        rows = self._db.execute(
            "SELECT name, topic_id, partitions, configs FROM topics ORDER BY name"
        ).fetchall()
        return [TopicRecord(n, uuid.UUID(t), p, json.loads(c)) for n, t, p, c in rows]

    def create_topic(self, record: TopicRecord) -> None:
        try:
            self._db.execute(
                "INSERT INTO topics (name, topic_id, partitions, configs) VALUES (?, ?, ?, ?)",
                (record.name, str(record.topic_id), record.partitions, json.dumps(record.configs)),
            )
        except sqlite3.IntegrityError as e:
            raise TopicExists(record.name) from e

    def delete_topic(self, name: str) -> None:
        if self._db.execute("DELETE FROM topics WHERE name = ?", (name,)).rowcount == 0:
            raise UnknownTopic(name)

    def set_partitions(self, name: str, partitions: int) -> None:
        cursor = self._db.execute(
            "UPDATE topics SET partitions = ? WHERE name = ?", (partitions, name)
        )
        if cursor.rowcount == 0:
            raise UnknownTopic(name)

    def set_configs(self, name: str, configs: dict[str, str]) -> None:
        cursor = self._db.execute(
            "UPDATE topics SET configs = ? WHERE name = ?", (json.dumps(configs), name)
        )
        if cursor.rowcount == 0:
            raise UnknownTopic(name)

    def next_producer_id(self) -> int:
        row = self._db.execute(
            "UPDATE counters SET value = value + 1 WHERE name = 'producer_id' RETURNING value"
        ).fetchone()
        return int(row[0])

    def commit_offsets(self, offsets: Sequence[CommittedOffset]) -> None:
        rows = [
            (o.group_id, o.topic, o.partition, o.offset, o.leader_epoch, o.metadata,
             o.commit_timestamp_ms)
            for o in offsets
        ]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO group_offsets (group_id, topic, partition, "
                "committed_offset, leader_epoch, metadata, commit_timestamp_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def list_committed_offsets(self) -> list[CommittedOffset]:
        rows = self._db.execute(
            "SELECT group_id, topic, partition, committed_offset, leader_epoch, metadata, "
            "commit_timestamp_ms FROM group_offsets ORDER BY group_id, topic, partition"
        ).fetchall()
        return [CommittedOffset(*row) for row in rows]

    def delete_committed_offsets(
        self, group_id: str, partitions: Iterable[tuple[str, int]] | None = None
    ) -> None:
        if partitions is None:
            self._db.execute("DELETE FROM group_offsets WHERE group_id = ?", (group_id,))
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "DELETE FROM group_offsets WHERE group_id = ? AND topic = ? AND partition = ?",
                [(group_id, topic, partition) for topic, partition in partitions],
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
