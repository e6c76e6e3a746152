"""The lifecycle's IO edge: observe a deployment, then install, enter or leave
maintenance, migrate, delete. The rules are in ``kawa.deploy.lifecycle``.

Observing reads the store's snapshot (lifecycle row, schema version, broker
rows) and this host's pid files, and classifies each broker: a row is live
while its heartbeat is fresh and, for a process on this host, while that
process exists. Changes that must not race with a starting broker re-observe
inside ``update_deployment``'s transaction and ask the lifecycle again there.
"""

from __future__ import annotations

import logging
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kawa.deploy import processes
from kawa.deploy.lifecycle import (
    Command,
    Decision,
    Facts,
    Outcome,
    State,
    TransitionRefused,
    decide,
    require,
)
from kawa.deploy.settings import STORE_FILE, Resolved
from kawa.metadata.registry import (
    BROKER_DEAD,
    BROKER_RUNNING,
    BROKER_STARTING,
    LIFECYCLE_INSTALLED,
    LIFECYCLE_MAINTENANCE,
    BrokerRecord,
    DeploymentSnapshot,
    DeploymentUpdate,
    StoreUnavailable,
)
from kawa.metadata.sqlite import SCHEMA_VERSION, SqliteMetadataStore

log = logging.getLogger("kawa.deploy")

