"""kcat 1.7.1 (librdkafka 2.0.2: ApiVersions v3, Metadata v4, Produce v7, Fetch v11)."""

from __future__ import annotations

import json
import shutil

import pytest

from .helpers import (
    KCAT,
    TS_BASE,
    Rec,
    assert_deliveries,
    assert_partition_log,
    confluent_consume,
    confluent_produce,
    create_topic,
    run_kcat,
)

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which(KCAT) is None, reason=f"{KCAT} not installed"),
]


def kcat_produce(bootstrap: str, topic: str, lines: list[str], *extra: str) -> None:
    data = "".join(line + "\n" for line in lines).encode()
    run_kcat(["-b", bootstrap, "-t", topic, "-P", "-K:", *extra], input=data)


def kcat_consume(bootstrap: str, topic: str, fmt: str = "%p %o %k %s\\n",
                 *extra: str) -> list[str]:
    cp = run_kcat(["-b", bootstrap, "-t", topic, "-C", "-e", "-q", "-o", "beginning",
                   "-f", fmt.replace("\\n", "\n"), *extra])
    return cp.stdout.decode().splitlines()


def test_kcat_produce_and_consume_with_keys(broker):
    topic = create_topic(broker.bootstrap, partitions=1)
    pairs = [(f"key{i}", f"value number {i}") for i in range(300)]
    pairs.append(("colon", "value:with:colons"))  # -K: splits at the first ':' only
    kcat_produce(broker.bootstrap, topic, [f"{k}:{v}" for k, v in pairs], "-p", "0")

    lines = kcat_consume(broker.bootstrap, topic)
    assert lines == [f"0 {i} {k} {v}" for i, (k, v) in enumerate(pairs)]

    # an independent client sees the same log
    got = confluent_consume(broker.bootstrap, topic, {0: len(pairs)}, settle_s=0.5)[0]
    assert [(r.offset, r.key, r.value) for r in got] == [
        (i, k.encode(), v.encode()) for i, (k, v) in enumerate(pairs)]


def test_kcat_keyed_partitioning_over_three_partitions(broker):
    topic = create_topic(broker.bootstrap, partitions=3)
    keys = [f"user-{i % 40}" for i in range(600)]
    kcat_produce(broker.bootstrap, topic, [f"{k}:event {i}" for i, k in enumerate(keys)])

    lines = kcat_consume(broker.bootstrap, topic)
    assert len(lines) == len(keys)
    per_partition: dict[int, list[tuple[int, str, str]]] = {}
    for line in lines:
        p, o, k, v = line.split(" ", 3)
        per_partition.setdefault(int(p), []).append((int(o), k, v))
    assert len(per_partition) == 3, f"kcat's partitioner used only {sorted(per_partition)}"
    partition_of_key: dict[str, int] = {}
    for p, recs in per_partition.items():
        assert [o for o, _, _ in recs] == list(range(len(recs))), f"p{p} offsets not contiguous"
        # within a partition, records keep the order they were produced in
        seq = [int(v.removeprefix("event ")) for _, _, v in recs]
        assert seq == sorted(seq), f"p{p} out of order"
        for _, k, _ in recs:
            assert partition_of_key.setdefault(k, p) == p, f"key {k} in two partitions"
    assert sorted(partition_of_key) == sorted(set(keys))

    got = confluent_consume(broker.bootstrap, topic,
                            {p: len(r) for p, r in per_partition.items()}, settle_s=0.5)
    for p, recs in per_partition.items():
        assert [(r.offset, r.key.decode(), r.value.decode()) for r in got[p]] == recs


def test_kcat_metadata_lists_topic_and_broker(broker):
    topic = create_topic(broker.bootstrap, partitions=3)
    md = json.loads(run_kcat(["-b", broker.bootstrap, "-L", "-J"]).stdout)
    (b,) = md["brokers"]
    assert b["name"] == broker.bootstrap
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics, f"{topic} missing from kcat -L: {sorted(topics)}"
    parts = sorted(topics[topic]["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2]
    for p in parts:
        assert p["leader"] == b["id"]
        assert [r["id"] for r in p["replicas"]] == [b["id"]]
        assert [r["id"] for r in p["isrs"]] == [b["id"]]

    text = run_kcat(["-b", broker.bootstrap, "-L", "-t", topic]).stdout.decode()
    assert f"broker {b['id']} at {broker.bootstrap}" in text
    assert f'topic "{topic}" with 3 partitions:' in text


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_kcat_compression(broker, codec):
    topic = create_topic(broker.bootstrap, partitions=1)
    # compressible values, several hundred per batch
    pairs = [(f"k{i}", f"{codec} payload {i} " + "abcdefgh" * (i % 30)) for i in range(2000)]
    kcat_produce(broker.bootstrap, topic, [f"{k}:{v}" for k, v in pairs], "-p", "0",
                 "-z", codec, "-X", "linger.ms=50")
    lines = kcat_consume(broker.bootstrap, topic)
    assert lines == [f"0 {i} {k} {v}" for i, (k, v) in enumerate(pairs)]
    got = confluent_consume(broker.bootstrap, topic, {0: len(pairs)}, settle_s=0.5)[0]
    assert [(r.offset, r.key, r.value) for r in got] == [
        (i, k.encode(), v.encode()) for i, (k, v) in enumerate(pairs)]


def test_kcat_reads_timestamps_and_headers_from_other_producer(broker):
    topic = create_topic(broker.bootstrap, partitions=1)
    recs = [Rec(b"k%d" % i, b"v%d" % i, (("trace", b"t%d" % i), ("n", b"%d" % (i * i))),
                TS_BASE + 7 * i, 0) for i in range(50)]
    res = confluent_produce(broker.bootstrap, topic, recs, conf={"compression.type": "lz4"})
    assert_deliveries(res)
    lines = kcat_consume(broker.bootstrap, topic, "%o|%k|%s|%T|%h\\n")
    assert lines == [f"{i}|k{i}|v{i}|{TS_BASE + 7 * i}|trace=t{i},n={i * i}" for i in range(50)]
    # and the same log through confluent (sanity for the expectation itself)
    got = confluent_consume(broker.bootstrap, topic, {0: 50}, settle_s=0.5)[0]
    assert_partition_log(got, res.sent)
