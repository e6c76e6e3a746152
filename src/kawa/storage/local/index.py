"""Sparse index file formats of a local segment (Kafka's OffsetIndex / TimeIndex).

Both files are arrays of fixed-size big-endian entries, appended as the
segment grows and never rewritten in place:

* ``.index``: ``relative offset u32, file position u32`` (8 bytes). An entry
  names the first byte of a batch and that batch's baseOffset minus the
  segment's base offset. Entries are strictly increasing in both fields and
  sparse: one every ``index.interval.bytes`` of log. Position 0 is implied
  and never stored.
* ``.timeindex``: ``timestamp i64, relative offset u32`` (12 bytes). An entry
  (T, o) says: T is the segment's running max timestamp, first reached by the
  batch at offset o. So every batch before o has maxTimestamp < T. Timestamps
  are strictly increasing, offsets non-decreasing. When a segment is sealed
  its last entry holds the segment's max timestamp.

Index files are not fsynced while their segment is active: recovery rebuilds
the active segment's indexes from the log, which is the source of truth.
"""

from __future__ import annotations

import bisect
import os
import struct
import sys
from array import array
from pathlib import Path

OFFSET_ENTRY = struct.Struct(">II")
TIME_ENTRY = struct.Struct(">qI")
NO_TIMESTAMP = -1
_MAX_U32 = 0xFFFFFFFF


class IndexInconsistent(ValueError):
    """An index file that cannot be trusted; the caller rebuilds it from the log."""


def _u32_pairs(data: bytes) -> array[int]:
    values = array("I")
    assert values.itemsize == 4
    values.frombytes(data)
    if sys.byteorder == "little":
        values.byteswap()
    return values


class OffsetIndex:
    """Relative offset -> file position, held in two parallel arrays (4 bytes/entry each)."""

    __slots__ = ("positions", "rel_offsets")

    def __init__(self) -> None:
        self.rel_offsets: array[int] = array("I")
        self.positions: array[int] = array("I")

    def __len__(self) -> int:
        return len(self.rel_offsets)

    def append(self, rel_offset: int, position: int) -> bytes:
        """Add an entry; returns its encoding for the caller to write to the file."""
        assert 0 <= rel_offset <= _MAX_U32 and 0 < position <= _MAX_U32
        assert not self.rel_offsets or (
            rel_offset > self.rel_offsets[-1] and position > self.positions[-1]
        ), "offset index entries must increase"
        self.rel_offsets.append(rel_offset)
        self.positions.append(position)
        return OFFSET_ENTRY.pack(rel_offset, position)

    def lookup(self, rel_offset: int) -> tuple[int, int]:
        """(rel offset, position) of the last entry at or below `rel_offset`, else (0, 0)."""
        i = bisect.bisect_right(self.rel_offsets, rel_offset)
        if i == 0:
            return 0, 0
        return self.rel_offsets[i - 1], self.positions[i - 1]

    def to_bytes(self) -> bytes:
        pairs = array("I")
        for rel, pos in zip(self.rel_offsets, self.positions, strict=True):
            pairs.append(rel)
            pairs.append(pos)
        if sys.byteorder == "little":
            pairs.byteswap()
        return pairs.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, log_size: int) -> OffsetIndex:
        """Parse and check bounds and monotonicity; raises IndexInconsistent."""
        if len(data) % OFFSET_ENTRY.size:
            raise IndexInconsistent(f"offset index length {len(data)} is not a multiple of 8")
        pairs = _u32_pairs(data)
        index = cls()
        index.rel_offsets = pairs[0::2]
        index.positions = pairs[1::2]
        prev_rel, prev_pos = -1, 0
        for rel, pos in zip(index.rel_offsets, index.positions, strict=True):
            if rel <= prev_rel or pos <= prev_pos or pos >= log_size:
                raise IndexInconsistent(f"offset index entry ({rel}, {pos}) out of order or bounds")
            prev_rel, prev_pos = rel, pos
        return index


class TimeIndex:
    """Running max timestamp -> relative offset of the batch that first reached it."""

    __slots__ = ("rel_offsets", "timestamps")

    def __init__(self) -> None:
        self.timestamps: array[int] = array("q")
        self.rel_offsets: array[int] = array("I")

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def last_timestamp(self) -> int:
        return self.timestamps[-1] if self.timestamps else NO_TIMESTAMP

    def maybe_append(self, timestamp: int, rel_offset: int) -> bytes:
        """Add an entry if `timestamp` raises the last one; returns the bytes to write."""
        if timestamp <= self.last_timestamp:
            return b""
        assert 0 <= rel_offset <= _MAX_U32
        assert not self.rel_offsets or rel_offset >= self.rel_offsets[-1]
        self.timestamps.append(timestamp)
        self.rel_offsets.append(rel_offset)
        return TIME_ENTRY.pack(timestamp, rel_offset)

    def lookup_below(self, timestamp: int) -> int:
        """Relative offset from which to scan for the first batch with maxTimestamp >= timestamp.

        Every batch before the returned offset has maxTimestamp < `timestamp`.
        """
        i = bisect.bisect_left(self.timestamps, timestamp)
        return self.rel_offsets[i - 1] if i else 0

    def to_bytes(self) -> bytes:
        return b"".join(
            TIME_ENTRY.pack(ts, rel)
            for ts, rel in zip(self.timestamps, self.rel_offsets, strict=True)
        )

    @classmethod
    def from_bytes(cls, data: bytes, max_rel_offset: int) -> TimeIndex:
        """Parse and check monotonicity and that offsets lie inside the segment."""
        if len(data) % TIME_ENTRY.size:
            raise IndexInconsistent(f"time index length {len(data)} is not a multiple of 12")
        index = cls()
        prev_ts, prev_rel = NO_TIMESTAMP, 0
        for ts, rel in TIME_ENTRY.iter_unpack(data):
            if ts <= prev_ts or rel < prev_rel or rel > max_rel_offset:
                raise IndexInconsistent(f"time index entry ({ts}, {rel}) out of order or bounds")
            index.timestamps.append(ts)
            index.rel_offsets.append(rel)
            prev_ts, prev_rel = ts, rel
        return index


def read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def fsync_directory(directory: Path) -> None:
    """Make creations, renames and removals of entries in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file.

    The caller fsyncs the directory if the rename itself must be durable.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
