"""The PartitionLog interface: what every storage engine offers one partition.

A partition log is an append-only sequence of RecordBatch v2 byte strings.
Invariants every engine keeps:

* Offsets are contiguous: a batch appended when the log end offset is N gets
  baseOffset N and the log end becomes N + lastOffsetDelta + 1.
* ``log_start_offset <= high_watermark <= log_end_offset``.
* ``high_watermark`` is the end of what is *durable* under the engine's
  durability policy; fetches never return batches at or past it, so a
  consumer never sees a record that a crash could take back.
* Batches are stored byte for byte as produced, except for baseOffset,
  which the log assigns (it lies outside the CRC).
* ``read`` returns whole batches, starting with the one that contains the
  requested offset, and at least one batch if any is available (so a batch
  larger than ``max_bytes`` still makes progress, as in Kafka).

Engines do blocking I/O in plain methods; the broker calls ``sync()`` from a
worker thread (see ``kawa.storage.durability``) so that concurrent appends
share one fsync.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kawa.protocol.recordbatch import BatchHeader


class LogCorrupted(Exception):
    """The log holds bytes that fail validation somewhere other than its tail.

    The partition is not served; the message names the file and position.
    """


class OffsetOutOfRange(Exception):
    pass


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Per-topic settings an engine honours (Kafka topic config names in comments)."""

    segment_bytes: int = 1024 * 1024 * 1024  # segment.bytes
    segment_ms: int = 7 * 24 * 3600 * 1000  # segment.ms
    retention_bytes: int = -1  # retention.bytes (-1: unlimited)
    retention_ms: int = 7 * 24 * 3600 * 1000  # retention.ms (-1: unlimited)
    index_interval_bytes: int = 4096  # index.interval.bytes
    max_message_bytes: int = 1024 * 1024 + 12  # max.message.bytes


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Whole batches, as buffers ready for ``writelines``."""

    chunks: list[bytes | memoryview]
    size_bytes: int


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    segments: int
    batches_checked: int
    truncated_bytes: int
    indexes_rebuilt: int


class PartitionLog(Protocol):
    @property
    def log_start_offset(self) -> int: ...

    @property
    def log_end_offset(self) -> int: ...

    @property
    def high_watermark(self) -> int: ...

    @property
    def size_bytes(self) -> int: ...

    def append(self, batches: bytearray, headers: Sequence[BatchHeader]) -> int:
        """Append `batches`: whole batches, validated by the caller, described by `headers`.

        Rewrites each batch's baseOffset in `batches` and returns the first
        assigned offset. Does not fsync; the bytes become visible to readers
        (``high_watermark``) after ``sync()`` or, for engines whose policy is
        not fsync-before-ack, at once.
        """
        ...

    def sync(self) -> int:
        """Make everything appended so far durable; returns the new high watermark.

        Called from a worker thread, never concurrently with itself for the
        same log.
        """
        ...

    def publish(self, durable_end_offset: int) -> None:
        """Advance ``high_watermark`` to `durable_end_offset` (on the event loop)."""
        ...

    def read(self, offset: int, max_bytes: int) -> ReadResult:
        """Batches from the one containing `offset`, up to the high watermark.

        Raises OffsetOutOfRange if offset < log_start_offset or > high_watermark.
        """
        ...

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first batch whose maxTimestamp >= timestamp_ms."""
        ...

    def delete_records_before(self, offset: int) -> int:
        """Raise log_start_offset to `offset` (DeleteRecords); returns the new start."""
        ...

    def apply_retention(self, now_ms: int) -> int:
        """Delete whole segments past retention.ms / retention.bytes; returns bytes freed."""
        ...

    def update_config(self, config: LogConfig) -> None: ...

    def close(self) -> None: ...

    def delete(self) -> None:
        """Close and remove every file of this partition."""
        ...
