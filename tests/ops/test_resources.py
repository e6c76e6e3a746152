"""`kawa topic | partition | produce | consume | broker` against a running deployment.
The commands run in-process (click's CliRunner) for speed; they talk to the broker
process over the Kafka protocol like any client."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from kawa.cli.main import main
from ops.helpers import Deployment

pytestmark = pytest.mark.timeout(120)


def cli(d: Deployment, *args: str, input: str | None = None, code: int = 0) -> Any:
    """Run kawa in-process; `code`: the exit code expected (1: an error, 2: a usage error)."""
    result = CliRunner().invoke(main, [*args, "-b", d.bootstrap], input=input)
    assert result.exit_code == code, (args, result.output, result.exception)
    return result


def cli_json(d: Deployment, *args: str, input: str | None = None) -> Any:
    return json.loads(cli(d, *args, "--output", "json", input=input).output)


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_topic_create_describe_alter_delete(running: Deployment) -> None:
    t = name("t")
    out = cli(running, "topic", "create", t, "--partitions", "3", "--config",
              "retention.ms=60000").output
    assert f"created topic {t}" in out
    assert {"topic": t, "partitions": 3, "replication_factor": 1} in cli_json(
        running, "topic", "list")
    (described,) = cli_json(running, "topic", "describe", t)
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    assert described["configs"] == {"retention.ms": "60000"}
    assert all(p["leader"] == 0 and p["records"] == 0 for p in described["partitions"])

    out = cli(running, "topic", "alter", t, "--config", "retention.ms=120000",
              "--delete-config", "cleanup.policy", "--partitions", "4").output
    assert "retention.ms=120000" in out and "3 -> 4 partitions" in out
    out = cli(running, "partition", "add", t, "--count", "2").output
    assert "4 -> 6 partitions" in out
    (described,) = cli_json(running, "topic", "describe", t)
    assert len(described["partitions"]) == 6
    assert described["configs"] == {"retention.ms": "120000"}
    table = cli(running, "topic", "describe", t).output
    assert f"topic {t}" in table and "retention.ms=120000" in table

    assert f"deleted topic {t}" in cli(running, "topic", "delete", t).output
    assert t not in {r["topic"] for r in cli_json(running, "topic", "list")}


def test_bulk_creation_with_prefix_and_range(running: Deployment) -> None:
    prefix = name("stream") + "-"
    out = cli(running, "topic", "create", "--prefix", prefix, "--range", "0-10",
              "--partitions", "2").output
    assert "created 11 of 11 topics" in out
    listed = {r["topic"]: r["partitions"] for r in cli_json(running, "topic", "list")}
    assert {f"{prefix}{n}": 2 for n in range(11)}.items() <= listed.items()
    again = cli_json(running, "topic", "create", "--prefix", prefix, "--range", "9-12",
                     "--if-not-exists")
    assert [r["status"] for r in again] == ["exists", "exists", "created", "created"]
    bad = cli(running, "topic", "create", "--prefix", prefix, "--range", "5-2", code=2)
    assert "expected FIRST-LAST" in bad.output


def test_produce_and_consume_lines(running: Deployment) -> None:
    t = name("lines")
    cli(running, "topic", "create", t, "--partitions", "2")
    out = cli(running, "produce", t, "--key", "k", "--header", "source=test",
              "--header", "n=1", input="alpha\nbeta\ngamma\n").output
    assert f"produced 3 records to {t}" in out
    report = cli_json(running, "produce", t, "--key-separator", ":", input="a:1\nb:2\nnokey\n")
    assert report["records"] == 3 and report["errors"] == []

    records = [json.loads(line) for line in cli(
        running, "consume", t, "--from-beginning", "--count", "6", "--timeout", "10",
        "--output", "json").output.splitlines()]
    by_value = {r["value"]: r for r in records}
    assert set(by_value) == {"alpha", "beta", "gamma", "1", "2", "nokey"}
    assert by_value["alpha"]["key"] == "k"
    assert by_value["alpha"]["headers"] == {"source": "test", "n": "1"}
    assert (by_value["1"]["key"], by_value["2"]["key"], by_value["nokey"]["key"]) == (
        "a", "b", None)
    assert all(r["timestamp"] > 0 and r["partition"] in (0, 1) for r in records)

    text = cli(running, "consume", t, "--from-beginning", "--count", "6", "--timeout",
               "10").output
    line = next(x for x in text.splitlines() if x.endswith("value=alpha"))
    assert line.startswith("partition=") and " offset=" in line and " timestamp=" in line
    assert " key=k " in line and "headers=source:test,n:1" in line


def test_consume_from_an_offset_a_timestamp_and_the_end(running: Deployment) -> None:
    t = name("pos")
    cli(running, "topic", "create", t)
    p = Producer({"bootstrap.servers": running.bootstrap})
    base = int(time.time() * 1000) - 100_000
    for i in range(10):
        p.produce(t, f"v{i}".encode(), timestamp=base + i * 1000)
    assert p.flush(10) == 0

    values = cli(running, "consume", t, "--offset", "7", "--count", "3", "--timeout", "10",
                 "--output", "value").output.split()
    assert values == ["v7", "v8", "v9"]
    values = cli(running, "consume", t, "--timestamp", str(base + 4500), "--count", "5",
                 "--timeout", "10", "--output", "value").output.split()
    assert values == ["v5", "v6", "v7", "v8", "v9"]
    short = cli(running, "consume", t, "--from-end", "--count", "1", "--timeout", "1", code=1)
    assert "received 0 of 1 records" in short.output
    conflict = CliRunner().invoke(main, ["consume", t, "--offset", "1", "--from-beginning"])
    assert conflict.exit_code == 2 and "give one of" in conflict.output


def test_consume_with_a_group_resumes(running: Deployment) -> None:
    t, group = name("grp"), name("g")
    cli(running, "topic", "create", t)
    cli(running, "produce", t, input="".join(f"m{i}\n" for i in range(6)))
    first = cli(running, "consume", t, "--group", group, "--from-beginning", "--count", "4",
                "--timeout", "15", "--output", "value").output.split()
    assert first == ["m0", "m1", "m2", "m3"]
    rest = cli(running, "consume", t, "--group", group, "--count", "2", "--timeout", "15",
               "--output", "value").output.split()
    assert rest == ["m4", "m5"]


def test_broker_list_from_metadata_and_store(running: Deployment) -> None:
    (node,) = cli_json(running, "broker", "list", "--source", "metadata")
    assert node == {"id": 0, "address": running.bootstrap, "rack": None, "controller": True}
    result = CliRunner().invoke(main, ["broker", "list", "--source", "store", *running.where,
                                       "--output", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert (row["id"], row["address"], row["state"]) == (0, running.bootstrap, "running")
