"""A raw Kafka protocol client for the fault tests.

It frames requests with kio (request header v1, or v2 for flexible versions,
then the body), sends any bytes the test likes, and reads and decodes
responses. It also builds RecordBatch v2 bytes by hand, so tests can damage
them on purpose, and decodes fetched batches back into (offset, value).

Nothing here imports the broker: the tests check kawa against the wire
protocol, not against its own code.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import select
import socket
import struct
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, Self

import crc32c
from kio.index import load_request_schema, load_response_schema
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i32Timedelta

from kawa.protocol.varint import decode_uvarint

SIZE = struct.Struct(">i")
CLIENT_ID = "kawa-faults"

# Kafka error codes the tests look for.
NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
UNSUPPORTED_VERSION = 35
UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
INVALID_RECORD = 87
KAFKA_STORAGE_ERROR = 56

# API keys.
PRODUCE, FETCH, LIST_OFFSETS, METADATA = 0, 1, 2, 3
API_VERSIONS, CREATE_TOPICS, DELETE_TOPICS, DELETE_RECORDS = 18, 19, 20, 21
INIT_PRODUCER_ID, DESCRIBE_CONFIGS, CREATE_PARTITIONS = 22, 32, 37
INCREMENTAL_ALTER_CONFIGS, DESCRIBE_CLUSTER = 44, 60


class ConnectionClosed(Exception):
    """The broker closed the connection (EOF or reset)."""


# --------------------------------------------------------------------------- kio entities
def request_class(api_key: int, version: int) -> type:
    return load_request_schema(api_key, version)


def response_class(api_key: int, version: int) -> type:
    return load_response_schema(api_key, version)


def nested(cls: type, name: str) -> type | None:
    """The nested entity class `name` of the schema module that defines `cls`."""
    return getattr(sys.modules[cls.__module__], name, None)


def make(cls: type, **values: Any) -> Any:
    """An entity of `cls` from the values this version has fields for (others dropped)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def ms(milliseconds: int) -> i32Timedelta:
    return i32Timedelta.parse(datetime.timedelta(milliseconds=milliseconds))


def encode_body(entity: Any) -> bytes:
    buf = io.BytesIO()
    entity_writer(type(entity))(buf, entity)
    return buf.getvalue()


def encode_request(entity: Any, correlation_id: int, client_id: str | None = CLIENT_ID) -> bytes:
    """Header + body of `entity` (no size prefix). The header version follows the body's."""
    cls = type(entity)
    header_cls = RequestHeaderV2 if cls.__flexible__ else RequestHeaderV1
    header = header_cls(
        request_api_key=cls.__api_key__,
        request_api_version=cls.__version__,
        correlation_id=correlation_id,
        client_id=client_id,
    )
    return encode_body(header) + encode_body(entity)


def frame(payload: bytes) -> bytes:
    """A frame: 4-byte big-endian size, then the payload."""
    return SIZE.pack(len(payload)) + payload


def request_frame(entity: Any, correlation_id: int, client_id: str | None = CLIENT_ID) -> bytes:
    return frame(encode_request(entity, correlation_id, client_id))


def raw_header(api_key: int, version: int, correlation_id: int, client_id: bytes = b"x") -> bytes:
    """A request header v1 (non-flexible) built by hand, for keys/versions kio has no schema for."""
    return struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id




def response_flexible_header(api_key: int, version: int) -> bool:
    # ApiVersions always answers with header v0, so a client can read the error.
    return api_key != API_VERSIONS and bool(response_class(api_key, version).__flexible__)


def decode_response(api_key: int, version: int, payload: bytes) -> tuple[int, Any]:
    """(correlation_id, response entity) of one response frame's payload."""
    (correlation_id,) = SIZE.unpack_from(payload, 0)
    pos = 4
    if response_flexible_header(api_key, version):
        count, pos = decode_uvarint(payload, pos)
        for _ in range(count):  # skip tagged fields
            _, pos = decode_uvarint(payload, pos)
            size, pos = decode_uvarint(payload, pos)
            pos += size
    entity, _ = entity_reader(response_class(api_key, version))(payload, pos)
    return correlation_id, entity


