"""Wire messages (registry records, reply envelopes, span messages) and their codecs."""

from __future__ import annotations

from typing import Any

import msgspec

#: bumped when a record changes incompatibly; readers ignore fields they do not know
RECORD_VERSION = 1
SPAN_VERSION = 1
#: the call protocol this code speaks: 1 = one request, one reply; 2 = a conversation on the
#: reply subject (accepted, chunks, probes, cancel); see docs/protocol.md
PROTOCOL = 2


class DependencyRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """A declared dependency, as advertised in the registry."""

    capability: str
    tags: tuple[str, ...] = ()
    version: str | None = None


class ToolRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """One tool of an instance, as advertised in the registry."""

    name: str
    capability: str
    version: str = "1.0.0"
    tags: tuple[str, ...] = ()
    description: str = ""
    input_schema: dict[str, Any] = msgspec.field(default_factory=dict)
    output_schema: dict[str, Any] | None = None
    dependencies: tuple[DependencyRecord, ...] = ()
    idempotent: bool = False
    #: "tool", or "llm_provider" for a tool that completes LLM conversations
    kind: str = "tool"
    #: the tool streams chunks (an async generator); ``await`` still returns the collected result
    stream: bool = False


class AgentRecord(msgspec.Struct, frozen=True):
    """The registry value of one running instance (key ``<agent>.<instance_id>``)."""

    name: str
    instance_id: str
    version: str
    description: str
    host: str
    pid: int
    started_at: float
    tools: tuple[ToolRecord, ...] = ()
    runtime: str = "python"
    v: int = RECORD_VERSION
    #: the call protocol the instance speaks (absent in records of protocol-1 agents)
    protocol: int = 1


class SpanEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """An event inside a span (an exception, a cancellation)."""

    name: str
    time: int
    attrs: dict[str, Any] = msgspec.field(default_factory=dict)


class SpanMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    """One finished span (msgpack); a span message carries one or a batch of them."""

    trace_id: str
    span_id: str
    name: str
    start: int  # unix ns
    end: int  # unix ns
    service: str
    parent_id: str | None = None
    kind: int = 0  # OpenTelemetry SpanKind: 0 internal, 1 server, 2 client, 3 producer, 4 consumer
    status: int = 0  # 0 unset, 1 ok, 2 error
    status_message: str = ""
    instance: str = ""
    attrs: dict[str, Any] = msgspec.field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()
    v: int = SPAN_VERSION


def _enc_hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if dump is not None:  # a pydantic model
        return dump(mode="json")
    if isinstance(obj, set | frozenset):
        return list(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__} as JSON")


_json_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
_json_decoder = msgspec.json.Decoder()
_record_decoder = msgspec.json.Decoder(AgentRecord)
_span_encoder = msgspec.msgpack.Encoder()
_span_decoder = msgspec.msgpack.Decoder(SpanMessage)
_batch_decoder = msgspec.msgpack.Decoder(list[SpanMessage])
_raw_batch_decoder = msgspec.msgpack.Decoder(list[msgspec.Raw])


def encode_json(value: Any) -> bytes:
    """JSON-encode a value (pydantic models included)."""
    return _json_encoder.encode(value)


def decode_json(data: bytes) -> Any:
    """Decode JSON bytes; raises ``msgspec.DecodeError`` on malformed input."""
    return _json_decoder.decode(data)


def encode_result(value: Any) -> bytes:
    """A success envelope: ``{"result": value}``."""
    return b'{"result":' + _json_encoder.encode(value) + b"}"


def encode_error(error: dict[str, Any]) -> bytes:
    """An error envelope: ``{"error": {"type", "message", "details"}}``."""
    return _json_encoder.encode({"error": error})


def encode_record(record: AgentRecord) -> bytes:
    """Encode a registry record."""
    return _json_encoder.encode(record)


def decode_record(data: bytes) -> AgentRecord:
    """Decode a registry record; raises ``msgspec.DecodeError`` or ``ValidationError``."""
    return _record_decoder.decode(data)


def encode_span(span: SpanMessage) -> bytes:
    """Encode a span message (msgpack)."""
    return _span_encoder.encode(span)


def decode_span(data: bytes) -> SpanMessage:
    """Decode one span (a msgpack map)."""
    return _span_decoder.decode(data)


def encode_spans(spans: list[SpanMessage]) -> bytes:
    """Encode a batch of spans: one span message (a msgpack array of span maps)."""
    return _span_encoder.encode(spans)


def decode_spans(data: bytes) -> tuple[list[SpanMessage], int]:
    """The spans of one span message (a batch, or a single span map as older publishers
    send) and how many of its spans were malformed and skipped; raises
    ``msgspec.DecodeError`` when the message is not a span message at all."""
    first = data[0] if data else 0
    if first & 0xF0 == 0x80 or first in (0xDE, 0xDF):  # a map: one span
        try:
            return [_span_decoder.decode(data)], 0
        except msgspec.ValidationError:
            return [], 1
    try:
        return _batch_decoder.decode(data), 0
    except msgspec.ValidationError:
        pass
    try:
        raws = _raw_batch_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise msgspec.DecodeError(f"not a span message: {exc}") from exc
    spans, bad = [], 0
    for raw in raws:
        try:
            spans.append(_span_decoder.decode(raw))
        except (msgspec.DecodeError, msgspec.ValidationError):
            bad += 1
    return spans, bad


def spans_of(payloads: list[bytes]) -> list[SpanMessage]:
    """The spans of several span messages, skipping malformed messages and spans."""
    out: list[SpanMessage] = []
    for data in payloads:
        try:
            out.extend(decode_spans(data)[0])
        except msgspec.DecodeError:
            continue
    return out


def to_builtins(value: Any) -> Any:
    """A struct as plain dicts and lists (for ``--json`` output)."""
    return msgspec.to_builtins(value)