HOSTNAME = socket.gethostname()
# Everything kawa creates in a data directory; `kawa delete` removes these and nothing else.
OWNED = (STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm", "logs")
OWNED_GLOBS = ("broker-*.pid", "broker-*.pid.tmp", "broker-*.log")


class OperationError(Exception):
    """An operator-facing failure that is not a lifecycle refusal; says what to do."""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class BrokerView:
    broker_id: int
    address: str
    status: str  # starting, running, unresponsive, stopped, dead
    pid: int
    host: str
    started_at_ms: int
    heartbeat_age_s: float | None
    partitions_led: int
    http_address: str

    @property
    def live(self) -> bool:
        return self.status in (BROKER_STARTING, BROKER_RUNNING, "unresponsive")

    def describe(self) -> str:
        where = f"pid {self.pid}" if self.host == HOSTNAME else f"pid {self.pid} on {self.host}"
        return f"broker {self.broker_id} ({where}, {self.address or 'address not yet known'})"


@dataclass(frozen=True)
class Observation:
    state: State
    facts: Facts
    snapshot: DeploymentSnapshot | None
    brokers: tuple[BrokerView, ...]

    @property
    def live(self) -> tuple[BrokerView, ...]:
        return tuple(b for b in self.brokers if b.live)


def classify(row: BrokerRecord, now: int, session_ms: int) -> str:
    if row.state not in (BROKER_STARTING, BROKER_RUNNING):
        return row.state
    fresh = now - row.heartbeat_at_ms < session_ms
    if row.host == HOSTNAME:
        if not processes.pid_alive(row.pid):
            return BROKER_DEAD
        return row.state if fresh else "unresponsive"
    return row.state if fresh else BROKER_DEAD


def _views(resolved: Resolved, snapshot: DeploymentSnapshot | None) -> tuple[BrokerView, ...]:
    settings = resolved.settings
    now = now_ms()
    views = []
    rows = snapshot.brokers if snapshot else ()
    for row in rows:
        views.append(BrokerView(
            row.broker_id, row.address, classify(row, now, settings.broker_session_timeout_ms),
            row.pid, row.host, row.started_at_ms, (now - row.heartbeat_at_ms) / 1000,
            row.partitions_led, row.http_address,
        ))
    known = {(v.host, v.pid) for v in views if v.live}
    for broker_id, pid in sorted(processes.live_pid_files(settings.data_dir).items()):
        if (HOSTNAME, pid) not in known:  # started, not registered (yet): waiting for its store
            views.append(BrokerView(broker_id, "", BROKER_STARTING, pid, HOSTNAME, 0, None, 0, ""))
    return tuple(views)


def _state(snapshot: DeploymentSnapshot | None, views: tuple[BrokerView, ...]) -> State:
    if snapshot is None:
        return State.absent
    if snapshot.lifecycle != LIFECYCLE_INSTALLED:
        return State.maintenance
    return State.running if any(v.live for v in views) else State.installed


def _facts(resolved: Resolved, snapshot: DeploymentSnapshot | None,
           views: tuple[BrokerView, ...]) -> Facts:
    return Facts(
        location=str(resolved.settings.data_dir),
        config=resolved.cli_hint(),
        running=tuple(v.describe() for v in views if v.live),
        schema_version=snapshot.schema_version if snapshot else None,
        code_schema_version=SCHEMA_VERSION,
    )


def observe_snapshot(resolved: Resolved, snapshot: DeploymentSnapshot | None) -> Observation:
    views = _views(resolved, snapshot)
    return Observation(_state(snapshot, views), _facts(resolved, snapshot, views), snapshot, views)


@contextmanager
def open_store(resolved: Resolved, busy_timeout_s: float = 2.0) -> Iterator[SqliteMetadataStore]:
    store = SqliteMetadataStore.open(resolved.settings.store_path, busy_timeout_s=busy_timeout_s)
    try:
        yield store
    finally:
        store.close()


def observe(resolved: Resolved, busy_timeout_s: float = 2.0) -> Observation:
    """The deployment's state now. Raises StoreUnavailable when the store is locked."""
    try:
        with open_store(resolved, busy_timeout_s) as store:
            return observe_snapshot(resolved, store.snapshot())
    except StoreUnavailable as e:
        if not e.missing:
            raise
        return observe_snapshot(resolved, None)


def _refuse_unless_allowed(decision: Decision) -> bool:
    """True when the change should be made; False for a no-op; raises when refused."""
    if decision.outcome is Outcome.refused:
        raise TransitionRefused(decision)
    return decision.outcome is Outcome.allowed


# -- install -------------------------------------------------------------------


def install(resolved: Resolved) -> list[str]:
    """Create the store (current schema) and storage directories; returns what was done."""
    settings = resolved.settings
    observation = observe(resolved)
    decision = require(observation.state, Command.install, observation.facts)
    store_path = settings.store_path
    logs = settings.data_dir / "logs"
    if logs.is_dir() and any(logs.iterdir()):
        raise OperationError(
            f"{logs} already holds partition data ({sum(1 for _ in logs.iterdir())} entries) but "
            f"there is no metadata store at {store_path}: it belongs to an earlier deployment. "
            f"Move it aside or delete it, then run `kawa install{resolved.cli_hint()}` again"
        )
    if store_path.exists() and store_path.stat().st_size == 0:
        store_path.unlink()  # an empty file is not an installation (e.g. a bare `touch`)
    created = [d for d in (settings.data_dir, logs) if not d.exists()]
    logs.mkdir(parents=True, exist_ok=True)
    SqliteMetadataStore.install(store_path, now_ms()).close()
    lines = [decision.message,
             f"  metadata store  {store_path} (sqlite, schema version {SCHEMA_VERSION})"]
    lines += [f"  directory       {d}" for d in created]
    return lines


# -- maintenance and migrate -----------------------------------------------------


def _lifecycle_change(resolved: Resolved, command: Command, lifecycle: str) -> Decision:
    observation = observe(resolved)
    decision = decide(observation.state, command, observation.facts)
    if not _refuse_unless_allowed(decision):
        return decision
    result: list[Decision] = []

    def decide_in_transaction(snapshot: DeploymentSnapshot) -> DeploymentUpdate:
        again = observe_snapshot(resolved, snapshot)  # a broker may have registered since
        result.append(require(again.state, command, again.facts))
        return DeploymentUpdate(lifecycle=lifecycle)

    with open_store(resolved, busy_timeout_s=10.0) as store:
        store.update_deployment(decide_in_transaction)
    return result[0]


def enter_maintenance(resolved: Resolved) -> Decision:
    return _lifecycle_change(resolved, Command.maintenance_enter, LIFECYCLE_MAINTENANCE)


def exit_maintenance(resolved: Resolved) -> Decision:
    return _lifecycle_change(resolved, Command.maintenance_exit, LIFECYCLE_INSTALLED)


def migrate(resolved: Resolved) -> tuple[Decision, list[int], int]:
    """(decision, versions applied, version before)."""
    observation = observe(resolved)
    decision = require(observation.state, Command.migrate, observation.facts)
    with open_store(resolved, busy_timeout_s=10.0) as store:
        before = store.stored_schema_version()
        applied = store.migrate()
    return decision, applied, before


# -- delete --------------------------------------------------------------------


def delete(resolved: Resolved) -> tuple[Decision, list[str], list[str]]:
    """(decision, removed, left behind). Locks brokers out first (lifecycle maintenance,
    under the same compare-and-set as `maintenance enter`), then removes kawa's files."""
    observation = observe(resolved)
    decision = decide(observation.state, Command.delete, observation.facts)
    if not _refuse_unless_allowed(decision):
        return decision, [], []

    def lock_out(snapshot: DeploymentSnapshot) -> DeploymentUpdate:
        again = observe_snapshot(resolved, snapshot)
        require(again.state, Command.delete, again.facts)
        return DeploymentUpdate(lifecycle=LIFECYCLE_MAINTENANCE)

    with open_store(resolved, busy_timeout_s=10.0) as store:
        store.update_deployment(lock_out)
    data_dir = resolved.settings.data_dir
    removed: list[str] = []
    targets = [data_dir / name for name in OWNED]
    targets += [p for pattern in OWNED_GLOBS for p in sorted(data_dir.glob(pattern))]
    for path in targets:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(str(path))
    left = sorted(str(p) for p in data_dir.iterdir()) if data_dir.is_dir() else []
    if data_dir.is_dir() and not left:
        data_dir.rmdir()
        removed.append(str(data_dir))
    return decision, removed, left


# -- status ---------------------------------------------------------------------


def status(resolved: Resolved) -> dict[str, Any]:
    """Everything `kawa status` shows, as plain data (the JSON output)."""
    observation = observe(resolved)
    settings = resolved.settings
    store: dict[str, Any] = {"engine": "sqlite", "location": str(settings.store_path),
                             "schema_version": None, "kawa_schema_version": SCHEMA_VERSION}
    topics = partitions = None
    if observation.snapshot is not None:
        with open_store(resolved) as opened:
            store.update(opened.describe())
            if observation.snapshot.schema_version >= 1:
                records = opened.list_topics()
                topics, partitions = len(records), sum(r.partitions for r in records)
        store["schema_version"] = observation.snapshot.schema_version
        store["installed_at_ms"] = observation.snapshot.installed_at_ms
    now = now_ms()
    return {
        "state": observation.state.value,
        "location": str(settings.data_dir),
        "config": str(resolved.config_file) if resolved.config_file else "embedded default",
        "store": store,
        "topics": topics,
        "partitions": partitions,
        "brokers": [
            {
                "id": b.broker_id, "address": b.address, "state": b.status, "pid": b.pid,
                "host": b.host, "http": b.http_address or None,
                "uptime_s": round((now - b.started_at_ms) / 1000, 1)
                if b.live and b.started_at_ms else None,
                "heartbeat_age_s": round(b.heartbeat_age_s, 1)
                if b.heartbeat_age_s is not None else None,
                "partitions_led": b.partitions_led if b.live else 0,
            }
            for b in observation.brokers
        ],
    }


def mark_dead(resolved: Resolved, broker_id: int, pid: int) -> None:
    """After a broker was killed: its row must not claim it is running."""
    try:
        with open_store(resolved) as store:
            store.set_broker_state(broker_id, pid, BROKER_DEAD, now_ms())
    except (StoreUnavailable, OSError):
        pass
