"""Frame generators and a pipelined sender for the protocol fuzz test.

Three families of frames, all with a correct 4-byte size prefix (damaged
size prefixes have their own tests):

(a) random   -- random bytes, or a real (api_key, version) header prefix
                followed by random bytes;
(b) mutated  -- a valid request of a served API key/version, encoded with
                kio, then damaged by a *mutation plan*: a short list of
                operations (bit flips, byte sets, truncation, insertion,
                deletion, a foreign api_key/version, a huge array/string
                length, splicing in another request);
(c) batch    -- a valid Produce request whose RecordBatch is damaged (bad
                CRC, wrong magic, batchLength off, lastOffsetDelta or
                counts inconsistent, truncated).

A mutation plan is plain data (tuples), so hypothesis can draw and shrink
plans while a seeded ``random.Random`` draws the same kind of plans for
volume. ``Pipeline`` sends frames over a few connections, each followed by
a *sentinel* ApiVersions v0 request: the sentinel's response proves the
broker read and answered everything before it, and a connection the broker
closes before the sentinel tells which frame it refused.
"""

from __future__ import annotations

import dataclasses
import random
import selectors
import socket
import struct
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import rawclient as rc

# -------------------------------------------------------------------------- samples

# api_key -> (min, max) versions the broker serves. These are kawa's at the
# time of writing; use_served() replaces them with what the broker under test
# advertises, and APIs without a hand-written sample get a generic one.
SERVED: dict[int, tuple[int, int]] = {
    rc.PRODUCE: (3, 11),
    rc.FETCH: (4, 16),
    rc.LIST_OFFSETS: (1, 8),
    rc.METADATA: (0, 12),
    rc.API_VERSIONS: (0, 3),
    rc.CREATE_TOPICS: (2, 7),
    rc.DELETE_TOPICS: (1, 6),
    rc.DELETE_RECORDS: (0, 2),
    rc.INIT_PRODUCER_ID: (0, 4),
    rc.DESCRIBE_CONFIGS: (1, 4),
    rc.CREATE_PARTITIONS: (0, 3),
    rc.INCREMENTAL_ALTER_CONFIGS: (0, 1),
    rc.DESCRIBE_CLUSTER: (0, 1),
}


@dataclass(frozen=True)
class Sample:
    """One valid request: its encoded header+body and where its length fields are."""

    api_key: int
    version: int
    entity: Any
    payload: bytes  # header + body, no size prefix
    header_bytes: int
    # (position in payload, kind) of every array/string/bytes length field:
    # kind is "i32", "i16" (non-flexible) or "uvarint" (flexible, compact).
    lengths: tuple[tuple[int, str], ...]

    @property
    def name(self) -> str:
        return f"{type(self.entity).__name__}v{self.version}"


