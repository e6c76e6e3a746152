"""Topic administration through confluent-kafka's AdminClient, checked with real
produce/consume traffic."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from .helpers import (
    TS_BASE,
    Rec,
    admin,
    assert_deliveries,
    assert_partition_log,
    confluent_consume,
    confluent_produce,
    create_topic,
    sample_records,
    topic_config,
    unique_topic,
    wait_for_topic,
    wait_topic_absent,
    watermarks,
)

pytestmark = pytest.mark.timeout(60)

KAFKA_DEFAULT_RETENTION_MS = "604800000"  # 7 days
DYNAMIC_TOPIC = ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def _raises_kafka_error(fut, code: int, what: str) -> None:
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout=30)
    err = ei.value.args[0]
    assert err.code() == code, f"{what}: got {err}, expected {KafkaError(code)}"


def _produce_n(bootstrap, topic, n, partition=0, prefix="r"):
    recs = [Rec(b"%s-k%d" % (prefix.encode(), i), b"%s-v%d" % (prefix.encode(), i), (),
                TS_BASE + 1000 * i, partition) for i in range(n)]
    return confluent_produce(bootstrap, topic, recs)


def test_create_topic_with_partitions_and_configs(broker):
    topic = create_topic(broker.bootstrap, partitions=4, config={
        "retention.ms": "123456789", "cleanup.policy": "delete", "max.message.bytes": "200000"})
    a = admin(broker.bootstrap)
    md = a.list_topics(topic, timeout=10)
    (node,) = md.brokers.values()
    t = md.topics[topic]
    assert sorted(t.partitions) == [0, 1, 2, 3]
    for p in t.partitions.values():
        assert (p.leader, p.replicas, p.isrs) == (node.id, [node.id], [node.id]), p

    cfg = topic_config(broker.bootstrap, topic)
    for name, value in [("retention.ms", "123456789"), ("cleanup.policy", "delete"),
                        ("max.message.bytes", "200000")]:
        assert name in cfg, f"{name} missing from DescribeConfigs: {sorted(cfg)}"
        assert cfg[name].value == value, (name, cfg[name].value)
        assert cfg[name].source == DYNAMIC_TOPIC, (name, cfg[name].source)
        assert not cfg[name].is_default, name

    # every partition takes writes
    recs = [Rec(b"k", b"p%d" % p, (), TS_BASE + p, p) for p in range(4)]
    res = confluent_produce(broker.bootstrap, topic, recs)
    assert_deliveries(res)


def test_create_existing_topic_fails_and_leaves_it_alone(broker):
    topic = create_topic(broker.bootstrap, partitions=2)
    assert_deliveries(_produce_n(broker.bootstrap, topic, 5))
    a = admin(broker.bootstrap)
    fut = a.create_topics([NewTopic(topic, num_partitions=5, replication_factor=1)])[topic]
    _raises_kafka_error(fut, KafkaError.TOPIC_ALREADY_EXISTS, "re-creating a topic")
    assert len(a.list_topics(topic, timeout=10).topics[topic].partitions) == 2
    assert watermarks(broker.bootstrap, topic, 0) == (0, 5)


def test_create_topic_with_invalid_name_fails(broker):
    a = admin(broker.bootstrap)
    bad = "bad name/" + unique_topic()
    fut = a.create_topics([NewTopic(bad, num_partitions=1, replication_factor=1)])[bad]
    _raises_kafka_error(fut, KafkaError.TOPIC_EXCEPTION, "creating 'bad name/...'")
    assert bad not in a.list_topics(timeout=10).topics


@pytest.mark.parametrize("config", [{"retention.ms": "not-a-number"},
                                    {"cleanup.policy": "shred"},
                                    {"no.such.topic.config": "1"}],
                         ids=["bad-number", "bad-enum", "unknown-name"])
def test_create_topic_with_invalid_config_fails(broker, config):
    a = admin(broker.bootstrap)
    topic = unique_topic("badcfg")
    fut = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                    config=config)])[topic]
    _raises_kafka_error(fut, KafkaError.INVALID_CONFIG, f"creating a topic with {config}")
    assert topic not in a.list_topics(timeout=10).topics


def test_replication_factor_above_broker_count_fails(broker):
    a = admin(broker.bootstrap)
    topic = unique_topic("rf3")
    fut = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)])[topic]
    _raises_kafka_error(fut, KafkaError.INVALID_REPLICATION_FACTOR, "replication factor 3")
    assert topic not in a.list_topics(timeout=10).topics


def test_delete_then_recreate_gives_empty_topic(broker):
    topic = create_topic(broker.bootstrap, partitions=1)
    assert_deliveries(_produce_n(broker.bootstrap, topic, 10, prefix="old"))
    a = admin(broker.bootstrap)
    a.delete_topics([topic], operation_timeout=30)[topic].result(timeout=30)
    wait_topic_absent(broker.bootstrap, topic)

    create_topic(broker.bootstrap, topic, partitions=1)
    assert watermarks(broker.bootstrap, topic, 0) == (0, 0)
    res = _produce_n(broker.bootstrap, topic, 3, prefix="new")
    assert_deliveries(res)  # offsets start again at 0
    got = confluent_consume(broker.bootstrap, topic, {0: 3}, settle_s=1.0)[0]
    assert_partition_log(got, res.sent)


def test_delete_unknown_topic_fails(broker):
    topic = unique_topic("never-created")
    a = admin(broker.bootstrap)
    fut = a.delete_topics([topic], operation_timeout=10)[topic]
    _raises_kafka_error(fut, KafkaError.UNKNOWN_TOPIC_OR_PART, "deleting an unknown topic")


def test_create_partitions_then_produce_to_new_partition(broker):
    topic = create_topic(broker.bootstrap, partitions=3)
    before = confluent_produce(broker.bootstrap, topic, sample_records(30, partitions=3))
    assert_deliveries(before)
    a = admin(broker.bootstrap)
    a.create_partitions([NewPartitions(topic, 5)], operation_timeout=30)[topic].result(timeout=30)
    wait_for_topic(broker.bootstrap, topic, partitions=5)

    res = confluent_produce(broker.bootstrap, topic,
                            [Rec(b"k4", b"to-partition-4", (("h", b"v"),), TS_BASE, 4)])
    assert_deliveries(res)
    assert (res.deliveries[0].partition, res.deliveries[0].offset) == (4, 0)
    got = confluent_consume(broker.bootstrap, topic, {p: 10 for p in range(3)} | {3: 0, 4: 1},
                            settle_s=1.0)
    assert_partition_log(got[4], res.sent)
    assert got[3] == []
    old = {p: [r for r in before.sent if r.partition == p] for p in range(3)}
    for p in range(3):
        assert_partition_log(got[p], old[p], where=f"p{p}")


def test_describe_configs_shows_defaults(broker):
    topic = create_topic(broker.bootstrap, partitions=1)
    cfg = topic_config(broker.bootstrap, topic)
    for name in ("retention.ms", "cleanup.policy", "max.message.bytes", "retention.bytes",
                 "segment.bytes"):
        assert name in cfg, f"{name} missing from DescribeConfigs: {sorted(cfg)}"
    assert cfg["retention.ms"].value == KAFKA_DEFAULT_RETENTION_MS
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["retention.bytes"].value == "-1"
    for name in ("retention.ms", "cleanup.policy"):
        assert cfg[name].source != DYNAMIC_TOPIC, f"{name} reported as a topic override"


def test_incremental_alter_configs(broker):
    topic = create_topic(broker.bootstrap, partitions=1, config={"cleanup.policy": "delete",
                                                                 "max.message.bytes": "300000"})
    a = admin(broker.bootstrap)

    def alter(*entries):
        res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=list(entries))
        a.incremental_alter_configs([res])[res].result(timeout=30)

    alter(ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET))
    cfg = topic_config(broker.bootstrap, topic)
    assert (cfg["retention.ms"].value, cfg["retention.ms"].source) == ("3600000", DYNAMIC_TOPIC)
    # an incremental change must not drop the other overrides
    assert cfg["max.message.bytes"].value == "300000"

    alter(ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE))
    cfg = topic_config(broker.bootstrap, topic)
    assert cfg["retention.ms"].value == KAFKA_DEFAULT_RETENTION_MS
    assert cfg["retention.ms"].source != DYNAMIC_TOPIC
    assert cfg["max.message.bytes"].value == "300000"


def test_delete_records(broker):
    topic = create_topic(broker.bootstrap, partitions=1)
    res = _produce_n(broker.bootstrap, topic, 100)
    assert_deliveries(res)
    a = admin(broker.bootstrap)
    tp = TopicPartition(topic, 0, 50)
    deleted = a.delete_records([tp], operation_timeout=30)[tp].result(timeout=30)
    assert deleted.low_watermark == 50
    assert watermarks(broker.bootstrap, topic, 0) == (50, 100)

    got = confluent_consume(broker.bootstrap, topic, {0: 50}, settle_s=1.0)[0]
    assert_partition_log(got, res.sent[50:], first_offset=50)
    earliest = a.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()})
    assert next(iter(earliest.values())).result(timeout=30).offset == 50

    # new records continue the offsets; deleting everything empties the partition
    more = _produce_n(broker.bootstrap, topic, 1, prefix="more")
    assert_deliveries(more, first_offsets={0: 100})
    tp = TopicPartition(topic, 0, -1)  # -1: up to the high watermark
    assert a.delete_records([tp])[tp].result(timeout=30).low_watermark == 101
    assert watermarks(broker.bootstrap, topic, 0) == (101, 101)


def test_list_offsets(broker):
    topic = create_topic(broker.bootstrap, partitions=2)  # partition 1 stays empty
    res = _produce_n(broker.bootstrap, topic, 100)  # timestamps TS_BASE + 1000*i
    assert_deliveries(res)
    a = admin(broker.bootstrap)

    def lookup(partition, spec):
        tp = TopicPartition(topic, partition)
        info = a.list_offsets({tp: spec}, request_timeout=30)[tp].result(timeout=30)
        return info.offset, info.timestamp

    # (what, partition, spec, expected (offset, timestamp); None: timestamp not checked)
    cases = [
        ("earliest", 0, OffsetSpec.earliest(), (0, None)),
        ("latest", 0, OffsetSpec.latest(), (100, None)),
        ("exact timestamp", 0, OffsetSpec.for_timestamp(TS_BASE + 37_000), (37, TS_BASE + 37_000)),
        ("between timestamps", 0, OffsetSpec.for_timestamp(TS_BASE + 36_500),
         (37, TS_BASE + 37_000)),
        ("before all", 0, OffsetSpec.for_timestamp(0), (0, TS_BASE)),
        ("last timestamp", 0, OffsetSpec.for_timestamp(TS_BASE + 99_000), (99, TS_BASE + 99_000)),
        ("after all", 0, OffsetSpec.for_timestamp(TS_BASE + 99_001), (-1, None)),
        ("max timestamp (KIP-734)", 0, OffsetSpec.max_timestamp(), (99, TS_BASE + 99_000)),
        ("empty: earliest", 1, OffsetSpec.earliest(), (0, None)),
        ("empty: latest", 1, OffsetSpec.latest(), (0, None)),
        ("empty: by timestamp", 1, OffsetSpec.for_timestamp(TS_BASE), (-1, None)),
    ]
    wrong = []
    for what, partition, spec, (offset, ts) in cases:
        got = lookup(partition, spec)
        if got[0] != offset or (ts is not None and got[1] != ts):
            wrong.append(f"{what} (p{partition}): got (offset, timestamp) {got}, "
                         f"expected {(offset, ts)}")
    assert not wrong, f"wrong ListOffsets answers (TS_BASE = {TS_BASE}):\n  " + "\n  ".join(wrong)


def test_auto_create_topic_on_produce(broker):
    topic = unique_topic("auto")
    res = confluent_produce(broker.bootstrap, topic, [Rec(b"k", b"first", (), TS_BASE)])
    assert_deliveries(res)
    assert topic in admin(broker.bootstrap).list_topics(timeout=10).topics
    p = res.deliveries[0].partition
    got = confluent_consume(broker.bootstrap, topic, {p: 1}, settle_s=0.5)[p]
    assert_partition_log(got, res.sent)


@pytest.mark.timeout(90)
def test_no_auto_create_topics_flag(broker_factory):
    b = broker_factory("--no-auto-create-topics", name="noauto")
    topic = unique_topic("absent")
    errors = []
    p = Producer({"bootstrap.servers": b.bootstrap, "topic.metadata.propagation.max.ms": 2000,
                  "message.timeout.ms": 20_000})
    p.produce(topic, b"v", on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0
    assert len(errors) == 1 and errors[0] is not None, f"delivery result: {errors}"
    assert errors[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, errors[0]
    assert topic not in admin(b.bootstrap).list_topics(timeout=10).topics

    # explicit creation still works on that broker
    create_topic(b.bootstrap, topic, partitions=1)
    assert_deliveries(confluent_produce(b.bootstrap, topic, [Rec(b"k", b"v", (), TS_BASE, 0)]))


def test_describe_cluster(broker):
    a = admin(broker.bootstrap)
    desc = a.describe_cluster(request_timeout=30).result(timeout=30)
    assert desc.cluster_id, "empty cluster id"
    (node,) = desc.nodes
    assert (node.host, node.port) == ("127.0.0.1", broker.port)
    assert desc.controller is not None and desc.controller.id == node.id
    md = a.list_topics(timeout=10)
    assert {b.id: (b.host, b.port) for b in md.brokers.values()} == {
        node.id: ("127.0.0.1", broker.port)}
    assert md.cluster_id == desc.cluster_id
