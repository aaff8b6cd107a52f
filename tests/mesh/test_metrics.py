"""RED metrics from the span stream, scraped over HTTP in the Prometheus format."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

import natsmesh as mesh
from natsmesh.config import Settings
from natsmesh.edge.dashboard import Dashboard
from natsmesh.errors import ToolError
from natsmesh.session import connect
from natsmesh.tracing.collector import Collector, OtlpSender
from natsmesh.tracing.live import Trends
from natsmesh.tracing.metrics import BUCKETS, MeshMetrics, quantile
from natsmesh.tracing.metrics_feed import CollectorMetrics
from natsmesh.wire import SpanMessage
from tests.helpers import loaded


@mesh.agent(name="check-agent", version="1.0.0")
class CheckAgent:
    pass


@mesh.tool(capability="check")
async def check(n: int) -> dict[str, Any]:
    if n % 10 == 0:
        raise ValueError(f"{n} is a multiple of ten")
    return {"n": n}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, keyed by (name, labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(scrape: dict, name: str, **labels: str) -> float:
    return scrape[(name, frozenset(labels.items()))]


async def hundred_calls(settings: Settings) -> None:
    """100 calls of ``check`` from caller ``tester``; every tenth fails."""
    async with connect(settings, caller="tester", tracing=True) as client:
        await client.view.wait_for(lambda v: v.has("check"), 5)
        failures = 0
        for n in range(1, 101):
            try:
                await client.call("check", {"n": n})
            except ToolError:
                failures += 1
        assert failures == 10


def counted(metrics: MeshMetrics) -> tuple[int, int]:
    """(tool calls, edge calls) of ``check`` as counted so far."""
    tool = metrics.tools.get(("check-agent", "check"))
    edge = metrics.edges.get(("tester", "check-agent", "check"))
    return (tool.calls if tool else 0, edge.calls if edge else 0)


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a free port; yields its base URL."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:  # the socket listens already: requests wait in its backlog until uvicorn runs
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_dashboard_metrics_count_100_calls_and_10_failures(
    start_agents, settings: Settings
) -> None:
    await start_agents(loaded(CheckAgent, check))
    async with connect(settings, caller="dashboard") as client:
        dashboard = Dashboard(client, stats_interval=0.2)
        async with serving(dashboard.app()) as url:
            await hundred_calls(settings)
            await dashboard.feed.wait_until(lambda f: counted(dashboard.metrics) == (100, 100), 10)
            async with httpx.AsyncClient() as http:
                response = await http.get(f"{url}/metrics")
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/plain")
                scrape = samples(response.text)
                tool = {"agent": "check-agent", "tool": "check"}
                edge = {"caller": "tester", "callee": "check-agent", "tool": "check"}
                assert value(scrape, "natsmesh_tool_calls_total", **tool) == 100
                assert value(scrape, "natsmesh_tool_errors_total", **tool) == 10
                assert value(scrape, "natsmesh_tool_duration_seconds_count", **tool) == 100
                assert value(scrape, "natsmesh_edge_calls_total", **edge) == 100
                assert value(scrape, "natsmesh_edge_errors_total", **edge) == 10
                assert value(scrape, "natsmesh_edge_duration_seconds_count", **edge) == 100
                # $SRV.STATS: the instance's span export counters and calls in flight
                await dashboard.poller.wait_until(_published_100, 10)
                scrape = samples((await http.get(f"{url}/metrics")).text)
                [instance] = list(dashboard.metrics.instances)
                labels = {"agent": "check-agent", "instance": instance}
                assert value(scrape, "natsmesh_calls_in_flight", **labels) == 0
                assert value(scrape, "natsmesh_span_export_published_total", **labels) >= 100
                state = (await http.get(f"{url}/api/state")).json()
                [names] = [a["name"] for a in state["topology"]["agents"]]
                assert names == "check-agent"
                assert state["traces"] and state["traces"][0]["root"] == "check"


def _published_100(metrics: MeshMetrics) -> bool:
    return any(int(d.get("spans_published", 0)) >= 100 for _, d in metrics.instances.values())


class _OtlpReceiver:
    """A real OTLP/HTTP endpoint that accepts every export (Tempo's part)."""

    def __enter__(self) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_collector_metrics_port_counts_what_it_exported(
    start_agents, settings: Settings
) -> None:
    await start_agents(loaded(CheckAgent, check))
    await hundred_calls(settings)
    with _OtlpReceiver() as otlp:
        async with connect(settings, caller="collector-test") as client:
            collector = Collector(client.nc, settings, OtlpSender(otlp, "http"), batch=50)
            metrics = CollectorMetrics(client.nc, collector, stats_interval=0.2)
            port = await metrics.start("127.0.0.1", 0)
            stop = asyncio.Event()
            task = asyncio.create_task(collector.run(stop, report_every=3600))
            try:
                # 100 CLIENT + 100 SERVER spans
                await collector.wait_until(lambda c: c.exported >= 200, 15)
                async with httpx.AsyncClient() as http:
                    response = await http.get(f"http://127.0.0.1:{port}/metrics")
                    missing = await http.get(f"http://127.0.0.1:{port}/nothing")
            finally:
                stop.set()
                await task
                await metrics.stop()
    assert response.status_code == 200
    assert missing.status_code == 404
    scrape = samples(response.text)
    tool = {"agent": "check-agent", "tool": "check"}
    edge = {"caller": "tester", "callee": "check-agent", "tool": "check"}
    assert value(scrape, "natsmesh_tool_calls_total", **tool) == 100
    assert value(scrape, "natsmesh_tool_errors_total", **tool) == 10
    assert value(scrape, "natsmesh_edge_calls_total", **edge) == 100
    assert value(scrape, "natsmesh_edge_errors_total", **edge) == 10
    assert value(scrape, "natsmesh_collector_exported_spans_total") == collector.exported
    assert value(scrape, "natsmesh_collector_rejected_spans_total") == collector.rejected == 0


# --- the aggregator alone ---------------------------------------------------------------


def span(kind: int, seconds: float, **attrs: Any) -> SpanMessage:
    return SpanMessage(
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="00f067aa0ba902b7",
        name=str(attrs.get("mesh.tool", "x")),
        start=1_000_000_000,
        end=1_000_000_000 + int(seconds * 1e9),
        service=str(attrs.pop("service", "flight-agent")),
        kind=kind,
        status=int(attrs.pop("status", 0)),
        attrs=attrs,
    )


def test_bytes_in_and_out_per_tool_and_edge() -> None:
    metrics = MeshMetrics()
    for size, reply in ((100, 1000), (50, 500)):
        metrics.absorb(
            span(
                1,
                0.01,
                **{"mesh.tool": "flight_search"},
                **{"messaging.message.body.size": size, "mesh.reply.body.size": reply},
            )
        )
        metrics.absorb(
            span(
                2,
                0.012,
                service="planner-agent",
                **{"mesh.tool": "flight_search", "mesh.agent": "flight-agent"},
                **{"mesh.caller": "planner-agent", "messaging.message.body.size": size},
                **{"mesh.reply.body.size": reply},
            )
        )
    metrics.absorb(span(1, 0.01, **{"mesh.tool": "flight_search"}))  # sizes are optional
    tool = metrics.tools[("flight-agent", "flight_search")]
    assert (tool.calls, tool.bytes_in, tool.bytes_out) == (3, 150, 1500)
    edge = metrics.edges[("planner-agent", "flight-agent", "flight_search")]
    assert (edge.calls, edge.bytes_out, edge.bytes_in) == (2, 150, 1500)
    scrape = samples(metrics.exposition().decode())
    labels = {"caller": "planner-agent", "callee": "flight-agent", "tool": "flight_search"}
    assert value(scrape, "natsmesh_edge_sent_bytes_total", **labels) == 150
    assert value(scrape, "natsmesh_edge_received_bytes_total", **labels) == 1500
    labels = {"agent": "flight-agent", "tool": "flight_search"}
    assert value(scrape, "natsmesh_tool_received_bytes_total", **labels) == 150
    assert value(scrape, "natsmesh_tool_sent_bytes_total", **labels) == 1500


def test_tokens_per_model_and_provider() -> None:
    metrics = MeshMetrics()
    llm = {
        "mesh.tool": "claude_provider",
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": "anthropic/claude-sonnet-4-5",
        "gen_ai.response.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
    }
    metrics.absorb(span(1, 1.0, service="claude-provider", **llm))
    metrics.absorb(span(1, 1.0, service="claude-provider", **llm))
    metrics.absorb(span(0, 0.1, service="planner-agent", name="internal"))  # no tokens
    scrape = samples(metrics.exposition().decode())
    labels = {"model": "claude-sonnet-4-5", "provider": "anthropic", "agent": "claude-provider"}
    assert value(scrape, "natsmesh_llm_tokens_total", type="input", **labels) == 240
    assert value(scrape, "natsmesh_llm_tokens_total", type="output", **labels) == 60
    assert value(scrape, "natsmesh_llm_calls_total", **labels) == 2


def test_histogram_buckets_and_quantiles() -> None:
    metrics = MeshMetrics()
    for ms in range(1, 101):  # 1..100 ms
        metrics.absorb(span(1, ms / 1000, **{"mesh.tool": "t"}))
    metrics.absorb(span(1, 500.0, **{"mesh.tool": "t", "status": 2}))  # beyond the last bucket
    scrape = samples(metrics.exposition().decode())
    labels = {"agent": "flight-agent", "tool": "t"}
    assert value(scrape, "natsmesh_tool_duration_seconds_bucket", le="0.01", **labels) == 10
    assert value(scrape, "natsmesh_tool_duration_seconds_bucket", le="0.1", **labels) == 100
    assert value(scrape, "natsmesh_tool_duration_seconds_bucket", le="+Inf", **labels) == 101
    assert value(scrape, "natsmesh_tool_errors_total", **labels) == 1
    counts = metrics.tools[("flight-agent", "t")].counts
    p50 = quantile(0.5, counts)
    assert p50 is not None and 0.05 < p50 < 0.06  # rank 50.5 of 101: just above 50 ms
    assert quantile(0.999, counts) == BUCKETS[-1]
    assert quantile(0.5, [0] * len(counts)) is None


def test_trends_rate_error_percent_and_sparkline() -> None:
    metrics = MeshMetrics()
    trends = Trends(metrics)
    trends.tick(now=100.0)
    for second in range(1, 11):  # 10 s at 5 calls/s, one failure a second
        for i in range(5):
            metrics.absorb(span(1, 0.002, **{"mesh.tool": "t", "status": 2 if i == 0 else 0}))
        trends.tick(now=100.0 + second)
    [row] = trends.traffic()["tools"]
    assert row["key"] == ["flight-agent", "t"]
    assert row["rate"] == pytest.approx(5.0)
    assert row["error_pct"] == pytest.approx(20.0)
    assert row["spark"] == [5] * 10
    assert 1.0 < row["p50_ms"] <= 2.5


def test_bench_feeds_the_aggregator_real_span_messages() -> None:
    from bench.metrics import absorption, span_payloads
    from natsmesh import wire

    payloads = span_payloads(50)
    metrics = MeshMetrics()
    for data in payloads:
        metrics.absorb(wire.decode_span(data))
    tool = metrics.tools[("bench-echo", "bench_echo")]
    edge = metrics.edges[("bench-caller", "bench-echo", "bench_echo")]
    assert (tool.calls, tool.errors, edge.calls, edge.errors) == (50, 5, 50, 5)
    assert (tool.bytes_in, tool.bytes_out) == (50 * 24, 50 * 64)
    assert absorption(payloads, seconds=0.01) > 0


def test_attributes_of_the_wrong_type_do_not_break_the_metrics() -> None:
    metrics = MeshMetrics()
    odd = {
        "mesh.tool": ["not", "a", "name"],
        "messaging.message.body.size": "12",
        "mesh.reply.body.size": -5,
        "gen_ai.usage.input_tokens": "many",
        "gen_ai.request.model": {"a": 1},
    }
    metrics.absorb(span(1, 0.01, **odd))
    metrics.absorb(span(2, 0.01, **odd, **{"mesh.agent": 7, "mesh.caller": None}))
    tool = metrics.tools[("flight-agent", "['not', 'a', 'name']")]
    assert (tool.calls, tool.bytes_in, tool.bytes_out) == (1, 0, 0)
    assert metrics.edges[("flight-agent", "7", "['not', 'a', 'name']")].calls == 1
    scrape = samples(metrics.exposition().decode())  # still renders
    assert (
        value(
            scrape, "natsmesh_llm_calls_total", model="{'a': 1}", provider="", agent="flight-agent"
        )
        == 2
    )
