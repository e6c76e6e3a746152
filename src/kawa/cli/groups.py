"""`kawa group`: consumer groups of a running broker, over the Kafka protocol.

Like Kafka's kafka-consumer-groups, and through a real Kafka client
(confluent-kafka's AdminClient), so the CLI takes the same path any client
does: list, describe with lag (committed offset vs. high watermark), reset
the offsets of an empty group, delete a group.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

TIMEOUT_S = 10.0

_STATE_NAMES = {
    "UNKNOWN": "Unknown",
    "PREPARING_REBALANCING": "PreparingRebalance",
    "COMPLETING_REBALANCING": "CompletingRebalance",
    "STABLE": "Stable",
    "DEAD": "Dead",
    "EMPTY": "Empty",
}

bootstrap_option = click.option(
    "--bootstrap-server", default="127.0.0.1:9092", show_default=True,
    help="HOST:PORT of a kawa (or Kafka) broker.",
)
output_option = click.option(
    "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)


@click.group()
def group() -> None:
    """Consumer groups: list, describe (with lag), reset offsets, delete."""


def _admin(bootstrap: str) -> Any:
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:  # pragma: no cover - depends on the installation
        raise click.ClickException(
            "`kawa group` needs confluent-kafka: pip install confluent-kafka"
        ) from None
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(TIMEOUT_S * 1000)})


@contextmanager
def _kafka_errors(bootstrap: str) -> Iterator[None]:
    from confluent_kafka import KafkaException

    try:
        yield
    except KafkaException as e:
        error = e.args[0] if e.args else e
        text = error.str() if hasattr(error, "str") else str(error)
        raise click.ClickException(f"{bootstrap}: {text}") from None


def _state(state: Any) -> str:
    name = getattr(state, "name", str(state))
    return _STATE_NAMES.get(name, name)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _describe(admin: Any, group_id: str) -> Any:
    return admin.describe_consumer_groups([group_id], request_timeout=TIMEOUT_S)[group_id].result()


def _exists(description: Any) -> bool:
    return _state(description.state) not in ("Dead", "Unknown")


# -- list ---------------------------------------------------------------------------


@group.command("list")
@bootstrap_option
@output_option
def list_groups(bootstrap_server: str, output: str) -> None:
    """Every group the broker knows, with its state."""
    admin = _admin(bootstrap_server)
    with _kafka_errors(bootstrap_server):
        result = admin.list_consumer_groups(request_timeout=TIMEOUT_S).result()
    groups = sorted(result.valid, key=lambda g: g.group_id)
    rows = [
        {"group": g.group_id, "state": _state(g.state), "simple": g.is_simple_consumer_group}
        for g in groups
    ]
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
    elif rows:
        click.echo(_table(["GROUP", "STATE", "SIMPLE"],
                          [[r["group"], r["state"], "yes" if r["simple"] else "no"] for r in rows]))
    else:
        click.echo("no consumer groups")


# -- describe -------------------------------------------------------------------------


def _end_offsets(
    admin: Any, partitions: list[tuple[str, int]], spec: Any
) -> dict[tuple[str, int], int]:
    from confluent_kafka import TopicPartition

    if not partitions:
        return {}
    futures = admin.list_offsets(
        {TopicPartition(t, p): spec for t, p in partitions}, request_timeout=TIMEOUT_S
    )
    return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}


def describe_group(admin: Any, group_id: str) -> dict[str, Any]:
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import OffsetSpec

    description = _describe(admin, group_id)
    committed_tps = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group_id)], request_timeout=TIMEOUT_S
    )[group_id].result().topic_partitions
    committed = {(tp.topic, tp.partition): tp.offset for tp in committed_tps if tp.offset >= 0}
    owner: dict[tuple[str, int], Any] = {}
    members = []
    for m in description.members:
        assigned = [(tp.topic, tp.partition) for tp in m.assignment.topic_partitions]
        for tp in assigned:
            owner[tp] = m
        members.append({
            "member_id": m.member_id, "instance_id": m.group_instance_id,
            "client_id": m.client_id, "host": m.host,
            "partitions": [{"topic": t, "partition": p} for t, p in sorted(assigned)],
        })
    partitions = sorted(set(committed) | set(owner))
    ends = _end_offsets(admin, partitions, OffsetSpec.latest())
    rows = []
    for tp in partitions:
        end = ends.get(tp)
        offset = committed.get(tp)
        member = owner.get(tp)
        rows.append({
            "topic": tp[0], "partition": tp[1], "committed_offset": offset, "end_offset": end,
            "lag": end - offset if end is not None and offset is not None else None,
            "member_id": member.member_id if member else None,
            "client_id": member.client_id if member else None,
            "host": member.host if member else None,
        })
    return {
        "group": group_id,
        "exists": _exists(description) or bool(committed),
        "state": _state(description.state),
        "assignor": description.partition_assignor or None,
        "members": members,
        "partitions": rows,
    }


@group.command("describe")
@click.argument("group_id")
@bootstrap_option
@output_option
def describe(group_id: str, bootstrap_server: str, output: str) -> None:
    """Members and, per partition, committed offset, end offset and lag."""
    admin = _admin(bootstrap_server)
    with _kafka_errors(bootstrap_server):
        info = describe_group(admin, group_id)
    if not info["exists"]:
        raise click.ClickException(f"consumer group {group_id!r} does not exist")
    if output == "json":
        click.echo(json.dumps(info, indent=2))
        return
    total = sum(r["lag"] or 0 for r in info["partitions"])
    click.echo(f"group {group_id}: {info['state']}, {len(info['members'])} members, "
               f"assignor {info['assignor'] or '-'}, total lag {total}")
    if info["partitions"]:
        click.echo()
        click.echo(_table(
            ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER", "CLIENT", "HOST"],
            [[r["topic"], r["partition"], r["committed_offset"], r["end_offset"], r["lag"],
              r["member_id"], r["client_id"], r["host"]] for r in info["partitions"]],
        ))


# -- reset-offsets ----------------------------------------------------------------------


def _parse_datetime(value: str) -> int:
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected ISO 8601, e.g. 2026-11-23T10:00:00 or 2026-11-23T10:00:00+01:00",
            param_hint="--to-datetime",
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time, as kafka-consumer-groups does
    return int(moment.timestamp() * 1000)


@group.command("reset-offsets")
@click.argument("group_id")
@click.option("--topic", required=True, help="Topic whose partitions are reset (all of them).")
@click.option("--to-earliest", is_flag=True, help="The first offset still in the log.")
@click.option("--to-latest", is_flag=True, help="The end of the log (skip everything there).")
@click.option("--to-offset", type=int, default=None, help="This offset (clamped to the log).")
@click.option("--to-datetime", default=None, help="The first record at or after this ISO time.")
@click.option("--dry-run", is_flag=True, help="Show the new offsets without committing them.")
@bootstrap_option
@output_option
def reset_offsets(group_id: str, topic: str, to_earliest: bool, to_latest: bool,
                  to_offset: int | None, to_datetime: str | None, dry_run: bool,
                  bootstrap_server: str, output: str) -> None:
    """Set a group's committed offsets on a topic. The group must have no members."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    chosen = [to_earliest, to_latest, to_offset is not None, to_datetime is not None]
    if sum(chosen) != 1:
        raise click.UsageError(
            "give exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime"
        )
    timestamp = _parse_datetime(to_datetime) if to_datetime is not None else None
    admin = _admin(bootstrap_server)
    with _kafka_errors(bootstrap_server):
        description = _describe(admin, group_id)
        if description.members:
            raise click.ClickException(
                f"consumer group {group_id!r} has {len(description.members)} active members "
                f"(state {_state(description.state)}); offsets can only be reset while it is "
                "empty: stop its consumers first"
            )
        # All topics: naming one in a metadata request could auto-create it.
        metadata = admin.list_topics(timeout=TIMEOUT_S).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise click.ClickException(f"topic {topic!r} does not exist")
        partitions = [(topic, p) for p in sorted(metadata.partitions)]
        earliest = _end_offsets(admin, partitions, OffsetSpec.earliest())
        latest = _end_offsets(admin, partitions, OffsetSpec.latest())
        if timestamp is not None:
            found = _end_offsets(admin, partitions, OffsetSpec.for_timestamp(timestamp))
        targets = {}
        for tp in partitions:
            if to_earliest:
                target = earliest[tp]
            elif to_latest:
                target = latest[tp]
            elif to_offset is not None:
                target = min(max(to_offset, earliest[tp]), latest[tp])
            else:
                target = found[tp] if found[tp] >= 0 else latest[tp]
            targets[tp] = target
        if not dry_run:
            request = ConsumerGroupTopicPartitions(
                group_id, [TopicPartition(t, p, off) for (t, p), off in targets.items()]
            )
            result = admin.alter_consumer_group_offsets(
                [request], request_timeout=TIMEOUT_S
            )[group_id].result()
            failed = [tp for tp in result.topic_partitions if tp.error is not None]
            if failed:
                raise click.ClickException(
                    "; ".join(f"{tp.topic}[{tp.partition}]: {tp.error.str()}" for tp in failed)
                )
    rows = [{"topic": t, "partition": p, "new_offset": off} for (t, p), off in targets.items()]
    if output == "json":
        result = {"group": group_id, "dry_run": dry_run, "partitions": rows}
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(_table(["TOPIC", "PARTITION", "NEW-OFFSET"],
                      [[r["topic"], r["partition"], r["new_offset"]] for r in rows]))
    if dry_run:
        click.echo("(dry run: nothing committed)")


# -- delete ---------------------------------------------------------------------------


@group.command("delete")
@click.argument("group_id")
@bootstrap_option
def delete(group_id: str, bootstrap_server: str) -> None:
    """Delete an empty group and its committed offsets."""
    from confluent_kafka import KafkaError, KafkaException

    admin = _admin(bootstrap_server)
    try:
        admin.delete_consumer_groups([group_id], request_timeout=TIMEOUT_S)[group_id].result()
    except KafkaException as e:
        error = e.args[0]
        code = error.code() if hasattr(error, "code") else None
        if code == KafkaError.NON_EMPTY_GROUP:
            raise click.ClickException(
                f"consumer group {group_id!r} has active members: stop its consumers first"
            ) from None
        if code == KafkaError.GROUP_ID_NOT_FOUND:
            raise click.ClickException(f"consumer group {group_id!r} does not exist") from None
        raise click.ClickException(f"{bootstrap_server}: {error}") from None
    click.echo(f"deleted consumer group {group_id}")
