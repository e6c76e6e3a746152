"""Check an untrusted request frame against its schema before kio decodes it.

kio's native decoder is fast but trusts the frame in three ways this module
does not:

* it reserves memory for an array's declared length before reading it, so
  one 13-byte request declaring 2^32 elements aborts the whole process
  (a Rust allocation failure cannot be caught);
* it hands ``None`` to the broker for a null array the schema says cannot be
  null;
* it refuses a tagged field it does not know, where the protocol says skip.

The guard walks the frame once with the same schema (kio's dataclass field
metadata): an array may declare at most as many elements as bytes remain, a
null is allowed only where the schema allows it, and unknown tagged fields
are cut out of the frame. Field layouts are compiled once per request class.
It never builds the request: that stays kio's job.
"""

from __future__ import annotations

import dataclasses
import functools
import struct
from dataclasses import dataclass

from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveField,
    classify_field,
    get_field_tag,
    get_schema_field_type,
    is_optional,
)

from kawa.protocol.varint import encode_uvarint


class MalformedRequest(ValueError):
    pass


_FIXED_SIZES = {
    "int8": 1, "int16": 2, "int32": 4, "int64": 8, "uint8": 1, "uint16": 2, "uint32": 4,
    "uint64": 8, "float64": 8, "bool": 1, "uuid": 16, "timedelta_i32": 4,
    "timedelta_i64": 8, "datetime_i64": 8, "error_code": 2,
}
_WIDE = {"bytes", "records"}


@dataclass(frozen=True, slots=True)
class _Field:
    kind: str  # "fixed", "sized", "entity", "array"
    size: int = 0  # fixed: bytes; sized: 2 (string) or 4 (bytes) in non-flexible form
    nullable: bool = False
    element: object = None  # array: a _Field or an _Entity
    name: str = ""


@dataclass(frozen=True, slots=True)
class _Entity:
    fields: tuple[_Field, ...]
    tags: dict[int, object]  # tag -> _Field or _Entity, for tagged fields
    name: str


def _primitive(kafka_type: str, name: str) -> _Field:
    if kafka_type in _FIXED_SIZES:
        return _Field("fixed", _FIXED_SIZES[kafka_type], name=name)
    if kafka_type == "string":
        return _Field("sized", 2, name=name)
    if kafka_type in _WIDE:
        return _Field("sized", 4, name=name)
    raise TypeError(f"unknown kafka_type {kafka_type} in {name}")


@functools.cache
def _compile(cls: type) -> _Entity:
    fields: list[_Field] = []
    tags: dict[int, object] = {}
    for f in dataclasses.fields(cls):
        kind = classify_field(f)
        if isinstance(kind, EntityField):
            compiled: object = _compile(kind.type_)
            plain = _Field("entity", element=compiled, name=f.name)
        elif isinstance(kind, EntityTupleField):
            plain = _Field("array", nullable=is_optional(f), element=_compile(kind.type_), name=f.name)
        elif isinstance(kind, PrimitiveField):
            plain = _primitive(get_schema_field_type(f), f.name)
        else:
            element = _primitive(get_schema_field_type(f), f.name)
            plain = _Field("array", nullable=is_optional(f), element=element, name=f.name)
        tag = get_field_tag(f)
        if tag is not None:
            tags[tag] = plain
        else:
            fields.append(plain)
    return _Entity(tuple(fields), tags, cls.__name__)


