"""Topic configs: Kafka's names, validation, and the LogConfig they make.

Only configs kawa honours are accepted; an unknown name or a value kawa
cannot honour (cleanup.policy=compact) is refused with INVALID_CONFIG and a
message naming the key, rather than stored and ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kawa.storage.log import LogConfig


class InvalidConfig(ValueError):
    pass


def _int_at_least(minimum: int) -> Callable[[str, str], str]:
    def check(name: str, value: str) -> str:
        try:
            number = int(value)
        except ValueError:
            raise InvalidConfig(f"{name}={value!r} is not an integer") from None
        if number < minimum:
            raise InvalidConfig(f"{name}={number} is below the minimum {minimum}")
        return str(number)

    return check


def _cleanup_policy(name: str, value: str) -> str:
    if value.strip() != "delete":
        raise InvalidConfig(f"{name}={value!r}: kawa supports only cleanup.policy=delete")
    return "delete"


def _timestamp_type(name: str, value: str) -> str:
    if value != "CreateTime":
        raise InvalidConfig(f"{name}={value!r}: kawa supports only CreateTime")
    return value


@dataclass(frozen=True, slots=True)
class ConfigSpec:
    default: str
    check: Callable[[str, str], str]
    # Kafka's ConfigType enum as DescribeConfigs v3+ reports it.
    config_type: int


_BOOLEAN, _STRING, _INT, _SHORT, _LONG, _DOUBLE, _LIST = 1, 2, 3, 4, 5, 6, 7
_defaults = LogConfig()

TOPIC_CONFIGS: dict[str, ConfigSpec] = {
    "cleanup.policy": ConfigSpec("delete", _cleanup_policy, _LIST),
    "retention.ms": ConfigSpec(str(_defaults.retention_ms), _int_at_least(-1), _LONG),
    "retention.bytes": ConfigSpec(str(_defaults.retention_bytes), _int_at_least(-1), _LONG),
    "segment.bytes": ConfigSpec(str(_defaults.segment_bytes), _int_at_least(14), _INT),
    "segment.ms": ConfigSpec(str(_defaults.segment_ms), _int_at_least(1), _LONG),
    "max.message.bytes": ConfigSpec(str(_defaults.max_message_bytes), _int_at_least(0), _INT),
    "index.interval.bytes": ConfigSpec(
        str(_defaults.index_interval_bytes), _int_at_least(0), _INT
    ),
    "message.timestamp.type": ConfigSpec("CreateTime", _timestamp_type, _STRING),
}


def validate(configs: dict[str, str | None]) -> dict[str, str]:
    """Checked, normalised explicit configs; raises InvalidConfig naming the key."""
    clean: dict[str, str] = {}
    for name, value in configs.items():
        spec = TOPIC_CONFIGS.get(name)
        if spec is None:
            raise InvalidConfig(f"unknown topic config {name!r}")
        if value is None:
            raise InvalidConfig(f"{name} has no value")
        clean[name] = spec.check(name, value)
    return clean


def effective(explicit: dict[str, str]) -> dict[str, str]:
    return {name: explicit.get(name, spec.default) for name, spec in TOPIC_CONFIGS.items()}


def log_config(explicit: dict[str, str]) -> LogConfig:
    values = effective(explicit)
    return LogConfig(
        segment_bytes=int(values["segment.bytes"]),
        segment_ms=int(values["segment.ms"]),
        retention_bytes=int(values["retention.bytes"]),
        retention_ms=int(values["retention.ms"]),
        index_interval_bytes=int(values["index.interval.bytes"]),
        max_message_bytes=int(values["max.message.bytes"]),
    )
