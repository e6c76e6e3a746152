"""Record timestamps inside a batch (ListOffsets' slow path)."""

from __future__ import annotations

import pytest
from batches import make_batch

from kawa.protocol.recordbatch import set_base_offset
from kawa.protocol.records import UndecodableBatch, record_timestamps


def test_offsets_and_timestamps_of_each_record() -> None:
    batch = make_batch([b"a", b"b", b"c"], base_timestamp_ms=1000, timestamp_deltas=[0, 5, 3])
    set_base_offset(batch, 0, 40)
    assert record_timestamps(batch) == [(40, 1000), (41, 1005), (42, 1003)]


def test_garbage_compressed_payload_is_undecodable() -> None:
    batch = make_batch([b"a"], attributes=4)  # claims zstd, holds plain records
    with pytest.raises(UndecodableBatch):
        record_timestamps(batch)
