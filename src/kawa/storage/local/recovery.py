"""Recovering one segment at open: validate its batches, truncate a torn tail, fix indexes.

Rules (the log is the source of truth, indexes are derived):

* The last (active) segment is always scanned in full: every batch is
  validated (length, magic, CRC-32C) and its offsets must continue the
  previous batch's. Its indexes are rebuilt from that scan.
* A sealed segment was fsynced with its indexes when it was sealed, so it is
  trusted if its indexes are consistent: we check the first batch, the batch
  the last index entry points at, and validate every batch from there to the
  end of the file. Otherwise it is scanned in full and its indexes rebuilt.
* A bad batch at the end of the last segment with nothing valid after it is a
  torn write from a crash: it is truncated, with a warning. Any other bad
  batch is corruption: LogCorrupted, naming file and byte position.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kawa.protocol.recordbatch import (
    HEADER_SIZE_BYTES,
    LOG_OVERHEAD_BYTES,
    MAGIC_V2,
    BatchHeader,
    InvalidBatch,
    peek_offset_and_size,
    read_header,
    validate_batch,
)
from kawa.storage.local.index import (
    IndexInconsistent,
    OffsetIndex,
    TimeIndex,
    read_file,
    write_atomically,
)
from kawa.storage.local.segment import LOG_SUFFIX, Segment, segment_name
from kawa.storage.log import LogCorrupted

logger = logging.getLogger("kawa.storage")

_VALIDATE_CHUNK_BYTES = 8 * 1024 * 1024
_MAX_U32 = 0xFFFFFFFF


@dataclass(slots=True)
class SegmentRecovery:
    segment: Segment
    batches_checked: int = 0
    truncated_bytes: int = 0
    indexes_rebuilt: int = 0


class _Untrusted(Exception):
    """A sealed segment's indexes do not match its log: rescan it."""


class _BadBatch(Exception):
    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"byte {position}: {reason}")
        self.position = position
        self.reason = reason


def recover_segment(
    directory: Path, base_offset: int, *, last: bool, interval_bytes: int
) -> SegmentRecovery:
    path = directory / (segment_name(base_offset) + LOG_SUFFIX)
    fd = Segment.open_log_fd(path)
    try:
        if last:
            return _recover_active(Segment(directory, base_offset, fd), interval_bytes)
        try:
            segment = Segment(directory, base_offset, fd)
            return SegmentRecovery(segment, batches_checked=_load_sealed(segment))
        except (_Untrusted, IndexInconsistent) as why:
            logger.info("%s: rebuilding indexes (%s)", path, why)
            segment = Segment(directory, base_offset, fd)
            checked, _ = _rescan(segment, interval_bytes, last=False)
            segment.finish_time_index()
            _write_indexes(segment, only_if_changed=False)
            return SegmentRecovery(segment, batches_checked=checked, indexes_rebuilt=1)
    except BaseException:
        os.close(fd)
        raise


def _recover_active(segment: Segment, interval_bytes: int) -> SegmentRecovery:
    segment.track_batches()
    checked, truncated = _rescan(segment, interval_bytes, last=True)
    rebuilt = _write_indexes(segment, only_if_changed=True)
    # What a crashed process wrote may still sit in the page cache only; the
    # high watermark starts at the recovered end, so make it durable first.
    os.fdatasync(segment.fd)
    # Open the index files for appending only now that they match the log.
    segment.activate(rewrite_indexes=False)
    if segment.size:
        # Segment age for segment.ms survives restarts the way Kafka's does:
        # from the first batch's timestamp (never in the future).
        first = read_header(os.pread(segment.fd, HEADER_SIZE_BYTES, 0))
        now_ms = time.time() * 1000
        ts = first.max_timestamp
        segment.created_ms = float(ts) if 0 <= ts <= now_ms else now_ms
    return SegmentRecovery(segment, checked, truncated, rebuilt)


def _rescan(segment: Segment, interval_bytes: int, *, last: bool) -> tuple[int, int]:
    """Validate every batch, rebuilding the segment's in-memory state; (checked, truncated)."""
    fd, path = segment.fd, segment.log_path
    file_size = os.fstat(fd).st_size
    checked = 0
    try:
        for header in validated_batches(fd, file_size):
            if header.base_offset != segment.end_offset:
                raise LogCorrupted(
                    f"{path}: batch at byte {segment.size} has baseOffset {header.base_offset},"
                    f" expected {segment.end_offset}"
                )
            if header.base_offset + header.last_offset_delta - segment.base_offset > _MAX_U32:
                raise LogCorrupted(f"{path}: batch at byte {segment.size} overflows the segment")
            segment.account(segment.size, header, header.base_offset, interval_bytes)
            checked += 1
    except _BadBatch as bad:
        assert bad.position == segment.size
        if not last:
            raise LogCorrupted(
                f"{path}: corrupt batch at byte {bad.position}: {bad.reason}"
            ) from None
        following = valid_batch_after(fd, bad.position, file_size)
        if following is not None:
            raise LogCorrupted(
                f"{path}: corrupt batch at byte {bad.position}: {bad.reason};"
                f" a valid batch follows at byte {following}"
            ) from None
        truncated = file_size - bad.position
        logger.warning(
            "%s: truncating %d bytes of torn tail at byte %d (%s)",
            path,
            truncated,
            bad.position,
            bad.reason,
        )
        os.ftruncate(fd, bad.position)
        os.fsync(fd)
        return checked, truncated
    assert segment.size == file_size
    return checked, 0


