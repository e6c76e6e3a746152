"""Produce and InitProducerId.

Per partition: find (or auto-create) the topic -> validate every batch header
and CRC -> idempotence check -> append (assigns offsets) -> durability step.
A partition whose batches fail any check gets an error code and nothing of
that request is written to it. Records are never decoded.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from kio.schema.errors import ErrorCode

from kawa.broker.connection import RequestContext
from kawa.broker.handlers.metadata import auto_create
from kawa.broker.partitions import Partition
from kawa.broker.producer_state import SequenceError
from kawa.protocol import api
from kawa.protocol.recordbatch import InvalidBatch, split_batches

log = logging.getLogger("kawa.broker")


@dataclass(slots=True)
class _Result:
    index: int
    error: ErrorCode = ErrorCode.none
    base_offset: int = -1
    log_start_offset: int = -1
    message: str | None = None
    # Set when the answer must wait until the log is durable up to this offset.
    durable_end_offset: int = -1
    partition: Partition | None = None
    records: int = 0


def _append(
    partition: Partition, records: bytes | None, max_bytes: int, result: _Result
) -> None:
    partition_log = partition.log
    if partition_log is None:
        result.error, result.message = ErrorCode.kafka_storage_error, partition.error
        return
    if not records:
        result.error, result.message = ErrorCode.corrupt_message, "empty record set"
        return
    buffer = bytearray(records)
    try:
        headers = split_batches(buffer)
    except InvalidBatch as e:
        result.error = ErrorCode.corrupt_message if e.corrupt else ErrorCode.unsupported_for_message_format
        result.message = e.reason
        return
    for header in headers:
        if header.size_bytes > max_bytes:
            result.error = ErrorCode.message_too_large
            result.message = f"batch of {header.size_bytes} bytes > max.message.bytes {max_bytes}"
            return
        if header.is_transactional or header.is_control:
            result.error = ErrorCode.invalid_record
            result.message = "transactions are not supported by kawa"
            return
    for header in headers:
        try:
            duplicate_of = partition.producers.check(header)
        except SequenceError as e:
            result.error, result.message = e.code, str(e)
            return
        if duplicate_of is None:
            continue
        if len(headers) > 1:
            # A retry is recognised only as the whole single batch it was.
            result.error = ErrorCode.invalid_record
            result.message = "duplicate batch inside a multi-batch set"
            return
        result.base_offset = duplicate_of
        result.log_start_offset = partition_log.log_start_offset
        result.durable_end_offset = duplicate_of + header.last_offset_delta + 1
        result.partition = partition
        return
    base = partition_log.append(buffer, headers)
    result.records = sum(h.record_count for h in headers)
    offset = base
    for header in headers:
        partition.producers.record(header, offset)
        offset += header.last_offset_delta + 1
    partition.after_append()
    result.base_offset = base
    result.log_start_offset = partition_log.log_start_offset
    result.durable_end_offset = offset
    result.partition = partition


def handle_produce(context: RequestContext, request: Any) -> Any:
    acks = request.acks
    topics = context.broker.topics
    answers: list[tuple[str, list[_Result]]] = []
    for topic_data in request.topic_data:
        results: list[_Result] = []
        topic, topic_error = auto_create(topics, topic_data.name)
        for data in topic_data.partition_data:
            result = _Result(data.index)
            results.append(result)
            if acks not in (-1, 0, 1):
                result.error = ErrorCode.invalid_required_acks
            elif request.transactional_id is not None:
                result.error = ErrorCode.transactional_id_authorization_failed
                result.message = "transactions are not supported by kawa"
            elif topic is None:
                result.error = topic_error
            elif not 0 <= data.index < len(topic.partitions):
                result.error = ErrorCode.unknown_topic_or_partition
            else:
                _append(
                    topic.partitions[data.index], data.records,
                    topic.log_config.max_message_bytes, result,
                )
            if result.error is not ErrorCode.none:
                context.broker.metrics.error(api.PRODUCE, result.error.name)
                log.info(
                    "produce to %r partition %d from %s refused: %s %s",
                    topic_data.name, data.index, context.peer, result.error.name, result.message,
                )
        answers.append((topic_data.name, results))
        appended = sum(r.records for r in results)
        if appended:
            context.broker.metrics.records_in.labels(topic_data.name).inc(appended)

    waits: list[tuple[_Result, asyncio.Future[None]]] = []
    for _, results in answers:
        for result in results:
            partition = result.partition
            if partition is not None and partition.needs_fsync_before_ack:
                assert partition.group_commit is not None
                waits.append((result, partition.group_commit.wait_durable(result.durable_end_offset)))
    if acks == 0:
        # No response; appended bytes still become visible once fsynced.
        return None
    if not waits:
        return _response(context, answers)
    return _after_durable(context, answers, waits)


async def _after_durable(
    context: RequestContext,
    answers: list[tuple[str, list[_Result]]],
    waits: list[tuple[_Result, asyncio.Future[None]]],
) -> Any:
    for result, future in waits:
        try:
            await future
        except Exception as e:  # noqa: BLE001 - any fsync failure is a storage error
            result.error = ErrorCode.kafka_storage_error
            result.message = f"fsync failed: {e}"
    return _response(context, answers)


def _response(context: RequestContext, answers: list[tuple[str, list[_Result]]]) -> Any:
    cls = api.response_type(api.PRODUCE, context.api_version)
    topic_cls = api.nested(cls, "TopicProduceResponse")
    partition_cls = api.nested(cls, "PartitionProduceResponse")
    return api.build(
        cls,
        responses=tuple(
            api.build(
                topic_cls,
                name=name,
                partition_responses=tuple(
                    api.build(
                        partition_cls,
                        index=r.index,
                        error_code=r.error,
                        base_offset=r.base_offset,
                        log_append_time=None,
                        log_start_offset=r.log_start_offset,
                        record_errors=(),
                        error_message=r.message,
                    )
                    for r in results
                ),
            )
            for name, results in answers
        ),
    )


def handle_init_producer_id(context: RequestContext, request: Any) -> Any:
    cls = api.response_type(api.INIT_PRODUCER_ID, context.api_version)
    if request.transactional_id is not None:
        log.info("InitProducerId with transactional.id from %s refused", context.peer)
        return api.build(
            cls, error_code=ErrorCode.transactional_id_authorization_failed,
            producer_id=-1, producer_epoch=-1,
        )
    existing_id = getattr(request, "producer_id", -1)
    existing_epoch = getattr(request, "producer_epoch", -1)
    if existing_id >= 0 and 0 <= existing_epoch < 32767:
        # KIP-360: an idempotent producer bumps its epoch to reset sequences.
        return api.build(
            cls, error_code=ErrorCode.none, producer_id=existing_id,
            producer_epoch=existing_epoch + 1,
        )
    producer_id = context.broker.store.next_producer_id()
    return api.build(cls, error_code=ErrorCode.none, producer_id=producer_id, producer_epoch=0)
