"""SQLite side of the deployment registry: opening without creating, install, migrate,
lifecycle state and broker rows. Mixed into ``SqliteMetadataStore``.

Opening an installed store (``open``) never creates a file and never migrates:
only ``install`` (``kawa install``, and ``kawa up`` on a fresh directory with
the embedded default configuration) creates the schema, and only ``migrate``
(``kawa migrate``, in maintenance) upgrades it. A missing file, a missing
directory and a lock held by another process raise ``StoreUnavailable``, which
a starting broker waits out (``kawa.metadata.wait``).

The ``deployment`` table (key/value: lifecycle, installed_at_ms) is created by
migration 3 with IF NOT EXISTS, and also when a pre-3 store enters
maintenance, so that an old store can be put in maintenance to be migrated.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from kawa.metadata.registry import (
    BROKER_RUNNING,
    BROKER_STARTING,
    LIFECYCLE_INSTALLED,
    AlreadyInstalled,
    BrokerRecord,
    DeploymentSnapshot,
    DeploymentUpdate,
    StoreUnavailable,
)

_DEPLOYMENT_TABLE = (
    "CREATE TABLE IF NOT EXISTS deployment (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
)
_BROKER_COLUMNS = (
    "broker_id, address, state, host, pid, started_at_ms, heartbeat_at_ms, partitions_led, "
    "http_address"
)


class StoreUnusable(Exception):
    """The file is there and readable but is not a kawa metadata store."""


def _unavailable(path: Path, error: sqlite3.Error) -> StoreUnavailable:
    text = str(error)
    if "locked" in text or "busy" in text:
        return StoreUnavailable(str(path), "locked by another process",
                                "wait for it to finish, or stop the process holding the file")
    if not path.parent.exists():
        return StoreUnavailable(str(path), f"directory {path.parent} does not exist", missing=True)
    if not path.exists():
        return StoreUnavailable(str(path), "no store file", missing=True)
    return StoreUnavailable(str(path), f"cannot open: {text}",
                            "check the file's permissions and the disk")


class SqliteRegistry:
    path: Path
    schema_version: int
    _db: sqlite3.Connection

    def _migrate(self) -> None: ...  # provided by SqliteMetadataStore

    # -- opening -------------------------------------------------------------

    @staticmethod
    def _connect(path: Path, create: bool, busy_timeout_s: float) -> sqlite3.Connection:
        """A connection in WAL mode with synchronous=FULL; StoreUnavailable when it can't be."""
        if not create and not path.exists():
            raise _unavailable(path, sqlite3.OperationalError("unable to open database file"))
        uri = f"file:{quote(str(path))}?mode={'rwc' if create else 'rw'}"
        try:
            db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                                 timeout=busy_timeout_s)
        except sqlite3.OperationalError as e:
            raise _unavailable(path, e) from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as e:
            db.close()
            raise _unavailable(path, e) from None
        except sqlite3.DatabaseError as e:
            db.close()
            raise StoreUnusable(f"{path} is not a kawa metadata store ({e}); move it aside "
                                "or restore it from a backup") from None
        return db

    @classmethod
    def open(cls, path: Path, *, busy_timeout_s: float = 5.0, durable: bool = True) -> Self:
        """Open an installed store as it is (no create, no migrate). ``durable=False``:
        commits are not fsynced (a connection used only for heartbeats)."""
        store = cls(  # type: ignore[call-arg]
            path, create=False, migrate=False, busy_timeout_s=busy_timeout_s
        )
        if store.stored_schema_version() == 0:
            store.close()  # type: ignore[attr-defined]
            raise StoreUnavailable(str(path), "empty file, not installed", missing=True)
        if not durable:
            store._db.execute("PRAGMA synchronous=NORMAL")
        return store

    @classmethod
    def install(cls, path: Path, now_ms: int) -> Self:
        """Create the store with the current schema; AlreadyInstalled if the file exists."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.touch(exist_ok=False)
        except FileExistsError:
            raise AlreadyInstalled(f"{path} exists") from None
        try:
            store = cls(path, create=True, migrate=True)  # type: ignore[call-arg]
            store._db.execute(
                "INSERT OR REPLACE INTO deployment (key, value) VALUES ('installed_at_ms', ?)",
                (str(now_ms),),
            )
        except BaseException:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            raise
        return store

    def set_busy_timeout(self, seconds: float) -> None:
        """How long a statement waits for another connection's lock before failing."""
        self._db.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")

    # -- schema --------------------------------------------------------------

    def stored_schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> list[int]:
        before = self.stored_schema_version()
        self._migrate()
        return list(range(before + 1, self.stored_schema_version() + 1))

    # -- lifecycle and brokers -----------------------------------------------

    def _tables(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _read_snapshot(self) -> DeploymentSnapshot:
        tables = self._tables()
        values: dict[str, str] = {}
        if "deployment" in tables:
            values = dict(self._db.execute("SELECT key, value FROM deployment").fetchall())
        brokers: tuple[BrokerRecord, ...] = ()
        if "brokers" in tables:
            rows = self._db.execute(
                f"SELECT {_BROKER_COLUMNS} FROM brokers ORDER BY broker_id"
            ).fetchall()
            brokers = tuple(BrokerRecord(*row) for row in rows)
        return DeploymentSnapshot(
            lifecycle=values.get("lifecycle", LIFECYCLE_INSTALLED),
            schema_version=self.stored_schema_version(),
            installed_at_ms=int(values.get("installed_at_ms", 0)),
            brokers=brokers,
        )

    def snapshot(self) -> DeploymentSnapshot:
        self._db.execute("BEGIN")
        try:
            return self._read_snapshot()
        finally:
            self._db.execute("COMMIT")

    def update_deployment(
        self, decide: Callable[[DeploymentSnapshot], DeploymentUpdate]
    ) -> DeploymentSnapshot:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            snapshot = self._read_snapshot()
            update = decide(snapshot)
            if update.lifecycle is not None:
                self._db.execute(_DEPLOYMENT_TABLE)
                self._db.execute(
                    "INSERT OR REPLACE INTO deployment (key, value) VALUES ('lifecycle', ?)",
                    (update.lifecycle,),
                )
            if update.broker is not None:
                b = update.broker
                self._db.execute(
                    f"INSERT OR REPLACE INTO brokers ({_BROKER_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (b.broker_id, b.address, b.state, b.host, b.pid, b.started_at_ms,
                     b.heartbeat_at_ms, b.partitions_led, b.http_address),
                )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return snapshot

    def heartbeat(self, broker_id: int, pid: int, now_ms: int, partitions_led: int) -> bool:
        cursor = self._db.execute(
            "UPDATE brokers SET heartbeat_at_ms = ?, partitions_led = ? "
            "WHERE broker_id = ? AND pid = ? AND state IN (?, ?)",
            (now_ms, partitions_led, broker_id, pid, BROKER_STARTING, BROKER_RUNNING),
        )
        return cursor.rowcount == 1

    def set_broker_state(self, broker_id: int, pid: int, state: str, now_ms: int) -> None:
        self._db.execute(
            "UPDATE brokers SET state = ?, heartbeat_at_ms = ? WHERE broker_id = ? AND pid = ?",
            (state, now_ms, broker_id, pid),
        )

    def describe(self) -> dict[str, Any]:
        """Engine and location, for `kawa status`."""
        size = sum(
            p.stat().st_size for p in (Path(f"{self.path}{s}") for s in ("", "-wal")) if p.exists()
        )
        return {"engine": "sqlite", "location": str(self.path), "size_bytes": size}
