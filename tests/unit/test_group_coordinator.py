"""The group coordinator state machine, driven by a fake clock (no sockets, no sleeps)."""

from __future__ import annotations

import itertools
import sqlite3
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from kio.schema.errors import ErrorCode as E

from kawa.broker.groups.coordinator import GroupConfig, GroupCoordinator, OffsetToCommit
from kawa.broker.groups.state import (
    TRANSITIONS,
    Event,
    GroupState,
    JoinRequest,
    JoinResult,
    LogicError,
    SyncResult,
    next_state,
    parse_subscription,
)
from kawa.metadata.sqlite import _MIGRATIONS, SqliteMetadataStore
from kawa.metadata.store import CommittedOffset

S = GroupState
SESSION = 10_000
REBALANCE = 30_000


def subscription(*topics: str) -> bytes:
    """ConsumerProtocolSubscription v1 (topics, null user data, no owned partitions)."""
    out = struct.pack(">hi", 1, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1) + struct.pack(">i", 0)


RANGE = (("range", subscription("t")),)


class FakeStore:
    schema_version = 2

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, int], CommittedOffset] = {}
        self.fail = False

    def commit_offsets(self, offsets: Sequence[CommittedOffset]) -> None:
        if self.fail:
            raise OSError("disk full")
        for o in offsets:
            self.rows[o.group_id, o.topic, o.partition] = o

    def list_committed_offsets(self) -> list[CommittedOffset]:
        return list(self.rows.values())

    def delete_committed_offsets(
        self, group_id: str, partitions: Iterable[tuple[str, int]] | None = None
    ) -> None:
        if partitions is None:
            self.rows = {k: v for k, v in self.rows.items() if k[0] != group_id}
        else:
            for t, p in partitions:
                self.rows.pop((group_id, t, p), None)


class Box:
    """Collects the replies of one JoinGroup/SyncGroup call."""

    def __init__(self) -> None:
        self.replies: list[Any] = []

    def __call__(self, result: Any) -> None:
        self.replies.append(result)

    @property
    def done(self) -> bool:
        return bool(self.replies)

    @property
    def result(self) -> Any:
        assert len(self.replies) == 1, f"expected one reply, got {self.replies}"
        return self.replies[0]


class Harness:
    def __init__(self, store: Any = None, **config: Any) -> None:
        config.setdefault("initial_rebalance_delay_ms", 100)
        self.now = 1_000_000
        self.store = store if store is not None else FakeStore()
        ids = itertools.count(1)
        self.c = GroupCoordinator(GroupConfig(**config), self.store,
                                  new_member_id=lambda prefix: f"{prefix}-{next(ids)}")

    def advance(self, ms: int) -> None:
        self.now += ms
        self.c.tick(self.now)

    def join(self, member_id: str = "", group: str = "g", instance: str | None = None,
             protocols: tuple[tuple[str, bytes], ...] = RANGE, session: int = SESSION,
             rebalance: int = REBALANCE, require_id: bool = True, skip: bool = False,
             protocol_type: str = "consumer") -> Box:
        box = Box()
        self.c.join(JoinRequest(group, member_id, instance, "client", "/127.0.0.1", session,
                                rebalance, protocol_type, protocols, require_id, skip),
                    self.now, box)
        return box

    def new_member(self, group: str = "g", **kw: Any) -> tuple[str, Box]:
        """JoinGroup v4+: MEMBER_ID_REQUIRED, then the join with that id."""
        first = self.join(group=group, **kw).result
        assert first.error is E.member_id_required
        return first.member_id, self.join(first.member_id, group=group, **kw)

    def sync(self, member_id: str, generation: int, assignments: dict[str, bytes] | None = None,
             group: str = "g", instance: str | None = None) -> Box:
        box = Box()
        self.c.sync(group, member_id, instance, generation, None, None, assignments or {},
                    self.now, box)
        return box

    def heartbeat(self, member_id: str, generation: int, group: str = "g",
                  instance: str | None = None) -> E:
        return self.c.heartbeat(group, member_id, instance, generation, self.now)

    def commit(self, member_id: str, generation: int, offset: int = 5, group: str = "g",
               instance: str | None = None, partition: int = 0) -> E:
        return self.c.commit_offsets(group, member_id, instance, generation,
                                     [OffsetToCommit("t", partition, offset)], self.now)

    def state(self, group: str = "g") -> GroupState:
        return self.c.groups[group].state

    def stable_group(self, n: int, group: str = "g", **kw: Any) -> tuple[list[str], int]:
        """n members joined and synced; returns (member ids, generation)."""
        joins = [self.new_member(group=group, **kw) for _ in range(n)]
        for _ in range(n + 1):  # the initial delay, extended once per extra member
            if all(box.done for _, box in joins):
                break
            self.advance(self.c.config.initial_rebalance_delay_ms)
        results = [box.result for _, box in joins]
        assert all(r.error is E.none for r in results), results
        generation = results[0].generation_id
        leader = results[0].leader_id
        ids = [m for m, _ in joins]
        boxes = [self.sync(m, generation, group=group) for m in ids if m != leader]
        self.sync(leader, generation, {m: m.encode() for m in ids}, group=group)
        assert all(b.result.error is E.none for b in boxes)
        assert self.state(group) is S.STABLE
        return ids, generation