def _build_requests(topic: str, topic_id: uuid.UUID, partitions: int) -> list[Any]:
    """Valid requests for every served (api_key, version), aimed at real code paths."""
    out: list[Any] = []
    batch = bytes(rc.record_batch([b"fuzz-0", b"fuzz-1", b"fuzz-2"]))
    for version in range(*_span(rc.PRODUCE)):
        for acks in (1, -1):
            out.append(rc.produce_request(topic, version % partitions, batch, version, acks))
    for version in range(*_span(rc.FETCH)):
        req = rc.fetch_request(topic, 0, 0, version, max_bytes=64 * 1024,
                               topic_id=topic_id if version >= 13 else None)
        if version >= 7:  # give it a non-empty forgotten-topics array too
            forgotten = rc.nested(type(req), "ForgottenTopic")
            req = dataclasses.replace(req, forgotten_topics_data=(
                rc.make(forgotten, topic=topic, topic_id=topic_id, partitions=(1,)),))
        out.append(req)
    for version in range(*_span(rc.LIST_OFFSETS)):
        for timestamp in (-1, -2, 1_700_000_000_000):
            out.append(rc.list_offsets_request(topic, 0, timestamp, version))
    for version in range(*_span(rc.METADATA)):
        names = [topic, "fuzz-absent"] if version >= 4 else [topic]
        out.append(rc.metadata_request(names, version))
        if version >= 10:
            req = out[-1]
            topic_cls = rc.nested(type(req), "MetadataRequestTopic")
            out.append(dataclasses.replace(req, topics=(rc.make(topic_cls, name=None,
                                                                topic_id=topic_id),)))
    for version in range(*_span(rc.API_VERSIONS)):
        out.append(rc.api_versions_request(version))
    for version in range(*_span(rc.CREATE_TOPICS)):
        out.append(rc.create_topics_request("fuzz-new", 2, version,
                                            configs={"retention.ms": "3600000"},
                                            validate_only=True))
    for version in range(*_span(rc.DELETE_TOPICS)):
        cls = rc.request_class(rc.DELETE_TOPICS, version)
        state = rc.nested(cls, "DeleteTopicState")
        out.append(rc.make(
            cls, topic_names=("fuzz-absent", "fuzz-absent2"), timeout=rc.ms(5000),
            topics=(rc.make(state, name="fuzz-absent", topic_id=None),
                    rc.make(state, name=None, topic_id=uuid.uuid4())) if state else (),
        ))
    for version in range(*_span(rc.DELETE_RECORDS)):
        cls = rc.request_class(rc.DELETE_RECORDS, version)
        t_cls, p_cls = rc.nested(cls, "DeleteRecordsTopic"), rc.nested(cls, "DeleteRecordsPartition")
        out.append(rc.make(cls, timeout=rc.ms(5000), topics=(
            rc.make(t_cls, name=topic, partitions=(rc.make(p_cls, partition_index=0, offset=0),)),
        )))
    for version in range(*_span(rc.INIT_PRODUCER_ID)):
        out.append(rc.make(rc.request_class(rc.INIT_PRODUCER_ID, version), transactional_id=None,
                           transaction_timeout=rc.ms(60_000), producer_id=-1, producer_epoch=-1))
    for version in range(*_span(rc.DESCRIBE_CONFIGS)):
        cls = rc.request_class(rc.DESCRIBE_CONFIGS, version)
        res = rc.nested(cls, "DescribeConfigsResource")
        out.append(rc.make(cls, include_synonyms=True, include_documentation=True, resources=(
            rc.make(res, resource_type=2, resource_name=topic,
                    configuration_keys=("retention.ms", "segment.bytes")),
            rc.make(res, resource_type=4, resource_name="0", configuration_keys=None),
        )))
    for version in range(*_span(rc.CREATE_PARTITIONS)):
        cls = rc.request_class(rc.CREATE_PARTITIONS, version)
        t_cls = rc.nested(cls, "CreatePartitionsTopic")
        out.append(rc.make(cls, timeout=rc.ms(5000), validate_only=True, topics=(
            rc.make(t_cls, name=topic, count=partitions + 1, assignments=None),
        )))
    for version in range(*_span(rc.INCREMENTAL_ALTER_CONFIGS)):
        cls = rc.request_class(rc.INCREMENTAL_ALTER_CONFIGS, version)
        r_cls, c_cls = rc.nested(cls, "AlterConfigsResource"), rc.nested(cls, "AlterableConfig")
        out.append(rc.make(cls, validate_only=True, resources=(
            rc.make(r_cls, resource_type=2, resource_name=topic, configs=(
                rc.make(c_cls, name="retention.ms", config_operation=0, value="3600000"),
                rc.make(c_cls, name="segment.bytes", config_operation=1, value=None),
            )),
        )))
    for version in range(*_span(rc.DESCRIBE_CLUSTER)):
        out.append(rc.make(rc.request_class(rc.DESCRIBE_CLUSTER, version),
                           include_cluster_authorized_operations=False, endpoint_type=1))
    for api_key in sorted(set(SERVED) - _HANDWRITTEN):
        for version in range(*_span(api_key)):
            out.append(generic_request(rc.request_class(api_key, version), topic, topic_id))
    return out


