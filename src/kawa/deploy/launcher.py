"""Running a broker in this process: `kawa up` (``kawa.deploy.control`` starts it in the
background and stops it).

A broker starts in this order: port checks (fail at once, naming the port and
the flag) -> on a fresh directory with the embedded default configuration,
install -> wait for the metadata store (``kawa.metadata.wait``: backoff and a
log line, bounded by ``store_wait_timeout_ms``) -> register in the store, a
compare-and-set that the lifecycle refuses in maintenance, on a schema that is
not this kawa's, or while the broker is already running -> pid file -> serve,
heartbeating every ``heartbeat_interval_ms`` on a connection of its own (in a
thread, commits not fsynced: a heartbeat is soft state) -> on SIGTERM/SIGINT,
stop cleanly and mark the row stopped.

A heartbeat that finds the row no longer belongs to this process (another
process registered the same broker id, or an operator marked it dead) stops
the broker: two processes never serve as one broker.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sqlite3
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from kawa.deploy import operations, processes
from kawa.deploy.lifecycle import Command, Facts, State, decide, require
from kawa.deploy.operations import HOSTNAME, OperationError, now_ms
from kawa.deploy.settings import Resolved
from kawa.metadata.registry import (
    BROKER_RUNNING,
    BROKER_STARTING,
    BROKER_STOPPED,
    BrokerRecord,
    DeploymentSnapshot,
    DeploymentUpdate,
    StoreUnavailable,
)
from kawa.metadata.sqlite import SCHEMA_VERSION, SqliteMetadataStore
from kawa.metadata.wait import StoreWaitTimedOut, wait_for_store

log = logging.getLogger("kawa.broker")

READY_MARKER = " listening on "  # in the broker's start-up log line; --detach waits for it
STORE_PROBE_TIMEOUT_S = 0.5  # per attempt while waiting for a locked store
STORE_BUSY_TIMEOUT_S = 5.0  # once open: how long a write waits for another's lock


# -- checks before starting ------------------------------------------------------


def check_ports(resolved: Resolved) -> None:
    s = resolved.settings
    processes.check_bindable(
        s.listen_host, s.listen_port,
        f"cannot listen on {s.listen_host}:{s.listen_port} for Kafka clients: the port is in "
        f"use (listen_port, {resolved.sources['listen_port']}). Stop the other process, or "
        "choose another port with --listen HOST:PORT",
    )
    if s.http_port is not None:
        processes.check_bindable(
            s.listen_host, s.http_port,
            f"cannot serve HTTP (/ping, /healthz, /metrics) on {s.listen_host}:{s.http_port}: "
            f"the port is in use (http_port, {resolved.sources['http_port']}). Choose another "
            "port with --http-port PORT, or turn HTTP off with --http-port off",
        )


def prepare(resolved: Resolved) -> list[str]:
    """Checks that fail fast, and the install of the embedded default on a fresh
    directory. Returns what was installed (lines), if anything."""
    try:
        observation = operations.observe(resolved, busy_timeout_s=STORE_PROBE_TIMEOUT_S)
    except StoreUnavailable:
        check_ports(resolved)
        return []  # locked: the broker waits for it
    if observation.state is not State.absent:
        require(observation.state, Command.up, observation.facts)  # running, maintenance, schema
    check_ports(resolved)
    if observation.state is State.absent and resolved.embedded:
        return operations.install(resolved)
    return []  # absent with a config file: the broker waits for it, saying how to install


# -- the foreground broker -------------------------------------------------------


def _open_store(resolved: Resolved) -> SqliteMetadataStore:
    try:
        store = SqliteMetadataStore.open(resolved.settings.store_path,
                                         busy_timeout_s=STORE_PROBE_TIMEOUT_S)
    except StoreUnavailable as e:
        if e.missing:
            raise StoreUnavailable(
                e.where, e.reason,
                f"not installed yet? run `kawa install{resolved.cli_hint()}`; "
                "or its volume is not mounted yet", missing=True,
            ) from None
        raise
    store.set_busy_timeout(STORE_BUSY_TIMEOUT_S)
    return store


def wait_for_the_store(resolved: Resolved) -> SqliteMetadataStore:
    timeout_s = resolved.settings.store_wait_timeout_ms / 1000
    try:
        return wait_for_store(lambda: _open_store(resolved), timeout_s, log)
    except StoreWaitTimedOut as e:
        last = e.last
        longer = ("to wait longer, raise store_wait_timeout_ms "
                  f"(now {resolved.settings.store_wait_timeout_ms}, KAWA_STORE_WAIT_TIMEOUT_MS)")
        if last.missing:
            facts = Facts(str(resolved.settings.data_dir), resolved.cli_hint(),
                          code_schema_version=SCHEMA_VERSION)
            refused = decide(State.absent, Command.up, facts).message
            raise OperationError(
                f"{refused} (waited {e.waited_s:.1f}s for {last.where}: {last.reason}; {longer})"
            ) from None
        raise OperationError(
            f"metadata store at {last.where} not reachable after {e.waited_s:.1f}s: "
            f"{last.reason}; {last.hint or 'check that it is running'}; {longer}"
        ) from None


def _register(resolved: Resolved, registry: SqliteMetadataStore) -> BrokerRecord:
    s = resolved.settings
    host, port = s.advertised
    started = now_ms()
    record = BrokerRecord(s.broker_id, f"{host}:{port}", BROKER_STARTING, HOSTNAME, os.getpid(),
                          started, started)

    def decide_registration(snapshot: DeploymentSnapshot) -> DeploymentUpdate:
        observation = operations.observe_snapshot(resolved, snapshot)
        require(observation.state, Command.up, observation.facts)
        return DeploymentUpdate(broker=record)

    registry.update_deployment(decide_registration)
    return record


def _still_ours(record: BrokerRecord) -> Callable[[DeploymentSnapshot], DeploymentUpdate]:
    def decide_update(snapshot: DeploymentSnapshot) -> DeploymentUpdate:
        row = snapshot.broker(record.broker_id)
        if row is None or row.pid != record.pid:
            raise OperationError(
                f"broker {record.broker_id}'s registration was taken over by pid "
                f"{row.pid if row else '?'} while starting; is another `kawa up` running?"
            )
        return DeploymentUpdate(broker=record)

    return decide_update


def run_foreground(resolved: Resolved) -> None:
    """`kawa up`: run one broker in this process until SIGTERM/SIGINT."""
    for line in prepare(resolved):
        log.info("%s", line.strip())
    data_dir = resolved.settings.data_dir
    if data_dir.is_dir():  # early, so that `kawa down` finds a broker still waiting for its store
        processes.write_pid_file(data_dir, resolved.settings.broker_id)
    # Until the broker's own handlers are installed, SIGTERM ends the wait cleanly.
    signal.signal(signal.SIGTERM, _stop_waiting)
    try:
        _run_registered(resolved)
    finally:
        processes.remove_pid_file(data_dir, resolved.settings.broker_id)


def _stop_waiting(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum} before serving")


def _run_registered(resolved: Resolved) -> None:
    store = wait_for_the_store(resolved)
    try:
        registry = SqliteMetadataStore.open(resolved.settings.store_path, durable=False)
    except BaseException:
        store.close()
        raise
    try:
        try:
            record = _register(resolved, registry)
        except BaseException:
            store.close()
            raise
        processes.write_pid_file(resolved.settings.data_dir, record.broker_id)
        try:
            import uvloop

            uvloop.install()
        except ImportError:  # pragma: no cover - uvloop is a dependency
            pass
        asyncio.run(_serve(resolved, store, registry, record))
    finally:
        registry.close()


def _partitions_led(broker: object) -> int:
    topics = broker.topics.topics.values()  # type: ignore[attr-defined]
    return sum(1 for t in topics for p in t.partitions if p.log is not None)


def _abort_start(broker: object, error: OSError, resolved: Resolved) -> OperationError:
    """Broker.start failed (a port taken since check_ports): close what it opened."""
    server = getattr(broker, "_server", None)  # set once the Kafka port listens
    if server is not None:
        server.close()
    broker.topics.close()  # type: ignore[attr-defined]
    broker.executor.shutdown(wait=True)  # type: ignore[attr-defined]
    broker.store.close()  # type: ignore[attr-defined]
    s = resolved.settings
    if server is not None:
        return OperationError(
            f"cannot serve HTTP on {s.listen_host}:{s.http_port}: {error.strerror}. Choose another "
            "port with --http-port PORT, or turn HTTP off with --http-port off"
        )
    return OperationError(
        f"cannot listen on {s.listen_host}:{s.listen_port}: {error.strerror}. Stop the other "
        "process, or choose another port with --listen HOST:PORT"
    )


async def _serve(resolved: Resolved, store: SqliteMetadataStore, registry: SqliteMetadataStore,
                 record: BrokerRecord) -> None:
    # kio imports hypothesis, which caches a charmap in ./.hypothesis: keep it out of the
    # operator's working directory.
    os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                          str(Path(tempfile.gettempdir()) / f"kawa-hypothesis-{os.getuid()}"))
    from kawa.broker.server import Broker

    s = resolved.settings
    loop = asyncio.get_running_loop()
    registry_thread = ThreadPoolExecutor(1, thread_name_prefix="kawa-registry")
    broker = Broker(s.broker_config(), store)
    try:
        notes = await broker.start()
    except OSError as e:
        raise _abort_start(broker, e, resolved) from None
    # Start-up objects (kio schemas, topic tables) never die; keep them out of the
    # collector's sight so that its pauses stay short on the request path.
    gc.collect()
    gc.freeze()
    host, port = broker.advertised
    http = f"{s.listen_host}:{broker.http.port}" if s.http_port is not None else ""
    record = replace(record, address=f"{host}:{port}", state=BROKER_RUNNING,
                     heartbeat_at_ms=now_ms(), partitions_led=_partitions_led(broker),
                     http_address=http)
    await loop.run_in_executor(registry_thread, registry.update_deployment, _still_ours(record))
    heartbeats = asyncio.ensure_future(_heartbeat(broker, registry, registry_thread, record,
                                                  s.heartbeat_interval_ms / 1000))
    topics = len(broker.topics.topics)
    partitions = sum(len(t.partitions) for t in broker.topics.topics.values())
    log.info(
        "kawa broker %d listening on %s:%d (advertised %s:%d), data in %s, "
        "recovered %d topics / %d partitions (%s), durability=%s, http %s",
        s.broker_id, s.listen_host, broker.port, host, port, s.data_dir, topics, partitions,
        "; ".join(notes) if notes else "clean", s.durability.value, http or "off",
    )
    try:
        await broker.serve_until_stopped()
    finally:
        heartbeats.cancel()
        await asyncio.gather(heartbeats, return_exceptions=True)
        try:
            await loop.run_in_executor(registry_thread, registry.set_broker_state,
                                       record.broker_id, record.pid, BROKER_STOPPED, now_ms())
        except (sqlite3.Error, OSError) as e:  # the store may be gone; the row goes stale
            log.warning("could not mark broker %d stopped in the metadata store: %s",
                        record.broker_id, e)
        registry_thread.shutdown(wait=True)


async def _heartbeat(broker: object, registry: SqliteMetadataStore, thread: ThreadPoolExecutor,
                     record: BrokerRecord, interval_s: float) -> None:
    loop = asyncio.get_running_loop()
    failing = False
    while True:
        await asyncio.sleep(interval_s)
        try:
            ours = await loop.run_in_executor(
                thread, registry.heartbeat, record.broker_id, record.pid, now_ms(),
                _partitions_led(broker),
            )
        except (sqlite3.Error, OSError) as e:  # locked or vanished: keep serving, keep trying
            if not failing:
                log.warning("heartbeat to the metadata store failed: %s; retrying every %.1fs",
                            e, interval_s)
            failing = True
            continue
        if failing:
            log.info("heartbeat to the metadata store works again")
            failing = False
        if not ours:
            log.error(
                "broker %d is no longer registered to this process (pid %d): another process "
                "registered the same id, or it was marked dead; stopping",
                record.broker_id, record.pid,
            )
            broker.request_stop()  # type: ignore[attr-defined]
            return
