"""The deployment registry in the SQLite store: read-decide-write, heartbeat fencing,
liveness of broker rows."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from kawa.deploy.operations import HOSTNAME, classify
from kawa.metadata.registry import BrokerRecord, DeploymentUpdate
from kawa.metadata.sqlite import SqliteMetadataStore


@pytest.fixture
def store(tmp_path: Path):
    s = SqliteMetadataStore.install(tmp_path / "metadata.sqlite", now_ms=1000)
    yield s
    s.close()


def record(pid: int, host: str = "elsewhere", heartbeat: int = 1000) -> BrokerRecord:
    return BrokerRecord(0, "127.0.0.1:9092", "running", host, pid, 1000, heartbeat)


def test_installed_store_snapshot(store: SqliteMetadataStore) -> None:
    snap = store.snapshot()
    assert (snap.lifecycle, snap.installed_at_ms, snap.brokers) == ("installed", 1000, ())
    assert snap.schema_version == store.schema_version


def test_a_refusing_decision_writes_nothing(store: SqliteMetadataStore) -> None:
    def refuse(snapshot):
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        store.update_deployment(refuse)
    store.update_deployment(lambda s: DeploymentUpdate(lifecycle="maintenance",
                                                       broker=record(11)))
    snap = store.snapshot()
    assert snap.lifecycle == "maintenance" and snap.broker(0) == record(11)


def test_heartbeat_is_fenced_by_pid(store: SqliteMetadataStore) -> None:
    store.update_deployment(lambda s: DeploymentUpdate(broker=record(11)))
    assert store.heartbeat(0, 11, 5000, 7)
    assert store.snapshot().broker(0).partitions_led == 7
    store.update_deployment(lambda s: DeploymentUpdate(broker=record(12)))  # another process
    assert not store.heartbeat(0, 11, 6000, 7)
    store.set_broker_state(0, 12, "stopped", 7000)
    assert not store.heartbeat(0, 12, 8000, 7)  # a stopped row is not revived


def test_a_pre_3_store_can_enter_maintenance(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    SqliteMetadataStore.install(path, now_ms=1).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TABLE deployment")
    db.execute("DROP TABLE brokers")
    db.execute("PRAGMA user_version = 2")
    db.close()
    store = SqliteMetadataStore.open(path)
    store.update_deployment(lambda s: DeploymentUpdate(lifecycle="maintenance"))
    assert store.snapshot().lifecycle == "maintenance"
    store.migrate()
    assert store.snapshot().lifecycle == "maintenance"  # migration 3 keeps the state
    store.close()


def test_liveness_of_rows() -> None:
    session = 10_000
    assert classify(record(1, heartbeat=95_000), 100_000, session) == "running"
    assert classify(record(1, heartbeat=80_000), 100_000, session) == "dead"
    dead_pid = record(2**22 + 7, host=HOSTNAME, heartbeat=99_000)
    assert classify(dead_pid, 100_000, session) == "dead"  # fresh heartbeat, no process
    own = record(os.getpid(), host=HOSTNAME, heartbeat=99_000)
    assert classify(own, 100_000, session) == "dead"  # never this process's own old row
    stopped = BrokerRecord(0, "a:1", "stopped", HOSTNAME, 1, 0, 0)
    assert classify(stopped, 100_000, session) == "stopped"
