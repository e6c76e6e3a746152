"""The group state machine as data, and the records the coordinator keeps per group.

States and the events that move a group between them (Kafka's classic
group protocol, KIP-62/345/394)::

    Empty ──REBALANCE──> PreparingRebalance ──JOIN_COMPLETE──> CompletingRebalance
      ^                     │   ^                                 │        │
      └────ALL_GONE─────────┘   └──────────REBALANCE──────────────┘   LEADER_SYNC
                                ^                                          v
                                └──────────────REBALANCE──────────────── Stable
    Empty ──DELETE──> Dead      (DeleteGroups, or its last offsets expired)

* REBALANCE: a member joins for the first time, rejoins with other protocols,
  the leader rejoins, a member leaves or its session expires, or a member
  does not collect its assignment (SyncGroup) within the rebalance timeout.
  Entering PreparingRebalance from Empty waits
  ``initial_rebalance_delay_ms`` first (extended by the same delay while new
  members keep arriving, up to the rebalance timeout), so that a fleet of
  consumers starting together gets one rebalance, not one per consumer.
* JOIN_COMPLETE: every known member has sent JoinGroup (and no member given
  an id with MEMBER_ID_REQUIRED is still due), or the rebalance timeout
  passed; members that did not rejoin are removed. The generation goes up by
  one, a protocol is chosen by vote, every waiting JoinGroup is answered (the
  leader's answer lists the members and their metadata).
* ALL_GONE: a rebalance completed with no member left. The generation goes up.
* LEADER_SYNC: the leader's SyncGroup brings the assignment; every waiting
  SyncGroup is answered with its member's share, untouched bytes (so range,
  roundrobin, sticky and cooperative-sticky all work: the broker never reads
  them).
* DELETE: only an Empty group is deleted. A Dead group is removed from the
  coordinator at once; requests naming it create a new one.

While a member waits for a JoinGroup or SyncGroup answer its session does
not expire (it is waiting on us); the rebalance timeout bounds the wait.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from kawa.metadata.store import CommittedOffset


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


class Event(enum.Enum):
    REBALANCE = "rebalance"
    JOIN_COMPLETE = "join complete"
    ALL_GONE = "all members gone"
    LEADER_SYNC = "leader sync"
    DELETE = "delete"


S = GroupState
TRANSITIONS: dict[GroupState, dict[Event, GroupState]] = {
    S.EMPTY: {Event.REBALANCE: S.PREPARING_REBALANCE, Event.DELETE: S.DEAD},
    S.PREPARING_REBALANCE: {
        Event.JOIN_COMPLETE: S.COMPLETING_REBALANCE,
        Event.ALL_GONE: S.EMPTY,
    },
    S.COMPLETING_REBALANCE: {
        Event.LEADER_SYNC: S.STABLE,
        Event.REBALANCE: S.PREPARING_REBALANCE,
    },
    S.STABLE: {Event.REBALANCE: S.PREPARING_REBALANCE},
    S.DEAD: {},
}


class LogicError(RuntimeError):
    """An event the state table does not allow in the group's state: a coordinator bug."""


def next_state(state: GroupState, event: Event) -> GroupState:
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise LogicError(f"event {event.value!r} is not allowed in state {state.value}") from None


def fire(group: Group, event: Event, now_ms: int) -> None:
    """Move `group` along the table (LogicError if the table has no such move)."""
    group.state = next_state(group.state, event)
    group.state_since_ms = now_ms


# -- configuration ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupConfig:
    initial_rebalance_delay_ms: int = 3000
    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1_800_000
    members_max: int = 1000
    groups_max: int = 10_000
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000

    @classmethod
    def from_broker(cls, config: Any) -> GroupConfig:
        return cls(
            initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
            min_session_timeout_ms=config.group_min_session_timeout_ms,
            max_session_timeout_ms=config.group_max_session_timeout_ms,
            members_max=config.group_members_max,
            groups_max=config.groups_max,
            offsets_retention_ms=config.offsets_retention_minutes * 60_000,
        )


# -- replies ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JoinedMember:
    member_id: str
    instance_id: str | None
    metadata: bytes


@dataclass(frozen=True, slots=True)
class JoinResult:
    error: ErrorCode
    member_id: str = ""
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    members: tuple[JoinedMember, ...] = ()
    skip_assignment: bool = False


@dataclass(frozen=True, slots=True)
class SyncResult:
    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


