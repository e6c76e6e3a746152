"""Admin APIs: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
IncrementalAlterConfigs. Each topic in a request succeeds or fails on its own,
with the Kafka error code and a message that says what to change."""

from __future__ import annotations

import logging
import time
from typing import Any

from kio.schema.errors import ErrorCode

from kawa.broker import topic_config
from kawa.broker.connection import RequestContext
from kawa.broker.partitions import InvalidTopicName, check_topic_name
from kawa.metadata.store import TopicExists
from kawa.protocol import api

log = logging.getLogger("kawa.broker")

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
SOURCE_DYNAMIC_TOPIC = 1
SOURCE_STATIC_BROKER = 4
SOURCE_DEFAULT = 5
OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3


def handle_create_topics(context: RequestContext, request: Any) -> Any:
    topics = context.broker.topics
    cls = api.response_type(api.CREATE_TOPICS, context.api_version)
    result_cls = api.nested(cls, "CreatableTopicResult")
    config_cls = api.nested(cls, "CreatableTopicConfigs")
    results = []
    for wanted in request.topics:
        partitions = wanted.num_partitions
        if partitions == -1:
            partitions = topics.config.default_partitions
        configs = {c.name: c.value for c in wanted.configs}
        error, message, topic_id = ErrorCode.none, None, None
        try:
            check_topic_name(wanted.name)
            if wanted.name in topics.topics:
                raise TopicExists(wanted.name)
            if wanted.replication_factor not in (-1, 1):
                error = ErrorCode.invalid_replication_factor
                message = (
                    f"replication factor {wanted.replication_factor} is not available: this "
                    "deployment has one broker per partition; use 1 or -1"
                )
            elif wanted.assignments:
                error, message = ErrorCode.invalid_request, "manual replica assignment is not supported"
            elif not 1 <= partitions <= topics.config.partitions_per_topic_max:
                error = ErrorCode.invalid_partitions
                message = f"num_partitions must be 1..{topics.config.partitions_per_topic_max}"
            elif request.validate_only:
                topic_config.validate(configs)
            else:
                topic_id = topics.create(wanted.name, partitions, configs).topic_id
        except InvalidTopicName as e:
            error, message = ErrorCode.invalid_topic_exception, str(e)
        except TopicExists:
            error, message = ErrorCode.topic_already_exists, f"topic {wanted.name!r} already exists"
        except topic_config.InvalidConfig as e:
            error, message = ErrorCode.invalid_config, str(e)
        effective = topic_config.effective(topic_config.validate(configs)) if error == 0 else {}
        results.append(
            api.build(
                result_cls,
                name=wanted.name,
                topic_id=topic_id,
                error_code=error,
                error_message=message,
                num_partitions=partitions if error == 0 else -1,
                replication_factor=1 if error == 0 else -1,
                configs=tuple(
                    api.build(
                        config_cls, name=k, value=v, read_only=False,
                        config_source=SOURCE_DYNAMIC_TOPIC if k in configs else SOURCE_DEFAULT,
                        is_sensitive=False,
                    )
                    for k, v in sorted(effective.items())
                )
                if config_cls is not None
                else (),
            )
        )
    return api.build(cls, topics=tuple(results))


def handle_delete_topics(context: RequestContext, request: Any) -> Any:
    topics = context.broker.topics
    cls = api.response_type(api.DELETE_TOPICS, context.api_version)
    result_cls = api.nested(cls, "DeletableTopicResult")
    if context.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    results = []
    deleted = False
    for name, topic_id in wanted:
        if name is None and topic_id is not None:
            by_id = topics.by_id.get(topic_id)
            name = by_id.name if by_id else None
        topic = topics.topics.get(name) if name is not None else None
        if topic is None:
            error = ErrorCode.unknown_topic_id if name is None else ErrorCode.unknown_topic_or_partition
            results.append(
                api.build(result_cls, name=name, topic_id=topic_id, error_code=error,
                          error_message=f"no topic {name or topic_id}")
            )
            continue
        topics.delete(topic.name)
        deleted = True
        results.append(
            api.build(result_cls, name=topic.name, topic_id=topic.topic_id,
                      error_code=ErrorCode.none, error_message=None)
        )
    if deleted:
        # As in Kafka, committed offsets of a deleted topic go with it, so a
        # topic re-created under the same name starts without them.
        context.broker.groups.expire_offsets(int(time.time() * 1000), lambda t: t in topics.topics)
    return api.build(cls, responses=tuple(results))


