"""Trace context across hops, span messages in the stream, the call tree, export never hurts."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.api import DiscardPolicy, StreamConfig

from natsmesh import subjects
from natsmesh.client import CallContext
from natsmesh.config import Settings
from natsmesh.errors import ToolError
from natsmesh.loader import load_file
from natsmesh.ops.overview import status
from natsmesh.session import connect
from natsmesh.tracing import tree
from natsmesh.tracing.context import (
    format_traceparent,
    new_span_id,
    new_trace_id,
    parse_traceparent,
)
from natsmesh.tracing.store import read_trace
from tests.helpers import TEST_AGENTS, SpanTap

SERVER, CLIENT = 1, 2


@pytest.fixture
async def chain(start_agents, settings: Settings):
    return await start_agents(
        *(load_file(TEST_AGENTS / f"{n}.py") for n in ("alpha", "beta", "gamma"))
    )


async def traced_call(mesh, settings: Settings, capability: str, args: dict, count: int):
    trace_id, root = new_trace_id(), new_span_id()
    sub = await SpanTap.open(mesh.nc, settings.prefix, trace_id)
    spy = await mesh.nc.subscribe(f"{settings.prefix}.cap.>")
    error = None
    try:
        result = await mesh.call(
            capability, args, context=CallContext(traceparent=format_traceparent(trace_id, root))
        )
    except ToolError as exc:
        result, error = None, exc
    spans = await sub.take(count)
    requests = []
    while True:
        try:
            requests.append(await spy.next_msg(timeout=0.2))
        except Exception:
            break
    await sub.close()
    await spy.unsubscribe()
    return trace_id, root, result, error, spans, requests


async def test_three_hops_make_one_trace_with_the_right_tree(chain, settings: Settings) -> None:
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 3, timeout=5)
        trace_id, root, result, _, spans, requests = await traced_call(
            mesh, settings, "alpha", {}, 5
        )
    assert result == {"alpha": True, "beta": {"beta": True, "gamma": {"gamma": True}}}
    assert {s.trace_id for s in spans} == {trace_id}
    server = {s.name: s for s in spans if s.kind == SERVER}
    client = {s.attrs["mesh.capability"]: s for s in spans if s.kind == CLIENT}
    assert set(server) == {"alpha", "beta", "gamma"}
    assert server["alpha"].parent_id == root
    assert client["beta"].parent_id == server["alpha"].span_id
    assert server["beta"].parent_id == client["beta"].span_id
    assert client["gamma"].parent_id == server["beta"].span_id
    assert server["gamma"].parent_id == client["gamma"].span_id
    # the IDs in the request headers are the IDs in the spans
    sent = {r.subject.split(".")[2]: parse_traceparent(r.headers["traceparent"]) for r in requests}
    assert sent["alpha"].span_id == root
    assert sent["beta"].span_id == client["beta"].span_id
    assert sent["gamma"].span_id == client["gamma"].span_id
    assert {tp.trace_id for tp in sent.values()} == {trace_id}
    # attributes of the messaging conventions and ours
    assert server["beta"].attrs["messaging.system"] == "nats"
    assert server["beta"].attrs["mesh.agent"] == "beta-agent"
    assert client["gamma"].attrs["messaging.destination.name"].endswith(".cap.gamma.gamma-agent")
    assert server["gamma"].service == "gamma-agent" and server["gamma"].instance.startswith(
        "gamma-agent-"
    )
    lines = tree.render(trace_id, spans).splitlines()
    assert lines[1].startswith("└─ alpha (alpha-agent) [")
    assert lines[2].startswith("   └─ beta (beta-agent) [")
    assert lines[3].startswith("      └─ gamma (gamma-agent) [")
    assert lines[4].startswith("Summary: 3 spans across 3 agents |") and lines[4].endswith("✓")


async def test_an_unsampled_call_stays_unsampled_at_every_hop(chain, settings: Settings) -> None:
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 3, timeout=5)
        trace_id = new_trace_id()
        spy = await mesh.nc.subscribe(f"{settings.prefix}.cap.>")
        unsampled = format_traceparent(trace_id, new_span_id(), sampled=False)
        await mesh.call("alpha", {}, context=CallContext(traceparent=unsampled))
        requests = [await spy.next_msg(timeout=5) for _ in range(3)]
        assert await read_trace(mesh.nc, settings, trace_id) == []
    flags = [(r.headers or {})["traceparent"].rsplit("-", 1)[1] for r in requests]
    assert flags == ["00", "00", "00"], "a nested call keeps its parent's sampled flag"


async def test_inner_error_marks_the_span_and_its_ancestors(chain, settings: Settings) -> None:
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 3, timeout=5)
        trace_id, _, _, error, spans, _ = await traced_call(
            mesh, settings, "alpha", {"fail": True}, 5
        )
        stored = await read_trace(mesh.nc, settings, trace_id)
    assert isinstance(error, ToolError) and "gamma was asked to fail" in error.message
    assert all(s.status == 2 for s in spans), [(s.name, s.status) for s in spans]
    gamma = next(s for s in spans if s.name == "gamma")
    assert gamma.attrs["error.type"] == "tool_error"
    rendered = tree.render(trace_id, spans)
    assert rendered.count("✗") == 4  # three tools and the summary
    assert sorted(s.span_id for s in stored) == sorted(s.span_id for s in spans)


async def test_export_to_a_missing_or_full_stream_never_fails_calls(
    start_agents, settings: Settings
) -> None:
    [echo] = await start_agents(load_file(TEST_AGENTS / "echo_agent.py"))
    processor = echo.tracing.processor
    async with connect(settings) as mesh:
        js = mesh.nc.jetstream()
        await js.delete_stream(settings.spans_stream)
        results = await asyncio.gather(*(mesh.call("echo", {"text": str(i)}) for i in range(50)))
        assert [r["text"] for r in results] == [str(i) for i in range(50)]
        await processor.flush()
        await mesh.nc.flush()
        await processor.wait_until(lambda p: p.failed >= 50, 5)
        # a full stream that refuses new messages
        await js.add_stream(
            StreamConfig(
                name=settings.spans_stream,
                subjects=[subjects.spans_wildcard(settings.prefix)],
                max_msgs=1,
                discard=DiscardPolicy.NEW,
            )
        )
        before = processor.failed
        results = await asyncio.gather(*(mesh.call("echo", {"text": "x"}) for i in range(20)))
        assert len(results) == 20
        await processor.flush()
        await processor.wait_until(lambda p: p.failed >= before + 19, 5)
        report = await status(mesh)
        assert report["spans_failed"] >= before + 19


async def test_caller_giving_up_cancels_every_hop_downstream(chain, settings: Settings) -> None:
    from natsmesh.errors import ToolTimeout

    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 3, timeout=5)
        trace_id, root = new_trace_id(), new_span_id()
        sub = await SpanTap.open(mesh.nc, settings.prefix, trace_id)
        spy = await mesh.nc.subscribe(f"{settings.prefix}.cap.>")
        with pytest.raises(ToolTimeout):
            await mesh.call(
                "alpha",
                {"delay": 30},
                timeout=0.5,
                context=CallContext(traceparent=format_traceparent(trace_id, root)),
            )
        spans = await sub.take(5)
        deadlines = {
            m.subject.split(".")[2]: int(m.headers["Mesh-Deadline"])
            for m in [await spy.next_msg(timeout=1) for _ in range(3)]
        }
    # every hop carries the caller's deadline (nested hops only what is left of it)
    assert deadlines["beta"] <= deadlines["alpha"] and deadlines["gamma"] <= deadlines["alpha"]
    gamma = next(s for s in spans if s.name == "gamma")
    assert gamma.attrs["error.type"] == "timeout"
    assert "cancelled" in gamma.status_message
    # gamma was cancelled at the deadline, not after its 30 s sleep
    assert (gamma.end - gamma.start) / 1e9 < 2
