"""The broker process: opens the store and the logs, serves connections, stops cleanly.

Start-up order: metadata store -> every partition log (recovery) -> listen.
Shut-down order (SIGTERM / Ctrl-C): stop accepting -> let in-flight requests
finish (bounded by ``shutdown_grace_ms``) -> flush and close every log ->
close the store.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kawa.broker import handlers
from kawa.broker.connection import Connection, RequestContext
from kawa.broker.groups import GroupConfig, GroupCoordinator, driver
from kawa.broker.metrics import BrokerMetrics
from kawa.broker.partitions import TopicManager
from kawa.deploy.config import BrokerConfig, Durability
from kawa.http.server import HttpEndpoints
from kawa.metadata.sqlite import SqliteMetadataStore
from kawa.metadata.store import MetadataStore

log = logging.getLogger("kawa.broker")

SHUTDOWN_GRACE_MS = 5000
FSYNC_THREADS = 4


class Broker:
    def __init__(self, config: BrokerConfig, store: MetadataStore | None = None) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = store or SqliteMetadataStore(config.data_dir / "metadata.sqlite")
        self.executor = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="kawa-fsync")
        self.topics = TopicManager(config, self.store, self.executor)
        self.metrics = BrokerMetrics()
        self.metrics.watch_partitions(self.topics)
        self.topics.on_fsync = self.metrics.fsync_seconds.observe
        self.http = HttpEndpoints(self.health, self.metrics.render)
        self.serving = False
        self.groups = GroupCoordinator(GroupConfig.from_broker(config), self.store)
        self.started_at = time.time()
        self.connections: set[Connection] = set()
        self._buffered_bytes = 0
        self._waiting_for_buffer: set[Connection] = set()
        self._server: asyncio.Server | None = None
        self._handlers: dict[int, Callable[[RequestContext, Any], Any]] = handlers.table()
        self._stopping = asyncio.Event()
        self.port = config.listen_port

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> list[str]:
        notes = self.topics.load()
        self.groups.load()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self),
            self.config.listen_host,
            self.config.listen_port,
            reuse_address=True,
            backlog=1024,
        )
        sockets = self._server.sockets
        self.port = sockets[0].getsockname()[1]
        if self.config.http_port is not None:
            await self.http.start(self.config.listen_host, self.config.http_port)
        self.serving = True
        self._retention_task = asyncio.ensure_future(self._retention_loop())
        self._groups_task = asyncio.ensure_future(
            driver.drive(self.groups, self.config, lambda name: name in self.topics.topics)
        )
        self._flush_task = (
            asyncio.ensure_future(self._flush_loop())
            if self.config.durability is Durability.interval
            else None
        )
        return notes

    @property
    def advertised(self) -> tuple[str, int]:
        host, port = self.config.advertised
        if not self.config.advertised_port:
            port = self.port
        return host, port

    async def serve_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        await self._stopping.wait()
        await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        log.info("stopping: finishing in-flight requests")
        self.serving = False
        await self.http.stop()
        if self._server is not None:
            self._server.close()
        self._retention_task.cancel()
        self._groups_task.cancel()
        self.groups.close()  # answers waiting JoinGroup/SyncGroup: NOT_COORDINATOR
        if self._flush_task is not None:
            self._flush_task.cancel()
        deadline = time.monotonic() + SHUTDOWN_GRACE_MS / 1000
        while any(c.busy for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.close("broker shutting down")
        self.topics.close()
        self.executor.shutdown(wait=True)
        self.store.close()
        log.info("stopped")

    async def _flush_loop(self) -> None:
        """durability=interval: fsync every log at most flush_interval_ms after its write."""
        loop = asyncio.get_running_loop()
        interval_s = self.config.flush_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            for topic in list(self.topics.topics.values()):
                for partition in topic.partitions:
                    if partition.log is not None:
                        try:
                            await loop.run_in_executor(self.executor, partition.log.sync)
                        except Exception:
                            log.exception("periodic fsync of %s-%d failed", topic.name, partition.index)

    async def _retention_loop(self) -> None:
        interval_s = self.config.retention_check_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            try:
                freed = self.topics.apply_retention()
                if freed:
                    log.info("retention freed %d bytes", freed)
            except Exception:
                log.exception("retention pass failed")

    # -- requests ----------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """(healthy, why): serving Kafka requests and the metadata store answers."""
        if not self.serving:
            return False, "not serving: starting or stopping"
        try:
            self.store.list_topics()
        except Exception as e:  # noqa: BLE001 - any store failure means unhealthy
            return False, f"metadata store unreachable: {e}"
        corrupt = [
            f"{p.topic}-{p.index}" for t in self.topics.topics.values() for p in t.partitions
            if p.log is None
        ]
        if corrupt:
            return True, "ok; partitions not served (corrupt): " + ", ".join(corrupt)
        return True, "ok"

    def handle(self, context: RequestContext, request: Any) -> Any:
        return self._handlers[context.api_key](context, request)

    def api_versions_response(self, version: int, unsupported: bool = False) -> Any:
        return handlers.api_versions_response(version, unsupported)

    # -- connection bookkeeping and limits ----------------------------------------

    def connection_opened(self, connection: Connection) -> bool:
        if len(self.connections) >= self.config.connections_max:
            return False
        self.connections.add(connection)
        self.metrics.connections.set(len(self.connections))
        return True

    def connection_closed(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self.metrics.connections.set(len(self.connections))
        self._waiting_for_buffer.discard(connection)

    def add_buffered(self, size_bytes: int) -> None:
        self._buffered_bytes += size_bytes

    def release_buffered(self, size_bytes: int) -> None:
        self._buffered_bytes -= size_bytes
        assert self._buffered_bytes >= 0
        if self._waiting_for_buffer and not self.over_buffered_limit():
            waiting, self._waiting_for_buffer = self._waiting_for_buffer, set()
            for connection in waiting:
                connection.buffer_space_available()

    def over_buffered_limit(self) -> bool:
        return self._buffered_bytes > self.config.buffered_produce_bytes_max

    def wait_for_buffer_space(self, connection: Connection) -> None:
        self._waiting_for_buffer.add(connection)

