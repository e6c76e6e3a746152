"""Fetch: stored batches out, with long-poll on min_bytes / max_wait_ms.

Fetch sessions are not kept (session_id 0 in every answer), which keeps all
clients on full, stateless fetches. A fetch that finds fewer than min_bytes
registers with every partition it reads; the first publish of new data on
any of them wakes it at once (not when max_wait expires), and it reads again.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from kio.schema.errors import ErrorCode

from kawa.broker.connection import Encoded, RequestContext
from kawa.broker.partitions import Partition
from kawa.protocol.fetch_response import PartitionFetch, TopicFetch, encode_fetch_response
from kawa.storage.log import OffsetOutOfRange

_NIL_UUID = uuid.UUID(int=0)


@dataclass(slots=True)
class _Wanted:
    index: int
    partition: Partition | None
    error: ErrorCode
    fetch_offset: int
    max_bytes: int


@dataclass(slots=True)
class _WantedTopic:
    name: str
    topic_id: uuid.UUID
    partitions: list[_Wanted]


def _resolve(context: RequestContext, request: Any) -> list[_WantedTopic]:
    topics = context.broker.topics
    by_id = context.api_version >= 13
    wanted: list[_WantedTopic] = []
    for fetch_topic in request.topics:
        if by_id:
            topic = topics.by_id.get(fetch_topic.topic_id)
            missing = ErrorCode.unknown_topic_id
            name, topic_id = (topic.name if topic else ""), fetch_topic.topic_id
        else:
            topic = topics.topics.get(fetch_topic.topic)
            missing = ErrorCode.unknown_topic_or_partition
            name, topic_id = fetch_topic.topic, (topic.topic_id if topic else _NIL_UUID)
        entries: list[_Wanted] = []
        for p in fetch_topic.partitions:
            partition = None
            error = ErrorCode.none
            if topic is None:
                error = missing
            elif not 0 <= p.partition < len(topic.partitions):
                error = ErrorCode.unknown_topic_or_partition
            else:
                partition = topic.partitions[p.partition]
                if partition.log is None:
                    error = ErrorCode.kafka_storage_error
            entries.append(_Wanted(p.partition, partition, error, p.fetch_offset, p.partition_max_bytes))
        wanted.append(_WantedTopic(name, topic_id, entries))
    return wanted


def _read(wanted: list[_WantedTopic], max_bytes: int) -> tuple[list[TopicFetch], int, bool]:
    """Read every wanted partition; returns (topics, record bytes, any error)."""
    remaining = max_bytes
    total = 0
    any_error = False
    out: list[TopicFetch] = []
    for topic in wanted:
        partitions: list[PartitionFetch] = []
        for w in topic.partitions:
            partition_log = w.partition.log if w.partition is not None else None
            if partition_log is None or w.partition.closed:  # type: ignore[union-attr]
                # closed: the topic was deleted while this fetch waited.
                error = w.error or ErrorCode.unknown_topic_or_partition
                any_error = True
                partitions.append(PartitionFetch(w.index, error, -1, -1, (), 0))
                continue
            high_watermark = partition_log.high_watermark
            start = partition_log.log_start_offset
            if w.fetch_offset == high_watermark or (remaining <= 0 and total > 0):
                partitions.append(PartitionFetch(w.index, 0, high_watermark, start, (), 0))
                continue
            try:
                result = partition_log.read(w.fetch_offset, max(1, min(w.max_bytes, remaining)))
            except OffsetOutOfRange:
                any_error = True
                partitions.append(
                    PartitionFetch(
                        w.index, ErrorCode.offset_out_of_range, high_watermark, start, (), 0
                    )
                )
                continue
            remaining -= result.size_bytes
            total += result.size_bytes
            partitions.append(
                PartitionFetch(
                    w.index, 0, high_watermark, start, result.chunks, result.size_bytes
                )
            )
        out.append(TopicFetch(topic.name, topic.topic_id, partitions))
    return out, total, any_error


def handle_fetch(context: RequestContext, request: Any) -> Any:
    wanted = _resolve(context, request)
    max_bytes = min(request.max_bytes, context.broker.config.fetch_response_bytes_max)
    topics, size, any_error = _read(wanted, max_bytes)
    max_wait_ms = request.max_wait.total_seconds() * 1000
    if size >= request.min_bytes or any_error or max_wait_ms <= 0:
        return _encode(context, topics)
    return _long_poll(context, wanted, max_bytes, request.min_bytes, max_wait_ms)


async def _long_poll(
    context: RequestContext,
    wanted: list[_WantedTopic],
    max_bytes: int,
    min_bytes: int,
    max_wait_ms: float,
) -> Encoded:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_ms / 1000
    partitions = [w.partition for t in wanted for w in t.partitions if w.partition is not None]
    # Bounded: each pass either returns or waits for new data or the deadline.
    while True:
        remaining_s = deadline - loop.time()
        if remaining_s <= 0:
            break
        wake: asyncio.Future[None] = loop.create_future()
        for partition in partitions:
            partition.add_waiter(wake)
        timer = loop.call_later(remaining_s, _resolve_future, wake)
        try:
            await wake
        finally:
            timer.cancel()
            for partition in partitions:
                partition.remove_waiter(wake)
        topics, size, any_error = _read(wanted, max_bytes)
        if size >= min_bytes or any_error:
            return _encode(context, topics)
    topics, _, _ = _read(wanted, max_bytes)
    return _encode(context, topics)


def _resolve_future(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _encode(context: RequestContext, topics: list[TopicFetch]) -> Encoded:
    parts, size = encode_fetch_response(context.api_version, topics)
    return Encoded(parts, size)