# --------------------------------------------------------------------------- the connection
class RawConnection:
    """One TCP connection to the broker, blocking with deadlines."""

    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = bytearray()
        self._next_correlation_id = 1
        self.timeout_s = timeout_s

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_correlation_id(self) -> int:
        self._next_correlation_id += 1
        return self._next_correlation_id

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise ConnectionClosed(str(e)) from None

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no response from the broker in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError:
            raise TimeoutError("no response from the broker in time") from None
        except ConnectionResetError:
            raise ConnectionClosed("connection reset") from None
        if not chunk:
            raise ConnectionClosed("EOF")
        self._buffer += chunk

    def recv_frame(self, timeout_s: float | None = None) -> bytes:
        """The payload of the next response frame (size prefix removed)."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while len(self._buffer) < 4:
            self._fill(deadline)
        (size,) = SIZE.unpack_from(self._buffer, 0)
        while len(self._buffer) < 4 + size:
            self._fill(deadline)
        payload = bytes(self._buffer[4 : 4 + size])
        del self._buffer[: 4 + size]
        return payload

    def request(self, entity: Any, timeout_s: float | None = None) -> Any:
        """Send one request and return the decoded response (correlation id checked)."""
        correlation_id = self.next_correlation_id()
        self.send(request_frame(entity, correlation_id))
        cls = type(entity)
        got, response = decode_response(
            cls.__api_key__, cls.__version__, self.recv_frame(timeout_s)
        )
        assert got == correlation_id, f"correlation id {got}, expected {correlation_id}"
        return response

    def wait_closed(self, timeout_s: float = 5.0) -> bool:
        """Discard whatever arrives until the broker closes; False if still open at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._fill(deadline)
            except ConnectionClosed:
                return True
            except TimeoutError:
                return False

    def is_open(self, timeout_s: float = 0.2) -> bool:
        """True if the broker has not closed the connection (nothing arrives within timeout)."""
        readable, _, _ = select.select([self.sock], [], [], timeout_s)
        if not readable:
            return True
        try:
            data = self.sock.recv(1 << 16, socket.MSG_PEEK)
        except ConnectionResetError:
            return False
        return bool(data)


# --------------------------------------------------------------------------- requests
def api_versions_request(version: int = 3) -> Any:
    return make(
        request_class(API_VERSIONS, version),
        client_software_name="kawa-faults",
        client_software_version="1.0",
    )


def metadata_request(topics: Iterable[str] | None, version: int = 9,
                     allow_auto_topic_creation: bool = False) -> Any:
    cls = request_class(METADATA, version)
    topic_cls = nested(cls, "MetadataRequestTopic")
    return make(
        cls,
        topics=None if topics is None else tuple(
            make(topic_cls, name=t, topic_id=None) for t in topics
        ),
        allow_auto_topic_creation=allow_auto_topic_creation,
        include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False,
    )


def create_topics_request(name: str, partitions: int = 1, version: int = 5,
                          configs: dict[str, str] | None = None,
                          validate_only: bool = False) -> Any:
    cls = request_class(CREATE_TOPICS, version)
    topic_cls = nested(cls, "CreatableTopic")
    config_cls = nested(cls, "CreatableTopicConfig")
    return make(
        cls,
        topics=(
            make(
                topic_cls, name=name, num_partitions=partitions, replication_factor=1,
                assignments=(),
                configs=tuple(make(config_cls, name=k, value=v)
                              for k, v in (configs or {}).items()),
            ),
        ),
        timeout=ms(10_000),
        validate_only=validate_only,
    )


def produce_request(topic: str, partition: int, records: bytes | None, version: int = 9,
                    acks: int = -1) -> Any:
    cls = request_class(PRODUCE, version)
    topic_cls = nested(cls, "TopicProduceData")
    partition_cls = nested(cls, "PartitionProduceData")
    return make(
        cls,
        transactional_id=None,
        acks=acks,
        timeout=ms(10_000),
        topic_data=(
            make(topic_cls, name=topic,
                 partition_data=(make(partition_cls, index=partition, records=records),)),
        ),
    )


def fetch_request(topic: str, partition: int, offset: int, version: int = 11,
                  max_bytes: int = 1 << 20, topic_id: uuid.UUID | None = None) -> Any:
    """A fetch that never waits (max_wait 0, min_bytes 0)."""
    cls = request_class(FETCH, version)
    topic_cls = nested(cls, "FetchTopic")
    partition_cls = nested(cls, "FetchPartition")
    return make(
        cls,
        replica_id=-1,
        max_wait=ms(0),
        min_bytes=0,
        max_bytes=max_bytes,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=(
            make(
                topic_cls, topic=topic, topic_id=topic_id,
                partitions=(
                    make(partition_cls, partition=partition, current_leader_epoch=-1,
                         fetch_offset=offset, last_fetched_epoch=-1, log_start_offset=-1,
                         partition_max_bytes=max_bytes),
                ),
            ),
        ),
        forgotten_topics_data=(),
        rack_id="",
    )


def list_offsets_request(topic: str, partition: int, timestamp: int = -1,
                         version: int = 5) -> Any:
    """timestamp -1: latest (the high watermark), -2: earliest."""
    cls = request_class(LIST_OFFSETS, version)
    topic_cls = nested(cls, "ListOffsetsTopic")
    partition_cls = nested(cls, "ListOffsetsPartition")
    return make(
        cls,
        replica_id=-1,
        isolation_level=0,
        topics=(
            make(topic_cls, name=topic, partitions=(
                make(partition_cls, partition_index=partition, current_leader_epoch=-1,
                     timestamp=timestamp, max_num_offsets=1),
            )),
        ),
    )


# --------------------------------------------------------------------------- record batches
_BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")  # 61 bytes
_AFTER_CRC = struct.Struct(">hiqqqhii")  # attributes .. recordCount
BATCH_HEADER_BYTES = 61
CRC_START = 21  # the CRC-32C covers bytes [21:] of a batch
# Byte positions inside a batch header.
POS_BATCH_LENGTH, POS_MAGIC, POS_CRC = 8, 16, 17
POS_LAST_OFFSET_DELTA, POS_RECORD_COUNT = 23, 57


