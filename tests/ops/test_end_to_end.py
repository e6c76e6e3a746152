"""A deployment's whole life through the real `kawa` command, with confluent-kafka clients:
install -> up --detach -> produce/consume -> down -> up (data still there) ->
maintenance enter -> migrate -> exit -> delete (directory gone)."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer

from ops.helpers import Deployment, wait_until

pytestmark = pytest.mark.timeout(120)


def produce(bootstrap: str, topic: str, count: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    for i in range(count):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 2)
    assert p.flush(20) == 0


def consume_all(bootstrap: str, topic: str, count: int) -> list[str]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-{topic}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    values: list[str] = []
    try:
        wait_until(lambda: _poll_into(c, values) >= count, f"{count} records consumed")
    finally:
        c.close()
    return sorted(values, key=lambda v: int(v[1:]))


def _poll_into(c: Consumer, values: list[str]) -> int:
    m = c.poll(0.2)
    if m is not None and not m.error():
        values.append(m.value().decode())
    return len(values)


def test_a_deployment_from_install_to_delete(deployment: Deployment) -> None:
    d = deployment
    r = d.run("install", *d.where).ok()
    assert f"installed a deployment at {d.data_dir}" in r.out
    assert (d.data_dir / "metadata.sqlite").is_file() and (d.data_dir / "logs").is_dir()

    again = d.run("install", *d.where).failed()
    assert "already installed" in again.err and str(d.data_dir) in again.err
    assert "kawa up" in again.err and "kawa delete" in again.err

    r = d.up()
    assert "running in the background" in r.out and f"listening on {d.bootstrap}" in r.out
    assert (d.data_dir / "broker-0.pid").is_file() and (d.data_dir / "broker-0.log").is_file()
    status = d.status()
    assert status["state"] == "running" and status["store"]["schema_version"] >= 3
    (broker,) = status["brokers"]
    assert (broker["id"], broker["address"], broker["state"]) == (0, d.bootstrap, "running")
    assert broker["http"] == f"127.0.0.1:{d.http_port}"

    d.run("topic", "create", "orders", "--partitions", "2", "-b", d.bootstrap).ok()
    produce(d.bootstrap, "orders", 20)
    assert consume_all(d.bootstrap, "orders", 20) == [f"v{i}" for i in range(20)]
    wait_until(lambda: d.status()["brokers"][0]["partitions_led"] == 2, "heartbeat reports 2 led")

    refused = d.run("maintenance", "enter", *d.where).failed()
    assert "brokers are running" in refused.err and "kawa down" in refused.err
    refused = d.run("up", *d.listen).failed()
    assert "already running" in refused.err and "kawa down" in refused.err
    refused = d.run("delete", "--yes", *d.where).failed()
    assert "kawa down" in refused.err

    r = d.down()
    assert "broker 0 (pid" in r.out and "stopped in" in r.out
    status = d.status()
    assert status["state"] == "installed" and status["brokers"][0]["state"] == "stopped"
    assert not (d.data_dir / "broker-0.pid").exists()
    assert "nothing to stop" in d.down().out  # twice: a no-op, exit 0

    d.up()
    assert consume_all(d.bootstrap, "orders", 20) == [f"v{i}" for i in range(20)]
    d.down()

    assert "in maintenance" in d.run("maintenance", "enter", *d.where).ok().out
    assert d.status()["state"] == "maintenance"
    refused = d.run("up", *d.listen).failed()
    assert "in maintenance" in refused.err and "kawa maintenance exit" in refused.err
    assert "nothing to migrate" in d.run("migrate", *d.where).ok().out
    assert "left maintenance" in d.run("maintenance", "exit", *d.where).ok().out
    refused = d.run("migrate", *d.where).failed()
    assert "only in maintenance" in refused.err

    refused = d.run("delete", *d.where, input="n\n").failed()
    assert "not deleted" in refused.err and "--yes" in refused.err
    assert d.data_dir.exists()
    r = d.run("delete", "--yes", *d.where).ok()
    assert f"deleted the deployment at {d.data_dir}" in r.out
    assert not d.data_dir.exists()
    assert d.status()["state"] == "absent"
    assert "nothing to delete" in d.run("delete", "--yes", *d.where).ok().out


def test_one_command_start_on_an_empty_directory(deployment: Deployment) -> None:
    """`kawa up` with no config on a fresh directory installs the embedded default first.
    (The listen address is a flag here only so that tests do not collide on 9092.)"""
    d = deployment
    r = d.run("up", "--detach", "--listen", d.bootstrap)
    r.ok()
    assert "installed a deployment at kawa-data" in r.out
    assert (d.root / "kawa-data" / "metadata.sqlite").is_file()
    status = d.run("status", "-o", "json").ok().json()
    assert status["state"] == "running" and status["brokers"][0]["http"] is None  # --listen: off
    assert status["config"] == "embedded default"
    d.run("down").ok()


def test_delete_keeps_files_it_did_not_create(deployment: Deployment) -> None:
    d = deployment
    d.run("install", *d.where).ok()
    (d.data_dir / "notes.txt").write_text("mine")
    r = d.run("delete", "--yes", *d.where).ok()
    assert "notes.txt" in r.out and (d.data_dir / "notes.txt").exists()
    assert not (d.data_dir / "metadata.sqlite").exists()
