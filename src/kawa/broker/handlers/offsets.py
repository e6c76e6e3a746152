"""ListOffsets (earliest, latest, by timestamp) and DeleteRecords."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from kawa.broker.connection import RequestContext
from kawa.broker.partitions import Partition, TopicManager
from kawa.protocol import api
from kawa.protocol.recordbatch import peek_offset_and_size
from kawa.protocol.records import UndecodableBatch, record_timestamps
from kawa.storage.log import OffsetOutOfRange

log = logging.getLogger("kawa.broker")

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3


def _each_partition(
    topics: TopicManager,
    name: str,
    indexes: list[int],
    answer: Callable[[int, Partition], Any],
    error: Callable[[int, ErrorCode], Any],
) -> tuple[Any, ...]:
    topic = topics.topics.get(name)
    out = []
    for index in indexes:
        if topic is None or not 0 <= index < len(topic.partitions):
            out.append(error(index, ErrorCode.unknown_topic_or_partition))
        elif topic.partitions[index].log is None:
            out.append(error(index, ErrorCode.kafka_storage_error))
        else:
            out.append(answer(index, topic.partitions[index]))
    return tuple(out)


def handle_list_offsets(context: RequestContext, request: Any) -> Any:
    cls = api.response_type(api.LIST_OFFSETS, context.api_version)
    topic_cls = api.nested(cls, "ListOffsetsTopicResponse")
    partition_cls = api.nested(cls, "ListOffsetsPartitionResponse")

    def error(index: int, code: ErrorCode) -> Any:
        return api.build(partition_cls, partition_index=index, error_code=code, timestamp=-1, offset=-1)

    def lookup(timestamps: dict[int, int]) -> Callable[[int, Partition], Any]:
        def answer(index: int, partition: Partition) -> Any:
            partition_log = partition.log
            assert partition_log is not None
            wanted = timestamps[index]
            offset, timestamp = -1, -1
            if wanted == LATEST:
                offset = partition_log.high_watermark
            elif wanted == EARLIEST:
                offset = partition_log.log_start_offset
            elif wanted == MAX_TIMESTAMP or wanted >= 0:
                batch = (
                    _max_timestamp(partition) if wanted == MAX_TIMESTAMP
                    else partition_log.offset_for_timestamp(wanted)
                )
                if batch is not None and batch[0] < partition_log.high_watermark:
                    # A batch's max timestamp found it; the answer is a record in it.
                    target = batch[1] if wanted == MAX_TIMESTAMP else wanted
                    offset, timestamp = _first_record_at(partition, batch, target)
            else:
                return error(index, ErrorCode.invalid_request)
            return api.build(
                partition_cls, partition_index=index, error_code=ErrorCode.none,
                timestamp=timestamp, offset=offset, leader_epoch=0,
            )

        return answer

    topics = []
    for t in request.topics:
        timestamps = {p.partition_index: p.timestamp for p in t.partitions}
        topics.append(
            api.build(
                topic_cls,
                name=t.name,
                partitions=_each_partition(
                    context.broker.topics, t.name, list(timestamps), lookup(timestamps), error
                ),
            )
        )
    return api.build(cls, topics=tuple(topics))


def _max_timestamp(partition: Partition) -> tuple[int, int] | None:
    """(base offset, max timestamp) of the batch holding the largest timestamp (ListOffsets -3)."""
    partition_log = partition.log
    assert partition_log is not None
    best = partition_log.offset_for_timestamp(0)
    if best is None:
        return None
    # offset_for_timestamp finds the first batch reaching a timestamp; climb
    # until no later batch has a larger one (bounded by 64 doublings of 2^63).
    for _ in range(64):
        higher = partition_log.offset_for_timestamp(best[1] + 1)
        if higher is None:
            break
        best = higher
    return best


def _first_record_at(partition: Partition, batch: tuple[int, int], target_ms: int) -> tuple[int, int]:
    """(offset, timestamp) of the first record at or after `target_ms` in the batch
    that `offset_for_timestamp` found; the batch's own (base, max) if its records
    cannot be decoded (an unknown codec)."""
    partition_log = partition.log
    assert partition_log is not None
    chunk = b"".join(bytes(c) for c in partition_log.read(batch[0], 1).chunks)
    if not chunk:
        return batch
    _, size = peek_offset_and_size(chunk, 0)
    try:
        records = record_timestamps(memoryview(chunk)[:size])
    except UndecodableBatch as e:
        log.warning("ListOffsets on %s-%d: %s; answering by batch", partition.topic, partition.index, e)
        return batch
    start = partition_log.log_start_offset
    for offset, timestamp in records:
        if offset >= start and timestamp >= target_ms:
            return offset, timestamp
    return batch


def handle_delete_records(context: RequestContext, request: Any) -> Any:
    cls = api.response_type(api.DELETE_RECORDS, context.api_version)
    topic_cls = api.nested(cls, "DeleteRecordsTopicResult")
    partition_cls = api.nested(cls, "DeleteRecordsPartitionResult")

    def error(index: int, code: ErrorCode) -> Any:
        return api.build(partition_cls, partition_index=index, low_watermark=-1, error_code=code)

    def delete(offsets: dict[int, int]) -> Callable[[int, Partition], Any]:
        def answer(index: int, partition: Partition) -> Any:
            partition_log = partition.log
            assert partition_log is not None
            offset = offsets[index]
            if offset == -1:
                offset = partition_log.high_watermark
            if offset < 0 or offset > partition_log.high_watermark:
                return error(index, ErrorCode.offset_out_of_range)
            try:
                low = partition_log.delete_records_before(offset)
            except OffsetOutOfRange:
                return error(index, ErrorCode.offset_out_of_range)
            return api.build(
                partition_cls, partition_index=index, low_watermark=low, error_code=ErrorCode.none
            )

        return answer

    topics = []
    for t in request.topics:
        offsets = {p.partition_index: p.offset for p in t.partitions}
        topics.append(
            api.build(
                topic_cls,
                name=t.name,
                partitions=_each_partition(
                    context.broker.topics, t.name, list(offsets), delete(offsets), error
                ),
            )
        )
    return api.build(cls, topics=tuple(topics))
