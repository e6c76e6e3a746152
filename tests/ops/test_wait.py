"""Waiting for the metadata store (kawa.metadata.wait), on an injected clock."""

from __future__ import annotations

import logging
import random

import pytest

from kawa.metadata.registry import StoreUnavailable
from kawa.metadata.wait import Backoff, StoreWaitTimedOut, wait_for_store


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_backoff_doubles_up_to_the_cap() -> None:
    delays = Backoff(initial_s=0.1, maximum_s=1.0, jitter=0).delays()
    assert [round(next(delays), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    jittered = Backoff(initial_s=1.0, jitter=0.2).delays(random.Random(1))
    assert all(0.8 <= next(jittered) <= 1.2 for _ in range(1))


def test_waits_with_a_log_line_then_returns_the_store(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    attempts = iter([StoreUnavailable("db", "locked by another process", "stop it"),
                     StoreUnavailable("db", "locked by another process", "stop it"), "store"])

    def open_store() -> str:
        item = next(attempts)
        if isinstance(item, Exception):
            raise item
        return item

    with caplog.at_level(logging.INFO):
        store = wait_for_store(open_store, 30, logging.getLogger("t"), clock=lambda: clock.now,
                               sleep=clock.sleep, backoff=Backoff(jitter=0))
    assert store == "store"
    assert clock.sleeps == [0.1, 0.2]
    waits = [r.getMessage() for r in caplog.records if "waiting for metadata store" in r.message]
    assert waits[0] == ("waiting for metadata store at db: locked by another process (stop it); "
                        "retrying in 0.1s")
    assert "reachable after" in caplog.records[-1].getMessage()


def test_gives_up_after_the_budget() -> None:
    clock = Clock()

    def never() -> None:
        raise StoreUnavailable("db", "no store file", missing=True)

    with pytest.raises(StoreWaitTimedOut) as e:
        wait_for_store(never, 2.0, logging.getLogger("t"), clock=lambda: clock.now,
                       sleep=clock.sleep, backoff=Backoff(jitter=0))
    assert e.value.last.missing and e.value.waited_s == pytest.approx(2.0)
    assert sum(clock.sleeps) == pytest.approx(2.0)


def test_other_errors_are_not_waited_out() -> None:
    def corrupt() -> None:
        raise ValueError("not a database")

    with pytest.raises(ValueError):
        wait_for_store(corrupt, 30, logging.getLogger("t"), sleep=lambda s: None)
