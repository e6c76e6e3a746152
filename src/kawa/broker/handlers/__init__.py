"""Request handlers, one module per API family.

A handler takes (RequestContext, decoded request) and returns one of: a kio
response entity, an ``Encoded`` body, None (no response: Produce acks=0), or
an awaitable of those when it must wait (fsync, long-poll fetch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from kawa.broker.connection import RequestContext
from kawa.broker.groups import handlers as groups
from kawa.broker.groups import offset_handlers as group_offsets
from kawa.broker.handlers import admin, fetch, metadata, offsets, produce
from kawa.protocol import api


def api_versions_response(version: int, unsupported: bool = False) -> Any:
    cls = api.response_type(api.API_VERSIONS, version)
    api_version_cls = api.nested(cls, "ApiVersion")
    keys = tuple(
        api.build(api_version_cls, api_key=key, min_version=low, max_version=high)
        for key, (low, high) in sorted(api.SUPPORTED_VERSIONS.items())
    )
    return api.build(
        cls,
        error_code=ErrorCode.unsupported_version if unsupported else ErrorCode.none,
        api_keys=keys,
    )


def _api_versions(context: RequestContext, request: Any) -> Any:
    return api_versions_response(context.api_version)


def table() -> dict[int, Callable[[RequestContext, Any], Any]]:
    handlers: dict[int, Callable[[RequestContext, Any], Any]] = {
        api.API_VERSIONS: _api_versions,
        api.METADATA: metadata.handle_metadata,
        api.DESCRIBE_CLUSTER: metadata.handle_describe_cluster,
        api.PRODUCE: produce.handle_produce,
        api.INIT_PRODUCER_ID: produce.handle_init_producer_id,
        api.FETCH: fetch.handle_fetch,
        api.LIST_OFFSETS: offsets.handle_list_offsets,
        api.DELETE_RECORDS: offsets.handle_delete_records,
        api.CREATE_TOPICS: admin.handle_create_topics,
        api.DELETE_TOPICS: admin.handle_delete_topics,
        api.CREATE_PARTITIONS: admin.handle_create_partitions,
        api.DESCRIBE_CONFIGS: admin.handle_describe_configs,
        api.INCREMENTAL_ALTER_CONFIGS: admin.handle_incremental_alter_configs,
        api.FIND_COORDINATOR: groups.handle_find_coordinator,
        api.JOIN_GROUP: groups.handle_join_group,
        api.SYNC_GROUP: groups.handle_sync_group,
        api.HEARTBEAT: groups.handle_heartbeat,
        api.LEAVE_GROUP: groups.handle_leave_group,
        api.OFFSET_COMMIT: group_offsets.handle_offset_commit,
        api.OFFSET_FETCH: group_offsets.handle_offset_fetch,
        api.OFFSET_DELETE: group_offsets.handle_offset_delete,
        api.LIST_GROUPS: group_offsets.handle_list_groups,
        api.DESCRIBE_GROUPS: group_offsets.handle_describe_groups,
        api.DELETE_GROUPS: group_offsets.handle_delete_groups,
    }
    assert set(handlers) == set(api.SUPPORTED_VERSIONS), "every advertised API has a handler"
    return handlers
