"""Broker settings: every limit named, with a default that serves one host.

Units are last in names (``_ms``, ``_bytes``). Topic-level settings use
Kafka's names and live in ``kawa.broker.topic_config``.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Durability(str, Enum):
    """What an acknowledgement promises (acks=1/all).

    sync:     the batch is fsynced before the acknowledgement; concurrent
              appends share one fsync (group commit). Survives kill -9 and
              power loss. Consumers only see fsynced records.
    interval: the batch is written to the OS at once and fsynced at most
              ``flush_interval_ms`` later. Survives kill -9 (the page cache
              outlives the process); a power loss may lose the last interval.
    os:       never fsynced by kawa (only on clean shutdown); the OS writes
              back when it likes. Survives kill -9, not power loss.
    """

    sync = "sync"
    interval = "interval"
    os = "os"


class BrokerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    broker_id: int = Field(0, ge=0)
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(9092, ge=0, le=65535)
    advertised_host: str | None = None
    advertised_port: int | None = None
    data_dir: Path = Path("kawa-data")
    cluster_id: str = "kawa-cluster"
    # /ping, /healthz, /metrics; None: no HTTP endpoints, 0: any free port.
    http_port: int | None = Field(None, ge=0, le=65535)

    durability: Durability = Durability.sync
    flush_interval_ms: int = Field(1000, ge=1)

    auto_create_topics: bool = True
    default_partitions: int = Field(1, ge=1)
    # Storage engine for topics of this broker: "local" (segment files) or "memory".
    storage_engine: str = Field("local", pattern="^(local|memory)$")

    # Limits.
    request_size_bytes_max: int = Field(100 * 1024 * 1024, ge=1024)  # socket.request.max.bytes
    connections_max: int = Field(1000, ge=1)
    in_flight_requests_per_connection_max: int = Field(100, ge=1)
    fetch_response_bytes_max: int = Field(50 * 1024 * 1024, ge=1024)  # fetch.max.bytes
    buffered_produce_bytes_max: int = Field(256 * 1024 * 1024, ge=1024 * 1024)
    partitions_per_topic_max: int = Field(10_000, ge=1)
    producers_per_partition_max: int = Field(10_000, ge=1)
    retention_check_interval_ms: int = Field(60_000, ge=10)

    # Consumer groups (Kafka's group.* and offsets.* broker settings).
    group_initial_rebalance_delay_ms: int = Field(3000, ge=0)  # group.initial.rebalance.delay.ms
    group_min_session_timeout_ms: int = Field(6000, ge=1)  # group.min.session.timeout.ms
    group_max_session_timeout_ms: int = Field(1_800_000, ge=1)  # group.max.session.timeout.ms
    group_members_max: int = Field(1000, ge=1)  # group.max.size
    groups_max: int = Field(10_000, ge=1)
    offsets_retention_minutes: int = Field(7 * 24 * 60, ge=1)  # offsets.retention.minutes
    offsets_retention_check_interval_ms: int = Field(600_000, ge=10)
    offset_metadata_bytes_max: int = Field(4096, ge=0)  # offset.metadata.max.bytes
    group_timer_interval_ms: int = Field(100, ge=1)  # how often group deadlines are checked

    @property
    def advertised(self) -> tuple[str, int]:
        host = self.advertised_host or self.listen_host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return host, self.advertised_port or self.listen_port
