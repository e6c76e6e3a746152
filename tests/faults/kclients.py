"""confluent-kafka helpers with bounded waits: what a normal client sees of the broker."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

DEADLINE_S = 30.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def producer(bootstrap: str, **conf: object) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})


def consumer(bootstrap: str, **conf: object) -> Consumer:
    # group.id is required by librdkafka; nothing here uses the group (assign() only).
    # check.crcs: every batch read back is CRC-checked by the client too.
    return Consumer({"bootstrap.servers": bootstrap, "group.id": unique("faults"),
                     "enable.auto.commit": False, "enable.auto.offset.store": False,
                     "auto.offset.reset": "earliest", "check.crcs": True, **conf})


def produce_values(bootstrap: str, topic: str, values: list[bytes], partition: int = 0,
                   deadline_s: float = DEADLINE_S, **conf: object) -> list[int]:
    """Produce `values` to one partition and flush; returns their offsets (all must succeed)."""
    p = producer(bootstrap, **conf)
    reports: list[tuple[KafkaError | None, int]] = []
    for value in values:
        p.produce(topic, value=value, partition=partition,
                  on_delivery=lambda err, msg: reports.append((err, msg.offset())))
    remaining = p.flush(deadline_s)
    assert remaining == 0, f"{remaining} records undelivered after {deadline_s}s"
    errors = [err for err, _ in reports if err is not None]
    assert not errors, f"delivery errors: {errors[:3]}"
    return [offset for _, offset in reports]


def consume_values(bootstrap: str, topic: str, count: int, partition: int = 0,
                   start: int = OFFSET_BEGINNING, deadline_s: float = DEADLINE_S,
                   settle_s: float = 0.3) -> list[tuple[int, bytes | None]]:
    """(offset, value) of records from `start` until `count` arrived, plus settle_s more
    to catch any extra; fails on any consumer error or at the deadline."""
    c = consumer(bootstrap)
    got: list[tuple[int, bytes | None]] = []
    try:
        c.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + deadline_s
        settle_until: float | None = None
        while True:
            now = time.monotonic()
            if len(got) >= count and settle_until is None:
                settle_until = now + settle_s
            if settle_until is not None and now >= settle_until:
                return got
            assert now < deadline, (f"consumed {len(got)} of {count} records from "
                                    f"{topic}-{partition} within {deadline_s}s")
            for m in c.consume(num_messages=10_000, timeout=0.1):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(m.error())
                got.append((m.offset(), m.value()))
    finally:
        c.close()


def first_consumer_error(bootstrap: str, topic: str, partition: int = 0,
                         deadline_s: float = 15.0) -> KafkaError | None:
    """The first error a consumer reports for the partition (None if none in time)."""
    c = consumer(bootstrap)
    try:
        c.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            for m in c.consume(num_messages=100, timeout=0.2):
                err = m.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    return err
                if err is None:
                    raise AssertionError(f"got a record at offset {m.offset()} from a "
                                         "partition that must not be served")
        return None
    finally:
        c.close()


def assert_round_trip(bootstrap: str, topic: str, n: int = 10) -> None:
    """A normal client can produce n records and read exactly them back."""
    values = [f"{topic}-record-{i}".encode() for i in range(n)]
    offsets = produce_values(bootstrap, topic, values)
    first = offsets[0]
    assert offsets == list(range(first, first + n)), f"offsets not contiguous: {offsets}"
    got = consume_values(bootstrap, topic, n, start=first)
    assert got == list(zip(offsets, values)), f"read back {got!r:.500}"
