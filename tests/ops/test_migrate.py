"""Schema versions: only install and migrate create or upgrade a store; brokers refuse a
schema that is not theirs and say how to upgrade; migrate runs in maintenance."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from kawa.metadata.registry import AlreadyInstalled, StoreUnavailable
from kawa.metadata.sqlite import SCHEMA_VERSION, SqliteMetadataStore
from ops.helpers import Deployment, wait_until

pytestmark = pytest.mark.timeout(120)


def downgrade_to_2(store: Path) -> None:
    """Make the store what schema version 2 (before the lifecycle tables) looked like."""
    db = sqlite3.connect(store, isolation_level=None)
    db.execute("DROP TABLE deployment")
    db.execute("DROP TABLE brokers")
    db.execute("PRAGMA user_version = 2")
    db.close()


def test_open_neither_creates_nor_migrates(tmp_path: Path) -> None:
    path = tmp_path / "metadata.sqlite"
    with pytest.raises(StoreUnavailable) as e:
        SqliteMetadataStore.open(path)
    assert e.value.missing and not path.exists()
    SqliteMetadataStore.install(path, now_ms=1).close()
    with pytest.raises(AlreadyInstalled):
        SqliteMetadataStore.install(path, now_ms=2)
    downgrade_to_2(path)
    store = SqliteMetadataStore.open(path)
    assert store.stored_schema_version() == 2
    assert store.snapshot().lifecycle == "installed"  # a pre-3 store: no lifecycle row yet
    assert store.migrate() == list(range(3, SCHEMA_VERSION + 1))
    assert store.migrate() == []
    store.close()


def test_upgrade_an_old_store_in_maintenance(deployment: Deployment) -> None:
    d = deployment
    d.run("install", *d.where).ok()
    d.up()
    d.run("topic", "create", "kept", "-b", d.bootstrap).ok()
    p = Producer({"bootstrap.servers": d.bootstrap})
    for i in range(5):
        p.produce("kept", f"r{i}".encode())
    assert p.flush(10) == 0
    d.down()
    downgrade_to_2(d.data_dir / "metadata.sqlite")

    refused = d.run("up", *d.listen).failed()
    assert f"has schema version 2, this kawa needs {SCHEMA_VERSION}" in refused.err
    assert "`kawa maintenance enter --data-dir" in refused.err and "`kawa migrate" in refused.err
    refused = d.run("up", "--detach", *d.listen).failed()
    assert "schema version 2" in refused.err
    assert d.status()["store"]["schema_version"] == 2

    d.run("maintenance", "enter", *d.where).ok()
    refused = d.run("maintenance", "exit", *d.where).failed()
    assert "run `kawa migrate" in refused.err and "before leaving maintenance" in refused.err
    r = d.run("migrate", *d.where).ok()
    assert f"schema version 2 -> {SCHEMA_VERSION}" in r.out
    assert "nothing to migrate" in d.run("migrate", *d.where).ok().out
    d.run("maintenance", "exit", *d.where).ok()

    d.up()
    c = Consumer({"bootstrap.servers": d.bootstrap, "group.id": "kept",
                  "auto.offset.reset": "earliest"})
    c.subscribe(["kept"])
    got: list[bytes] = []

    def poll() -> int:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append(m.value())
        return len(got)

    try:
        wait_until(lambda: poll() >= 5, "the records from before the upgrade")
    finally:
        c.close()
    assert got == [f"r{i}".encode() for i in range(5)]
    d.down()


def test_brokers_refuse_a_schema_from_the_future(deployment: Deployment) -> None:
    d = deployment
    d.run("install", *d.where).ok()
    db = sqlite3.connect(d.data_dir / "metadata.sqlite", isolation_level=None)
    db.execute("PRAGMA user_version = 99")
    db.close()
    refused = d.run("up", *d.listen).failed()
    assert "schema version 99, newer than this kawa" in refused.err
    assert "upgrade kawa" in refused.err
    d.run("maintenance", "enter", *d.where).ok()
    assert "newer than this kawa" in d.run("migrate", *d.where).failed().err
