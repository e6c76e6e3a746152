"""The `kawa` command."""

from __future__ import annotations

import click

from kawa.cli.groups import group
from kawa.cli.ops import register


@click.group()
@click.version_option(package_name="kawa")
def main() -> None:
    """kawa: a Kafka-compatible event-streaming broker."""


main.add_command(group)
register(main)  # install, up, down, status, maintenance, migrate, delete, config,
# topic, partition, produce, consume, broker (kawa.cli.ops)
