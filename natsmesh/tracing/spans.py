"""Spans of mesh calls: CLIENT and SERVER spans that speak the OpenTelemetry API.

Spans that tools make themselves with the OpenTelemetry API go through the process's
global ``TracerProvider``, which hands them to the exporter of the agent whose tool is
running (``service.name`` and ``service.instance.id`` are the agent's). The spans of mesh calls
are :class:`MeshSpan` objects: they implement the OpenTelemetry ``Span`` API, so they
can be current and parent the SDK's spans, but they skip the SDK's per-span machinery
and become a wire message directly when they end. That keeps tracing a small part
of a call's cost.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.trace.status import Status, StatusCode

from natsmesh import headers as H
from natsmesh.errors import MeshError
from natsmesh.tracing import sampling
from natsmesh.tracing.context import new_span_id, new_trace_id, parse_ids
from natsmesh.wire import SpanEvent, SpanMessage

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from natsmesh.call_context import CallContext
    from natsmesh.config import Settings
    from natsmesh.specs import DependencySpec
    from natsmesh.tracing.export import NatsSpanProcessor
    from natsmesh.tracing.sampling import RatioSampler

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_NO_EVENTS: tuple[SpanEvent, ...] = ()


class MeshSpan(Span):
    """A recording span for one mesh call; published as a :class:`SpanMessage` on ``end``.

    Its ids are kept as the hex strings the wire carries (the integers of the OpenTelemetry
    API are made only when asked for). It keeps its parent's sampled flag and
    ``tracestate`` and forwards both; an unsampled span is never exported. ``parent`` is
    an OpenTelemetry span context, the ``(trace id, span id, sampled)`` of a ``traceparent``
    (:func:`~natsmesh.tracing.context.parse_ids`; then ``tracestate`` is the header's,
    already normalised) or another mesh span; a span without one starts a trace,
    recorded when ``sampler`` (default: always) says so.
    """

    __slots__ = (
        "_context",
        "_ended",
        "_processor",
        "_traceparent",
        "attrs",
        "chunks",
        "events",
        "first_chunk",
        "instance",
        "kind",
        "name",
        "parent_hex",
        "sampled",
        "service",
        "span_hex",
        "start",
        "status",
        "status_message",
        "trace_hex",
        "tracestate",
    )

    trace_hex: str
    span_hex: str
    parent_hex: str | None
    sampled: bool
    tracestate: str | None

    def __init__(
        self,
        processor: NatsSpanProcessor | None,
        service: str,
        instance: str,
        name: str,
        kind: SpanKind,
        parent: SpanContext | tuple[str, str, bool] | MeshSpan | None,
        attrs: dict[str, Any],
        tracestate: str | None = None,
        sampler: RatioSampler | None = None,
    ) -> None:
        self._processor = processor
        self.service = service
        self.instance = instance
        self.name = name
        self.kind = kind
        if parent is None:
            self.trace_hex = new_trace_id()
            self.parent_hex = None
            self.sampled = sampler is None or sampler.sample(self.trace_hex)
            self.tracestate = tracestate
        elif isinstance(parent, MeshSpan):
            self.trace_hex = parent.trace_hex
            self.parent_hex = parent.span_hex
            self.sampled = parent.sampled
            self.tracestate = parent.tracestate
        elif isinstance(parent, SpanContext):
            self.trace_hex = parent.trace_id.to_bytes(16, "big").hex()
            self.parent_hex = parent.span_id.to_bytes(8, "big").hex()
            self.sampled = parent.trace_flags.sampled
            state = parent.trace_state
            self.tracestate = state.to_header() if state else None
        else:  # (trace id, span id, sampled) from a traceparent
            self.trace_hex, self.parent_hex, self.sampled = parent
            self.tracestate = tracestate
        self.span_hex = new_span_id()
        self.attrs = attrs
        self.events: list[SpanEvent] | None = None
        self.status = 0
        self.status_message = ""
        self.start = time.time_ns()
        self.chunks = 0
        self.first_chunk = 0
        self._ended = False
        self._context: SpanContext | None = None
        self._traceparent: str | None = None

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` that makes a receiver this span's child."""
        value = self._traceparent
        if value is None:
            flags = "-01" if self.sampled else "-00"
            value = self._traceparent = "00-" + self.trace_hex + "-" + self.span_hex + flags
        return value

    @property
    def trace_id_hex(self) -> str:
        return self.trace_hex

    @property
    def trace_id(self) -> int:
        return int(self.trace_hex, 16)

    @property
    def span_id(self) -> int:
        return int(self.span_hex, 16)

    @property
    def parent_id(self) -> int | None:
        return None if self.parent_hex is None else int(self.parent_hex, 16)

    def get_span_context(self) -> SpanContext:
        if self._context is None:
            self._context = SpanContext(
                int(self.trace_hex, 16),
                int(self.span_hex, 16),
                False,
                _SAMPLED if self.sampled else _UNSAMPLED,
                TraceState.from_header([self.tracestate]) if self.tracestate else None,
            )
        return self._context

    def target(self, subject: str, agent: str, tool: str) -> None:
        """Where a CLIENT span's call goes (set again on failover)."""
        attrs = self.attrs
        attrs["messaging.destination.name"] = subject
        attrs["mesh.agent"] = agent
        attrs["mesh.tool"] = tool

    def reply(self, size: int, chunks: int = 0, first_chunk: int = 0) -> None:
        """The final reply's body size and the chunks that came before it."""
        self.attrs["mesh.reply.body.size"] = size
        if chunks:
            self.chunks = chunks
            self.first_chunk = first_chunk

    def chunk(self) -> None:
        """Count one streamed chunk (the first one's time is kept)."""
        self.chunks += 1
        if self.chunks == 1:
            self.first_chunk = time.time_ns()

    def set_attribute(self, key: str, value: Any) -> None:
        self.attrs[key] = list(value) if isinstance(value, tuple) else value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        event = SpanEvent(name, timestamp or time.time_ns(), dict(attributes or {}))
        if self.events is None:
            self.events = [event]
        else:
            self.events.append(event)

    def update_name(self, name: str) -> None:
        self.name = name

    def is_recording(self) -> bool:
        return not self._ended and self.sampled

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if isinstance(status, Status):
            code, description = status.status_code, status.description or description
        else:
            code = status
        if self.status == 1 and code is StatusCode.ERROR:
            return
        self.status = code.value
        self.status_message = description or ""

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        attrs = {
            "exception.type": type(exception).__name__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            **(attributes or {}),
        }
        self.add_event("exception", attrs, timestamp)

    def fail(self, error_type: str, message: str) -> None:
        """Mark the span failed with the error type of the envelope."""
        self.attrs["error.type"] = error_type
        if self.status != 1:
            self.status = 2
            self.status_message = message[:500]

    def end_with(self, exc: BaseException | None) -> None:
        """End the span; leaving with ``exc`` fails it: a :class:`MeshError` with its type,
        a cancellation as ``cancelled``, anything else with its class name and an event."""
        if exc is not None:
            if isinstance(exc, MeshError):
                self.fail(exc.type, exc.message)
            elif isinstance(exc, asyncio.CancelledError):
                self.fail("cancelled", "the call was cancelled")
            else:
                self.fail(type(exc).__name__, str(exc))
                self.record_exception(exc)
        self.end()

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        if self._processor is None or not self.sampled:
            return
        if self.chunks:
            self.attrs["mesh.stream.chunks"] = self.chunks
            self.attrs["mesh.stream.first_chunk_ms"] = round(
                (self.first_chunk - self.start) / 1e6, 3
            )
        events = self.events
        self._processor.enqueue(
            SpanMessage(
                trace_id=self.trace_hex,
                span_id=self.span_hex,
                parent_id=self.parent_hex,
                name=self.name,
                start=self.start,
                end=end_time or time.time_ns(),
                service=self.service,
                instance=self.instance,
                kind=self.kind.value,
                status=self.status,
                status_message=self.status_message,
                attrs=self.attrs,
                events=_NO_EVENTS if events is None else tuple(events),
            )
        )


