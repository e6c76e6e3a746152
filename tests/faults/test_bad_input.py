"""Well-formed requests the broker must refuse, and how it refuses them.

One broker for the module, with topic auto-creation off.
"""

from __future__ import annotations

import kclients
import pytest
import rawclient as rc
from confluent_kafka import KafkaError
from kawaproc import STORAGE, KawaProcess

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def kawa(spawn_module_broker) -> KawaProcess:
    return spawn_module_broker("--storage", STORAGE, "--no-auto-create-topics", name="bad")


@pytest.fixture
def conn(kawa):
    with rc.RawConnection(kawa.host, kawa.port) as c:
        yield c


def test_produce_to_unknown_topic_without_auto_create(kawa, conn):
    response = rc.produce_one(conn, "no-such-topic", 0, bytes(rc.record_batch([b"x"])))
    assert response.error_code == rc.UNKNOWN_TOPIC_OR_PARTITION
    # ... and the topic was not created behind our back.
    metadata = conn.request(rc.metadata_request(["no-such-topic"], 9))
    assert metadata.topics[0].error_code == rc.UNKNOWN_TOPIC_OR_PARTITION
    assert not (kawa.data_dir / "logs" / "no-such-topic-0").exists()


def test_produce_to_unknown_partition(kawa, conn):
    rc.create_topic(conn, "one-partition", 1)
    response = rc.produce_one(conn, "one-partition", 1, bytes(rc.record_batch([b"x"])))
    assert response.error_code == rc.UNKNOWN_TOPIC_OR_PARTITION
    assert rc.high_watermark(conn, "one-partition", 0) == 0


def test_confluent_producer_sees_unknown_topic(kawa):
    topic = kclients.unique("absent")
    # librdkafka waits topic.metadata.propagation.max.ms for a topic the broker does
    # not know before it gives up on the record with _UNKNOWN_TOPIC.
    p = kclients.producer(kawa.bootstrap, **{"message.timeout.ms": 20_000,
                                             "topic.metadata.propagation.max.ms": 1000})
    errors: list[KafkaError] = []
    p.produce(topic, value=b"x", on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), (
        errors[0])


@pytest.mark.parametrize("max_message_bytes,value_bytes", [(1000, 2000), (None, 1_100_000)],
                         ids=["topic-limit-1000", "default-limit-1MiB"])
def test_batch_larger_than_max_message_bytes(kawa, conn, max_message_bytes, value_bytes):
    topic = kclients.unique("big")
    configs = {"max.message.bytes": str(max_message_bytes)} if max_message_bytes else None
    rc.create_topic(conn, topic, 1, configs)
    rc.produce_one(conn, topic, 0, bytes(rc.record_batch([b"before"])))
    response = rc.produce_one(conn, topic, 0, bytes(rc.record_batch([b"v" * value_bytes])))
    assert response.error_code == rc.MESSAGE_TOO_LARGE, response
    # Nothing written: the high watermark stays and the next record lands right after.
    assert rc.high_watermark(conn, topic) == 1
    after = rc.produce_one(conn, topic, 0, bytes(rc.record_batch([b"after"])))
    assert after.error_code == rc.NONE and after.base_offset == 1
    fetched = rc.fetch_partition(conn, topic, 0, 0)
    assert list(rc.decode_batches(fetched.records)) == [(0, b"before"), (1, b"after")]


