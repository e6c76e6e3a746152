"""The local storage engine against real files: append, read, recovery, retention."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest
from batches import make_batch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kawa.protocol.recordbatch import peek_offset_and_size, read_header, split_batches
from kawa.storage.local.log import LocalLog
from kawa.storage.log import LogConfig, LogCorrupted, OffsetOutOfRange
from kawa.storage.memory import MemoryLog

SMALL = LogConfig(segment_bytes=4096, index_interval_bytes=256)
T0 = 1_700_000_000_000


def batch(n_records: int = 3, size: int = 50, ts: int = T0, tag: int = 0) -> bytearray:
    return make_batch([bytes([tag % 256]) * size] * n_records, base_timestamp_ms=ts)


def append(log: LocalLog | MemoryLog, *batches: bytearray) -> tuple[int, bytearray]:
    """Append batches in one call; returns (first offset, the bytes as stored)."""
    data = bytearray(b"".join(batches))
    first = log.append(data, split_batches(data))
    return first, data


def commit(log: LocalLog | MemoryLog) -> None:
    log.publish(log.sync())


def split(data: bytes) -> list[tuple[int, bytes]]:
    """(baseOffset, bytes) of each whole batch in `data`."""
    out = []
    pos = 0
    while pos < len(data):
        base, size = peek_offset_and_size(data, pos)
        out.append((base, bytes(data[pos : pos + size])))
        pos += size
    assert pos == len(data)
    return out


def read_all(
    log: LocalLog | MemoryLog, offset: int | None = None, max_bytes: int = 1 << 20
) -> bytes:
    """Everything from `offset` to the high watermark, by repeated reads."""
    offset = log.log_start_offset if offset is None else offset
    out = bytearray()
    # Bounded: each read returns at least one batch until the high watermark.
    while offset < log.high_watermark:
        result = log.read(offset, max_bytes)
        data = b"".join(result.chunks)
        assert data and len(data) == result.size_bytes
        out += data
        last = read_header(split(data)[-1][1])
        offset = last.base_offset + last.last_offset_delta + 1
    return bytes(out)


def open_log(path: Path, config: LogConfig = SMALL) -> LocalLog:
    log, _ = LocalLog.open(path, config)
    return log


def fill(log: LocalLog, count: int, records: int = 3, size: int = 50) -> bytes:
    stored = bytearray()
    for i in range(count):
        _, data = append(log, batch(records, size, ts=T0 + i, tag=i))
        stored += data
    commit(log)
    return bytes(stored)


def log_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("*.log"))


def test_make_batch_decodes_with_an_independent_reader() -> None:
    from kio.records.readers import read_batch

    raw = make_batch(
        [b"hello", b"", b"x" * 300],
        base_timestamp_ms=T0,
        timestamp_deltas=[0, 5, 2],
        producer_id=7,
        producer_epoch=1,
        base_sequence=3,
    )
    decoded, size = read_batch(bytes(raw), 0)  # checks the CRC and every record length
    assert size == len(raw)
    assert [r.value for r in decoded.records] == [b"hello", b"", b"x" * 300]
    assert [r.offset for r in decoded.records] == [0, 1, 2]
    assert decoded.max_timestamp == T0 + 5 and decoded.producer_id == 7
    assert decoded.base_sequence == 3 and decoded.producer_epoch == 1


# -- append and read ---------------------------------------------------------------


def test_round_trip_across_segments(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    stored = fill(log, 60)  # ~10 KiB over 4 KiB segments
    assert len(log_files(tmp_path)) >= 3
    assert log.log_end_offset == log.high_watermark == 180
    assert log.size_bytes == len(stored)
    assert read_all(log) == stored
    # Reading from every offset starts with the batch that contains it.
    batches = split(stored)
    for base, raw in batches:
        for offset in range(base, base + 3):
            result = log.read(offset, 1)
            assert [bytes(c) for c in result.chunks] == [raw]
    log.close()


def test_read_from_middle_of_batch_and_across_segment_boundary(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    stored = fill(log, 60)
    batches = split(stored)
    data = b"".join(log.read(100, 1 << 20).chunks)
    start = next(i for i, (base, _) in enumerate(batches) if base <= 100 < base + 3)
    assert data == b"".join(raw for _, raw in batches[start:])
    log.close()


def test_max_bytes_whole_batches_and_at_least_one(tmp_path: Path) -> None:
    log = open_log(tmp_path, LogConfig(index_interval_bytes=100))
    stored = fill(log, 20)
    size = len(split(stored)[0][1])
    result = log.read(0, size * 3 + size // 2)
    assert result.size_bytes == size * 3 and len(split(b"".join(result.chunks))) == 3
    one = log.read(4, 1)  # smaller than a batch: still one batch
    assert one.size_bytes == size and split(b"".join(one.chunks))[0][0] == 3
    assert log.read(0, 0).size_bytes == size
    log.close()


def test_high_watermark_hides_unsynced_data(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log, 2)
    append(log, batch())
    assert log.log_end_offset == 9 and log.high_watermark == 6
    assert b"".join(log.read(0, 1 << 20).chunks) == read_all(log)
    assert len(split(read_all(log))) == 2
    assert log.read(6, 1 << 20).size_bytes == 0
    with pytest.raises(OffsetOutOfRange):
        log.read(7, 100)
    durable = log.sync()
    assert durable == 9 and log.high_watermark == 6
    log.publish(durable)
    assert len(split(read_all(log))) == 3
    log.close()


def test_high_watermark_in_sealed_segment(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log, 2)
    for i in range(40):  # unsynced appends spanning a roll
        append(log, batch(tag=i))
    assert len(log_files(tmp_path)) > 1
    assert len(split(b"".join(log.read(0, 1 << 20).chunks))) == 2
    commit(log)
    assert len(split(read_all(log))) == 42
    log.close()


def test_offsets_out_of_range(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log, 3)
    with pytest.raises(OffsetOutOfRange):
        log.read(10, 100)
    with pytest.raises(OffsetOutOfRange):
        log.read(-1, 100)
    log.close()


def test_sync_from_another_thread_while_appending(tmp_path: Path) -> None:
    log = open_log(tmp_path, LogConfig(segment_bytes=64 * 1024))
    stop = threading.Event()
    synced: list[int] = []

    def syncer() -> None:
        while not stop.is_set():
            synced.append(log.sync())

    thread = threading.Thread(target=syncer)
    thread.start()
    stored = bytearray()
    for i in range(300):
        stored += append(log, batch(tag=i))[1]
    stop.set()
    thread.join()
    assert synced == sorted(synced)
    assert all(end % 3 == 0 for end in synced)
    commit(log)
    assert read_all(log) == stored
    log.close()


# -- recovery ----------------------------------------------------------------------


def test_reopen_recovers_everything(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    stored = fill(log, 50)
    log.close()
    log, report = LocalLog.open(tmp_path, SMALL)
    assert report.truncated_bytes == 0 and report.segments == len(log_files(tmp_path))
    assert report.indexes_rebuilt == 0
    assert log.log_end_offset == log.high_watermark == 150
    assert read_all(log) == stored
    _, more = append(log, batch(tag=99))
    commit(log)
    assert read_all(log) == stored + more
    log.close()


def test_torn_tail_truncated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = open_log(tmp_path, LogConfig())
    stored = fill(log, 5)
    log.close()
    path = tmp_path / "00000000000000000000.log"
    with open(path, "ab") as f:
        f.write(bytes(batch(tag=7))[:-10])  # the last write, torn
    torn = len(batch()) - 10
    with caplog.at_level(logging.WARNING, logger="kawa.storage"):
        log, report = LocalLog.open(tmp_path, LogConfig())
    assert report.truncated_bytes == torn
    assert str(path) in caplog.text and str(torn) in caplog.text
    assert path.stat().st_size == len(stored)
    assert read_all(log) == stored and log.log_end_offset == 15
    log.close()


def test_garbage_tail_truncated(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    stored = fill(log, 30)
    log.close()
    last = tmp_path / log_files(tmp_path)[-1]
    before = last.stat().st_size
    with open(last, "ab") as f:
        f.write(os.urandom(3000) + b"\x02" * 500)
    log, report = LocalLog.open(tmp_path, SMALL)
    assert report.truncated_bytes == 3500
    assert last.stat().st_size == before
    assert read_all(log) == stored
    log.close()


def test_bad_crc_at_tail_truncated(tmp_path: Path) -> None:
    log = open_log(tmp_path, LogConfig())
    stored = fill(log, 5)
    log.close()
    path = tmp_path / "00000000000000000000.log"
    bad = bytearray(batch(tag=1))
    bad[-1] ^= 0xFF
    with open(path, "ab") as f:
        f.write(bad)
    log, report = LocalLog.open(tmp_path, LogConfig())
    assert report.truncated_bytes == len(bad)
    assert read_all(log) == stored
    log.close()


def _flip_byte(path: Path, position: int) -> None:
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("where", ["crc", "length"])
def test_corrupt_middle_batch_raises(tmp_path: Path, where: str) -> None:
    log = open_log(tmp_path, LogConfig())
    stored = fill(log, 10)
    log.close()
    path = tmp_path / "00000000000000000000.log"
    size = len(split(stored)[0][1])
    position = 4 * size
    _flip_byte(path, position + (40 if where == "crc" else 10))
    with pytest.raises(LogCorrupted) as exc:
        LocalLog.open(tmp_path, LogConfig())
    assert str(path) in str(exc.value) and f"byte {position}" in str(exc.value)
    assert path.stat().st_size == len(stored)  # nothing truncated


def test_corrupt_sealed_segment_raises(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log, 60)
    log.close()
    first = tmp_path / log_files(tmp_path)[0]
    size = first.stat().st_size
    _flip_byte(first, size - 5)  # tail of a sealed segment: still corruption
    with pytest.raises(LogCorrupted, match=str(first)):
        LocalLog.open(tmp_path, SMALL)


def test_corrupt_sealed_segment_with_missing_index_raises(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log, 60)
    log.close()
    first = tmp_path / log_files(tmp_path)[0]
    first.with_suffix(".index").unlink()
    _flip_byte(first, 100)
    with pytest.raises(LogCorrupted, match=r"byte 0"):
        LocalLog.open(tmp_path, SMALL)


@pytest.mark.parametrize("damage", ["missing", "garbled", "truncated", "pointing-elsewhere"])
def test_index_rebuilt(tmp_path: Path, damage: str) -> None:
    log = open_log(tmp_path)
    stored = fill(log, 60)
    log.close()
    segments = log_files(tmp_path)
    assert len(segments) >= 3
    for name in (segments[0], segments[-1]):
        for suffix in (".index", ".timeindex"):
            index = tmp_path / name.replace(".log", suffix)
            data = index.read_bytes()
            assert data, f"{index} should have entries"
            if damage == "missing":
                index.unlink()
            elif damage == "garbled":
                index.write_bytes(os.urandom(len(data)))
            elif damage == "truncated":
                index.write_bytes(data[:-3])
            elif suffix == ".index":  # well formed, but the last entry misses its batch
                position = int.from_bytes(data[-4:], "big") + 1
                index.write_bytes(data[:-4] + position.to_bytes(4, "big"))
            else:  # well formed, but lacks the segment's max timestamp
                index.write_bytes(data[:-12])
    log, report = LocalLog.open(tmp_path, SMALL)
    assert report.indexes_rebuilt >= 1
    assert read_all(log) == stored
    for offset in range(0, 180, 7):
        assert split(b"".join(log.read(offset, 1).chunks))[0][0] <= offset
    assert log.offset_for_timestamp(T0 + 30) == (90, T0 + 30)
    log.close()
    _, report = LocalLog.open(tmp_path, SMALL)
    assert report.indexes_rebuilt == 0  # rebuilt indexes were persisted


# -- retention and deletion --------------------------------------------------------


def test_retention_by_bytes_removes_whole_segments(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=4096, index_interval_bytes=256, retention_bytes=6000)
    log = open_log(tmp_path, config)
    stored = fill(log, 100)
    sizes = [(tmp_path / n).stat().st_size for n in log_files(tmp_path)]
    freed = log.apply_retention(T0)
    assert freed > 0
    remaining = [(tmp_path / n).stat().st_size for n in log_files(tmp_path)]
    assert sizes[-len(remaining) :] == remaining and freed == sum(sizes[: -len(remaining)])
    assert sum(remaining) - remaining[0] < 6000 <= sum(remaining)
    assert log.size_bytes == sum(remaining)
    assert log.log_start_offset == int(log_files(tmp_path)[0][:-4])
    assert read_all(log) == stored[len(stored) - sum(remaining) :]
    with pytest.raises(OffsetOutOfRange):
        log.read(0, 100)
    log.close()


def test_retention_by_time_and_idle_roll(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=4096, index_interval_bytes=256, retention_ms=1000)
    log = open_log(tmp_path, config)
    fill(log, 60)  # timestamps T0 .. T0 + 59, ~20 per segment
    segments = log_files(tmp_path)
    assert log.apply_retention(T0 + 1000) == 0
    log.apply_retention(T0 + 1000 + 30)  # drops segments whose max timestamp < T0 + 30
    kept = log_files(tmp_path)
    assert kept == segments[len(segments) - len(kept) :] and len(kept) < len(segments)
    assert log.offset_for_timestamp(0) is not None
    # Batch i has timestamp T0 + i and offsets 3i..3i+2: whole segments went,
    # each holding only timestamps below the cutoff.
    assert log.log_start_offset == int(kept[0][:-4]) and log.log_start_offset // 3 <= 30
    assert int(kept[1][:-4]) // 3 - 1 >= 30
    # Far in the future the active segment is older than segment.ms: rolled, then expired.
    log.update_config(LogConfig(segment_ms=1, retention_ms=1000))
    log.apply_retention(T0 + 10**12)
    assert len(log_files(tmp_path)) == 1 and log.size_bytes == 0
    assert log.log_start_offset == log.log_end_offset == 180
    assert log.read(180, 100).size_bytes == 0
    _, data = append(log, batch())
    commit(log)
    assert read_all(log) == data
    log.close()


def test_retention_keeps_unpublished_segments(tmp_path: Path) -> None:
    log = open_log(tmp_path, LogConfig(segment_bytes=4096, retention_bytes=0))
    for i in range(60):
        append(log, batch(tag=i))
    assert log.apply_retention(T0) == 0  # nothing is below the high watermark
    commit(log)
    assert log.apply_retention(T0) > 0
    assert len(log_files(tmp_path)) == 1
    log.close()


def test_delete_records_before_persists(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    stored = fill(log, 60)
    with pytest.raises(OffsetOutOfRange):
        log.delete_records_before(181)
    assert log.delete_records_before(100) == 100
    assert log.delete_records_before(50) == 100
    assert int(log_files(tmp_path)[0][:-4]) <= 100
    assert all(int(n[:-4]) > 0 for n in log_files(tmp_path))
    with pytest.raises(OffsetOutOfRange):
        log.read(99, 100)
    first = split(b"".join(log.read(100, 1).chunks))[0]
    assert first[0] == 99  # the batch containing offset 100
    log.close()
    log = open_log(tmp_path)
    assert log.log_start_offset == 100
    assert read_all(log) == b"".join(raw for base, raw in split(stored) if base + 3 > 100)
    assert log.offset_for_timestamp(T0) == (100, T0 + 33)
    log.close()


def test_offset_for_timestamp(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    mem = MemoryLog(SMALL)
    timestamps = [T0 + t for t in (5, 3, 9, 9, 2, 20, 15, 30, 1, 40) * 8]
    for i, ts in enumerate(timestamps):
        for target in (log, mem):
            append(target, batch(ts=ts, tag=i))
            commit(target)
    assert len(log_files(tmp_path)) > 1
    for target_ts in [0, T0, *range(T0, T0 + 42)]:
        assert log.offset_for_timestamp(target_ts) == mem.offset_for_timestamp(target_ts)
    assert log.offset_for_timestamp(T0 + 41) is None
    log.close()
    log = open_log(tmp_path)
    for target_ts in range(T0, T0 + 42):
        assert log.offset_for_timestamp(target_ts) == mem.offset_for_timestamp(target_ts)
    log.close()


def test_delete_removes_files(tmp_path: Path) -> None:
    path = tmp_path / "topic-0"
    log = open_log(path)
    fill(log, 30)
    log.delete()
    assert not path.exists()


def test_start_offset_file_honoured_at_open(tmp_path: Path) -> None:
    """A crash between persisting the start and unlinking segments: open finishes the job."""
    log = open_log(tmp_path)
    stored = fill(log, 60)
    log.close()
    segments = log_files(tmp_path)
    (tmp_path / "log-start-offset").write_text("100\n")
    log = open_log(tmp_path)
    assert log.log_start_offset == 100
    kept = log_files(tmp_path)
    assert kept == segments[len(segments) - len(kept) :] and int(kept[0][:-4]) <= 100
    assert len(kept) < len(segments)
    assert read_all(log) == b"".join(raw for base, raw in split(stored) if base + 3 > 100)
    log.close()
    (tmp_path / "log-start-offset").write_text("garbage")
    with pytest.raises(LogCorrupted, match="log-start-offset"):
        LocalLog.open(tmp_path, SMALL)


def test_segment_ms_rolls_on_append(tmp_path: Path) -> None:
    log = open_log(tmp_path, LogConfig(segment_ms=0))
    stored = fill(log, 5)
    assert len(log_files(tmp_path)) == 5
    log.close()
    log = open_log(tmp_path, LogConfig(segment_ms=0))
    assert read_all(log) == stored
    log.close()


def test_index_write_failure_rewritten_on_seal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ENOSPC on an index file (a real /dev/full) loses no entries: seal rewrites them."""
    log = open_log(tmp_path)
    active = log._segments[-1]
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        assert active._index_fd is not None and active._timeindex_fd is not None
        os.dup2(full, active._index_fd)
        os.dup2(full, active._timeindex_fd)
    finally:
        os.close(full)
    with caplog.at_level(logging.WARNING, logger="kawa.storage"):
        stored = fill(log, 60)  # rolls: the first segment is sealed with dirty indexes
    assert "index write failed" in caplog.text
    log.close()
    log, report = LocalLog.open(tmp_path, SMALL)
    assert report.indexes_rebuilt == 0  # the sealed segment's rewritten indexes were trusted
    assert read_all(log) == stored
    log.close()