class SpanScope:
    """Owns one span from start to end: ``with tracing.client_scope(...) as span:``.

    Leaving with a :class:`MeshError` fails the span with its type; with a cancellation,
    ``cancelled``; with any other exception, its class name and an exception event.
    """

    __slots__ = ("span",)

    def __init__(self, span: MeshSpan) -> None:
        self.span = span

    def __enter__(self) -> MeshSpan:
        return self.span

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.span.end_with(exc)


def _tracestate(value: str | None) -> str | None:
    """A ``tracestate`` header as the OpenTelemetry API would forward it (``None`` if empty)."""
    if not value:
        return None
    return TraceState.from_header([value]).to_header() or None


def _parent_of(span: Span) -> SpanContext | MeshSpan | None:
    """What a new span's parent is when ``span`` is current (``None`` for no valid span)."""
    if type(span) is MeshSpan:
        return span
    context = span.get_span_context()
    return context if context.is_valid else None


#: the span processor of the agent whose tool is running (set while it runs)
_active: ContextVar[NatsSpanProcessor | None] = ContextVar("natsmesh_processor", default=None)


class _RouteToAgent(SpanProcessor):
    """Hands a span made with the OpenTelemetry API to the exporter of the agent whose tool
    made it (several agents may share a process: tests, ``natsmesh start`` in-process)."""

    def on_end(self, span: ReadableSpan) -> None:
        processor = _active.get()
        if processor is not None:
            processor.on_end(span)


