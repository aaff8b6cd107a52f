"""``natsmesh trace`` and ``natsmesh collector``."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import typer
from natsmesh_cli.options import settings as cli_settings
from natsmesh_cli.output import fail, print_json


def trace_command(
    trace_id: str = typer.Argument(..., help="The trace ID that `call --trace` printed."),
    as_json: bool = typer.Option(False, "--json", help="Print the raw spans as JSON."),
    retries: int = typer.Option(3, "--retries", help="Times to wait for late spans."),
    tempo: str = typer.Option(
        None, "--tempo", help="Read the trace from Tempo at this URL (default $TEMPO_URL)."
    ),
    payloads: bool = typer.Option(
        False, "--payloads", help="Show recorded request and reply payloads."
    ),
) -> None:
    """Show the call tree of a trace: tool, agent, duration, ✓/✗."""
    from natsmesh import wire
    from natsmesh.tracing import tree

    trace_id = trace_id.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{32}", trace_id):
        fail("a trace ID is 32 hexadecimal characters", 2)
    tempo = tempo or cli_settings().tempo_url
    spans = _read_tempo(tempo, trace_id) if tempo else asyncio.run(_read_stream(trace_id, retries))
    if not spans:
        fail(f"no spans found for trace {trace_id}" + ("" if tempo else " in the span stream"))
    if as_json:
        print_json([wire.to_builtins(s) for s in sorted(spans, key=lambda s: s.start)])
        return
    print(tree.render(trace_id, spans, payloads=payloads))


def _read_tempo(url: str, trace_id: str) -> list[Any]:
    from natsmesh.tracing.store import read_tempo

    try:
        return read_tempo(url, trace_id)
    except OSError as exc:
        fail(f"cannot read from Tempo at {url}: {exc}")


async def _read_stream(trace_id: str, retries: int) -> list[Any]:
    from natsmesh.connection import connect_nats
    from natsmesh.errors import MeshError
    from natsmesh.tracing import tree
    from natsmesh.tracing.store import read_trace

    settings = cli_settings()
    try:
        nc = await connect_nats(settings, "natsmesh trace", reconnect=False)
    except MeshError as exc:
        fail(exc.message)
    try:
        spans: list[Any] = []
        for attempt in range(retries + 1):
            try:
                spans = await read_trace(nc, settings, trace_id)
            except Exception as exc:
                if "not found" in str(exc).lower():
                    fail(f"the span stream {settings.spans_stream} does not exist (is tracing on?)")
                raise
            if tree.complete(spans) or attempt == retries:
                break
            await asyncio.sleep(0.3)
        return spans
    finally:
        await nc.close()


def collector_command(
    otlp_endpoint: str = typer.Option(
        None, "--otlp-endpoint", help="Where to export (default per protocol)."
    ),
    protocol: str = typer.Option("grpc", "--protocol", help="grpc (4317) or http (4318)."),
    batch: int = typer.Option(1000, "--batch", help="Spans per export."),
    metrics_port: int = typer.Option(
        None, "--metrics-port", help="Serve Prometheus metrics on this port (GET /metrics)."
    ),
    metrics_host: str = typer.Option("0.0.0.0", "--metrics-host", help="Address for /metrics."),
    otlp_header: list[str] = typer.Option(
        [],
        "--otlp-header",
        help="NAME=VALUE sent with every export, e.g. an Authorization header (repeatable; "
        "added to OTEL_EXPORTER_OTLP_HEADERS).",
    ),
    compression: str = typer.Option("none", "--compression", help="none, gzip or deflate."),
    otlp_ca: str = typer.Option(None, "--otlp-ca", help="CA file to trust (https endpoints)."),
    otlp_cert: str = typer.Option(None, "--otlp-cert", help="Client certificate (mutual TLS)."),
    otlp_key: str = typer.Option(None, "--otlp-key", help="Client key (mutual TLS)."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per export, retries included."),
) -> None:
    """Export spans from the span stream to an OTLP receiver such as Tempo.

    An https:// endpoint uses TLS. A failed export is retried; meanwhile the spans wait in the stream."""
    from natsmesh.tracing.collector import (
        DEFAULT_GRPC_ENDPOINT,
        DEFAULT_HTTP_ENDPOINT,
        Collector,
        OtlpSender,
    )
    from natsmesh.worker import setup_logging

    settings = cli_settings()
    setup_logging(settings.debug)
    default = DEFAULT_GRPC_ENDPOINT if protocol == "grpc" else DEFAULT_HTTP_ENDPOINT
    endpoint = otlp_endpoint or settings.telemetry_endpoint or default
    try:
        from natsmesh.tracing.otlp import parse_headers

        sender = OtlpSender(
            endpoint, protocol, timeout, headers=parse_headers(otlp_header),
            compression=compression, ca_file=otlp_ca, client_cert=otlp_cert, client_key=otlp_key,
        )  # fmt: skip
    except (ValueError, OSError) as exc:
        fail(str(exc), 2)

    async def go() -> None:
        import signal

        from natsmesh.connection import connect_nats

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # Ctrl-C while NATS is still unreachable ends the wait for it, quietly
        connecting = asyncio.ensure_future(connect_nats(settings, "natsmesh collector"))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not connecting.done():
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connecting
            print("collector: stopped before NATS was reached", flush=True)
            return
        stopping.cancel()
        nc = connecting.result()
        print(f"collector: {settings.spans_stream} -> {endpoint} ({protocol})", flush=True)
        collector = Collector(nc, settings, sender, batch)
        metrics = None
        if metrics_port is not None:
            from natsmesh.tracing.metrics_feed import CollectorMetrics

            metrics = CollectorMetrics(nc, collector)
            try:
                port = await metrics.start(metrics_host, metrics_port)
            except OSError as exc:
                fail(f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc}")
            print(f"collector: metrics on http://{metrics_host}:{port}/metrics", flush=True)
        try:
            await collector.run(stop)
        finally:
            if metrics is not None:
                await metrics.stop()
            sender.close()
            # after Ctrl-C nobody waits for a reconnect: drain when connected, else close
            if nc.is_connected:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(nc.drain(), 5)
            if not nc.is_closed:
                await nc.close()
        print("collector: stopped", flush=True)

    asyncio.run(go())
