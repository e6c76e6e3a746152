"""`kawa config show | render`: the effective configuration and where each value came from."""

from __future__ import annotations

from typing import Any

import click

from kawa.cli.common import (
    broker_options,
    config_options,
    friendly_errors,
    print_json,
    print_table,
    resolve,
)
from kawa.deploy import settings as settings_module
from kawa.deploy.settings import SettingsError


@click.group()
def config() -> None:
    """Show the effective configuration, or render a template."""


@config.command("show")
@config_options
@broker_options
@click.option("--output", "-o", type=click.Choice(["table", "json", "toml"]), default="table",
              show_default=True, help="toml: a kawa.toml with every setting, each commented "
              "with its source.")
@click.pass_context
@friendly_errors
def show(ctx: click.Context, output: str, **_: Any) -> None:
    """Every setting's effective value and its source: default, file (with line),
    environment (KAWA_<SETTING>) or flag. Takes the same flags as `kawa up`."""
    resolved = resolve(ctx)
    rows = resolved.rows()
    if output == "json":
        print_json({name: {"value": getattr(value, "value", value), "source": source}
                    for name, value, source in rows})
    elif output == "toml":
        click.echo(settings_module.to_toml(resolved), nl=False)
    else:
        origin = resolved.config_file or "embedded default (no file)"
        print_table(f"configuration: {origin}", ["setting", "value", "source"],
                    [[name, "off" if value is None and name == "http_port" else
                      getattr(value, "value", value), source] for name, value, source in rows])


@config.command("render")
@config_options
@click.pass_context
@friendly_errors
def render(ctx: click.Context, config: Any, set_params: tuple[str, ...]) -> None:
    """Print the configuration file rendered with its --set parameters (for a Jinja2
    template), then check it: errors name the setting and the line."""
    path = settings_module.config_file_for(config)
    if path is None:
        raise SettingsError("no configuration file: pass -c FILE (there is no ./kawa.toml)")
    params = settings_module.parse_params(set_params)
    click.echo(settings_module.render(path, params), nl=False)
    settings_module.load(path, params, env={})
