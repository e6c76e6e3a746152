"""Brokers in the background and stopping them: `kawa up --detach` and `kawa down`.

--detach starts `kawa up` (the same arguments, without --detach) in a session
of its own, logging to ``<data_dir>/broker-<id>.log``, and returns once the
broker listens, or fails with the reason from its log. `kawa down` sends
SIGTERM to every live broker of the deployment on this host (named by the
store's rows and the pid files), waits, and reports each one.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from kawa.deploy import operations, processes
from kawa.deploy.launcher import READY_MARKER, prepare
from kawa.deploy.lifecycle import Command, State, require
from kawa.deploy.operations import HOSTNAME, BrokerView, OperationError
from kawa.deploy.settings import Resolved
from kawa.metadata.registry import StoreUnavailable

log = logging.getLogger("kawa.deploy")

DETACH_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Detached:
    pid: int
    log_path: Path
    ready_line: str
    installed: list[str]


def start_detached(resolved: Resolved, child_args: list[str],
                   on_wait_line: Callable[[str], None] = lambda line: None) -> Detached:
    """`kawa up --detach`: start `kawa up <child_args>` in its own session, logging to
    <data_dir>/broker-<id>.log, and return once it listens (or fail with its log's tail)."""
    installed = prepare(resolved)
    s = resolved.settings
    s.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = processes.log_file(s.data_dir, s.broker_id)
    offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kawa", *child_args], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    budget_s = s.store_wait_timeout_ms / 1000 + DETACH_START_TIMEOUT_S
    deadline = time.monotonic() + budget_s
    echoed = 0
    while True:
        code = proc.poll()
        with open(log_path, "rb") as f:
            f.seek(offset)
            lines = f.read().decode("utf-8", "replace").splitlines()
        waits = [line for line in lines if "waiting for metadata store" in line]
        for line in waits[echoed:]:
            on_wait_line(line)
        echoed = len(waits)
        ready = next((line for line in lines if READY_MARKER in line), None)
        if ready is not None:
            return Detached(proc.pid, log_path, ready, installed)
        if code is not None:
            errors = [line for line in lines if line.startswith("Error: ")]
            detail = "\n".join(errors) if errors else "\n".join(lines[-15:])
            raise OperationError(
                f"the broker exited with code {code} while starting:\n{detail}\n"
                f"(its log: {log_path})"
            )
        if time.monotonic() > deadline:
            raise OperationError(
                f"the broker (pid {proc.pid}) did not start listening within {budget_s:.0f}s; "
                "it is still "
                f"trying: see {log_path}, and stop it with `kawa down{resolved.cli_hint()}`"
            )
        time.sleep(0.05)


# -- kawa down -----------------------------------------------------------------


@dataclass(frozen=True)
class StopReport:
    broker: BrokerView
    stopped: bool
    seconds: float
    killed: bool = False
    note: str = ""


def stop_brokers(resolved: Resolved, timeout_s: float, force: bool) -> tuple[str, list[StopReport]]:
    """SIGTERM every live broker of this deployment on this host, wait, report.
    Returns (message, reports); raises TransitionRefused when down is refused."""
    try:
        observation = operations.observe(resolved)
    except StoreUnavailable as e:  # locked: the pid files still say whom to signal
        log.warning("%s; stopping the brokers named by pid files", e)
        observation = operations.observe_snapshot(resolved, None)
    if observation.state is State.absent and observation.live:
        observation = replace(observation, state=State.running)  # waiting for their store
    decision = require(observation.state, Command.down, observation.facts)
    if not decision.allowed:
        return decision.message, []
    local = {b.pid: b for b in observation.live if b.host == HOSTNAME}
    reports = [StopReport(b, False, 0.0, note=f"on host {b.host}: run `kawa down` there")
               for b in observation.live if b.host != HOSTNAME]
    started = time.monotonic()
    for pid in local:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    pending = dict(local)
    deadline = started + timeout_s
    while pending and time.monotonic() < deadline:
        for pid in [p for p in pending if not processes.pid_alive(p)]:
            reports.append(StopReport(pending.pop(pid), True, time.monotonic() - started))
        time.sleep(0.05)
    for pid, broker in pending.items():
        if force:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            operations.mark_dead(resolved, broker.broker_id, pid)
            reports.append(StopReport(broker, True, time.monotonic() - started, killed=True,
                                      note="killed (SIGKILL); recovery runs at its next start"))
        else:
            reports.append(StopReport(
                broker, False, time.monotonic() - started,
                note=f"still running after {timeout_s:.0f}s: wait longer with --timeout, or "
                     f"`kawa down --force` to kill it (recovery runs at its next start)",
            ))
    return decision.message, sorted(reports, key=lambda r: r.broker.broker_id)
