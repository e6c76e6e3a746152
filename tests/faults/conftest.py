"""Fixtures for the fault tests: kawa broker processes we can stop, kill -9 and restart.

``spawn_broker(*flags, data_dir=None, memory_limit_bytes=None, check_tracebacks=True)``
starts ``python -m kawa up`` on a free 127.0.0.1 port with its own data directory
(or the given one) and returns a ``KawaProcess`` (see kawaproc.py). Every process is
stopped at the end of the test, and the test fails if any of its logs holds a Python
traceback: kawa logs expected faults as one-line warnings, so a traceback is an
unhandled bug. ``spawn_module_broker`` is the same for a broker shared by a module.

Kept apart from tests/compat's fixture on purpose: these tests kill and restart
brokers and edit their files, and need nothing the compat suite provides.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kawaproc import KawaProcess


class Spawner:
    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self.brokers: list[KawaProcess] = []

    def __call__(self, *flags: str, data_dir: Path | None = None, name: str = "kawa",
                 memory_limit_bytes: int | None = None,
                 check_tracebacks: bool = True) -> KawaProcess:
        if data_dir is None:
            data_dir = self._tmp.mktemp(f"{name}-data")
        broker = KawaProcess(data_dir, self._tmp.mktemp(f"{name}-logs"), flags,
                             f"{name}{len(self.brokers)}", memory_limit_bytes, check_tracebacks)
        self.brokers.append(broker)
        return broker.start()

    def stop_all(self) -> None:
        for broker in self.brokers:
            broker.stop()

    def check_no_tracebacks(self) -> None:
        for broker in self.brokers:
            found = broker.tracebacks() if broker.check_tracebacks else []
            if found:
                pytest.fail(f"{broker.name} logged {len(found)} Python traceback(s) "
                            f"(an unhandled bug); the first:\n{found[0]}", pytrace=False)


@pytest.fixture
def spawn_broker(tmp_path_factory):
    spawner = Spawner(tmp_path_factory)
    yield spawner
    spawner.stop_all()
    spawner.check_no_tracebacks()


@pytest.fixture(scope="module")
def spawn_module_broker(tmp_path_factory):
    """Like spawn_broker, for brokers shared by a whole test module."""
    spawner = Spawner(tmp_path_factory)
    yield spawner
    spawner.stop_all()
    spawner.check_no_tracebacks()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the tail of every involved broker's log to a failing test's report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for value in getattr(item, "funcargs", {}).values():
        brokers = value.brokers if isinstance(value, Spawner) else (
            [value] if isinstance(value, KawaProcess) else [])
        for broker in brokers:
            report.sections.append((f"{broker.name} log tail", broker.log_text()[-5000:]))
