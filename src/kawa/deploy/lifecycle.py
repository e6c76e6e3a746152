"""The deployment lifecycle: which operator command is allowed in which state (sans-IO).

Rules
-----
1. A deployment is in exactly one of four states:

   absent       no metadata store (nothing installed at this location)
   installed    the store exists, no broker is live, not in maintenance
   running      installed, and at least one broker is live (registered in the
                store with a fresh heartbeat, or a local pid file whose process lives)
   maintenance  the store says so; brokers refuse to start, migrations may run

   ``installed`` and ``maintenance`` are stored (the store's lifecycle row);
   ``running`` and ``absent`` are observed. The store is the source of truth.

2. absent -> install -> installed <-> up/down (running); installed <->
   maintenance enter/exit; installed/maintenance -> delete -> absent.
   ``migrate`` runs only in maintenance and stays there.

3. Every (state, command) pair has exactly one rule: allowed (to a next state),
   a no-op (already there: success, nothing done), or refused. A refusal says
   what is in the way and which command to run instead.

4. Guards refine an allowed rule with facts the edge observed: brokers never
   start on a store whose schema version is not theirs, and maintenance is not
   left while the schema is behind (brokers would refuse to start anyway).

5. This module does no IO. The edge (``kawa.deploy.operations``) observes the
   state and the facts, asks ``decide``, and performs the change, in one store
   transaction where the store supports it (registering a broker and entering
   maintenance are compare-and-set, so neither can slip past the other).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class State(str, Enum):
    absent = "absent"
    installed = "installed"
    running = "running"
    maintenance = "maintenance"


class Command(str, Enum):
    install = "install"
    up = "up"
    down = "down"
    maintenance_enter = "maintenance enter"
    maintenance_exit = "maintenance exit"
    migrate = "migrate"
    delete = "delete"


class Outcome(str, Enum):
    allowed = "allowed"
    noop = "noop"
    refused = "refused"


@dataclass(frozen=True)
class Facts:
    """What the edge observed; the message templates below are formatted with these."""

    location: str  # where the deployment lives, e.g. "kawa-data (kawa-data/metadata.sqlite)"
    config: str = ""  # how to name this deployment on the command line, e.g. " -c kawa.toml"
    running: tuple[str, ...] = ()  # live brokers, e.g. ("broker 0 (pid 4242, 127.0.0.1:9092)",)
    schema_version: int | None = None  # the store's; None when absent
    code_schema_version: int = 0  # this kawa's

    @property
    def schema_behind(self) -> bool:
        return self.schema_version is not None and self.schema_version < self.code_schema_version

    @property
    def schema_ahead(self) -> bool:
        return self.schema_version is not None and self.schema_version > self.code_schema_version

    def format(self, template: str) -> str:
        return template.format(
            location=self.location,
            c=self.config,
            running=", ".join(self.running) or "none",
            schema=self.schema_version,
            code_schema=self.code_schema_version,
        )


@dataclass(frozen=True)
class Rule:
    state: State
    command: Command
    outcome: Outcome
    to: State | None  # the next state when allowed
    message: str  # allowed: what was done; noop/refused: why, and what to do


@dataclass(frozen=True)
class Guard:
    """Turns an allowed rule into a refusal when ``fact`` (a Facts property) is true."""

    state: State
    command: Command
    fact: str
    message: str


S, C, Out = State, Command, Outcome

_SCHEMA_BEHIND = (
    "the metadata store at {location} has schema version {schema}, this kawa needs "
    "{code_schema}: upgrade it with `kawa maintenance enter{c}`, `kawa migrate{c}`, "
    "`kawa maintenance exit{c}`"
)
_SCHEMA_AHEAD = (
    "the metadata store at {location} has schema version {schema}, newer than this kawa "
    "({code_schema}): run the kawa version that wrote it, or upgrade kawa"
)

RULES: tuple[Rule, ...] = (
    # absent
    Rule(S.absent, C.install, Out.allowed, S.installed,
         "installed a deployment at {location} (schema version {code_schema})"),
    Rule(S.absent, C.up, Out.refused, None,
         "no deployment at {location}: install it first with `kawa install{c}`"),
    Rule(S.absent, C.down, Out.noop, None, "no deployment at {location}: nothing to stop"),
    Rule(S.absent, C.maintenance_enter, Out.refused, None,
         "no deployment at {location}: install it first with `kawa install{c}`"),
    Rule(S.absent, C.maintenance_exit, Out.refused, None,
         "no deployment at {location}: install it first with `kawa install{c}`"),
    Rule(S.absent, C.migrate, Out.refused, None,
         "no deployment at {location} to migrate: `kawa install{c}` creates the current schema"),
    Rule(S.absent, C.delete, Out.noop, None, "no deployment at {location}: nothing to delete"),
    # installed
    Rule(S.installed, C.install, Out.refused, None,
         "already installed at {location} (schema version {schema}): start it with `kawa up{c}`, "
         "or remove it first with `kawa delete{c}`"),
    Rule(S.installed, C.up, Out.allowed, S.running, "started {location}"),
    Rule(S.installed, C.down, Out.noop, None,
         "no broker of {location} is running: nothing to stop"),
    Rule(S.installed, C.maintenance_enter, Out.allowed, S.maintenance,
         "{location} is in maintenance: brokers will refuse to start; `kawa migrate{c}` upgrades "
         "the schema; leave with `kawa maintenance exit{c}`"),
    Rule(S.installed, C.maintenance_exit, Out.noop, None,
         "{location} is not in maintenance: nothing to do"),
    Rule(S.installed, C.migrate, Out.refused, None,
         "migrations run only in maintenance: `kawa maintenance enter{c}` first"),
    Rule(S.installed, C.delete, Out.allowed, S.absent, "deleted the deployment at {location}"),
    # running
    Rule(S.running, C.install, Out.refused, None,
         "already installed and running at {location} ({running})"),
    Rule(S.running, C.up, Out.refused, None,
         "already running at {location}: {running}; stop it with `kawa down{c}` first"),
    Rule(S.running, C.down, Out.allowed, S.installed, "stopped {location}"),
    Rule(S.running, C.maintenance_enter, Out.refused, None,
         "brokers are running ({running}): stop them with `kawa down{c}`, then run "
         "`kawa maintenance enter{c}` again (kawa does not stop brokers for you here)"),
    Rule(S.running, C.maintenance_exit, Out.noop, None,
         "{location} is not in maintenance (it is running): nothing to do"),
    Rule(S.running, C.migrate, Out.refused, None,
         "brokers are running ({running}): migrations run only in maintenance; "
         "`kawa down{c}`, then `kawa maintenance enter{c}`"),
    Rule(S.running, C.delete, Out.refused, None,
         "brokers are running ({running}): stop them with `kawa down{c}` before deleting"),
    # maintenance
    Rule(S.maintenance, C.install, Out.refused, None,
         "already installed at {location} (in maintenance, schema version {schema})"),
    Rule(S.maintenance, C.up, Out.refused, None,
         "{location} is in maintenance: brokers do not start until `kawa maintenance exit{c}`"),
    Rule(S.maintenance, C.down, Out.noop, None,
         "{location} is in maintenance: no broker is running, nothing to stop"),
    Rule(S.maintenance, C.maintenance_enter, Out.noop, None,
         "{location} is already in maintenance"),
    Rule(S.maintenance, C.maintenance_exit, Out.allowed, S.installed,
         "{location} left maintenance: start it with `kawa up{c}`"),
    Rule(S.maintenance, C.migrate, Out.allowed, S.maintenance,
         "migrated {location} to schema version {code_schema}"),
    Rule(S.maintenance, C.delete, Out.allowed, S.absent, "deleted the deployment at {location}"),
)

GUARDS: tuple[Guard, ...] = (
    Guard(S.installed, C.up, "schema_behind", _SCHEMA_BEHIND),
    Guard(S.installed, C.up, "schema_ahead", _SCHEMA_AHEAD),
    Guard(S.maintenance, C.maintenance_exit, "schema_behind",
          "the schema is at version {schema}, this kawa needs {code_schema}: run "
          "`kawa migrate{c}` before leaving maintenance (brokers would refuse to start)"),
    Guard(S.maintenance, C.migrate, "schema_ahead", _SCHEMA_AHEAD),
)

_TABLE: dict[tuple[State, Command], Rule] = {(r.state, r.command): r for r in RULES}
assert len(_TABLE) == len(RULES) == len(State) * len(Command), "one rule per (state, command)"
assert all((r.outcome is Out.allowed) == (r.to is not None) for r in RULES)
assert all(_TABLE[(g.state, g.command)].outcome is Out.allowed for g in GUARDS)


@dataclass(frozen=True)
class Decision:
    state: State
    command: Command
    outcome: Outcome
    to: State | None
    message: str

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.allowed

    @property
    def ok(self) -> bool:
        """True unless refused: a no-op is a success (``kawa down`` twice exits 0)."""
        return self.outcome is not Outcome.refused


class TransitionRefused(Exception):
    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.message)
        self.decision = decision


def decide(state: State, command: Command, facts: Facts) -> Decision:
    rule = _TABLE[(state, command)]
    if rule.outcome is Outcome.allowed:
        for guard in GUARDS:
            if (guard.state, guard.command) == (state, command) and getattr(facts, guard.fact):
                return Decision(state, command, Outcome.refused, None, facts.format(guard.message))
    return Decision(state, command, rule.outcome, rule.to, facts.format(rule.message))


def require(state: State, command: Command, facts: Facts) -> Decision:
    """``decide``, raising TransitionRefused when refused."""
    decision = decide(state, command, facts)
    if decision.outcome is Outcome.refused:
        raise TransitionRefused(decision)
    return decision
