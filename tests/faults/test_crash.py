"""Crashes and damaged files: what the local storage engine recovers, and what it refuses.

(a) kill -9 in the middle of an acks=all produce stream loses nothing acknowledged;
(b) a torn write at the end of the active segment is truncated, with the exact byte
    count logged, and the log continues where it was;
(c) a corrupt batch in the middle of a segment takes only that partition out of
    service (KAFKA_STORAGE_ERROR), with the file and byte position logged.
"""

from __future__ import annotations

import re
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import kclients
import pytest
import rawclient as rc
from confluent_kafka import TopicPartition
from kawaproc import LOCAL_STORAGE, KawaProcess

pytestmark = pytest.mark.skipif(
    not LOCAL_STORAGE,
    reason="the local storage engine (kawa.storage.local.log) is not importable yet")


def segment_path(broker: KawaProcess, topic: str, partition: int, base_offset: int = 0) -> Path:
    return broker.data_dir / "logs" / f"{topic}-{partition}" / f"{base_offset:020d}.log"


def read_partition(broker: KawaProcess, topic: str, partition: int) -> list[tuple[int, bytes]]:
    """Every record of the partition, read with a normal consumer from offset 0."""
    c = kclients.consumer(broker.bootstrap)
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10,
                                            cached=False)
    finally:
        c.close()
    assert low == 0, f"{topic}-{partition} starts at {low}"
    return kclients.consume_values(broker.bootstrap, topic, high, partition, start=0,
                                   deadline_s=60)


def produce_batches(broker: KawaProcess, topic: str, partition: int,
                    batches: list[list[bytes]]) -> list[int]:
    """Produce each list of values as one batch (raw client); returns the base offsets."""
    bases = []
    with rc.RawConnection(broker.host, broker.port) as conn:
        for values in batches:
            response = rc.produce_one(conn, topic, partition, bytes(rc.record_batch(values)))
            assert response.error_code == rc.NONE, response
            bases.append(response.base_offset)
    return bases


# --------------------------------------------------------------------------- (a) kill -9
@dataclass
class AckLog:
    acked: list[tuple[int, int, bytes]] = field(default_factory=list)  # partition, offset, value
    errors: list[str] = field(default_factory=list)
    produced: set[bytes] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)


def produce_until_stopped(bootstrap: str, topic: str, partitions: int, log: AckLog,
                          stop: threading.Event) -> None:
    p = kclients.producer(bootstrap, **{
        "acks": "all", "enable.idempotence": False, "linger.ms": 2,
        "message.timeout.ms": 60_000, "queue.buffering.max.messages": 20_000})

    def on_delivery(err, msg):
        with log.lock:
            if err is None:
                log.acked.append((msg.partition(), msg.offset(), msg.value()))
            else:
                log.errors.append(str(err))

    i = 0
    while not stop.is_set():
        value = f"rec-{i:08d}-".encode() + bytes([i % 251]) * (i % 40)
        try:
            p.produce(topic, value=value, partition=i % partitions, on_delivery=on_delivery)
        except BufferError:
            p.poll(0.01)
            continue
        log.produced.add(value)
        i += 1
        p.poll(0)
    # The broker is dead: give up on what is still queued or in flight.
    p.purge()
    p.flush(5)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("durability", ["sync", "interval", "os"])
def test_kill9_mid_stream_loses_nothing_acknowledged(spawn_broker, durability):
    """Every durability mode promises that an acknowledged record survives kill -9
    (sync: fsynced before the ack; interval/os: written to the OS before the ack)."""
    topic, partitions, target = "crash-a", 2, 20_000
    broker = spawn_broker("--durability", durability, name=f"kill9-{durability}")
    with rc.RawConnection(broker.host, broker.port) as conn:
        rc.create_topic(conn, topic, partitions)

    log, stop = AckLog(), threading.Event()
    thread = threading.Thread(target=produce_until_stopped,
                              args=(broker.bootstrap, topic, partitions, log, stop))
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while log.count() < target:
            assert time.monotonic() < deadline, f"only {log.count()} acks in 120 s: {log.errors[:3]}"
            assert thread.is_alive()
            time.sleep(0.005)
        broker.kill9()  # mid-stream: the producer is still sending
        acked_at_kill = log.count()
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()

    broker.start()  # same port, same data directory
    assert "Traceback" not in broker.log_text()

    acked = list(log.acked)
    assert len(acked) >= acked_at_kill >= target
    for partition in range(partitions):
        stored = read_partition(broker, topic, partition)
        offsets = [offset for offset, _ in stored]
        assert offsets == list(range(len(stored))), f"gap in {topic}-{partition}"
        values = dict(stored)
        for p, offset, value in acked:
            if p == partition:
                assert values.get(offset) == value, (
                    f"acknowledged {topic}-{partition}@{offset} is "
                    f"{values.get(offset)!r}, expected {value!r}")
        # Beyond what was acknowledged, only records we really sent.
        strangers = [v for v in values.values() if v not in log.produced]
        assert not strangers, f"records nobody produced: {strangers[:3]}"
        acked_here = sum(1 for p, _, _ in acked if p == partition)
        print(f"{topic}-{partition}: {acked_here} acked, {len(stored)} after restart")

    # And the log goes on from there.
    kclients.assert_round_trip(broker.bootstrap, topic, 10)


