"""Topics and partitions as this broker serves them.

``TopicManager`` owns the cached topic table (the metadata store is the
source of truth: every change is written there first), one ``Partition`` per
partition, and the storage engine that makes their logs.

A ``Partition`` ties a ``PartitionLog`` to what the broker keeps beside it:
idempotent-producer state, the group commit, and the fetches waiting for
data. Everything here runs on the event loop, except ``PartitionLog.sync``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from kawa.broker import topic_config
from kawa.broker.producer_state import ProducerStateTable
from kawa.deploy.config import BrokerConfig, Durability
from kawa.metadata.store import MetadataStore, TopicRecord
from kawa.storage.durability import GroupCommit
from kawa.storage.log import LogConfig, LogCorrupted, PartitionLog
from kawa.storage.memory import MemoryLog

log = logging.getLogger("kawa.broker")

_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


class InvalidTopicName(ValueError):
    pass


def check_topic_name(name: str) -> None:
    if name in (".", "..") or not _TOPIC_NAME.match(name):
        raise InvalidTopicName(
            f"invalid topic name {name!r}: use 1-249 characters from [a-zA-Z0-9._-], "
            "not '.' or '..'"
        )


class Partition:
    def __init__(
        self,
        topic: str,
        index: int,
        partition_log: PartitionLog | None,
        config: BrokerConfig,
        executor: Executor,
        error: str | None = None,
        observe_fsync_seconds: Callable[[float], None] | None = None,
    ) -> None:
        self.topic = topic
        self.index = index
        self.log = partition_log
        # Set when the log could not be opened (corruption): the partition
        # answers KAFKA_STORAGE_ERROR instead of serving wrong data.
        self.error = error
        self.closed = False
        self.producers = ProducerStateTable(config.producers_per_partition_max)
        self._durability = config.durability
        self._waiters: set[asyncio.Future[None]] = set()
        self.group_commit = (
            GroupCommit(partition_log, executor, self.wake_waiters, observe_fsync_seconds)
            if partition_log is not None
            else None
        )

    @property
    def needs_fsync_before_ack(self) -> bool:
        return self._durability is Durability.sync and not isinstance(self.log, MemoryLog)

    def after_append(self) -> None:
        """Make appended bytes visible when the policy does not wait for fsync."""
        assert self.log is not None
        if not self.needs_fsync_before_ack:
            self.log.publish(self.log.log_end_offset)
            self.wake_waiters()

    def add_waiter(self, future: asyncio.Future[None]) -> None:
        self._waiters.add(future)

    def remove_waiter(self, future: asyncio.Future[None]) -> None:
        self._waiters.discard(future)

    def wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def close(self) -> None:
        self.closed = True
        if self.group_commit is not None:
            self.group_commit.close()
        self.wake_waiters()
        if self.log is not None:
            self.log.close()


@dataclass(slots=True)
class Topic:
    name: str
    topic_id: uuid.UUID
    configs: dict[str, str]
    partitions: list[Partition] = field(default_factory=list)
    # Derived from configs; kept because produce reads it on every request.
    log_config: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        self.log_config = topic_config.log_config(self.configs)


class TopicManager:
    def __init__(self, config: BrokerConfig, store: MetadataStore, executor: Executor) -> None:
        self.config = config
        self.store = store
        self.executor = executor
        self.topics: dict[str, Topic] = {}
        self.by_id: dict[uuid.UUID, Topic] = {}
        self.log_dir = config.data_dir / "logs"
        self.on_fsync: Callable[[float], None] | None = None

    # -- opening ---------------------------------------------------------

    def load(self) -> list[str]:
        """Open every topic in the store; returns one summary line per recovery event."""
        notes: list[str] = []
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for record in self.store.list_topics():
            topic = Topic(record.name, record.topic_id, dict(record.configs))
            for index in range(record.partitions):
                topic.partitions.append(self._open_partition(topic, index, notes))
            self._add(topic)
        return notes

    def _partition_dir(self, topic: str, index: int) -> Path:
        return self.log_dir / f"{topic}-{index}"

    def _open_partition(self, topic: Topic, index: int, notes: list[str]) -> Partition:
        log_config = topic.log_config
        if self.config.storage_engine == "memory":
            return Partition(topic.name, index, MemoryLog(log_config), self.config, self.executor)
        from kawa.storage.local.log import LocalLog

        directory = self._partition_dir(topic.name, index)
        try:
            partition_log, report = LocalLog.open(directory, log_config)
        except LogCorrupted as e:
            log.error("partition %s-%d is not served: %s", topic.name, index, e)
            notes.append(f"{topic.name}-{index}: CORRUPT, not served: {e}")
            return Partition(topic.name, index, None, self.config, self.executor, error=str(e))
        if report.truncated_bytes or report.indexes_rebuilt:
            notes.append(
                f"{topic.name}-{index}: truncated {report.truncated_bytes} bytes, "
                f"rebuilt {report.indexes_rebuilt} indexes"
            )
        return Partition(
            topic.name, index, partition_log, self.config, self.executor,
            observe_fsync_seconds=self.on_fsync,
        )

    def _add(self, topic: Topic) -> None:
        self.topics[topic.name] = topic
        self.by_id[topic.topic_id] = topic

    # -- changes (store first, then the cache) ---------------------------

    def create(self, name: str, partitions: int, configs: dict[str, str]) -> Topic:
        """Raises InvalidTopicName, topic_config.InvalidConfig, metadata.store.TopicExists."""
        check_topic_name(name)
        if not 1 <= partitions <= self.config.partitions_per_topic_max:
            raise ValueError(
                f"partition count {partitions} outside 1..{self.config.partitions_per_topic_max}"
            )
        record = TopicRecord(name, uuid.uuid4(), partitions, topic_config.validate(dict(configs)))
        self.store.create_topic(record)
        # A directory left behind by a crash between store and disk must not
        # leak old records into the new topic.
        for index in range(partitions):
            shutil.rmtree(self._partition_dir(name, index), ignore_errors=True)
        topic = Topic(record.name, record.topic_id, record.configs)
        notes: list[str] = []
        topic.partitions = [self._open_partition(topic, i, notes) for i in range(partitions)]
        self._add(topic)
        log.info("created topic %s with %d partitions", name, partitions)
        return topic

    def delete(self, name: str) -> None:
        topic = self.topics[name]
        self.store.delete_topic(name)
        del self.topics[name]
        self.by_id.pop(topic.topic_id, None)
        for partition in topic.partitions:
            partition.close()
            if partition.log is not None:
                partition.log.delete()
            shutil.rmtree(self._partition_dir(name, partition.index), ignore_errors=True)
        log.info("deleted topic %s", name)

    def add_partitions(self, name: str, count: int) -> None:
        topic = self.topics[name]
        current = len(topic.partitions)
        if count <= current:
            raise ValueError(f"topic {name} has {current} partitions; the new count must be more")
        if count > self.config.partitions_per_topic_max:
            raise ValueError(f"partition count {count} > {self.config.partitions_per_topic_max}")
        self.store.set_partitions(name, count)
        notes: list[str] = []
        for index in range(current, count):
            shutil.rmtree(self._partition_dir(name, index), ignore_errors=True)
            topic.partitions.append(self._open_partition(topic, index, notes))

    def set_configs(self, name: str, configs: dict[str, str]) -> None:
        topic = self.topics[name]
        clean = topic_config.validate(dict(configs))
        self.store.set_configs(name, clean)
        topic.configs = clean
        topic.log_config = log_config = topic_config.log_config(clean)
        for partition in topic.partitions:
            if partition.log is not None:
                partition.log.update_config(log_config)

    def apply_retention(self) -> int:
        now_ms = int(time.time() * 1000)
        freed = 0
        for topic in list(self.topics.values()):
            for partition in topic.partitions:
                if partition.log is not None:
                    freed += partition.log.apply_retention(now_ms)
        return freed

    def close(self) -> None:
        for topic in self.topics.values():
            for partition in topic.partitions:
                partition.close()
