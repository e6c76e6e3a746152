"""Helpers for the consumer-group tests: topics, producing, bounded waits, and
consumer subprocesses (``consumer_proc.py``) whose events are read line by line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import waiting
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

DEADLINE_S = 30.0
SESSION_MS = 6000
CONSUMER_PROC = Path(__file__).with_name("consumer_proc.py")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, partitions: int, name: str | None = None) -> str:
    name = name or unique("t")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(DEADLINE_S)
    wait_until(
        lambda: len(admin.list_topics(name, timeout=5).topics[name].partitions) == partitions,
        f"topic {name} has {partitions} partitions",
    )
    return name


def produce(bootstrap: str, topic: str, partitions: int, count: int, start: int = 0,
            timestamp_ms: int | None = None) -> None:
    """`count` records "v<i>" for i in start..start+count, round-robin over partitions."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(start, start + count):
        extra = {"timestamp": timestamp_ms} if timestamp_ms is not None else {}
        p.produce(topic, value=f"v{i}".encode(), key=str(i).encode(), partition=i % partitions,
                  **extra)
    assert p.flush(DEADLINE_S) == 0


def wait_until(check: Callable[[], Any], what: str, timeout: float = DEADLINE_S,
               interval: float = 0.1) -> Any:
    return waiting.wait_until(check, what, timeout, interval)


class ConsumerProcess:
    """A confluent-kafka consumer in its own process (so it can be kill -9'd).

    It commits each record synchronously after "processing" it (printing it), and
    reports assignments, revocations and records as JSON lines, read here by a thread.
    """

    def __init__(self, bootstrap: str, group: str, topic: str, name: str,
                 *extra: str) -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        argv = [sys.executable, str(CONSUMER_PROC), "--bootstrap", bootstrap, "--group", group,
                "--topic", topic, "--name", name, "--session-ms", str(SESSION_MS), *extra]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr: list[str] = []
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            event["t"] = time.monotonic()
            with self._lock:
                self.events.append(event)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.decode(errors="replace"))

    def stderr_tail(self, lines: int = 30) -> str:
        return "".join(self._stderr[-lines:])

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def records(self) -> list[tuple[int, int]]:
        return [(e["p"], e["o"]) for e in self.snapshot() if e["ev"] == "record"]

    def assignment(self) -> set[int]:
        """Partitions owned now, from the assign/revoke events."""
        owned: set[int] = set()
        for e in self.snapshot():
            if e["ev"] == "assigned":
                owned |= set(e["partitions"])
            elif e["ev"] == "revoked":
                owned -= set(e["partitions"])
        return owned

    def count(self, kind: str) -> int:
        return sum(1 for e in self.snapshot() if e["ev"] == kind)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = DEADLINE_S) -> int:
        """SIGTERM: the consumer closes (and leaves the group)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(DEADLINE_S)
        self._reader.join(5)

    def __repr__(self) -> str:
        return f"<ConsumerProcess {self.name} pid={self.proc.pid}>"


def settled_assignment(consumers: list[ConsumerProcess], partitions: int) -> bool:
    """Every partition owned by exactly one of these consumers."""
    owned = [c.assignment() for c in consumers]
    union = set().union(*owned)
    return union == set(range(partitions)) and sum(len(o) for o in owned) == partitions


def generations(log_text: str, group: str) -> list[int]:
    """Generations the broker logged for `group` ("group 'G': generation N with ...")."""
    out = []
    marker = f"group {group!r}: generation "
    for line in log_text.splitlines():
        at = line.find(marker)
        if at >= 0 and " with " in line:
            out.append(int(line[at + len(marker):].split()[0]))
    return out
