"""The collector: span messages from the stream to OTLP (gRPC or HTTP/protobuf).

A durable pull consumer shared by every collector; a batch is acked only after the
OTLP export succeeded, so spans wait in the stream while Tempo is down. One batch is
exported (in a thread: the send blocks) while the next is fetched, decoded and encoded.
Fetching is ``natsmesh.tracing.pull``'s, encoding and sending ``natsmesh.tracing.otlp``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from natsmesh import subjects
from natsmesh.condition import Condition
from natsmesh.config import Settings
from natsmesh.tracing.export import decode_spans
from natsmesh.tracing.otlp import DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT, OtlpSender
from natsmesh.tracing.pull import Puller
from natsmesh.wire import SpanMessage

__all__ = ["DEFAULT_GRPC_ENDPOINT", "DEFAULT_HTTP_ENDPOINT", "STAGES", "Collector", "OtlpSender"]

log = logging.getLogger("natsmesh.collector")

#: the stages whose CPU time ``Collector.cpu`` counts: fetch (receiving the messages),
#: decode, encode and ack on the event loop's thread, send on a thread of its own
STAGES = ("fetch", "decode", "encode", "send", "ack")


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
        #: CPU seconds spent in each of ``STAGES`` (the thread that ran it)
        self.cpu = dict.fromkeys(STAGES, 0.0)
        #: spans per message in the last fetch (agents send dozens to a message when busy)
        self._per_message = 1.0
        self._progress = Condition()

    async def wait_until(self, predicate: Callable[[Collector], bool], timeout: float) -> None:
        """Wait until ``predicate(self)`` holds, re-checked after every export attempt."""
        await self._progress.wait_until(lambda: predicate(self), timeout)

    async def run(self, stop: asyncio.Event | None = None, report_every: float = 10.0) -> None:
        """Fetch, export, ack, until ``stop`` is set; the batch in flight is finished."""
        from natsmesh.tracing.export import ensure_stream

        await ensure_stream(self.nc.jetstream(), self.settings)
        puller = Puller(self.nc, self.settings.spans_stream, subjects.SPANS_CONSUMER)
        await puller.start(
            ConsumerConfig(
                filter_subject=subjects.spans_wildcard(self.settings.prefix),
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=30,
                max_ack_pending=50_000,
            )
        )
        stop = stop or asyncio.Event()
        last_report, last_count = time.monotonic(), 0
        in_flight: asyncio.Task[None] | None = None
        cpu, clock = self.cpu, time.thread_time
        mark = (clock(), cpu["decode"] + cpu["encode"] + cpu["ack"])
        try:
            while not stop.is_set():
                try:
                    msgs = await puller.fetch(self._messages_per_fetch(), timeout=0.5)
                except Exception as exc:  # connection trouble: wait and retry
                    log.warning("fetching spans failed: %s", exc)
                    await asyncio.sleep(self.retry_delay)
                    continue
                if msgs:
                    t0 = clock()
                    spans = decode_spans([m.data for m in msgs])
                    t1 = clock()
                    requests = self.sender.requests(spans, self.batch)
                    cpu["decode"] += t1 - t0
                    cpu["encode"] += clock() - t1
                    self._per_message = max(len(spans) / len(msgs), 1.0)
                    if in_flight is not None:
                        await in_flight
                    in_flight = asyncio.create_task(self._export(msgs, spans, requests))
                elif in_flight is not None:
                    await in_flight
                    in_flight = None
                mark = self._charge_receiving(*mark)
                now = time.monotonic()
                if now - last_report >= report_every:
                    rate = (self.exported - last_count) / (now - last_report)
                    backlog = await self._backlog()
                    log.info("exported %d spans (%.0f/s), backlog %s", self.exported, rate, backlog)
                    last_report, last_count = now, self.exported
        finally:
            if in_flight is not None:
                await in_flight
            with contextlib.suppress(Exception):
                await puller.stop()

    def _charge_receiving(self, since: float, charged: float) -> tuple[float, float]:
        """Charge to "fetch" what this thread spent since ``since`` beyond the stages it
        counts (decode, encode, ack, ``charged`` of them then): receiving messages, i.e.
        nats-py's parsing and the pull requests, whenever the event loop ran them."""
        cpu = self.cpu
        now, counted = time.thread_time(), cpu["decode"] + cpu["encode"] + cpu["ack"]
        cpu["fetch"] += (now - since) - (counted - charged)
        return now, counted

    def _messages_per_fetch(self) -> int:
        """As many messages as carry about ``batch`` spans, going by the last fetch's."""
        return max(1, min(self.batch, round(self.batch / self._per_message)))

    def _post(self, requests: list[tuple[bytes, int]]) -> None:
        t0 = time.thread_time()
        try:
            for request, _count in requests:
                self.sender.post(request)
        finally:
            self.cpu["send"] += time.thread_time() - t0

    async def _export(
        self, msgs: list[Msg], spans: list[SpanMessage], requests: list[tuple[bytes, int]]
    ) -> None:
        count = sum(n for _request, n in requests)
        try:
            if count:
                await asyncio.to_thread(self._post, requests)
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
        t0 = time.thread_time()
        publish = self.nc.publish
        for m in msgs:  # an empty message on the reply subject acks it (Msg.ack's way)
            with contextlib.suppress(Exception):
                await publish(m.reply)
        self.cpu["ack"] += time.thread_time() - t0
        self.exported += count
        if self.on_exported is not None:
            self.on_exported(spans)
        self._progress.notify()

    async def _backlog(self) -> int | str:
        try:
            js = self.nc.jetstream()
            info = await js.consumer_info(self.settings.spans_stream, subjects.SPANS_CONSUMER)
            return int(info.num_pending + info.num_ack_pending)
        except Exception:
            return "?"
