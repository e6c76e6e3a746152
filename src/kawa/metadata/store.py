"""The MetadataStore interface: cluster state the broker must not keep alone.

One store per deployment: SQLite for one host (``kawa.metadata.sqlite``),
PostgreSQL for several (a later engine). Nothing here may assume SQLite.
Brokers cache what they read and write through this interface; the store
is the source of truth after a restart.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class TopicExists(Exception):
    pass


class UnknownTopic(Exception):
    pass


@dataclass(slots=True)
class TopicRecord:
    name: str
    topic_id: uuid.UUID
    partitions: int
    # Only the configs set explicitly for this topic; defaults are the broker's.
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    """A consumer group's committed position in one partition (OffsetCommit)."""

    group_id: str
    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1  # -1: not given
    metadata: str = ""
    commit_timestamp_ms: int = 0  # wall clock, for offsets.retention.minutes


class MetadataStore(Protocol):
    schema_version: int

    def list_topics(self) -> list[TopicRecord]: ...

    def create_topic(self, record: TopicRecord) -> None:
        """Raises TopicExists."""
        ...

    def delete_topic(self, name: str) -> None:
        """Raises UnknownTopic."""
        ...

    def set_partitions(self, name: str, partitions: int) -> None: ...

    def set_configs(self, name: str, configs: dict[str, str]) -> None:
        """Replace the topic's explicit configs."""
        ...

    def next_producer_id(self) -> int:
        """A producer id never handed out before by this deployment."""
        ...

    def commit_offsets(self, offsets: Sequence[CommittedOffset]) -> None:
        """Insert or replace these committed offsets: all of them or none."""
        ...

    def list_committed_offsets(self) -> list[CommittedOffset]:
        """Every committed offset of every group (the coordinator loads them at start)."""
        ...

    def delete_committed_offsets(
        self, group_id: str, partitions: Iterable[tuple[str, int]] | None = None
    ) -> None:
        """Delete one group's offsets for these (topic, partition)s, or all when None."""
        ...

    def close(self) -> None: ...