def _load_sealed(segment: Segment) -> int:
    """Trust a sealed segment's indexes after cheap checks; returns batches validated."""
    fd, base = segment.fd, segment.base_offset
    file_size = os.fstat(fd).st_size
    index_bytes = read_file(segment.index_path)
    time_bytes = read_file(segment.timeindex_path)
    if index_bytes is None or time_bytes is None or file_size == 0:
        raise _Untrusted("index missing or segment empty")
    offset_index = OffsetIndex.from_bytes(index_bytes, file_size)
    time_index = TimeIndex.from_bytes(time_bytes, _MAX_U32)
    last_rel, last_pos = (
        (offset_index.rel_offsets[-1], offset_index.positions[-1]) if len(offset_index) else (0, 0)
    )
    for rel, pos in ((0, 0), (last_rel, last_pos)):
        head = os.pread(fd, LOG_OVERHEAD_BYTES, pos)
        if len(head) < LOG_OVERHEAD_BYTES or peek_offset_and_size(head, 0)[0] != base + rel:
            raise _Untrusted(f"index entry ({rel}, {pos}) does not point at its batch")
    offset = base + last_rel
    max_timestamp = time_index.last_timestamp
    checked = 0
    try:
        for header in validated_batches(fd, file_size, last_pos):
            if header.base_offset != offset:
                raise LogCorrupted(
                    f"{segment.log_path}: batch has baseOffset {header.base_offset},"
                    f" expected {offset}"
                )
            if header.max_timestamp > max_timestamp:
                raise _Untrusted("time index lacks the segment's max timestamp")
            offset += header.last_offset_delta + 1
            checked += 1
    except _BadBatch as bad:
        raise LogCorrupted(
            f"{segment.log_path}: corrupt batch at byte {bad.position}: {bad.reason}"
        ) from None
    if len(time_index) and time_index.rel_offsets[-1] >= offset - base:
        raise _Untrusted("time index points past the segment")
    segment.offset_index = offset_index
    segment.time_index = time_index
    segment.size = file_size
    segment.end_offset = offset
    segment.max_timestamp = max_timestamp
    segment.offset_of_max_timestamp = base + (time_index.rel_offsets[-1] if len(time_index) else 0)
    return checked


def _write_indexes(segment: Segment, *, only_if_changed: bool) -> int:
    """Persist the in-memory indexes; returns 1 if any file was (re)written."""
    rewritten = 0
    for path, data in (
        (segment.index_path, segment.offset_index.to_bytes()),
        (segment.timeindex_path, segment.time_index.to_bytes()),
    ):
        if only_if_changed and read_file(path) == data:
            continue
        write_atomically(path, data)
        rewritten = 1
    return rewritten


def validated_batches(fd: int, file_size: int, position: int = 0) -> Iterator[BatchHeader]:
    """Headers of CRC-checked batches from `position` to `file_size`, in order.

    Raises _BadBatch at the first batch that is truncated or fails validation.
    """
    buf = b""
    buf_start = 0
    # Bounded: each iteration yields a batch and advances position past it.
    while position < file_size:
        at = position - buf_start
        if len(buf) - at < HEADER_SIZE_BYTES:
            buf = os.pread(fd, min(_VALIDATE_CHUNK_BYTES, file_size - position), position)
            buf_start, at = position, 0
        if len(buf) - at >= LOG_OVERHEAD_BYTES:
            _, size = peek_offset_and_size(buf, at)
            if len(buf) - at < size <= file_size - position:
                chunk = max(size, min(_VALIDATE_CHUNK_BYTES, file_size - position))
                buf = os.pread(fd, chunk, position)
                buf_start, at = position, 0
        try:
            header = validate_batch(buf, at)
        except InvalidBatch as exc:
            raise _BadBatch(position, exc.reason) from None
        yield header
        position += header.size_bytes


def _valid_batch_at(fd: int, position: int, file_size: int) -> bool:
    head = os.pread(fd, HEADER_SIZE_BYTES, position)
    if len(head) < HEADER_SIZE_BYTES:
        return False
    header = read_header(head)
    if header.magic != MAGIC_V2 or not (
        HEADER_SIZE_BYTES <= header.size_bytes <= file_size - position
    ):
        return False
    try:
        validate_batch(os.pread(fd, header.size_bytes, position))
    except InvalidBatch:
        return False
    return True


def valid_batch_after(fd: int, position: int, file_size: int) -> int | None:
    """Position of a CRC-valid batch anywhere after `position`, if one exists.

    This separates a torn tail (nothing valid follows) from corruption in
    the middle of the log, which must never be truncated away.
    """
    head = os.pread(fd, LOG_OVERHEAD_BYTES, position)
    if len(head) == LOG_OVERHEAD_BYTES:
        _, size = peek_offset_and_size(head, 0)
        if size >= HEADER_SIZE_BYTES and _valid_batch_at(fd, position + size, file_size):
            return position + size
    # The length field itself may be damaged: try every later byte that could
    # be the magic byte (offset 16) of a header.
    window_start = position + 1
    # Bounded: each window advances by at least HEADER_SIZE_BYTES - 16 bytes.
    while window_start + HEADER_SIZE_BYTES <= file_size:
        window = os.pread(fd, min(_VALIDATE_CHUNK_BYTES, file_size - window_start), window_start)
        at = window.find(b"\x02", 16)
        while at != -1:
            if _valid_batch_at(fd, window_start + at - 16, file_size):
                return window_start + at - 16
            at = window.find(b"\x02", at + 1)
        window_start += len(window) - 16
    return None
