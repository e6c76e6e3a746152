"""The group coordinator: Kafka's classic consumer-group protocol, sans IO.

Plain methods driven by the broker's handlers, with the time passed in
(``now_ms``, wall-clock milliseconds) and ``tick(now_ms)`` called
periodically to fire deadlines: sessions, rebalance timeouts, the initial
rebalance delay, members that never collected their assignment, and ids given
out with MEMBER_ID_REQUIRED that never came back. The state machine and its
rules are in ``kawa.broker.groups.state``; this module applies them.

JoinGroup and SyncGroup may have to wait for other members, so they answer
through a ``reply`` callback: called before the method returns when the
answer is known, or later from whichever call completes the round (another
member's JoinGroup, the leader's SyncGroup, a LeaveGroup, ``tick``). A reply
callback must not call back into the coordinator. Every other method returns
its answer.

Committed offsets are written through to the metadata store before the
commit is acknowledged, and cached here per group; the cache is loaded from
the store at start. Group membership is not persisted: after a restart,
members rejoin (their heartbeats get UNKNOWN_MEMBER_ID) and resume from the
committed offsets.

Bounds: ``members_max`` members (plus ids pending MEMBER_ID_REQUIRED) per
group, ``groups_max`` groups; offset metadata longer than
``offset_metadata_bytes_max`` is refused by the OffsetCommit handler.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from kio.schema.errors import ErrorCode

from kawa.broker.groups.offsets import GroupOffsets, OffsetToCommit
from kawa.broker.groups.state import (
    Event,
    Group,
    GroupConfig,
    GroupState,
    JoinReply,
    JoinRequest,
    JoinResult,
    Member,
    SyncReply,
    SyncResult,
    fire,
)
from kawa.metadata.store import MetadataStore

__all__ = ["GroupConfig", "GroupCoordinator", "OffsetToCommit"]

log = logging.getLogger("kawa.groups")

E = ErrorCode
S = GroupState


def _default_member_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


class GroupCoordinator(GroupOffsets):
    def __init__(
        self,
        config: GroupConfig,
        store: MetadataStore,
        new_member_id: Callable[[str], str] = _default_member_id,
    ) -> None:
        self.config = config
        self.store = store
        self.groups: dict[str, Group] = {}
        self.closed = False
        self._new_member_id = new_member_id
        # (deadline_ms, seq, kind, group, subject): one live entry per armed
        # deadline; entries whose deadline no longer matches are skipped.
        self._timers: list[tuple[int, int, str, Group, Any]] = []
        self._seq = itertools.count()

    # -- start and stop ---------------------------------------------------------

    def load(self) -> int:
        """Build the offset cache from the store; returns how many offsets were loaded."""
        offsets = self.store.list_committed_offsets()
        for o in offsets:
            group = self.groups.get(o.group_id)
            if group is None:
                group = self.groups[o.group_id] = Group(o.group_id)
            group.offsets[(o.topic, o.partition)] = o
        return len(offsets)

    def close(self) -> None:
        """Answer every waiting JoinGroup/SyncGroup with NOT_COORDINATOR (clients
        look for the coordinator again) and refuse further requests."""
        self.closed = True
        for group in self.groups.values():
            for m in group.members.values():
                self._answer_join(m, JoinResult(E.not_coordinator, member_id=m.member_id))
                self._answer_sync(m, SyncResult(E.not_coordinator))

    # -- JoinGroup ----------------------------------------------------------------

    def join(self, req: JoinRequest, now_ms: int, reply: JoinReply) -> None:
        def fail(error: ErrorCode) -> None:
            reply(JoinResult(error, member_id=req.member_id))

        if self.closed:
            return fail(E.not_coordinator)
        if not req.group_id:
            return fail(E.invalid_group_id)
        if not (self.config.min_session_timeout_ms <= req.session_timeout_ms
                <= self.config.max_session_timeout_ms):
            return fail(E.invalid_session_timeout)
        if not req.protocol_type or not req.protocols:
            return fail(E.inconsistent_group_protocol)
        group = self.groups.get(req.group_id)
        if group is None:
            if req.member_id:
                return fail(E.unknown_member_id)
            if len(self.groups) >= self.config.groups_max:
                log.warning("refusing group %r: groups_max (%d) reached", req.group_id,
                            self.config.groups_max)
                return fail(E.policy_violation)
            group = self.groups[req.group_id] = Group(req.group_id, state_since_ms=now_ms)
        if not group.supports(req.protocol_type, [name for name, _ in req.protocols]):
            return fail(E.inconsistent_group_protocol)
        if req.member_id:
            self._join_known(group, req, now_ms, reply)
        else:
            self._join_new(group, req, now_ms, reply)

    def _join_new(self, group: Group, req: JoinRequest, now_ms: int, reply: JoinReply) -> None:
        static_id = group.static_members.get(req.instance_id) if req.instance_id else None
        if static_id is None and group.size() >= self.config.members_max:
            reply(JoinResult(E.group_max_size_reached))
            return
        new_id = self._new_member_id(req.instance_id or req.client_id)
        if static_id is not None:
            self._replace_static_member(group, static_id, new_id, req, now_ms, reply)
        elif req.instance_id or not req.require_known_member_id:
            self._add_member(group, new_id, req, now_ms, reply)
        else:
            deadline = now_ms + req.session_timeout_ms
            group.pending[new_id] = deadline
            self._arm(deadline, "pending", group, new_id)
            reply(JoinResult(E.member_id_required, member_id=new_id))

    def _join_known(self, group: Group, req: JoinRequest, now_ms: int, reply: JoinReply) -> None:
        member_id = req.member_id
        if member_id in group.pending:
            del group.pending[member_id]
            self._add_member(group, member_id, req, now_ms, reply)
            return
        if group.is_fenced(member_id, req.instance_id):
            reply(JoinResult(E.fenced_instance_id, member_id=member_id))
            return
        member = group.members.get(member_id)
        if member is None or (req.instance_id and req.instance_id not in group.static_members):
            reply(JoinResult(E.unknown_member_id, member_id=member_id))
            return
        member.last_heartbeat_ms = now_ms
        same = member.protocols == req.protocols
        if group.state is S.PREPARING_REBALANCE:
            self._update_member(member, req, reply)
            self._maybe_complete_join(group, now_ms)
        elif group.state is S.COMPLETING_REBALANCE and same:
            # The member missed our answer: give it the current generation again.
            reply(self._join_result(group, member))
        elif group.state is S.STABLE and same and member_id != group.leader_id:
            reply(self._join_result(group, member, with_members=False))
        else:
            # The leader rejoining (e.g. a topic's partition count changed) or new
            # protocols: a new generation.
            self._update_member(member, req, reply)
            self._prepare_rebalance(group, now_ms, f"member {member_id} rejoined")

    def _add_member(
        self, group: Group, member_id: str, req: JoinRequest, now_ms: int, reply: JoinReply
    ) -> None:
        member = Member(
            member_id=member_id,
            instance_id=req.instance_id,
            client_id=req.client_id,
            client_host=req.client_host,
            session_timeout_ms=req.session_timeout_ms,
            rebalance_timeout_ms=req.rebalance_timeout_ms,
            protocol_type=req.protocol_type,
            protocols=req.protocols,
            last_heartbeat_ms=now_ms,
            join_reply=reply,
        )
        if not group.members:
            group.protocol_type = req.protocol_type
        group.members[member_id] = member
        if req.instance_id:
            group.static_members[req.instance_id] = member_id
        if group.leader_id is None:
            group.leader_id = member_id
        if group.state is S.PREPARING_REBALANCE and group.initial_delay_remaining_ms is not None:
            group.new_member_added = True
        self._arm_session(group, member)
        if group.state is S.PREPARING_REBALANCE:
            self._maybe_complete_join(group, now_ms)
        else:
            self._prepare_rebalance(group, now_ms, f"member {member_id} joined")

    def _update_member(self, member: Member, req: JoinRequest, reply: JoinReply) -> None:
        if member.join_reply is not None:
            # A second JoinGroup while the first waits: the first is superseded.
            superseded = JoinResult(E.rebalance_in_progress, member_id=member.member_id)
            self._answer_join(member, superseded)
        member.protocols = req.protocols
        member.session_timeout_ms = req.session_timeout_ms
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
        member.join_reply = reply

    def _replace_static_member(
        self, group: Group, old_id: str, new_id: str, req: JoinRequest, now_ms: int,
        reply: JoinReply,
    ) -> None:
        """A static member restarted (same instance id, no member id): it takes its
        old place, assignment included; the old member id is fenced from now on."""
        old = group.members.pop(old_id)
        self._answer_join(old, JoinResult(E.fenced_instance_id, member_id=old_id))
        self._answer_sync(old, SyncResult(E.fenced_instance_id))
        leader_before = group.leader_id
        member = Member(
            member_id=new_id, instance_id=req.instance_id, client_id=req.client_id,
            client_host=req.client_host, session_timeout_ms=old.session_timeout_ms,
            rebalance_timeout_ms=old.rebalance_timeout_ms, protocol_type=req.protocol_type,
            protocols=old.protocols, last_heartbeat_ms=now_ms, assignment=old.assignment,
        )
        group.members[new_id] = member
        assert req.instance_id is not None
        group.static_members[req.instance_id] = new_id
        if group.leader_id == old_id:
            group.leader_id = new_id
        if old_id in group.pending_sync:
            group.pending_sync.discard(old_id)
            group.pending_sync.add(new_id)
        self._update_member(member, req, reply)
        self._arm_session(group, member)
        log.info("group %r: static member %r restarted as %r", group.group_id, req.instance_id,
                 new_id)
        if group.state is S.STABLE:
            if group.select_protocol() != group.protocol_name:
                reason = f"static member {req.instance_id} changed protocols"
                self._prepare_rebalance(group, now_ms, reason)
                return
            skip = group.leader_id == new_id and req.supports_skip_assignment
            result = self._join_result(group, member, with_members=skip)
            if skip:
                result = dataclasses.replace(result, skip_assignment=True)
            elif leader_before is not None:
                # Before JoinGroup v9 a client told it leads would assign anew:
                # name the old id, so it syncs as a follower and keeps its share.
                result = dataclasses.replace(result, leader_id=leader_before)
            self._answer_join(member, result)
        elif group.state is S.COMPLETING_REBALANCE:
            # The leader may be assigning to the old member id: start over.
            self._prepare_rebalance(group, now_ms, f"static member {req.instance_id} restarted")
        else:
            self._maybe_complete_join(group, now_ms)

    def _join_result(
        self, group: Group, member: Member, with_members: bool | None = None
    ) -> JoinResult:
        if with_members is None:
            with_members = member.member_id == group.leader_id
        return JoinResult(
            E.none,
            member_id=member.member_id,
            generation_id=group.generation,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
            leader_id=group.leader_id or "",
            members=group.joined_members() if with_members else (),
        )

    # -- rebalancing ----------------------------------------------------------------

    def _prepare_rebalance(self, group: Group, now_ms: int, reason: str) -> None:
        if group.state is S.PREPARING_REBALANCE:
            self._maybe_complete_join(group, now_ms)
            return
        if group.state is S.COMPLETING_REBALANCE:
            for m in group.members.values():
                m.assignment = b""
                self._answer_sync(m, SyncResult(E.rebalance_in_progress))
        was_empty = group.state is S.EMPTY
        fire(group, Event.REBALANCE, now_ms)
        log.info("group %r: preparing rebalance (generation %d): %s", group.group_id,
                 group.generation, reason)
        group.pending_sync.clear()
        group.sync_deadline_ms = None
        group.new_member_added = False
        delay = self.config.initial_rebalance_delay_ms
        if was_empty and delay > 0:
            group.initial_delay_remaining_ms = max(group.rebalance_timeout_ms - delay, 0)
            group.join_deadline_ms = now_ms + delay
        else:
            group.initial_delay_remaining_ms = None
            group.join_deadline_ms = now_ms + group.rebalance_timeout_ms
        self._arm(group.join_deadline_ms, "join", group, None)
        self._maybe_complete_join(group, now_ms)

    def _maybe_complete_join(self, group: Group, now_ms: int) -> None:
        if (group.state is S.PREPARING_REBALANCE and group.initial_delay_remaining_ms is None
                and group.all_joined()):
            self._complete_join(group, now_ms)

    def _complete_join(self, group: Group, now_ms: int) -> None:
        for m in list(group.members.values()):
            if m.join_reply is None:
                log.info("group %r: removing member %r: it did not rejoin within the rebalance "
                         "timeout", group.group_id, m.member_id)
                self._remove(group, m, now_ms, rebalance=False)
        group.join_deadline_ms = None
        group.initial_delay_remaining_ms = None
        group.generation += 1
        if not group.members:
            group.protocol_name = None
            group.leader_id = None
            group.empty_since_ms = now_ms
            fire(group, Event.ALL_GONE, now_ms)
            log.info("group %r: generation %d is empty", group.group_id, group.generation)
            return
        if group.leader_id not in group.members:
            group.leader_id = next(iter(group.members))
        group.protocol_name = group.select_protocol()
        fire(group, Event.JOIN_COMPLETE, now_ms)
        log.info("group %r: generation %d with %d members, protocol %s, leader %s",
                 group.group_id, group.generation, len(group.members), group.protocol_name,
                 group.leader_id)
        group.pending_sync = set(group.members)
        group.sync_deadline_ms = now_ms + group.rebalance_timeout_ms
        self._arm(group.sync_deadline_ms, "sync", group, None)
        for m in group.members.values():
            m.last_heartbeat_ms = now_ms
            self._answer_join(m, self._join_result(group, m))
            self._arm_session(group, m)

    def _remove(self, group: Group, member: Member, now_ms: int, rebalance: bool = True) -> None:
        self._answer_join(member, JoinResult(E.unknown_member_id, member_id=member.member_id))
        self._answer_sync(member, SyncResult(E.unknown_member_id))
        del group.members[member.member_id]
        if member.instance_id and group.static_members.get(member.instance_id) == member.member_id:
            del group.static_members[member.instance_id]
        group.pending_sync.discard(member.member_id)
        if group.leader_id == member.member_id:
            waiting = [m.member_id for m in group.members.values() if m.join_reply is not None]
            candidates = waiting or list(group.members)
            group.leader_id = candidates[0] if candidates else None
        if rebalance:
            if group.state in (S.STABLE, S.COMPLETING_REBALANCE):
                self._prepare_rebalance(group, now_ms, f"member {member.member_id} left")
            else:
                self._maybe_complete_join(group, now_ms)

    # -- SyncGroup, Heartbeat, LeaveGroup --------------------------------------------

    def _check_member(self, group_id: str, member_id: str, instance_id: str | None,
                      generation: int) -> tuple[ErrorCode, Group | None, Member | None]:
        if self.closed:
            return E.not_coordinator, None, None
        if not group_id:
            return E.invalid_group_id, None, None
        group = self.groups.get(group_id)
        if group is None:
            return E.unknown_member_id, None, None
        if group.is_fenced(member_id, instance_id):
            return E.fenced_instance_id, group, None
        member = group.members.get(member_id)
        if member is None:
            return E.unknown_member_id, group, None
        if generation != group.generation:
            return E.illegal_generation, group, member
        return E.none, group, member

    def sync(
        self, group_id: str, member_id: str, instance_id: str | None, generation: int,
        protocol_type: str | None, protocol_name: str | None,
        assignments: dict[str, bytes], now_ms: int, reply: SyncReply,
    ) -> None:
        error, group, member = self._check_member(group_id, member_id, instance_id, generation)
        if error is not E.none:
            reply(SyncResult(error))
            return
        assert group is not None and member is not None
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
            protocol_name is not None and protocol_name != group.protocol_name
        ):
            reply(SyncResult(E.inconsistent_group_protocol))
            return
        if group.state is S.PREPARING_REBALANCE:
            reply(SyncResult(E.rebalance_in_progress))
            return
        member.last_heartbeat_ms = now_ms
        self._synced(group, member_id)
        if group.state is S.STABLE:
            reply(self._sync_result(group, member))
            return
        # CompletingRebalance: wait for the leader's assignment.
        self._answer_sync(member, SyncResult(E.rebalance_in_progress))
        member.sync_reply = reply
        if member_id == group.leader_id:
            for m in group.members.values():
                m.assignment = assignments.get(m.member_id, b"")
            fire(group, Event.LEADER_SYNC, now_ms)
            log.info("group %r: generation %d is stable", group.group_id, group.generation)
            for m in group.members.values():
                if m.sync_reply is not None:
                    m.last_heartbeat_ms = now_ms
                    self._answer_sync(m, self._sync_result(group, m))
                    self._arm_session(group, m)

    def _sync_result(self, group: Group, member: Member) -> SyncResult:
        return SyncResult(E.none, group.protocol_type, group.protocol_name, member.assignment)

    def _synced(self, group: Group, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync:
            group.sync_deadline_ms = None

    def heartbeat(self, group_id: str, member_id: str, instance_id: str | None,
                  generation: int, now_ms: int) -> ErrorCode:
        error, group, member = self._check_member(group_id, member_id, instance_id, generation)
        if error is not E.none:
            return error
        assert group is not None and member is not None
        member.last_heartbeat_ms = now_ms
        if group.state is S.PREPARING_REBALANCE:
            return E.rebalance_in_progress
        return E.none

    def leave(self, group_id: str, members: Sequence[tuple[str, str | None]],
              now_ms: int) -> tuple[ErrorCode, list[ErrorCode]]:
        """Remove members (member id, instance id); a member id of "" removes the
        static member with that instance id. Returns (group error, per-member errors)."""
        if self.closed:
            return E.not_coordinator, []
        if not group_id:
            return E.invalid_group_id, []
        group = self.groups.get(group_id)
        if group is None:
            return E.none, [E.unknown_member_id] * len(members)
        errors = []
        for member_id, instance_id in members:
            if not member_id and instance_id:
                member_id = group.static_members.get(instance_id, "")
                if not member_id:
                    errors.append(E.unknown_member_id)
                    continue
            elif group.is_fenced(member_id, instance_id):
                errors.append(E.fenced_instance_id)
                continue
            if member_id in group.pending:
                del group.pending[member_id]
                self._maybe_complete_join(group, now_ms)
                errors.append(E.none)
                continue
            member = group.members.get(member_id)
            if member is None:
                errors.append(E.unknown_member_id)
                continue
            log.debug("group %r: member %r left", group.group_id, member_id)
            self._remove(group, member, now_ms)
            errors.append(E.none)
        return E.none, errors

    # -- deadlines -------------------------------------------------------------------

    def _arm(self, deadline_ms: int, kind: str, group: Group, subject: Any) -> None:
        heapq.heappush(self._timers, (deadline_ms, next(self._seq), kind, group, subject))

    def _arm_session(self, group: Group, member: Member) -> None:
        deadline = member.last_heartbeat_ms + member.session_timeout_ms
        if member.timer_at is None or deadline < member.timer_at:
            member.timer_at = deadline
            self._arm(deadline, "session", group, member)

    def tick(self, now_ms: int) -> None:
        """Fire every deadline that has passed."""
        timers = self._timers
        while timers and timers[0][0] <= now_ms:
            deadline, _, kind, group, subject = heapq.heappop(timers)
            if self.groups.get(group.group_id) is not group:
                continue
            if kind == "session":
                self._session_timer(group, subject, deadline, now_ms)
            elif kind == "pending":
                if group.pending.get(subject) == deadline:
                    del group.pending[subject]
                    self._maybe_complete_join(group, now_ms)
                    self._maybe_forget(group, now_ms)
            elif kind == "join" and group.join_deadline_ms == deadline:
                self._join_timer(group, now_ms)
            elif kind == "sync" and group.sync_deadline_ms == deadline:
                self._sync_timer(group, now_ms)

    def _session_timer(self, group: Group, member: Member, deadline: int, now_ms: int) -> None:
        if group.members.get(member.member_id) is not member or member.timer_at != deadline:
            return
        member.timer_at = None
        if member.waiting:
            member.last_heartbeat_ms = max(member.last_heartbeat_ms, now_ms)
        if member.last_heartbeat_ms + member.session_timeout_ms <= now_ms:
            log.info("group %r: member %r expired (no heartbeat for %d ms)", group.group_id,
                     member.member_id, member.session_timeout_ms)
            self._remove(group, member, now_ms)
        else:
            self._arm_session(group, member)

    def _join_timer(self, group: Group, now_ms: int) -> None:
        remaining = group.initial_delay_remaining_ms
        if remaining is not None and group.new_member_added and remaining > 0:
            group.new_member_added = False
            delay = min(self.config.initial_rebalance_delay_ms, remaining)
            group.initial_delay_remaining_ms = remaining - delay
            group.join_deadline_ms = (group.join_deadline_ms or now_ms) + delay
            self._arm(group.join_deadline_ms, "join", group, None)
            return
        self._complete_join(group, now_ms)

    def _sync_timer(self, group: Group, now_ms: int) -> None:
        group.sync_deadline_ms = None
        late = [group.members[m] for m in group.pending_sync if m in group.members]
        group.pending_sync.clear()
        if not late or group.state not in (S.COMPLETING_REBALANCE, S.STABLE):
            return
        for m in late:
            log.info("group %r: removing member %r: it did not sync within the rebalance "
                     "timeout", group.group_id, m.member_id)
            self._remove(group, m, now_ms, rebalance=False)
        self._prepare_rebalance(group, now_ms, "members did not collect their assignment")

    @staticmethod
    def _answer_join(member: Member, result: JoinResult) -> None:
        reply, member.join_reply = member.join_reply, None
        if reply is not None:
            reply(result)

    @staticmethod
    def _answer_sync(member: Member, result: SyncResult) -> None:
        reply, member.sync_reply = member.sync_reply, None
        if reply is not None:
            reply(result)
