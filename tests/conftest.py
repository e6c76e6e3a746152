"""Shared fixtures: a real broker process (kawa, or tansu with KAWA_TEST_TARGET=tansu).

``broker``          session-scoped BrokerProcess: .bootstrap, .data_dir, .proc,
                    .restart(), .kill9(), .start(), .stop(), .log_tail()
``broker_factory``  call with extra kawa flags for a fresh broker (own data dir),
                    stopped at the end of the test.
A test that leaves the shared broker dead without asking for it, or during which a
broker logs a Python traceback (an unhandled bug, even if the client recovered), errors
at teardown; every failing test's report carries the tail of the brokers' logs.
"""

from __future__ import annotations

import pytest
from compat.broker import BrokerProcess, UnsupportedByTarget


def pytest_configure(config):
    config.addinivalue_line("markers", "heavy: large-volume test (tens of seconds); "
                            "deselect with -m 'not heavy'")


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    b = BrokerProcess(tmp_path_factory.mktemp("broker-data"),
                      tmp_path_factory.mktemp("broker-logs"), name="shared-broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture(autouse=True)
def _shared_broker_health(request):
    """Restart the shared broker if an earlier test left it down; blame a crash on its test."""
    if "broker" not in request.fixturenames:
        yield
        return
    b: BrokerProcess = request.getfixturevalue("broker")
    if not b.alive():
        b.start()
    mark = b.log_mark()
    yield
    if b.died_unexpectedly():
        pytest.fail(f"shared broker died during the test (exit code {b.proc.returncode}); "
                    "its log tail is in the report", pytrace=False)
    _fail_on_tracebacks(b, mark)


def _fail_on_tracebacks(b: BrokerProcess, mark=(0, 0)) -> None:
    found = b.tracebacks_since(mark)
    if found:
        pytest.fail(f"{b.name} logged {len(found)} Python traceback(s) during the test; "
                    f"the first:\n{found[0]}", pytrace=False)


class BrokerFactory:
    def __init__(self, tmp_path_factory):
        self._tmp = tmp_path_factory
        self.brokers: list[BrokerProcess] = []

    def __call__(self, *extra_args: str, name: str = "broker") -> BrokerProcess:
        try:
            b = BrokerProcess(self._tmp.mktemp(f"{name}-data"), self._tmp.mktemp(f"{name}-logs"),
                              extra_args, name=f"{name}{len(self.brokers)}")
        except UnsupportedByTarget as e:
            pytest.skip(str(e))
        self.brokers.append(b)
        return b.start()

    def stop_all(self) -> None:
        for b in self.brokers:
            b.stop()


@pytest.fixture
def broker_factory(tmp_path_factory):
    f = BrokerFactory(tmp_path_factory)
    yield f
    f.stop_all()
    for b in f.brokers:
        _fail_on_tracebacks(b)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    seen: list[BrokerProcess] = []
    for v in getattr(item, "funcargs", {}).values():
        if isinstance(v, BrokerProcess):
            seen.append(v)
        elif isinstance(v, BrokerFactory):
            seen.extend(v.brokers)
    for b in seen:
        rep.sections.append((f"{b.name} log tail [{rep.when}]", b.log_tail()))
