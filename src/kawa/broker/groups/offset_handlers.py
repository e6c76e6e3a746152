"""Offset and group administration APIs: OffsetCommit, OffsetFetch, OffsetDelete,
ListGroups, DescribeGroups, DeleteGroups.

Topics are checked here (they belong to the broker, not to the coordinator):
a commit for a partition that does not exist gets UNKNOWN_TOPIC_OR_PARTITION
(UNKNOWN_TOPIC_ID when addressed by id, v10+), metadata longer than
``offset_metadata_bytes_max`` gets OFFSET_METADATA_TOO_LARGE; the rest goes to
the coordinator, which answers for the group as a whole.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from kawa.broker.connection import RequestContext
from kawa.broker.groups.coordinator import OffsetToCommit
from kawa.broker.groups.handlers import coordinator, now_ms
from kawa.broker.groups.state import GroupState
from kawa.protocol import api

E = ErrorCode

# Operations a client may perform on a group (DescribeGroups v3+ asks): kawa has
# no ACLs, so every client may READ (3), DELETE (6) and DESCRIBE (8).
GROUP_OPERATIONS = (1 << 3) | (1 << 6) | (1 << 8)
OPERATIONS_NOT_ASKED = -(2**31)


# -- OffsetCommit ---------------------------------------------------------------------


def handle_offset_commit(context: RequestContext, request: Any) -> Any:
    version = context.api_version
    topics = context.broker.topics
    metadata_max = context.broker.config.offset_metadata_bytes_max
    by_id = version >= 10
    errors: dict[tuple[int, int], ErrorCode] = {}  # (topic position, partition position)
    wanted: list[tuple[int, int, OffsetToCommit]] = []
    for ti, t in enumerate(request.topics):
        topic = topics.by_id.get(t.topic_id) if by_id else topics.topics.get(t.name)
        for pi, p in enumerate(t.partitions):
            metadata = p.committed_metadata or ""
            if topic is None:
                errors[ti, pi] = E.unknown_topic_id if by_id else E.unknown_topic_or_partition
            elif not 0 <= p.partition_index < len(topic.partitions):
                errors[ti, pi] = E.unknown_topic_or_partition
            elif len(metadata.encode()) > metadata_max:
                errors[ti, pi] = E.offset_metadata_too_large
            else:
                epoch = getattr(p, "committed_leader_epoch", -1)
                wanted.append((ti, pi, OffsetToCommit(
                    topic.name, p.partition_index, p.committed_offset, epoch, metadata)))
    if wanted:
        error = coordinator(context).commit_offsets(
            request.group_id,
            request.member_id,
            getattr(request, "group_instance_id", None) or None,
            request.generation_id_or_member_epoch,
            [o for _, _, o in wanted],
            now_ms(),
        )
        for ti, pi, _ in wanted:
            errors[ti, pi] = error

    cls = api.response_type(api.OFFSET_COMMIT, version)
    topic_cls = api.nested(cls, "OffsetCommitResponseTopic")
    partition_cls = api.nested(cls, "OffsetCommitResponsePartition")
    return api.build(cls, topics=tuple(
        api.build(
            topic_cls,
            name=getattr(t, "name", None),
            topic_id=getattr(t, "topic_id", None),
            partitions=tuple(
                api.build(partition_cls, partition_index=p.partition_index,
                          error_code=errors[ti, pi])
                for pi, p in enumerate(t.partitions)
            ),
        )
        for ti, t in enumerate(request.topics)
    ))


# -- OffsetFetch ----------------------------------------------------------------------


def handle_offset_fetch(context: RequestContext, request: Any) -> Any:
    """One group (v1-v7) or several (v8+); topics None (v2+) asks for every
    committed offset of the group. A partition without one answers -1."""
    version = context.api_version
    cls = api.response_type(api.OFFSET_FETCH, version)
    if version >= 8:
        group_cls = api.nested(cls, "OffsetFetchResponseGroup")
        topic_cls = api.nested(cls, "OffsetFetchResponseTopics")
        partition_cls = api.nested(cls, "OffsetFetchResponsePartitions")
        groups = tuple(
            api.build(group_cls, group_id=g.group_id, error_code=error, topics=answer)
            for g in request.groups
            for error, answer in [_fetch_group(context, g.group_id, g.topics, version,
                                               topic_cls, partition_cls)]
        )
        return api.build(cls, groups=groups)
    topic_cls = api.nested(cls, "OffsetFetchResponseTopic")
    partition_cls = api.nested(cls, "OffsetFetchResponsePartition")
    error, answer = _fetch_group(context, request.group_id, request.topics, version,
                                 topic_cls, partition_cls)
    return api.build(cls, error_code=error, topics=answer)


def _fetch_group(
    context: RequestContext, group_id: str, wanted_topics: Any, version: int,
    topic_cls: type, partition_cls: type,
) -> tuple[ErrorCode, tuple[Any, ...]]:
    groups = coordinator(context)
    topics = context.broker.topics
    by_id = version >= 10
    group_error = E.not_coordinator if groups.closed else E.none
    committed = groups.fetch_offsets(group_id)

    def partition(name: str | None, index: int, error: ErrorCode = E.none) -> Any:
        error = group_error if version < 2 and group_error is not E.none else error
        o = committed.get((name, index)) if name is not None else None
        return api.build(
            partition_cls,
            partition_index=index,
            committed_offset=o.offset if o else -1,
            committed_leader_epoch=o.leader_epoch if o else -1,
            metadata=o.metadata if o else "",
            error_code=error,
        )

    out = []
    if wanted_topics is None:  # every topic the group has offsets for
        requested: dict[str, list[int]] = {}
        for topic_name, index in sorted(committed):
            requested.setdefault(topic_name, []).append(index)
        for topic_name, indexes in requested.items():
            topic = topics.topics.get(topic_name)
            if by_id and topic is None:
                continue  # cannot name a deleted topic by id
            out.append(api.build(
                topic_cls, name=topic_name, topic_id=topic.topic_id if topic else None,
                partitions=tuple(partition(topic_name, i) for i in indexes),
            ))
        return group_error, tuple(out)
    for t in wanted_topics:
        name: str | None
        if by_id:
            topic = topics.by_id.get(t.topic_id)
            name = topic.name if topic is not None else None
            missing = E.unknown_topic_id if topic is None else E.none
        else:
            name, missing = t.name, E.none
        out.append(api.build(
            topic_cls, name=name, topic_id=getattr(t, "topic_id", None),
            partitions=tuple(partition(name, i, missing) for i in t.partition_indexes),
        ))
    return group_error, tuple(out)


# -- OffsetDelete ---------------------------------------------------------------------


def handle_offset_delete(context: RequestContext, request: Any) -> Any:
    cls = api.response_type(api.OFFSET_DELETE, context.api_version)
    topic_cls = api.nested(cls, "OffsetDeleteResponseTopic")
    partition_cls = api.nested(cls, "OffsetDeleteResponsePartition")
    topics = context.broker.topics
    errors: dict[tuple[str, int], ErrorCode] = {}
    valid = []
    for t in request.topics:
        topic = topics.topics.get(t.name)
        for p in t.partitions:
            if topic is None or not 0 <= p.partition_index < len(topic.partitions):
                errors[t.name, p.partition_index] = E.unknown_topic_or_partition
            else:
                valid.append((t.name, p.partition_index))
    error, deleted = coordinator(context).delete_offsets(request.group_id, valid)
    if error is not E.none:
        return api.build(cls, error_code=error, topics=())
    errors.update(deleted)
    return api.build(cls, error_code=E.none, topics=tuple(
        api.build(topic_cls, name=t.name, partitions=tuple(
            api.build(partition_cls, partition_index=p.partition_index,
                      error_code=errors[t.name, p.partition_index])
            for p in t.partitions
        ))
        for t in request.topics
    ))


# -- ListGroups, DescribeGroups, DeleteGroups -------------------------------------------


def handle_list_groups(context: RequestContext, request: Any) -> Any:
    """Every group; v4+ filter by state, v5+ by type (all of kawa's are "classic")."""
    cls = api.response_type(api.LIST_GROUPS, context.api_version)
    listed_cls = api.nested(cls, "ListedGroup")
    states = {s.lower() for s in getattr(request, "states_filter", ())}
    types = {t.lower() for t in getattr(request, "types_filter", ())}
    groups = coordinator(context)
    if groups.closed:
        return api.build(cls, error_code=E.not_coordinator, groups=())
    if types and "classic" not in types:
        listed = []
    else:
        listed = [g for g in groups.list_groups() if not states or g.state.value.lower() in states]
    return api.build(cls, error_code=E.none, groups=tuple(
        api.build(listed_cls, group_id=g.group_id, protocol_type=g.protocol_type or "",
                  group_state=g.state.value, group_type="classic")
        for g in sorted(listed, key=lambda g: g.group_id)
    ))


def handle_describe_groups(context: RequestContext, request: Any) -> Any:
    """Members, with their metadata and assignment when the group is Stable (as
    Kafka). An unknown group is "Dead", or GROUP_ID_NOT_FOUND from v6 (KIP-1043)."""
    version = context.api_version
    cls = api.response_type(api.DESCRIBE_GROUPS, version)
    group_cls = api.nested(cls, "DescribedGroup")
    member_cls = api.nested(cls, "DescribedGroupMember")
    groups = coordinator(context)
    operations = (GROUP_OPERATIONS if getattr(request, "include_authorized_operations", False)
                  else OPERATIONS_NOT_ASKED)
    out = []
    for group_id in request.groups:
        group = groups.describe(group_id)
        if groups.closed or group is None:
            error, message = E.none, None
            if groups.closed:
                error, message = E.not_coordinator, "the broker is shutting down"
            elif version >= 6:
                error, message = E.group_id_not_found, f"group {group_id!r} does not exist"
            out.append(api.build(
                group_cls, error_code=error, error_message=message, group_id=group_id,
                group_state=GroupState.DEAD.value, protocol_type="", protocol_data="",
                members=(), authorized_operations=operations,
            ))
            continue
        stable = group.state is GroupState.STABLE
        out.append(api.build(
            group_cls,
            error_code=E.none,
            error_message=None,
            group_id=group_id,
            group_state=group.state.value,
            protocol_type=group.protocol_type or "",
            protocol_data=(group.protocol_name or "") if stable else "",
            authorized_operations=operations,
            members=tuple(
                api.build(
                    member_cls,
                    member_id=m.member_id,
                    group_instance_id=m.instance_id,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    member_metadata=m.metadata_for(group.protocol_name) if stable else b"",
                    member_assignment=m.assignment if stable else b"",
                )
                for m in group.members.values()
            ),
        ))
    return api.build(cls, groups=tuple(out))


def handle_delete_groups(context: RequestContext, request: Any) -> Any:
    cls = api.response_type(api.DELETE_GROUPS, context.api_version)
    result_cls = api.nested(cls, "DeletableGroupResult")
    groups = coordinator(context)
    now = now_ms()
    return api.build(cls, results=tuple(
        api.build(result_cls, group_id=group_id, error_code=groups.delete_group(group_id, now))
        for group_id in request.groups_names
    ))
