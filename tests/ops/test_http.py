"""/ping, /healthz and /metrics of a broker started by `kawa up --detach`, scraped while a
producer writes: the metrics agree with what was produced."""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Producer

from ops.helpers import Deployment, wait_until

pytestmark = pytest.mark.timeout(120)

RECORDS = 3000
PARTITIONS = 3


def get(d: Deployment, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{d.http_port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text: str, name: str, topic: str) -> dict[str, float]:
    """{partition label or "": value} of metric `name` for `topic`."""
    out = {}
    for line in text.splitlines():
        m = re.match(rf'{name}\{{([^}}]*)\}} (\S+)$', line)
        if m and f'topic="{topic}"' in m[1]:
            part = re.search(r'partition="(\d+)"', m[1])
            out[part[1] if part else ""] = float(m[2])
    return out


def test_ping_healthz_and_metrics_during_a_produce(running: Deployment) -> None:
    d = running
    assert get(d, "/ping") == (200, "pong\n")
    code, body = get(d, "/healthz")
    assert code == 200 and body.startswith("ok")
    assert get(d, "/nope")[0] == 404

    d.run("topic", "create", "metered", "--partitions", str(PARTITIONS), "-b", d.bootstrap).ok()
    done = threading.Event()

    def produce() -> None:
        p = Producer({"bootstrap.servers": d.bootstrap, "linger.ms": 2, "batch.num.messages": 50})
        for i in range(RECORDS):
            p.produce("metered", value=b"x" * 100, partition=i % PARTITIONS)
            p.poll(0)
        assert p.flush(30) == 0
        done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    seen: list[float] = []
    while not done.is_set():  # scrape while records arrive: counts only grow, never overshoot
        code, text = get(d, "/metrics")
        assert code == 200
        total = sum(samples(text, "kawa_records_in_total", "metered").values())
        assert total <= RECORDS and (not seen or total >= seen[-1])
        seen.append(total)
    thread.join(30)

    text = get(d, "/metrics")[1]
    assert samples(text, "kawa_records_in_total", "metered") == {"": RECORDS}
    ends = samples(text, "kawa_partition_log_end_offset", "metered")
    assert ends == {str(p): RECORDS / PARTITIONS for p in range(PARTITIONS)}
    highs = samples(text, "kawa_partition_high_watermark", "metered")
    assert highs == ends  # durability=sync: everything acknowledged is fsynced and visible
    assert "kawa_requests_total" in text and "kawa_connections" in text
    wait_until(lambda: d.status()["brokers"][0]["partitions_led"] >= PARTITIONS,
               "the heartbeat reports the new partitions")
