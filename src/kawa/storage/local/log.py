"""The local engine: a partition log as a directory of segment files (Kafka's layout).

``<dir>/00000000000000000000.log`` (+ ``.index``, ``.timeindex``) and so on,
one segment per base offset, plus ``log-start-offset`` when DeleteRecords has
raised the start. Appends go to the last (active) segment with one write
call; ``sync()`` fsyncs it from a worker thread; reads pread one contiguous
range per segment.
"""

from __future__ import annotations

import bisect
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kawa.protocol.recordbatch import BatchHeader, set_base_offset
from kawa.storage.local.index import fsync_directory, write_atomically
from kawa.storage.local.recovery import recover_segment
from kawa.storage.local.segment import INDEX_SUFFIX, LOG_SUFFIX, TIMEINDEX_SUFFIX, Segment
from kawa.storage.log import LogConfig, LogCorrupted, OffsetOutOfRange, ReadResult, RecoveryReport

logger = logging.getLogger("kawa.storage")

LOG_START_OFFSET_FILE = "log-start-offset"
_MAX_RELATIVE_OFFSET = 0xFFFFFFFF


class LocalLog:
    """A partition log stored as segment files in one directory.

    Invariants:

    * ``_segments`` is sorted by base offset and non-empty; the last one is
      the active segment, the only one appended to.
    * A segment's base offset is <= every offset in it and > every offset in
      the previous segment; consecutive segments are contiguous
      (``segments[i].end_offset == segments[i + 1].base_offset``).
    * Every non-active segment was fsynced (with its indexes) when sealed.
    * ``log_start_offset <= high_watermark <= log_end_offset``.

    Threading: everything runs on the event loop thread except ``sync()``.
    ``_lock`` guards what ``sync()`` reads (active segment, end offset) and
    file descriptor closing; it is never held across I/O.
    """

    def __init__(
        self, directory: Path, config: LogConfig, segments: list[Segment], log_start_offset: int
    ) -> None:
        assert segments
        self.directory = directory
        self.config = config
        self._segments = segments
        self._bases = [s.base_offset for s in segments]
        self._start = log_start_offset
        self._end = segments[-1].end_offset
        self._high_watermark = self._end
        self._synced_end = self._end
        self._size_bytes = sum(s.size for s in segments)
        self._lock = threading.Lock()
        self._syncing = 0  # sync() calls in flight: close() may run one beside the worker's
        self._deferred_closes: list[Segment] = []
        self._closed = False
        # An fsync error may have dropped dirty pages (Linux marks them clean),
        # so a later fsync could succeed without the data: refuse to continue.
        self._failed: OSError | None = None
        self._check_invariants()

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path, config: LogConfig) -> tuple[LocalLog, RecoveryReport]:
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob("*.tmp"):
            leftover.unlink()  # an atomic write that did not finish
        bases = sorted(int(p.stem) for p in directory.glob("*" + LOG_SUFFIX) if p.stem.isdigit())
        for suffix in (INDEX_SUFFIX, TIMEINDEX_SUFFIX):
            for path in directory.glob("*" + suffix):
                if not path.stem.isdigit() or int(path.stem) not in bases:
                    path.unlink()  # left by a crash while deleting its segment
        start = _read_log_start_offset(directory)
        # A DeleteRecords that crashed after persisting its start but before
        # unlinking: drop segments wholly below the start (never the last).
        while len(bases) > 1 and bases[1] <= start:
            Segment(directory, bases.pop(0), -1).unlink()

        segments: list[Segment] = []
        checked = truncated = rebuilt = 0
        try:
            for i, base in enumerate(bases):
                last = i == len(bases) - 1
                result = recover_segment(
                    directory, base, last=last, interval_bytes=config.index_interval_bytes
                )
                segments.append(result.segment)
                checked += result.batches_checked
                truncated += result.truncated_bytes
                rebuilt += result.indexes_rebuilt
                if len(segments) > 1 and segments[-2].end_offset != base:
                    raise LogCorrupted(
                        f"{result.segment.log_path}: segment starts at offset {base} but the"
                        f" previous one ends at {segments[-2].end_offset}"
                    )
            if segments and start > segments[-1].end_offset:
                # As Kafka does: everything left lies below the start anyway.
                logger.warning(
                    "%s: log start offset %d is past the recovered log end %d; starting empty",
                    directory,
                    start,
                    segments[-1].end_offset,
                )
                for segment in segments:
                    segment.close()
                    segment.unlink()
                segments.clear()
            if not segments:
                segments.append(Segment.create(directory, start))
                fsync_directory(directory)
        except BaseException:
            for segment in segments:
                segment.close()
            raise
        log = cls(directory, config, segments, max(start, segments[0].base_offset))
        report = RecoveryReport(len(segments), checked, truncated, rebuilt)
        return log, report

    # -- properties --------------------------------------------------------------

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

    # -- writing -----------------------------------------------------------------

    def append(self, batches: bytearray, headers: Sequence[BatchHeader]) -> int:
        assert not self._closed
        self._raise_if_failed()
        assert headers, "append needs at least one batch"
        assert sum(h.size_bytes for h in headers) == len(batches), "headers must cover the bytes"
        first = self._end
        span = sum(h.last_offset_delta + 1 for h in headers)
        active = self._segments[-1]
        if active.size and (
            active.size + len(batches) > self.config.segment_bytes
            or active.age_ms(time.time() * 1000) >= self.config.segment_ms
            or first + span - 1 - active.base_offset > _MAX_RELATIVE_OFFSET
        ):
            try:
                self._roll()
            except OSError as exc:
                self._fail(exc)
                raise
            active = self._segments[-1]
        position = 0
        offset = first
        for header in headers:
            set_base_offset(batches, position, offset)
            position += header.size_bytes
            offset += header.last_offset_delta + 1
        try:
            active.append(batches, headers, self.config.index_interval_bytes)
        except OSError as exc:
            # The segment cut a failed write back off; if it could not, the
            # log now holds a torn batch that later appends would bury.
            if os.fstat(active.fd).st_size != active.size:
                self._fail(exc)
            raise
        assert active.end_offset == offset == first + span
        with self._lock:
            self._end = offset
        self._size_bytes += len(batches)
        return first

    def _roll(self) -> None:
        """Seal the active segment (fsyncing it) and start a new one at the log end.

        Rolls are rare (one per segment.bytes or segment.ms), so their fsyncs
        run inline: that keeps every non-active segment durable, which is what
        lets recovery trust sealed segments without rescanning them.
        """
        old = self._segments[-1]
        assert old.size and old.end_offset == self._end
        old.seal()
        new = Segment.create(self.directory, self._end)
        fsync_directory(self.directory)
        with self._lock:
            self._segments.append(new)
            self._bases.append(new.base_offset)

    def sync(self) -> int:
        self._raise_if_failed()
        with self._lock:
            if self._closed or self._end == self._synced_end:
                return self._synced_end
            # Everything below `end` was written to `fd` (or to sealed, already
            # durable segments) before this point, so one fsync covers it.
            fd = self._segments[-1].fd
            end = self._end
            self._syncing += 1
        try:
            os.fdatasync(fd)
        except OSError as exc:
            self._fail(exc)
            raise
        finally:
            with self._lock:
                self._syncing -= 1
                deferred: list[Segment] = []
                if not self._syncing:
                    deferred, self._deferred_closes = self._deferred_closes, []
            for segment in deferred:
                segment.close()
        with self._lock:
            self._synced_end = max(self._synced_end, end)
        return end

    def _fail(self, error: OSError) -> None:
        logger.error("%s: I/O error, refusing further appends and syncs: %s", self.directory, error)
        with self._lock:
            self._failed = self._failed or error

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise OSError(
                self._failed.errno, f"{self.directory}: log failed earlier: {self._failed}"
            )

    def publish(self, durable_end_offset: int) -> None:
        assert self._high_watermark <= durable_end_offset <= self._end
        self._high_watermark = durable_end_offset

    # -- reading -----------------------------------------------------------------

    def read(self, offset: int, max_bytes: int) -> ReadResult:
        high_watermark = self._high_watermark
        if offset < self._start or offset > high_watermark:
            raise OffsetOutOfRange(offset)
        chunks: list[bytes | memoryview] = []
        size = 0
        i = max(bisect.bisect_right(self._bases, offset) - 1, 0)
        # Bounded: one pass per segment at most.
        while i < len(self._segments):
            segment = self._segments[i]
            if segment.base_offset >= high_watermark:
                break
            i += 1
            if offset >= segment.end_offset:
                continue
            start = segment.locate(offset) if offset > segment.base_offset else 0
            end = segment.read_end(start, max_bytes - size, high_watermark, not chunks)
            if end > start:
                data = os.pread(segment.fd, end - start, start)
                assert len(data) == end - start, f"{segment.log_path}: short read at {start}"
                chunks.append(data)
                size += len(data)
            if end < segment.size:
                break  # stopped by max_bytes or the high watermark
            offset = segment.end_offset
        return ReadResult(chunks, size)

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        for segment in self._segments:
            found = segment.find_timestamp(timestamp_ms, self._start)
            if found is not None:
                return found
        return None

    # -- deleting ----------------------------------------------------------------

    def delete_records_before(self, offset: int) -> int:
        if offset > self._high_watermark:
            raise OffsetOutOfRange(offset)
        if offset > self._start:
            self._start = offset
            # Durable before any segment goes, so a crash cannot resurrect records.
            write_atomically(self.directory / LOG_START_OFFSET_FILE, f"{offset}\n".encode())
            fsync_directory(self.directory)
        self._drop_front(lambda s: s.end_offset <= self._start)
        return self._start

    def apply_retention(self, now_ms: int) -> int:
        config = self.config
        active = self._segments[-1]
        if active.size and active.age_ms(now_ms) >= config.segment_ms:
            self._roll()  # so an idle partition's old data can expire too
        freed = 0
        if config.retention_ms >= 0:
            cutoff = now_ms - config.retention_ms
            freed += self._drop_front(lambda s: s.max_timestamp < cutoff)
        if config.retention_bytes >= 0:
            freed += self._drop_front(lambda s: self._size_bytes - s.size >= config.retention_bytes)
        return freed

    def _drop_front(self, condition: Callable[[Segment], bool]) -> int:
        """Delete the oldest non-active, fully visible segments while `condition` holds."""
        freed = 0
        # Bounded: removes one segment per iteration and keeps the active one.
        while (
            len(self._segments) > 1
            and self._segments[0].end_offset <= self._high_watermark
            and condition(self._segments[0])
        ):
            segment = self._segments[0]
            with self._lock:
                del self._segments[0]
                del self._bases[0]
                if self._syncing:
                    self._deferred_closes.append(segment)
                else:
                    segment.close()
            segment.unlink()
            self._size_bytes -= segment.size
            freed += segment.size
            self._start = max(self._start, self._segments[0].base_offset)
        return freed

    # -- lifecycle ---------------------------------------------------------------

    def update_config(self, config: LogConfig) -> None:
        self.config = config

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.sync()
        except OSError as exc:
            logger.error("%s: final sync failed on close: %s", self.directory, exc)
        with self._lock:
            self._closed = True
            segments, deferred = self._segments + self._deferred_closes, self._syncing
            if deferred:
                self._deferred_closes = segments
            self._segments = []
            self._bases = []
        if not deferred:
            for segment in segments:
                segment.close()

    def delete(self) -> None:
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _check_invariants(self) -> None:
        assert self._segments and len(self._bases) == len(self._segments)
        for prev, nxt in zip(self._segments, self._segments[1:], strict=False):
            assert prev.end_offset == nxt.base_offset, "segments must be contiguous"
        assert self._start <= self._high_watermark <= self._end


def _read_log_start_offset(directory: Path) -> int:
    path = directory / LOG_START_OFFSET_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0
    try:
        value = int(text.strip())
    except ValueError:
        raise LogCorrupted(f"{path}: not an offset: {text[:40]!r}") from None
    if value < 0:
        raise LogCorrupted(f"{path}: negative log start offset {value}")
    return value