def _span(api_key: int) -> tuple[int, int]:
    low, high = SERVED.get(api_key, (0, -1))
    return low, high + 1


def use_served(advertised: dict[int, tuple[int, int]]) -> None:
    """Fuzz what the broker under test advertises (from its ApiVersions answer)."""
    SERVED.clear()
    SERVED.update(advertised)


# Hand-written samples exist for these; every other served API gets generic ones.
_HANDWRITTEN = {rc.PRODUCE, rc.FETCH, rc.LIST_OFFSETS, rc.METADATA, rc.API_VERSIONS,
                rc.CREATE_TOPICS, rc.DELETE_TOPICS, rc.DELETE_RECORDS, rc.INIT_PRODUCER_ID,
                rc.DESCRIBE_CONFIGS, rc.CREATE_PARTITIONS, rc.INCREMENTAL_ALTER_CONFIGS,
                rc.DESCRIBE_CLUSTER}
_GROUP = "fuzz-group"
# APIs whose answer may legitimately wait: Fetch (long poll), JoinGroup and
# SyncGroup (rebalance).
MAY_HOLD = {rc.FETCH, 11, 14}


def generic_request(cls: type, topic: str, topic_id: uuid.UUID) -> Any:
    """A plausible request of any schema: every array holds one element, every string
    a value (so mutations find lengths everywhere), names point at real things, and
    member ids are unknown ones so that group APIs answer at once instead of waiting
    for a rebalance."""
    import datetime

    from kio.serial._introspect import (
        EntityField,
        EntityTupleField,
        PrimitiveField,
        classify_field,
        get_schema_field_type,
    )
    from kio.static.primitive import i64Timedelta

    def value(f: dataclasses.Field, kafka_type: str) -> Any:
        name = f.name
        if kafka_type == "string":
            if name == "group_instance_id":
                return None  # static membership would change the group semantics
            if "group" in name or name == "key":
                return _GROUP
            if "member_id" in name:
                return "fuzz-unknown-member"
            if name in ("name", "topic", "topic_name", "resource_name"):
                return topic
            if name == "protocol_type":
                return "consumer"
            return "range"
        if kafka_type in ("bytes", "records"):
            return bytes(rc.record_batch([b"generic"])) if kafka_type == "records" else b"\x00\x01"
        if kafka_type == "uuid":
            return topic_id
        if kafka_type == "bool":
            return False
        if kafka_type == "timedelta_i32":
            return rc.ms(5000)
        if kafka_type == "timedelta_i64":
            return i64Timedelta.parse(datetime.timedelta(milliseconds=-1))
        if "generation" in name or "epoch" in name:
            return -1
        return 0

    def build(entity_cls: type) -> Any:
        values = {}
        for f in dataclasses.fields(entity_cls):
            kind = classify_field(f)
            if isinstance(kind, EntityField):
                values[f.name] = build(kind.type_)
            elif isinstance(kind, EntityTupleField):
                values[f.name] = (build(kind.type_),)
            elif isinstance(kind, PrimitiveField):
                values[f.name] = value(f, get_schema_field_type(f))
            else:
                values[f.name] = (value(f, get_schema_field_type(f)),)
        return entity_cls(**values)

    return build(cls)


def build_samples(topic: str, topic_id: uuid.UUID, partitions: int) -> list[Sample]:
    samples = []
    for entity in _build_requests(topic, topic_id, partitions):
        cls = type(entity)
        payload = rc.encode_request(entity, correlation_id=0)
        body = rc.encode_body(entity)
        header_bytes = len(payload) - len(body)
        lengths = tuple((header_bytes + pos, kind) for pos, kind in length_fields(entity))
        samples.append(Sample(cls.__api_key__, cls.__version__, entity, payload, header_bytes,
                              lengths))
    return samples


