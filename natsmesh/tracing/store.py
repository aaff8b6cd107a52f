"""Reading the spans of one trace, from the span stream or from Tempo."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.api import DeliverPolicy

from natsmesh import subjects
from natsmesh.config import Settings
from natsmesh.tracing.export import decode_spans
from natsmesh.wire import SpanMessage


async def read_trace(
    nc: NATS, settings: Settings, trace_id: str, timeout: float = 3.0
) -> list[SpanMessage]:
    """Every span of ``trace_id`` now in the stream (an ordered, ephemeral consumer)."""
    js = nc.jetstream()
    subject = subjects.spans_subject(trace_id, settings.prefix)
    info = await js.stream_info(settings.spans_stream, subjects_filter=subject)
    expected = sum((info.state.subjects or {}).values())
    if expected == 0:
        return []
    sub = await js.subscribe(
        subject,
        stream=settings.spans_stream,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    payloads: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while len(payloads) < expected:
                msg = await sub.next_msg(timeout=timeout)
                payloads.append(msg.data)
    except TimeoutError:
        pass
    finally:
        await sub.unsubscribe()
    return decode_spans(payloads)


def _hex(value: str, size: int) -> str:
    if len(value) == size * 2:
        return value.lower()
    return base64.b64decode(value).hex()


_KINDS = {
    "SPAN_KIND_INTERNAL": 0,
    "SPAN_KIND_SERVER": 1,
    "SPAN_KIND_CLIENT": 2,
    "SPAN_KIND_PRODUCER": 3,
    "SPAN_KIND_CONSUMER": 4,
}


def _value(v: dict[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in v:
            return v[key]
    if "intValue" in v:
        return int(v["intValue"])
    return str(v)


def spans_from_otlp_json(data: dict[str, Any]) -> list[SpanMessage]:
    """Span messages from an OTLP/JSON trace (what Tempo's ``/api/traces/<id>`` returns)."""
    out = []
    for batch in data.get("batches") or data.get("resourceSpans") or []:
        resource = {
            a["key"]: _value(a["value"]) for a in batch.get("resource", {}).get("attributes", [])
        }
        service = str(resource.get("service.name", "?"))
        for scope in batch.get("scopeSpans") or batch.get("instrumentationLibrarySpans") or []:
            for s in scope.get("spans", []):
                kind = s.get("kind", 0)
                status = s.get("status", {})
                code = status.get("code", 0)
                out.append(
                    SpanMessage(
                        trace_id=_hex(s["traceId"], 16),
                        span_id=_hex(s["spanId"], 8),
                        parent_id=_hex(s["parentSpanId"], 8) if s.get("parentSpanId") else None,
                        name=s.get("name", ""),
                        start=int(s.get("startTimeUnixNano", 0)),
                        end=int(s.get("endTimeUnixNano", 0)),
                        service=service,
                        instance=str(resource.get("service.instance.id", "")),
                        kind=_KINDS.get(kind, 0) if isinstance(kind, str) else int(kind),
                        status=2 if code in (2, "STATUS_CODE_ERROR") else 0,
                        status_message=status.get("message", ""),
                        attrs={a["key"]: _value(a["value"]) for a in s.get("attributes", [])},
                    )
                )
    return out


def read_tempo(base_url: str, trace_id: str, timeout: float = 5.0) -> list[SpanMessage]:
    """The spans of a trace from Tempo's HTTP API; ``[]`` when Tempo does not know it."""
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/api/traces/{trace_id}", headers={"Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return spans_from_otlp_json(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise
