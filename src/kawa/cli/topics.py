"""`kawa topic | partition | broker`: resources of a running deployment, over the Kafka
protocol (confluent-kafka's AdminClient), so the CLI takes the path any client takes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

import click

from kawa.cli.common import (
    CLIENT_TIMEOUT_S,
    Progress,
    admin_client,
    bootstrap,
    bootstrap_options,
    data_dir_option,
    friendly_errors,
    kafka_error_text,
    kafka_errors,
    key_values,
    output_option,
    print_json,
    print_table,
    resolve,
)

CREATE_BATCH = 100  # topics per CreateTopics request in bulk creation


def _topic_names(admin: Any) -> dict[str, Any]:
    return admin.list_topics(timeout=CLIENT_TIMEOUT_S).topics


def _require_topics(admin: Any, names: Iterable[str]) -> dict[str, Any]:
    topics = _topic_names(admin)
    missing = [n for n in names if n not in topics]
    if missing:
        listed = ", ".join(repr(n) for n in missing)
        raise click.ClickException(
            f"topic {listed} does not exist: `kawa topic list` shows the topics, "
            f"`kawa topic create {missing[0]}` creates one"
        )
    return topics


def _range(value: str) -> range:
    match = re.fullmatch(r"(\d+)-(\d+)", value.strip())
    if not match or int(match[1]) > int(match[2]):
        raise click.BadParameter(f"{value!r}: expected FIRST-LAST, e.g. 0-10 (both included)",
                                 param_hint="--range")
    return range(int(match[1]), int(match[2]) + 1)


@click.group()
def topic() -> None:
    """Create, delete, list, describe and alter topics."""


@topic.command("create")
@click.argument("names", nargs=-1)
@click.option("--prefix", help="Bulk creation: topic names PREFIX<n> for n in --range.")
@click.option("--range", "number_range", metavar="FIRST-LAST",
              help="With --prefix: FIRST-LAST, both included (0-10 makes 11 topics).")
@click.option("--partitions", "-p", type=int, default=-1,
              help="Partitions per topic. [default: the broker's default_partitions]")
@click.option("--replication-factor", "-r", type=int, default=-1,
              help="Replicas per partition. [default: the broker's]")
@click.option("--config", "configs", multiple=True, metavar="KEY=VALUE",
              help="Topic config, e.g. --config retention.ms=60000 (repeatable).")
@click.option("--if-not-exists", is_flag=True, help="An existing topic is not an error.")
@bootstrap_options
@output_option
@click.pass_context
@friendly_errors
def topic_create(ctx: click.Context, names: tuple[str, ...], prefix: str | None,
                 number_range: str | None, partitions: int, replication_factor: int,
                 configs: tuple[str, ...], if_not_exists: bool, output: str, **_: Any) -> None:
    """Create topics: NAME..., or --prefix stream- --range 0-10 for many."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    if prefix is not None or number_range is not None:
        if prefix is None or number_range is None or names:
            raise click.UsageError("bulk creation takes --prefix and --range together, and no "
                                   "NAME arguments: kawa topic create --prefix stream- --range 0-9")
        names = tuple(f"{prefix}{n}" for n in _range(number_range))
    if not names:
        raise click.UsageError("name the topics to create, or use --prefix and --range")
    topic_configs = key_values(configs, "--config")
    servers = bootstrap(ctx)
    admin = admin_client(servers)
    results: list[dict[str, Any]] = []
    show_progress = len(names) > 1 and output == "table"
    progress = Progress(len(names), "creating topics") if show_progress else None
    with kafka_errors(servers), (progress or nullcontext()):
        for start in range(0, len(names), CREATE_BATCH):
            batch = [NewTopic(n, partitions, replication_factor, config=dict(topic_configs))
                     for n in names[start:start + CREATE_BATCH]]
            futures = admin.create_topics(batch, operation_timeout=CLIENT_TIMEOUT_S,
                                          request_timeout=CLIENT_TIMEOUT_S)
            for name, future in futures.items():
                try:
                    future.result(timeout=CLIENT_TIMEOUT_S * 2)
                    results.append({"topic": name, "status": "created", "error": None})
                except KafkaException as e:  # per topic: reported, not raised
                    text = kafka_error_text(e)
                    exists = "already exists" in text.lower()
                    status = "exists" if exists and if_not_exists else "failed"
                    results.append({"topic": name, "status": status, "error": text})
                if progress is not None:
                    progress.advance()
    failed = [r for r in results if r["status"] == "failed"]
    if output == "json":
        print_json(results)
    elif len(results) == 1:
        r = results[0]
        if r["status"] == "created":
            click.echo(f"created topic {r['topic']}")
        elif r["status"] == "exists":
            click.echo(f"topic {r['topic']} already exists")
    else:
        created = sum(1 for r in results if r["status"] == "created")
        click.echo(f"created {created} of {len(results)} topics")
        if failed:
            print_table("not created", ["topic", "error"],
                        [[r["topic"], r["error"]] for r in failed])
    if failed:
        first = failed[0]
        hint = " (add --if-not-exists to accept existing topics)" if any(
            "already exists" in (r["error"] or "").lower() for r in failed) else ""
        raise click.ClickException(
            f"{len(failed)} topic(s) not created; {first['topic']}: {first['error']}{hint}"
        )