# -------------------------------------------------------------------------- length fields
def _variable_fields(obj: Any, path: tuple = ()) -> list[tuple[tuple, str]]:
    """Paths to every non-null, non-tagged array/string/bytes field of an entity."""
    found: list[tuple[tuple, str]] = []
    for f in dataclasses.fields(obj):
        if "tag" in f.metadata:
            continue
        value = getattr(obj, f.name)
        here = path + ((f.name, None),)
        if isinstance(value, tuple):
            if value:
                found.append((here, "array"))
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    found.extend(_variable_fields(item, path + ((f.name, i),)))
        elif isinstance(value, str):
            found.append((here, "string"))
        elif isinstance(value, bytes):
            found.append((here, "bytes"))
        elif dataclasses.is_dataclass(value):
            found.extend(_variable_fields(value, path + ((f.name, -1),)))
    return found


def _grow(obj: Any, path: tuple) -> Any:
    (name, index), rest = path[0], path[1:]
    value = getattr(obj, name)
    if not rest:
        if isinstance(value, tuple):
            new = value + (value[-1],)
        elif isinstance(value, str):
            new = value + "x"
        else:
            new = bytes(value) + b"x"
    elif index == -1:
        new = _grow(value, rest)
    else:
        new = value[:index] + (_grow(value[index], rest),) + value[index + 1:]
    return dataclasses.replace(obj, **{name: new})


def length_fields(entity: Any) -> list[tuple[int, str]]:
    """(body position, kind) of each length prefix, found by growing the field by one
    element/character and seeing which byte of the encoding changes first."""
    base = rc.encode_body(entity)
    flexible = type(entity).__flexible__
    out = []
    for path, kind in _variable_fields(entity):
        grown = rc.encode_body(_grow(entity, path))
        first = next(i for i, (a, b) in enumerate(zip(base, grown)) if a != b)
        if flexible:
            out.append((first, "uvarint"))
        elif kind == "string":
            out.append((first - 1, "i16"))
        else:
            out.append((first - 3, "i32"))
    return out


def _replace_array(obj: Any, names: list[str], new: tuple) -> Any:
    """`obj` with the array at the path `names` replaced by `new`; on the way down the
    path goes through struct fields and the first element of arrays."""
    name, rest = names[0], names[1:]
    value = getattr(obj, name)
    if not rest:
        assert isinstance(value, tuple), f"{name} is not an array"
        return dataclasses.replace(obj, **{name: new})
    if isinstance(value, tuple):
        value = (_replace_array(value[0], rest, new),) + value[1:]
    else:
        value = _replace_array(value, rest, new)
    return dataclasses.replace(obj, **{name: value})


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def with_array_length(entity: Any, field_path: str, length: int,
                      correlation_id: int = 1) -> bytes:
    """Header + body of `entity` with the array at `field_path` (dotted, e.g.
    "topic_data.partition_data"; it must hold an element) emptied, then its length
    prefix set to `length`: -1 is null (int32 -1, or compact 0); a positive length
    declares elements that are not there. Everything else stays well-formed."""
    names = field_path.split(".")
    empty = rc.encode_request(_replace_array(entity, names, ()), correlation_id)
    full = rc.encode_request(entity, correlation_id)
    first = next(i for i, (a, b) in enumerate(zip(empty, full)) if a != b)
    if type(entity).__flexible__:
        assert empty[first] == 0x01, field_path  # compact length 0 + 1
        return empty[:first] + _uvarint(length + 1) + empty[first + 1:]
    assert empty[first - 3 : first + 1] == b"\x00\x00\x00\x00", field_path
    return empty[: first - 3] + struct.pack(">i", length) + empty[first + 1:]


def with_null_array(entity: Any, field_path: str, correlation_id: int = 1) -> bytes:
    """Header + body of `entity` with the array at `field_path` encoded as null."""
    return with_array_length(entity, field_path, -1, correlation_id)