# --------------------------------------------------------------------------- (b) torn write
def _torn_tails(next_offset: int) -> dict[str, bytes]:
    batch = rc.record_batch([b"torn-a", b"torn-b", b"torn-c"], base_offset=next_offset)
    bad_crc = bytearray(batch)
    bad_crc[-1] ^= 0xFF  # the last byte of the records: the CRC no longer matches
    return {
        "first-30-bytes": bytes(batch[:30]),
        "header-only": bytes(batch[:rc.BATCH_HEADER_BYTES]),
        "all-but-last-byte": bytes(batch[:-1]),
        "full-batch-bad-crc": bytes(bad_crc),
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize("tail", list(_torn_tails(0)))
def test_torn_write_at_the_tail_is_truncated(spawn_broker, tail):
    topic, n = "torn", 100
    broker = spawn_broker(name="torn")
    with rc.RawConnection(broker.host, broker.port) as conn:
        rc.create_topic(conn, topic, 1)
    values = [f"torn-{i:03d}".encode() for i in range(n)]
    produce_batches(broker, topic, 0, [values[i : i + 10] for i in range(0, n, 10)])
    broker.stop()

    segment = segment_path(broker, topic, 0)
    good_size = segment.stat().st_size
    appended = _torn_tails(n)[tail]
    with open(segment, "ab") as f:
        f.write(appended)

    broker.start()
    text = broker.log_text()
    assert re.search(rf"{re.escape(str(segment))}: truncating {len(appended)} bytes of torn "
                     rf"tail at byte {good_size}\b", text), text[-2000:]
    assert f"truncated {len(appended)} bytes" in text  # the start-up summary
    assert segment.stat().st_size == good_size

    assert read_partition(broker, topic, 0) == list(enumerate(values))
    offsets = kclients.produce_values(broker.bootstrap, topic, [b"next"])
    assert offsets == [n]
    assert read_partition(broker, topic, 0)[-1] == (n, b"next")


# --------------------------------------------------------------------------- (c) corruption
@pytest.mark.timeout(120)
def test_corrupt_batch_mid_segment_takes_only_that_partition_offline(spawn_broker):
    broker = spawn_broker(name="corrupt")
    with rc.RawConnection(broker.host, broker.port) as conn:
        rc.create_topic(conn, "damaged", 2)
        rc.create_topic(conn, "healthy", 1)
    batches = [[f"b{b}-r{r}".encode() for r in range(5)] for b in range(3)]
    for topic, partition in (("damaged", 0), ("damaged", 1), ("healthy", 0)):
        produce_batches(broker, topic, partition, batches)
    broker.stop()

    # Flip one byte inside the first batch's records (covered by its CRC).
    segment = segment_path(broker, "damaged", 0)
    data = bytearray(segment.read_bytes())
    first_batch_size = 12 + struct.unpack_from(">i", data, 8)[0]
    assert first_batch_size < len(data)  # valid batches follow it
    data[rc.BATCH_HEADER_BYTES + 5] ^= 0x01
    segment.write_bytes(bytes(data))

    broker.start()
    text = broker.log_text()
    # The log names the file and the byte position, and the partition is out of service.
    assert re.search(rf"{re.escape(str(segment))}: corrupt batch at byte 0\b", text), text[-2000:]
    assert "damaged-0" in text and "not served" in text
    # Nothing was truncated away: the bytes are kept for inspection.
    assert segment.stat().st_size == len(data)

    with rc.RawConnection(broker.host, broker.port) as conn:
        metadata = conn.request(rc.metadata_request(["damaged"], 9))
        errors = {p.partition_index: p.error_code for p in metadata.topics[0].partitions}
        assert errors == {0: rc.KAFKA_STORAGE_ERROR, 1: rc.NONE}
        assert rc.fetch_partition(conn, "damaged", 0).error_code == rc.KAFKA_STORAGE_ERROR
        listed = conn.request(rc.list_offsets_request("damaged", 0))
        assert listed.topics[0].partitions[0].error_code == rc.KAFKA_STORAGE_ERROR
        produced = rc.produce_one(conn, "damaged", 0, bytes(rc.record_batch([b"x"])))
        assert produced.error_code == rc.KAFKA_STORAGE_ERROR

    # A normal consumer never gets a record from the damaged partition (librdkafka
    # treats KAFKA_STORAGE_ERROR as retriable, so it may report nothing at all)...
    err = kclients.first_consumer_error(broker.bootstrap, "damaged", 0, deadline_s=5)
    print(f"consumer of damaged-0 reported: {err}")
    # ...while the other partition and the other topic serve as before, and take more.
    expected = [(i, v) for i, v in enumerate(v for b in batches for v in b)]
    for topic, partition in (("damaged", 1), ("healthy", 0)):
        assert read_partition(broker, topic, partition) == expected
        offsets = kclients.produce_values(broker.bootstrap, topic, [b"more"], partition)
        assert offsets == [15]
