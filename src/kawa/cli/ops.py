"""`kawa install | up | down | status | maintenance | migrate | delete`: the lifecycle.

The rules (which command is allowed in which state, and what a refusal says)
are in ``kawa.deploy.lifecycle``; the work is in ``kawa.deploy.operations``
and ``kawa.deploy.launcher``. Every command names its deployment the same
way: ``-c kawa.toml [--set k=v]`` (default ./kawa.toml, else the embedded
default), ``--data-dir``, or ``KAWA_*`` environment variables.
"""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from kawa.cli.common import (
    broker_options,
    config_options,
    data_dir_option,
    friendly_errors,
    human_bytes,
    human_duration,
    output_option,
    print_json,
    print_table,
    resolve,
)
from kawa.deploy import control, launcher, operations
from kawa.deploy.lifecycle import Command, State, decide
from kawa.deploy.settings import configure_logging


def _child_args(ctx: click.Context) -> list[str]:
    """The command line of this `kawa up`, as given, without --detach."""
    args = [ctx.info_name or "up"]
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in (None, "detach"):
            continue
        if ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if param.is_flag and param.secondary_opts:
            args.append(param.opts[-1] if value else param.secondary_opts[-1])
        elif param.is_flag:
            if value:
                args.append(param.opts[-1])
        elif param.multiple:
            for item in value:
                args += [param.opts[-1], str(item)]
        else:
            args += [param.opts[-1], str(value)]
    return args


@click.command()
@config_options
@broker_options
@click.option("--detach", "-d", is_flag=True,
              help="Run in the background: pid file and log file <data-dir>/broker-<id>.pid|.log; "
              "returns once the broker listens. Stop it with `kawa down`.")
@click.pass_context
@friendly_errors
def up(ctx: click.Context, detach: bool, **_: Any) -> None:
    """Start the deployment's broker (foreground; Ctrl-C or SIGTERM stops it cleanly).

    With no configuration file on a fresh directory, installs the embedded default
    first: `kawa up` alone serves 127.0.0.1:9092 with data in ./kawa-data.

    Every setting can also be given as --<setting> (e.g. --retention-check-interval-ms 100)
    or KAWA_<SETTING>; `kawa config show` lists them with their values and sources."""
    resolved = resolve(ctx)
    configure_logging(resolved.settings)
    if not detach:
        launcher.run_foreground(resolved)
        return
    result = control.start_detached(resolved, _child_args(ctx),
                                     on_wait_line=lambda line: click.echo(line, err=True))
    for line in result.installed:
        click.echo(line)
    s = resolved.settings
    summary = result.ready_line.split(" listening on ", 1)[1]
    click.echo(f"broker {s.broker_id} is running in the background (pid {result.pid}), "
               f"listening on {summary}")
    click.echo(f"  log: {result.log_path}")
    click.echo(f"  stop it with `kawa down{resolved.cli_hint()}`")


@click.command()
@config_options
@data_dir_option
@click.pass_context
@friendly_errors
def install(ctx: click.Context, **_: Any) -> None:
    """Create the deployment: metadata store (with its schema version) and directories.

    Refuses, naming what exists, when something is already installed there."""
    resolved = resolve(ctx)
    for line in operations.install(resolved):
        click.echo(line)
    click.echo(f"next: `kawa up{resolved.cli_hint()}` (add --detach to run it in the background)")


@click.command()
@config_options
@data_dir_option
@click.option("--timeout", type=float, metavar="SECONDS",
              help="How long to wait for each broker after SIGTERM. "
              "[default: shutdown_timeout_ms, 30 s]")
@click.option("--force", is_flag=True, help="SIGKILL brokers still running after --timeout.")
@click.pass_context
@friendly_errors
def down(ctx: click.Context, timeout: float | None, force: bool, **_: Any) -> None:
    """Stop the deployment's brokers on this host gracefully (SIGTERM, wait, report)."""
    resolved = resolve(ctx)
    wait_s = timeout if timeout is not None else resolved.settings.shutdown_timeout_ms / 1000
    message, reports = control.stop_brokers(resolved, wait_s, force)
    for r in reports:
        b = r.broker
        if r.stopped and not r.killed:
            click.echo(f"broker {b.broker_id} (pid {b.pid}) stopped in {r.seconds:.1f}s")
        else:
            click.echo(f"broker {b.broker_id} (pid {b.pid}): {r.note}")
    if any(not r.stopped for r in reports):
        raise click.ClickException("not every broker stopped (see above)")
    click.echo(message)


