"""Making CLIENT and SERVER spans with OpenTelemetry for mesh calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.trace.status import Status, StatusCode

from natsmesh import headers as H
from natsmesh.tracing.context import format_traceparent, parse_traceparent

if TYPE_CHECKING:
    from natsmesh.client import CallContext
    from natsmesh.specs import DependencySpec
    from natsmesh.tracing.export import NatsSpanProcessor


def remote_context(traceparent: str | None, tracestate: str | None = None) -> Context | None:
    """An OpenTelemetry context whose parent is the remote span in ``traceparent``."""
    parent = parse_traceparent(traceparent)
    if parent is None:
        return None
    state = TraceState.from_header([tracestate]) if tracestate else None
    span_context = SpanContext(
        int(parent.trace_id, 16),
        int(parent.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if parent.sampled else TraceFlags.DEFAULT),
        trace_state=state,
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


class Tracing:
    """One agent's tracer: its own TracerProvider (not the global one) and span processor."""

    def __init__(self, service: str, instance_id: str, processor: NatsSpanProcessor | None) -> None:
        resource = Resource.create({"service.name": service, "service.instance.id": instance_id})
        self.provider = TracerProvider(resource=resource)
        if processor is not None:
            self.provider.add_span_processor(processor)
        self.processor = processor
        self.tracer = self.provider.get_tracer("natsmesh")
        self.service = service

    def start_server(self, name: str, headers: Mapping[str, str], attrs: Mapping[str, Any]) -> Span:
        """A SERVER span for a request, child of the caller's span when it sent one."""
        parent = remote_context(headers.get(H.TRACEPARENT), headers.get(H.TRACESTATE))
        return self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attrs)

    def start_client(self, dep: DependencySpec, context: CallContext | None) -> Span:
        """A CLIENT span for an outgoing call, child of the call it is made in."""
        parent = context.otel_context if context is not None else None
        if parent is None and context is not None and context.traceparent:
            parent = remote_context(context.traceparent, context.tracestate)
        return self.tracer.start_span(
            f"call {dep.capability}",
            context=parent,
            kind=SpanKind.CLIENT,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "send",
                "mesh.capability": dep.capability,
                "mesh.caller": self.service,
            },
        )

    @staticmethod
    def traceparent(span: Span) -> str:
        """The ``traceparent`` header that makes the receiver a child of ``span``."""
        ctx = span.get_span_context()
        return format_traceparent(ctx.trace_id, ctx.span_id, ctx.trace_flags.sampled)

    @staticmethod
    def activate(span: Span) -> Any:
        """Make ``span`` current while a tool runs (so ``trace.get_current_span()`` finds it)."""
        return trace.use_span(
            span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        )

    @staticmethod
    def context_of(span: Span) -> Context:
        return trace.set_span_in_context(span)

    @staticmethod
    def fail(span: Span, error_type: str, message: str) -> None:
        """Mark a span failed, with the error type of the envelope."""
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR, message[:500]))

    def shutdown(self) -> None:
        self.provider.shutdown()
