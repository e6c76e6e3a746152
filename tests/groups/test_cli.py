"""`kawa group` list / describe / reset-offsets / delete against a running broker."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer

from groups.helpers import SESSION_MS, create_topic, produce, unique, wait_until
from kawa.cli.main import main

pytestmark = pytest.mark.timeout(120)


def kawa(bootstrap: str, *args: str, ok: bool = True) -> Any:
    result = CliRunner().invoke(main, ["group", *args, "--bootstrap-server", bootstrap])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def kawa_json(bootstrap: str, *args: str) -> Any:
    return json.loads(kawa(bootstrap, *args, "--output", "json").output)


class RunningConsumer:
    """A confluent consumer polling in a thread, committing what it reads."""

    def __init__(self, bootstrap: str, group: str, topic: str, limit: int) -> None:
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "client.id": "cli-test-consumer",
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "session.timeout.ms": SESSION_MS,
        })
        self.consumer.subscribe([topic])
        self.count = 0
        self.limit = limit
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            if self.count >= self.limit:
                self.consumer.poll(0.1)  # stay in the group, read no further
                continue
            msg = self.consumer.poll(0.1)
            if msg is not None and not msg.error():
                self.count += 1
                self.consumer.commit(message=msg, asynchronous=False)
        self.consumer.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


def test_group_cli(group_broker):
    bootstrap, partitions = group_broker.bootstrap, 2
    topic, group = create_topic(bootstrap, partitions), unique("cli")
    produce(bootstrap, topic, partitions, 10, timestamp_ms=1_600_000_000_000)
    produce(bootstrap, topic, partitions, 10, start=10, timestamp_ms=1_700_000_000_000)
    consumer = RunningConsumer(bootstrap, group, topic, limit=12)
    try:
        wait_until(lambda: consumer.count >= 12, "12 records consumed")

        listed = kawa_json(bootstrap, "list")
        assert {"group": group, "state": "Stable", "simple": False} in listed

        def committed_12() -> Any:
            d = kawa_json(bootstrap, "describe", group)
            return d if sum(r["committed_offset"] or 0 for r in d["partitions"]) == 12 else None

        info = wait_until(committed_12, "12 offsets committed")
        assert info["state"] == "Stable" and info["assignor"] == "range"
        [member] = info["members"]
        assert member["client_id"] == "cli-test-consumer" and member["host"] == "/127.0.0.1"
        assert sorted(p["partition"] for p in member["partitions"]) == [0, 1]
        rows = {r["partition"]: r for r in info["partitions"]}
        assert all(rows[p]["end_offset"] == 10 for p in range(partitions))
        assert sum(r["lag"] for r in rows.values()) == 20 - 12
        assert all(r["member_id"] == member["member_id"] for r in rows.values())
        table = kawa(bootstrap, "describe", group).output
        assert "LAG" in table and "cli-test-consumer" in table and "total lag 8" in table

        refused = kawa(bootstrap, "reset-offsets", group, "--topic", topic, "--to-earliest",
                       ok=False)
        assert refused.exit_code != 0 and "active members" in refused.output
        refused = kawa(bootstrap, "delete", group, ok=False)
        assert refused.exit_code != 0 and "active members" in refused.output
    finally:
        consumer.close()

    def offsets() -> dict[int, int]:
        return {r["partition"]: r["committed_offset"]
                for r in kawa_json(bootstrap, "describe", group)["partitions"]}

    wait_until(lambda: kawa_json(bootstrap, "describe", group)["state"] == "Empty", "group empty")
    kawa(bootstrap, "reset-offsets", group, "--topic", topic, "--to-earliest")
    assert offsets() == {0: 0, 1: 0}
    kawa(bootstrap, "reset-offsets", group, "--topic", topic, "--to-latest")
    assert offsets() == {0: 10, 1: 10}
    kawa(bootstrap, "reset-offsets", group, "--topic", topic, "--to-offset", "3")
    assert offsets() == {0: 3, 1: 3}
    kawa(bootstrap, "reset-offsets", group, "--topic", topic, "--to-offset", "99")
    assert offsets() == {0: 10, 1: 10}  # clamped to the end of the log
    # The second half was produced with timestamp 1.7e12: each partition's 6th record.
    dry = kawa_json(bootstrap, "reset-offsets", group, "--topic", topic, "--to-datetime",
                    "2023-01-01T00:00:00+00:00", "--dry-run")
    assert dry["dry_run"] and [p["new_offset"] for p in dry["partitions"]] == [5, 5]
    assert offsets() == {0: 10, 1: 10}
    kawa(bootstrap, "reset-offsets", group, "--topic", topic, "--to-datetime",
         "2023-01-01T00:00:00+00:00")
    assert offsets() == {0: 5, 1: 5}
    bad = kawa(bootstrap, "reset-offsets", group, "--topic", topic, ok=False)
    assert bad.exit_code != 0 and "exactly one of" in bad.output
    missing = kawa(bootstrap, "reset-offsets", group, "--topic", "no-such-topic",
                   "--to-earliest", ok=False)
    assert missing.exit_code != 0 and "does not exist" in missing.output

    # A new consumer of the group starts at the reset offsets.
    fresh = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
    fresh.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 10 and time.monotonic() < deadline:
        msg = fresh.poll(0.5)
        if msg is not None and not msg.error():
            got.append((msg.partition(), msg.offset()))
    fresh.close()
    assert sorted(got) == [(p, o) for p in range(2) for o in range(5, 10)]

    assert "deleted" in kawa(bootstrap, "delete", group).output
    assert group not in [g["group"] for g in kawa_json(bootstrap, "list")]
    gone = kawa(bootstrap, "describe", group, ok=False)
    assert gone.exit_code != 0 and "does not exist" in gone.output
    gone = kawa(bootstrap, "delete", group, ok=False)
    assert gone.exit_code != 0 and "does not exist" in gone.output