class _Walker:
    __slots__ = ("cuts", "data", "end", "flexible", "pos")

    def __init__(self, data: bytes | memoryview, pos: int, end: int, flexible: bool) -> None:
        self.data = data
        self.pos = pos
        self.end = end
        self.flexible = flexible
        # (start, end, replacement) ranges to rewrite: unknown tagged fields.
        self.cuts: list[tuple[int, int, bytes]] = []

    def _take(self, n: int, what: str) -> int:
        start = self.pos
        if n < 0 or start + n > self.end:
            raise MalformedRequest(f"{what}: {n} bytes at byte {start} run past the end")
        self.pos = start + n
        return start

    def uvarint(self, what: str) -> int:
        value = shift = 0
        for _ in range(5):
            start = self._take(1, what)
            byte = self.data[start]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise MalformedRequest(f"{what}: varint longer than 5 bytes at byte {self.pos}")

    def _length(self, width: int, what: str) -> int:
        """A length prefix: -1 means null."""
        if self.flexible:
            return self.uvarint(what) - 1
        start = self._take(width, what)
        return struct.unpack_from(">h" if width == 2 else ">i", self.data, start)[0]  # type: ignore[no-any-return]

    def entity(self, entity: _Entity) -> None:
        for f in entity.fields:
            self.field(f)
        if self.flexible:
            self.tagged_section(entity)

    def field(self, f: _Field) -> None:
        kind = f.kind
        if kind == "fixed":
            self._take(f.size, f.name)
        elif kind == "sized":
            n = self._length(f.size, f.name)
            if n < -1:
                raise MalformedRequest(f"{f.name}: negative length {n}")
            if n > 0:
                self._take(n, f.name)
        elif kind == "entity":
            self.entity(f.element)  # type: ignore[arg-type]
        else:
            n = self._length(4, f.name)
            if n == -1:
                if not f.nullable:
                    raise MalformedRequest(f"{f.name}: null, but the field is not nullable")
                return
            if n < 0:
                raise MalformedRequest(f"{f.name}: negative array length {n}")
            # Every element takes at least one byte: more elements than bytes
            # left is a lie, and believing it costs memory.
            if n > self.end - self.pos:
                raise MalformedRequest(
                    f"{f.name}: {n} elements declared with {self.end - self.pos} bytes left"
                )
            element = f.element
            if isinstance(element, _Entity):
                for _ in range(n):
                    self.entity(element)
            else:
                for _ in range(n):
                    self.field(element)  # type: ignore[arg-type]

    def tagged_section(self, entity: _Entity) -> None:
        section_start = self.pos
        count = self.uvarint("tagged fields")
        if count > self.end - self.pos:
            raise MalformedRequest(f"{count} tagged fields declared with {self.end - self.pos} bytes left")
        kept: list[tuple[int, int]] = []  # (start, end) of known tagged fields, whole
        unknown = 0
        for _ in range(count):
            start = self.pos
            tag = self.uvarint("tag")
            size = self.uvarint("tag size")
            value_start = self._take(size, f"tag {tag}")
            known = entity.tags.get(tag)
            if known is None:
                unknown += 1
                continue
            inner = _Walker(self.data, value_start, value_start + size, True)
            if isinstance(known, _Entity):
                inner.entity(known)
            else:
                inner.field(known)  # type: ignore[arg-type]
            self.cuts.extend(inner.cuts)
            kept.append((start, self.pos))
        if unknown:
            replacement = encode_uvarint(len(kept)) + b"".join(
                bytes(self.data[s:e]) for s, e in kept
            )
            # Known tags inside kept fields were already checked; drop their
            # own cuts, the whole section is replaced.
            self.cuts = [c for c in self.cuts if not section_start <= c[0] < self.pos]
            self.cuts.append((section_start, self.pos, replacement))




def check_request(
    frame: bytes, header_cls: type, body_cls: type, flexible: bool
) -> bytes:
    """Validate header and body of `frame`; returns the frame with unknown
    tagged fields removed (the same object when there were none).

    Raises MalformedRequest naming the field and byte position.
    """
    walker = _Walker(frame, 0, len(frame), False)
    # Header: fixed prefix and a client_id that is never compact.
    walker._take(8, "request header")
    walker.field(_Field("sized", 2, name="client_id"))
    if flexible:
        walker.flexible = True
        walker.tagged_section(_compile(header_cls))
    walker.flexible = flexible
    walker.entity(_compile(body_cls))
    if not walker.cuts:
        return frame
    out = bytearray()
    pos = 0
    for start, end, replacement in sorted(walker.cuts):
        out += frame[pos:start]
        out += replacement
        pos = end
    out += frame[pos:]
    return bytes(out)
