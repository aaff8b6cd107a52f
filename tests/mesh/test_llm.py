"""LLM providers and the consumer-side tool loop. The model is faked by a test-only litellm
provider (tests/agents/scripted_model.py, litellm's own mock_completion underneath);
everything else, litellm's call path included, is real."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from natsmesh.client import CallContext
from natsmesh.config import Settings
from natsmesh.errors import NoProvider, ToolError, Unavailable
from natsmesh.session import connect
from natsmesh.tracing import tree
from natsmesh.tracing.context import format_traceparent, new_span_id, new_trace_id
from tests.agents import llm_agents, scripted_model
from tests.helpers import SpanTap

HELLO = [{"content": "Hello from the scripted model"}]
TWO_TOOLS = [
    {
        "tool_calls": [
            {"name": "get_weather", "arguments": {"location": "Kyoto", "date": "2026-06-01"}},
            {"name": "hotel_search", "arguments": {"destination": "Kyoto", "min_stars": 3}},
        ]
    },
    {"content": "Stay at Sakura Inn; it will be partly cloudy."},
]


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "NATSMESH_CLAUDE_MODEL",
        "NATSMESH_OPENAI_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)


async def mesh_with(start_agents, settings: Settings, *agents):
    await start_agents(*agents)
    return connect(settings)


async def test_provider_round_trip_with_usage(start_agents, settings: Settings) -> None:
    await start_agents(llm_agents.scripted_provider("claude-scripted", ["claude"], HELLO))
    async with connect(settings) as mesh:
        request = {"messages": [{"role": "user", "content": "hi"}]}
        reply = await mesh.call("llm", request)
        async with mesh.stream("llm", request) as parts:
            tokens = [p async for p in parts]
    assert reply["content"] == "Hello from the scripted model"
    # the provider streams the text through litellm; the final reply is the whole turn
    assert len(tokens) > 1 and "".join(tokens) == reply["content"]
    assert parts.result == reply
    # usage comes from the stream's last chunk
    assert set(reply["usage"]) == {"input_tokens", "output_tokens"}
    assert reply["usage"]["input_tokens"] > 0 and reply["usage"]["output_tokens"] > 0
    assert reply["model"] == "claude-scripted"
    assert reply["finish_reason"] == "stop"
    assert reply["tool_calls"] == []


async def test_missing_key_is_a_clear_error_and_the_provider_keeps_serving(
    start_agents, settings: Settings
) -> None:
    [provider] = await start_agents(llm_agents.keyless_provider())
    async with connect(settings) as mesh:
        for _ in range(2):
            with pytest.raises(Unavailable, match="needs ANTHROPIC_API_KEY: set it") as info:
                await mesh.call("llm", {"messages": [{"role": "user", "content": "hi"}]})
            assert info.value.details["cause"] == "missing_api_key"
        assert provider.stats.endpoints["keyless"].num_requests == 2


async def test_caller_cannot_set_provider_secrets(start_agents, settings: Settings) -> None:
    await start_agents(llm_agents.scripted_provider("claude-scripted", ["claude"], HELLO))
    scripted_model.CALLS.clear()
    parameters = {
        "api_key": "stolen-key",
        "api_base": "http://evil.invalid",
        "base_url": "http://evil.invalid",
        "extra_headers": {"X-Evil": "stolen-header"},
        "temperature": 0.25,
    }
    async with connect(settings) as mesh:
        reply = await mesh.call(
            "llm",
            {"messages": [{"role": "user", "content": "hi"}], "parameters": parameters},
        )
    assert reply["content"] == "Hello from the scripted model"
    [received] = scripted_model.CALLS
    assert received["optional_params"].get("temperature") == 0.25, "caller parameters pass"
    assert received["api_key"] is None
    assert received["api_base"] is None
    assert not any(s in repr(received) for s in ("stolen", "evil")), received


async def test_template_from_context_model_and_call_time_context(
    start_agents, settings: Settings
) -> None:
    await start_agents(
        llm_agents.scripted_provider("claude-scripted", ["claude"], HELLO), llm_agents.asker()
    )
    async with connect(settings) as mesh:
        out = await mesh.call("ask", {"destination": "Kyoto", "mood": "brief"})
        assert out["system"] == "You help with trips to Kyoto. Be brief."
        assert out["messages"][0] == {"role": "system", "content": out["system"]}
        assert out["answer"] == "Hello from the scripted model"
        override = await mesh.call("ask", {"destination": "Kyoto", "extra": {"mood": "poetic"}})
        assert override["system"].endswith("Be poetic.")


async def test_missing_template_variable_names_it(start_agents, settings: Settings) -> None:
    await start_agents(
        llm_agents.scripted_provider("claude-scripted", ["claude"], HELLO),
        llm_agents.asker(prompt="file://prompts/needs_more.j2"),
    )
    async with connect(settings) as mesh:
        with pytest.raises(ToolError, match="'not_in_context' is undefined"):
            await mesh.call("ask", {"destination": "Kyoto"})


def test_missing_template_file_fails_at_decoration() -> None:
    import natsmesh as mesh

    with pytest.raises(FileNotFoundError, match="no template file"):
        mesh.llm(system_prompt="file://prompts/does_not_exist.j2")(lambda: None)


async def test_tool_loop_runs_two_tools_and_answers(start_agents, settings: Settings) -> None:
    await start_agents(
        "weather_agent",
        "hotel_agent",
        llm_agents.scripted_provider("claude-scripted", ["claude"], TWO_TOOLS),
        llm_agents.asker(),
    )
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 4, timeout=5)
        out = await mesh.call("ask", {"destination": "Kyoto"})
    assert out["answer"] == "Stay at Sakura Inn; it will be partly cloudy."
    assert out["tools"] == ["get_weather", "hotel_search"]
    roles = [m["role"] for m in out["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool"]
    results = {
        m["tool_call_id"]: json.loads(m["content"]) for m in out["messages"] if m["role"] == "tool"
    }
    assert results["call-0-0"]["summary"].startswith("Kyoto on 2026-06-01")
    assert [h["name"] for h in results["call-0-1"]["hotels"]] == ["Grand Hyatt", "Sakura Inn"]


async def test_max_iterations_is_a_clear_error(start_agents, settings: Settings) -> None:
    forever = [{"tool_calls": [{"name": "get_weather", "arguments": {"location": "Kyoto"}}]}]
    await start_agents(
        "weather_agent",
        llm_agents.scripted_provider("claude-scripted", ["claude"], forever),
        llm_agents.asker(max_iterations=3),
    )
    async with connect(settings) as mesh:
        with pytest.raises(ToolError, match="max_iterations=3"):
            await mesh.call("ask", {"destination": "Kyoto"})


async def test_structured_output(start_agents, settings: Settings) -> None:
    good, _ = await start_agents(
        llm_agents.scripted_provider(
            "json-provider", [], [{"content": '{"city": "Kyoto", "days": 5}'}]
        ),
        llm_agents.planner(),
    )
    async with connect(settings) as mesh:
        assert await mesh.call("structured_plan", {"destination": "Kyoto"}) == {
            "city": "Kyoto",
            "days": 5,
        }
        await good.stop()
        await start_agents(
            llm_agents.scripted_provider(
                "bad-json-provider", [], [{"content": '{"city": "Kyoto"}'}]
            )
        )
        with pytest.raises(ToolError, match=r"does not match Plan: days: Field required"):
            await mesh.call("structured_plan", {"destination": "Kyoto"})


async def test_claude_preferred_then_failover_then_no_provider(
    start_agents, settings: Settings
) -> None:
    claude, openai, _ = await start_agents(
        llm_agents.scripted_provider("claude-scripted", ["claude"], [{"content": "from claude"}]),
        llm_agents.scripted_provider(
            "openai-scripted", ["openai", "gpt"], [{"content": "from openai"}]
        ),
        llm_agents.asker(),
    )
    async with connect(settings) as mesh:
        for _ in range(5):
            assert (await mesh.call("ask", {"destination": "Kyoto"}))["answer"] == "from claude"
        await claude.stop()
        assert (await mesh.call("ask", {"destination": "Kyoto"}))["answer"] == "from openai"
        await openai.stop()
        with pytest.raises(NoProvider, match="'llm'"):
            await mesh.call("ask", {"destination": "Kyoto"})


async def test_rate_limited_provider_fails_over(start_agents, settings: Settings) -> None:
    await start_agents(
        llm_agents.scripted_provider(
            "claude-scripted", ["claude"], [{"error": "litellm.RateLimitError"}]
        ),
        llm_agents.scripted_provider("openai-scripted", ["openai"], [{"content": "from openai"}]),
        llm_agents.asker(),
    )
    async with connect(settings) as mesh:
        assert (await mesh.call("ask", {"destination": "Kyoto"}))["answer"] == "from openai"
        with pytest.raises(Unavailable, match="rate limited"):
            await mesh.call("llm", {"messages": [{"role": "user", "content": "hi"}]}, tags="claude")


async def test_plan_trip_trace_shape_on_the_offline_model(start_agents, settings: Settings) -> None:
    await start_agents(
        "user_prefs_agent",
        "flight_agent",
        "hotel_agent",
        "weather_agent",
        "poi_agent",
        "claude_provider",
        "openai_provider",
        "planner_agent",
    )
    async with connect(settings) as mesh:
        trace_id, root = new_trace_id(), new_span_id()
        sub = await SpanTap.open(mesh.nc, settings.prefix, trace_id)
        plan = await mesh.call(
            "plan_trip",
            {"destination": "Kyoto", "dates": "June 1-5, 2026", "budget": "$2000"},
            context=CallContext(traceparent=format_traceparent(trace_id, root)),
        )
        # plan_trip, prefs, 2 model turns, 4 tools (+ flight's prefs, poi's weather): 10 server
        # spans, plus the planner's, flight's and poi's client spans
        spans = []
        while len([s for s in spans if s.kind == 1]) < 10:
            spans.append(await sub.next())
    assert plan.startswith("[offline model]")
    assert "Kyoto" in plan and "Sakura Inn" in plan
    lines = tree.render(trace_id, spans).splitlines()
    assert lines[1].startswith("└─ plan_trip (planner-agent)")
    children = [line for line in lines if line.startswith(("   ├─ ", "   └─ "))]
    names = [line[6:].split(" (")[0] for line in children]
    assert names[0] == "get_user_prefs"
    assert names[1] == "claude_provider" and names[-1] == "claude_provider"
    assert sorted(names[2:-1]) == ["flight_search", "get_weather", "hotel_search", "search_pois"]
    provider_lines = [line for line in children if "claude_provider" in line]
    assert all("tokens" in line and " in " in line and " out " in line for line in provider_lines)
    provider = next(s for s in spans if s.name == "claude_provider")
    assert provider.attrs["gen_ai.request.model"] == "offline"
    assert provider.attrs["gen_ai.usage.input_tokens"] > 0


async def test_plan_trip_streams_its_itinerary_with_tool_events(
    start_agents, settings: Settings
) -> None:
    await start_agents(
        "user_prefs_agent",
        "flight_agent",
        "hotel_agent",
        "weather_agent",
        "poi_agent",
        "claude_provider",
        "planner_agent",
    )
    args = {"destination": "Kyoto", "dates": "June 1-5, 2026", "budget": "$2000"}
    async with connect(settings) as mesh:
        # the tutorial's capability and the tool name both reach the planner
        assert mesh.view.resolve("plan_trip") == "trip_planning"
        by_name = await mesh.call("plan_trip", args)
        by_capability = await mesh.call("trip_planning", args)
        assert by_name.startswith("[offline model]") and by_name == by_capability

        async def one() -> tuple[list[Any], Any, float, float]:
            t0 = time.perf_counter()
            first = 0.0
            got: list[Any] = []
            async with mesh.stream("trip_planning", args) as parts:
                async for part in parts:
                    if not got:
                        first = time.perf_counter() - t0
                    got.append(part)
            return got, parts.result, first, time.perf_counter() - t0

        runs = await asyncio.gather(*(one() for _ in range(8)))
    for got, result, first, total in runs:
        texts = [p for p in got if isinstance(p, str)]
        events = [p for p in got if isinstance(p, dict)]
        assert "".join(texts) == result, "chunks in order, none lost: they add up to the plan"
        assert result.startswith("[offline model]") and "Kyoto" in result
        assert len(texts) > 20, "the itinerary comes word by word"
        called = sorted(e["tool"] for e in events if e["event"] == "tool_call")
        assert called == ["flight_search", "get_weather", "hotel_search", "search_pois"]
        assert [e["ok"] for e in events if e["event"] == "tool_result"] == [True] * 4
        assert first < total


async def test_a_streamed_call_records_first_chunk_and_count(
    start_agents, settings: Settings
) -> None:
    await start_agents(llm_agents.scripted_provider("claude-scripted", ["claude"], HELLO))
    async with connect(settings, tracing=True) as mesh:
        trace_id, root = new_trace_id(), new_span_id()
        sub = await SpanTap.open(mesh.nc, settings.prefix, trace_id)
        context = CallContext(traceparent=format_traceparent(trace_id, root))
        async with mesh.stream(
            "llm", {"messages": [{"role": "user", "content": "hi"}]}, context=context
        ) as parts:
            n = len([p async for p in parts])
        spans = await sub.take(2)
    for span in spans:  # the caller's CLIENT span and the provider's SERVER span
        assert span.attrs["mesh.stream.chunks"] == n
        assert 0 <= span.attrs["mesh.stream.first_chunk_ms"] <= (span.end - span.start) / 1e6


async def test_a_record_with_hundreds_of_tools_does_not_flood_the_model(
    start_agents, settings: Settings
) -> None:
    from natsmesh.genai.toolset import MAX_LLM_TOOLS
    from natsmesh.wire import AgentRecord, ToolRecord, encode_record

    await start_agents(
        llm_agents.scripted_provider("claude-scripted", ["claude"], HELLO), llm_agents.asker()
    )
    flood = AgentRecord(
        name="flood-agent",
        instance_id="flood-agent-1",
        version="1.0.0",
        description="",
        host="h",
        pid=1,
        started_at=0,
        tools=tuple(
            ToolRecord(name=f"hotel_{i}", capability=f"hotel_{i}", tags=("hotels",))
            for i in range(200)
        ),
    )
    async with connect(settings) as mesh:
        kv = await mesh.nc.jetstream().key_value(settings.registry_bucket)
        await kv.put("flood-agent.flood-agent-1", encode_record(flood))
        await mesh.view.wait_for(lambda v: v.has("hotel_199"), timeout=5)
        out = await mesh.call("ask", {"destination": "Kyoto"})
    assert len(out["tools"]) == MAX_LLM_TOOLS
    assert len(set(out["tools"])) == len(out["tools"])
    assert out["answer"] == "Hello from the scripted model"
