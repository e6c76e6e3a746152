"""Well-formed requests the broker must refuse, and how it refuses them; and unknown
tagged fields, which it must skip rather than refuse.

One broker for the module, with topic auto-creation off.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import kclients
import pytest
import rawclient as rc
from confluent_kafka import KafkaError
from kawaproc import STORAGE, KawaProcess
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2

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


# Tagged fields (KIP-482): a receiver skips the tags it does not know, so that newer
# clients can add them. kawa used to refuse them (kio raised KeyError 'Unknown tagged
# field tag: N' and the connection was closed); these are the regression tests.
UNKNOWN_TAG = b"\x01\x63\x01\x00"  # one tagged field: tag 99, 1 byte of data
# Two: tag 99 (1 byte) and tag 1000 (uvarint e8 07) with 200 bytes (uvarint c8 01).
UNKNOWN_TAGS = b"\x02\x63\x01\x00\xe8\x07\xc8\x01" + bytes(range(200))


def with_tags(payload: bytes, part: Any, tags: bytes, keep: bytes = b"") -> bytes:
    """`payload` with the tagged-field section that ends the encoding of `part` (the
    header, the body, or an entity nested in it) replaced: its known fields `keep`
    (their count included) become `tags` (count included) followed by `keep`'s fields."""
    encoded = rc.encode_body(part)
    section = keep or b"\x00"
    assert encoded.endswith(section) and payload.count(encoded) == 1, type(part).__name__
    at = payload.index(encoded) + len(encoded) - len(section)
    if keep:  # the count is a single byte here: fewer than 127 tags
        tags = bytes([tags[0] + keep[0]]) + keep[1:] + tags[1:]
    return payload[:at] + tags + payload[at + len(section):]


def header_of(entity: Any, correlation_id: int) -> Any:
    assert type(entity).__flexible__
    return RequestHeaderV2(request_api_key=type(entity).__api_key__,
                           request_api_version=type(entity).__version__,
                           correlation_id=correlation_id, client_id=rc.CLIENT_ID)


def send_and_decode(conn: rc.RawConnection, payload: bytes) -> tuple[int, Any]:
    api_key, version = struct.unpack_from(">hh", payload)
    conn.send(rc.frame(payload))
    return rc.decode_response(api_key, version, conn.recv_frame(5.0))


@pytest.mark.parametrize("tags", [UNKNOWN_TAG, UNKNOWN_TAGS], ids=["one", "two"])
@pytest.mark.parametrize("where", ["body", "header", "header+body"])
def test_unknown_tagged_field_is_skipped(kawa, conn, where, tags):
    mark = kawa.log_mark()
    expected = conn.request(rc.api_versions_request(3))
    request = rc.api_versions_request(3)
    payload = rc.encode_request(request, 7)
    if "body" in where:
        payload = with_tags(payload, request, tags)
    if "header" in where:
        payload = with_tags(payload, header_of(request, 7), tags)
    correlation_id, response = send_and_decode(conn, payload)
    assert correlation_id == 7 and response.error_code == rc.NONE
    assert response.api_keys == expected.api_keys
    # The connection stays open and in step.
    assert conn.request(rc.metadata_request([], 9)).brokers
    assert "closing connection" not in kawa.log_since(mark)


@pytest.mark.parametrize("where", ["FetchRequest", "FetchTopic", "FetchPartition", "header",
                                   "everywhere"])
def test_unknown_tagged_fields_beside_known_ones_are_skipped(kawa, conn, where):
    """Fetch v12 carries a known tagged field (cluster_id, tag 0) in its body: unknown
    tags around it and in nested entities are skipped and the fetch is served."""
    topic = kclients.unique("tagged")
    rc.create_topic(conn, topic, 1)
    rc.produce_one(conn, topic, 0, bytes(rc.record_batch([b"one", b"two"])))
    request = dataclasses.replace(rc.fetch_request(topic, 0, 0, 12), cluster_id="c-1")
    known = b"\x01\x00\x04\x04c-1"  # the body's section: tag 0, 4 bytes, compact "c-1"
    payload = rc.encode_request(request, 8)
    parts = {"FetchRequest": (request, known), "FetchTopic": (request.topics[0], b""),
             "FetchPartition": (request.topics[0].partitions[0], b""),
             "header": (header_of(request, 8), b"")}
    for name, (part, keep) in parts.items():
        if where in (name, "everywhere"):
            payload = with_tags(payload, part, UNKNOWN_TAGS, keep)
    mark = kawa.log_mark()
    correlation_id, response = send_and_decode(conn, payload)
    assert correlation_id == 8 and response.error_code == rc.NONE
    fetched = response.responses[0]
    assert fetched.topic == topic and fetched.partitions[0].error_code == rc.NONE
    assert list(rc.decode_batches(fetched.partitions[0].records)) == [(0, b"one"), (1, b"two")]
    assert "closing connection" not in kawa.log_since(mark)


def test_unknown_tagged_field_in_a_nested_entity_is_skipped(kawa, conn):
    topic = kclients.unique("tagged")
    rc.create_topic(conn, topic, 3)
    request = rc.metadata_request([topic, "tagged-absent"], 9)
    payload = with_tags(rc.encode_request(request, 9), request.topics[0], UNKNOWN_TAGS)
    payload = with_tags(payload, request.topics[1], UNKNOWN_TAG)
    correlation_id, response = send_and_decode(conn, payload)
    assert correlation_id == 9
    answered = {t.name: (t.error_code, len(t.partitions)) for t in response.topics}
    assert answered == {topic: (rc.NONE, 3), "tagged-absent": (rc.UNKNOWN_TOPIC_OR_PARTITION, 0)}


def test_request_shorter_than_a_header_closes_connection(kawa, conn):
    mark = kawa.log_mark()
    conn.send(rc.frame(b"\x00\x12\x00"))
    assert conn.wait_closed(5.0)
    assert kawa.wait_for_log("shorter than a header", mark)

