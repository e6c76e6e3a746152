"""The broker's HTTP endpoints: /ping, /healthz, /metrics.

A deliberately small HTTP/1.1 responder on asyncio streams (one request per
connection, bounded header size and read time), so that the broker needs no
web framework. /healthz answers 200 only when the broker serves Kafka
requests and its metadata store answers a query.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("kawa.http")

REQUEST_HEAD_BYTES_MAX = 8192
READ_TIMEOUT_S = 5.0


class HttpEndpoints:
    def __init__(self, health: Callable[[], tuple[bool, str]], metrics: Callable[[], bytes]) -> None:
        self._health = health
        self._metrics = metrics
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        if len(head) > REQUEST_HEAD_BYTES_MAX:
            self._respond(writer, 431, b"request head too large\n")
            return
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        method, path = (parts[0], parts[1].split(b"?", 1)[0]) if len(parts) >= 2 else (b"", b"")
        if method not in (b"GET", b"HEAD"):
            self._respond(writer, 405, b"use GET\n")
        elif path == b"/ping":
            self._respond(writer, 200, b"pong\n")
        elif path == b"/healthz":
            ok, detail = self._health()
            self._respond(writer, 200 if ok else 503, detail.encode() + b"\n")
        elif path == b"/metrics":
            self._respond(writer, 200, self._metrics(), b"text/plain; version=0.0.4; charset=utf-8")
        else:
            self._respond(writer, 404, b"not found: try /ping, /healthz or /metrics\n")

    @staticmethod
    def _respond(
        writer: asyncio.StreamWriter, status: int, body: bytes, content_type: bytes = b"text/plain"
    ) -> None:
        reason = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed", 431: b"Too Large", 503: b"Service Unavailable"}
        writer.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (status, reason.get(status, b""), content_type, len(body))
        )
        writer.write(body)
        writer.close()
