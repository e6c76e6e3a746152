"""Group membership APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup.

Each handler turns the kio request into a coordinator call and the answer
into the response of the request's version. JoinGroup and SyncGroup may wait
for other members: they return an awaitable, resolved by the coordinator's
reply callback.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from kawa.broker.connection import RequestContext
from kawa.broker.groups.coordinator import GroupCoordinator
from kawa.broker.groups.state import JoinRequest, JoinResult, SyncResult
from kawa.protocol import api

KEY_TYPE_GROUP = 0
_NO_NODE = {"node_id": -1, "host": "", "port": -1}
_MS = datetime.timedelta(milliseconds=1)


def now_ms() -> int:
    return int(time.time() * 1000)


def coordinator(context: RequestContext) -> GroupCoordinator:
    return context.broker.groups  # type: ignore[no-any-return]


def millis(value: datetime.timedelta) -> int:
    return value // _MS


def client_host(peer: str) -> str:
    """Kafka's form: "/" and the address, without the port."""
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return "/" + host


def _answer_later(
    start: Callable[[Callable[[Any], None]], None], respond: Callable[[Any], Any]
) -> Any:
    """Run `start(reply)`; the response at once if it replied, else an awaitable."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def reply(result: Any) -> None:
        if not future.done():  # done: the connection went away meanwhile
            future.set_result(result)

    start(reply)
    if future.done():
        return respond(future.result())

    async def wait() -> Any:
        return respond(await future)

    return wait()


# -- FindCoordinator ------------------------------------------------------------------


def handle_find_coordinator(context: RequestContext, request: Any) -> Any:
    """This broker coordinates every group. Transaction and share coordinators do not exist."""
    version = context.api_version
    cls = api.response_type(api.FIND_COORDINATOR, version)
    host, port = context.broker.advertised
    node_id = context.broker.config.broker_id
    key_type = getattr(request, "key_type", KEY_TYPE_GROUP)
    if key_type == KEY_TYPE_GROUP and not coordinator(context).closed:
        found: dict[str, Any] = {
            "error_code": ErrorCode.none, "error_message": None,
            "node_id": node_id, "host": host, "port": port,
        }
    elif key_type == KEY_TYPE_GROUP:
        found = {"error_code": ErrorCode.coordinator_not_available,
                 "error_message": "the broker is shutting down", **_NO_NODE}
    else:
        found = {"error_code": ErrorCode.invalid_request,
                 "error_message": f"kawa has no coordinator for key type {key_type} "
                 "(only consumer groups, key type 0)", **_NO_NODE}
    if version >= 4:
        coordinator_cls = api.nested(cls, "Coordinator")
        return api.build(cls, coordinators=tuple(
            api.build(coordinator_cls, key=key, **found) for key in request.coordinator_keys
        ))
    return api.build(cls, **found)


# -- JoinGroup ------------------------------------------------------------------------


def handle_join_group(context: RequestContext, request: Any) -> Any:
    version = context.api_version
    session_ms = millis(request.session_timeout)
    rebalance_ms = millis(request.rebalance_timeout) if version >= 1 else session_ms
    join = JoinRequest(
        group_id=request.group_id,
        member_id=request.member_id or "",
        instance_id=getattr(request, "group_instance_id", None) or None,
        client_id=context.client_id or "",
        client_host=client_host(context.peer),
        session_timeout_ms=session_ms,
        rebalance_timeout_ms=rebalance_ms if rebalance_ms > 0 else session_ms,
        protocol_type=request.protocol_type,
        protocols=tuple((p.name, bytes(p.metadata)) for p in request.protocols),
        require_known_member_id=version >= 4,
        supports_skip_assignment=version >= 9,
    )
    return _answer_later(
        lambda reply: coordinator(context).join(join, now_ms(), reply),
        lambda result: join_response(version, result),
    )


def join_response(version: int, result: JoinResult) -> Any:
    cls = api.response_type(api.JOIN_GROUP, version)
    member_cls = api.nested(cls, "JoinGroupResponseMember")
    protocol_name = result.protocol_name
    if protocol_name is None and version < 7:  # not nullable before v7
        protocol_name = ""
    return api.build(
        cls,
        error_code=result.error,
        generation_id=result.generation_id,
        protocol_type=result.protocol_type,
        protocol_name=protocol_name,
        leader=result.leader_id,
        skip_assignment=result.skip_assignment,
        member_id=result.member_id,
        members=tuple(
            api.build(member_cls, member_id=m.member_id, group_instance_id=m.instance_id,
                      metadata=m.metadata)
            for m in result.members
        ),
    )


# -- SyncGroup ------------------------------------------------------------------------


def handle_sync_group(context: RequestContext, request: Any) -> Any:
    version = context.api_version
    assignments = {a.member_id: bytes(a.assignment) for a in request.assignments}

    def start(reply: Callable[[SyncResult], None]) -> None:
        coordinator(context).sync(
            request.group_id,
            request.member_id,
            getattr(request, "group_instance_id", None) or None,
            request.generation_id,
            getattr(request, "protocol_type", None),
            getattr(request, "protocol_name", None),
            assignments,
            now_ms(),
            reply,
        )

    def respond(result: SyncResult) -> Any:
        cls = api.response_type(api.SYNC_GROUP, version)
        return api.build(
            cls,
            error_code=result.error,
            protocol_type=result.protocol_type,
            protocol_name=result.protocol_name,
            assignment=result.assignment,
        )

    return _answer_later(start, respond)


# -- Heartbeat, LeaveGroup ------------------------------------------------------------


def handle_heartbeat(context: RequestContext, request: Any) -> Any:
    error = coordinator(context).heartbeat(
        request.group_id,
        request.member_id,
        getattr(request, "group_instance_id", None) or None,
        request.generation_id,
        now_ms(),
    )
    return api.build(api.response_type(api.HEARTBEAT, context.api_version), error_code=error)


def handle_leave_group(context: RequestContext, request: Any) -> Any:
    version = context.api_version
    cls = api.response_type(api.LEAVE_GROUP, version)
    if version < 3:
        error, errors = coordinator(context).leave(
            request.group_id, [(request.member_id, None)], now_ms()
        )
        if error is ErrorCode.none and errors:
            error = errors[0]
        return api.build(cls, error_code=error)
    identities = [(m.member_id or "", m.group_instance_id or None) for m in request.members]
    error, errors = coordinator(context).leave(request.group_id, identities, now_ms())
    member_cls = api.nested(cls, "MemberResponse")
    return api.build(
        cls,
        error_code=error,
        members=tuple(
            api.build(member_cls, member_id=member_id, group_instance_id=instance_id,
                      error_code=member_error)
            for (member_id, instance_id), member_error in zip(identities, errors, strict=False)
        ),
    )