def test_confluent_producer_sees_message_too_large(kawa, conn):
    topic = kclients.unique("big")
    rc.create_topic(conn, topic, 1, {"max.message.bytes": "2000"})
    p = kclients.producer(kawa.bootstrap, **{"message.max.bytes": 10_000_000})
    errors: list[KafkaError | None] = []
    p.produce(topic, value=b"v" * 5000, partition=0,
              on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(15) == 0
    assert errors and errors[0] is not None
    assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errors[0]
    assert rc.high_watermark(conn, topic) == 0


@pytest.mark.parametrize("version", [4, 99, 32767, -1])
def test_api_versions_at_unknown_version_answers_v0(kawa, conn, version):
    """Answered in v0 (which any client can read) with UNSUPPORTED_VERSION and the full
    list of keys, so the client can retry at a version the broker has."""
    conn.send(rc.frame(rc.raw_header(rc.API_VERSIONS, version, 4242)))
    correlation_id, response = rc.decode_response(rc.API_VERSIONS, 0, conn.recv_frame())
    assert correlation_id == 4242
    assert response.error_code == rc.UNSUPPORTED_VERSION
    keys = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
    assert keys[rc.API_VERSIONS][0] == 0 and keys[rc.API_VERSIONS][1] >= 3
    assert rc.PRODUCE in keys and rc.FETCH in keys and rc.METADATA in keys
    # The connection stays usable.
    assert conn.request(rc.api_versions_request(3)).error_code == rc.NONE


@pytest.mark.parametrize("api_key,version", [(999, 0), (-1, 0), (57, 0), (rc.METADATA, 99),
                                             (rc.PRODUCE, 2)],
                         ids=["key-999", "key-minus1", "UpdateFeatures", "Metadata-v99",
                              "Produce-v2"])
def test_unknown_api_closes_only_that_connection(kawa, conn, api_key, version):
    mark = kawa.log_mark()
    with rc.RawConnection(kawa.host, kawa.port) as bystander:
        # Pipelined: a good request, the bad one, another good one. The first is still
        # answered; the connection closes at the bad one.
        conn.send(rc.request_frame(rc.api_versions_request(0), 1)
                  + rc.frame(rc.raw_header(api_key, version, 2) + b"\x00" * 16)
                  + rc.request_frame(rc.api_versions_request(0), 3))
        correlation_id, response = rc.decode_response(rc.API_VERSIONS, 0, conn.recv_frame())
        assert correlation_id == 1 and response.error_code == rc.NONE
        assert conn.wait_closed(5.0)
        assert kawa.wait_for_log(f"unsupported API key {api_key} version {version}", mark)
        assert bystander.request(rc.api_versions_request(3)).error_code == rc.NONE
    with rc.RawConnection(kawa.host, kawa.port) as fresh:
        assert fresh.request(rc.api_versions_request(3)).error_code == rc.NONE
    assert kawa.alive()


@pytest.mark.xfail(strict=True, raises=rc.ConnectionClosed, reason=(
    "BROKER BUG: a request carrying a tagged field the schema does not know is refused "
    "(kio raises KeyError 'Unknown tagged field tag: N', the connection is closed); "
    "Kafka skips unknown tagged fields (KIP-482) so that newer clients can add them"))
@pytest.mark.parametrize("where", ["body", "header"])
def test_unknown_tagged_field_is_skipped(kawa, conn, where):
    payload = rc.encode_request(rc.api_versions_request(3), 7)
    unknown_tag = b"\x01\x63\x01\x00"  # one tagged field: tag 99, 1 byte of data
    if where == "body":
        assert payload.endswith(b"\x00")  # the body's (empty) tagged-field section
        payload = payload[:-1] + unknown_tag
    else:
        end_of_client_id = 4 + 4 + 2 + len(rc.CLIENT_ID)
        assert payload[end_of_client_id] == 0  # the header's (empty) tagged-field section
        payload = payload[:end_of_client_id] + unknown_tag + payload[end_of_client_id + 1:]
    conn.send(rc.frame(payload))
    correlation_id, response = rc.decode_response(rc.API_VERSIONS, 3, conn.recv_frame(5.0))
    assert correlation_id == 7 and response.error_code == rc.NONE


def test_request_shorter_than_a_header_closes_connection(kawa, conn):
    mark = kawa.log_mark()
    conn.send(rc.frame(b"\x00\x12\x00"))
    assert conn.wait_closed(5.0)
    assert kawa.wait_for_log("shorter than a header", mark)