JoinReply = Callable[[JoinResult], None]
SyncReply = Callable[[SyncResult], None]


@dataclass(frozen=True, slots=True)
class JoinRequest:
    group_id: str
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    # JoinGroup v4+: a first join without a member id gets MEMBER_ID_REQUIRED.
    require_known_member_id: bool = True
    # JoinGroup v9+: a rejoining static leader is told to skip the assignment.
    supports_skip_assignment: bool = False


# -- records ----------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Member:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    last_heartbeat_ms: int
    assignment: bytes = b""
    join_reply: JoinReply | None = None
    sync_reply: SyncReply | None = None
    # Deadline of this member's one live session timer, None when none is armed.
    timer_at: int | None = None

    @property
    def waiting(self) -> bool:
        """Waiting for our JoinGroup/SyncGroup answer: alive by definition."""
        return self.join_reply is not None or self.sync_reply is not None

    def metadata_for(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]


@dataclass(slots=True, eq=False)
class Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    state_since_ms: int = 0
    generation: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    # Member ids handed out with MEMBER_ID_REQUIRED -> when they lapse.
    pending: dict[str, int] = field(default_factory=dict)
    # Members that have not collected their assignment of this generation.
    pending_sync: set[str] = field(default_factory=set)
    join_deadline_ms: int | None = None
    sync_deadline_ms: int | None = None
    # Set while the first rebalance of an empty group is being delayed:
    # how much more the delay may still be extended.
    initial_delay_remaining_ms: int | None = None
    new_member_added: bool = False
    # When the group last became empty (None: not known, e.g. loaded after a restart).
    empty_since_ms: int | None = None
    offsets: dict[tuple[str, int], CommittedOffset] = field(default_factory=dict)

    @property
    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def size(self) -> int:
        return len(self.members) + len(self.pending)

    def is_fenced(self, member_id: str, instance_id: str | None) -> bool:
        """A static member whose instance id now belongs to another member id."""
        if not instance_id:
            return False
        current = self.static_members.get(instance_id)
        return current is not None and current != member_id

    def all_joined(self) -> bool:
        return not self.pending and all(m.join_reply is not None for m in self.members.values())

    def supports(self, protocol_type: str, protocol_names: list[str]) -> bool:
        if not protocol_type or not protocol_names:
            return False
        if not self.members:
            return True
        if protocol_type != self.protocol_type:
            return False
        members = list(self.members.values())
        return any(all(name in m.protocol_names() for m in members) for name in protocol_names)

    def select_protocol(self) -> str:
        """The protocol every member supports that most members prefer (Kafka's vote)."""
        members = list(self.members.values())
        candidates = [
            name for name in members[0].protocol_names()
            if all(name in m.protocol_names() for m in members)
        ]
        votes = dict.fromkeys(candidates, 0)
        for m in members:
            choice = next(name for name in m.protocol_names() if name in votes)
            votes[choice] += 1
        return max(candidates, key=lambda name: votes[name])

    def joined_members(self) -> tuple[JoinedMember, ...]:
        return tuple(
            JoinedMember(m.member_id, m.instance_id, m.metadata_for(self.protocol_name))
            for m in self.members.values()
        )

    def subscribed_topics(self) -> set[str] | None:
        """Topics the members subscribe to (consumer protocol), None when unknown."""
        if self.protocol_type != "consumer":
            return None
        topics: set[str] = set()
        for m in self.members.values():
            parsed = parse_subscription(m.metadata_for(self.protocol_name) if self.protocol_name
                                        else (m.protocols[0][1] if m.protocols else b""))
            if parsed is None:
                return None
            topics |= parsed
        return topics


_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


def parse_subscription(metadata: bytes) -> set[str] | None:
    """Topics of a ConsumerProtocolSubscription (any version: the topic list comes
    first after the version and is never flexible); None if it does not parse."""
    try:
        pos = 2  # version
        (count,) = _I32.unpack_from(metadata, pos)
        pos += 4
        if count < 0 or count > len(metadata):
            return None
        topics = set()
        for _ in range(count):
            (length,) = _I16.unpack_from(metadata, pos)
            pos += 2
            if length < 0 or pos + length > len(metadata):
                return None
            topics.add(metadata[pos : pos + length].decode())
            pos += length
        return topics
    except (struct.error, UnicodeDecodeError):
        return None