# -------------------------------------------------------------------------- mutations
# A mutation is a tuple (name, *params). Positions are taken modulo the
# payload length, so one plan applies to any payload.
HUGE_I32 = (0x7FFFFFFF, 0x40000000, 0x01000000, 65536, -2, -1000)
HUGE_I16 = (0x7FFF, 0x4000, -2, -1000)
HUGE_UVARINT = (
    b"\xff\xff\xff\xff\x0f",  # 2^32 - 1
    b"\x80\x80\x80\x80\x08",  # 2^31
    b"\x81\x80\x80\x01",  # 2^21 + 1
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # 2^64 - 1
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # never terminated
    b"\x00",  # null where a value is required
)
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE)


def apply_plan(payload: bytes, plan: tuple, sample: Sample | None,
               other: bytes = b"") -> bytes:
    buf = bytearray(payload)
    for mutation in plan:
        buf = _apply(buf, mutation, sample, other)
    return bytes(buf)


def _apply(buf: bytearray, m: tuple, sample: Sample | None, other: bytes) -> bytearray:
    name = m[0]
    n = len(buf)
    if name == "flip" and n:  # ("flip", pos, bit)
        buf[m[1] % n] ^= 1 << (m[2] % 8)
    elif name == "set" and n:  # ("set", pos, byte)
        buf[m[1] % n] = m[2] & 0xFF
    elif name == "truncate":  # ("truncate", keep)
        del buf[m[1] % (n + 1):]
    elif name == "insert":  # ("insert", pos, data)
        at = m[1] % (n + 1)
        buf[at:at] = m[2]
    elif name == "delete" and n:  # ("delete", pos, count)
        at = m[1] % n
        del buf[at : at + m[2]]
    elif name == "header" and n >= 4:  # ("header", api_key, version)
        struct.pack_into(">hh", buf, 0, m[1], m[2])
    elif name == "huge" and sample is not None and sample.lengths:  # ("huge", field, choice)
        pos, kind = sample.lengths[m[1] % len(sample.lengths)]
        if pos + 4 > n:
            return buf
        if kind == "i32":
            struct.pack_into(">i", buf, pos, HUGE_I32[m[2] % len(HUGE_I32)])
        elif kind == "i16":
            struct.pack_into(">h", buf, pos, HUGE_I16[m[2] % len(HUGE_I16)])
        else:
            buf[pos : pos + 1] = HUGE_UVARINT[m[2] % len(HUGE_UVARINT)]
    elif name == "splice" and other:  # ("splice", pos, start, count): bytes of another request
        at = m[1] % (n + 1)
        start = m[2] % len(other)
        buf[at:at] = other[start : start + m[3]]
    return buf


def random_mutation(rng: random.Random) -> tuple:
    kind = rng.random()
    pos = rng.randrange(1 << 16)
    if kind < 0.22:
        return ("flip", pos, rng.randrange(8))
    if kind < 0.34:
        return ("set", pos, rng.choice(INTERESTING_BYTES) if rng.random() < 0.6
                else rng.randrange(256))
    if kind < 0.46:
        return ("truncate", pos)
    if kind < 0.56:
        return ("insert", pos, rng.randbytes(rng.choice((1, 1, 2, 4, 8, 64))))
    if kind < 0.64:
        return ("delete", pos, rng.choice((1, 1, 2, 4, 16)))
    if kind < 0.78:
        return ("huge", rng.randrange(64), rng.randrange(64))
    if kind < 0.90:
        return ("header",) + random_header(rng)
    return ("splice", pos, rng.randrange(1 << 16), rng.choice((4, 16, 64)))


