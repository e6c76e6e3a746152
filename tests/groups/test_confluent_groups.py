"""confluent-kafka (librdkafka 2.16: JoinGroup v5, SyncGroup v3, OffsetCommit v9) consumer
groups against a kawa process, with the consumers in their own processes.

Every consumer commits each record synchronously right after processing it
(consumer_proc.py), so a record is delivered twice only when a consumer dies
between the two steps, and never skipped.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient

from groups.conftest import GROUP_FLAGS
from groups.helpers import (
    SESSION_MS,
    ConsumerProcess,
    create_topic,
    generations,
    produce,
    settled_assignment,
    unique,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)


def committed(bootstrap: str, group: str) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    return {tp.partition: tp.offset for tp in result.result(30).topic_partitions}


def all_records(consumers: list[ConsumerProcess]) -> list[tuple[int, int]]:
    return [r for c in consumers for r in c.records()]


def expected(partitions: int, total: int) -> set[tuple[int, int]]:
    """(partition, offset) of `total` records produced round-robin from the start."""
    return {(i % partitions, i // partitions) for i in range(total)}


@pytest.fixture
def consumers():
    started: list[ConsumerProcess] = []
    yield started
    for c in started:
        if c.alive():
            c.kill9()


def test_every_record_once_while_a_member_joins_and_one_leaves(group_broker, consumers):
    bootstrap, partitions = group_broker.bootstrap, 6
    topic, group = create_topic(bootstrap, partitions), unique("g")
    produce(bootstrap, topic, partitions, 300)
    for k in range(3):
        consumers.append(ConsumerProcess(bootstrap, group, topic, f"c{k}"))
    wait_until(lambda: settled_assignment(consumers, partitions), "3 consumers share 6 partitions")
    wait_until(lambda: len(all_records(consumers)) >= 100, "100 records consumed")

    consumers.append(ConsumerProcess(bootstrap, group, topic, "c3"))  # a 4th joins
    wait_until(lambda: settled_assignment(consumers, partitions) and consumers[3].assignment(),
               "4 consumers share 6 partitions")
    produce(bootstrap, topic, partitions, 300, start=300)

    leaving = consumers[1]
    assert leaving.stop() == 0  # closes: leaves the group
    remaining = [c for c in consumers if c is not leaving]
    wait_until(lambda: settled_assignment(remaining, partitions), "3 consumers share 6 again")
    produce(bootstrap, topic, partitions, 300, start=600)

    wait_until(lambda: set(all_records(consumers)) == expected(partitions, 900),
               "all 900 records consumed")
    time.sleep(1.0)  # anything delivered twice would show up now
    counts = Counter(all_records(consumers))
    assert sum(counts.values()) == 900, [r for r, n in counts.items() if n > 1][:10]
    failed = [e for c in consumers for e in c.snapshot() if e["ev"] == "commit_failed"]
    assert not failed
    assert committed(bootstrap, group) == {p: 150 for p in range(partitions)}


def test_cooperative_sticky_moves_only_what_it_must(group_broker, consumers):
    """Incremental rebalancing (KIP-429) is the clients' business: the broker relays
    the leader's assignment untouched, and two rounds settle every move."""
    bootstrap, partitions = group_broker.bootstrap, 6
    topic, group = create_topic(bootstrap, partitions), unique("coop")
    produce(bootstrap, topic, partitions, 120)
    args = ("--assignor", "cooperative-sticky")
    consumers.extend(ConsumerProcess(bootstrap, group, topic, f"c{k}", *args) for k in range(2))
    wait_until(lambda: settled_assignment(consumers, partitions), "2 consumers share 6")
    kept = [c.assignment() for c in consumers]
    consumers.append(ConsumerProcess(bootstrap, group, topic, "c2", *args))
    wait_until(lambda: settled_assignment(consumers, partitions) and consumers[2].assignment(),
               "3 consumers share 6")
    for before, c in zip(kept, consumers[:2], strict=True):
        assert c.assignment() <= before  # sticky: the old members only gave partitions away
        assert not [e for e in c.snapshot() if e["ev"] == "revoked" and e.get("lost")]
    assert consumers[0].stop() == 0
    wait_until(lambda: settled_assignment(consumers[1:], partitions), "2 consumers share 6 again")
    produce(bootstrap, topic, partitions, 120, start=120)
    wait_until(lambda: set(all_records(consumers)) == expected(partitions, 240),
               "all 240 records consumed")
    assert committed(bootstrap, group) == {p: 40 for p in range(partitions)}