@topic.command("delete")
@click.argument("names", nargs=-1, required=True)
@bootstrap_options
@click.pass_context
@friendly_errors
def topic_delete(ctx: click.Context, names: tuple[str, ...], **_: Any) -> None:
    """Delete topics and all their records."""
    servers = bootstrap(ctx)
    admin = admin_client(servers)
    _require_topics(admin, names)
    with kafka_errors(servers):
        for name, future in admin.delete_topics(list(names),
                                                operation_timeout=CLIENT_TIMEOUT_S).items():
            future.result(timeout=CLIENT_TIMEOUT_S * 2)
            click.echo(f"deleted topic {name}")


@topic.command("list")
@bootstrap_options
@output_option
@click.pass_context
@friendly_errors
def topic_list(ctx: click.Context, output: str, **_: Any) -> None:
    """Every topic with its partition count and replication factor."""
    servers = bootstrap(ctx)
    admin = admin_client(servers)
    with kafka_errors(servers):
        topics = _topic_names(admin)
    rows = [
        {"topic": name, "partitions": len(t.partitions),
         "replication_factor": max((len(p.replicas) for p in t.partitions.values()), default=0)}
        for name, t in sorted(topics.items())
    ]
    if output == "json":
        print_json(rows)
    elif rows:
        print_table(None, ["topic", "partitions", "replication factor"],
                    [[r["topic"], r["partitions"], r["replication_factor"]] for r in rows])
    else:
        click.echo(f"no topics at {servers}: create one with `kawa topic create NAME`")


def _describe(admin: Any, name: str, metadata: Any, all_configs: bool) -> dict[str, Any]:
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import ConfigResource, OffsetSpec, ResourceType

    partitions = sorted(metadata.partitions.values(), key=lambda p: p.id)
    specs: dict[Any, Any] = {}
    for p in partitions:
        specs[TopicPartition(name, p.id)] = OffsetSpec.earliest()
    earliest = {tp.partition: f.result(CLIENT_TIMEOUT_S).offset
                for tp, f in admin.list_offsets(specs, request_timeout=CLIENT_TIMEOUT_S).items()}
    specs = {TopicPartition(name, p.id): OffsetSpec.latest() for p in partitions}
    latest = {tp.partition: f.result(CLIENT_TIMEOUT_S).offset
              for tp, f in admin.list_offsets(specs, request_timeout=CLIENT_TIMEOUT_S).items()}
    resource = ConfigResource(ResourceType.TOPIC, name)
    entries = admin.describe_configs([resource], request_timeout=CLIENT_TIMEOUT_S)[resource]
    configs = {
        k: v.value for k, v in sorted(entries.result(CLIENT_TIMEOUT_S).items())
        if all_configs or not v.is_default
    }
    return {
        "topic": name,
        "partitions": [
            {"partition": p.id, "leader": p.leader, "replicas": list(p.replicas),
             "isr": list(p.isrs), "start_offset": earliest.get(p.id),
             "end_offset": latest.get(p.id),
             "records": (latest.get(p.id, 0) or 0) - (earliest.get(p.id, 0) or 0),
             "error": str(p.error) if p.error else None}
            for p in partitions
        ],
        "configs": configs,
    }


@topic.command("describe")
@click.argument("names", nargs=-1, required=True)
@click.option("--all-configs", is_flag=True, help="Show default configs too.")
@bootstrap_options
@output_option
@click.pass_context
@friendly_errors
def topic_describe(ctx: click.Context, names: tuple[str, ...], all_configs: bool, output: str,
                   **_: Any) -> None:
    """Partitions (leader, replicas, offsets, records) and configs of topics."""
    servers = bootstrap(ctx)
    admin = admin_client(servers)
    topics = _require_topics(admin, names)
    with kafka_errors(servers):
        described = [_describe(admin, n, topics[n], all_configs) for n in names]
    if output == "json":
        print_json(described)
        return
    for d in described:
        rows = [[p["partition"], p["leader"], ",".join(map(str, p["replicas"])),
                 ",".join(map(str, p["isr"])), p["start_offset"], p["end_offset"], p["records"]]
                for p in d["partitions"]]
        configs = ", ".join(f"{k}={v}" for k, v in d["configs"].items()) or "(all defaults)"
        print_table(f"topic {d['topic']}", ["partition", "leader", "replicas", "isr",
                                             "start offset", "end offset", "records"], rows,
                    caption=f"configs: {configs}")


