"""Kafka's variable-length integers, as the hand-written codecs need them."""

from __future__ import annotations


def encode_uvarint(value: int) -> bytes:
    """Unsigned varint: 7 bits per byte, low bits first (compact lengths, tag counts)."""
    assert value >= 0
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Unsigned varint at `pos` -> (value, next pos). Raises ValueError past 10 bytes
    (a varlong's longest) and IndexError when the buffer ends first."""
    value = shift = 0
    for _ in range(10):
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("varint longer than 10 bytes")