def varint(value: int) -> bytes:
    """Kafka's zigzag varint."""
    encoded = ((value << 1) ^ (value >> 63)) & ((1 << 64) - 1)
    out = bytearray()
    while encoded >= 0x80:
        out.append((encoded & 0x7F) | 0x80)
        encoded >>= 7
    out.append(encoded)
    return bytes(out)


def _read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    raw, pos = decode_uvarint(buf, pos)
    return (raw >> 1) ^ -(raw & 1), pos


def encode_record(value: bytes | None, offset_delta: int, key: bytes | None = None) -> bytes:
    body = bytearray(b"\x00")  # attributes
    body += varint(0)  # timestamp delta
    body += varint(offset_delta)
    for field in (key, value):
        body += varint(-1) if field is None else varint(len(field)) + field
    body += varint(0)  # no headers
    return varint(len(body)) + bytes(body)


def record_batch(values: list[bytes], base_offset: int = 0,
                 timestamp_ms: int = 1_700_000_000_000) -> bytearray:
    """A valid, uncompressed RecordBatch v2 holding `values` (no keys, no producer id)."""
    assert values
    records = b"".join(encode_record(v, i) for i, v in enumerate(values))
    after_crc = _AFTER_CRC.pack(0, len(values) - 1, timestamp_ms, timestamp_ms, -1, -1, -1,
                                len(values)) + records
    batch_length = 4 + 1 + 4 + len(after_crc)  # leaderEpoch + magic + crc + the rest
    out = bytearray(struct.pack(">qiib", base_offset, batch_length, -1, 2))
    out += struct.pack(">I", crc32c.crc32c(after_crc))
    out += after_crc
    return out


def fix_crc(batch: bytearray) -> bytearray:
    """Recompute the CRC-32C of a (deliberately edited) batch in place."""
    struct.pack_into(">I", batch, POS_CRC, crc32c.crc32c(bytes(batch[CRC_START:])))
    return batch


def decode_batches(data: bytes | None) -> Iterator[tuple[int, bytes | None]]:
    """(offset, value) of every record in uncompressed v2 batches, checking each CRC."""
    if not data:
        return
    view = memoryview(data)
    pos = 0
    while pos + 12 <= len(view):
        base_offset, length = struct.unpack_from(">qi", view, pos)
        if pos + 12 + length > len(view):
            return  # a partial batch at the end of a fetch response is allowed
        (base_offset, _, _, magic, crc, attributes, _, _, _, _, _, _, count) = (
            _BATCH_HEADER.unpack_from(view, pos)
        )
        assert magic == 2, f"magic {magic} at batch {base_offset}"
        assert attributes & 0x07 == 0, "compressed batches are not decoded here"
        end = pos + 12 + length
        assert crc32c.crc32c(view[pos + CRC_START : end]) == crc, f"bad CRC in batch {base_offset}"
        rpos = pos + BATCH_HEADER_BYTES
        for _ in range(count):
            _, rpos = _read_varint(view, rpos)  # record length
            rpos += 1  # attributes
            _, rpos = _read_varint(view, rpos)  # timestamp delta
            delta, rpos = _read_varint(view, rpos)
            key_len, rpos = _read_varint(view, rpos)
            rpos += max(key_len, 0)
            value_len, rpos = _read_varint(view, rpos)
            value = None if value_len < 0 else bytes(view[rpos : rpos + value_len])
            rpos += max(value_len, 0)
            header_count, rpos = _read_varint(view, rpos)
            for _ in range(header_count):
                hk, rpos = _read_varint(view, rpos)
                rpos += hk
                hv, rpos = _read_varint(view, rpos)
                rpos += max(hv, 0)
            yield base_offset + delta, value
        pos = end


# --------------------------------------------------------------------------- small conveniences
def produce_one(conn: RawConnection, topic: str, partition: int, records: bytes | None,
                version: int = 9) -> Any:
    """Produce and return the single partition response."""
    response = conn.request(produce_request(topic, partition, records, version))
    return response.responses[0].partition_responses[0]


def fetch_partition(conn: RawConnection, topic: str, partition: int, offset: int = 0,
                    version: int = 11) -> Any:
    response = conn.request(fetch_request(topic, partition, offset, version))
    return response.responses[0].partitions[0]


def high_watermark(conn: RawConnection, topic: str, partition: int = 0) -> int:
    p = fetch_partition(conn, topic, partition, 0)
    assert p.error_code == NONE, f"fetch {topic}-{partition}: error {p.error_code}"
    return p.high_watermark


def create_topic(conn: RawConnection, name: str, partitions: int = 1,
                 configs: dict[str, str] | None = None) -> None:
    response = conn.request(create_topics_request(name, partitions, configs=configs))
    result = response.topics[0]
    assert result.error_code == NONE, f"create {name}: {result.error_code} {result.error_message}"
