"""confluent-kafka (librdkafka 2.16) producer and assign()-based consumer against the broker.

No consumer groups: the consumer only uses assign() from the beginning.
"""

from __future__ import annotations

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError

from .helpers import (TS_BASE, Rec, assert_deliveries, assert_partition_log, assert_topic_holds,
                      confluent_consume, confluent_produce, create_topic, sample_records,
                      watermarks)

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
    res = confluent_produce(broker.bootstrap, topic, records,
                            conf={"acks": acks, "enable.idempotence": False})
    assert not res.errors(), res.errors()[:3]
    if acks != "0":  # acks=0 gets no response, so no offsets in the delivery reports
        assert_deliveries(res)
    assert_topic_holds(broker.bootstrap, topic, res.sent, partitions=3)


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