def random_header(rng: random.Random) -> tuple[int, int]:
    """Mostly a served key at a wrong or foreign version; sometimes anything."""
    r = rng.random()
    if r < 0.5:  # a served key at a version it does serve, but not the body's API
        key = rng.choice(list(SERVED))
        return key, rng.randint(*SERVED[key])
    if r < 0.8:  # a served key at a version just outside what is served
        key = rng.choice(list(SERVED))
        low, high = SERVED[key]
        return key, rng.choice((low - 1, high + 1, -1, 0x7FFF))
    return rng.randrange(-(1 << 15), 1 << 15), rng.randrange(-(1 << 15), 1 << 15)


# -------------------------------------------------------------------------- batch damage
BATCH_DAMAGE = (
    "bad_crc", "magic_0", "magic_1", "magic_3", "length_plus", "length_minus",
    "length_tiny", "last_offset_delta_low", "negative_count", "negative_delta",
    "truncated", "trailing_garbage", "second_batch_bad",
)


def damage_batch(batch: bytearray, damage: str, amount: int = 1) -> bytearray:
    """A copy of a valid batch with one kind of damage. CRC-covered edits (after byte
    21) keep the CRC correct where the damage is meant to be something else, so that
    each case tests the check it names."""
    b = bytearray(batch)
    amount = max(1, amount)
    if damage == "bad_crc":
        b[-1 - (amount % (len(b) - rc.CRC_START))] ^= 0x5A  # a payload byte, CRC not updated
    elif damage.startswith("magic_"):
        b[rc.POS_MAGIC] = int(damage[-1])
    elif damage == "length_plus":  # claims more bytes than are there
        struct.pack_into(">i", b, rc.POS_BATCH_LENGTH, len(b) - 12 + amount)
    elif damage == "length_minus":  # claims fewer: the CRC no longer covers the same bytes
        struct.pack_into(">i", b, rc.POS_BATCH_LENGTH, len(b) - 12 - min(amount, len(b) - 61))
    elif damage == "length_tiny":  # smaller than a batch header
        struct.pack_into(">i", b, rc.POS_BATCH_LENGTH, amount % 49)
    elif damage == "last_offset_delta_low":  # lastOffsetDelta < recordCount - 1
        count = struct.unpack_from(">i", b, rc.POS_RECORD_COUNT)[0]
        assert count >= 2, "needs a batch of at least two records"
        struct.pack_into(">i", b, rc.POS_LAST_OFFSET_DELTA, max(0, count - 1 - amount))
        rc.fix_crc(b)
    elif damage == "negative_count":
        struct.pack_into(">i", b, rc.POS_RECORD_COUNT, -amount)
        rc.fix_crc(b)
    elif damage == "negative_delta":
        struct.pack_into(">i", b, rc.POS_LAST_OFFSET_DELTA, -amount)
        rc.fix_crc(b)
    elif damage == "truncated":  # the records field ends inside the batch
        del b[max(1, len(b) - amount):]
    elif damage == "trailing_garbage":  # a second "batch" that is only a few bytes
        b += bytes(range(amount % 60 + 1))
    elif damage == "second_batch_bad":  # a good batch followed by a bad-CRC one
        bad = bytearray(batch)
        bad[-1] ^= 0xFF
        b += bad
    else:
        raise ValueError(damage)
    return b


COUNT_DAMAGE = ("last_offset_delta_low", "negative_count", "negative_delta")


def expected_batch_errors(damage: str) -> set[int]:
    """The error codes a broker may answer for a damaged batch: UNSUPPORTED_FOR_MESSAGE_FORMAT
    for a wrong magic, CORRUPT_MESSAGE for bad bytes (CRC, lengths, truncation); for
    inconsistent counts CORRUPT_MESSAGE or Kafka's INVALID_RECORD."""
    if damage.startswith("magic_"):
        return {rc.UNSUPPORTED_FOR_MESSAGE_FORMAT}
    if damage in COUNT_DAMAGE:
        return {rc.CORRUPT_MESSAGE, rc.INVALID_RECORD}
    return {rc.CORRUPT_MESSAGE}


