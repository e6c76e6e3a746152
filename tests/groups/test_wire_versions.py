"""Every version kawa advertises for the group APIs, round-tripped with kio.

Real clients only reach some versions (kafka-facts.md: librdkafka JoinGroup
v5, kafka-python v7, ...); here one flow per step index runs each API at
min(index, its max), so every advertised version is sent at least once and
its answer is checked.
"""

from __future__ import annotations

import struct
import uuid

import pytest
from confluent_kafka import TopicCollection
from confluent_kafka.admin import AdminClient
from kio.schema.errors import ErrorCode as E

from groups.helpers import create_topic, unique
from groups.wire import Wire, ms, request

pytestmark = pytest.mark.timeout(120)

FIND_COORDINATOR, JOIN, HEARTBEAT, LEAVE, SYNC = 10, 11, 12, 13, 14
OFFSET_COMMIT, OFFSET_FETCH, DESCRIBE, LIST, DELETE, OFFSET_DELETE = 8, 9, 15, 16, 42, 47
API_VERSIONS = 18

ADVERTISED = {
    OFFSET_COMMIT: (2, 10), OFFSET_FETCH: (1, 10), FIND_COORDINATOR: (0, 6), JOIN: (0, 9),
    HEARTBEAT: (0, 4), LEAVE: (0, 5), SYNC: (0, 5), DESCRIBE: (0, 6), LIST: (0, 5),
    DELETE: (0, 2), OFFSET_DELETE: (0, 0),
}
STEPS = range(11)  # step i runs each API at min(low + i, high): covers every version


def version(api_key: int, step: int) -> int:
    low, high = ADVERTISED[api_key]
    return min(low + step, high)


def subscription(topic: str) -> bytes:
    return struct.pack(">hih", 0, 1, len(topic)) + topic.encode() + struct.pack(">i", -1)


@pytest.fixture(scope="module")
def topic(group_broker):
    name = create_topic(group_broker.bootstrap, 2)
    admin = AdminClient({"bootstrap.servers": group_broker.bootstrap})
    description = admin.describe_topics(TopicCollection([name]))[name].result(30)
    tid = description.topic_id
    msb, lsb = tid.get_most_significant_bits(), tid.get_least_significant_bits()
    return name, uuid.UUID(int=((msb % 2**64) << 64) | (lsb % 2**64))


def test_api_versions_advertise_the_group_apis(group_broker):
    with Wire(group_broker.bootstrap) as wire:
        response = wire.call(request(API_VERSIONS, 3, client_software_name="t",
                                     client_software_version="1"))
    table = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
    for key, bounds in ADVERTISED.items():
        assert table[key] == bounds, key


