"""Fixtures for the operations tests (tests/ops): deployments in temporary directories,
run through the real `kawa` command; every broker they start is stopped at the end."""

from __future__ import annotations

import pytest

from ops.helpers import Deployment, kill_brokers_under


@pytest.fixture
def deployment(tmp_path):
    d = Deployment(tmp_path / "deployment")
    yield d
    kill_brokers_under(tmp_path)


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """A deployment installed and running (detached) for a whole module."""
    root = tmp_path_factory.mktemp("ops-running")
    d = Deployment(root / "deployment")
    d.run("install", *d.where).ok()
    d.up("--group-initial-rebalance-delay-ms", "200")
    yield d
    d.run("down", *d.where)
    kill_brokers_under(root)
