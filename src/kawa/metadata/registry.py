"""The deployment's own rows in the metadata store: lifecycle state and broker registry.

Beside topics and offsets, the store holds what the lifecycle needs
(``kawa.deploy.lifecycle``): whether the deployment is in maintenance, its
schema version, and one row per broker (id, address, state, started_at,
heartbeat). Nothing here assumes SQLite: a PostgreSQL store implements the
same methods with SELECT ... FOR UPDATE where SQLite uses BEGIN IMMEDIATE.

Changes that must not race are read-decide-write in one transaction:
``update_deployment(decide)`` reads a snapshot, calls ``decide`` (which may
raise to refuse) and applies what it returns. A broker registering and an
operator entering maintenance both go through it, so one of them always sees
the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

LIFECYCLE_INSTALLED = "installed"
LIFECYCLE_MAINTENANCE = "maintenance"

# Broker row states. "starting" and "running" brokers heartbeat; a row whose
# heartbeat is older than the session timeout is not live, whatever it says.
BROKER_STARTING = "starting"
BROKER_RUNNING = "running"
BROKER_STOPPED = "stopped"
BROKER_DEAD = "dead"  # marked by an operator tool after the process was killed


class StoreUnavailable(Exception):
    """The store cannot be reached now: not there (yet), locked, or refusing connections.

    ``reason`` is short ("not found", "locked by another process"), ``hint``
    says what the operator can do. Callers that may wait (a starting broker)
    retry with ``kawa.metadata.wait.wait_for_store``.
    """

    def __init__(self, where: str, reason: str, hint: str = "", missing: bool = False) -> None:
        super().__init__(f"metadata store at {where}: {reason}" + (f" ({hint})" if hint else ""))
        self.where = where
        self.reason = reason
        self.hint = hint
        self.missing = missing  # nothing there at all (as opposed to there but unusable)


class AlreadyInstalled(Exception):
    pass


@dataclass(frozen=True, slots=True)
class BrokerRecord:
    broker_id: int
    address: str  # advertised host:port
    state: str
    host: str  # hostname of the machine the process runs on
    pid: int
    started_at_ms: int
    heartbeat_at_ms: int
    partitions_led: int = 0
    http_address: str = ""  # host:port of /ping, /healthz, /metrics; "" when off


@dataclass(frozen=True, slots=True)
class DeploymentSnapshot:
    lifecycle: str  # LIFECYCLE_INSTALLED or LIFECYCLE_MAINTENANCE
    schema_version: int
    installed_at_ms: int = 0
    brokers: tuple[BrokerRecord, ...] = field(default=())

    def broker(self, broker_id: int) -> BrokerRecord | None:
        return next((b for b in self.brokers if b.broker_id == broker_id), None)


@dataclass(frozen=True, slots=True)
class DeploymentUpdate:
    """What ``update_deployment``'s decide function asks to write (None: leave as is)."""

    lifecycle: str | None = None
    broker: BrokerRecord | None = None


class DeploymentRegistry(Protocol):
    def stored_schema_version(self) -> int: ...

    def snapshot(self) -> DeploymentSnapshot: ...

    def update_deployment(
        self, decide: Callable[[DeploymentSnapshot], DeploymentUpdate]
    ) -> DeploymentSnapshot:
        """Atomically: snapshot -> decide (may raise: nothing written) -> write. Returns
        the snapshot decide saw."""
        ...

    def heartbeat(self, broker_id: int, pid: int, now_ms: int, partitions_led: int) -> bool:
        """Refresh this broker's row; False when the row is no longer this process's
        (another process registered the same id: this one must stop)."""
        ...

    def set_broker_state(self, broker_id: int, pid: int, state: str, now_ms: int) -> None: ...

    def migrate(self) -> list[int]:
        """Apply pending schema migrations; returns the versions applied."""
        ...
