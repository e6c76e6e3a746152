"""Waiting for a metadata store that is not reachable yet, with backoff and a log line.

A broker may start before its store: the data directory is not mounted yet,
another process holds the SQLite file locked, PostgreSQL is still starting.
Instead of crashing it retries ``open_store`` until it succeeds or the wait
budget is spent, logging each wait ("waiting for metadata store at ...") so
an operator sees why nothing happens. Only ``StoreUnavailable`` is retried;
any other error (a corrupt file, a schema from the future) fails at once.

The loop knows nothing about SQLite: an engine only has to raise
``StoreUnavailable`` from its open function. Clock, sleep and jitter are
injected, so the loop is tested without waiting.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from kawa.metadata.registry import StoreUnavailable

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: initial, initial*factor, ... capped at maximum, with +-jitter."""

    initial_s: float = 0.1
    maximum_s: float = 5.0
    factor: float = 2.0
    jitter: float = 0.2

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        rng = rng or random.Random()
        delay = self.initial_s
        while True:
            yield delay * (1 + self.jitter * (2 * rng.random() - 1))
            delay = min(delay * self.factor, self.maximum_s)


class StoreWaitTimedOut(Exception):
    def __init__(self, last: StoreUnavailable, waited_s: float) -> None:
        super().__init__(f"{last} - still not reachable after waiting {waited_s:.1f}s")
        self.last = last
        self.waited_s = waited_s


def wait_for_store(
    open_store: Callable[[], T],
    timeout_s: float,
    log: logging.Logger,
    *,
    backoff: Backoff = Backoff(),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """``open_store()``, retried on StoreUnavailable for up to ``timeout_s`` seconds."""
    started = clock()
    delays = backoff.delays(rng)
    waited = False
    while True:
        try:
            store = open_store()
        except StoreUnavailable as e:
            remaining = started + timeout_s - clock()
            if remaining <= 0:
                raise StoreWaitTimedOut(e, clock() - started) from e
            delay = min(next(delays), remaining)
            log.warning(
                "waiting for metadata store at %s: %s%s; retrying in %.1fs",
                e.where, e.reason, f" ({e.hint})" if e.hint else "", delay,
            )
            waited = True
            sleep(delay)
            continue
        if waited:
            log.info("metadata store reachable after %.1fs", clock() - started)
        return store