def test_failed_write_that_cannot_be_undone_fails_the_log(tmp_path: Path) -> None:
    log = open_log(tmp_path, LogConfig())
    stored = fill(log, 3)
    full = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC; ftruncate: EINVAL
    os.dup2(full, log._segments[-1].fd)
    os.close(full)
    with pytest.raises(OSError):
        append(log, batch())
    with pytest.raises(OSError, match="failed earlier"):
        append(log, batch())
    with pytest.raises(OSError, match="failed earlier"):
        log.sync()
    assert log.log_end_offset == log.high_watermark == 9
    log.close()
    assert (tmp_path / "00000000000000000000.log").read_bytes() == stored


def test_open_creates_directory_and_empty_log(tmp_path: Path) -> None:
    log, report = LocalLog.open(tmp_path / "a" / "b", SMALL)
    assert report.segments == 1 and report.batches_checked == 0
    assert log.log_start_offset == log.log_end_offset == log.high_watermark == 0
    assert log.read(0, 100).size_bytes == 0
    log.close()


# -- properties --------------------------------------------------------------------


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sizes=st.lists(st.integers(0, 2000), min_size=1, max_size=12), cut=st.floats(0, 1))
def test_crash_at_any_byte_keeps_whole_batches(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], cut: float
) -> None:
    """A crash can leave the active segment cut anywhere: recovery keeps exactly the whole batches."""
    path = tmp_path_factory.mktemp("cut")
    log = open_log(path, LogConfig(index_interval_bytes=300))
    stored = b"".join(append(log, batch(2, size, tag=i))[1] for i, size in enumerate(sizes))
    log.close()
    keep = int(len(stored) * cut)
    os.truncate(path / "00000000000000000000.log", keep)
    boundaries = [0]
    for _, raw in split(stored):
        boundaries.append(boundaries[-1] + len(raw))
    whole = max(b for b in boundaries if b <= keep)
    log, report = LocalLog.open(path, LogConfig(index_interval_bytes=300))
    assert report.truncated_bytes == keep - whole
    assert read_all(log) == stored[:whole]
    assert log.log_end_offset == 2 * boundaries.index(whole)
    log.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.one_of(
            st.lists(st.tuples(st.integers(1, 5), st.integers(0, 3000)), min_size=1, max_size=4),
            st.sampled_from(["reopen", "sync"]),
        ),
        min_size=1,
        max_size=25,
    ),
    segment_bytes=st.sampled_from([1024, 4096, 1 << 20]),
    interval=st.sampled_from([0, 100, 4096]),
)
def test_appends_and_reopens_read_back_exactly(
    tmp_path_factory: pytest.TempPathFactory,
    ops: list[list[tuple[int, int]] | str],
    segment_bytes: int,
    interval: int,
) -> None:
    path = tmp_path_factory.mktemp("prop")
    config = LogConfig(segment_bytes=segment_bytes, index_interval_bytes=interval)
    log = open_log(path, config)
    mem = MemoryLog(config)
    tag = 0
    for op in ops:
        if op == "reopen":
            log.close()
            log = open_log(path, config)
            mem.publish(mem.log_end_offset)
        elif op == "sync":
            commit(log)
            commit(mem)
        else:
            assert isinstance(op, list)
            parts = []
            for records, size in op:
                tag += 1
                parts.append(batch(records, size, ts=T0 + tag, tag=tag))
            first, stored = append(log, *parts)
            assert (first, stored) == append(mem, *parts)
        assert log.log_end_offset == mem.log_end_offset
        assert log.high_watermark == mem.high_watermark
        assert read_all(log) == read_all(mem)
        assert read_all(log, max_bytes=2500) == read_all(mem, max_bytes=2500)
    log.close()
    log = open_log(path, config)
    commit(mem)
    assert read_all(log) == read_all(mem)
    assert log.size_bytes == mem.size_bytes
    for offset in range(0, mem.log_end_offset, 3):
        for max_bytes in (1, 3000, 10_000):
            got = log.read(offset, max_bytes)
            want = mem.read(offset, max_bytes)
            assert b"".join(got.chunks) == b"".join(want.chunks)
    log.close()
