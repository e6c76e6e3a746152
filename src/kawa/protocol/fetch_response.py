"""Hand-written FetchResponse encoder (v4..v16), the consume hot path.

kio's encoder copies every records field into one bytes object (21-29 µs per
64 KiB batch); this one returns a list of buffers for ``writelines``, so the
stored batches go to the socket without another copy. Field order per version
follows FetchResponse.json; tests check it byte for byte against kio.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from kawa.protocol.varint import encode_uvarint

_I32 = struct.Struct(">i")
_PARTITION_HEAD = struct.Struct(">ihqq")  # index, error, high watermark, last stable
_I64 = struct.Struct(">q")
_TOP_V7 = struct.Struct(">ihi")  # throttle, error, session id


@dataclass(slots=True)
class PartitionFetch:
    index: int
    error_code: int
    high_watermark: int
    log_start_offset: int
    chunks: Sequence[bytes | memoryview]
    size_bytes: int


@dataclass(slots=True)
class TopicFetch:
    name: str
    topic_id: uuid.UUID
    partitions: list[PartitionFetch]




def encode_fetch_response(
    version: int, topics: Sequence[TopicFetch], error_code: int = 0, session_id: int = 0
) -> tuple[list[bytes | memoryview], int]:
    """Body of a FetchResponse (no response header) as buffers, and its size."""
    assert 4 <= version <= 16, version
    flexible = version >= 12
    parts: list[bytes | memoryview] = []
    head = bytearray()
    if version >= 7:
        head += _TOP_V7.pack(0, error_code, session_id)
    else:
        head += _I32.pack(0)
    head += encode_uvarint(len(topics) + 1) if flexible else _I32.pack(len(topics))
    for topic in topics:
        if version >= 13:
            head += topic.topic_id.bytes
        else:
            name = topic.name.encode()
            head += encode_uvarint(len(name) + 1) if flexible else struct.pack(">h", len(name))
            head += name
        head += encode_uvarint(len(topic.partitions) + 1) if flexible else _I32.pack(len(topic.partitions))
        for p in topic.partitions:
            # last_stable_offset == high watermark: no transactions.
            head += _PARTITION_HEAD.pack(p.index, p.error_code, p.high_watermark, p.high_watermark)
            if version >= 5:
                head += _I64.pack(p.log_start_offset)
            # aborted_transactions: empty array.
            head += b"\x01" if flexible else b"\x00\x00\x00\x00"
            if version >= 11:
                head += b"\xff\xff\xff\xff"  # preferred_read_replica -1
            head += encode_uvarint(p.size_bytes + 1) if flexible else _I32.pack(p.size_bytes)
            if p.size_bytes:
                parts.append(bytes(head))
                parts.extend(p.chunks)
                head = bytearray()
            if flexible:
                head += b"\x00"  # partition tagged fields
        if flexible:
            head += b"\x00"  # topic tagged fields
    if flexible:
        head += b"\x00"  # response tagged fields
    parts.append(bytes(head))
    return parts, sum(len(part) for part in parts)
