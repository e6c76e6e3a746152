"""One client connection: framing, dispatch, and responses in request order.

Rules of this state machine:

* A frame is a 4-byte big-endian size and that many bytes. A size outside
  0 < size <= ``request_size_bytes_max`` closes the connection (logged with
  the peer): after a bad size the stream cannot be re-synchronised.
* A request whose header or body does not decode, or whose API key/version
  kawa does not serve, closes the connection, as in Kafka — except
  ApiVersions at an unknown version, which is answered in v0 with
  UNSUPPORTED_VERSION so that the client can retry with one we know.
* Responses leave in the order their requests arrived, whatever order the
  handlers finish in. A request with no response (Produce acks=0) holds its
  place until done, then gives it up.
* Bounds: at most ``in_flight_requests_per_connection_max`` requests are open
  per connection, and the broker-wide buffered request bytes stay under
  ``buffered_produce_bytes_max``; past either, the connection stops reading
  until responses drain. When the socket's write buffer is full (a slow
  reader), reading stops too, so a slow client only ever slows itself.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kawa.protocol import api
from kawa.protocol.guard import MalformedRequest, check_request

if TYPE_CHECKING:
    from kawa.broker.server import Broker

log = logging.getLogger("kawa.broker")

_SIZE = struct.Struct(">i")
_HEADER_PREFIX = struct.Struct(">hhi")  # api_key, api_version, correlation_id
_WRITE_BUFFER_HIGH_BYTES = 4 * 1024 * 1024


@dataclass(slots=True)
class Encoded:
    """A response body already encoded, as buffers for writelines."""

    parts: list[bytes | memoryview]
    size_bytes: int


@dataclass(slots=True)
class RequestContext:
    broker: Broker
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    peer: str


class _Slot:
    __slots__ = (
        "api_key", "api_version", "correlation_id", "done", "frame_bytes", "parts",
        "response_bytes", "started",
    )

    def __init__(self, correlation_id: int, api_key: int, api_version: int, frame_bytes: int):
        self.correlation_id = correlation_id
        self.api_key = api_key
        self.api_version = api_version
        self.frame_bytes = frame_bytes
        self.done = False
        self.parts: list[bytes | memoryview] | None = None
        self.response_bytes = 0
        self.started = time.perf_counter()


class ProtocolViolation(Exception):
    pass


class Connection(asyncio.Protocol):
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._buffer = bytearray()
        self._slots: deque[_Slot] = deque()
        self._reading_paused_for: set[str] = set()
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def busy(self) -> bool:
        return bool(self._slots)

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        transport.set_write_buffer_limits(high=_WRITE_BUFFER_HIGH_BYTES)
        if not self.broker.connection_opened(self):
            log.warning("refusing connection from %s: connections_max reached", self.peer)
            self._closed = True
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        for slot in self._slots:
            self.broker.release_buffered(slot.frame_bytes)
        self._slots.clear()
        for task in self._tasks:
            task.cancel()
        self.broker.connection_closed(self)

    def pause_writing(self) -> None:
        self._pause_reading("write-buffer")

    def resume_writing(self) -> None:
        self._resume_reading("write-buffer")

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        self.broker.metrics.bytes_in.inc(len(data))
        limit = self.broker.config.request_size_bytes_max
        while len(buffer) >= 4 and not self._closed:
            (size,) = _SIZE.unpack_from(buffer, 0)
            if size <= 0 or size > limit:
                self.close(f"frame size {size} outside 1..{limit} (request_size_bytes_max)")
                return
            if len(buffer) < 4 + size:
                break
            frame = bytes(memoryview(buffer)[4 : 4 + size])
            del buffer[: 4 + size]
            try:
                self._dispatch(frame)
            except ProtocolViolation as e:
                self.close(str(e))
                return
            self._apply_limits()

    # -- flow control ---------------------------------------------------------

    def _apply_limits(self) -> None:
        if len(self._slots) >= self.broker.config.in_flight_requests_per_connection_max:
            self._pause_reading("in-flight")
        if self.broker.over_buffered_limit():
            self._pause_reading("buffered-bytes")
            self.broker.wait_for_buffer_space(self)

    def _pause_reading(self, reason: str) -> None:
        if not self._reading_paused_for and self.transport is not None and not self._closed:
            self.transport.pause_reading()
        self._reading_paused_for.add(reason)

    def _resume_reading(self, reason: str) -> None:
        if reason not in self._reading_paused_for:
            return
        self._reading_paused_for.discard(reason)
        if not self._reading_paused_for and self.transport is not None and not self._closed:
            self.transport.resume_reading()

    def buffer_space_available(self) -> None:
        self._resume_reading("buffered-bytes")

    # -- requests -------------------------------------------------------------

    def _dispatch(self, frame: bytes) -> None:
        if len(frame) < _HEADER_PREFIX.size:
            raise ProtocolViolation(f"request of {len(frame)} bytes is shorter than a header")
        api_key, api_version, correlation_id = _HEADER_PREFIX.unpack_from(frame, 0)
        slot = _Slot(correlation_id, api_key, api_version, len(frame))
        if not api.is_supported(api_key, api_version):
            if api_key == api.API_VERSIONS:
                # Answer in v0, which every client can read, with the versions we do have.
                slot.api_version = 0
                self._enqueue(slot)
                self._complete(slot, self.broker.api_versions_response(0, unsupported=True))
                return
            raise ProtocolViolation(f"unsupported API key {api_key} version {api_version}")
        flexible = api.request_header_flexible(api_key, api_version)
        try:
            frame = check_request(
                frame, api.request_header_type(flexible), api.request_type(api_key, api_version),
                flexible,
            )
        except MalformedRequest as e:
            raise ProtocolViolation(f"malformed API key {api_key} v{api_version}: {e}") from None
        try:
            header, used = api.read_request_header(frame, flexible)
            request, _ = api.request_reader(api_key, api_version)(frame, used)
        except Exception as e:  # noqa: BLE001 - kio raises several types for bad input
            raise ProtocolViolation(
                f"cannot decode API key {api_key} v{api_version}: {type(e).__name__}: {e}"
            ) from None
        # Trailing bytes are ignored, as Kafka's own parser does: librdkafka
        # sends fields in Metadata v12 that the schema no longer has.
        self._enqueue(slot)
        context = RequestContext(
            self.broker, api_key, api_version, correlation_id, header.client_id, self.peer
        )
        try:
            result = self.broker.handle(context, request)
        except Exception:
            log.exception("handler for API key %d failed (peer %s)", api_key, self.peer)
            self.close("internal error")
            return
        if result is not None and hasattr(result, "__await__"):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(lambda t: self._task_done(slot, t))
        else:
            self._complete(slot, result)

    def _enqueue(self, slot: _Slot) -> None:
        self._slots.append(slot)
        self.broker.add_buffered(slot.frame_bytes)

    def _task_done(self, slot: _Slot, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or self._closed:
            return
        error = task.exception()
        if error is not None:
            log.error(
                "handler for API key %d failed (peer %s): %r", slot.api_key, self.peer, error
            )
            self.close("internal error")
            return
        self._complete(slot, task.result())

    def _complete(self, slot: _Slot, response: object) -> None:
        if self._closed:
            return
        if response is not None:
            slot.parts = self._frame(slot, response)
        slot.done = True
        self.broker.metrics.request_done(slot.api_key, time.perf_counter() - slot.started)
        self._flush()

    def _frame(self, slot: _Slot, response: object) -> list[bytes | memoryview]:
        if isinstance(response, Encoded):
            body_parts, body_size = response.parts, response.size_bytes
        else:
            body = api.encode_response_body(slot.api_key, slot.api_version, response)
            body_parts, body_size = [body], len(body)
        flexible = api.response_header_flexible(slot.api_key, slot.api_version)
        header = _SIZE.pack(slot.correlation_id) + (b"\x00" if flexible else b"")
        slot.response_bytes = 4 + len(header) + body_size
        return [_SIZE.pack(len(header) + body_size), header, *body_parts]

    def _flush(self) -> None:
        assert self.transport is not None
        out: list[bytes | memoryview] = []
        released = 0
        sent = 0
        while self._slots and self._slots[0].done:
            slot = self._slots.popleft()
            released += slot.frame_bytes
            if slot.parts is not None:
                out.extend(slot.parts)
                sent += slot.response_bytes
        if out:
            self.transport.writelines(out)
            self.broker.metrics.bytes_out.inc(sent)
        if released:
            self.broker.release_buffered(released)
            if len(self._slots) < self.broker.config.in_flight_requests_per_connection_max:
                self._resume_reading("in-flight")

    def close(self, reason: str) -> None:
        if self._closed:
            return
        log.warning("closing connection from %s: %s", self.peer, reason)
        self.broker.metrics.error(-1, "connection_closed")
        self._closed = True
        if self.transport is not None:
            self.transport.close()
