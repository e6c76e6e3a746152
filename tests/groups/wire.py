"""A minimal blocking Kafka protocol client built on kio, for version-by-version tests.

It imports nothing from kawa: requests are kio entities of any version, sent
with the header version the body's flexibility implies, and responses are
decoded with kio.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import socket
import struct
import sys
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i32Timedelta

from kawa.protocol.varint import decode_uvarint

CLIENT_ID = "kawa-groups-test"
API_VERSIONS = 18


def ms(milliseconds: int) -> i32Timedelta:
    return i32Timedelta.parse(datetime.timedelta(milliseconds=milliseconds))


def request(api_key: int, version: int, nested: str | None = None, **values: Any) -> Any:
    """A request entity (or, with `nested`, one of its nested entities) of this
    version, from the values it has fields for."""
    cls = load_request_schema(api_key, version)
    if nested is not None:
        cls = getattr(sys.modules[cls.__module__], nested)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def _encode(entity: Any) -> bytes:
    buf = io.BytesIO()
    entity_writer(type(entity))(buf, entity)
    return buf.getvalue()




class Wire:
    def __init__(self, bootstrap: str, timeout_s: float = 15.0) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Wire:  # noqa: PYI034 - final class
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            out += chunk
        return bytes(out)

    def call(self, entity: Any) -> Any:
        cls = type(entity)
        api_key, version, flexible = cls.__api_key__, cls.__version__, cls.__flexible__
        self.correlation_id += 1
        header_cls = RequestHeaderV2 if flexible else RequestHeaderV1
        header = header_cls(request_api_key=api_key, request_api_version=version,
                            correlation_id=self.correlation_id, client_id=CLIENT_ID)
        payload = _encode(header) + _encode(entity)
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", self._read_exact(4))
        frame = self._read_exact(size)
        (correlation_id,) = struct.unpack_from(">i", frame, 0)
        assert correlation_id == self.correlation_id
        pos = 4
        if flexible and api_key != API_VERSIONS:
            count, pos = decode_uvarint(frame, pos)
            for _ in range(count):
                _, pos = decode_uvarint(frame, pos)
                length, pos = decode_uvarint(frame, pos)
                pos += length
        response, _ = entity_reader(load_response_schema(api_key, version))(frame, pos)
        return response
