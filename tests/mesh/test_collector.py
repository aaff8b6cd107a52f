"""The collector against a real OTLP/HTTP receiver: every span once, nothing lost in an outage."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from natsmesh.client import CallContext
from natsmesh.config import Settings
from natsmesh.session import connect
from natsmesh.tracing.collector import Collector, OtlpSender
from natsmesh.tracing.context import format_traceparent, new_span_id, new_trace_id


class Receiver:
    """A minimal OTLP/HTTP trace receiver that decodes what it gets."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.spans: list[tuple[str, str, str, dict, dict]] = []
        self.changed = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for rs in request.resource_spans:
                    resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            attrs = {a.key: a.value for a in s.attributes}
                            receiver.spans.append(
                                (
                                    s.trace_id.hex(),
                                    s.span_id.hex(),
                                    s.parent_span_id.hex(),
                                    resource,
                                    attrs,
                                )
                            )
                receiver.loop.call_soon_threadsafe(receiver.changed.set)
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: object) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    async def wait_for(self, count: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while len(self.spans) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def make_traces(mesh, n: int) -> set[str]:
    ids = set()
    for _ in range(n):
        trace_id = new_trace_id()
        ids.add(trace_id)
        ctx = CallContext(traceparent=format_traceparent(trace_id, new_span_id()))
        await mesh.call(
            "flight_search", {"origin": "A", "destination": "B", "date": "d"}, context=ctx
        )
    return ids


async def test_collector_exports_every_span_once_and_survives_an_outage(
    start_agents, settings: Settings, port: int
) -> None:
    runtimes = await start_agents("user_prefs_agent", "flight_agent")
    receiver = Receiver(port)
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 2, timeout=5)
        # the receiver is down: spans wait in the stream
        collector = Collector(
            mesh.nc,
            settings,
            OtlpSender(f"http://127.0.0.1:{port}", "http", timeout=1),
            retry_delay=0.2,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(collector.run(stop))
        first = await make_traces(mesh, 10)
        prefs, flight = runtimes
        await prefs.tracing.processor.wait_until(lambda p: p.acked >= 10, 5)
        await flight.tracing.processor.wait_until(lambda p: p.acked >= 20, 5)
        await collector.wait_until(lambda c: c.failures >= 2, 10)
        assert receiver.spans == []
        receiver.start()
        try:
            second = await make_traces(mesh, 10)
            # per call: flight SERVER, flight CLIENT, prefs SERVER
            await receiver.wait_for(60, timeout=15)
        finally:
            stop.set()
            await task
            receiver.stop()
    span_ids = [s[1] for s in receiver.spans]
    assert len(span_ids) == len(set(span_ids)) == 60, "every span exactly once"
    assert {s[0] for s in receiver.spans} == first | second
    by_id = {s[1]: s for s in receiver.spans}
    for trace_id, _span_id, parent, resource, attrs in receiver.spans:
        assert resource["service.name"] in {"flight-agent", "user-prefs-agent"}
        assert resource["service.instance.id"].startswith(resource["service.name"])
        assert attrs["messaging.system"].string_value == "nats"
        if resource["service.name"] == "user-prefs-agent":
            assert by_id[parent][3]["service.name"] == "flight-agent"
            assert by_id[parent][0] == trace_id
