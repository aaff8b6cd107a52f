"""The collector's OTLP bytes, decoded with opentelemetry-proto's classes: every field of
every span, grouped by resource, with the scope; bad spans left out; bounded caches."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from natsmesh.tracing import otlp_encode
from natsmesh.tracing.otlp_encode import SCOPE_NAME, OtlpEncoder, varint
from natsmesh.wire import SpanEvent, SpanMessage


def any_value(value: object) -> AnyValue:
    """What the encoder should write, built with the proto classes."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return AnyValue(int_value=value)
        return AnyValue(string_value=str(value))
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    return AnyValue(string_value=str(value))


def key_values(attrs: dict[str, object]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


def expected(spans: list[SpanMessage]) -> ExportTraceServiceRequest:
    """The reference conversion: a resource per (service, instance), in order of first
    appearance; the natsmesh scope."""
    groups: dict[tuple[str, str], list[Span]] = {}
    for s in spans:
        span = Span(
            trace_id=bytes.fromhex(s.trace_id),
            span_id=bytes.fromhex(s.span_id),
            parent_span_id=bytes.fromhex(s.parent_id) if s.parent_id else b"",
            name=s.name,
            kind=s.kind + 1,  # type: ignore[arg-type]
            start_time_unix_nano=s.start,
            end_time_unix_nano=s.end,
            attributes=key_values(s.attrs),
            events=[
                Span.Event(time_unix_nano=e.time, name=e.name, attributes=key_values(e.attrs))
                for e in s.events
            ],
        )
        if s.status or s.status_message:
            span.status.CopyFrom(Status(code=s.status, message=s.status_message))  # type: ignore[arg-type]
        groups.setdefault((s.service, s.instance), []).append(span)
    resource_spans = []
    for (service, instance), group in groups.items():
        attrs: dict[str, object] = {"service.name": service}
        if instance:
            attrs["service.instance.id"] = instance
        resource_spans.append(
            ResourceSpans(
                resource=Resource(attributes=key_values(attrs)),
                scope_spans=[ScopeSpans(scope=InstrumentationScope(name=SCOPE_NAME), spans=group)],
            )
        )
    return ExportTraceServiceRequest(resource_spans=resource_spans)


def decode(data: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(data)


EVERY_KIND_OF_VALUE: dict[str, object] = {
    "s": "ünïcode ✓",
    "empty": "",
    "t": True,
    "f": False,
    "one": 1,
    "zero": 0,
    "negative": -5,
    "min": -(2**63),
    "max": 2**63 - 1,
    "huge": 2**64,
    "pi": 3.25,
    "minus_zero": -0.0,
    "list": ["a", 1, 2.5, True, ["nested"]],
    "no_items": [],
    "tuple": ("x", "y"),
    "raw": b"\x00\xff",
    "none": None,
    "dict": {"a": 1},
    "long": "x" * 20_000,  # a span longer than 16 KiB: a three-byte length
}


def full_span(**changes: object) -> SpanMessage:
    values: dict[str, object] = {
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "parent_id": "00f067aa0ba902b8",
        "name": "flight_search",
        "start": 1_700_000_000_000_000_000,
        "end": 1_700_000_000_000_123_456,
        "service": "flight-agent",
        "instance": "flight-agent-1",
        "kind": 1,
        "status": 2,
        "status_message": "ToolError: no flights",
        "attrs": EVERY_KIND_OF_VALUE,
        "events": (
            SpanEvent(name="exception", time=1_700_000_000_000_100_000,
                      attrs={"exception.type": "ToolError", "exception.escaped": True}),
            SpanEvent(name="cancelled", time=1_700_000_000_000_110_000),
        ),
    }  # fmt: skip
    values.update(changes)
    return SpanMessage(**values)  # type: ignore[arg-type]


def test_every_field_of_a_span_reads_back() -> None:
    span = full_span()
    data, count = OtlpEncoder().encode([span])
    assert count == 1
    got = decode(data)
    assert got == expected([span])
    [rs] = got.resource_spans
    assert {a.key: a.value.string_value for a in rs.resource.attributes} == {
        "service.name": "flight-agent",
        "service.instance.id": "flight-agent-1",
    }
    [ss] = rs.scope_spans
    assert ss.scope.name == "natsmesh"
    [s] = ss.spans
    assert s.trace_id.hex() == span.trace_id and s.span_id.hex() == span.span_id
    assert s.parent_span_id.hex() == span.parent_id
    assert s.kind == Span.SPAN_KIND_SERVER
    assert (s.start_time_unix_nano, s.end_time_unix_nano) == (span.start, span.end)
    assert s.status.code == Status.STATUS_CODE_ERROR
    assert s.status.message == "ToolError: no flights"
    attrs = {a.key: a.value for a in s.attributes}
    assert list(attrs) == list(EVERY_KIND_OF_VALUE)
    assert attrs["t"].bool_value is True and attrs["t"].WhichOneof("value") == "bool_value"
    assert attrs["f"].WhichOneof("value") == "bool_value" and attrs["f"].bool_value is False
    assert attrs["one"].WhichOneof("value") == "int_value" and attrs["one"].int_value == 1
    assert attrs["min"].int_value == -(2**63) and attrs["max"].int_value == 2**63 - 1
    assert attrs["huge"].string_value == str(2**64)
    assert math.copysign(1, attrs["minus_zero"].double_value) == -1
    assert [v.WhichOneof("value") for v in attrs["list"].array_value.values] == [
        "string_value", "int_value", "double_value", "bool_value", "array_value",
    ]  # fmt: skip
    assert attrs["no_items"].WhichOneof("value") == "array_value"
    assert attrs["raw"].bytes_value == b"\x00\xff"
    assert attrs["none"].string_value == "None"
    assert attrs["long"].string_value == "x" * 20_000
    assert [e.name for e in s.events] == ["exception", "cancelled"]
    assert {a.key: a.value.bool_value for a in s.events[0].attributes}["exception.escaped"]


def test_resources_group_their_spans_in_order() -> None:
    spans = [
        full_span(span_id=f"{i:016x}", service=service, instance=instance, kind=i % 5,
                  status=i % 3, status_message="", parent_id=None if i % 2 else f"{i + 1:016x}")
        for i, (service, instance) in enumerate(
            [("a", "a-1"), ("b", ""), ("a", "a-1"), ("a", "a-2"), ("b", ""), ("a", "a-1")]
        )
    ]  # fmt: skip
    data, count = OtlpEncoder().encode(spans)
    got = decode(data)
    assert count == 6 and got == expected(spans)
    assert [
        ({a.key: a.value.string_value for a in rs.resource.attributes},
         [s.span_id.hex()[-1] for s in rs.scope_spans[0].spans])
        for rs in got.resource_spans
    ] == [
        ({"service.name": "a", "service.instance.id": "a-1"}, ["0", "2", "5"]),
        ({"service.name": "b"}, ["1", "4"]),
        ({"service.name": "a", "service.instance.id": "a-2"}, ["3"]),
    ]  # fmt: skip
    assert OtlpEncoder().encode([]) == (b"", 0)


def test_a_span_that_cannot_be_encoded_is_left_out() -> None:
    good = full_span(attrs={"k": "v"})
    bad = [
        full_span(trace_id="not hex"),
        full_span(trace_id="4bf92f35"),  # too short
        full_span(span_id="00f067aa0ba902b7ff"),  # too long
        full_span(parent_id="zz"),
        full_span(start=-1),
        full_span(end=2**64),
        full_span(status=7),
        full_span(events=(SpanEvent(name="e", time=-5),)),
    ]
    data, count = OtlpEncoder().encode([bad[0], good, *bad[1:], good])
    assert count == 2
    assert decode(data) == expected([good, good])


def test_the_caches_are_bounded_and_never_confuse_types(monkeypatch) -> None:
    monkeypatch.setattr(otlp_encode, "CACHE_LIMIT", 8)
    encoder = OtlpEncoder()
    spans = [
        full_span(name=f"n{i}", service=f"s{i % 11}", status_message=f"m{i}",
                  attrs={"k": i, "flag": i % 2 == 1, "one": 1 if i % 2 else True, "s": f"v{i}"})
        for i in range(40)
    ]  # fmt: skip
    for _ in range(2):  # the second time, from warm caches
        data, _count = encoder.encode(spans)
        assert decode(data) == expected(spans)
    caches = [encoder._resources, encoder._names, encoder._statuses, encoder._span_attrs]
    assert all(0 < len(c) <= 8 for c in caches), [len(c) for c in caches]


def test_long_values_are_not_cached() -> None:
    """Payload-sized values (unique, 100 KB) go out but stay out of the caches, which
    would otherwise hold up to 4096 of them each."""
    encoder = OtlpEncoder()
    spans = [
        full_span(name=f"n{i}" + "x" * 1000, service=f"s{i}" + "y" * 1000,
                  status_message=f"m{i}" + "z" * 1000,
                  attrs={"payload": f"{i}" + "p" * 100_000, "k": i},
                  events=(SpanEvent(name="e", time=3, attrs={"body": f"{i}" + "b" * 1000}),))
        for i in range(300)
    ]  # fmt: skip
    data, count = encoder.encode(spans)
    assert count == 300 and decode(data) == expected(spans)
    caches = [encoder._resources, encoder._names, encoder._statuses, encoder._span_attrs,
              encoder._event_attrs]  # fmt: skip
    held = sum(len(v) for c in caches for v in c.values())
    assert held < 300 * 256, held
    assert len(encoder._span_attrs) == 300  # the short ones ("k") still are


def test_deep_lists_travel_as_strings_and_never_break_the_encoder() -> None:
    """Lists nested deeper than MAX_DEPTH go as their ``str`` beyond it (a naive encoder
    recursed into a RecursionError at a few hundred levels); a value even ``str`` cannot
    take (100,000 deep) leaves its span out, not the request."""
    deep: list = []
    for _ in range(400):
        deep = [deep]
    data, count = OtlpEncoder().encode([full_span(attrs={"deep": deep})])
    assert count == 1
    value = decode(data).resource_spans[0].scope_spans[0].spans[0].attributes[0].value
    for _ in range(otlp_encode.MAX_DEPTH):
        [value] = value.array_value.values
    assert value.string_value == str(deep[0][0][0][0][0][0][0][0])
    deeper: list = []
    for _ in range(100_000):
        deeper = [deeper]
    good = full_span()
    data, count = OtlpEncoder().encode([full_span(attrs={"deep": deeper}), good])
    assert count == 1 and decode(data) == expected([good])


def test_varint() -> None:
    assert [varint(n) for n in (0, 1, 127, 128, 300, 2**64 - 1)] == [
        b"\x00", b"\x01", b"\x7f", b"\x80\x01", b"\xac\x02", b"\xff" * 9 + b"\x01",
    ]  # fmt: skip


# --- property: random spans read back as the reference conversion -----------------------

scalars = st.one_of(
    st.text(max_size=20),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4))
attributes = st.dictionaries(
    st.sampled_from(["a", "b", "mesh.tool", "ü", ""]) | st.text(max_size=8), values, max_size=6
)
times = st.integers(min_value=0, max_value=2**64 - 1)


@st.composite
def span_messages(draw: st.DrawFn) -> SpanMessage:
    return SpanMessage(
        trace_id=draw(st.binary(min_size=16, max_size=16)).hex(),
        span_id=draw(st.binary(min_size=8, max_size=8)).hex(),
        parent_id=draw(st.none() | st.binary(min_size=8, max_size=8).map(bytes.hex)),
        name=draw(st.sampled_from(["call", "flight_search"]) | st.text(max_size=30)),
        start=draw(times),
        end=draw(times),
        service=draw(st.sampled_from(["a", "b", "c"])),
        instance=draw(st.sampled_from(["", "1", "2"])),
        kind=draw(st.integers(min_value=0, max_value=4)),
        status=draw(st.integers(min_value=0, max_value=2)),
        status_message=draw(st.sampled_from(["", "boom"]) | st.text(max_size=10)),
        attrs=draw(attributes),
        events=tuple(
            draw(
                st.lists(
                    st.builds(SpanEvent, name=st.text(max_size=10), time=times, attrs=attributes),
                    max_size=3,
                )
            )
        ),
    )


encoder = OtlpEncoder()  # shared across examples: its caches stay warm and must stay right


@settings(max_examples=300, deadline=None)
@given(st.lists(span_messages(), max_size=8))
def test_random_spans_read_back(spans: list[SpanMessage]) -> None:
    data, count = encoder.encode(spans)
    assert count == len(spans)
    assert decode(data) == expected(spans)


def test_floats_keep_their_sign_from_span_to_span() -> None:
    encoder = OtlpEncoder()
    spans = [full_span(attrs={"x": 0.0}), full_span(attrs={"x": -0.0})]
    got = decode(encoder.encode(spans)[0]).resource_spans[0].scope_spans[0].spans
    assert [math.copysign(1, s.attributes[0].value.double_value) for s in got] == [1, -1]
