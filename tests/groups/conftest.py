"""Fixtures for the consumer-group tests: a kawa broker whose first rebalance waits
only briefly (``--group-initial-rebalance-delay-ms``), shared by a module.

Tests that restart or kill brokers use ``broker_factory`` (tests/conftest.py).
"""

from __future__ import annotations

import pytest
from compat.broker import BrokerProcess, target

INITIAL_DELAY_MS = 300
GROUP_FLAGS = ("--group-initial-rebalance-delay-ms", str(INITIAL_DELAY_MS))


@pytest.fixture(autouse=True)
def _kawa_only():
    if target() != "kawa":
        pytest.skip("consumer-group tests start kawa with kawa-only flags")


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory):
    if target() != "kawa":
        pytest.skip("consumer-group tests start kawa with kawa-only flags")
    b = BrokerProcess(tmp_path_factory.mktemp("groups-data"),
                      tmp_path_factory.mktemp("groups-logs"), GROUP_FLAGS, name="groups-broker")
    b.start()
    yield b
    b.stop()
