"""aiokafka, kafka-python and kcat consumer groups: join, share partitions, consume,
commit, and a later member of the group resumes from the committed offsets."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient

from groups.helpers import SESSION_MS, create_topic, produce, unique, wait_until

pytestmark = pytest.mark.timeout(120)
KCAT = "/usr/bin/kcat"


def committed(bootstrap: str, group: str) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    return {tp.partition: tp.offset for tp in result.result(30).topic_partitions}


def expected(partitions: int, start: int, end: int) -> list[tuple[int, int]]:
    return sorted((i % partitions, i // partitions) for i in range(start, end))


# -- aiokafka (JoinGroup v5, OffsetCommit v3, Heartbeat v1) -----------------------------


def test_aiokafka_group_consume_commit_resume(group_broker):
    from aiokafka import AIOKafkaConsumer

    bootstrap, partitions = group_broker.bootstrap, 4
    topic, group = create_topic(bootstrap, partitions), unique("aio")
    produce(bootstrap, topic, partitions, 100)

    def consumer():
        return AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                session_timeout_ms=SESSION_MS, heartbeat_interval_ms=500)

    async def run_two() -> tuple[list, list]:
        a, b = consumer(), consumer()
        await a.start()
        await b.start()
        got: list[tuple[int, int]] = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < 100 and time.monotonic() < deadline:
                for c in (a, b):
                    batches = await c.getmany(timeout_ms=200)
                    for records in batches.values():
                        got.extend((r.partition, r.offset) for r in records)
                    if batches:
                        await c.commit()
            owned = [{tp.partition for tp in c.assignment()} for c in (a, b)]
        finally:
            await a.stop()
            await b.stop()
        return got, owned

    async def resume() -> list:
        c = consumer()
        await c.start()
        got: list[tuple[int, int]] = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < 8 and time.monotonic() < deadline:
                for records in (await c.getmany(timeout_ms=500)).values():
                    got.extend((r.partition, r.offset) for r in records)
            await c.commit()
        finally:
            await c.stop()
        return got

    got, owned = asyncio.run(run_two())
    assert sorted(got) == expected(partitions, 0, 100)
    assert owned[0] and owned[1] and not owned[0] & owned[1]  # both members got a share
    assert owned[0] | owned[1] == set(range(partitions))
    assert committed(bootstrap, group) == {p: 25 for p in range(partitions)}
    produce(bootstrap, topic, partitions, 8, start=100)
    assert sorted(asyncio.run(resume())) == expected(partitions, 100, 108)


# -- kafka-python (JoinGroup v7, OffsetCommit v8, OffsetFetch v8, LeaveGroup v5) ----------


def test_kafka_python_group_consume_commit_resume(group_broker):
    from kafka import KafkaConsumer

    bootstrap, partitions = group_broker.bootstrap, 4
    topic, group = create_topic(bootstrap, partitions), unique("kp")
    produce(bootstrap, topic, partitions, 100)

    results: dict[str, list] = {"a": [], "b": []}
    owned: dict[str, set] = {}

    def run(name: str, stop: threading.Event) -> None:
        c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                          auto_offset_reset="earliest", enable_auto_commit=False,
                          session_timeout_ms=SESSION_MS, heartbeat_interval_ms=500)
        try:
            while not stop.is_set():
                batches = c.poll(timeout_ms=200)
                for records in batches.values():
                    results[name].extend((r.partition, r.offset) for r in records)
                if batches:
                    c.commit()
                owned[name] = {tp.partition for tp in c.assignment()}
        finally:
            c.close()

    stop = threading.Event()
    threads = [threading.Thread(target=run, args=(n, stop)) for n in ("a", "b")]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(results["a"]) + len(results["b"]) >= 100, "100 records consumed")
        wait_until(lambda: len(owned) == 2 and all(owned.values())
                   and owned["a"] | owned["b"] == set(range(partitions))
                   and not owned["a"] & owned["b"], "both members own a share")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert sorted(results["a"] + results["b"]) == expected(partitions, 0, 100)
    assert committed(bootstrap, group) == {p: 25 for p in range(partitions)}

    produce(bootstrap, topic, partitions, 8, start=100)
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      session_timeout_ms=SESSION_MS, consumer_timeout_ms=5000)
    try:
        resumed = sorted((r.partition, r.offset) for r in c)
    finally:
        c.close()
    assert resumed == expected(partitions, 100, 108)


# -- kcat -G (librdkafka 2.0.2 balanced consumer) ---------------------------------------


@pytest.mark.skipif(shutil.which(KCAT) is None, reason=f"{KCAT} not installed")
def test_kcat_balanced_consumer(group_broker):
    bootstrap, partitions = group_broker.bootstrap, 3
    topic, group = create_topic(bootstrap, partitions), unique("kcat")
    produce(bootstrap, topic, partitions, 30)

    def kcat_group(count: int) -> list[tuple[int, int]]:
        cp = subprocess.run(
            [KCAT, "-b", bootstrap, "-G", group, "-q", "-c", str(count), "-f", "%p %o\n",
             "-X", "auto.offset.reset=earliest", "-X", f"session.timeout.ms={SESSION_MS}",
             topic],
            capture_output=True, timeout=60, check=True)
        return sorted(tuple(map(int, line.split())) for line in cp.stdout.decode().splitlines())

    assert kcat_group(30) == expected(partitions, 0, 30)
    wait_until(lambda: committed(bootstrap, group) == {p: 10 for p in range(partitions)},
               "kcat's offsets committed")
    produce(bootstrap, topic, partitions, 6, start=30)
    assert kcat_group(6) == expected(partitions, 30, 36)