@click.command()
@config_options
@data_dir_option
@output_option
@click.pass_context
@friendly_errors
def status(ctx: click.Context, output: str, **_: Any) -> None:
    """The deployment's state, its brokers (id, address, state, uptime, partitions led)
    and its metadata store."""
    data = operations.status(resolve(ctx))
    if output == "json":
        print_json(data)
        return
    store = data["store"]
    click.echo(f"deployment  {data['location']}: {data['state']}")
    click.echo(f"config      {data['config']}")
    if store["schema_version"] is None:
        click.echo(f"store       {store['engine']} {store['location']} (not installed)")
    else:
        click.echo(
            f"store       {store['engine']} {store['location']}, schema version "
            f"{store['schema_version']} (this kawa: {store['kawa_schema_version']}), "
            f"{human_bytes(store.get('size_bytes'))}"
        )
        topics, partitions = data["topics"], data["partitions"]
        click.echo(f"topics      {topics} topic{'' if topics == 1 else 's'}, {partitions} "
                   f"partition{'' if partitions == 1 else 's'}")
    if data["state"] == State.absent.value:
        click.echo("nothing installed here: `kawa install` creates it, `kawa up` installs and "
                   "starts the embedded default")
        return
    rows = [
        [b["id"], b["address"] or "-", b["state"], b["pid"], human_duration(b["uptime_s"]),
         b["partitions_led"], b["http"], human_duration(b["heartbeat_age_s"]) + " ago"
         if b["heartbeat_age_s"] is not None else "-"]
        for b in data["brokers"]
    ]
    if rows:
        print_table("brokers", ["id", "address", "state", "pid", "uptime", "partitions led",
                                "http", "heartbeat"], rows)
    else:
        click.echo("brokers     none registered yet")


@click.group()
def maintenance() -> None:
    """Enter or leave maintenance (brokers stopped; migrations allowed)."""


@maintenance.command("enter")
@config_options
@data_dir_option
@click.pass_context
@friendly_errors
def maintenance_enter(ctx: click.Context, **_: Any) -> None:
    """Put the deployment in maintenance. Refused while brokers run: `kawa down` first."""
    click.echo(operations.enter_maintenance(resolve(ctx)).message)


@maintenance.command("exit")
@config_options
@data_dir_option
@click.pass_context
@friendly_errors
def maintenance_exit(ctx: click.Context, **_: Any) -> None:
    """Leave maintenance; brokers may start again."""
    click.echo(operations.exit_maintenance(resolve(ctx)).message)


@click.command()
@config_options
@data_dir_option
@click.pass_context
@friendly_errors
def migrate(ctx: click.Context, **_: Any) -> None:
    """Apply pending metadata store migrations (only in maintenance)."""
    decision, applied, before = operations.migrate(resolve(ctx))
    if not applied:
        click.echo(f"the schema is already at version {before}: nothing to migrate")
        return
    click.echo(f"applied migrations {', '.join(map(str, applied))} "
               f"(schema version {before} -> {applied[-1]})")
    click.echo(decision.message)


@click.command()
@config_options
@data_dir_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@friendly_errors
def delete(ctx: click.Context, yes: bool, **_: Any) -> None:
    """Remove the deployment, its metadata store and all its data. Cannot be undone."""
    resolved = resolve(ctx)
    observation = operations.observe(resolved)
    preview = decide(observation.state, Command.delete, observation.facts)
    if preview.allowed and not yes:
        prompt = (f"Delete the deployment at {resolved.settings.data_dir}, with all its topics "
                  "and data? This cannot be undone")
        try:
            confirmed = click.confirm(prompt, default=False)
        except click.Abort:
            confirmed = False
        if not confirmed:
            raise click.ClickException("not deleted: confirm with 'y', or pass --yes")
    decision, removed, left = operations.delete(resolved)
    for path in removed:
        click.echo(f"removed {path}")
    if left:
        click.echo(f"left {resolved.settings.data_dir} in place: it also holds files kawa did not "
                   f"create: {', '.join(left)}")
    click.echo(decision.message)


def register(main: click.Group) -> None:
    from kawa.cli.config_cmd import config
    from kawa.cli.records import consume, produce
    from kawa.cli.topics import broker, partition, topic

    for command in (install, up, down, status, maintenance, migrate, delete, config, topic,
                    partition, produce, consume, broker):
        main.add_command(command)
