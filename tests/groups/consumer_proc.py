"""A confluent-kafka group consumer run as a subprocess by the group tests.

Prints JSON lines: {"ev": "assigned"|"revoked", "partitions": [...]},
{"ev": "record", "p": partition, "o": offset}, {"ev": "commit_failed", ...},
{"ev": "closed"}. Each record is printed ("processed") and then its offset is
committed synchronously, so a record is re-delivered only if the process dies
between the two. SIGTERM closes the consumer cleanly (it leaves the group).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaException


def emit(**event: object) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--session-ms", type=int, default=6000)
    ap.add_argument("--instance-id", default=None)
    ap.add_argument("--delay-ms", type=int, default=0, help="processing time per record")
    ap.add_argument("--assignor", default="range,roundrobin",
                    help="partition.assignment.strategy (e.g. cooperative-sticky)")
    args = ap.parse_args()

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": args.name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": args.session_ms,
        "heartbeat.interval.ms": 500,
        "topic.metadata.refresh.interval.ms": 5000,
        "partition.assignment.strategy": args.assignor,
    }
    if args.instance_id:
        conf["group.instance.id"] = args.instance_id
    consumer = Consumer(conf)
    consumer.subscribe(
        [args.topic],
        on_assign=lambda c, ps: emit(ev="assigned", partitions=sorted(p.partition for p in ps)),
        on_revoke=lambda c, ps: emit(ev="revoked", partitions=sorted(p.partition for p in ps)),
        on_lost=lambda c, ps: emit(ev="revoked", lost=True,
                                   partitions=sorted(p.partition for p in ps)),
    )
    while not stopping:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            emit(ev="error", error=str(msg.error()))
            continue
        emit(ev="record", p=msg.partition(), o=msg.offset())
        if args.delay_ms:
            time.sleep(args.delay_ms / 1000)
        try:
            consumer.commit(message=msg, asynchronous=False)
        except KafkaException as e:
            emit(ev="commit_failed", p=msg.partition(), o=msg.offset(), error=str(e))
    consumer.close()
    emit(ev="closed")


if __name__ == "__main__":
    main()
