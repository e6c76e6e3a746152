"""The `kawa` command."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from pydantic import ValidationError

from kawa.cli.groups import group
from kawa.deploy.config import BrokerConfig, Durability


def _host_port(value: str, flag: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:9092", param_hint=flag)
    return host or "127.0.0.1", int(port)


@click.group()
@click.version_option(package_name="kawa")
def main() -> None:
    """kawa: a Kafka-compatible event-streaming broker."""


main.add_command(group)


@main.command()
@click.option("--listen", default="127.0.0.1:9092", show_default=True, help="HOST:PORT to listen on.")
@click.option("--advertised-address", default=None, help="HOST:PORT clients should connect to.")
@click.option("--data-dir", default="kawa-data", show_default=True, type=click.Path(path_type=Path))
@click.option("--broker-id", default=0, show_default=True, type=int)
@click.option(
    "--durability",
    type=click.Choice([d.value for d in Durability]),
    default=Durability.sync.value,
    show_default=True,
    help="sync: fsync before ack (group commit); interval: fsync every --flush-interval-ms; "
    "os: leave it to the OS.",
)
@click.option("--flush-interval-ms", default=1000, show_default=True, type=int)
@click.option("--storage", type=click.Choice(["local", "memory"]), default="local", show_default=True)
@click.option("--auto-create-topics/--no-auto-create-topics", default=True, show_default=True)
@click.option("--default-partitions", default=1, show_default=True, type=int)
@click.option(
    "--group-initial-rebalance-delay-ms",
    default=3000,
    show_default=True,
    type=int,
    help="How long the first rebalance of an empty consumer group waits for more members "
    "(Kafka's group.initial.rebalance.delay.ms).",
)
@click.option("--log-level", default="INFO", show_default=True)
def up(
    listen: str,
    advertised_address: str | None,
    data_dir: Path,
    broker_id: int,
    durability: str,
    flush_interval_ms: int,
    storage: str,
    auto_create_topics: bool,
    default_partitions: int,
    group_initial_rebalance_delay_ms: int,
    log_level: str,
) -> None:
    """Start a broker in the foreground (Ctrl-C or SIGTERM stops it cleanly)."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    listen_host, listen_port = _host_port(listen, "--listen")
    advertised_host, advertised_port = (
        _host_port(advertised_address, "--advertised-address") if advertised_address else (None, None)
    )
    try:
        config = BrokerConfig(
            broker_id=broker_id,
            listen_host=listen_host,
            listen_port=listen_port,
            advertised_host=advertised_host,
            advertised_port=advertised_port,
            data_dir=data_dir,
            durability=Durability(durability),
            flush_interval_ms=flush_interval_ms,
            storage_engine=storage,
            auto_create_topics=auto_create_topics,
            default_partitions=default_partitions,
            group_initial_rebalance_delay_ms=group_initial_rebalance_delay_ms,
        )
    except ValidationError as e:
        raise click.UsageError(str(e)) from None

    from kawa.broker.server import run

    try:
        run(config)
    except OSError as e:
        if e.errno == 98:  # EADDRINUSE
            raise click.ClickException(
                f"cannot listen on {listen}: the port is in use; stop the other process or "
                "choose another port with --listen HOST:PORT"
            ) from None
        raise
