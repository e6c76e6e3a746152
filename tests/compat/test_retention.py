"""Retention as Kafka's docs describe it: whole segments past retention.bytes or
retention.ms are deleted, the low watermark moves to the first kept segment, and a
consumer from the beginning starts there. Needs a broker that checks retention often."""

from __future__ import annotations

import time

import pytest

from compat.helpers import (
    confluent_consume,
    confluent_produce,
    create_topic,
    sample_records,
    watermarks,
)

pytestmark = pytest.mark.timeout(120)

RECORD_BYTES = 1000


def _wait_low_watermark_above(bootstrap: str, topic: str, low_min: int, deadline_s: float = 30):
    deadline = time.monotonic() + deadline_s
    low, high = watermarks(bootstrap, topic, 0)
    while low < low_min and time.monotonic() < deadline:
        time.sleep(0.2)
        low, high = watermarks(bootstrap, topic, 0)
    return low, high


def _produce_in_batches(bootstrap: str, topic: str, n: int, timestamp_ms: int | None = None):
    records = [r.__class__(key=None, value=b"v" * RECORD_BYTES, timestamp=timestamp_ms)
               for r in sample_records(n, with_headers=False)]
    # One record per request, so that segments roll between records.
    return confluent_produce(bootstrap, topic, records, conf={"linger.ms": 0, "batch.num.messages": 1})


def test_retention_bytes_deletes_whole_old_segments(broker_factory):
    b = broker_factory("--retention-check-interval-ms", "100", name="retention")
    # ~4 records per segment; keep at most ~2 segments.
    topic = create_topic(b.bootstrap, config={"segment.bytes": str(4 * (RECORD_BYTES + 80)),
                                              "retention.bytes": str(8 * (RECORD_BYTES + 80))})
    _produce_in_batches(b.bootstrap, topic, 40)
    low, high = _wait_low_watermark_above(b.bootstrap, topic, 1)
    assert high == 40
    assert 0 < low < 40, "old segments must go, the active one stays"
    assert high - low <= 16, f"kept {high - low} records, more than ~2 segments"
    got = confluent_consume(b.bootstrap, topic, {0: high - low})
    assert [r.offset for r in got[0]] == list(range(low, high))


def test_retention_ms_deletes_segments_older_than_the_limit(broker_factory):
    b = broker_factory("--retention-check-interval-ms", "100", name="retention-ms")
    topic = create_topic(b.bootstrap, config={"segment.bytes": str(4 * (RECORD_BYTES + 80)),
                                              "retention.ms": "3600000"})
    old = int(time.time() * 1000) - 2 * 3600 * 1000  # two hours ago, past retention
    _produce_in_batches(b.bootstrap, topic, 12, timestamp_ms=old)
    _produce_in_batches(b.bootstrap, topic, 8)  # now: kept
    low, high = _wait_low_watermark_above(b.bootstrap, topic, 12)
    assert (low, high) == (12, 20), "exactly the old records' segments are deleted"
