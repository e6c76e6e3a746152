"""Committed offsets and group administration: the part of the coordinator that
reads and writes the metadata store.

Offsets are written through to the store before a commit is acknowledged and
cached per group (``Group.offsets``); the cache is built from the store at
start. A store failure answers COORDINATOR_NOT_AVAILABLE (retriable) and
leaves the cache as it was.

Commit rules (Kafka's classic coordinator): a group unknown here accepts only
a "simple" commit (generation -1, no group management), which creates an
Empty group holding offsets; a group without members accepts simple commits;
otherwise the committer must be a member of the current generation, the group
must not be waiting for its assignment (CompletingRebalance:
REBALANCE_IN_PROGRESS), and a static member's old incarnation is fenced.
Commits during PreparingRebalance are accepted, so a consumer can commit what
it processed before it rejoins.

Retention (offsets.retention.minutes): the offsets of a group without members
expire ``offsets_retention_ms`` after their commit, or after the group became
empty if that is later; offsets of deleted topics go at the next sweep. A
group left empty with no offsets is deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from kawa.broker.groups.state import Event, Group, GroupConfig, GroupState, fire
from kawa.metadata.store import CommittedOffset, MetadataStore

log = logging.getLogger("kawa.groups")

E = ErrorCode
S = GroupState


@dataclass(frozen=True, slots=True)
class OffsetToCommit:
    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str = ""


class GroupOffsets:
    """Mixed into GroupCoordinator, which owns these attributes."""

    groups: dict[str, Group]
    store: MetadataStore
    config: GroupConfig
    closed: bool

    def commit_offsets(
        self, group_id: str, member_id: str, instance_id: str | None, generation: int,
        offsets: Sequence[OffsetToCommit], now_ms: int,
    ) -> ErrorCode:
        """Validate the committer, then store. One error for the whole request."""
        if self.closed:
            return E.not_coordinator
        group = self.groups.get(group_id)
        if group is None:
            if generation >= 0:
                return E.illegal_generation
            if len(self.groups) >= self.config.groups_max:
                return E.policy_violation
            group = self.groups[group_id] = Group(group_id, state_since_ms=now_ms)
            group.empty_since_ms = now_ms
        if group.is_fenced(member_id, instance_id):
            return E.fenced_instance_id
        if not (generation < 0 and not group.members):
            member = group.members.get(member_id)
            if member is None:
                return E.unknown_member_id
            if generation != group.generation:
                return E.illegal_generation
            if group.state is S.COMPLETING_REBALANCE:
                return E.rebalance_in_progress
            # Stable, or PreparingRebalance: a member commits what it processed
            # before it rejoins (Kafka allows it; the heartbeat tells it to rejoin).
            member.last_heartbeat_ms = now_ms
        records = [
            CommittedOffset(group_id, o.topic, o.partition, o.offset, o.leader_epoch,
                            o.metadata, now_ms)
            for o in offsets
        ]
        if records:
            try:
                self.store.commit_offsets(records)
            except Exception as e:  # noqa: BLE001 - any store failure is answered, not raised
                log.error("group %r: storing %d offsets failed: %r", group_id, len(records), e)
                return E.coordinator_not_available
        for r in records:
            group.offsets[(r.topic, r.partition)] = r
        return E.none

    def fetch_offsets(self, group_id: str) -> dict[tuple[str, int], CommittedOffset]:
        group = self.groups.get(group_id)
        return dict(group.offsets) if group is not None else {}

    def delete_offsets(
        self, group_id: str, partitions: Iterable[tuple[str, int]]
    ) -> tuple[ErrorCode, dict[tuple[str, int], ErrorCode]]:
        """OffsetDelete: refused for topics the group's members subscribe to."""
        if self.closed:
            return E.not_coordinator, {}
        group = self.groups.get(group_id)
        if group is None:
            return E.group_id_not_found, {}
        wanted = list(partitions)
        subscribed: set[str] = set()
        if group.members:
            topics = group.subscribed_topics()
            if topics is None:
                return E.non_empty_group, {}
            subscribed = topics
        errors = {
            tp: E.group_subscribed_to_topic if tp[0] in subscribed else E.none for tp in wanted
        }
        gone = [tp for tp, error in errors.items() if error is E.none and tp in group.offsets]
        if gone:
            try:
                self.store.delete_committed_offsets(group_id, gone)
            except Exception as e:  # noqa: BLE001 - any store failure is answered, not raised
                log.error("group %r: deleting offsets failed: %r", group_id, e)
                return E.coordinator_not_available, {}
            for tp in gone:
                del group.offsets[tp]
        return E.none, errors

    def expire_offsets(self, now_ms: int, topic_exists: Callable[[str], bool] | None = None) -> int:
        """offsets.retention: drop the offsets of groups without members that are
        older than the retention (counted from their commit, or from when the
        group became empty if later), and offsets of topics that no longer exist;
        then remove empty groups left with nothing. Returns offsets dropped."""
        retention = self.config.offsets_retention_ms
        dropped = 0
        for group in list(self.groups.values()):
            gone = []
            for tp, o in group.offsets.items():
                deleted_topic = topic_exists is not None and not topic_exists(tp[0])
                if deleted_topic or not group.members and (
                    max(o.commit_timestamp_ms, group.empty_since_ms or 0) + retention <= now_ms
                ):
                    gone.append(tp)
            if gone:
                try:
                    self.store.delete_committed_offsets(group.group_id, gone)
                except Exception as e:  # noqa: BLE001 - any store failure is answered, not raised
                    log.error("group %r: expiring offsets failed: %r", group.group_id, e)
                    continue
                for tp in gone:
                    del group.offsets[tp]
                dropped += len(gone)
            self._maybe_forget(group, now_ms)
        return dropped

    def _maybe_forget(self, group: Group, now_ms: int) -> None:
        """An empty group with no offsets and no member on its way is deleted."""
        if group.state is S.EMPTY and not group.offsets and not group.pending and not group.members:
            fire(group, Event.DELETE, now_ms)
            del self.groups[group.group_id]

    # -- administration ------------------------------------------------------------

    def delete_group(self, group_id: str, now_ms: int) -> ErrorCode:
        if self.closed:
            return E.not_coordinator
        group = self.groups.get(group_id)
        if group is None:
            return E.group_id_not_found
        if group.state is not S.EMPTY:
            return E.non_empty_group
        try:
            self.store.delete_committed_offsets(group_id)
        except Exception as e:  # noqa: BLE001 - any store failure is answered, not raised
            log.error("group %r: deleting offsets failed: %r", group_id, e)
            return E.coordinator_not_available
        fire(group, Event.DELETE, now_ms)
        del self.groups[group_id]
        log.info("group %r deleted", group_id)
        return E.none

    def list_groups(self) -> list[Group]:
        return list(self.groups.values())

    def describe(self, group_id: str) -> Group | None:
        return self.groups.get(group_id)
