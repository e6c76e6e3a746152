"""What the `kawa` commands share: settings options, errors, output, Kafka clients.

Every command turns a known failure into one line (or a few) that says what
is wrong and what to do, and exits non-zero; tracebacks are for bugs.
Tables are rich tables on stdout; ``--output json`` prints JSON instead.
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

import click
from click.core import ParameterSource

from kawa.deploy import settings as settings_module
from kawa.deploy.config import Durability
from kawa.deploy.lifecycle import TransitionRefused
from kawa.deploy.operations import OperationError
from kawa.deploy.processes import PortInUse
from kawa.deploy.settings import Resolved, Settings, SettingsError
from kawa.metadata.registry import StoreUnavailable
from kawa.metadata.sqlite_registry import StoreUnusable

F = TypeVar("F", bound=Callable[..., Any])

CLIENT_TIMEOUT_S = 10.0
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
_FRIENDLY = (SettingsError, OperationError, TransitionRefused, PortInUse, StoreUnavailable,
             StoreUnusable)


def friendly_errors(f: F) -> F:
    """Known failures become `Error: <message>` and exit code 1."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except _FRIENDLY as e:
            raise click.ClickException(str(e)) from None

    return wrapper  # type: ignore[return-value]


# -- settings options ------------------------------------------------------------


def host_port(value: str, flag: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:9092",
                                 param_hint=flag)
    return host or "127.0.0.1", int(port)


def _default(name: str) -> str:
    value = Settings.model_fields[name].default
    return f"[default: {getattr(value, 'value', value)}]"


def config_options(f: F, names: tuple[str, ...] = ("-c", "--config", "--config-file")) -> F:
    f = click.option(
        "--set", "set_params", multiple=True, metavar="NAME=VALUE",
        help="Template parameter for a Jinja2 config file (repeatable), e.g. --set id=1.",
    )(f)
    return click.option(
        *names, "config", type=click.Path(path_type=Path, dir_okay=False),
        help="Configuration file (TOML, or a Jinja2 template *.j2). Default: ./kawa.toml if "
        "present, else the embedded default (127.0.0.1:9092, data in ./kawa-data).",
    )(f)


def data_dir_option(f: F) -> F:
    return click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
                        help=f"Where the deployment keeps its data. {_default('data_dir')}")(f)


# option name -> (flag, setting(s) it sets)
_FLAGS: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    "listen": ("--listen", lambda v: dict(zip(("listen_host", "listen_port"),
                                              host_port(v, "--listen"), strict=True))),
    "advertised_address": ("--advertised-address", lambda v: dict(zip(
        ("advertised_host", "advertised_port"), host_port(v, "--advertised-address"),
        strict=True))),
    "data_dir": ("--data-dir", lambda v: {"data_dir": v}),
    "broker_id": ("--broker-id", lambda v: {"broker_id": v}),
    "durability": ("--durability", lambda v: {"durability": v}),
    "flush_interval_ms": ("--flush-interval-ms", lambda v: {"flush_interval_ms": v}),
    "storage": ("--storage", lambda v: {"storage_engine": v}),
    "auto_create_topics": ("--auto-create-topics", lambda v: {"auto_create_topics": v}),
    "default_partitions": ("--default-partitions", lambda v: {"default_partitions": v}),
    "group_initial_rebalance_delay_ms": (
        "--group-initial-rebalance-delay-ms",
        lambda v: {"group_initial_rebalance_delay_ms": v},
    ),
    "http_port": ("--http-port", lambda v: {"http_port": v}),
    "log_level": ("--log-level", lambda v: {"log_level": v}),
}


_EXPLICIT = {"listen_host", "listen_port", "advertised_host", "advertised_port", "data_dir",
             "broker_id", "durability", "flush_interval_ms", "storage_engine",
             "auto_create_topics", "default_partitions", "group_initial_rebalance_delay_ms",
             "http_port", "log_level"}


def broker_options(f: F) -> F:
    """The settings flags of `kawa up` (and `kawa config show`); each overrides the file and
    the environment. None of them has a click default: unset means 'not on the command line'."""
    options = [
        click.option("--listen", metavar="HOST:PORT",
                     help="Address for Kafka clients. [default: 127.0.0.1:9092]"),
        click.option("--advertised-address", metavar="HOST:PORT",
                     help="Address clients should connect to. [default: the listen address]"),
        data_dir_option,
        click.option("--broker-id", type=int, help=_default("broker_id")),
        click.option("--durability", type=click.Choice([d.value for d in Durability]),
                     help="sync: fsync before ack (group commit); interval: fsync every "
                     "--flush-interval-ms; os: leave it to the OS. [default: sync]"),
        click.option("--flush-interval-ms", type=int, help=_default("flush_interval_ms")),
        click.option("--storage", type=click.Choice(["local", "memory"]),
                     help=_default("storage_engine")),
        click.option("--auto-create-topics/--no-auto-create-topics", default=None,
                     help=_default("auto_create_topics")),
        click.option("--default-partitions", type=int, help=_default("default_partitions")),
        click.option("--group-initial-rebalance-delay-ms", type=int,
                     help="How long the first rebalance of an empty consumer group waits for "
                     "more members (Kafka's group.initial.rebalance.delay.ms). "
                     + _default("group_initial_rebalance_delay_ms")),
        click.option("--http-port", metavar="PORT|off",
                     help="Port of /ping, /healthz, /metrics (0: any free port, off: none). "
                     "[default: 9644, or off when --listen is given]"),
        click.option("--log-level", help=_default("log_level")),
    ]
    # Every other setting has a flag too, --<setting-with-dashes> (hidden from --help to keep
    # it short; `kawa config show` lists the settings), as every setting has KAWA_<SETTING>.
    options += [
        click.option(f"--{name.replace('_', '-')}", name, hidden=True, metavar="VALUE")
        for name in settings_module.FIELDS if name not in _EXPLICIT
    ]
    for option in reversed(options):
        f = option(f)
    return f


