"""Span messages encoded straight into OTLP ExportTraceServiceRequest bytes (protobuf).

Building opentelemetry-proto objects field by field costs about 13 µs per span; writing
the wire format directly, with the repeated pieces cached (a resource block per service
and instance, a span name, an attribute's key and value, a status), costs a few.

The protobuf wire format: a field is a tag (``field_number << 3 | wire_type``, as a
varint) then its value: a varint (type 0), 8 little-endian bytes (type 1, fixed64 and
double), or a varint length and that many bytes (type 2: strings, bytes, messages).
Field numbers are those of opentelemetry-proto's ``trace.proto``, ``common.proto`` and
``resource.proto``; ``tests/unit/test_otlp_encode.py`` decodes the bytes with its
classes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

from natsmesh.wire import SpanMessage

__all__ = ["SCOPE_NAME", "OtlpEncoder"]

#: the instrumentation scope every exported span carries
SCOPE_NAME = "natsmesh"
#: entries per cache; a full cache is emptied (spans' attributes are mostly few and repeated)
CACHE_LIMIT = 4096
#: only pieces shorter than this (bytes, encoded) are cached: a long value (a payload) is
#: seldom repeated, and 4096 of them would hold megabytes
CACHE_MAX_BYTES = 256
#: lists nested deeper than this travel as a string (their ``str``)
MAX_DEPTH = 8

_BYTE = [bytes((i,)) for i in range(256)]
_INT64 = 1 << 63
_fromhex = bytes.fromhex
_TIMES = struct.Struct("<BQBQ")  # Span.start_time_unix_nano (7), end_time_unix_nano (8)
_EVENT_TIME = struct.Struct("<BQ")  # Span.Event.time_unix_nano (1)
_DOUBLE = struct.Struct("<Bd")  # AnyValue.double_value (4)
# Span.kind (6) from the span message's kind (OpenTelemetry's SpanKind, 0 = internal);
# OTLP counts from SPAN_KIND_UNSPECIFIED = 0, so internal is 1
_KINDS = [b"\x30" + _BYTE[k + 1] for k in range(5)]


def varint(n: int) -> bytes:
    """``n`` (0 ≤ n < 2**64) as a protobuf varint."""
    if n < 0x80:
        return _BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _delimited(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: tag, length, body."""
    n = len(body)
    return tag + (_BYTE[n] if n < 0x80 else varint(n)) + body


def _string(tag: bytes, text: str) -> bytes:
    return _delimited(tag, text.encode("utf-8", "surrogatepass"))


def any_value(value: object, depth: int = 0) -> bytes:
    """The body of an ``AnyValue``: strings, bools, ints (int64), floats, bytes and lists
    of these (``MAX_DEPTH`` deep); an int outside int64, a list nested deeper and anything
    else (None, a dict) travel as strings."""
    if isinstance(value, str):
        return _string(b"\x0a", value)
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if -_INT64 <= value < _INT64:
            return b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF)
        return _string(b"\x0a", str(value))
    if isinstance(value, float):
        return _DOUBLE.pack(0x21, value)
    if isinstance(value, list | tuple) and depth < MAX_DEPTH:
        # array_value (5): ArrayValue, whose values (1) are AnyValues
        depth += 1
        return _delimited(
            b"\x2a", b"".join(_delimited(b"\x0a", any_value(v, depth)) for v in value)
        )
    if isinstance(value, bytes | bytearray):
        return _delimited(b"\x3a", bytes(value))
    return _string(b"\x0a", str(value))


def key_value(tag: bytes, key: str, value: object) -> bytes:
    """A ``KeyValue`` field (``tag``: its field number in the enclosing message)."""
    return _delimited(tag, _string(b"\x0a", key) + _delimited(b"\x12", any_value(value)))