def handle_create_partitions(context: RequestContext, request: Any) -> Any:
    topics = context.broker.topics
    cls = api.response_type(api.CREATE_PARTITIONS, context.api_version)
    result_cls = api.nested(cls, "CreatePartitionsTopicResult")
    results = []
    for wanted in request.topics:
        error, message = ErrorCode.none, None
        topic = topics.topics.get(wanted.name)
        if topic is None:
            error, message = ErrorCode.unknown_topic_or_partition, f"no topic {wanted.name!r}"
        elif wanted.count <= len(topic.partitions):
            error = ErrorCode.invalid_partitions
            message = (
                f"topic {wanted.name!r} has {len(topic.partitions)} partitions; "
                f"the new count ({wanted.count}) must be larger"
            )
        elif wanted.count > topics.config.partitions_per_topic_max:
            error = ErrorCode.invalid_partitions
            message = f"count must be at most {topics.config.partitions_per_topic_max}"
        elif not request.validate_only:
            topics.add_partitions(wanted.name, wanted.count)
        results.append(api.build(result_cls, name=wanted.name, error_code=error, error_message=message))
    return api.build(cls, results=tuple(results))


def _broker_configs(context: RequestContext) -> dict[str, str]:
    config = context.broker.config
    return {
        "broker.id": str(config.broker_id),
        "auto.create.topics.enable": str(config.auto_create_topics).lower(),
        "num.partitions": str(config.default_partitions),
        "socket.request.max.bytes": str(config.request_size_bytes_max),
        "fetch.max.bytes": str(config.fetch_response_bytes_max),
        "log.dirs": str(config.data_dir / "logs"),
    }


def handle_describe_configs(context: RequestContext, request: Any) -> Any:
    topics = context.broker.topics
    cls = api.response_type(api.DESCRIBE_CONFIGS, context.api_version)
    result_cls = api.nested(cls, "DescribeConfigsResult")
    entry_cls = api.nested(cls, "DescribeConfigsResourceResult")
    results = []
    for resource in request.resources:
        error, message = ErrorCode.none, None
        values: dict[str, tuple[str, int, int, bool]] = {}  # name -> value, source, type, read_only
        if resource.resource_type == RESOURCE_TOPIC:
            topic = topics.topics.get(resource.resource_name)
            if topic is None:
                error, message = ErrorCode.unknown_topic_or_partition, f"no topic {resource.resource_name!r}"
            else:
                for name, value in topic_config.effective(topic.configs).items():
                    source = SOURCE_DYNAMIC_TOPIC if name in topic.configs else SOURCE_DEFAULT
                    spec = topic_config.TOPIC_CONFIGS[name]
                    values[name] = (value, source, spec.config_type, False)
        elif resource.resource_type == RESOURCE_BROKER:
            for name, value in _broker_configs(context).items():
                values[name] = (value, SOURCE_STATIC_BROKER, 2, True)
        else:
            error, message = ErrorCode.invalid_request, f"resource type {resource.resource_type} not supported"
        keys = resource.configuration_keys
        if keys:
            values = {k: v for k, v in values.items() if k in keys}
        results.append(
            api.build(
                result_cls,
                error_code=error,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
                configs=tuple(
                    api.build(
                        entry_cls, name=name, value=value, read_only=read_only,
                        config_source=source, is_default=source == SOURCE_DEFAULT,
                        is_sensitive=False, synonyms=(), config_type=config_type,
                        documentation=None,
                    )
                    for name, (value, source, config_type, read_only) in sorted(values.items())
                ),
            )
        )
    return api.build(cls, results=tuple(results))


def handle_incremental_alter_configs(context: RequestContext, request: Any) -> Any:
    topics = context.broker.topics
    cls = api.response_type(api.INCREMENTAL_ALTER_CONFIGS, context.api_version)
    result_cls = api.nested(cls, "AlterConfigsResourceResponse")
    results = []
    for resource in request.resources:
        error, message = ErrorCode.none, None
        topic = topics.topics.get(resource.resource_name)
        if resource.resource_type != RESOURCE_TOPIC:
            error, message = ErrorCode.invalid_request, "only topic configs can be altered"
        elif topic is None:
            error, message = ErrorCode.unknown_topic_or_partition, f"no topic {resource.resource_name!r}"
        else:
            configs = dict(topic.configs)
            try:
                for change in resource.configs:
                    if change.config_operation == OP_SET:
                        configs[change.name] = change.value
                    elif change.config_operation == OP_DELETE:
                        if change.name not in topic_config.TOPIC_CONFIGS:
                            raise topic_config.InvalidConfig(f"unknown topic config {change.name!r}")
                        configs.pop(change.name, None)
                    else:
                        raise topic_config.InvalidConfig(
                            f"{change.name}: APPEND/SUBTRACT apply to list configs; use SET"
                        )
                if request.validate_only:
                    topic_config.validate(configs)
                else:
                    topics.set_configs(topic.name, configs)
            except topic_config.InvalidConfig as e:
                error, message = ErrorCode.invalid_config, str(e)
        results.append(
            api.build(
                result_cls, error_code=error, error_message=message,
                resource_type=resource.resource_type, resource_name=resource.resource_name,
            )
        )
    return api.build(cls, responses=tuple(results))
