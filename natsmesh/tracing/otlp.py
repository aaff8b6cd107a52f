"""Span messages as OTLP, and the sender that exports them with OpenTelemetry's exporters.

Sending is the library's: TLS, headers, compression, retry with backoff. Over gRPC (the
default) the exporter is handed our own OTLP request (``to_otlp``), measurably faster than
SDK spans that the exporter encodes (``python -m bench``, collector section); the HTTP
exporter takes nothing but SDK spans, so it gets those.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from natsmesh.wire import SpanMessage

DEFAULT_GRPC_ENDPOINT = "http://127.0.0.1:4317"
DEFAULT_HTTP_ENDPOINT = "http://127.0.0.1:4318"
COMPRESSIONS = ("none", "gzip", "deflate")


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


class ExportFailed(RuntimeError):
    """The OTLP receiver did not take a batch (after the exporter's own retries)."""


def parse_headers(
    items: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Export headers: ``OTEL_EXPORTER_OTLP_HEADERS`` (``k=v,k2=v2``), then ``items``
    (``k=v`` each) on top; names are lower-cased as gRPC metadata requires."""
    from urllib.parse import unquote

    e = os.environ if env is None else env
    raw = [p for p in e.get("OTEL_EXPORTER_OTLP_HEADERS", "").split(",") if p.strip()]
    headers: dict[str, str] = {}
    for item in [*raw, *items]:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"header {item!r} is not NAME=VALUE")
        headers[unquote(name.strip()).lower()] = unquote(value.strip())
    return headers


class _Spans:
    """Span messages to the SDK's ``ReadableSpan``, which the HTTP exporter encodes itself
    (it takes nothing else)."""

    def __init__(self) -> None:
        self._resources: dict[tuple[str, str], Any] = {}

    def convert(self, spans: Sequence[SpanMessage]) -> list[Any]:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        sampled = TraceFlags(TraceFlags.SAMPLED)
        out = []
        for s in spans:
            resource = self._resources.get((s.service, s.instance))
            if resource is None:
                attrs = {"service.name": s.service}
                if s.instance:
                    attrs["service.instance.id"] = s.instance
                resource = self._resources[(s.service, s.instance)] = Resource(attrs)
            trace_id = int(s.trace_id, 16)
            out.append(
                ReadableSpan(
                    name=s.name,
                    context=SpanContext(trace_id, int(s.span_id, 16), True, sampled),
                    parent=SpanContext(trace_id, int(s.parent_id, 16), True, sampled)
                    if s.parent_id
                    else None,
                    resource=resource,
                    attributes=s.attrs,
                    events=[Event(e.name, e.attrs, e.time) for e in s.events],
                    kind=SpanKind(s.kind),
                    status=Status(StatusCode(s.status), s.status_message or None),
                    start_time=s.start,
                    end_time=s.end,
                )
            )
        return out


class OtlpSender:
    """Exports span messages with OpenTelemetry's OTLP span exporter, gRPC or HTTP/protobuf.

    ``https://`` endpoints use TLS (``ca_file`` to trust a private CA; ``client_cert`` and
    ``client_key`` for mutual TLS); ``headers`` go with every export (authentication);
    ``compression`` is ``none``, ``gzip`` or (HTTP only) ``deflate``. A failed export is
    retried with backoff by the exporter for up to ``timeout`` seconds.
    """

    def __init__(
        self,
        endpoint: str,
        protocol: str = "grpc",
        timeout: float = 10.0,
        *,
        headers: Mapping[str, str] | None = None,
        compression: str = "none",
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
    ) -> None:
        if protocol not in ("grpc", "http"):
            raise ValueError("protocol is 'grpc' or 'http'")
        if compression not in COMPRESSIONS or (protocol == "grpc" and compression == "deflate"):
            raise ValueError("compression is 'none' or 'gzip' (or 'deflate' over HTTP)")
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"OTLP endpoint {endpoint!r} must start with http:// or https://")
        self.protocol = protocol
        self.endpoint = endpoint.rstrip("/")
        self._spans = _Spans()
        self._exporter = (
            self._grpc(timeout, dict(headers or {}), compression, ca_file, client_cert, client_key)
            if protocol == "grpc"
            else self._http(
                timeout, dict(headers or {}), compression, ca_file, client_cert, client_key
            )
        )

    def _grpc(self, timeout: float, headers: dict[str, str], compression: str,
              ca_file: str | None, client_cert: str | None, client_key: str | None) -> Any:  # fmt: skip
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        credentials = None
        if self.endpoint.startswith("https://") and (ca_file or client_cert):
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(ca_file),
                private_key=_read(client_key),
                certificate_chain=_read(client_cert),
            )

        class RequestExporter(OTLPSpanExporter):
            """The library's gRPC span exporter, handed a ready OTLP request (``to_otlp``)."""

            def _translate_data(self, data: Any) -> ExportTraceServiceRequest:
                return data  # type: ignore[no-any-return]

            def _count_data(self, data: Any) -> int:
                return sum(len(ss.spans) for rs in data.resource_spans for ss in rs.scope_spans)

        return RequestExporter(
            endpoint=self.endpoint,
            insecure=self.endpoint.startswith("http://"),
            credentials=credentials,
            headers=headers,
            timeout=timeout,  # type: ignore[arg-type]
            compression=grpc.Compression.Gzip
            if compression == "gzip"
            else grpc.Compression.NoCompression,
        )

    def _http(self, timeout: float, headers: dict[str, str], compression: str,
              ca_file: str | None, client_cert: str | None, client_key: str | None) -> Any:  # fmt: skip
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        if not self.endpoint.endswith("/v1/traces"):
            self.endpoint += "/v1/traces"
        return OTLPSpanExporter(
            endpoint=self.endpoint,
            certificate_file=ca_file,
            client_certificate_file=client_cert,
            client_key_file=client_key,
            headers=headers,
            timeout=timeout,
            compression={"none": Compression.NoCompression, "gzip": Compression.Gzip,
                         "deflate": Compression.Deflate}[compression],
        )  # fmt: skip

    def send(self, spans: Sequence[SpanMessage]) -> None:
        """Export; raises :class:`ExportFailed` when the receiver did not take them."""
        from opentelemetry.sdk.trace.export import SpanExportResult

        batch = to_otlp(spans) if self.protocol == "grpc" else self._spans.convert(spans)
        if self._exporter.export(batch) is not SpanExportResult.SUCCESS:
            raise ExportFailed(f"the OTLP receiver at {self.endpoint} did not take the spans")

    def close(self) -> None:
        """Close the exporter's channel or session."""
        self._exporter.shutdown()


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()