def resolve(ctx: click.Context) -> Resolved:
    """The effective settings of this command: defaults <- file <- env <- flags given."""
    params = ctx.params
    flags: dict[str, tuple[Any, str]] = {}
    given = [name for name in params
             if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE]
    for name in given:
        if name in _FLAGS:
            flag, to_settings = _FLAGS[name]
            if name == "auto_create_topics" and not params[name]:
                flag = "--no-auto-create-topics"
            for key, value in to_settings(params[name]).items():
                flags[key] = (value, flag)
        elif name in settings_module.FIELDS:
            flags[name] = (params[name], f"--{name.replace('_', '-')}")
    config_file = settings_module.config_file_for(params.get("config"))
    values = settings_module.parse_params(params.get("set_params") or ())
    return settings_module.load(config_file, values, flags)


# -- output ----------------------------------------------------------------------

output_option = click.option("--output", "-o", type=click.Choice(["table", "json"]),
                             default="table", show_default=True)


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    return Console(file=stream, width=None if terminal else 200, highlight=False,
                   soft_wrap=not terminal)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                caption: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    console().print(table)


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def human_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


# -- Kafka clients ------------------------------------------------------------------


def bootstrap_options(f: F) -> F:
    """--bootstrap-server, and -c/--config-file to derive it from (--config is a topic
    config in the resource commands, as in Kafka's tools)."""
    f = config_options(f, names=("-c", "--config-file"))
    return click.option(
        "--bootstrap-server", "-b", metavar="HOST:PORT",
        help="A kawa (or Kafka) broker. [default: the address of the deployment given by -c "
        f"or ./kawa.toml, else {DEFAULT_BOOTSTRAP}]",
    )(f)


def bootstrap(ctx: click.Context) -> str:
    explicit = ctx.params.get("bootstrap_server")
    if explicit:
        return str(explicit)
    return resolve(ctx).settings.bootstrap


def client_config(servers: str, **extra: Any) -> dict[str, Any]:
    quiet = logging.getLogger("kawa.cli.kafka")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    return {"bootstrap.servers": servers, "logger": quiet,
            "socket.timeout.ms": int(CLIENT_TIMEOUT_S * 1000), **extra}


def kafka_error_text(error: Any) -> str:
    inner = error.args[0] if getattr(error, "args", None) else error
    if hasattr(inner, "str"):
        return str(inner.str())
    return str(inner)


def unreachable(servers: str, why: str | None = None) -> click.ClickException:
    why = why or f"no broker answered within {CLIENT_TIMEOUT_S:.0f}s"
    return click.ClickException(
        f"cannot reach a broker at {servers}: {why}. Is the deployment running (`kawa status`)? "
        "Start it with `kawa up`, or point elsewhere with --bootstrap-server HOST:PORT or "
        "-c kawa.toml"
    )


def _probe(servers: str) -> None:
    """Fail fast when nothing listens at any bootstrap address (librdkafka would retry)."""
    reasons = []
    for address in servers.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
                return
        except ValueError:
            raise click.BadParameter(f"{address!r}: expected HOST:PORT",
                                     param_hint="--bootstrap-server") from None
        except OSError as e:
            reasons.append(e.strerror or str(e))
    raise unreachable(servers, ", ".join(dict.fromkeys(reasons)).lower())


def admin_client(servers: str) -> Any:
    """An AdminClient whose broker answered a Metadata request (else a clear error)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    _probe(servers)
    admin = AdminClient(client_config(servers))
    try:
        admin.list_topics(timeout=CLIENT_TIMEOUT_S)
    except KafkaException:
        raise unreachable(servers) from None
    return admin


@contextmanager
def kafka_errors(servers: str) -> Iterator[None]:
    from confluent_kafka import KafkaException

    try:
        yield
    except KafkaException as e:
        raise click.ClickException(f"{servers}: {kafka_error_text(e)}") from None


def key_values(pairs: Iterable[str], flag: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE, e.g. retention.ms=60000",
                                     param_hint=flag)
        out[key] = value
    return out


class Progress:
    """A rich progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, total: int, what: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        err = console(stderr=True)
        self._progress = RichProgress("[progress.description]{task.description}", BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                                  transient=True, disable=not err.is_terminal)
        self._task = self._progress.add_task(what, total=total)

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def advance(self, amount: int = 1) -> None:
        self._progress.advance(self._task, amount)
