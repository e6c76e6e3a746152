"""Deployment settings: one kawa.toml (optionally a Jinja2 template), environment, flags.

Precedence, lowest first: the default of each setting (one host), the file,
environment variables ``KAWA_<SETTING>`` (``KAWA_LISTEN_PORT=9093``), command
line flags. ``Resolved.sources`` says where each effective value came from;
``kawa config show`` prints it.

The file is flat TOML whose keys are the setting names (``listen_port = 9093``;
``kawa config show`` lists them all). A file named ``*.j2`` (or given
``--set`` parameters) is rendered with Jinja2 first, so one file describes
many brokers on a host: ``broker_id = {{ id }}``, ``listen_port = {{ 9092 + id }}``.
Relative paths in the file are relative to the file's directory.

Errors name the setting and where it was set: the file and line (found by
scanning the TOML text for the key), the environment variable, or the flag.

HTTP endpoints (/ping, /healthz, /metrics) are on by default at 9644, except
when ``--listen`` is given on the command line without ``--http-port``: that is
how scripts and tests run many brokers on one host, and a fixed default port
would collide. ``http_port = "off"`` (or ``--http-port off``) turns them off.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from kawa.deploy.config import BrokerConfig

CONFIG_FILE = Path("kawa.toml")  # used when present in the working directory and -c is not given
HTTP_PORT_DEFAULT = 9644
ENV_PREFIX = "KAWA_"
TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2")
STORE_FILE = "metadata.sqlite"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BrokerConfig):
    """BrokerConfig plus what the launcher and the operator tools need."""

    http_port: int | None = Field(HTTP_PORT_DEFAULT, ge=0, le=65535)
    log_level: str = "INFO"
    # How long a starting broker waits for its metadata store (see kawa.metadata.wait).
    store_wait_timeout_ms: int = Field(30_000, ge=0)
    heartbeat_interval_ms: int = Field(1000, ge=50)
    # A broker whose heartbeat is older than this is not live.
    broker_session_timeout_ms: int = Field(10_000, ge=100)
    # How long `kawa down` waits for a broker to stop after SIGTERM.
    shutdown_timeout_ms: int = Field(30_000, ge=100)

    @field_validator("http_port", mode="before")
    @classmethod
    def _http_off(cls, value: Any) -> Any:
        if value is False or (isinstance(value, str) and value.strip().lower() in ("off", "none")):
            return None
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return value.upper()

    @field_validator("broker_session_timeout_ms")
    @classmethod
    def _session(cls, value: int, info: Any) -> int:
        heartbeat = info.data.get("heartbeat_interval_ms")
        if heartbeat is not None and value < 3 * heartbeat:
            raise ValueError(f"must be at least 3 x heartbeat_interval_ms ({3 * heartbeat})")
        return value

    def broker_config(self) -> BrokerConfig:
        return BrokerConfig(**{name: getattr(self, name) for name in BrokerConfig.model_fields})

    @property
    def store_path(self) -> Path:
        return self.data_dir / STORE_FILE

    @property
    def bootstrap(self) -> str:
        host, port = self.advertised
        return f"{host}:{port}"


FIELDS: tuple[str, ...] = tuple(Settings.model_fields)


@dataclass(frozen=True)
class Source:
    kind: str  # "default", "file", "environment" or "flag"
    detail: str = ""  # "kawa.toml:3", "KAWA_LISTEN_PORT", "--listen"

    def __str__(self) -> str:
        return f"{self.kind} {self.detail}".strip()


@dataclass(frozen=True)
class Resolved:
    settings: Settings
    sources: dict[str, Source]
    config_file: Path | None = None  # None: the embedded default (no file)
    params: dict[str, Any] = field(default_factory=dict)
    text: str = ""  # the TOML as parsed (rendered, for a template)

    @property
    def embedded(self) -> bool:
        return self.config_file is None

    def cli_hint(self) -> str:
        """How to name this deployment on a command line: `` -c f.toml --set id=1``."""
        parts = []
        if self.config_file is not None and self.config_file != CONFIG_FILE:
            parts += ["-c", str(self.config_file)]
        parts += [f"--set {k}={v}" for k, v in self.params.items()]
        if self.sources["data_dir"].kind == "flag":
            parts += ["--data-dir", str(self.settings.data_dir)]
        return "".join(" " + p for p in parts)

    def rows(self) -> list[tuple[str, Any, str]]:
        """(setting, value, source) for every setting, in declaration order."""
        return [(name, getattr(self.settings, name), str(self.sources[name])) for name in FIELDS]


class SettingsError(Exception):
    """An operator-facing message: names the setting, where it was set, what to do."""


# -- the file ------------------------------------------------------------------


def parse_params(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``--set id=42`` -> {"id": 42}; integers become ints so templates can add to them."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise SettingsError(f"--set {pair!r}: expected NAME=VALUE, e.g. --set id=1")
        params[key.strip()] = int(value) if re.fullmatch(r"-?\d+", value.strip()) else value
    return params


def is_template(path: Path) -> bool:
    return path.suffix in TEMPLATE_SUFFIXES


def render(path: Path, params: Mapping[str, Any]) -> str:
    """The file's text, rendered with Jinja2 when it is a template or params are given."""
    try:
        source = path.read_text()
    except FileNotFoundError:
        raise SettingsError(
            f"configuration file {path} not found: check the -c path, or run without -c "
            "for the embedded default"
        ) from None
    except OSError as e:
        raise SettingsError(f"cannot read configuration file {path}: {e.strerror}") from None
    if not (is_template(path) or params):
        return source
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path.parent)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    try:
        template = env.from_string(source)
        return template.render({**params, "params": dict(params), "env": dict(os.environ)})
    except jinja2.TemplateSyntaxError as e:
        raise SettingsError(f"{path}:{e.lineno}: template syntax error: {e.message}") from None
    except jinja2.UndefinedError as e:
        name = re.search(r"'([^']+)' is undefined", str(e))
        what = f"parameter {name.group(1)!r}" if name else "a parameter"
        hint = f"--set {name.group(1)}=VALUE" if name else "--set NAME=VALUE"
        raise SettingsError(f"{path}: template {what} is not set: pass {hint}") from None


