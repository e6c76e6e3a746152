"""Metadata and DescribeCluster: who leads what (this broker leads everything it serves)."""

from __future__ import annotations

import logging
from typing import Any

from kio.schema.errors import ErrorCode

from kawa.broker.connection import RequestContext
from kawa.broker.partitions import InvalidTopicName, Topic, TopicManager, check_topic_name
from kawa.metadata.store import TopicExists
from kawa.protocol import api

log = logging.getLogger("kawa.broker")


def auto_create(topics: TopicManager, name: str) -> tuple[Topic | None, ErrorCode]:
    """The topic `name`, created with broker defaults if allowed; or an error code."""
    topic = topics.topics.get(name)
    if topic is not None:
        return topic, ErrorCode.none
    try:
        check_topic_name(name)
    except InvalidTopicName:
        return None, ErrorCode.invalid_topic_exception
    if not topics.config.auto_create_topics:
        return None, ErrorCode.unknown_topic_or_partition
    try:
        return topics.create(name, topics.config.default_partitions, {}), ErrorCode.none
    except TopicExists:
        return topics.topics.get(name), ErrorCode.none


def handle_metadata(context: RequestContext, request: Any) -> Any:
    broker = context.broker
    topics = broker.topics
    cls = api.response_type(api.METADATA, context.api_version)
    broker_cls = api.nested(cls, "MetadataResponseBroker")
    topic_cls = api.nested(cls, "MetadataResponseTopic")
    partition_cls = api.nested(cls, "MetadataResponsePartition")
    node_id = broker.config.broker_id
    host, port = broker.advertised

    requested = request.topics
    if requested is None or (context.api_version == 0 and not requested):
        names: list[str] = sorted(topics.topics)
    else:
        names = []
        for entry in requested:
            name = entry.name
            if name is None and getattr(entry, "topic_id", None) is not None:
                by_id = topics.by_id.get(entry.topic_id)
                name = by_id.name if by_id else None
            if name is not None:
                names.append(name)
    allow_create = getattr(request, "allow_auto_topic_creation", True)

    results = []
    for name in names:
        topic: Topic | None = topics.topics.get(name)
        error = ErrorCode.none
        if topic is None:
            if allow_create:
                topic, error = auto_create(topics, name)
            else:
                error = ErrorCode.unknown_topic_or_partition
        if topic is None:
            results.append(
                api.build(
                    topic_cls, error_code=error, name=name, topic_id=None,
                    is_internal=False, partitions=(),
                )
            )
            continue
        partitions = tuple(
            api.build(
                partition_cls,
                error_code=ErrorCode.none if p.log is not None else ErrorCode.kafka_storage_error,
                partition_index=p.index,
                leader_id=node_id,
                leader_epoch=0,
                replica_nodes=(node_id,),
                isr_nodes=(node_id,),
                offline_replicas=() if p.log is not None else (node_id,),
            )
            for p in topic.partitions
        )
        results.append(
            api.build(
                topic_cls,
                error_code=ErrorCode.none,
                name=topic.name,
                topic_id=topic.topic_id,
                is_internal=False,
                partitions=partitions,
            )
        )
    return api.build(
        cls,
        brokers=(api.build(broker_cls, node_id=node_id, host=host, port=port, rack=None),),
        cluster_id=broker.config.cluster_id,
        controller_id=node_id,
        topics=tuple(results),
    )


def handle_describe_cluster(context: RequestContext, request: Any) -> Any:
    broker = context.broker
    cls = api.response_type(api.DESCRIBE_CLUSTER, context.api_version)
    broker_cls = api.nested(cls, "DescribeClusterBroker")
    host, port = broker.advertised
    node_id = broker.config.broker_id
    return api.build(
        cls,
        error_code=ErrorCode.none,
        error_message=None,
        cluster_id=broker.config.cluster_id,
        controller_id=node_id,
        brokers=(api.build(broker_cls, broker_id=node_id, host=host, port=port, rack=None),),
    )
