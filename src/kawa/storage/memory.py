"""The memory engine: a partition log held in a list of batches.

For ephemeral topics and tests. Nothing survives the process; ``sync`` is a
no-op and the high watermark follows the log end at once.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from kawa.protocol.recordbatch import BatchHeader, set_base_offset
from kawa.storage.log import LogConfig, OffsetOutOfRange, ReadResult


class MemoryLog:
    """Invariant: ``_bases`` is strictly increasing and ``_bases[i]`` is the
    baseOffset written into ``_batches[i]``; ``_ends[i]`` is its last offset + 1."""

    def __init__(self, config: LogConfig | None = None) -> None:
        self.config = config or LogConfig()
        self._batches: list[bytes] = []
        self._bases: list[int] = []
        self._ends: list[int] = []
        self._max_timestamps: list[int] = []
        self._start = 0
        self._end = 0
        self._high_watermark = 0
        self._size_bytes = 0

    @property
    def log_start_offset(self) -> int:
        return self._start

    @property
    def log_end_offset(self) -> int:
        return self._end

    @property
    def high_watermark(self) -> int:
        return self._high_watermark

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    def append(self, batches: bytearray, headers: Sequence[BatchHeader]) -> int:
        first = self._end
        pos = 0
        view = memoryview(batches)
        for header in headers:
            size = header.size_bytes
            set_base_offset(batches, pos, self._end)
            self._batches.append(bytes(view[pos : pos + size]))
            self._bases.append(self._end)
            self._end += header.last_offset_delta + 1
            self._ends.append(self._end)
            self._max_timestamps.append(header.max_timestamp)
            self._size_bytes += size
            pos += size
        assert pos == len(batches), "headers must describe every byte"
        return first

    def sync(self) -> int:
        return self._end

    def publish(self, durable_end_offset: int) -> None:
        assert self._high_watermark <= durable_end_offset <= self._end
        self._high_watermark = durable_end_offset

    def read(self, offset: int, max_bytes: int) -> ReadResult:
        if offset < self._start or offset > self._high_watermark:
            raise OffsetOutOfRange(offset)
        i = bisect.bisect_right(self._ends, offset)
        chunks: list[bytes | memoryview] = []
        size = 0
        while i < len(self._batches) and self._bases[i] < self._high_watermark:
            batch = self._batches[i]
            if chunks and size + len(batch) > max_bytes:
                break
            chunks.append(batch)
            size += len(batch)
            i += 1
        return ReadResult(chunks, size)

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        for base, max_ts, end in zip(self._bases, self._max_timestamps, self._ends, strict=True):
            if max_ts >= timestamp_ms and end > self._start:
                return max(base, self._start), max_ts
        return None

    def delete_records_before(self, offset: int) -> int:
        if offset > self._high_watermark:
            raise OffsetOutOfRange(offset)
        self._start = max(self._start, offset)
        self._drop_while(lambda i: self._ends[i] <= self._start)
        return self._start

    def apply_retention(self, now_ms: int) -> int:
        before = self._size_bytes
        if self.config.retention_ms >= 0:
            cutoff = now_ms - self.config.retention_ms
            self._drop_while(
                lambda i: self._ends[i] <= self._high_watermark
                and self._max_timestamps[i] < cutoff
            )
        if self.config.retention_bytes >= 0:
            self._drop_while(
                lambda i: self._ends[i] <= self._high_watermark
                and self._size_bytes - len(self._batches[i]) >= self.config.retention_bytes
            )
        return before - self._size_bytes

    def _drop_while(self, condition) -> None:  # type: ignore[no-untyped-def]
        dropped = 0
        while dropped < len(self._batches) and condition(dropped):
            self._size_bytes -= len(self._batches[dropped])
            dropped += 1
        if dropped:
            self._start = max(self._start, self._ends[dropped - 1])
            del self._batches[:dropped]
            del self._bases[:dropped]
            del self._ends[:dropped]
            del self._max_timestamps[:dropped]

    def update_config(self, config: LogConfig) -> None:
        self.config = config

    def close(self) -> None:
        pass

    def delete(self) -> None:
        self._batches.clear()