# -- the state table -------------------------------------------------------------------


def test_transition_table_is_the_documented_one() -> None:
    assert TRANSITIONS == {
        S.EMPTY: {Event.REBALANCE: S.PREPARING_REBALANCE, Event.DELETE: S.DEAD},
        S.PREPARING_REBALANCE: {Event.JOIN_COMPLETE: S.COMPLETING_REBALANCE,
                                Event.ALL_GONE: S.EMPTY},
        S.COMPLETING_REBALANCE: {Event.LEADER_SYNC: S.STABLE,
                                 Event.REBALANCE: S.PREPARING_REBALANCE},
        S.STABLE: {Event.REBALANCE: S.PREPARING_REBALANCE},
        S.DEAD: {},
    }
    for state in S:
        for event in Event:
            if event in TRANSITIONS[state]:
                assert next_state(state, event) is TRANSITIONS[state][event]
            else:
                with pytest.raises(LogicError):
                    next_state(state, event)


# -- JoinGroup ----------------------------------------------------------------------------


def test_member_id_required_then_join_completes_generation_one() -> None:
    h = Harness(initial_rebalance_delay_ms=0)
    first = h.join().result
    assert first.error is E.member_id_required and first.member_id.startswith("client-")
    assert h.state() is S.EMPTY and h.c.groups["g"].pending
    box = h.join(first.member_id)
    result = box.result
    assert result.error is E.none
    assert result.generation_id == 1 and result.leader_id == first.member_id
    assert result.protocol_name == "range" and result.protocol_type == "consumer"
    assert [m.member_id for m in result.members] == [first.member_id]
    assert h.state() is S.COMPLETING_REBALANCE


def test_join_before_v4_gets_an_id_at_once() -> None:
    h = Harness(initial_rebalance_delay_ms=0)
    result = h.join(require_id=False).result
    assert result.error is E.none and result.member_id and result.generation_id == 1


def test_initial_delay_waits_and_extends_while_members_arrive() -> None:
    h = Harness(initial_rebalance_delay_ms=3000)
    _, b1 = h.new_member()
    assert h.state() is S.PREPARING_REBALANCE and not b1.done
    h.advance(2000)
    _, b2 = h.new_member()
    h.advance(1000)  # first delay over, but a member arrived: wait another delay
    assert not b1.done and not b2.done
    h.advance(2999)
    assert not b1.done
    h.advance(1)
    assert b1.result.generation_id == b2.result.generation_id == 1
    assert len(b1.result.members) == 2 and b2.result.members == ()


def test_initial_delay_is_bounded_by_the_rebalance_timeout() -> None:
    h = Harness(initial_rebalance_delay_ms=3000)
    _, b1 = h.new_member(rebalance=7000)
    for _ in range(5):  # a new member every 2.5 s would extend forever without the bound
        h.advance(2500)
        if b1.done:
            break
        h.new_member(rebalance=7000)
    assert b1.done and h.now - 1_000_000 <= 7500


def test_rejoin_with_other_protocols_or_by_leader_rebalances_follower_does_not() -> None:
    h = Harness()
    (a, b), generation = h.stable_group(2)
    leader = h.c.groups["g"].leader_id
    follower = b if leader == a else a
    same = h.join(follower)  # a follower rejoining unchanged: the current generation
    assert same.result.generation_id == generation and same.result.members == ()
    assert h.state() is S.STABLE
    h.join(leader)
    assert h.state() is S.PREPARING_REBALANCE
    h.join(follower, protocols=(("roundrobin", subscription("t")), ("range", b"")))
    assert h.state() is S.COMPLETING_REBALANCE


