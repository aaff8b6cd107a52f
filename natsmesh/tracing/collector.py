"""The collector: span messages from the stream to OTLP (gRPC or HTTP/protobuf).

A durable pull consumer shared by every collector; a batch is acked only after the
OTLP export succeeded, so spans wait in the stream while Tempo is down. One batch is
exported (in a thread: the send blocks) while the next is fetched, decoded and encoded.
Fetching is ``natsmesh.tracing.pull``'s, encoding and sending ``natsmesh.tracing.otlp``'s.

Failures: a request that fails (after the sender's own retries) is tried again every
``retry_delay`` seconds, it alone (the batch's requests that went through are not sent
again), the batch's messages kept from redelivery with in-progress acks meanwhile; a
request the receiver rejects for good (HTTP 400, gRPC ``INVALID_ARGUMENT``) and a batch
that cannot be encoded are logged, acked and counted in ``rejected``. A pull that fails
(the consumer or the stream deleted, nats-server unreachable) is retried every
``retry_delay`` seconds, the consumer (and the stream) re-created when gone. Each
episode of trouble is logged once, as a warning, and its end once.
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

from natsmesh import subjects, wire
from natsmesh.condition import Condition
from natsmesh.config import Settings
from natsmesh.tracing.otlp import (
    DEFAULT_GRPC_ENDPOINT,
    DEFAULT_HTTP_ENDPOINT,
    OtlpSender,
    Rejected,
)
from natsmesh.tracing.pull import Puller, PullFailed
from natsmesh.wire import SpanMessage

__all__ = ["DEFAULT_GRPC_ENDPOINT", "DEFAULT_HTTP_ENDPOINT", "STAGES", "Collector", "OtlpSender"]

log = logging.getLogger("natsmesh.collector")

#: the stages whose CPU time ``Collector.cpu`` counts: fetch (receiving the messages),
#: decode, encode and ack on the event loop's thread, send on a thread of its own
STAGES = ("fetch", "decode", "encode", "send", "ack")
#: the consumer's ack wait is at least this, and at least 3 × the sender's timeout plus
#: ``ACK_WAIT_MARGIN``: a batch fetched ahead waits for the one before it, whose send
#: may take the whole timeout, before its own (seconds)
MIN_ACK_WAIT = 30.0
ACK_WAIT_MARGIN = 15.0


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
        #: export attempts that failed (the batch stays and is tried again)
        self.failures = 0
        #: spans dropped: rejected by the receiver for good, or not encodable
        self.rejected = 0
        #: CPU seconds spent in each of ``STAGES`` (the thread that ran it)
        self.cpu = dict.fromkeys(STAGES, 0.0)
        #: spans per message in the last fetch (agents send dozens to a message when busy)
        self._per_message = 1.0
        self._progress = Condition()
        self._puller: Puller | None = None
        #: a batch fetched and waiting for the export before it (kept in progress too)
        self._waiting: list[Msg] = []
        self._export_failing = False

    async def wait_until(self, predicate: Callable[[Collector], bool], timeout: float) -> None:
        """Wait until ``predicate(self)`` holds, re-checked after every export attempt."""
        await self._progress.wait_until(lambda: predicate(self), timeout)

    async def run(self, stop: asyncio.Event | None = None, report_every: float = 10.0) -> None:
        """Fetch, export, ack, until ``stop`` is set; the batch in flight is finished."""
        from natsmesh.tracing.export import ensure_stream

        await ensure_stream(self.nc.jetstream(), self.settings)
        puller = self._puller = Puller(self.nc, self.settings.spans_stream, subjects.SPANS_CONSUMER)
        await puller.start(self._consumer_config())
        stop = stop or asyncio.Event()
        last_report, last_count = time.monotonic(), 0
        in_flight: asyncio.Task[None] | None = None
        cpu, clock = self.cpu, time.thread_time
        mark = (clock(), cpu["decode"] + cpu["encode"] + cpu["ack"])
        pull_failing = False
        try:
            while not stop.is_set():
                try:
                    msgs = await puller.fetch(self._messages_per_fetch(), timeout=0.5)
                except Exception as exc:  # consumer or stream gone, connection trouble
                    if not pull_failing:
                        log.warning(
                            "fetching spans failed: %s (retrying every %g s)", exc, self.retry_delay
                        )
                        pull_failing = True
                    await _pause(stop, self.retry_delay)
                    if isinstance(exc, PullFailed) and exc.consumer_gone:
                        await self._recreate(puller)
                    continue
                if pull_failing:
                    log.warning("fetching spans works again")
                    pull_failing = False
                if msgs:
                    t0 = clock()
                    spans: list[SpanMessage] = []
                    try:
                        spans = wire.spans_of([m.data for m in msgs])
                        t1 = clock()
                        requests = self.sender.requests(spans, self.batch)
                    except Exception as exc:  # e.g. RecursionError: drop it, keep going
                        await self._drop(msgs, len(spans) or len(msgs), exc)
                        continue
                    cpu["decode"] += t1 - t0
                    cpu["encode"] += clock() - t1
                    self._per_message = max(len(spans) / len(msgs), 1.0)
                    if in_flight is not None:
                        self._waiting = msgs
                        await in_flight
                        self._waiting = []
                    in_flight = asyncio.create_task(self._export(msgs, spans, requests, stop))
                elif in_flight is not None:
                    await in_flight
                    in_flight = None
                mark = self._charge_receiving(*mark)
                now = time.monotonic()
                if now - last_report >= report_every:
                    rate = (self.exported - last_count) / (now - last_report)
                    backlog = await self._backlog()
                    log.info(
                        "exported %d spans (%.0f/s), rejected %d, backlog %s",
                        self.exported, rate, self.rejected, backlog,
                    )  # fmt: skip
                    last_report, last_count = now, self.exported
        finally:
            if in_flight is not None:
                await in_flight
            with contextlib.suppress(Exception):
                await puller.stop()
            self._puller = None

    def _consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            filter_subject=subjects.spans_wildcard(self.settings.prefix),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=max(MIN_ACK_WAIT, 3 * self.sender.timeout + ACK_WAIT_MARGIN),
            max_ack_pending=50_000,
        )

    async def _recreate(self, puller: Puller) -> None:
        """The consumer is gone (deleted, or its stream): create the stream if it is
        missing, and the consumer, which starts again from the stream's first span."""
        from natsmesh.tracing.export import ensure_stream

        try:
            await ensure_stream(self.nc.jetstream(), self.settings)
            if await puller.ensure_consumer(self._consumer_config()):
                log.warning(
                    "re-created the consumer %s of stream %s (it was deleted); the spans "
                    "the stream holds are exported again",
                    puller.consumer, puller.stream,
                )  # fmt: skip
        except Exception as exc:  # tried again after the next failed fetch
            log.debug("re-creating the consumer failed: %s", exc)

    async def _drop(self, msgs: list[Msg], spans: int, exc: BaseException) -> None:
        """Ack a batch that cannot be exported, so that it never blocks the stream."""
        log.error(
            "dropped %d span messages (%d spans) that cannot be encoded: %s",
            len(msgs), spans, f"{type(exc).__name__}: {exc}"[:200],
        )  # fmt: skip
        self.rejected += spans
        await self._reply(msgs, b"")
        self._progress.notify()

    async def _reply(self, msgs: list[Msg], body: bytes) -> None:
        """An empty message on each reply subject acks it (Msg.ack's way); ``+WPI``
        says it is in progress (its ack wait starts again); ``-NAK`` hands it back."""
        publish = self.nc.publish
        for m in msgs:
            with contextlib.suppress(Exception):
                await publish(m.reply, body)

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

    def _post(self, request: bytes) -> None:
        t0 = time.thread_time()
        try:
            self.sender.post(request)
        finally:
            self.cpu["send"] += time.thread_time() - t0

    async def _export(
        self,
        msgs: list[Msg],
        spans: list[SpanMessage],
        requests: list[tuple[bytes, int]],
        stop: asyncio.Event,
    ) -> None:
        sent = 0
        i = 0
        while i < len(requests):
            request, count = requests[i]
            try:
                await asyncio.to_thread(self._post, request)
            except Rejected as exc:  # retrying cannot help: drop these spans
                log.error("the OTLP receiver rejected %d spans, dropped: %s", count, exc)
                self.rejected += count
            except Exception as exc:
                self.failures += 1
                if not self._export_failing:
                    log.warning(
                        "OTLP export of %d spans failed (%s); they stay in the stream, "
                        "tried again every %g s",
                        count, exc, self.retry_delay,
                    )  # fmt: skip
                    self._export_failing = True
                self._progress.notify()
                await self._keep_in_progress(msgs)
                if await _pause(stop, self.retry_delay):
                    await self._reply(msgs, b"-NAK")  # for the next collector, at once
                    return
                await self._keep_in_progress(msgs)
                continue  # this request again, not those before it
            else:
                sent += count
                if self._export_failing:
                    log.warning("OTLP export works again")
                    self._export_failing = False
            i += 1
        t0 = time.thread_time()
        await self._reply(msgs, b"")
        self.cpu["ack"] += time.thread_time() - t0
        self.exported += sent
        if self.on_exported is not None:
            self.on_exported(spans)
        self._progress.notify()

    async def _keep_in_progress(self, msgs: list[Msg]) -> None:
        """Restart the ack wait of this batch, the batch waiting for it and the messages
        fetched ahead, so that none is redelivered while an export is retried."""
        held = self._puller.held if self._puller is not None else []
        await self._reply([*msgs, *self._waiting, *held], b"+WPI")

    async def _backlog(self) -> int | str:
        try:
            js = self.nc.jetstream()
            info = await js.consumer_info(self.settings.spans_stream, subjects.SPANS_CONSUMER)
            return int(info.num_pending + info.num_ack_pending)
        except Exception:
            return "?"


async def _pause(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, or less if ``stop`` is set; whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
