"""kafka-python 3.0 (ApiVersions v4, Metadata v13, Produce v9, Fetch v12, ListOffsets v11).

Its producer is idempotent by default (InitProducerId + sequence numbers)."""

from __future__ import annotations

import time
import warnings

import pytest

with warnings.catch_warnings():
    # kafka-python 3.0 loads its protocol schemas with deprecated importlib.resources calls
    warnings.filterwarnings("ignore", "(open_text|read_text) is deprecated", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from .helpers import (
    DEADLINE_S,
    Rec,
    assert_partition_log,
    assert_topic_holds,
    by_partition,
    create_topic,
    norm_headers,
    sample_records,
)

pytestmark = pytest.mark.timeout(90)
CREATE_TIME = 0


def produce(bootstrap: str, topic: str, records: list[Rec], **conf) -> list[Rec]:
    p = KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **conf)
    try:
        futs = [p.send(topic, value=r.value, key=r.key, partition=r.partition,
                       timestamp_ms=r.timestamp, headers=list(r.headers)) for r in records]
        p.flush(timeout=DEADLINE_S)
        metas = [f.get(timeout=DEADLINE_S) for f in futs]
    finally:
        p.close(timeout=10)
    out = []
    for r, m in zip(records, metas):
        assert m.timestamp == r.timestamp, m
        out.append(Rec(r.key, r.value, r.headers, r.timestamp, m.partition, m.offset))
    for part, recs in by_partition(out).items():
        assert [r.offset for r in recs] == list(range(len(recs))), f"p{part} acked offsets"
    return out


def consume(bootstrap: str, topic: str, expected: dict[int, int],
            deadline_s: float = DEADLINE_S) -> dict[int, list[Rec]]:
    """assign() + seek_to_beginning(), no group; iterate until the counts are reached, the
    consumer goes idle for consumer_timeout_ms, or the deadline passes."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=5000)
    got: dict[int, list[Rec]] = {p: [] for p in expected}
    deadline = time.monotonic() + deadline_s
    try:
        c.assign([TopicPartition(topic, p) for p in expected])
        c.seek_to_beginning()
        for m in c:
            assert m.timestamp_type == CREATE_TIME, m
            got[m.partition].append(Rec(m.key, m.value, norm_headers(m.headers), m.timestamp,
                                        m.partition, m.offset))
            if all(len(got[p]) >= n for p, n in expected.items()) or time.monotonic() > deadline:
                break
    finally:
        c.close()
    counts = {p: len(v) for p, v in got.items()}
    assert all(counts[p] >= n for p, n in expected.items()), (
        f"kafka-python consumed {counts}, expected {expected}")
    return got


def _roundtrip(broker, partitions: int, records: list[Rec], **conf) -> None:
    topic = create_topic(broker.bootstrap, partitions=partitions)
    acked = produce(broker.bootstrap, topic, records, **conf)
    want = by_partition(acked)
    got = consume(broker.bootstrap, topic, {p: len(v) for p, v in want.items()})
    for p in want:
        assert_partition_log(got[p], want[p], where=f"kafka-python p{p}")
    # an independent client (librdkafka) sees the same log and watermarks
    assert_topic_holds(broker.bootstrap, topic, acked, partitions=partitions)


@pytest.mark.parametrize("conf", [{}, {"enable_idempotence": False, "acks": 1}],
                         ids=["default-idempotent", "non-idempotent-acks1"])
def test_kafka_python_produce_consume(broker, conf):
    # keyed: the partitioner spreads them (kafka-python rejects null header values)
    records = sample_records(1500, prefix="kp", null_header_values=False)
    _roundtrip(broker, 3, records, **conf)


@pytest.mark.parametrize("codec", ["gzip", "lz4", "zstd", "snappy"])
def test_kafka_python_compression(broker, codec):
    records = sample_records(1500, prefix=codec, partitions=2, null_header_values=False)
    _roundtrip(broker, 2, records, compression_type=codec, linger_ms=20)