_global: list[TracerProvider] = []


def install_global_provider() -> None:
    """Make the process's global TracerProvider route to the running agent's exporter, so
    that ``opentelemetry.trace.get_tracer(...)`` spans nest under the SERVER span and are
    exported with it. Done once per process; a provider someone else installed is kept."""
    if _global:
        return
    provider = TracerProvider()
    provider.add_span_processor(_RouteToAgent())
    _global.append(provider)
    trace.set_tracer_provider(provider)


class Tracing:
    """One agent's tracing: span scopes for its calls, and their export."""

    def __init__(
        self,
        service: str,
        instance_id: str,
        processor: NatsSpanProcessor | None,
        sampler: RatioSampler | None = None,
    ) -> None:
        install_global_provider()
        sampler = sampler or sampling.RatioSampler()
        #: decides whether a trace that starts here is recorded (``OTEL_TRACES_SAMPLER``);
        #: ``None``: every one is
        self.sampler: RatioSampler | None = sampler if sampler.ratio < 1.0 else None
        self.processor = processor
        self.service = service
        self.instance = instance_id

    @classmethod
    async def open(cls, nc: NATS, settings: Settings, service: str, instance_id: str) -> Tracing:
        """Tracing that publishes into the span stream (created when missing)."""
        from natsmesh.tracing.export import NatsSpanProcessor, ensure_stream

        await ensure_stream(nc.jetstream(), settings)
        processor = NatsSpanProcessor(service, instance_id, settings.prefix)
        await processor.start(nc)
        return cls(service, instance_id, processor, sampling.from_settings(settings))

    async def stop(self) -> None:
        """Publish the spans still queued."""
        if self.processor is not None:
            await self.processor.stop()

    def server_span(
        self, name: str, headers: Mapping[str, str], attrs: Mapping[str, Any]
    ) -> MeshSpan:
        """A SERVER span for a request, child of the caller's span when it sent one."""
        parent = parse_ids(headers.get(H.TRACEPARENT))
        state = None if parent is None else _tracestate(headers.get(H.TRACESTATE))
        return MeshSpan(
            self.processor,
            self.service,
            self.instance,
            name,
            SpanKind.SERVER,
            parent,
            dict(attrs),
            state,
            self.sampler,
        )

    def client_span(self, dep: DependencySpec, context: CallContext | None) -> MeshSpan:
        """A CLIENT span for an outgoing call, child of the call it is made in."""
        parent: SpanContext | tuple[str, str, bool] | MeshSpan | None = None
        state = None
        if context is None:
            parent = _parent_of(trace.get_current_span())
        elif context.otel_context is not None:
            parent = _parent_of(trace.get_current_span(context.otel_context))
        elif context.traceparent:
            parent = parse_ids(context.traceparent)
            state = None if parent is None else _tracestate(context.tracestate)
        return MeshSpan(
            self.processor,
            self.service,
            self.instance,
            f"call {dep.capability}",
            SpanKind.CLIENT,
            parent,
            {
                "messaging.system": "nats",
                "messaging.operation.type": "send",
                "mesh.capability": dep.capability,
                "mesh.caller": self.service,
            },
            state,
            self.sampler,
        )

    def client_scope(
        self, dep: DependencySpec, context: CallContext | None, size: int
    ) -> SpanScope:
        """The scope of a CLIENT span (see :class:`SpanScope`)."""
        span = self.client_span(dep, context)
        span.attrs["messaging.message.body.size"] = size
        return SpanScope(span)

    @staticmethod
    def context_of(span: Span) -> Context:
        """An OpenTelemetry context in which ``span`` is current."""
        return trace.set_span_in_context(span)

    def attach(self, context: Context) -> object:
        """Make ``context`` current (while a tool runs); returns the token for :meth:`detach`."""
        return otel_context.attach(context), _active.set(self.processor)

    @staticmethod
    def detach(token: Any) -> None:
        otel_token, active_token = token
        _active.reset(active_token)
        otel_context.detach(otel_token)
