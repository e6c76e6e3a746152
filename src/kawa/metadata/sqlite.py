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

from kawa.metadata.store import CommittedOffset, TopicExists, TopicRecord, UnknownTopic

SCHEMA_VERSION = 2

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
}


class SqliteMetadataStore:
    schema_version = SCHEMA_VERSION

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
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
