"""Feeding metrics: the span stream through an ordered consumer, ``$SRV.STATS`` polls, ``/metrics``.

:class:`SpanFeed` reads the span stream with its own ordered, ephemeral consumer (not
the collector's durable one), decodes each span once and hands it to every sink.
:class:`StatsPoller` asks ``$SRV.STATS`` now and then for calls in flight and span
export counters. :func:`serve_metrics` answers ``GET /metrics`` on a plain asyncio
server, for processes without an HTTP app (the collector).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from prometheus_client.core import CounterMetricFamily, Metric

from natsmesh import subjects, wire
from natsmesh.condition import Condition
from natsmesh.config import Settings
from natsmesh.tracing.metrics import MeshMetrics
from natsmesh.wire import SpanMessage

if TYPE_CHECKING:
    from natsmesh.tracing.collector import Collector

log = logging.getLogger("natsmesh.metrics")

Sink = Callable[[SpanMessage], None]


class SpanFeed:
    """Every span of the stream, from ``history`` seconds ago on, to each sink in order."""

    def __init__(
        self, nc: NATS, settings: Settings, sinks: list[Sink], history: float = 300.0
    ) -> None:
        self.nc = nc
        self.settings = settings
        self.sinks = sinks
        self.history = history
        #: spans handed to the sinks, and malformed spans or messages skipped
        self.received = 0
        self.malformed = 0
        self._messages = 0
        #: set once the spans that were already in the stream have been read
        self.caught_up = asyncio.Event()
        self._backlog = sys.maxsize  # known once the consumer exists
        self._sub: Any = None
        self._changes = Condition()

    async def start(self) -> None:
        """Create the ordered consumer (and the stream, when missing)."""
        from natsmesh.tracing.export import ensure_stream

        js = self.nc.jetstream()
        await ensure_stream(js, self.settings)
        if self.history > 0:
            since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=self.history)
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since
            )
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
        self._sub = await js.subscribe(
            subjects.spans_wildcard(self.settings.prefix),
            stream=self.settings.spans_stream,
            ordered_consumer=True,
            config=config,
            cb=self._on_msg,
            pending_msgs_limit=500_000,
            pending_bytes_limit=256 * 1024 * 1024,
        )
        try:  # what was in the stream: the messages read meanwhile plus those still pending
            self._backlog = self._messages + (await self._sub.consumer_info()).num_pending
        except Exception:
            self._backlog = 0
        if self._messages >= self._backlog:
            self.caught_up.set()

    async def _on_msg(self, msg: Msg) -> None:
        self._messages += 1
        try:
            spans, bad = wire.decode_spans(msg.data)
        except msgspec.DecodeError:
            spans, bad = [], 1
        self.malformed += bad
        for span in spans:
            self.received += 1
            for sink in self.sinks:
                try:
                    sink(span)
                except Exception:  # a broken sink must not stop the feed
                    log.exception("a span sink failed")
        if self._messages >= self._backlog and not self.caught_up.is_set():
            self.caught_up.set()
        self._changes.notify()

    async def wait_until(self, predicate: Callable[[SpanFeed], bool], timeout: float) -> None:
        """Wait until ``predicate(self)`` holds, re-checked after every span."""
        await self._changes.wait_until(lambda: predicate(self), timeout)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


async def gather_stats(nc: NATS, timeout: float = 0.5, expected: int = 0) -> list[dict[str, Any]]:
    """Every instance's ``$SRV.STATS`` answer, gathered until ``expected`` or ``timeout``."""
    inbox = nc.new_inbox()
    answers: list[dict[str, Any]] = []
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish("$SRV.STATS", b"", reply=inbox)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not expected or len(answers) < expected:
                    msg = await sub.next_msg(timeout=timeout)
                    with contextlib.suppress(ValueError):
                        answers.append(json.loads(msg.data))
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return answers


class StatsPoller:
    """Polls ``$SRV.STATS`` every ``interval`` seconds into ``metrics.set_instances``."""

    def __init__(
        self,
        nc: NATS,
        metrics: MeshMetrics,
        interval: float = 5.0,
        expected: Callable[[], int] | None = None,
    ) -> None:
        self.nc = nc
        self.metrics = metrics
        self.interval = interval
        self.expected = expected
        self._task: asyncio.Task[None] | None = None
        self._changes = Condition()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stats poller")

    async def poll(self) -> None:
        """One poll, now."""
        expected = self.expected() if self.expected else 0
        self.metrics.set_instances(await gather_stats(self.nc, expected=expected))
        self._changes.notify()

    async def wait_until(self, predicate: Callable[[MeshMetrics], bool], timeout: float) -> None:
        """Wait until ``predicate(metrics)`` holds, re-checked after every poll."""
        await self._changes.wait_until(lambda: predicate(self.metrics), timeout)

    async def _run(self) -> None:
        while True:
            if self.nc.is_connected:
                try:
                    await self.poll()
                except Exception as exc:
                    log.debug("$SRV.STATS poll failed: %s", exc)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


async def serve_metrics(metrics: MeshMetrics, host: str, port: int) -> asyncio.Server:
    """Answer ``GET /metrics`` (Prometheus text format) on ``host:port``; 0 picks a port."""
    from prometheus_client import CONTENT_TYPE_LATEST

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readuntil(b"\r\n\r\n")
            parts = request.split(b" ", 2)
            path = parts[1].split(b"?")[0] if len(parts) > 1 else b""
            if parts[0] == b"GET" and path in (b"/metrics", b"/"):
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, metrics.exposition()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"try GET /metrics\n"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)


class CollectorMetrics:
    """The collector's ``--metrics-port``: RED metrics from the spans it exports, and its own
    counters, on ``GET /metrics``."""

    def __init__(self, nc: NATS, collector: Collector, stats_interval: float = 5.0) -> None:
        self.metrics = MeshMetrics()
        self.collector = collector
        collector.on_exported = self._absorb
        self.metrics.add_source(self._own)
        self.poller = StatsPoller(nc, self.metrics, stats_interval)
        self.server: asyncio.Server | None = None

    def _absorb(self, spans: list[SpanMessage]) -> None:
        try:
            self.metrics.absorb_all(spans)
        except Exception:  # the export already succeeded: metrics must not stop the collector
            log.exception("counting exported spans failed")

    def _own(self) -> Iterator[Metric]:
        exported = CounterMetricFamily(
            "natsmesh_collector_exported_spans", "Spans this collector exported over OTLP."
        )
        exported.add_metric([], self.collector.exported)
        failures = CounterMetricFamily(
            "natsmesh_collector_export_failures", "OTLP exports that failed (spans retried)."
        )
        failures.add_metric([], self.collector.failures)
        rejected = CounterMetricFamily(
            "natsmesh_collector_rejected_spans",
            "Spans dropped: the receiver rejected them, or they could not be encoded.",
        )
        rejected.add_metric([], self.collector.rejected)
        yield exported
        yield failures
        yield rejected

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port``; returns the port."""
        self.server = await serve_metrics(self.metrics, host, port)
        self.poller.start()
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await self.poller.stop()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
