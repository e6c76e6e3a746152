"""RecordBatch v2 header: the only part of a record batch the broker reads.

Layout (61 bytes, big-endian, `>qiibIhiqqqhii`)::

    baseOffset@0 i64  batchLength@8 i32  partitionLeaderEpoch@12 i32  magic@16 i8
    crc@17 u32  attributes@21 i16  lastOffsetDelta@23 i32  baseTimestamp@27 i64
    maxTimestamp@35 i64  producerId@43 i64  producerEpoch@51 i16
    baseSequence@53 i32  recordCount@57 i32

Rules the broker relies on:

* batchLength counts the bytes after itself, so a batch occupies
  ``12 + batchLength`` bytes.
* The CRC-32C covers bytes ``[21:]`` (attributes to the end). baseOffset and
  partitionLeaderEpoch lie outside it, so the broker assigns offsets by
  rewriting baseOffset without recomputing the CRC.
* Records inside are never decoded here: compressed batches pass through
  untouched.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c

HEADER_SIZE_BYTES = 61
LOG_OVERHEAD_BYTES = 12  # baseOffset + batchLength, outside batchLength
MAGIC_V2 = 2

_HEADER = struct.Struct(">qiibIhiqqqhii")
_BASE_OFFSET = struct.Struct(">q")
_OFFSET_AND_LENGTH = struct.Struct(">qi")

ATTR_COMPRESSION_MASK = 0x07
ATTR_TIMESTAMP_TYPE = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20

NO_PRODUCER_ID = -1


class InvalidBatch(ValueError):
    """A batch that must not be stored. `reason` names what is wrong."""

    def __init__(self, reason: str, *, corrupt: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        # corrupt: bad bytes (CORRUPT_MESSAGE); otherwise a rule the batch
        # breaks (INVALID_RECORD / UNSUPPORTED_FOR_MESSAGE_FORMAT).
        self.corrupt = corrupt


@dataclass(frozen=True, slots=True)
class BatchHeader:
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size_bytes(self) -> int:
        return LOG_OVERHEAD_BYTES + self.batch_length

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def compression(self) -> int:
        return self.attributes & ATTR_COMPRESSION_MASK

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & ATTR_CONTROL)

    @property
    def last_sequence(self) -> int:
        if self.base_sequence < 0:
            return -1
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF


def read_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the 61-byte header at `pos`. Checks nothing but that it fits."""
    if len(buf) - pos < HEADER_SIZE_BYTES:
        raise InvalidBatch(f"batch header truncated: {len(buf) - pos} < {HEADER_SIZE_BYTES} bytes")
    return BatchHeader(*_HEADER.unpack_from(buf, pos))


def peek_offset_and_size(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """(baseOffset, total size in bytes) of the batch at `pos`, unchecked."""
    base_offset, length = _OFFSET_AND_LENGTH.unpack_from(buf, pos)
    return base_offset, LOG_OVERHEAD_BYTES + length


def validate_batch(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Check one batch at `pos`: size fits, magic 2, sane counts, CRC-32C.

    Returns the header; raises InvalidBatch naming the problem.
    """
    header = read_header(buf, pos)
    available = len(buf) - pos
    if header.magic != MAGIC_V2:
        raise InvalidBatch(f"unsupported magic {header.magic} (only v2 batches)", corrupt=False)
    if header.batch_length < HEADER_SIZE_BYTES - LOG_OVERHEAD_BYTES:
        raise InvalidBatch(f"batchLength {header.batch_length} smaller than a header")
    if header.size_bytes > available:
        raise InvalidBatch(f"batch of {header.size_bytes} bytes but only {available} present")
    if header.last_offset_delta < 0 or header.record_count < 0:
        raise InvalidBatch("negative lastOffsetDelta or recordCount")
    if header.record_count and header.last_offset_delta + 1 < header.record_count:
        raise InvalidBatch("recordCount exceeds lastOffsetDelta + 1")
    body = memoryview(buf)[pos + 21 : pos + header.size_bytes]
    actual = crc32c.crc32c(body)
    if actual != header.crc:
        raise InvalidBatch(f"CRC-32C mismatch: stored {header.crc:#010x}, computed {actual:#010x}")
    return header


def split_batches(buf: bytes | bytearray | memoryview) -> list[BatchHeader]:
    """Validate every batch in a produce payload; the payload must be whole batches."""
    headers: list[BatchHeader] = []
    pos = 0
    end = len(buf)
    # Bounded: each iteration advances pos by at least one header.
    while pos < end:
        header = validate_batch(buf, pos)
        headers.append(header)
        pos += header.size_bytes
    if not headers:
        raise InvalidBatch("empty record set")
    return headers


def set_base_offset(buf: bytearray | memoryview, pos: int, base_offset: int) -> None:
    """Rewrite baseOffset in place (outside the CRC, so the CRC stays valid)."""
    _BASE_OFFSET.pack_into(buf, pos, base_offset)
