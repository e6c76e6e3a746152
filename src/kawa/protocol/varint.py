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
