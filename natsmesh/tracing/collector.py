"""The collector: span messages from the stream to OTLP (gRPC or HTTP/protobuf).

A durable pull consumer shared by every collector; a batch is acked only after the
OTLP export succeeded, so spans wait in the stream while Tempo is down. Sending is the
OpenTelemetry OTLP exporters' (see ``natsmesh.tracing.otlp``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from natsmesh import subjects
from natsmesh.condition import Condition
from natsmesh.config import Settings
from natsmesh.tracing.export import decode_spans
from natsmesh.tracing.otlp import DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT, OtlpSender
from natsmesh.wire import SpanMessage

__all__ = ["DEFAULT_GRPC_ENDPOINT", "DEFAULT_HTTP_ENDPOINT", "Collector", "OtlpSender"]

log = logging.getLogger("natsmesh.collector")


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
        self._progress = Condition()

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
                await asyncio.to_thread(self.sender.send, spans)
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