def test_protocol_vote_picks_the_common_preference() -> None:
    h = Harness(initial_rebalance_delay_ms=1000)
    h.new_member(protocols=(("roundrobin", b""), ("range", b"")))
    h.new_member(protocols=(("range", b""), ("roundrobin", b"")))
    _, b3 = h.new_member(protocols=(("range", b""),))
    h.advance(1000)
    h.advance(1000)
    assert b3.result.protocol_name == "range"


def test_join_errors() -> None:
    h = Harness(members_max=2, groups_max=2)
    assert h.join(group="").result.error is E.invalid_group_id
    assert h.join(session=10).result.error is E.invalid_session_timeout
    assert h.join(protocols=()).result.error is E.inconsistent_group_protocol
    assert h.join("ghost", group="other").result.error is E.unknown_member_id
    h.stable_group(1)
    assert h.join(protocol_type="connect").result.error is E.inconsistent_group_protocol
    assert h.join(protocols=(("sticky", b""),)).result.error is E.inconsistent_group_protocol
    assert h.join("not-a-member").result.error is E.unknown_member_id
    h.new_member()  # second member (pending, then joined)
    assert h.join().result.error is E.group_max_size_reached
    h.stable_group(1, group="g2")
    assert h.join(group="g3").result.error is E.policy_violation


# -- SyncGroup ----------------------------------------------------------------------------


def test_followers_wait_for_the_leaders_assignment() -> None:
    h = Harness(initial_rebalance_delay_ms=100)
    a, ja = h.new_member()
    b, _ = h.new_member()
    h.advance(100)
    assert not ja.done  # a second member arrived during the delay: extended once
    h.advance(100)
    generation, leader = ja.result.generation_id, ja.result.leader_id
    follower = b if leader == a else a
    waiting = h.sync(follower, generation)
    assert not waiting.done
    assert h.heartbeat(follower, generation) is E.none  # heartbeats are fine meanwhile
    lead = h.sync(leader, generation, {a: b"A", b: b"B"})
    assert h.state() is S.STABLE
    assert {lead.result.assignment, waiting.result.assignment} == {b"A", b"B"}
    assert waiting.result.protocol_name == "range"
    late = h.sync(follower, generation)  # a repeated sync in Stable: answered at once
    assert late.result.assignment == waiting.result.assignment


def test_sync_errors() -> None:
    h = Harness()
    assert h.sync("x", 1).result.error is E.unknown_member_id
    (m,), generation = h.stable_group(1)
    assert h.sync("x", generation).result.error is E.unknown_member_id
    assert h.sync(m, generation + 1).result.error is E.illegal_generation
    box = Box()
    h.c.sync("g", m, None, generation, "consumer", "roundrobin", {}, h.now, box)
    assert box.result.error is E.inconsistent_group_protocol
    h.new_member()
    assert h.sync(m, generation).result.error is E.rebalance_in_progress


def test_member_that_never_syncs_is_removed_after_the_rebalance_timeout() -> None:
    h = Harness(initial_rebalance_delay_ms=100)
    a, ja = h.new_member(rebalance=5000)
    b, _ = h.new_member(rebalance=5000)
    h.advance(200)
    generation, leader = ja.result.generation_id, ja.result.leader_id
    follower = b if leader == a else a
    waiting = h.sync(follower, generation)
    h.advance(4999)
    assert not waiting.done
    h.advance(1)  # the leader never sent its assignment
    assert waiting.result.error is E.rebalance_in_progress
    assert leader not in h.c.groups["g"].members
    assert h.state() is S.PREPARING_REBALANCE


# -- Heartbeat and sessions ---------------------------------------------------------------


def test_heartbeat_answers_per_state() -> None:
    h = Harness(initial_rebalance_delay_ms=0)
    assert h.heartbeat("m", 0) is E.unknown_member_id
    assert h.heartbeat("m", 0, group="") is E.invalid_group_id
    a, ja = h.new_member()
    generation = ja.result.generation_id
    assert h.state() is S.COMPLETING_REBALANCE
    assert h.heartbeat(a, generation) is E.none
    assert h.heartbeat(a, generation - 1) is E.illegal_generation
    assert h.heartbeat("other", generation) is E.unknown_member_id
    h.sync(a, generation, {a: b""})
    assert h.heartbeat(a, generation) is E.none
    h.new_member()
    assert h.state() is S.PREPARING_REBALANCE
    assert h.heartbeat(a, generation) is E.rebalance_in_progress


