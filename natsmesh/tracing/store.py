"""Reading the spans of one trace, from the span stream or from Tempo."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from natsmesh import subjects, wire
from natsmesh.config import Settings
from natsmesh.wire import SpanMessage

#: stream sequences read in the first (newest) window of a trace lookup; each older one is 4x
FIRST_WINDOW = 4096
#: how far before a trace's earliest span start a lookup still reads (clock skew between hosts)
CLOCK_MARGIN_NS = 5_000_000_000


async def read_trace(
    nc: NATS, settings: Settings, trace_id: str, timeout: float = 3.0
) -> list[SpanMessage]:
    """Every span of ``trace_id`` now in the stream.

    Spans travel in batches on the trace's shard subject, so the lookup reads that shard
    backwards from the newest message in growing windows, keeping the spans of this trace,
    and, once the trace's root is among them, stops after reading back past the earliest
    start of the spans found (a span is stored after it started, and no span of a trace
    starts before its root); without the root (a trace still running, or one continued
    from outside the mesh) it reads the whole shard, within ``timeout``. Spans that older
    publishers sent on ``<prefix>.spans.<trace_id>`` are read too.
    """
    js = nc.jetstream()
    legacy = subjects.trace_spans_subject(trace_id, settings.prefix)
    info = await js.stream_info(settings.spans_stream, subjects_filter=legacy)
    shard = subjects.spans_subject(trace_id, settings.prefix)
    lookup = _Lookup(js, settings.spans_stream, shard, trace_id)
    found: list[SpanMessage] = []
    try:
        async with asyncio.timeout(timeout):
            if info.state.subjects:
                found = await _read_legacy(js, settings, legacy)
            hi, window = await _last_seq(js, settings.spans_stream, shard), FIRST_WINDOW
            first = max(info.state.first_seq, 1)  # 0 when the stream was empty just now
            while hi >= first:
                lo = max(first, hi - window + 1)
                oldest = await lookup.scan(lo, hi)
                if (
                    oldest is not None
                    and lookup.rooted()
                    and oldest < lookup.earliest - CLOCK_MARGIN_NS
                ):
                    break
                hi, window = lo - 1, window * 4
    except TimeoutError:
        pass  # what was found in time
    return found + lookup.spans


class _Lookup:
    """The spans of one trace found so far in its shard of the span stream."""

    def __init__(self, js: JetStreamContext, stream: str, shard: str, trace_id: str) -> None:
        self.js, self.stream, self.shard, self.trace_id = js, stream, shard, trace_id
        self._needle = trace_id.encode()
        self.spans: list[SpanMessage] = []
        self.earliest = 0  # the earliest start of the spans found (Unix ns)

    async def scan(self, lo: int, hi: int) -> int | None:
        """Read the shard's messages with stream sequences ``lo``..``hi`` (the shard must have
        one at ``lo`` or later); the store time (Unix ns) of the first one read, ``None`` when
        the range has none."""
        sub = await self.js.subscribe(
            self.shard,
            stream=self.stream,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=lo),
        )
        oldest: int | None = None
        try:
            while True:
                msg = await sub.next_msg(timeout=None)
                meta = msg.metadata
                if meta.sequence.stream > hi:
                    break
                if oldest is None:
                    oldest = int(meta.timestamp.timestamp() * 1e9)
                if self._needle in msg.data:
                    self._keep(msg.data)
                if meta.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        return oldest

    def rooted(self) -> bool:
        """Whether the spans found include the trace's root (a span without a parent, or
        a set in which every parent is found): only then does the earliest start bound
        where the rest can be."""
        if not self.spans:
            return False
        ids = {s.span_id for s in self.spans}
        return any(s.parent_id is None for s in self.spans) or all(
            s.parent_id in ids for s in self.spans
        )

    def _keep(self, data: bytes) -> None:
        for span in wire.spans_of([data]):
            if span.trace_id == self.trace_id:
                self.spans.append(span)
                if not self.earliest or span.start < self.earliest:
                    self.earliest = span.start


async def _last_seq(js: JetStreamContext, stream: str, subject: str) -> int:
    """The stream sequence of the last message on ``subject``; 0 when there is none."""
    try:
        return (await js.get_last_msg(stream, subject)).seq or 0
    except NotFoundError:
        return 0


async def _read_legacy(js: JetStreamContext, settings: Settings, subject: str) -> list[SpanMessage]:
    """The spans an older publisher sent on the trace's own subject."""
    sub = await js.subscribe(
        subject,
        stream=settings.spans_stream,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    payloads: list[bytes] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=None)
            payloads.append(msg.data)
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return wire.spans_of(payloads)


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
