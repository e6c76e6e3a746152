"""RecordBatch header validation: what the broker accepts and what it refuses."""

from __future__ import annotations

import struct

import pytest
from batches import make_batch

from kawa.protocol.recordbatch import InvalidBatch, set_base_offset, split_batches, validate_batch


def test_valid_batches_split_with_headers() -> None:
    a, b = make_batch([b"x", b"y", b"z"]), make_batch([b"w"])
    headers = split_batches(a + b)
    assert [h.record_count for h in headers] == [3, 1]
    assert [h.last_offset_delta for h in headers] == [2, 0]
    assert sum(h.size_bytes for h in headers) == len(a) + len(b)


def test_base_offset_rewrite_keeps_crc_valid() -> None:
    batch = make_batch([b"x"])
    set_base_offset(batch, 0, 123456)
    assert validate_batch(batch).base_offset == 123456


def test_bad_crc_is_corrupt() -> None:
    batch = make_batch([b"payload"])
    batch[-1] ^= 0xFF
    with pytest.raises(InvalidBatch, match="CRC") as e:
        validate_batch(batch)
    assert e.value.corrupt


def test_wrong_magic_is_a_format_error() -> None:
    batch = make_batch([b"payload"])
    batch[16] = 1
    with pytest.raises(InvalidBatch, match="magic") as e:
        validate_batch(batch)
    assert not e.value.corrupt


@pytest.mark.parametrize("delta", [-20, 5])
def test_length_that_does_not_match_the_bytes(delta: int) -> None:
    batch = make_batch([b"payload", b"more"])
    (length,) = struct.unpack_from(">i", batch, 8)
    struct.pack_into(">i", batch, 8, length + delta)
    with pytest.raises(InvalidBatch):
        split_batches(batch)


def test_truncated_and_empty() -> None:
    batch = make_batch([b"payload"])
    with pytest.raises(InvalidBatch, match="truncated|present"):
        split_batches(batch[:30])
    with pytest.raises(InvalidBatch, match="empty"):
        split_batches(b"")
