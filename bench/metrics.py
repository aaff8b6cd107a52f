"""How fast the metrics aggregation absorbs spans: decode a span message, count it.

The span messages are made by the mesh's own span code (``Tracing.client_span`` and
``server_span``, as a call makes them: a CLIENT and a SERVER span per call, every
tenth call failed, body sizes set) and encoded as they travel. The figure is spans per
second through ``wire.decode_span`` and ``MeshMetrics.absorb`` (and, for the dashboard,
its recent-trace index too), on one core. Run alone: ``python -m bench.metrics``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from natsmesh import wire
from natsmesh.wire import SpanMessage

if TYPE_CHECKING:
    from natsmesh.config import Settings


def span_payloads(calls: int = 5_000) -> list[bytes]:
    """Encoded span messages of ``calls`` mesh calls (two spans each)."""
    from natsmesh.specs import DependencySpec
    from natsmesh.tracing.export import NatsSpanProcessor
    from natsmesh.tracing.spans import Tracing

    caller_out = NatsSpanProcessor("bench-caller", "bench-caller-1")
    worker_out = NatsSpanProcessor("bench-echo", "bench-echo-1")
    caller = Tracing("bench-caller", "bench-caller-1", caller_out)
    worker = Tracing("bench-echo", "bench-echo-1", worker_out)
    dep = DependencySpec("bench_echo")
    server_attrs = {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "mesh.agent": "bench-echo",
        "mesh.capability": "bench_echo",
        "mesh.tool": "bench_echo",
    }
    for i in range(calls):
        client = caller.client_span(dep, None)
        client.attrs["messaging.message.body.size"] = 24
        client.target("mesh.cap.bench_echo.bench-echo", "bench-echo", "bench_echo")
        server = worker.server_span("bench_echo", {"traceparent": client.traceparent}, server_attrs)
        server.attrs["messaging.message.body.size"] = 24
        server.attrs["mesh.reply.body.size"] = 64
        if i % 10 == 0:
            server.fail("tool_error", "ValueError: boom")
            client.fail("tool_error", "ValueError: boom")
        server.end()
        client.reply(64)
        client.end()
    spans = list(worker_out._queue) + list(caller_out._queue)
    return [wire.encode_span(s) for s in spans]


def absorption(
    payloads: list[bytes] | None = None,
    seconds: float = 2.0,
    sinks: Callable[[], list[Callable[[SpanMessage], None]]] | None = None,
) -> float:
    """Spans per second decoded and absorbed, over at least ``seconds``.

    ``sinks`` makes fresh sinks for the run (default: one ``MeshMetrics.absorb``).
    """
    from natsmesh.tracing.metrics import MeshMetrics

    data = payloads or span_payloads()
    targets = sinks() if sinks else [MeshMetrics().absorb]
    decode = wire.decode_span
    done = 0
    t0 = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        if len(targets) == 1:
            absorb = targets[0]
            for message in data:
                absorb(decode(message))
        else:
            for message in data:
                span = decode(message)
                for sink in targets:
                    sink(span)
        done += len(data)
        elapsed = time.perf_counter() - t0
    return done / elapsed


def dashboard_sinks() -> list[Callable[[SpanMessage], None]]:
    """What the dashboard's feed runs per span: the metrics and the recent-trace index."""
    from natsmesh.tracing.live import TraceIndex
    from natsmesh.tracing.metrics import MeshMetrics

    return [MeshMetrics().absorb, TraceIndex().add]


def figures(quick: bool = False) -> dict[str, float]:
    """``metrics_spans_s`` (the aggregator) and ``dashboard_spans_s`` (with the trace index)."""
    payloads = span_payloads(2_000 if quick else 10_000)
    seconds = 0.5 if quick else 2.0
    return {
        "metrics_spans_s": absorption(payloads, seconds),
        "dashboard_spans_s": absorption(payloads, seconds, dashboard_sinks),
    }


async def feed_absorption(settings: Settings, count: int = 50_000) -> float:
    """Spans per second through the dashboard's whole feed: ``count`` span messages are put
    in the stream first, then a :class:`SpanFeed` (ordered consumer, decode, metrics and
    trace index) reads them all. Needs the nats-server of ``settings``."""
    from natsmesh import subjects
    from natsmesh.connection import connect_nats
    from natsmesh.tracing.export import ensure_stream
    from natsmesh.tracing.live import TraceIndex
    from natsmesh.tracing.metrics import MeshMetrics
    from natsmesh.tracing.metrics_feed import SpanFeed

    nc = await connect_nats(settings, "bench-metrics-feed")
    try:
        js = nc.jetstream()
        await ensure_stream(js, settings)
        payloads = span_payloads(count // 2)
        spans = [wire.decode_span(p) for p in payloads]
        # as a busy exporter sends them: 50 spans to a message
        batches = [wire.encode_spans(spans[i : i + 50]) for i in range(0, len(spans), 50)]
        for i, data in enumerate(batches):
            await nc.publish(subjects.spans_subject("0" * 32, settings.prefix), data)
            if i % 100 == 0:
                await nc.flush()
        await nc.flush()
        while (await js.stream_info(settings.spans_stream)).state.messages < len(batches):  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the server acks nothing here: poll the stream's count
        metrics, traces = MeshMetrics(), TraceIndex()
        feed = SpanFeed(nc, settings, [metrics.absorb, traces.add], history=3600)
        t0 = time.perf_counter()
        await feed.start()
        await feed.wait_until(lambda f: f.received >= len(payloads), 120)
        rate = len(payloads) / (time.perf_counter() - t0)
        await feed.stop()
        assert metrics.spans == len(payloads)
        return rate
    finally:
        await nc.close()


def main() -> None:
    """Print the figures; with a nats-server of its own, the feed's figure too."""
    import tempfile
    from pathlib import Path

    from natsmesh.config import Settings
    from natsmesh.ops.server import start_server

    for name, value in figures().items():
        print(f"{name} = {value:.0f}")
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp))
        try:
            settings = Settings(nats_url=server.url, spans_stream="BENCH_METRICS")
            print(f"feed_spans_s = {asyncio.run(feed_absorption(settings)):.0f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