# -------------------------------------------------------------------------- random frames
class FrameSource:
    """Seeded volume generator of frame payloads (no size prefix); counts them by family."""

    def __init__(self, samples: list[Sample], produce_target: tuple[str, int], seed: int) -> None:
        self.rng = random.Random(seed)
        self.samples = samples
        self.topic, self.partitions = produce_target
        self.counts: dict[str, int] = {}

    def next(self) -> bytes:
        """The next frame payload (anything a generator makes: nothing is held back)."""
        rng = self.rng
        r = rng.random()
        if r < 0.12:
            family, payload = "random", self._random()
        elif r < 0.22:
            family, payload = "batch", self._batch()
        elif r < 0.26:
            family, payload = "valid", rng.choice(self.samples).payload
        else:
            family, payload = "mutated", self._mutated()
        self.counts[family] = self.counts.get(family, 0) + 1
        return payload

    def _random(self) -> bytes:
        rng = self.rng
        size = rng.choice((1, 4, 7, 8, 10, 16, 40, 100, 300, 1000))
        if rng.random() < 0.5:  # a plausible header, then noise
            key = rng.choice(list(SERVED))
            return struct.pack(">hhi", key, rng.randint(*SERVED[key]),
                               rng.randrange(1 << 31)) + rng.randbytes(size)
        return rng.randbytes(size)

    def _mutated(self) -> bytes:
        rng = self.rng
        sample = rng.choice(self.samples)
        plan = tuple(random_mutation(rng) for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 5))))
        other = rng.choice(self.samples).payload
        return apply_plan(sample.payload, plan, sample, other)

    def _batch(self) -> bytes:
        rng = self.rng
        values = [rng.randbytes(rng.randrange(0, 40)) for _ in range(rng.randint(2, 5))]
        batch = damage_batch(rc.record_batch(values), rng.choice(BATCH_DAMAGE),
                             rng.randrange(1, 200))
        version = rng.randint(*SERVED[rc.PRODUCE])
        request = rc.produce_request(self.topic, rng.randrange(self.partitions), bytes(batch),
                                     version, acks=rng.choice((1, -1)))
        return rc.encode_request(request, rng.randrange(1 << 31))


# -------------------------------------------------------------------------- the sender
SENTINEL_BASE = 0x5E000000


def sentinel_frame(correlation_id: int) -> bytes:
    """ApiVersions v0: every broker answers it, in header v0, whatever came before."""
    return rc.frame(rc.raw_header(rc.API_VERSIONS, 0, correlation_id, b"sentinel"))


@dataclass
class _Conn:
    sock: socket.socket
    out: bytearray = field(default_factory=bytearray)
    inbuf: bytearray = field(default_factory=bytearray)
    pending: deque[int] = field(default_factory=deque)  # sentinel ids awaiting answer
    last_progress: float = field(default_factory=time.monotonic)


@dataclass
class PipelineStats:
    delivered: int = 0  # frames the broker provably read (answered past, or closed on)
    answered: int = 0  # of those, followed by an answered sentinel on the same connection
    closed_by_broker: int = 0  # connections the broker closed (a refused frame)
    stalled: int = 0  # connections abandoned with no progress for stall_s (e.g. long polls)
    connections: int = 0
    elapsed_s: float = 0.0


