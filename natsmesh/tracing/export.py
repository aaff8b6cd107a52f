"""A span processor that publishes finished spans as msgpack messages into the span stream.

Exporting never blocks or fails a call: spans wait in a bounded queue, and a background
task publishes what has queued every 50 ms without waiting: one message per shard
subject (the trace ID's first hex digit) carrying every queued span of that shard, so a
busy process sends a few dozen spans per message. When the queue is full, NATS is away
or the stream refuses them, spans are dropped and counted. Only the last message of a
flush asks JetStream for an ack, which stands for the flush: a refused flush counts all
its spans as failed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Span as SdkSpan

from natsmesh import subjects, wire
from natsmesh.condition import Condition
from natsmesh.config import Settings
from natsmesh.wire import SpanEvent, SpanMessage

log = logging.getLogger("natsmesh.tracing")

MAX_QUEUE = 20_000
MAX_UNACKED = 10_000
MAX_BATCH = 1_000
BATCH_INTERVAL = 0.05
#: a span message is split below this size (nats-server's default max_payload is 1 MiB)
MAX_MESSAGE_BYTES = 256 * 1024


def to_message(span: ReadableSpan, service: str, instance: str) -> SpanMessage:
    """Convert a finished OpenTelemetry span to our wire message."""
    ctx = span.context
    parent = span.parent
    attrs: dict[str, Any] = dict(span.attributes or {})
    for key, value in attrs.items():
        if isinstance(value, tuple):
            attrs[key] = list(value)
    events = tuple(
        SpanEvent(e.name, e.timestamp, dict(e.attributes or {})) for e in (span.events or ())
    )
    return SpanMessage(
        trace_id=f"{ctx.trace_id:032x}" if ctx else "",
        span_id=f"{ctx.span_id:016x}" if ctx else "",
        parent_id=f"{parent.span_id:016x}" if parent else None,
        name=span.name,
        start=span.start_time or 0,
        end=span.end_time or 0,
        service=service,
        instance=instance,
        kind=span.kind.value,
        status=span.status.status_code.value,
        status_message=span.status.description or "",
        attrs=attrs,
        events=events,
    )


async def ensure_stream(js: JetStreamContext, settings: Settings) -> None:
    """Create the span stream when it is missing (bounded by age and bytes)."""
    try:
        await js.stream_info(settings.spans_stream)
        return
    except Exception:
        pass
    with contextlib.suppress(Exception):
        await js.add_stream(
            StreamConfig(
                name=settings.spans_stream,
                description="natsmesh spans: batches of finished spans, by trace ID shard",
                subjects=[subjects.spans_wildcard(settings.prefix)],
                max_age=settings.spans_max_age,
                max_bytes=settings.spans_max_bytes,
                discard=DiscardPolicy.OLD,
                storage=StorageType.FILE,
                num_replicas=settings.replicas,
            )
        )


class NatsSpanProcessor(SpanProcessor):
    """Queues finished spans and publishes them from a background task."""

    def __init__(self, service: str, instance: str, prefix: str = subjects.DEFAULT_PREFIX) -> None:
        self.service = service
        self.instance = instance
        self.prefix = prefix
        self._queue: collections.deque[SpanMessage] = collections.deque()
        self._nc: NATS | None = None
        self._inbox = ""
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._unacked = 0
        self.published = 0
        self.acked = 0
        self.dropped = 0
        self.failed = 0
        self._acks = Condition()
        self._wake = asyncio.Event()
        self._closed = False

    # --- SpanProcessor ----------------------------------------------------------------

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        self.enqueue(to_message(span, self.service, self.instance))

    def enqueue(self, message: SpanMessage) -> None:
        """Queue a finished span for publishing (dropped and counted when the queue is full
        or the processor has stopped)."""
        if len(self._queue) >= MAX_QUEUE or self._closed:
            self.dropped += 1
            return
        self._queue.append(message)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # --- publishing ---------------------------------------------------------------------

    async def start(self, nc: NATS) -> None:
        """Start publishing on ``nc`` (acks arrive on one wildcard inbox)."""
        self._nc = nc
        self._inbox = nc.new_inbox()
        self._sub = await nc.subscribe(self._inbox + ".*", cb=self._on_ack)
        self._task = asyncio.create_task(self._run(), name="span export")

    async def _on_ack(self, msg: Msg) -> None:
        # the ack of a batch's last span stands for the batch: its size is the last token
        try:
            size = int(msg.subject.rsplit(".", 1)[1])
        except ValueError:
            size = 1
        self._unacked = max(0, self._unacked - size)
        if b'"error"' in msg.data or (msg.headers and msg.headers.get("Status")):
            self.failed += size
        else:
            self.acked += size
        self._acks.notify()

    async def wait_until(
        self, predicate: Callable[[NatsSpanProcessor], bool], timeout: float
    ) -> None:
        """Wait until ``predicate(self)`` holds, re-checking on every ack; ``TimeoutError`` after ``timeout``."""
        await self._acks.wait_until(lambda: predicate(self), timeout)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), BATCH_INTERVAL)
            self._wake.clear()
            with contextlib.suppress(Exception):
                await self.flush()

    async def flush(self) -> None:
        """Publish everything queued now (without waiting for acks)."""
        nc = self._nc
        queue = self._queue
        if nc is None or not queue:
            return
        if not nc.is_connected:
            self.dropped += len(queue)
            queue.clear()
            self._unacked = 0
            return
        batch: list[SpanMessage] = []
        while queue and len(batch) < MAX_BATCH:
            span = queue.popleft()
            if self._unacked + len(batch) >= MAX_UNACKED:
                self.dropped += 1
            else:
                batch.append(span)
        messages = list(self._messages(batch, min(MAX_MESSAGE_BYTES, nc.max_payload // 2)))
        # the last message asks for the ack that stands for the whole flush; if it cannot be
        # sent, no ack will come: what went out is published but not awaited
        sent = 0
        for i, (subject, body, count) in enumerate(messages):
            last = i == len(messages) - 1
            try:
                await nc.publish(
                    subject, body, reply=f"{self._inbox}.{sent + count}" if last else ""
                )
            except Exception:
                self.dropped += count
                if last:
                    self.published += sent
                    sent = 0
                continue
            sent += count
            if last:
                self._unacked += sent
                self.published += sent
        if queue:
            self._wake.set()

    def _messages(self, batch: list[SpanMessage], limit: int) -> Iterator[tuple[str, bytes, int]]:
        """``(subject, body, span count)`` for each message of a flush: the spans grouped
        by shard, a group split in halves while its body is over ``limit``; a span that
        cannot be encoded (an attribute msgpack cannot hold) is dropped and counted."""
        shards: dict[str, list[SpanMessage]] = {}
        for span in batch:
            shard = span.trace_id[:1]
            group = shards.get(shard)
            if group is None:
                shards[shard] = [span]
            else:
                group.append(span)
        for group in shards.values():
            subject = subjects.spans_subject(group[0].trace_id, self.prefix)
            yield from self._split(subject, group, limit)

    def _split(
        self, subject: str, spans: list[SpanMessage], limit: int
    ) -> Iterator[tuple[str, bytes, int]]:
        try:
            body = wire.encode_spans(spans)
        except Exception:
            if len(spans) == 1:
                self.dropped += 1
                log.debug("dropped a span that cannot be encoded: %s", spans[0].name)
                return
            body = b""  # find the span that cannot be encoded: split
        if body and (len(body) <= limit or len(spans) == 1):
            yield subject, body, len(spans)
            return
        half = len(spans) // 2
        yield from self._split(subject, spans[:half], limit)
        yield from self._split(subject, spans[half:], limit)

    async def stop(self) -> None:
        """Publish what is queued, wait briefly for acks, stop the task."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            for _ in range(MAX_QUEUE // MAX_BATCH + 1):
                if not self._queue:
                    break
                await self.flush()
            if self._nc is not None:
                await self._nc.flush(timeout=1)
        self._closed = True
        self.dropped += len(self._queue)  # what a full flush left behind
        self._queue.clear()
        with contextlib.suppress(Exception):
            await self.wait_until(lambda p: p._unacked == 0, 1)

    def stats(self) -> dict[str, int]:
        return {
            "spans_published": self.published,
            "spans_acked": self.acked,
            "spans_dropped": self.dropped,
            "spans_failed": self.failed,
        }
