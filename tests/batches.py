"""Build valid RecordBatch v2 bytes for tests (uncompressed, CRC-32C correct)."""

from __future__ import annotations

import struct

import crc32c

from kawa.protocol.recordbatch import BatchHeader, read_header, split_batches

_HEADER_AFTER_CRC = struct.Struct(">hiqqqhii")  # attributes .. recordCount
_HEADER_BEFORE_CRC = struct.Struct(">qiib")  # baseOffset, batchLength, leaderEpoch, magic


def zigzag_varint(value: int) -> bytes:
    """Kafka's signed varint/varlong: zigzag, then 7 bits per byte, low bits first."""
    encoded = (value << 1) ^ (value >> 63)
    encoded &= (1 << 64) - 1
    out = bytearray()
    while encoded >= 0x80:
        out.append((encoded & 0x7F) | 0x80)
        encoded >>= 7
    out.append(encoded)
    return bytes(out)


def _nullable(data: bytes | None) -> bytes:
    if data is None:
        return zigzag_varint(-1)
    return zigzag_varint(len(data)) + data


def encode_record(
    value: bytes | None,
    offset_delta: int,
    timestamp_delta: int = 0,
    key: bytes | None = None,
    headers: list[tuple[bytes, bytes | None]] | None = None,
) -> bytes:
    body = bytearray(b"\x00")  # attributes
    body += zigzag_varint(timestamp_delta)
    body += zigzag_varint(offset_delta)
    body += _nullable(key)
    body += _nullable(value)
    headers = headers or []
    body += zigzag_varint(len(headers))
    for header_key, header_value in headers:
        body += _nullable(header_key)
        body += _nullable(header_value)
    return zigzag_varint(len(body)) + bytes(body)


def make_batch(
    records: list[bytes],
    base_timestamp_ms: int = 1_700_000_000_000,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    *,
    timestamp_deltas: list[int] | None = None,
    attributes: int = 0,
    base_offset: int = 0,
    partition_leader_epoch: int = -1,
) -> bytearray:
    """One batch holding `records` as values (no keys), offsets 0..n-1 relative.

    maxTimestamp is base_timestamp_ms plus the largest timestamp delta (all
    zero unless `timestamp_deltas` is given).
    """
    assert records, "a batch holds at least one record"
    deltas = timestamp_deltas or [0] * len(records)
    assert len(deltas) == len(records)
    body = b"".join(encode_record(value, i, deltas[i]) for i, value in enumerate(records))
    after_crc = (
        _HEADER_AFTER_CRC.pack(
            attributes,
            len(records) - 1,  # lastOffsetDelta
            base_timestamp_ms,
            base_timestamp_ms + max(deltas),
            producer_id,
            producer_epoch,
            base_sequence,
            len(records),
        )
        + body
    )
    crc = crc32c.crc32c(after_crc)
    batch_length = 4 + 1 + 4 + len(after_crc)  # leaderEpoch + magic + crc + rest
    out = bytearray(_HEADER_BEFORE_CRC.pack(base_offset, batch_length, partition_leader_epoch, 2))
    out += struct.pack(">I", crc)
    out += after_crc
    return out


def headers_of(batches: bytes | bytearray) -> list[BatchHeader]:
    """Validated headers of concatenated batches (what a produce request handler passes)."""
    return split_batches(batches)


def header_of(batch: bytes | bytearray) -> BatchHeader:
    return read_header(batch)