def test_session_expiry_removes_the_member_and_rebalances() -> None:
    h = Harness()
    (a, b), generation = h.stable_group(2)
    h.advance(SESSION // 2)
    assert h.heartbeat(a, generation) is E.none  # b stays silent
    h.advance(SESSION // 2 - 1)
    assert h.heartbeat(a, generation) is E.none and b in h.c.groups["g"].members
    h.advance(1)
    assert b not in h.c.groups["g"].members
    assert h.heartbeat(a, generation) is E.rebalance_in_progress
    rejoined = h.join(a).result
    assert rejoined.generation_id == generation + 1
    assert [m.member_id for m in rejoined.members] == [a]
    assert h.heartbeat(b, generation) is E.unknown_member_id


def test_a_member_waiting_for_its_join_answer_does_not_expire() -> None:
    h = Harness()
    (a, b), generation = h.stable_group(2, rebalance=60_000)
    h.join(a)  # a waits for b to rejoin; b keeps heartbeating but does not rejoin
    for _ in range(5):
        h.advance(SESSION - 1)
        assert h.heartbeat(b, generation) is E.rebalance_in_progress
    assert a in h.c.groups["g"].members


def test_rebalance_timeout_removes_members_that_did_not_rejoin() -> None:
    h = Harness()
    (a, b), generation = h.stable_group(2, rebalance=20_000)
    c, jc = h.new_member(rebalance=20_000)
    ja = h.join(a, rebalance=20_000)
    for _ in range(3):
        h.advance(SESSION - 1)
        h.heartbeat(b, generation)  # alive, but it does not rejoin
    assert ja.result.generation_id == generation + 1 and jc.result.error is E.none
    assert set(h.c.groups["g"].members) == {a, c}
    assert h.heartbeat(b, generation) is E.unknown_member_id


def test_pending_member_id_lapses_and_an_empty_group_is_forgotten() -> None:
    h = Harness()
    first = h.join().result
    assert first.error is E.member_id_required
    h.advance(SESSION)
    assert "g" not in h.c.groups
    assert h.join(first.member_id).result.error is E.unknown_member_id


# -- LeaveGroup ---------------------------------------------------------------------------


def test_leave_rebalances_and_last_leave_empties_the_group() -> None:
    h = Harness()
    (a, b), generation = h.stable_group(2)
    assert h.c.leave("g", [(b, None)], h.now) == (E.none, [E.none])
    assert h.state() is S.PREPARING_REBALANCE
    assert h.join(a).result.generation_id == generation + 1
    assert h.c.leave("g", [(a, None), ("ghost", None)], h.now) == (
        E.none, [E.none, E.unknown_member_id])
    assert h.state() is S.EMPTY and h.c.groups["g"].generation == generation + 2
    assert h.c.leave("nope", [("x", None)], h.now) == (E.none, [E.unknown_member_id])
    assert h.c.leave("", [("x", None)], h.now)[0] is E.invalid_group_id


def test_leaving_member_waiting_for_join_gets_unknown_member() -> None:
    h = Harness()
    (a, _), _ = h.stable_group(2)
    ja = h.join(a)
    h.c.leave("g", [(a, None)], h.now)
    assert ja.result.error is E.unknown_member_id


# -- static membership --------------------------------------------------------------------


def test_static_member_restart_keeps_assignment_without_rebalance() -> None:
    h = Harness()
    joins = [h.join(instance=f"i{k}") for k in range(2)]  # static: no MEMBER_ID_REQUIRED
    h.advance(200)
    ids = [b.result.member_id for b in joins]
    generation, leader = joins[0].result.generation_id, joins[0].result.leader_id
    follower_index = 1 if ids[0] == leader else 0
    follower, instance = ids[follower_index], f"i{follower_index}"
    h.sync(follower, generation, instance=instance)
    h.sync(leader, generation, {ids[0]: b"zero", ids[1]: b"one"})
    assert h.state() is S.STABLE
    # The follower's process restarts: a new JoinGroup, same instance id, no member id.
    h.advance(SESSION // 2)
    again = h.join(instance=instance).result
    assert again.error is E.none and again.member_id != follower
    assert again.generation_id == generation and again.leader_id == leader
    assert h.state() is S.STABLE
    synced = h.sync(again.member_id, generation, instance=instance).result
    assert synced.assignment == (b"zero" if follower_index == 0 else b"one")
    # The old incarnation is fenced.
    assert h.heartbeat(follower, generation, instance=instance) is E.fenced_instance_id
    assert h.commit(follower, generation, instance=instance) is E.fenced_instance_id
    assert h.join(follower, instance=instance).result.error is E.fenced_instance_id
    assert h.c.leave("g", [(follower, instance)], h.now) == (E.none, [E.fenced_instance_id])
    assert h.heartbeat(again.member_id, generation, instance=instance) is E.none


def test_static_leader_restart_before_and_after_join_group_v9() -> None:
    h = Harness(initial_rebalance_delay_ms=0)
    first = h.join(instance="lead").result
    h.sync(first.member_id, 1, {first.member_id: b"all"}, instance="lead")
    old = h.join(instance="lead").result  # v5..v8: told the old id leads, so it just syncs
    assert old.generation_id == 1 and old.leader_id == first.member_id and old.members == ()
    assert h.sync(old.member_id, 1, instance="lead").result.assignment == b"all"
    new = h.join(instance="lead", skip=True).result  # v9: it leads, but skips the assignment
    assert new.leader_id == new.member_id and new.skip_assignment and len(new.members) == 1
    assert h.state() is S.STABLE


def test_static_member_rejoining_during_completing_rebalance_restarts_it() -> None:
    h = Harness(initial_rebalance_delay_ms=0)
    a = h.join(instance="a", require_id=False).result
    assert h.state() is S.COMPLETING_REBALANCE
    box = h.join(instance="a")
    assert h.state() is S.COMPLETING_REBALANCE  # a new round completed at once: only member
    assert box.result.generation_id == a.generation_id + 1


def test_static_member_expires_like_any_other() -> None:
    h = Harness(initial_rebalance_delay_ms=0)
    joined = h.join(instance="s").result
    h.sync(joined.member_id, joined.generation_id, {}, instance="s")
    h.advance(SESSION)
    assert h.state() is S.EMPTY and not h.c.groups["g"].static_members


def test_leave_by_instance_id_alone() -> None:
    h = Harness(initial_rebalance_delay_ms=0)
    joined = h.join(instance="s").result
    assert h.c.leave("g", [("", "s")], h.now) == (E.none, [E.none])
    assert h.c.leave("g", [("", "s")], h.now) == (E.none, [E.unknown_member_id])
    assert joined.member_id not in h.c.groups["g"].members


# -- offsets ------------------------------------------------------------------------------


def test_commit_validation() -> None:
    h = Harness(initial_rebalance_delay_ms=0)
    assert h.commit("m", 3, group="unknown") is E.illegal_generation
    assert h.commit("", -1, group="simple") is E.none  # no group management: allowed
    assert h.c.groups["simple"].state is S.EMPTY
    a, ja = h.new_member()
    generation = ja.result.generation_id
    assert h.commit(a, generation) is E.rebalance_in_progress  # CompletingRebalance
    h.sync(a, generation, {a: b""})
    assert h.commit(a, generation) is E.none
    assert h.commit("", -1) is E.unknown_member_id  # simple commit while members exist
    assert h.commit("other", generation) is E.unknown_member_id
    assert h.commit(a, generation - 1) is E.illegal_generation
    h.new_member()
    assert h.state() is S.PREPARING_REBALANCE
    assert h.commit(a, generation, offset=9) is E.none  # revocation-time commit is allowed
    assert h.c.fetch_offsets("g")[("t", 0)].offset == 9


def test_commit_store_failure_is_retriable_and_not_cached() -> None:
    h = Harness()
    h.store.fail = True
    assert h.commit("", -1) is E.coordinator_not_available
    assert h.c.fetch_offsets("g") == {}


def test_offsets_persist_and_reload(tmp_path: Any) -> None:
    store = SqliteMetadataStore(tmp_path / "metadata.sqlite")
    h = Harness(store=store)
    (m,), generation = h.stable_group(1)
    assert h.commit(m, generation, offset=42, partition=3) is E.none
    h.c.commit_offsets("g", m, None, generation,
                       [OffsetToCommit("u", 0, 7, leader_epoch=2, metadata="meta")], h.now)
    store.close()
    reopened = SqliteMetadataStore(tmp_path / "metadata.sqlite")
    fresh = GroupCoordinator(GroupConfig(), reopened)
    assert fresh.load() == 2
    offsets = fresh.fetch_offsets("g")
    assert offsets[("t", 3)].offset == 42
    assert (offsets[("u", 0)].leader_epoch, offsets[("u", 0)].metadata) == (2, "meta")
    assert fresh.groups["g"].state is S.EMPTY
    reopened.close()


def test_sqlite_migration_from_schema_1_keeps_topics(tmp_path: Any) -> None:
    path = tmp_path / "metadata.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in _MIGRATIONS[1].split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("INSERT INTO topics VALUES ('old', '00000000-0000-0000-0000-000000000001', 2, '{}')")
    db.execute("PRAGMA user_version = 1")
    db.close()
    store = SqliteMetadataStore(path)
    assert [t.name for t in store.list_topics()] == ["old"]
    store.commit_offsets([CommittedOffset("g", "old", 1, 10)])
    store.commit_offsets([CommittedOffset("g", "old", 1, 11), CommittedOffset("g", "old", 0, 3)])
    assert {(o.partition, o.offset) for o in store.list_committed_offsets()} == {(0, 3), (1, 11)}
    store.delete_committed_offsets("g", [("old", 0)])
    assert [o.partition for o in store.list_committed_offsets()] == [1]
    store.delete_committed_offsets("g")
    assert store.list_committed_offsets() == []
    store.close()


def test_offsets_expire_for_empty_groups_only() -> None:
    retention = 60_000
    h = Harness(offsets_retention_ms=retention)
    assert h.commit("", -1, group="simple") is E.none
    (m,), generation = h.stable_group(1, group="active")
    assert h.commit(m, generation, group="active") is E.none
    h.advance(retention)
    assert h.c.expire_offsets(h.now) == 1
    assert "simple" not in h.c.groups  # nothing left: forgotten
    assert h.c.fetch_offsets("active")  # members: kept
    h.c.leave("active", [(m, None)], h.now)  # empty from now: a full retention from here
    h.advance(retention - 1)
    assert h.c.expire_offsets(h.now) == 0
    h.advance(1)
    assert h.c.expire_offsets(h.now) == 1 and "active" not in h.c.groups


def test_offsets_of_deleted_topics_are_dropped() -> None:
    h = Harness()
    h.c.commit_offsets("g", "", None, -1, [OffsetToCommit("t", 0, 1), OffsetToCommit("gone", 0, 1)],
                       h.now)
    assert h.c.expire_offsets(h.now, topic_exists=lambda name: name == "t") == 1
    assert set(h.c.fetch_offsets("g")) == {("t", 0)}


def test_delete_group() -> None:
    h = Harness()
    assert h.c.delete_group("nope", h.now) is E.group_id_not_found
    h.stable_group(1)
    assert h.c.delete_group("g", h.now) is E.non_empty_group
    h.commit("", -1, group="idle")
    assert h.c.delete_group("idle", h.now) is E.none
    assert "idle" not in h.c.groups and not h.store.rows


def test_offset_delete_refuses_subscribed_topics() -> None:
    h = Harness()
    (m,), generation = h.stable_group(1)  # subscribed to "t"
    h.c.commit_offsets("g", m, None, generation,
                       [OffsetToCommit("t", 0, 1), OffsetToCommit("other", 0, 1)], h.now)
    error, errors = h.c.delete_offsets("g", [("t", 0), ("other", 0)])
    assert error is E.none
    assert errors == {("t", 0): E.group_subscribed_to_topic, ("other", 0): E.none}
    assert set(h.c.fetch_offsets("g")) == {("t", 0)}
    assert h.c.delete_offsets("nope", [("t", 0)])[0] is E.group_id_not_found


def test_close_answers_waiting_requests() -> None:
    h = Harness(initial_rebalance_delay_ms=1000)
    _, box = h.new_member()
    h.c.close()
    assert box.result.error is E.not_coordinator
    assert h.join().result.error is E.not_coordinator
    assert h.commit("", -1) is E.not_coordinator


def test_parse_subscription() -> None:
    assert parse_subscription(subscription("a", "b")) == {"a", "b"}
    assert parse_subscription(b"\x00") is None
    assert parse_subscription(struct.pack(">hi", 0, 5)) is None


def test_reply_types() -> None:
    assert JoinResult(E.none).generation_id == -1 and SyncResult(E.none).assignment == b""
