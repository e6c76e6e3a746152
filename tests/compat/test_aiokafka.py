"""aiokafka 0.14 (ApiVersions v0, Produce v7, Fetch v11, ListOffsets v3): producer and a
group-less consumer (assign + seek_to_beginning)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

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
CREATE_TIME = 0  # aiokafka's timestamp_type for CreateTime


async def produce(bootstrap: str, topic: str, records: list[Rec], **conf) -> list[Rec]:
    """Send every record (the first few with send_and_wait, the rest pipelined) and
    return them with the partition/offset from the broker's acknowledgement."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **conf)
    try:
        await p.start()
        metas = []
        for r in records[:5]:
            metas.append(await p.send_and_wait(topic, r.value, key=r.key, partition=r.partition,
                                               timestamp_ms=r.timestamp,
                                               headers=list(r.headers)))
        futs = [await p.send(topic, r.value, key=r.key, partition=r.partition,
                             timestamp_ms=r.timestamp, headers=list(r.headers))
                for r in records[5:]]
        metas += await asyncio.wait_for(asyncio.gather(*futs), DEADLINE_S)
    finally:
        await p.stop()
    out = []
    for r, m in zip(records, metas):
        # log_append_time -1 in the ProduceResponse: the broker kept our CreateTime.
        # (aiokafka reports the batch's first timestamp for every record of a batch, so
        # per-record timestamps are checked on the consumed records instead.)
        assert m.timestamp_type == CREATE_TIME, m
        out.append(Rec(r.key, r.value, r.headers, r.timestamp, m.partition, m.offset))
    return out


async def consume(bootstrap: str, topic: str, expected: dict[int, int],
                  deadline_s: float = DEADLINE_S) -> dict[int, list[Rec]]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest")
    got: dict[int, list[Rec]] = {p: [] for p in expected}
    try:
        await c.start()
        c.assign([TopicPartition(topic, p) for p in expected])
        await c.seek_to_beginning()
        deadline = time.monotonic() + deadline_s
        while any(len(got[p]) < n for p, n in expected.items()):
            if time.monotonic() > deadline:
                raise AssertionError(f"aiokafka consumed {({p: len(v) for p, v in got.items()})}"
                                     f" within {deadline_s}s, expected {expected}")
            batches = await c.getmany(timeout_ms=200, max_records=5000)
            for tp, msgs in batches.items():
                for m in msgs:
                    assert m.timestamp_type == CREATE_TIME, m
                    got[tp.partition].append(Rec(m.key, m.value, norm_headers(m.headers),
                                                 m.timestamp, m.partition, m.offset))
    finally:
        await c.stop()
    return got


def check_acks_contiguous(acked: list[Rec]) -> None:
    for p, recs in by_partition(acked).items():
        assert [r.offset for r in recs] == list(range(len(recs))), f"p{p} acked offsets"


@pytest.mark.parametrize("conf", [{}, {"enable_idempotence": True}],
                         ids=["default", "idempotent"])
def test_aiokafka_produce_consume(broker, conf):
    topic = create_topic(broker.bootstrap, partitions=3)
    records = sample_records(1500, prefix="aio")  # keyed; partitioner decides
    acked = asyncio.run(produce(broker.bootstrap, topic, records, **conf))
    check_acks_contiguous(acked)
    want = by_partition(acked)
    assert len(want) == 3, f"only partitions {sorted(want)} used"
    got = asyncio.run(consume(broker.bootstrap, topic, {p: len(v) for p, v in want.items()}))
    for p in want:
        assert_partition_log(got[p], want[p], where=f"aiokafka p{p}")
    # an independent client (librdkafka) sees the same log and watermarks
    assert_topic_holds(broker.bootstrap, topic, acked, partitions=3)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_aiokafka_compression(broker, codec):
    topic = create_topic(broker.bootstrap, partitions=2)
    records = sample_records(1500, prefix=codec, partitions=2)
    acked = asyncio.run(produce(broker.bootstrap, topic, records, compression_type=codec,
                                linger_ms=20))
    check_acks_contiguous(acked)
    want = by_partition(acked)
    got = asyncio.run(consume(broker.bootstrap, topic, {p: len(v) for p, v in want.items()}))
    for p in want:
        assert_partition_log(got[p], want[p], where=f"aiokafka {codec} p{p}")
    assert_topic_holds(broker.bootstrap, topic, acked, partitions=2)
