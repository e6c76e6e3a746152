"""`kawa produce` and `kawa consume`: records in and out through confluent-kafka.

produce: one record per stdin line (``--key``, ``--key-separator``, ``--header``),
idempotent, acks=all; reports where each partition's records landed.
consume: from the beginning, the end, an offset or a timestamp, with or
without a consumer group; prints partition, offset, timestamp, key and value
(``--output json``: one JSON object per line), stops after ``--count`` records
or ``--timeout`` seconds without one.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
import uuid
from contextlib import nullcontext
from typing import Any

import click

from kawa.cli.common import (
    CLIENT_TIMEOUT_S,
    Progress,
    admin_client,
    bootstrap,
    bootstrap_options,
    client_config,
    friendly_errors,
    kafka_errors,
    key_values,
    print_json,
)


def _auto_create_enabled(admin: Any, metadata: Any) -> bool | None:
    from confluent_kafka.admin import ConfigResource, ResourceType

    broker_id = next(iter(metadata.brokers), None)
    if broker_id is None:
        return None
    resource = ConfigResource(ResourceType.BROKER, str(broker_id))
    try:
        entries = admin.describe_configs([resource])[resource].result(CLIENT_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - an old broker may not answer; then let the produce say
        return None
    entry = entries.get("auto.create.topics.enable")
    return None if entry is None else entry.value == "true"


def _check_topic(admin: Any, name: str, producing: bool) -> dict[int, Any]:
    """The topic's partitions; a clear error when it does not exist (and won't be created)."""
    metadata = admin.list_topics(timeout=CLIENT_TIMEOUT_S)
    if name in metadata.topics:
        return dict(metadata.topics[name].partitions)
    if producing and _auto_create_enabled(admin, metadata) is not False:
        return {}
    raise click.ClickException(
        f"topic {name!r} does not exist"
        + (" and the broker does not create topics on first use" if producing else "")
        + f": create it with `kawa topic create {name}` (`kawa topic list` shows the topics)"
    )


@click.command()
@click.argument("topic_name", metavar="TOPIC")
@click.option("--key", "-k", help="Key of every record.")
@click.option("--key-separator", metavar="SEP",
              help="Each line is KEY<SEP>VALUE (lines without SEP have no key).")
@click.option("--header", "-H", "headers", multiple=True, metavar="KEY=VALUE",
              help="Header of every record (repeatable).")
@click.option("--partition", "-p", type=int, help="Write to this partition. [default: by key]")
@bootstrap_options
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.pass_context
@friendly_errors
def produce(ctx: click.Context, topic_name: str, key: str | None, key_separator: str | None,
            headers: tuple[str, ...], partition: int | None, output: str, **_: Any) -> None:
    """Produce each line of stdin as one record to TOPIC."""
    from confluent_kafka import Producer

    if key is not None and key_separator is not None:
        raise click.UsageError("--key and --key-separator exclude each other")
    header_list: list[tuple[str, str | bytes | None]] = list(
        key_values(headers, "--header").items())
    servers = bootstrap(ctx)
    admin = admin_client(servers)
    with kafka_errors(servers):
        _check_topic(admin, topic_name, producing=True)
    producer = Producer(client_config(servers, **{
        "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 30_000,
    }))
    landed: dict[int, list[int]] = {}
    errors: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(error.str())
        else:
            landed.setdefault(message.partition(), []).append(message.offset())

    sent = 0
    extra: dict[str, Any] = {} if partition is None else {"partition": partition}
    extra.update(headers=header_list or None, on_delivery=delivered)
    try:
        with kafka_errors(servers):
            for raw in sys.stdin.buffer:
                line = raw.rstrip(b"\n").rstrip(b"\r")
                record_key = key.encode() if key is not None else None
                if key_separator is not None:
                    k, sep, v = line.partition(key_separator.encode())
                    record_key, line = (k, v) if sep else (None, line)
                _produce_one(producer, topic_name, line, record_key, extra)
                sent += 1
    except KeyboardInterrupt:  # Ctrl-C while typing: deliver what was entered
        pass
    remaining = producer.flush(CLIENT_TIMEOUT_S * 3)
    partitions = {
        str(p): {"count": len(o), "first_offset": min(o), "last_offset": max(o)}
        for p, o in sorted(landed.items())
    }
    delivered_count = sum(len(o) for o in landed.values())
    if output == "json":
        print_json({"topic": topic_name, "records": delivered_count, "partitions": partitions,
                    "errors": errors})
    else:
        spans = ", ".join(f"partition {p} offsets {v['first_offset']}-{v['last_offset']}"
                          for p, v in partitions.items())
        click.echo(f"produced {delivered_count} records to {topic_name}"
                   + (f" ({spans})" if spans else ""))
    if errors or remaining:
        why = errors[0] if errors else f"{remaining} records still unsent after the timeout"
        raise click.ClickException(
            f"{sent - delivered_count} of {sent} records not produced to {topic_name}: {why}"
        )


def _produce_one(producer: Any, topic: str, value: bytes, key: bytes | None,
                 extra: dict[str, Any]) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, **extra)
            break
        except BufferError:  # the local queue is full: let deliveries drain
            producer.poll(0.1)
    producer.poll(0)


def _iso(ms: int) -> str:
    stamp = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "backslashreplace")


def _record(message: Any) -> dict[str, Any]:
    kind, ms = message.timestamp()
    return {
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": ms if kind else None,
        "key": _text(message.key()),
        "headers": {k: _text(v) for k, v in (message.headers() or [])},
        "value": _text(message.value()),
    }


def _line(record: dict[str, Any]) -> str:
    stamp = _iso(record["timestamp"]) if record["timestamp"] is not None else "-"
    key = "<none>" if record["key"] is None else record["key"]
    headers = ",".join(f"{k}:{v}" for k, v in record["headers"].items())
    return (f"partition={record['partition']} offset={record['offset']} timestamp={stamp} "
            f"key={key}" + (f" headers={headers}" if headers else "")
            + f" value={record['value'] if record['value'] is not None else '<null>'}")


@click.command()
@click.argument("topic_name", metavar="TOPIC")
@click.option("--from-beginning", "start", flag_value="beginning",
              help="Start at the first record kept.")
@click.option("--from-end", "start", flag_value="end", help="Only new records. [default]")
@click.option("--offset", type=click.IntRange(min=0),
              help="Start at this offset (every partition).")
@click.option("--timestamp", type=int, metavar="MS",
              help="Start at the first record at or after this time (ms since the epoch).")
@click.option("--partition", "-p", "partitions", type=int, multiple=True,
              help="Read only these partitions (repeatable). [default: all]")
@click.option("--group", "-g", help="Consumer group: commit what was read; without a start "
              "option, resume from the group's committed offsets.")
@click.option("--count", "-n", type=click.IntRange(min=1), help="Stop after COUNT records.")
@click.option("--timeout", type=float, metavar="SECONDS",
              help="Stop after SECONDS without a new record. [default: wait forever]")
@bootstrap_options
@click.option("--output", "-o", type=click.Choice(["text", "json", "value"]), default="text",
              show_default=True, help="text: partition, offset, timestamp, key, value per line; "
              "json: one JSON object per line; value: the value only.")
@click.pass_context
@friendly_errors
def consume(ctx: click.Context, topic_name: str, start: str | None, offset: int | None,
            timestamp: int | None, partitions: tuple[int, ...], group: str | None,
            count: int | None, timeout: float | None, output: str, **_: Any) -> None:
    """Print TOPIC's records."""
    from confluent_kafka import (
        OFFSET_BEGINNING,
        OFFSET_END,
        Consumer,
        KafkaException,
        TopicPartition,
    )

    if sum(x is not None for x in (start, offset, timestamp)) > 1:
        raise click.UsageError("give one of --from-beginning, --from-end, --offset, --timestamp")
    servers = bootstrap(ctx)
    admin = admin_client(servers)
    with kafka_errors(servers):
        known = _check_topic(admin, topic_name, producing=False)
    wanted = sorted(partitions) if partitions else sorted(known)
    unknown = [p for p in wanted if p not in known]
    if unknown:
        raise click.ClickException(f"topic {topic_name} has partitions 0-{len(known) - 1}, "
                                   f"not {unknown[0]}")
    consumer = Consumer(client_config(servers, **{
        "group.id": group or f"kawa-cli-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": group is not None,
        "auto.offset.reset": "earliest" if start == "beginning" else "latest",
        "enable.partition.eof": False,
    }))
    received = 0
    try:
        with kafka_errors(servers):
            if group is not None and start is None and offset is None and timestamp is None \
                    and not partitions:
                consumer.subscribe([topic_name])
            else:
                if timestamp is not None:
                    asked = [TopicPartition(topic_name, p, timestamp) for p in wanted]
                    found = consumer.offsets_for_times(asked, timeout=CLIENT_TIMEOUT_S)
                    tps = [TopicPartition(topic_name, tp.partition,
                                          tp.offset if tp.offset >= 0 else OFFSET_END)
                           for tp in found]
                else:
                    at = offset if offset is not None else (
                        OFFSET_BEGINNING if start == "beginning" else OFFSET_END)
                    tps = [TopicPartition(topic_name, p, at) for p in wanted]
                consumer.assign(tps)
            progress = Progress(count, f"consuming {topic_name}") if count else None
            last = time.monotonic()
            with progress or nullcontext():
                while count is None or received < count:
                    message = consumer.poll(0.2)
                    if message is None:
                        if timeout is not None and time.monotonic() - last > timeout:
                            break
                        continue
                    if message.error():
                        raise KafkaException(message.error())
                    last = time.monotonic()
                    received += 1
                    record = _record(message)
                    if output == "json":
                        click.echo(json.dumps(record))
                    elif output == "value":
                        click.echo(record["value"] or "")
                    else:
                        click.echo(_line(record))
                    if progress is not None:
                        progress.advance()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if output == "text":
        click.echo(f"consumed {received} records from {topic_name}", err=True)
    if count is not None and received < count:
        raise click.ClickException(
            f"received {received} of {count} records: none arrived for --timeout {timeout:g}s"
        )