class Pipeline:
    """Pipelines frames (each followed by a sentinel) over a few connections."""

    def __init__(self, host: str, port: int, connections: int = 4, window: int = 8,
                 stall_s: float = 5.0) -> None:
        self.address = (host, port)
        self.window = window
        self.stall_s = stall_s
        self.stats = PipelineStats()
        self._selector = selectors.DefaultSelector()
        self._next_sentinel = 0
        self._conns = [self._connect() for _ in range(connections)]

    def _connect(self) -> _Conn:
        sock = socket.create_connection(self.address, timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = _Conn(sock)
        self._selector.register(sock, selectors.EVENT_READ, conn)
        self.stats.connections += 1
        return conn

    def _replace(self, conn: _Conn, stalled: bool = False) -> None:
        if conn.pending:
            # Everything before pending[0] was answered, so the broker read the
            # frame of pending[0] and closed the connection on it.
            self.stats.delivered += 1
        if stalled:
            self.stats.stalled += 1
        else:
            self.stats.closed_by_broker += 1
        self._selector.unregister(conn.sock)
        conn.sock.close()
        self._conns[self._conns.index(conn)] = self._connect()

    def run(self, next_payload: Callable[[], bytes], frames: int, time_limit_s: float) -> PipelineStats:
        start = time.monotonic()
        deadline = start + time_limit_s
        stats = self.stats
        while stats.delivered < frames and time.monotonic() < deadline:
            now = time.monotonic()
            for conn in list(self._conns):
                if not conn.pending:
                    conn.last_progress = now
                while len(conn.pending) < self.window and len(conn.out) < 256 * 1024:
                    self._next_sentinel += 1
                    sentinel = SENTINEL_BASE + self._next_sentinel
                    conn.out += rc.frame(next_payload()) + sentinel_frame(sentinel)
                    conn.pending.append(sentinel)
                events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
                self._selector.modify(conn.sock, events, conn)
                if conn.pending and now - conn.last_progress > self.stall_s:
                    self._replace(conn, stalled=True)
            for key, mask in self._selector.select(timeout=0.5):
                conn = key.data
                if conn not in self._conns:
                    continue  # replaced earlier in this round
                try:
                    if mask & selectors.EVENT_WRITE and conn.out:
                        sent = conn.sock.send(conn.out)
                        del conn.out[:sent]
                    if mask & selectors.EVENT_READ:
                        data = conn.sock.recv(1 << 20)
                        if not data:
                            raise ConnectionResetError("EOF")
                        conn.inbuf += data
                        self._consume(conn)
                except (ConnectionResetError, BrokenPipeError):
                    self._replace(conn)
                except BlockingIOError:
                    pass
        stats.elapsed_s = time.monotonic() - start
        return stats

    def _consume(self, conn: _Conn) -> None:
        buf = conn.inbuf
        pos = 0
        while len(buf) - pos >= 8:
            (size,) = rc.SIZE.unpack_from(buf, pos)
            if len(buf) - pos < 4 + size:
                break
            (correlation_id,) = rc.SIZE.unpack_from(buf, pos + 4)
            if conn.pending and correlation_id == conn.pending[0]:
                conn.pending.popleft()
                self.stats.delivered += 1
                self.stats.answered += 1
                conn.last_progress = time.monotonic()
            pos += 4 + size
        del buf[:pos]

    def close(self) -> None:
        for conn in self._conns:
            self._selector.unregister(conn.sock)
            conn.sock.close()
        self._selector.close()


class Probe:
    """Sends one frame and a sentinel on a kept-open connection; reports whether the
    broker answered past the frame ("answered"), closed the connection ("closed"),
    or did neither in time ("timeout", e.g. a long-polling fetch)."""

    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self.address = (host, port)
        self.timeout_s = timeout_s
        self.conn: rc.RawConnection | None = None
        self._sentinel = 0

    def send(self, payload: bytes) -> str:
        if self.conn is None:
            self.conn = rc.RawConnection(*self.address, timeout_s=self.timeout_s)
        self._sentinel += 1
        sentinel = SENTINEL_BASE + self._sentinel
        try:
            self.conn.send(rc.frame(payload) + sentinel_frame(sentinel))
            while True:
                response = self.conn.recv_frame()
                if rc.SIZE.unpack_from(response, 0)[0] == sentinel:
                    return "answered"
        except rc.ConnectionClosed:
            self.close()
            return "closed"
        except TimeoutError:
            self.close()
            return "timeout"

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
