"""Reading the records inside a batch: only for slow, opt-in paths.

ListOffsets by timestamp needs the exact record, not just its batch; this
module decodes record timestamps and offsets (never keys or values), and
decompresses a batch when it must. The produce and fetch paths never call it.
"""

from __future__ import annotations

import gzip
import struct

from kawa.protocol.recordbatch import HEADER_SIZE_BYTES, read_header
from kawa.protocol.varint import decode_uvarint

_XERIAL_MAGIC = b"\x82SNAPPY\x00"


class UndecodableBatch(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Zigzag varint at pos -> (value, next pos)."""
    try:
        raw, pos = decode_uvarint(buf, pos)
    except ValueError as e:
        raise UndecodableBatch(str(e)) from None
    return (raw >> 1) ^ -(raw & 1), pos


def _snappy(data: bytes) -> bytes:
    import cramjam

    if not data.startswith(_XERIAL_MAGIC):
        return bytes(cramjam.snappy.decompress_raw(data))
    # Java clients frame snappy (xerial): 16-byte header, then (length, block)*.
    out = bytearray()
    pos = 16
    while pos < len(data):
        (length,) = struct.unpack_from(">i", data, pos)
        out += bytes(cramjam.snappy.decompress_raw(data[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    return bytes(out)


def _decompress(codec: int, data: bytes) -> bytes:
    try:
        if codec == 1:
            return gzip.decompress(data)
        if codec == 2:
            return _snappy(data)
        if codec == 3:
            import cramjam

            return bytes(cramjam.lz4.decompress(data))
        if codec == 4:
            import cramjam

            return bytes(cramjam.zstd.decompress(data))
    except Exception as e:  # noqa: BLE001 - any codec failure means "cannot decode"
        raise UndecodableBatch(f"cannot decompress codec {codec}: {e}") from None
    raise UndecodableBatch(f"unknown compression codec {codec}")


def record_timestamps(batch: bytes | memoryview) -> list[tuple[int, int]]:
    """(offset, timestamp) of every record in one whole batch, in order."""
    header = read_header(batch)
    data = bytes(memoryview(batch)[HEADER_SIZE_BYTES : header.size_bytes])
    if header.compression:
        data = _decompress(header.compression, data)
    out: list[tuple[int, int]] = []
    pos = 0
    try:
        for _ in range(header.record_count):
            length, body = _varint(data, pos)
            # attributes (1 byte), then timestampDelta and offsetDelta.
            timestamp_delta, after = _varint(data, body + 1)
            offset_delta, _ = _varint(data, after)
            out.append((header.base_offset + offset_delta, header.base_timestamp + timestamp_delta))
            pos = body + length
    except IndexError:
        raise UndecodableBatch("record runs past the end of the batch") from None
    return out