def find_line(text: str, key: str) -> int | None:
    """The 1-based line where ``key`` is assigned (or opens a table) in TOML text."""
    k = re.escape(key)
    pattern = re.compile(rf"^\s*(?:{k}|\"{k}\"|'{k}')\s*=|^\s*\[+\s*{k}\s*\]+")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.search(line):
            return number
    return None


def _read_file(path: Path, params: Mapping[str, Any]) -> tuple[dict[str, Any], str, str]:
    """(values, source text, parsed text)."""
    text = render(path, params)
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        rendered = " (line numbers of the rendered file: see `kawa config render`)" if (
            is_template(path) or params) else ""
        raise SettingsError(f"{path}: invalid TOML: {e}{rendered}") from None
    return values, path.read_text(), text


# -- resolution ----------------------------------------------------------------


def config_file_for(option: Path | None) -> Path | None:
    """-c if given, else ./kawa.toml when present, else None (the embedded default)."""
    if option is not None:
        return option
    return CONFIG_FILE if CONFIG_FILE.is_file() else None


def load(
    config_file: Path | None,
    params: Mapping[str, Any] | None = None,
    flags: Mapping[str, tuple[Any, str]] | None = None,
    env: Mapping[str, str] | None = None,
) -> Resolved:
    """Defaults <- file <- environment <- flags. ``flags``: setting -> (value, flag name)."""
    params = dict(params or {})
    flags = dict(flags or {})
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    source_text = text = ""

    if config_file is not None:
        file_values, source_text, text = _read_file(config_file, params)
        for key, value in file_values.items():
            line = find_line(source_text, key) or find_line(text, key)
            sources[key] = Source("file", f"{config_file}:{line}" if line else str(config_file))
            if key == "data_dir" and isinstance(value, str) and not Path(value).is_absolute():
                value = str(config_file.parent / value)
            values[key] = value
    for name in FIELDS:
        variable = ENV_PREFIX + name.upper()
        if variable in env:
            values[name] = env[variable]
            sources[name] = Source("environment", variable)
    for name, (value, flag) in flags.items():
        values[name] = value
        sources[name] = Source("flag", flag)
    if "http_port" not in values and any(
        sources.get(n, Source("default")).kind == "flag" for n in ("listen_host", "listen_port")
    ):
        values["http_port"] = None
        sources["http_port"] = Source("default", "(off: --listen given without --http-port)")

    try:
        settings = Settings.model_validate(values)
    except ValidationError as e:
        raise SettingsError(_explain(e, sources, config_file)) from None
    for name in FIELDS:
        sources.setdefault(name, Source("default"))
    return Resolved(settings, sources, config_file, params, text)


def _where(key: str, sources: Mapping[str, Source]) -> str:
    source = sources.get(key)
    if source is None or source.kind == "default":
        return key
    if source.kind == "file":
        return source.detail
    if source.kind == "environment":
        return f"environment variable {source.detail}"
    return f"flag {source.detail}"


def _explain(error: ValidationError, sources: Mapping[str, Source], file: Path | None) -> str:
    lines: list[tuple[int, str]] = []
    for item in error.errors():
        key = str(item["loc"][0]) if item["loc"] else ""
        where = _where(key, sources)
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, FIELDS, n=1)
            suggestion = f"; did you mean {close[0]!r}?" if close else ""
            lines.append((_line_of(where), (f"{where}: unknown setting {key!r}{suggestion} "
                                           "(`kawa config show` lists every setting)")))
            continue
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append((_line_of(where), f"{where}: {key}: {message} (got {item.get('input')!r})"))
    texts = [text for _, text in sorted(lines, key=lambda pair: pair[0])]
    if len(texts) == 1:
        return texts[0]
    return f"invalid configuration{f' in {file}' if file else ''}:\n  " + "\n  ".join(texts)


def _line_of(where: str) -> int:
    number = where.rpartition(":")[2]
    return int(number) if number.isdigit() else 0


# -- output --------------------------------------------------------------------


def to_toml(resolved: Resolved) -> str:
    """The effective settings as a kawa.toml, each line commented with its source."""
    out = []
    for name, value, source in resolved.rows():
        if value is None:
            off = ' = "off"' if name == "http_port" else ""
            out.append(f"# {name}{off}  # unset ({source})")
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        else:
            raw = getattr(value, "value", value)
            text = '"' + str(raw).replace("\\", "\\\\").replace('"', '\\"') + '"'
        out.append(f"{name} = {text}  # {source}")
    return "\n".join(out) + "\n"


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
