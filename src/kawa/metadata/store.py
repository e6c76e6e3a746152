"""The MetadataStore interface: cluster state the broker must not keep alone.

One store per deployment: SQLite for one host (``kawa.metadata.sqlite``),
PostgreSQL for several (a later engine). Nothing here may assume SQLite.
Brokers cache what they read and write through this interface; the store
is the source of truth after a restart.
"""

from __future__ import annotations

import uuid
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

    def close(self) -> None: ...