@topic.command("alter")
@click.argument("name")
@click.option("--config", "configs", multiple=True, metavar="KEY=VALUE",
              help="Set a topic config (repeatable).")
@click.option("--delete-config", "deleted", multiple=True, metavar="KEY",
              help="Return a config to its default (repeatable).")
@click.option("--partitions", type=int, help="New total partition count (only grows).")
@bootstrap_options
@click.pass_context
@friendly_errors
def topic_alter(ctx: click.Context, name: str, configs: tuple[str, ...], deleted: tuple[str, ...],
                partitions: int | None, **_: Any) -> None:
    """Change a topic's configs or grow its partition count."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    if not (configs or deleted or partitions):
        raise click.UsageError("nothing to change: give --config, --delete-config or --partitions")
    changes = key_values(configs, "--config")
    servers = bootstrap(ctx)
    admin = admin_client(servers)
    topics = _require_topics(admin, [name])
    with kafka_errors(servers):
        if changes or deleted:
            entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                       for k, v in changes.items()]
            entries += [ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE)
                        for k in deleted]
            resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
            admin.incremental_alter_configs([resource])[resource].result(CLIENT_TIMEOUT_S)
            for k, v in changes.items():
                click.echo(f"{name}: {k}={v}")
            for k in deleted:
                click.echo(f"{name}: {k} back to its default")
        if partitions is not None:
            _grow(admin, name, len(topics[name].partitions), partitions)


def _grow(admin: Any, name: str, current: int, total: int) -> None:
    from confluent_kafka.admin import NewPartitions

    if total <= current:
        raise click.ClickException(
            f"topic {name} has {current} partitions; the new count must be more (partitions "
            "can be added, not removed)"
        )
    admin.create_partitions([NewPartitions(name, total)],
                            operation_timeout=CLIENT_TIMEOUT_S)[name].result(CLIENT_TIMEOUT_S)
    click.echo(f"{name}: {current} -> {total} partitions")


@click.group()
def partition() -> None:
    """Add partitions to a topic."""


@partition.command("add")
@click.argument("topic_name", metavar="TOPIC")
@click.option("--count", "-n", type=click.IntRange(min=1), required=True,
              help="How many partitions to add.")
@bootstrap_options
@click.pass_context
@friendly_errors
def partition_add(ctx: click.Context, topic_name: str, count: int, **_: Any) -> None:
    """Add COUNT partitions to TOPIC (existing records stay where they are)."""
    servers = bootstrap(ctx)
    admin = admin_client(servers)
    topics = _require_topics(admin, [topic_name])
    current = len(topics[topic_name].partitions)
    with kafka_errors(servers):
        _grow(admin, topic_name, current, current + count)


@click.group()
def broker() -> None:
    """The deployment's brokers."""


@broker.command("list")
@click.option("--source", type=click.Choice(["auto", "store", "metadata"]), default="auto",
              show_default=True, help="store: the registry (state, heartbeat); metadata: ask a "
              "broker (Kafka Metadata). auto: the store when it is on this host, else metadata.")
@bootstrap_options
@data_dir_option
@output_option
@click.pass_context
@friendly_errors
def broker_list(ctx: click.Context, source: str, output: str, **_: Any) -> None:
    """Brokers: id, address and, from the store, state and heartbeat."""
    from kawa.deploy import operations

    use_store = source == "store"
    if source == "auto" and not ctx.params.get("bootstrap_server"):
        use_store = resolve(ctx).settings.store_path.exists()
    if use_store:
        data = operations.status(resolve(ctx))
        rows = [{"id": b["id"], "address": b["address"], "state": b["state"], "pid": b["pid"],
                 "host": b["host"], "heartbeat_age_s": b["heartbeat_age_s"]}
                for b in data["brokers"]]
        columns = ["id", "address", "state", "pid", "host", "heartbeat_age_s"]
    else:
        servers = bootstrap(ctx)
        admin = admin_client(servers)
        with kafka_errors(servers):
            cluster = admin.describe_cluster(request_timeout=CLIENT_TIMEOUT_S).result()
        controller = cluster.controller.id if cluster.controller else None
        rows = [{"id": n.id, "address": f"{n.host}:{n.port}", "rack": n.rack,
                 "controller": n.id == controller} for n in sorted(cluster.nodes,
                                                                     key=lambda n: n.id)]
        columns = ["id", "address", "rack", "controller"]
    if output == "json":
        print_json(rows)
    else:
        print_table(f"brokers ({'store' if use_store else 'metadata'})", columns,
                    [[r[c] for c in columns] for r in rows])
