"""The alert-broker shape: 100 consumers, each in its own group, on one topic.

Runs the same fan-out twice against one fresh kawa broker and prints them side
by side: once with the consumers in consumer groups (subscribe, auto-commit
every second: JoinGroup/SyncGroup/Heartbeat/OffsetCommit traffic on the
broker), once without (assign from the end, no group traffic). A producer
paces `--rate` records/s of `--size` bytes for `--seconds`; every consumer
reads every record. Reported: delivered records/s across all consumers,
produce→consume latency p50/p99/max, and broker CPU seconds.

    python bench/groups.py [--consumers 100] [--rate 200] [--seconds 10]

Results go to bench/results/groups-<stamp>.{json,md}. Only same-run ratios
count on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

RESULTS = Path(__file__).parent / "results"


@dataclass
class Run:
    mode: str
    consumers: int
    produced: int
    delivered: int
    delivered_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    broker_cpu_s: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_broker(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    log = open(data_dir.parent / "kawa.log", "wb")  # noqa: SIM115 - lives as long as the broker
    proc = subprocess.Popen(
        [sys.executable, "-m", "kawa", "up", "--listen", f"127.0.0.1:{port}",
         "--data-dir", str(data_dir), "--group-initial-rebalance-delay-ms", "0"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("kawa did not start; see kawa.log")


def _consumers(bootstrap: str, topic: str, n: int, grouped: bool, tag: str) -> list[Consumer]:
    out = []
    for i in range(n):
        conf = {"bootstrap.servers": bootstrap, "group.id": f"{tag}-{i}",
                "enable.auto.commit": grouped, "auto.offset.reset": "latest",
                "fetch.wait.max.ms": 100}
        c = Consumer(conf)
        if grouped:
            c.subscribe([topic])
        else:
            c.assign([TopicPartition(topic, 0, OFFSET_END)])
        out.append(c)
    return out


def _run(bootstrap: str, pid: int, args: argparse.Namespace, grouped: bool) -> Run:
    mode = "groups" if grouped else "no groups"
    topic = f"alerts-{'g' if grouped else 'a'}-{int(time.time())}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    consumers = _consumers(bootstrap, topic, args.consumers, grouped, topic)
    # Let every consumer join/assign and reach the end before producing.
    settle_deadline = time.monotonic() + 60
    while time.monotonic() < settle_deadline:
        for c in consumers:
            c.poll(0)
        if all(c.assignment() for c in consumers):
            break
        time.sleep(0.05)
    time.sleep(1.0)
    for c in consumers:
        c.poll(0)

    latencies: list[float] = []
    delivered = 0
    stop = threading.Event()

    def consume() -> None:
        nonlocal delivered
        # Bounded: ends when stop is set (after the producer is done + drain time).
        while not stop.is_set():
            got = False
            for c in consumers:
                for m in c.consume(1000, 0):
                    if m.error():
                        continue
                    got = True
                    delivered += 1
                    latencies.append(time.time() - float(m.value()[:20].decode()))
            if not got:
                time.sleep(0.0005)

    cpu0 = _cpu_s(pid)
    reader = threading.Thread(target=consume)
    reader.start()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    padding = b"x" * max(0, args.size - 20)
    total = int(args.rate * args.seconds)
    start = time.monotonic()
    for i in range(total):
        delay = start + i / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        producer.produce(topic, f"{time.time():<20.6f}".encode() + padding)
        producer.poll(0)
    producer.flush(30)
    drain_deadline = time.monotonic() + 20
    while delivered < total * args.consumers and time.monotonic() < drain_deadline:
        time.sleep(0.05)
    elapsed = time.monotonic() - start
    stop.set()
    reader.join()
    cpu = _cpu_s(pid) - cpu0
    for c in consumers:
        c.close()
    ms = sorted(x * 1000 for x in latencies) or [float("nan")]
    return Run(
        mode, args.consumers, total, delivered, delivered / elapsed,
        statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))], ms[-1], cpu,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--consumers", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0, help="records/s produced")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kawa-groups-bench-") as work:
        proc, bootstrap = _start_broker(Path(work) / "data")
        try:
            runs = [_run(bootstrap, proc.pid, args, grouped) for grouped in (False, True)]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
    base, grouped = runs
    lines = [
        f"# groups benchmark — {time.strftime('%Y-%m-%dT%H:%M:%S%z')}",
        "",
        f"- machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}",
        (f"- {args.consumers} consumers on one topic, {args.rate:g} records/s × {args.seconds:g} s "
        f"of {args.size} B; command: `bench/groups.py`"),
        "",
        "| mode | delivered/s | p50 ms | p99 ms | max ms | broker CPU s | delivered / expected |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.mode} | {r.delivered_per_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.max_ms:.2f} | {r.broker_cpu_s:.2f} | {r.delivered:,} / {r.produced * r.consumers:,} |"
        )
    lines += ["", (f"groups / no groups: delivered/s {grouped.delivered_per_s / base.delivered_per_s:.2f}×, "
              f"p99 {grouped.p99_ms / base.p99_ms:.2f}×, broker CPU {grouped.broker_cpu_s / max(base.broker_cpu_s, 1e-9):.2f}×")]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"groups-{stamp}.md").write_text(text)
    (RESULTS / f"groups-{stamp}.json").write_text(json.dumps([asdict(r) for r in runs], indent=2))


if __name__ == "__main__":
    main()