def test_kill9_member_partitions_move_after_session_timeout(broker_factory, consumers):
    broker = broker_factory(*GROUP_FLAGS, name="kill9")
    bootstrap, partitions = broker.bootstrap, 6
    topic, group = create_topic(bootstrap, partitions), unique("g")
    produce(bootstrap, topic, partitions, 600)
    for k in range(3):
        consumers.append(ConsumerProcess(bootstrap, group, topic, f"c{k}", "--delay-ms", "15"))
    wait_until(lambda: settled_assignment(consumers, partitions), "3 consumers share 6 partitions")
    victim = consumers[1]
    wait_until(lambda: len(victim.records()) >= 10, "the victim consumed something")
    orphaned = victim.assignment()
    victim.kill9()
    killed_at = time.monotonic()
    survivors = [consumers[0], consumers[2]]
    wait_until(lambda: settled_assignment(survivors, partitions),
               "the survivors own every partition", timeout=SESSION_MS / 1000 + 20)
    moved_after = time.monotonic() - killed_at
    # No LeaveGroup came: only the session timeout (6 s, less the time since the
    # victim's last heartbeat) could move its partitions.
    assert moved_after >= SESSION_MS / 1000 - 1.5, moved_after
    assert orphaned

    wait_until(lambda: set(all_records(consumers)) >= expected(partitions, 600),
               "every record consumed (none skipped)", timeout=60)
    time.sleep(0.5)
    counts = Counter(all_records(consumers))
    twice = {r for r, n in counts.items() if n > 1}
    # Only what the victim processed but had not committed comes again: at most
    # one record per partition it owned.
    assert twice <= set(victim.records()), twice
    assert len(twice) <= len(orphaned)
    assert generations(broker.log_text(), group)[-1] >= 2


def test_consumers_resume_from_committed_offsets_across_a_broker_restart(broker_factory,
                                                                          consumers):
    broker = broker_factory(*GROUP_FLAGS, name="restart")
    bootstrap, partitions = broker.bootstrap, 4
    topic, group = create_topic(bootstrap, partitions), unique("g")
    produce(bootstrap, topic, partitions, 200)
    consumers.extend(ConsumerProcess(bootstrap, group, topic, f"c{k}") for k in range(2))
    wait_until(lambda: set(all_records(consumers)) == expected(partitions, 200),
               "the first 200 records consumed")
    wait_until(lambda: committed(bootstrap, group) == {p: 50 for p in range(partitions)},
               "their offsets committed")

    broker.restart()  # graceful stop and start: committed offsets come from the store
    produce(bootstrap, topic, partitions, 200, start=200)
    wait_until(lambda: set(all_records(consumers)) == expected(partitions, 400),
               "the next 200 records consumed after the restart", timeout=60)
    time.sleep(0.5)
    counts = Counter(all_records(consumers))
    assert sum(counts.values()) == 400, "a record before the committed offsets came again"
    assert committed(bootstrap, group) == {p: 100 for p in range(partitions)}

    # A new consumer in the same group starts where the group left off.
    for c in consumers:
        assert c.stop() == 0
    broker.restart()
    produce(bootstrap, topic, partitions, 8, start=400)
    fresh = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "session.timeout.ms": SESSION_MS})
    fresh.subscribe([topic])
    got = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < 8 and time.monotonic() < deadline:
            msg = fresh.poll(0.5)
            if msg is not None and not msg.error():
                got.append((msg.partition(), msg.offset()))
    finally:
        fresh.close()
    assert sorted(got) == sorted(expected(partitions, 408) - expected(partitions, 400))


def test_static_member_restart_within_session_timeout_keeps_generation(group_broker,
                                                                        consumers):
    bootstrap, partitions = group_broker.bootstrap, 4
    topic, group = create_topic(bootstrap, partitions), unique("static")
    produce(bootstrap, topic, partitions, 40)
    a = ConsumerProcess(bootstrap, group, topic, "a", "--instance-id", "instance-a")
    b = ConsumerProcess(bootstrap, group, topic, "b", "--instance-id", "instance-b")
    consumers.extend([a, b])
    wait_until(lambda: settled_assignment([a, b], partitions), "a and b share the partitions")
    wait_until(lambda: set(all_records([a, b])) == expected(partitions, 40), "40 consumed")
    owned_by_a = a.assignment()
    before = generations(group_broker.log_text(), group)
    b_assignments = b.count("assigned")

    a.kill9()  # a static member sends no LeaveGroup; restart it at once, same instance id
    a2 = ConsumerProcess(bootstrap, group, topic, "a2", "--instance-id", "instance-a")
    consumers.append(a2)
    wait_until(lambda: a2.assignment() == owned_by_a, "the restarted member got its partitions")
    produce(bootstrap, topic, partitions, 40, start=40)
    wait_until(lambda: set(all_records([a, b, a2])) >= expected(partitions, 80), "80 consumed")
    time.sleep(SESSION_MS / 1000 + 1)  # past the old session: nothing may expire
    assert generations(group_broker.log_text(), group) == before, "a rebalance happened"
    assert b.count("assigned") == b_assignments and b.count("revoked") == 0
    assert b.assignment() | a2.assignment() == set(range(partitions))
