"""The lifecycle state machine (kawa.deploy.lifecycle), without IO: every (state, command)
pair, allowed or refused, with the message an operator reads."""

from __future__ import annotations

import pytest

from kawa.deploy.lifecycle import (
    GUARDS,
    RULES,
    Command,
    Facts,
    Outcome,
    State,
    TransitionRefused,
    decide,
    require,
)

S, C, Out = State, Command, Outcome
FACTS = Facts(location="kawa-data", config=" -c kawa.toml", running=("broker 0 (pid 42)",),
              schema_version=3, code_schema_version=3)

# (state, command) -> (outcome, next state, words the message must contain)
EXPECTED = {
    (S.absent, C.install): (Out.allowed, S.installed, ["installed", "kawa-data", "3"]),
    (S.absent, C.up): (Out.refused, None, ["no deployment", "kawa install -c kawa.toml"]),
    (S.absent, C.down): (Out.noop, None, ["nothing to stop"]),
    (S.absent, C.maintenance_enter): (Out.refused, None, ["kawa install -c kawa.toml"]),
    (S.absent, C.maintenance_exit): (Out.refused, None, ["kawa install -c kawa.toml"]),
    (S.absent, C.migrate): (Out.refused, None, ["kawa install -c kawa.toml"]),
    (S.absent, C.delete): (Out.noop, None, ["nothing to delete"]),
    (S.installed, C.install): (Out.refused, None, ["already installed", "kawa up -c kawa.toml",
                                                 "kawa delete -c kawa.toml"]),
    (S.installed, C.up): (Out.allowed, S.running, ["started"]),
    (S.installed, C.down): (Out.noop, None, ["nothing to stop"]),
    (S.installed, C.maintenance_enter): (Out.allowed, S.maintenance,
                                         ["in maintenance", "kawa migrate -c kawa.toml",
                                          "kawa maintenance exit -c kawa.toml"]),
    (S.installed, C.maintenance_exit): (Out.noop, None, ["not in maintenance"]),
    (S.installed, C.migrate): (Out.refused, None, ["kawa maintenance enter -c kawa.toml"]),
    (S.installed, C.delete): (Out.allowed, S.absent, ["deleted"]),
    (S.running, C.install): (Out.refused, None, ["already installed", "broker 0 (pid 42)"]),
    (S.running, C.up): (Out.refused, None, ["already running", "broker 0 (pid 42)",
                                          "kawa down -c kawa.toml"]),
    (S.running, C.down): (Out.allowed, S.installed, ["stopped"]),
    (S.running, C.maintenance_enter): (Out.refused, None, ["broker 0 (pid 42)",
                                                         "kawa down -c kawa.toml",
                                                         "kawa maintenance enter -c kawa.toml"]),
    (S.running, C.maintenance_exit): (Out.noop, None, ["not in maintenance"]),
    (S.running, C.migrate): (Out.refused, None, ["kawa down -c kawa.toml",
                                               "kawa maintenance enter -c kawa.toml"]),
    (S.running, C.delete): (Out.refused, None, ["kawa down -c kawa.toml"]),
    (S.maintenance, C.install): (Out.refused, None, ["already installed", "maintenance"]),
    (S.maintenance, C.up): (Out.refused, None, ["in maintenance",
                                              "kawa maintenance exit -c kawa.toml"]),
    (S.maintenance, C.down): (Out.noop, None, ["nothing to stop"]),
    (S.maintenance, C.maintenance_enter): (Out.noop, None, ["already in maintenance"]),
    (S.maintenance, C.maintenance_exit): (Out.allowed, S.installed, ["left maintenance",
                                                                   "kawa up -c kawa.toml"]),
    (S.maintenance, C.migrate): (Out.allowed, S.maintenance, ["migrated", "3"]),
    (S.maintenance, C.delete): (Out.allowed, S.absent, ["deleted"]),
}


def test_every_state_and_command_has_exactly_one_rule() -> None:
    assert {(r.state, r.command) for r in RULES} == set(EXPECTED)
    assert len(RULES) == len(State) * len(Command)


@pytest.mark.parametrize(("state", "command"), sorted(EXPECTED, key=str))
def test_transition(state: State, command: Command) -> None:
    outcome, to, words = EXPECTED[(state, command)]
    decision = decide(state, command, FACTS)
    assert (decision.outcome, decision.to) == (outcome, to)
    for word in words:
        assert word in decision.message, (word, decision.message)
    assert "{" not in decision.message  # every placeholder filled
    if outcome is Out.refused:
        with pytest.raises(TransitionRefused) as refused:
            require(state, command, FACTS)
        assert refused.value.decision == decision
        assert not decision.ok
    else:
        assert require(state, command, FACTS) == decision
        assert decision.ok


def test_the_documented_path() -> None:
    """absent -> install -> up -> down -> maintenance enter -> migrate -> exit -> delete."""
    state = S.absent
    for command in (C.install, C.up, C.down, C.maintenance_enter, C.migrate,
                    C.maintenance_exit, C.maintenance_enter, C.delete):
        decision = require(state, command, FACTS)
        assert decision.allowed, decision
        state = decision.to
    assert state is S.absent


def test_brokers_refuse_a_schema_that_is_not_theirs() -> None:
    behind = Facts("kawa-data", "", (), schema_version=2, code_schema_version=3)
    decision = decide(S.installed, C.up, behind)
    assert decision.outcome is Out.refused
    assert "schema version 2" in decision.message and "needs 3" in decision.message
    assert "`kawa maintenance enter`, `kawa migrate`, `kawa maintenance exit`" in decision.message

    ahead = Facts("kawa-data", "", (), schema_version=4, code_schema_version=3)
    decision = decide(S.installed, C.up, ahead)
    assert decision.outcome is Out.refused
    assert "newer than this kawa" in decision.message and "upgrade kawa" in decision.message


def test_maintenance_is_not_left_with_the_schema_behind() -> None:
    behind = Facts("kawa-data", "", (), schema_version=2, code_schema_version=3)
    decision = decide(S.maintenance, C.maintenance_exit, behind)
    assert decision.outcome is Out.refused
    assert "`kawa migrate`" in decision.message
    assert decide(S.maintenance, C.migrate, behind).allowed


def test_migrate_refuses_a_schema_from_the_future() -> None:
    ahead = Facts("kawa-data", "", (), schema_version=9, code_schema_version=3)
    assert decide(S.maintenance, C.migrate, ahead).outcome is Out.refused


def test_guards_only_refine_allowed_rules() -> None:
    allowed = {(r.state, r.command) for r in RULES if r.outcome is Out.allowed}
    assert {(g.state, g.command) for g in GUARDS} <= allowed
