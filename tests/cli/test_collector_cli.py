"""`natsmesh collector` end to end: the default gRPC export with its flags."""

from __future__ import annotations

import asyncio
import signal
import sys

from bench.receivers import GrpcReceiver
from natsmesh.client import CallContext
from natsmesh.config import Settings
from natsmesh.session import connect
from natsmesh.tracing.context import format_traceparent, new_span_id, new_trace_id
from tests.conftest import env_for


async def test_collector_command_exports_over_grpc_with_headers(
    start_agents, settings: Settings
) -> None:
    await start_agents("weather_agent")
    changed = asyncio.Event()
    loop = asyncio.get_running_loop()
    receiver = GrpcReceiver(lambda: loop.call_soon_threadsafe(changed.set))
    port = receiver.start()
    args = ["--otlp-endpoint", f"http://127.0.0.1:{port}", "--compression", "gzip"]
    args += ["--otlp-header", "Authorization=Bearer t0ken"]
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "natsmesh_cli.app", "collector", *args],
        env={**env_for(settings), "PYTHONFAULTHANDLER": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        trace_id = new_trace_id()
        async with connect(settings) as mesh:
            ctx = CallContext(traceparent=format_traceparent(trace_id, new_span_id()))
            await mesh.call("get_weather", {"location": "Kyoto"}, context=ctx)
        async with asyncio.timeout(20):
            while receiver.spans < 1:
                changed.clear()
                await changed.wait()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out = (await asyncio.wait_for(proc.communicate(), 20))[0].decode()
        except TimeoutError:
            proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER prints where it hangs
            out = (await proc.communicate())[0].decode()
            raise AssertionError(f"the collector did not stop on SIGTERM:\n{out}") from None
        finally:
            receiver.stop()
    assert proc.returncode == 0, out
    assert f"-> http://127.0.0.1:{port} (grpc)" in out
    spans = [
        s
        for request in receiver.requests
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    assert [(s.trace_id.hex(), s.name) for s in spans] == [(trace_id, "get_weather")]
    assert all(h["authorization"] == "Bearer t0ken" for h in receiver.headers)
