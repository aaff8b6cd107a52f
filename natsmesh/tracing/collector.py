"""The collector: span messages from the stream to OTLP (gRPC or HTTP/protobuf).

A durable pull consumer shared by every collector; a batch is acked only after the
OTLP export succeeded, so spans wait in the stream while Tempo is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.request
from collections.abc import Callable, Iterable

from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from natsmesh import subjects
from natsmesh.changes import Changes
from natsmesh.config import Settings
from natsmesh.tracing.export import decode_spans
from natsmesh.wire import SpanMessage

log = logging.getLogger("natsmesh.collector")

DEFAULT_GRPC_ENDPOINT = "http://127.0.0.1:4317"
DEFAULT_HTTP_ENDPOINT = "http://127.0.0.1:4318"


def _any(value: object) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[_any(v) for v in value]))
    return AnyValue(string_value=str(value))


def _attrs(attrs: dict[str, object]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_any(v)) for k, v in attrs.items()]


def to_otlp(spans: Iterable[SpanMessage]) -> ExportTraceServiceRequest:
    """One OTLP export request; a resource per (service, instance)."""
    groups: dict[tuple[str, str], list[Span]] = {}
    for s in spans:
        span = Span(
            trace_id=bytes.fromhex(s.trace_id),
            span_id=bytes.fromhex(s.span_id),
            parent_span_id=bytes.fromhex(s.parent_id) if s.parent_id else b"",
            name=s.name,
            kind=s.kind + 1,  # type: ignore[arg-type]  # OTLP kinds start at UNSPECIFIED=0
            start_time_unix_nano=s.start,
            end_time_unix_nano=s.end,
            attributes=_attrs(s.attrs),
            status=Status(code=s.status, message=s.status_message),  # type: ignore[arg-type]
            events=[
                Span.Event(time_unix_nano=e.time, name=e.name, attributes=_attrs(e.attrs))
                for e in s.events
            ],
        )
        groups.setdefault((s.service, s.instance), []).append(span)
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(
                    attributes=_attrs(
                        {"service.name": service, "service.instance.id": instance}
                        if instance
                        else {"service.name": service}
                    )
                ),
                scope_spans=[ScopeSpans(spans=group)],
            )
            for (service, instance), group in groups.items()
        ]
    )


class OtlpSender:
    """Sends export requests over OTLP/HTTP (protobuf) or OTLP/gRPC."""

    def __init__(self, endpoint: str, protocol: str = "grpc", timeout: float = 10.0) -> None:
        if protocol not in ("grpc", "http"):
            raise ValueError("protocol is 'grpc' or 'http'")
        self.protocol = protocol
        self.timeout = timeout
        if protocol == "http":
            self.url = endpoint.rstrip("/")
            if not self.url.endswith("/v1/traces"):
                self.url += "/v1/traces"
            self._stub = None
        else:
            import grpc
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
                TraceServiceStub,
            )

            target = endpoint.split("://", 1)[-1].rstrip("/")
            self._channel = grpc.insecure_channel(target)
            self._stub = TraceServiceStub(self._channel)

    def send(self, request: ExportTraceServiceRequest) -> None:
        """Export; raises on any failure (the caller then does not ack)."""
        if self._stub is not None:
            self._stub.Export(request, timeout=self.timeout)
            return
        body = request.SerializeToString()
        req = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/x-protobuf"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as response:
            if response.status >= 300:
                raise OSError(f"OTLP receiver answered {response.status}")


class Collector:
    """Moves spans from the stream to an OTLP receiver."""

    def __init__(
        self,
        nc: NATS,
        settings: Settings,
        sender: OtlpSender,
        batch: int = 1000,
        retry_delay: float = 1.0,
        on_exported: Callable[[list[SpanMessage]], None] | None = None,
    ) -> None:
        self.nc = nc
        #: called with every batch once it is exported and acked (the metrics hook)
        self.on_exported = on_exported
        self.settings = settings
        self.sender = sender
        self.batch = batch
        self.retry_delay = retry_delay
        self.exported = 0
        self.failures = 0
        self._progress = Changes()

    async def wait_until(self, predicate: Callable[[Collector], bool], timeout: float) -> None:
        """Wait until ``predicate(self)`` holds, re-checked after every export attempt."""
        await self._progress.wait_until(lambda: predicate(self), timeout)

    async def run(self, stop: asyncio.Event | None = None, report_every: float = 10.0) -> None:
        """Fetch, export, ack, until ``stop`` is set."""
        from natsmesh.tracing.export import ensure_stream

        js = self.nc.jetstream()
        await ensure_stream(js, self.settings)
        sub = await js.pull_subscribe(
            subjects.spans_wildcard(self.settings.prefix),
            durable=subjects.SPANS_CONSUMER,
            stream=self.settings.spans_stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=30,
                max_ack_pending=50_000,
            ),
        )
        stop = stop or asyncio.Event()
        last_report, last_count = time.monotonic(), 0
        while not stop.is_set():
            try:
                msgs = await sub.fetch(self.batch, timeout=0.5)
            except TimeoutError:
                msgs = []
            except Exception as exc:  # connection trouble: wait and retry
                log.warning("fetching spans failed: %s", exc)
                await asyncio.sleep(self.retry_delay)
                continue
            if msgs:
                await self._export(msgs)
            now = time.monotonic()
            if now - last_report >= report_every:
                rate = (self.exported - last_count) / (now - last_report)
                backlog = await self._backlog(sub)
                log.info("exported %d spans (%.0f/s), backlog %s", self.exported, rate, backlog)
                last_report, last_count = now, self.exported

    async def _export(self, msgs: list) -> None:  # type: ignore[type-arg]
        spans = decode_spans([m.data for m in msgs])
        try:
            if spans:
                await asyncio.to_thread(self.sender.send, to_otlp(spans))
        except Exception as exc:
            self.failures += 1
            log.warning(
                "OTLP export of %d spans failed (%s); they stay in the stream", len(spans), exc
            )
            for m in msgs:
                with contextlib.suppress(Exception):
                    await m.nak(delay=self.retry_delay)
            self._progress.notify()
            await asyncio.sleep(self.retry_delay)
            return
        for m in msgs:
            with contextlib.suppress(Exception):
                await m.ack()
        self.exported += len(spans)
        if self.on_exported is not None:
            self.on_exported(spans)
        self._progress.notify()

    @staticmethod
    async def _backlog(sub: object) -> int | str:
        try:
            info = await sub.consumer_info()  # type: ignore[attr-defined]
            return int(info.num_pending + info.num_ack_pending)
        except Exception:
            return "?"
