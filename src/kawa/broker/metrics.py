"""Prometheus metrics of one broker, in a registry of its own.

Counters and histograms are updated on the request path (a dict lookup and
an add); per-partition gauges are read from the TopicManager only when
scraped, so they cost nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from kio.schema.index import api_key_map
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from kawa.broker.partitions import TopicManager

_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def api_name(api_key: int) -> str:
    return api_key_map.get(api_key, f"unknown_{api_key}")


class _PartitionCollector(Collector):
    def __init__(self, topics: TopicManager) -> None:
        self._topics = topics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["topic", "partition"]
        end = GaugeMetricFamily("kawa_partition_log_end_offset", "Next offset to be written", labels=labels)
        high = GaugeMetricFamily("kawa_partition_high_watermark", "End of what consumers can read (durable)", labels=labels)
        start = GaugeMetricFamily("kawa_partition_log_start_offset", "First offset kept", labels=labels)
        size = GaugeMetricFamily("kawa_partition_size_bytes", "Bytes of record batches kept", labels=labels)
        for topic in list(self._topics.topics.values()):
            for partition in topic.partitions:
                log = partition.log
                if log is None:
                    continue
                key = [topic.name, str(partition.index)]
                end.add_metric(key, log.log_end_offset)
                high.add_metric(key, log.high_watermark)
                start.add_metric(key, log.log_start_offset)
                size.add_metric(key, log.size_bytes)
        yield from (end, high, start, size)


class BrokerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("kawa_requests", "Requests served", ["api"], registry=r)
        self.request_seconds = Histogram(
            "kawa_request_duration_seconds", "Time from request received to response queued",
            ["api"], buckets=_LATENCY_BUCKETS_S, registry=r,
        )
        self.bytes_in = Counter("kawa_bytes_in", "Request bytes received", registry=r)
        self.bytes_out = Counter("kawa_bytes_out", "Response bytes sent", registry=r)
        self.records_in = Counter("kawa_records_in", "Records appended", ["topic"], registry=r)
        self.errors = Counter("kawa_errors", "Error codes answered, and closed connections", ["api", "error"], registry=r)
        self.fsync_seconds = Histogram(
            "kawa_fsync_duration_seconds", "Duration of one group-commit fsync",
            buckets=_LATENCY_BUCKETS_S, registry=r,
        )
        self.connections = Gauge("kawa_connections", "Open client connections", registry=r)
        # Children cached per API: labels() costs a few µs and runs per request.
        self._by_api: dict[int, tuple[Counter, Histogram]] = {}

    def watch_partitions(self, topics: TopicManager) -> None:
        self.registry.register(_PartitionCollector(topics))

    def request_done(self, api_key: int, seconds: float) -> None:
        pair = self._by_api.get(api_key)
        if pair is None:
            name = api_name(api_key)
            pair = (self.requests.labels(name), self.request_seconds.labels(name))
            self._by_api[api_key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def error(self, api_key: int, error: str) -> None:
        self.errors.labels(api_name(api_key), error).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
