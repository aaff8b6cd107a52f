"""Details of a call that the traces and the worker must get right: payloads on spans
(opt-in, redacted), body sizes, sampling and tracestate, spans made with the
OpenTelemetry API, exceptions, malformed headers, a tool's own timeout."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import msgspec
import pytest

from natsmesh import headers as H
from natsmesh import subjects, wire
from natsmesh.call_context import CallContext
from natsmesh.config import Settings
from natsmesh.errors import ToolTimeout
from natsmesh.loader import load_file
from natsmesh.session import connect
from natsmesh.tracing.context import format_traceparent, new_span_id, new_trace_id
from natsmesh.tracing.store import read_trace
from natsmesh.tracing.tree import render
from tests.helpers import TEST_AGENTS, eventually
from tests.mesh.test_protocol import raw_call

SERVER = 1


async def spans_of(mesh: Any, settings: Settings, trace_id: str, count: int) -> list[Any]:
    found: list[Any] = []

    async def enough() -> bool:
        found[:] = await read_trace(mesh.nc, settings, trace_id)
        return len(found) >= count

    await eventually(enough, 10, f"{count} spans")
    return found


async def traced(mesh: Any, tool: str, args: dict[str, Any], **extra: Any) -> tuple[str, Any]:
    trace_id = new_trace_id()
    context = CallContext(traceparent=format_traceparent(trace_id, new_span_id()), **extra)
    try:
        result = await mesh.call(tool, args, context=context)
    except Exception as exc:
        result = exc
    return trace_id, result


@pytest.mark.parametrize("payloads", [True, False])
async def test_payloads_on_spans_are_opt_in_truncated_and_redacted(
    start_agents, settings: Settings, payloads: bool
) -> None:
    s = Settings(**{**settings.__dict__, "trace_payloads": payloads, "trace_payload_limit": 60})
    await start_agents(load_file(TEST_AGENTS / "talk_agent.py"), settings_=s)
    async with connect(s) as mesh:
        args = {"user": "ada", "password": "hunter2-secret", "note": "x" * 200}
        trace_id, result = await traced(mesh, "login", args)
        assert result["user"] == "ada"
        [server] = [sp for sp in await spans_of(mesh, s, trace_id, 1) if sp.kind == SERVER]
    request = server.attrs.get("mesh.request.payload")
    reply = server.attrs.get("mesh.reply.payload")
    if not payloads:
        assert not any("payload" in key for key in server.attrs), server.attrs
        return
    assert request is not None and reply is not None
    assert "hunter2" not in request and '"password":"***"' in request
    assert "tok-" not in reply and '"token":"***"' in reply
    assert request.startswith('{"user":"ada"') and "…(+" in request, "cut to the limit"
    assert len(request.split("…")[0]) == 60
    text = render(trace_id, [server], payloads=True)
    assert "args: " in text and "hunter2" not in text


async def test_body_sizes_are_on_both_spans(start_agents, settings: Settings) -> None:
    await start_agents(load_file(TEST_AGENTS / "talk_agent.py"))
    async with connect(settings, tracing=True) as mesh:
        args = {"text": "a b c d"}
        trace_id, result = await traced(mesh, "words", args)
        spans = await spans_of(mesh, settings, trace_id, 2)
    request_size = len(wire.encode_json(args))
    reply_size = len(wire.encode_result(result))
    for span in spans:
        assert span.attrs["messaging.message.body.size"] == request_size, span.kind
        assert span.attrs["mesh.reply.body.size"] == reply_size, span.kind


async def test_sampling_flag_and_tracestate_travel(start_agents, settings: Settings) -> None:
    await start_agents(load_file(TEST_AGENTS / "talk_agent.py"))
    async with connect(settings, tracing=True) as mesh:
        seen: list[dict[str, str]] = []

        async def spy(msg: Any) -> None:
            seen.append(dict(msg.headers or {}))

        await mesh.nc.subscribe(
            subjects.cap_subject("quick", "talk-agent", settings.prefix), cb=spy
        )
        await mesh.nc.flush()
        trace_id = new_trace_id()
        unsampled = format_traceparent(trace_id, new_span_id(), sampled=False)
        await mesh.call("quick", {}, context=CallContext(traceparent=unsampled, tracestate="v=1"))
        sampled_id, _ = await traced(mesh, "quick", {}, tracestate="vendor=abc")
        await eventually(lambda: len(seen) == 2, 5, "both requests")
        assert seen[0][H.TRACEPARENT].endswith("-00") and seen[0][H.TRACESTATE] == "v=1"
        assert seen[1][H.TRACEPARENT].endswith("-01") and seen[1][H.TRACESTATE] == "vendor=abc"
        await spans_of(mesh, settings, sampled_id, 2)
        assert await read_trace(mesh.nc, settings, trace_id) == [], "an unsampled call records none"


async def test_spans_made_with_the_opentelemetry_api_nest_and_are_exported(
    start_agents, settings: Settings
) -> None:
    await start_agents(load_file(TEST_AGENTS / "talk_agent.py"))
    async with connect(settings) as mesh:
        trace_id, result = await traced(mesh, "inner_span", {})
        assert result == "done"
        spans = await spans_of(mesh, settings, trace_id, 2)
    by_name = {s.name: s for s in spans}
    assert by_name["lookup"].parent_id == by_name["inner_span"].span_id
    assert by_name["lookup"].attrs["talk.step"] == 1
    assert by_name["lookup"].service == "talk-agent"


async def test_a_tool_exception_is_logged_with_its_traceback_and_on_its_span(
    start_agents, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    await start_agents(load_file(TEST_AGENTS / "talk_agent.py"))
    caplog.set_level(logging.WARNING, logger="natsmesh.dispatch")
    async with connect(settings) as mesh:
        trace_id, error = await traced(mesh, "fails", {"reason": "kaboom"})
        assert getattr(error, "type", None) == "tool_error"
        [server] = [s for s in await spans_of(mesh, settings, trace_id, 1) if s.kind == SERVER]
    record = next(r for r in caplog.records if "kaboom" in r.getMessage())
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    [event] = [e for e in server.events if e.name == "exception"]
    assert event.attrs["exception.type"] == "RuntimeError"
    assert "kaboom" in event.attrs["exception.stacktrace"]


@pytest.mark.parametrize(
    ("header", "value", "error"),
    [
        (H.DEADLINE, "soon", "invalid_arguments"),
        (H.DEADLINE, "99999999999999999", "invalid_arguments"),
        (H.DEADLINE, "1000", "timeout"),
        (H.TAGS, "+,-,$$$", "invalid_arguments"),
    ],
)
async def test_malformed_call_headers_are_refused_clearly(
    start_agents, settings: Settings, header: str, value: str, error: str
) -> None:
    await start_agents(load_file(TEST_AGENTS / "talk_agent.py"))
    [reply] = await raw_call(settings, "quick", "talk-agent", {}, {header: value})
    body = msgspec.json.decode(reply.data)
    assert body["error"]["type"] == error, body
    assert reply.headers[H.ERROR] == error


async def test_a_tool_timeout_caps_the_callers_deadline(start_agents, settings: Settings) -> None:
    await start_agents(load_file(TEST_AGENTS / "talk_agent.py"))
    async with connect(settings) as mesh:
        with pytest.raises(ToolTimeout, match="deadline"):
            await mesh.call("capped", {"seconds": 5}, timeout=10)
        assert await mesh.call("capped", {"seconds": 0}) == "too late"


def test_an_agent_too_large_for_the_registry_stops_with_one_line(tmp_path, settings) -> None:
    import subprocess
    import sys

    from tests.conftest import env_for

    tools = "\n".join(
        f"@mesh.tool(capability='c{i}')\nasync def t{i}() -> None:\n    return None\n"
        for i in range(300)
    )
    agent = tmp_path / "huge.py"
    agent.write_text(
        "import natsmesh as mesh\n\n@mesh.agent(name='huge')\nclass Huge:\n    pass\n\n" + tools
    )
    proc = subprocess.run(
        [sys.executable, "-m", "natsmesh.worker", str(agent)],
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("natsmesh: huge cannot register:") and "tools" in last


async def test_the_server_span_ends_after_the_reply_left_and_records_it(
    start_agents, settings: Settings
) -> None:
    [runtime] = await start_agents(load_file(TEST_AGENTS / "talk_agent.py"))
    assert runtime.nc is not None and runtime.tracing is not None
    processor = runtime.tracing.processor
    assert processor is not None
    events: list[tuple[str, Any, Any, int]] = []  # (what, body or span, headers, time)
    publish, enqueue = runtime.nc.publish, processor.enqueue

    async def spy_publish(subject: str, payload: bytes = b"", **kwargs: Any) -> None:
        if subject.startswith("_INBOX."):  # a reply to a caller
            events.append(("reply", payload, kwargs.get("headers") or {}, time.time_ns()))
        await publish(subject, payload, **kwargs)

    def spy_enqueue(message: Any) -> None:
        events.append(("span", message, None, time.time_ns()))
        enqueue(message)

    runtime.nc.publish = spy_publish  # type: ignore[method-assign]
    processor.enqueue = spy_enqueue  # type: ignore[method-assign]
    async with connect(settings) as mesh:
        for tool, args in (("quick", {"x": 3}), ("fails", {"reason": "kaboom"})):
            events.clear()
            await traced(mesh, tool, args)
            await eventually(lambda: any(e[0] == "span" for e in events), 5, "the SERVER span")
            [(_, body, headers, sent)] = [e for e in events if e[0] == "reply"]
            [(_, span, _, _)] = [e for e in events if e[0] == "span"]
            assert [e[0] for e in events] == ["reply", "span"], "the reply leaves first"
            assert span.end >= sent, "the span ends when the reply has left"
            assert span.attrs["mesh.reply.body.size"] == len(body)
            assert span.attrs.get("error.type") == headers.get(H.ERROR)
    assert span.attrs["error.type"] == "tool_error" and span.status == 2


async def test_head_sampling_drops_new_traces_and_follows_a_sampled_caller(
    start_agents, settings: Settings
) -> None:
    await start_agents(load_file(TEST_AGENTS / "talk_agent.py"))
    # OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0 for the caller
    sampling = Settings.from_env(
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}
    )
    caller = dataclasses.replace(
        settings,
        traces_sampler=sampling.traces_sampler,
        traces_sampler_arg=sampling.traces_sampler_arg,
    )
    async with connect(caller, tracing=True) as mesh:
        seen: list[str] = []

        async def spy(msg: Any) -> None:
            seen.append((msg.headers or {})[H.TRACEPARENT])

        await mesh.nc.subscribe(
            subjects.cap_subject("quick", "talk-agent", settings.prefix), cb=spy
        )
        await mesh.nc.flush()
        await mesh.call("quick", {})  # starts a trace here: not sampled
        sampled_id, _ = await traced(mesh, "quick", {})  # the caller's sampled trace goes on
        await eventually(lambda: len(seen) == 2, 5, "both requests")
        await spans_of(mesh, settings, sampled_id, 2)
        assert seen[0].endswith("-00") and seen[1].endswith("-01"), seen
        dropped = seen[0].split("-")[1]
        assert await read_trace(mesh.nc, settings, dropped) == [], "an unsampled trace has no span"
