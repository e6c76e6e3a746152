"""One segment of a local partition log: its .log file plus offset and time index.

A segment is named by its base offset (20 digits). Its .log holds whole
RecordBatch v2 batches back to back, exactly as appended; its indexes are
sparse lookups into it (see ``index.py``). Only the last segment of a log is
active (appended to); sealing a segment fsyncs it and its indexes, so every
non-active segment is durable and recovery can trust it.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path

from kawa.protocol.recordbatch import (
    HEADER_SIZE_BYTES,
    LOG_OVERHEAD_BYTES,
    BatchHeader,
    peek_offset_and_size,
    read_header,
)
from kawa.storage.local.index import NO_TIMESTAMP, OffsetIndex, TimeIndex, write_atomically

logger = logging.getLogger("kawa.storage")

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"

# Header scans (locating an offset, finding a timestamp) read this much at a
# time: it covers a whole index interval of small batches in one pread.
_SCAN_CHUNK_BYTES = 16 * 1024


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    # Bounded: a regular file write either makes progress or raises.
    while view:
        written = os.write(fd, view)
        assert written > 0
        view = view[written:]


class Segment:
    """A .log file with its sparse indexes, held open for appends (if active) and preads.

    Invariant: offsets in the segment are contiguous from ``base_offset`` to
    ``end_offset - 1``; ``size`` is the byte length of the .log. While the
    segment is active, ``batch_bases[i]``/``batch_positions[i]`` describe its
    i-th batch, and ``batch_positions`` carries ``size`` as a trailing
    sentinel, so batch i always ends at ``batch_positions[i + 1]``.
    """

    def __init__(self, directory: Path, base_offset: int, fd: int) -> None:
        name = segment_name(base_offset)
        self.base_offset = base_offset
        self.log_path = directory / (name + LOG_SUFFIX)
        self.index_path = directory / (name + INDEX_SUFFIX)
        self.timeindex_path = directory / (name + TIMEINDEX_SUFFIX)
        self.fd = fd
        self.size = 0
        self.end_offset = base_offset
        self.max_timestamp = NO_TIMESTAMP
        self.offset_of_max_timestamp = base_offset
        self.created_ms = 0.0  # when the first batch arrived (0: empty)
        self.offset_index = OffsetIndex()
        self.time_index = TimeIndex()
        self.bytes_since_index_entry = 0
        self.batch_bases: array[int] | None = None
        self.batch_positions: array[int] | None = None
        self._index_fd: int | None = None
        self._timeindex_fd: int | None = None
        self._indexes_dirty = False  # an index file write failed: rewrite on seal

    # -- lifecycle ---------------------------------------------------------------

    @staticmethod
    def open_log_fd(path: Path) -> int:
        return os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)

    @classmethod
    def create(cls, directory: Path, base_offset: int) -> Segment:
        """A new, empty, active segment (the caller fsyncs the directory)."""
        log_path = directory / (segment_name(base_offset) + LOG_SUFFIX)
        segment = cls(directory, base_offset, cls.open_log_fd(log_path))
        segment.activate(rewrite_indexes=True)
        return segment

    def activate(self, *, rewrite_indexes: bool) -> None:
        """Open the index files for appending and track every batch in memory."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        if rewrite_indexes:
            flags |= os.O_TRUNC
        self._index_fd = os.open(self.index_path, flags, 0o644)
        self._timeindex_fd = os.open(self.timeindex_path, flags, 0o644)
        if self.batch_bases is None:
            self.track_batches()

    def track_batches(self) -> None:
        """Start keeping (baseOffset, position) of every batch: only the active segment does."""
        assert self.size == 0, "batch lists are built from the segment's first batch"
        self.batch_bases = array("q")
        self.batch_positions = array("q", [0])

    @property
    def active(self) -> bool:
        return self.batch_bases is not None

    def seal(self) -> None:
        """Stop appending: record the max timestamp, make everything durable, drop batch lists.

        After this the segment's last time index entry is its max timestamp,
        which recovery and time retention rely on.
        """
        assert self._index_fd is not None and self._timeindex_fd is not None
        final = self.finish_time_index()
        os.fdatasync(self.fd)
        if not self._indexes_dirty:
            try:
                if final:
                    _write_all(self._timeindex_fd, final)
                os.fsync(self._index_fd)
                os.fsync(self._timeindex_fd)
            except OSError as exc:
                logger.warning("%s: index write failed (%s); rewriting it", self.index_path, exc)
                self._indexes_dirty = True
        if self._indexes_dirty:
            write_atomically(self.index_path, self.offset_index.to_bytes())
            write_atomically(self.timeindex_path, self.time_index.to_bytes())
        # State changes only once the I/O succeeded: a failed seal leaves an active segment.
        self.close_index_fds()
        self._indexes_dirty = False
        self.batch_bases = self.batch_positions = None

    def finish_time_index(self) -> bytes:
        """Make the last time index entry the segment's max timestamp (done when sealing)."""
        return self.time_index.maybe_append(
            self.max_timestamp, self.offset_of_max_timestamp - self.base_offset
        )

    def close_index_fds(self) -> None:
        for fd in (self._index_fd, self._timeindex_fd):
            if fd is not None:
                os.close(fd)
        self._index_fd = self._timeindex_fd = None

    def unlink(self) -> None:
        """Remove the files; the log comes last so a crash leaves no index without its data."""
        for path in (self.index_path, self.timeindex_path, self.log_path):
            path.unlink(missing_ok=True)

    def age_ms(self, now_ms: float) -> float:
        return now_ms - self.created_ms if self.size else 0.0

    # -- appending ---------------------------------------------------------------

    def account(
        self,
        position: int,
        header: BatchHeader,
        base_offset: int,
        interval_bytes: int,
    ) -> tuple[bytes, bytes]:
        """Record one batch just stored at `position`; returns new (index, timeindex) bytes.

        Shared by append and recovery so both build identical indexes.
        """
        assert base_offset == self.end_offset and position == self.size
        size = header.size_bytes
        max_timestamp = header.max_timestamp
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.offset_of_max_timestamp = base_offset
        index_entry = time_entry = b""
        if self.bytes_since_index_entry > interval_bytes:
            rel = base_offset - self.base_offset
            index_entry = self.offset_index.append(rel, position)
            time_entry = self.time_index.maybe_append(
                self.max_timestamp, self.offset_of_max_timestamp - self.base_offset
            )
            self.bytes_since_index_entry = 0
        self.bytes_since_index_entry += size
        self.size = position + size
        self.end_offset = base_offset + header.last_offset_delta + 1
        if self.batch_bases is not None and self.batch_positions is not None:
            self.batch_bases.append(base_offset)
            self.batch_positions[-1] = position
            self.batch_positions.append(self.size)
        return index_entry, time_entry

    def append(self, data: bytearray, headers: Sequence[BatchHeader], interval_bytes: int) -> None:
        """Write whole batches (baseOffsets already assigned) with one write call."""
        assert self.active and self._index_fd is not None and self._timeindex_fd is not None
        if not self.size:
            self.created_ms = time.time() * 1000
        start = self.size
        try:
            _write_all(self.fd, data)
        except OSError:
            # A partial write (ENOSPC) would leave a torn batch mid-log; cut it off.
            os.ftruncate(self.fd, start)
            raise
        index_bytes = bytearray()
        time_bytes = bytearray()
        for header in headers:
            index_entry, time_entry = self.account(
                self.size, header, self.end_offset, interval_bytes
            )
            index_bytes += index_entry
            time_bytes += time_entry
        assert self.size == start + len(data), "headers must describe every byte written"
        try:
            if index_bytes:
                _write_all(self._index_fd, index_bytes)
            if time_bytes:
                _write_all(self._timeindex_fd, time_bytes)
        except OSError as exc:
            # The batches are stored, so the append stands. Indexes are derived
            # data: the in-memory ones are complete and get written whole on seal.
            logger.warning("%s: index write failed (%s)", self.index_path, exc)
            self._indexes_dirty = True

    # -- reading -----------------------------------------------------------------

    def iter_offsets(self, position: int) -> Iterator[tuple[int, int, int]]:
        """(position, baseOffset, size) of each batch from `position` to the end, unchecked."""
        end = self.size
        # Bounded: each step advances position by a batch size >= a header.
        while position + LOG_OVERHEAD_BYTES <= end:
            buf = os.pread(self.fd, min(_SCAN_CHUNK_BYTES, end - position), position)
            at = 0
            while at + LOG_OVERHEAD_BYTES <= len(buf):
                base_offset, size = peek_offset_and_size(buf, at)
                assert size >= HEADER_SIZE_BYTES, f"{self.log_path}: bad batch at {position + at}"
                yield position + at, base_offset, size
                at += size
            position += at

    def iter_headers(self, position: int) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each batch from `position` to the end, unchecked."""
        end = self.size
        while position + HEADER_SIZE_BYTES <= end:
            buf = os.pread(self.fd, min(_SCAN_CHUNK_BYTES, end - position), position)
            at = 0
            while at + HEADER_SIZE_BYTES <= len(buf):
                header = read_header(buf, at)
                assert header.size_bytes >= HEADER_SIZE_BYTES
                yield position + at, header
                at += header.size_bytes
            position += at

    def locate(self, offset: int) -> int:
        """File position of the batch containing `offset` (base_offset <= offset < end)."""
        assert self.base_offset <= offset < self.end_offset
        if self.batch_bases is not None and self.batch_positions is not None:
            i = bisect.bisect_right(self.batch_bases, offset) - 1
            return self.batch_positions[i]
        _, position = self.offset_index.lookup(offset - self.base_offset)
        found = position
        # Offsets are contiguous, so the batch holding `offset` is the last one
        # whose baseOffset <= offset.
        for pos, base_offset, _ in self.iter_offsets(position):
            if base_offset > offset:
                break
            found = pos
        return found

    def read_end(self, start: int, max_bytes: int, high_watermark: int, at_least_one: bool) -> int:
        """End position of the whole batches from `start` that fit in `max_bytes`, below the HW."""
        limit = start + max_bytes
        if self.batch_bases is not None and self.batch_positions is not None:
            first = bisect.bisect_right(self.batch_positions, start) - 1
            visible = bisect.bisect_left(self.batch_bases, high_watermark)
            # batch_positions[k] is where batch k-1 ends: take the last such end <= limit.
            k = bisect.bisect_right(self.batch_positions, limit, first + 1, visible + 1) - 1
            if k == first and at_least_one and first < visible:
                k = first + 1
            return self.batch_positions[max(k, first)]
        rel_hw = high_watermark - self.base_offset
        index = self.offset_index
        j = min(
            bisect.bisect_right(index.positions, limit),
            bisect.bisect_left(index.rel_offsets, rel_hw),
        )
        # Batches before an index entry within both bounds all fit: start there.
        end = index.positions[j - 1] if j and index.positions[j - 1] > start else start
        for pos, base_offset, size in self.iter_offsets(end):
            if base_offset >= high_watermark:
                break
            if pos + size > limit and not (at_least_one and pos == start):
                break
            end = pos + size
        return end

    def find_timestamp(self, timestamp_ms: int, log_start: int) -> tuple[int, int] | None:
        """(offset, maxTimestamp) of the first batch with maxTimestamp >= timestamp_ms.

        Only batches ending after `log_start` count; the offset is clamped to it.
        """
        if self.max_timestamp < timestamp_ms or self.end_offset <= log_start:
            return None
        rel = self.time_index.lookup_below(timestamp_ms)
        _, position = self.offset_index.lookup(rel)
        for _, header in self.iter_headers(position):
            end = header.base_offset + header.last_offset_delta + 1
            if header.max_timestamp >= timestamp_ms and end > log_start:
                return max(header.base_offset, log_start), header.max_timestamp
        return None

    def close(self) -> None:
        self.close_index_fds()
        os.close(self.fd)