@pytest.mark.parametrize("step", STEPS)
def test_group_apis_at_every_version(group_broker, topic, step):
    name, topic_uuid = topic
    group = unique(f"wire{step}")
    host, port = group_broker.bootstrap.rsplit(":", 1)
    with Wire(group_broker.bootstrap) as wire:
        # FindCoordinator: this broker, for one key (v0-3) or a batch (v4+).
        v = version(FIND_COORDINATOR, step)
        if v >= 4:
            found = wire.call(request(FIND_COORDINATOR, v, key_type=0,
                                      coordinator_keys=(group, "other")))
            assert [c.key for c in found.coordinators] == [group, "other"]
            assert all((c.error_code, c.host, c.port) == (E.none, host, int(port))
                       for c in found.coordinators)
        else:
            found = wire.call(request(FIND_COORDINATOR, v, key=group, key_type=0))
            assert (found.error_code, found.host, found.port) == (E.none, host, int(port))

        # JoinGroup: v4+ first answers MEMBER_ID_REQUIRED with the id to use.
        v = version(JOIN, step)
        protocol = request(JOIN, v, "JoinGroupRequestProtocol", name="range",
                           metadata=subscription(name))

        def join(member_id: str):
            return wire.call(request(
                JOIN, v, group_id=group, session_timeout=ms(6000), rebalance_timeout=ms(10000),
                member_id=member_id, group_instance_id=None, protocol_type="consumer",
                protocols=(protocol,), reason=None))

        joined = join("")
        if v >= 4:
            assert joined.error_code == E.member_id_required and joined.member_id
            joined = join(joined.member_id)
        assert joined.error_code == E.none, joined
        member = joined.member_id
        assert joined.generation_id == 1 and joined.leader == member
        assert joined.protocol_name == "range"
        assert [(m.member_id, m.metadata) for m in joined.members] == [(member, subscription(name))]

        # SyncGroup: the leader's assignment comes back untouched.
        v = version(SYNC, step)
        assignment = request(SYNC, v, "SyncGroupRequestAssignment", member_id=member,
                             assignment=b"opaque-assignment")
        synced = wire.call(request(SYNC, v, group_id=group, generation_id=1, member_id=member,
                                   group_instance_id=None, protocol_type="consumer",
                                   protocol_name="range", assignments=(assignment,)))
        assert (synced.error_code, synced.assignment) == (E.none, b"opaque-assignment")
        if v >= 5:
            assert (synced.protocol_type, synced.protocol_name) == ("consumer", "range")

        v = version(HEARTBEAT, step)
        beat = wire.call(request(HEARTBEAT, v, group_id=group, generation_id=1, member_id=member,
                                 group_instance_id=None))
        assert beat.error_code == E.none
        stale = wire.call(request(HEARTBEAT, v, group_id=group, generation_id=0, member_id=member,
                                  group_instance_id=None))
        assert stale.error_code == E.illegal_generation

        # OffsetCommit by name (v2-9) or topic id (v10).
        v = version(OFFSET_COMMIT, step)
        by_id = v >= 10

        def commit_topic(partitions):
            return request(OFFSET_COMMIT, v, "OffsetCommitRequestTopic", name=name,
                           topic_id=topic_uuid, partitions=tuple(
                               request(OFFSET_COMMIT, v, "OffsetCommitRequestPartition",
                                       partition_index=p, committed_offset=o,
                                       committed_leader_epoch=-1, committed_metadata=m)
                               for p, o, m in partitions))

        committed = wire.call(request(
            OFFSET_COMMIT, v, group_id=group, generation_id_or_member_epoch=1, member_id=member,
            group_instance_id=None, topics=(commit_topic([(0, 1, "m"), (7, 1, None)]),)))
        [t] = committed.topics
        assert (t.topic_id if by_id else t.name) == (topic_uuid if by_id else name)
        assert [(p.partition_index, p.error_code) for p in t.partitions] == [
            (0, E.none), (7, E.unknown_topic_or_partition)]
        stale = wire.call(request(
            OFFSET_COMMIT, v, group_id=group, generation_id_or_member_epoch=5, member_id=member,
            group_instance_id=None, topics=(commit_topic([(1, 1, None)]),)))
        assert stale.topics[0].partitions[0].error_code == E.illegal_generation

        # OffsetFetch: one group (v1-7) or several (v8+); -1 where nothing is committed.
        v = version(OFFSET_FETCH, step)
        if v >= 8:
            fetch_topic = request(OFFSET_FETCH, v, "OffsetFetchRequestTopics", name=name,
                                  topic_id=topic_uuid, partition_indexes=(0, 1))
            groups = tuple(
                request(OFFSET_FETCH, v, "OffsetFetchRequestGroup", group_id=g, member_id=None,
                        member_epoch=-1, topics=(fetch_topic,))
                for g in (group, "no-such-group")
            ) + (request(OFFSET_FETCH, v, "OffsetFetchRequestGroup", group_id=group,
                         member_id=None, member_epoch=-1, topics=None),)
            fetched = wire.call(request(OFFSET_FETCH, v, groups=groups, require_stable=True))
            mine, other, everything = fetched.groups
            assert [(p.partition_index, p.committed_offset, p.metadata)
                    for p in mine.topics[0].partitions] == [(0, 1, "m"), (1, -1, "")]
            assert [p.committed_offset for p in other.topics[0].partitions] == [-1, -1]
            assert [(p.partition_index, p.committed_offset)
                    for t in everything.topics for p in t.partitions] == [(0, 1)]
        else:
            fetch_topic = request(OFFSET_FETCH, v, "OffsetFetchRequestTopic", name=name,
                                  partition_indexes=(0, 1))
            fetched = wire.call(request(OFFSET_FETCH, v, group_id=group, topics=(fetch_topic,),
                                        require_stable=False))
            assert [(p.partition_index, p.committed_offset, p.error_code)
                    for p in fetched.topics[0].partitions] == [(0, 1, E.none), (1, -1, E.none)]
            if v >= 5:
                assert fetched.topics[0].partitions[0].committed_leader_epoch == -1
            if v >= 2:
                everything = wire.call(request(OFFSET_FETCH, v, group_id=group, topics=None))
                assert [(t.name, [p.committed_offset for p in t.partitions])
                        for t in everything.topics] == [(name, [1])]

        # DescribeGroups: members with client id, host and assignment while Stable.
        v = version(DESCRIBE, step)
        described = wire.call(request(DESCRIBE, v, groups=(group, "no-such-group"),
                                      include_authorized_operations=True))
        mine, unknown = described.groups
        assert (mine.error_code, mine.group_state, mine.protocol_type, mine.protocol_data) == (
            E.none, "Stable", "consumer", "range")
        [m] = mine.members
        assert (m.member_id, m.client_id, m.client_host, m.member_assignment) == (
            member, "kawa-groups-test", "/127.0.0.1", b"opaque-assignment")
        assert m.member_metadata == subscription(name)
        if v >= 3:
            assert mine.authorized_operations == (1 << 3) | (1 << 6) | (1 << 8)
        assert unknown.group_state == "Dead"
        assert unknown.error_code == (E.group_id_not_found if v >= 6 else E.none)

        # ListGroups (v4+ filter by state, v5+ by type).
        v = version(LIST, step)
        listed = wire.call(request(LIST, v, states_filter=(), types_filter=()))
        assert (group, "consumer") in [(g.group_id, g.protocol_type) for g in listed.groups]
        if v >= 4:
            stable = wire.call(request(LIST, v, states_filter=("stable",), types_filter=()))
            assert group in [g.group_id for g in stable.groups]
            empty = wire.call(request(LIST, v, states_filter=("Empty",), types_filter=()))
            assert group not in [g.group_id for g in empty.groups]
        if v >= 5:
            other = wire.call(request(LIST, v, states_filter=(), types_filter=("consumer",)))
            assert group not in [g.group_id for g in other.groups]

        # DeleteGroups refuses a group with members.
        v_delete = version(DELETE, step)
        refused = wire.call(request(DELETE, v_delete, groups_names=(group,)))
        assert refused.results[0].error_code == E.non_empty_group

        # OffsetDelete: refused for a subscribed topic while the member is in.
        od_topic = request(OFFSET_DELETE, 0, "OffsetDeleteRequestTopic", name=name, partitions=(
            request(OFFSET_DELETE, 0, "OffsetDeleteRequestPartition", partition_index=0),))
        subscribed = wire.call(request(OFFSET_DELETE, 0, group_id=group, topics=(od_topic,)))
        assert subscribed.topics[0].partitions[0].error_code == E.group_subscribed_to_topic

        # LeaveGroup: one member (v0-2) or a batch (v3+).
        v = version(LEAVE, step)
        if v >= 3:
            identity = request(LEAVE, v, "MemberIdentity", member_id=member,
                               group_instance_id=None, reason="done")
            ghost = request(LEAVE, v, "MemberIdentity", member_id="ghost",
                            group_instance_id=None, reason=None)
            left = wire.call(request(LEAVE, v, group_id=group, members=(identity, ghost)))
            assert left.error_code == E.none
            assert [(m.member_id, m.error_code) for m in left.members] == [
                (member, E.none), ("ghost", E.unknown_member_id)]
        else:
            left = wire.call(request(LEAVE, v, group_id=group, member_id=member))
            assert left.error_code == E.none

        # Empty now: offsets can be deleted, then the group.
        deleted = wire.call(request(OFFSET_DELETE, 0, group_id=group, topics=(od_topic,)))
        assert (deleted.error_code, deleted.topics[0].partitions[0].error_code) == (E.none, E.none)
        gone = wire.call(request(DELETE, v_delete, groups_names=(group, "no-such-group")))
        assert [(r.group_id, r.error_code) for r in gone.results] == [
            (group, E.none), ("no-such-group", E.group_id_not_found)]