class OtlpEncoder:
    """Encodes span messages as one ``ExportTraceServiceRequest``; keeps bounded caches of
    the pieces that repeat from span to span, so use one encoder per sender (not thread-safe).
    """

    def __init__(self, scope_name: str = SCOPE_NAME, scope_version: str = "") -> None:
        scope = _string(b"\x0a", scope_name) + (
            _string(b"\x12", scope_version) if scope_version else b""
        )
        #: ScopeSpans.scope (1): InstrumentationScope
        self._scope = _delimited(b"\x0a", scope)
        self._resources: dict[tuple[str, str], bytes] = {}
        self._names: dict[str, bytes] = {}
        self._statuses: dict[tuple[int, str], bytes] = {}
        self._span_attrs: dict[tuple[str, type, object], bytes] = {}
        self._event_attrs: dict[tuple[str, type, object], bytes] = {}

    def encode(self, spans: Iterable[SpanMessage]) -> tuple[bytes, int]:
        """The request's bytes and the number of spans in it. A span that cannot be
        encoded (an id that is not hex of the right length, a time out of range) is left
        out."""
        groups: dict[tuple[str, str], list[bytes]] = {}
        count = 0
        span = self.span
        for s in spans:
            try:
                encoded = span(s)
            except (ValueError, TypeError, OverflowError, RecursionError, struct.error):
                continue
            key = (s.service, s.instance)
            group = groups.get(key)
            if group is None:
                groups[key] = [encoded]
            else:
                group.append(encoded)
            count += 1
        out: list[bytes] = []
        scope = self._scope
        for key, group in groups.items():
            resource = self._resources.get(key)
            if resource is None:
                resource = self._resource(*key)
            # ExportTraceServiceRequest.resource_spans (1): ResourceSpans, with its resource
            # and one scope_spans (2); lengths first, so that the spans are copied once
            size = len(scope) + sum(map(len, group))
            head = b"\x12" + varint(size) + scope
            out.append(
                b"\x0a" + varint(len(resource) + len(head) + size - len(scope)) + resource + head
            )
            out += group
        return b"".join(out), count

    def _resource(self, service: str, instance: str) -> bytes:
        attrs = key_value(b"\x0a", "service.name", service)
        if instance:
            attrs += key_value(b"\x0a", "service.instance.id", instance)
        # ResourceSpans.resource (1): Resource, whose attributes (1) are KeyValues
        block = _delimited(b"\x0a", attrs)
        if len(block) < CACHE_MAX_BYTES:
            if len(self._resources) >= CACHE_LIMIT:
                self._resources.clear()
            self._resources[(service, instance)] = block
        return block

    def span(self, s: SpanMessage) -> bytes:
        """One ``ScopeSpans.spans`` field (2): the span, tag and length included."""
        # trace_id (1), span_id (2), parent_span_id (4): tags and ids in one fromhex (which
        # skips whitespace: the length check catches it with the ids' lengths)
        if s.parent_id:
            ids = _fromhex("0a10" + s.trace_id + "1208" + s.span_id + "2208" + s.parent_id)
            if len(ids) != 38 or len(s.parent_id) != 16:
                raise ValueError("a trace id is 16 bytes, a span id 8")
        else:
            ids = _fromhex("0a10" + s.trace_id + "1208" + s.span_id)
            if len(ids) != 28:
                raise ValueError("a trace id is 16 bytes, a span id 8")
        if len(s.trace_id) != 32 or len(s.span_id) != 16:
            raise ValueError("a trace id is 16 bytes, a span id 8")
        name = self._names.get(s.name)
        if name is None:
            name = _string(b"\x2a", s.name)  # name (5)
            if len(name) < CACHE_MAX_BYTES:
                if len(self._names) >= CACHE_LIMIT:
                    self._names.clear()
                self._names[s.name] = name
        kind = s.kind
        parts = [
            ids,
            name,
            _KINDS[kind] if 0 <= kind < 5 else b"",
            _TIMES.pack(0x39, s.start, 0x41, s.end),
        ]
        attrs = s.attrs
        if attrs:  # attributes (9)
            cache = self._span_attrs
            for k, v in attrs.items():
                t = v.__class__
                if t is str or t is int or t is bool:  # not floats: 0.0 == -0.0, nan != nan
                    key = (k, t, v)
                    kv = cache.get(key)
                    if kv is None:
                        kv = key_value(b"\x4a", k, v)
                        if len(kv) < CACHE_MAX_BYTES:
                            if len(cache) >= CACHE_LIMIT:
                                cache.clear()
                            cache[key] = kv
                    parts.append(kv)
                else:
                    parts.append(key_value(b"\x4a", k, v))
        for e in s.events:
            event = [_EVENT_TIME.pack(0x09, e.time), _string(b"\x12", e.name)]
            if e.attrs:
                event.append(self._attrs(b"\x1a", e.attrs, self._event_attrs))
            parts.append(_delimited(b"\x5a", b"".join(event)))  # events (11)
        if s.status or s.status_message:
            status = self._statuses.get((s.status, s.status_message))
            if status is None:
                status = self._status(s.status, s.status_message)
            parts.append(status)
        body = b"".join(parts)
        n = len(body)
        if n < 0x80:
            return b"\x12" + _BYTE[n] + body
        if n < 0x4000:  # most spans: a two-byte length
            return bytes((0x12, n & 0x7F | 0x80, n >> 7)) + body
        return b"\x12" + varint(n) + body

    def _status(self, code: int, message: str) -> bytes:
        if not 0 <= code <= 2:
            raise ValueError(f"status code {code} is not 0, 1 or 2")
        body = (_string(b"\x12", message) if message else b"") + (
            b"\x18" + _BYTE[code] if code else b""
        )
        status = _delimited(b"\x7a", body)  # status (15)
        if len(status) < CACHE_MAX_BYTES:
            if len(self._statuses) >= CACHE_LIMIT:
                self._statuses.clear()
            self._statuses[(code, message)] = status
        return status

    @staticmethod
    def _attrs(
        tag: bytes, attrs: dict[str, Any], cache: dict[tuple[str, type, object], bytes]
    ) -> bytes:
        out = []
        for k, v in attrs.items():
            t = v.__class__
            if t is str or t is int or t is bool:  # not floats: 0.0 == -0.0, nan != nan
                key = (k, t, v)
                kv = cache.get(key)
                if kv is None:
                    kv = key_value(tag, k, v)
                    if len(kv) < CACHE_MAX_BYTES:
                        if len(cache) >= CACHE_LIMIT:
                            cache.clear()
                        cache[key] = kv
            else:
                kv = key_value(tag, k, v)
            out.append(kv)
        return b"".join(out)
