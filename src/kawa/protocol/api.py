"""The API table: which Kafka APIs kawa serves, at which versions, and their codecs.

Every version advertised here must work end to end: a handler that cannot
serve a version is a reason to lower the maximum, not to advertise it.
Transactions are not implemented, so their APIs are not advertised.

Message types come from `kio`; decoders and encoders are looked up once per
(api_key, version) and cached, because kio's schema lookup costs ~7 µs.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import io
import sys
from collections.abc import Callable
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i32Timedelta

PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
DELETE_RECORDS = 21
API_VERSIONS = 18
CREATE_TOPICS = 19
DELETE_TOPICS = 20
INIT_PRODUCER_ID = 22
DESCRIBE_CONFIGS = 32
CREATE_PARTITIONS = 37
INCREMENTAL_ALTER_CONFIGS = 44
DESCRIBE_CLUSTER = 60
OFFSET_COMMIT = 8
OFFSET_FETCH = 9
FIND_COORDINATOR = 10
JOIN_GROUP = 11
HEARTBEAT = 12
LEAVE_GROUP = 13
SYNC_GROUP = 14
DESCRIBE_GROUPS = 15
LIST_GROUPS = 16
DELETE_GROUPS = 42
OFFSET_DELETE = 47

# api_key -> (min_version, max_version) that kawa serves.
SUPPORTED_VERSIONS: dict[int, tuple[int, int]] = {
    PRODUCE: (3, 11),  # v3 is the first with RecordBatch v2; v12+ needs KIP-890 txn rules
    FETCH: (4, 16),  # v13+ addresses topics by id; v17+ is KRaft-replica-only detail
    LIST_OFFSETS: (1, 8),
    METADATA: (0, 12),
    API_VERSIONS: (0, 3),
    CREATE_TOPICS: (2, 7),
    DELETE_TOPICS: (1, 6),
    DELETE_RECORDS: (0, 2),
    INIT_PRODUCER_ID: (0, 4),
    DESCRIBE_CONFIGS: (1, 4),
    CREATE_PARTITIONS: (0, 3),
    INCREMENTAL_ALTER_CONFIGS: (0, 1),
    DESCRIBE_CLUSTER: (0, 1),
    # Consumer groups, classic protocol (kawa.broker.groups). OffsetCommit/Fetch v10
    # address topics by id.
    OFFSET_COMMIT: (2, 10),
    OFFSET_FETCH: (1, 10),
    FIND_COORDINATOR: (0, 6),
    JOIN_GROUP: (0, 9),
    HEARTBEAT: (0, 4),
    LEAVE_GROUP: (0, 5),
    SYNC_GROUP: (0, 5),
    DESCRIBE_GROUPS: (0, 6),
    LIST_GROUPS: (0, 5),
    DELETE_GROUPS: (0, 2),
    OFFSET_DELETE: (0, 0),
}

ZERO_THROTTLE = i32Timedelta.parse(datetime.timedelta(0))


class UnsupportedApi(Exception):
    def __init__(self, api_key: int, api_version: int) -> None:
        super().__init__(f"API key {api_key} version {api_version} is not supported")
        self.api_key = api_key
        self.api_version = api_version


def is_supported(api_key: int, api_version: int) -> bool:
    bounds = SUPPORTED_VERSIONS.get(api_key)
    return bounds is not None and bounds[0] <= api_version <= bounds[1]


@functools.cache
def request_type(api_key: int, api_version: int) -> type:
    return load_request_schema(api_key, api_version)


@functools.cache
def response_type(api_key: int, api_version: int) -> type:
    return load_response_schema(api_key, api_version)


@functools.cache
def request_reader(api_key: int, api_version: int) -> Callable[[Any, int], tuple[Any, int]]:
    return entity_reader(request_type(api_key, api_version))  # type: ignore[no-any-return]


@functools.cache
def _response_writer(api_key: int, api_version: int) -> Callable[[Any, Any], None]:
    return entity_writer(response_type(api_key, api_version))  # type: ignore[no-any-return]


def request_header_flexible(api_key: int, api_version: int) -> bool:
    return bool(request_type(api_key, api_version).__flexible__)


def response_header_flexible(api_key: int, api_version: int) -> bool:
    # ApiVersions answers with header v0 at every version, so that a client
    # can read the error even when the broker does not know its version.
    if api_key == API_VERSIONS:
        return False
    return bool(response_type(api_key, api_version).__flexible__)


_read_header_v1 = entity_reader(RequestHeaderV1)
_read_header_v2 = entity_reader(RequestHeaderV2)


def request_header_type(flexible: bool) -> type:
    return RequestHeaderV2 if flexible else RequestHeaderV1


def read_request_header(frame: bytes | memoryview, flexible: bool) -> tuple[Any, int]:
    """Decode the request header; returns (header, bytes consumed)."""
    return (_read_header_v2 if flexible else _read_header_v1)(frame, 0)  # type: ignore[no-any-return]


def encode_response_body(api_key: int, api_version: int, response: object) -> bytes:
    buf = io.BytesIO()
    _response_writer(api_key, api_version)(buf, response)
    return buf.getvalue()


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def build(cls: type, **values: Any) -> Any:
    """Construct a kio entity from the values this version has fields for.

    Handlers describe a response once with every field any version may carry;
    fields the chosen version lacks are dropped here. throttle_time defaults
    to zero.
    """
    names = _field_names(cls)
    if "throttle_time" in names and "throttle_time" not in values:
        values["throttle_time"] = ZERO_THROTTLE
    return cls(**{k: v for k, v in values.items() if k in names})


def nested(cls: type, name: str) -> Any:
    """A nested entity class of the module that defines `cls` (same version),
    or None when this version has no such entity."""
    return getattr(sys.modules[cls.__module__], name, None)