def test_static_member_over_the_wire(group_broker):
    """JoinGroup v5+ with group.instance.id: a restart (no member id) keeps the
    generation and the assignment, and fences the old member id."""
    name = "static-wire"
    group = unique("static")
    with Wire(group_broker.bootstrap) as wire:
        protocol = request(JOIN, 7, "JoinGroupRequestProtocol", name="range",
                           metadata=subscription(name))

        def join(member_id: str):
            return wire.call(request(JOIN, 7, group_id=group, session_timeout=ms(6000),
                                     rebalance_timeout=ms(10000), member_id=member_id,
                                     group_instance_id="instance-1", protocol_type="consumer",
                                     protocols=(protocol,)))

        first = join("")  # static members get no MEMBER_ID_REQUIRED
        assert first.error_code == E.none and first.leader == first.member_id
        assignment = request(SYNC, 5, "SyncGroupRequestAssignment", member_id=first.member_id,
                             assignment=b"mine")
        wire.call(request(SYNC, 5, group_id=group, generation_id=first.generation_id,
                          member_id=first.member_id, group_instance_id="instance-1",
                          protocol_type="consumer", protocol_name="range",
                          assignments=(assignment,)))
        again = join("")
        assert again.error_code == E.none and again.member_id != first.member_id
        assert again.generation_id == first.generation_id
        synced = wire.call(request(SYNC, 5, group_id=group, generation_id=again.generation_id,
                                   member_id=again.member_id, group_instance_id="instance-1",
                                   protocol_type="consumer", protocol_name="range",
                                   assignments=()))
        assert synced.assignment == b"mine"
        fenced = wire.call(request(HEARTBEAT, 4, group_id=group,
                                   generation_id=first.generation_id,
                                   member_id=first.member_id, group_instance_id="instance-1"))
        assert fenced.error_code == E.fenced_instance_id
