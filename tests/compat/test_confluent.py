"""confluent-kafka (librdkafka 2.16) producer and assign()-based consumer against the broker.

No consumer groups: the consumer only uses assign() from the beginning.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError, TopicPartition

from .helpers import (
    TS_BASE,
    Rec,
    assert_deliveries,
    assert_partition_log,
    assert_topic_holds,
    confluent_consume,
    confluent_consumer,
    confluent_produce,
    create_topic,
    make_producer,
    norm_headers,
    sample_records,
    watermarks,
)

pytestmark = pytest.mark.timeout(90)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.mark.heavy
@pytest.mark.timeout(300)
def test_100k_records_over_three_partitions(broker):
    topic = create_topic(broker.bootstrap, partitions=3)
    records = sample_records(100_000, prefix="big")  # keyed: the partitioner spreads them
    res = confluent_produce(broker.bootstrap, topic, records, timeout=120)
    assert_deliveries(res)
    counts = {p: sum(1 for r in res.sent if r.partition == p) for p in range(3)}
    assert all(counts.values()), f"producer used only some partitions: {counts}"
    assert_topic_holds(broker.bootstrap, topic, res.sent, partitions=3, deadline_s=120)


@pytest.mark.parametrize("idempotence", [False, True], ids=["plain", "idempotent"])
@pytest.mark.parametrize("codec", CODECS)
def test_compression_codecs(broker, codec, idempotence):
    topic = create_topic(broker.bootstrap, partitions=3)
    # linger so that each produce request carries multi-record (compressed) batches
    records = sample_records(3000, prefix=f"{codec}", partitions=3)
    res = confluent_produce(broker.bootstrap, topic, records, conf={
        "compression.type": codec, "enable.idempotence": idempotence, "linger.ms": 20})
    assert_deliveries(res)
    assert_topic_holds(broker.bootstrap, topic, res.sent, partitions=3)


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks(broker, acks):
    topic = create_topic(broker.bootstrap, partitions=3)
    records = sample_records(2000, prefix=f"acks{acks}", partitions=3)
    # The producer stays open while we read: with acks=0 "delivered" only means "written
    # to the socket", and closing right away would race the broker reading the request.
    producer = make_producer(broker.bootstrap, {"acks": acks, "enable.idempotence": False})
    res = confluent_produce(broker.bootstrap, topic, records, producer=producer)
    assert not res.errors(), res.errors()[:3]
    if acks != "0":  # acks=0 gets no response, so no offsets in the delivery reports
        assert_deliveries(res)
    assert_topic_holds(broker.bootstrap, topic, res.sent, partitions=3)
    del producer


def test_producer_assigned_timestamps_preserved(broker):
    """Records without an explicit timestamp keep the CreateTime the producer stamped."""
    topic = create_topic(broker.bootstrap, partitions=1)
    records = [Rec(b"k%d" % i, b"v%d" % i, partition=0) for i in range(200)]
    res = confluent_produce(broker.bootstrap, topic, records)
    assert_deliveries(res)
    stamped = [d.timestamp for d in res.deliveries]
    assert all(d.tstype == TIMESTAMP_CREATE_TIME and d.timestamp > TS_BASE
               for d in res.deliveries)
    got = confluent_consume(broker.bootstrap, topic, {0: 200})[0]
    assert [r.timestamp for r in got] == stamped
    assert [(r.offset, r.key, r.value) for r in got] == [
        (i, b"k%d" % i, b"v%d" % i) for i in range(200)]


def test_keys_and_headers_preserved(broker):
    topic = create_topic(broker.bootstrap, partitions=1)
    all_bytes = bytes(range(256))
    records = [
        Rec(all_bytes, all_bytes[::-1], (("bin", all_bytes),), TS_BASE, 0),
        Rec(None, b"null key", (("a", b"1"), ("a", b"2"), ("a", b"1")), TS_BASE + 1, 0),
        Rec(b"", b"empty key", (("empty", b""), ("null", None)), TS_BASE + 2, 0),
        Rec(b"tombstone", None, (), TS_BASE + 3, 0),
        Rec("ключ-🔑".encode(), "значение".encode(), (("名前", "値".encode()),), TS_BASE + 4, 0),
        Rec(b"many-headers", b"x",
            tuple((f"h{i:03d}", b"%d" % i) for i in range(100)), TS_BASE + 5, 0),
        Rec(b"big-header", b"y", (("blob", b"z" * 100_000),), TS_BASE + 6, 0),
        Rec(b"old", b"epoch-ish timestamp", (), 1, 0),
    ]
    res = confluent_produce(broker.bootstrap, topic, records)
    assert_deliveries(res)
    assert_topic_holds(broker.bootstrap, topic, res.sent, partitions=1)


def test_large_record_within_default_limit(broker):
    """A ~900 KB record fits the default max.message.bytes and comes back intact."""
    topic = create_topic(broker.bootstrap, partitions=1)
    big = bytes(range(256)) * (900_000 // 256)
    records = [Rec(b"before", b"small", (), TS_BASE, 0), Rec(b"big", big, (), TS_BASE + 1, 0),
               Rec(b"after", b"small", (), TS_BASE + 2, 0)]
    res = confluent_produce(broker.bootstrap, topic, records,
                            conf={"compression.type": "none", "linger.ms": 0})
    assert_deliveries(res)
    assert_topic_holds(broker.bootstrap, topic, res.sent, partitions=1)


def test_record_over_max_message_bytes_rejected(broker):
    topic = create_topic(broker.bootstrap, partitions=1, config={"max.message.bytes": "10000"})
    conf = {"compression.type": "none", "enable.idempotence": False, "linger.ms": 0,
            "retries": 0}
    first = confluent_produce(broker.bootstrap, topic, [Rec(b"a", b"small-1", (), TS_BASE, 0)],
                              conf)
    assert_deliveries(first)

    big = confluent_produce(broker.bootstrap, topic,
                            [Rec(b"big", b"x" * 20_000, (), TS_BASE + 1, 0)], conf)
    (d,) = big.deliveries
    assert d.err is not None and d.err.code() == KafkaError.MSG_SIZE_TOO_LARGE, (
        f"oversized record: delivery error {d.err}, expected MSG_SIZE_TOO_LARGE")
    assert watermarks(broker.bootstrap, topic, 0) == (0, 1), "rejected record was written"

    after = confluent_produce(broker.bootstrap, topic,
                              [Rec(b"b", b"small-2", (), TS_BASE + 2, 0)], conf)
    assert_deliveries(after, first_offsets={0: 1})
    got = confluent_consume(broker.bootstrap, topic, {0: 2}, settle_s=1.0)[0]
    assert_partition_log(got, first.sent + after.sent)


def test_consume_from_offset_inside_a_batch(broker):
    """assign() at an offset in the middle of a stored batch starts exactly there."""
    topic = create_topic(broker.bootstrap, partitions=1)
    records = sample_records(100, prefix="mid", partitions=1)
    res = confluent_produce(broker.bootstrap, topic, records,
                            conf={"linger.ms": 50, "compression.type": "lz4"})
    assert_deliveries(res)
    for start in (37, 99):
        got = confluent_consume(broker.bootstrap, topic, {0: 100 - start}, start={0: start},
                                settle_s=0.5)[0]
        assert_partition_log(got, res.sent[start:], first_offset=start, where=f"from {start}")


def test_out_of_range_offset_resets_to_earliest(broker):
    topic = create_topic(broker.bootstrap, partitions=1)
    res = confluent_produce(broker.bootstrap, topic, sample_records(20, partitions=1))
    assert_deliveries(res)
    got = confluent_consume(broker.bootstrap, topic, {0: 20}, start={0: 1000}, settle_s=0.5,
                            conf={"auto.offset.reset": "earliest"})[0]
    assert_partition_log(got, res.sent)


def test_small_fetch_limits_still_make_progress(broker):
    """Batches larger than max.partition.fetch.bytes / fetch.max.bytes are still returned
    whole (KIP-74), so a consumer with small limits is never stuck."""
    topic = create_topic(broker.bootstrap, partitions=1)
    records = [Rec(b"k%d" % i, bytes([i]) * 50_000, (), TS_BASE + i, 0) for i in range(6)]
    res = confluent_produce(broker.bootstrap, topic, records,
                            conf={"linger.ms": 50, "compression.type": "none"})
    assert_deliveries(res)
    got = confluent_consume(broker.bootstrap, topic, {0: 6}, settle_s=0.5, conf={
        "max.partition.fetch.bytes": 10_000, "fetch.max.bytes": 10_000,
        "message.max.bytes": 10_000})[0]
    assert_partition_log(got, res.sent)


def test_waiting_consumer_gets_records_produced_later(broker):
    """A consumer polling an empty partition receives records produced afterwards."""
    topic = create_topic(broker.bootstrap, partitions=1)
    c = confluent_consumer(broker.bootstrap)
    got = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        assert c.consume(num_messages=10, timeout=1.0) == []  # nothing there yet: waits
        producer = make_producer(broker.bootstrap)
        sent = []
        for round_ in range(5):
            recs = [Rec(b"k", b"round %d #%d" % (round_, i), (), TS_BASE + 10 * round_ + i, 0)
                    for i in range(10)]
            res = confluent_produce(broker.bootstrap, topic, recs, producer=producer)
            assert_deliveries(res, first_offsets={0: len(sent)})
            sent += res.sent
            deadline = time.monotonic() + 10
            while len(got) < len(sent) and time.monotonic() < deadline:
                for m in c.consume(num_messages=100, timeout=0.2):
                    assert m.error() is None, m.error()
                    got.append(Rec(m.key(), m.value(), norm_headers(m.headers()),
                                   m.timestamp()[1], m.partition(), m.offset()))
            assert len(got) == len(sent), f"round {round_}: got {len(got)} of {len(sent)}"
    finally:
        c.close()
    assert_partition_log(got, sent)
