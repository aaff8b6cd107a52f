"""MCP servers as mesh agents: a small MCP server written with the mcp SDK
(tests/agents/calc_mcp_server.py) is wrapped, registered, called, scaled, traced, and used
by an ``@mesh.llm`` tool loop on a scripted model."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

import natsmesh as mesh
from natsmesh.client import CallContext
from natsmesh.config import Settings
from natsmesh.edge.mcp_bridge import McpAgent, capability_for, mcp_server
from natsmesh.errors import InvalidArguments, ToolError
from natsmesh.loader import load_file
from natsmesh.session import connect
from natsmesh.tracing.context import format_traceparent, new_span_id, new_trace_id
from tests.agents import llm_agents
from tests.conftest import env_for
from tests.helpers import TEST_AGENTS, SpanTap, loaded

CALC_SERVER = TEST_AGENTS / "calc_mcp_server.py"
CALC_AGENT = TEST_AGENTS / "calc_mcp_agent.py"
NATSMESH = str(Path(sys.executable).parent / "natsmesh")
WAIT = 15.0
SERVER = 1


def calc(name: str = "calc-mcp", **options: Any) -> Any:
    return mcp_server(name=name, command=[sys.executable, str(CALC_SERVER)], **options)


@pytest.fixture
async def wrap(settings: Settings) -> AsyncIterator[Any]:
    """``await wrap(spec)``: a started McpAgent, stopped at the end of the test."""
    agents: list[McpAgent] = []

    async def start(spec: Any) -> McpAgent:
        agent = McpAgent(spec, settings)
        await agent.start()
        agents.append(agent)
        return agent

    yield start
    await asyncio.gather(*(a.stop() for a in agents), return_exceptions=True)


async def _listing() -> dict[str, Any]:
    """The calc server's own tool listing, through a plain MCP client."""
    params = StdioServerParameters(command=sys.executable, args=[str(CALC_SERVER)])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return {t.name: t for t in (await session.list_tools()).tools}


async def test_wrapped_tools_are_mesh_tools_with_their_schemas(
    wrap: Any, settings: Settings
) -> None:
    await wrap(calc(tags=["math"]))
    listing = await _listing()
    async with connect(settings) as client:
        await client.view.wait_for(lambda v: len(v.records) == 1, WAIT)
        [record] = client.view.records.values()
        assert record.name == "calc-mcp" and record.protocol >= 1
        tools = {t.capability: t for t in record.tools}
        assert set(tools) == {"add", "text_shout", "whoami", "divide"}  # "text.shout" mapped
        for name, tool in listing.items():
            mesh_tool = tools[capability_for(name)]
            assert mesh_tool.input_schema == tool.input_schema
            assert mesh_tool.output_schema == tool.output_schema
            assert mesh_tool.description == tool.description
            assert mesh_tool.tags == ("math",)

        assert await client.call("add", {"a": 2, "b": 3}) == {"result": 5}
        assert await client.call("text_shout", {"text": "hi"}) == {"result": "HI!"}
        with pytest.raises(InvalidArguments) as invalid:
            await client.call("add", {"a": "two", "b": 3})
        assert invalid.value.details["errors"] == [
            {"field": "a", "error": "'two' is not of type 'integer'"}
        ]
        with pytest.raises(ToolError, match="Error executing tool divide"):
            await client.call("divide", {"a": 1, "b": 0})
        # the agent keeps serving after errors
        assert await client.call("add", {"a": 1, "b": 1}) == {"result": 2}


async def test_an_agent_file_runs_under_natsmesh_start_and_call(
    spawn_agent: Any, settings: Settings
) -> None:
    assert load_file(CALC_AGENT).mcp is not None
    spawn_agent(CALC_AGENT)
    async with connect(settings) as client:
        await client.view.wait_for(lambda v: v.has("add"), WAIT)
    out = await asyncio.to_thread(
        subprocess.run,
        [NATSMESH, "call", "add", '{"a": 20, "b": 22}'],
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"result": 42}


async def test_scaling_is_running_it_twice(wrap: Any, settings: Settings) -> None:
    await wrap(calc())
    await wrap(calc())
    async with connect(settings) as client:
        await client.view.wait_for(lambda v: len(v.records) == 2, WAIT)
        pids = {(await client.call("whoami", {}))["pid"] for _ in range(24)}
    assert len(pids) == 2  # one queue group spreads the calls over both MCP servers


async def test_llm_tool_loop_calls_the_wrapped_tool_and_the_trace_shows_it(
    wrap: Any, start_agents: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    script = [
        {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]},
        {"content": "2 + 3 = 5"},
    ]
    await wrap(calc())
    await start_agents(
        llm_agents.scripted_provider("claude-scripted", ["claude"], script), _calculator()
    )
    trace_id, root = new_trace_id(), new_span_id()
    async with connect(settings) as client:
        await client.view.wait_for(lambda v: len(v.records) == 3, WAIT)
        sub = await SpanTap.open(client.nc, settings.prefix, trace_id)
        context = CallContext(traceparent=format_traceparent(trace_id, root))
        out = await client.call("ask_calc", {"question": "2 + 3?"}, context=context)
        assert out["answer"] == "2 + 3 = 5"
        [tool_reply] = [m for m in out["messages"] if m["role"] == "tool"]
        assert json.loads(tool_reply["content"]) == {"result": 5}
        spans: dict[str, Any] = {}
        async with asyncio.timeout(WAIT):
            while not _traced(spans):
                span = await sub.next(WAIT)
                spans[span.span_id] = span
        await sub.close()
    add = next(s for s in spans.values() if s.name == "add" and s.kind == SERVER)
    assert add.service == "calc-mcp" and add.status != 2
    ask = next(s for s in spans.values() if s.name == "ask_calc" and s.kind == SERVER)
    parent = spans[add.parent_id]  # the consumer's CLIENT span of the tool loop
    assert parent.service == "calc-agent" and parent.parent_id == ask.span_id


def _traced(spans: dict[str, Any]) -> bool:
    """The wrapped tool's SERVER span and its ancestors up to the consumer's have arrived."""
    add = next((s for s in spans.values() if s.name == "add" and s.kind == SERVER), None)
    if add is None or add.parent_id not in spans:
        return False
    return any(s.name == "ask_calc" and s.kind == SERVER for s in spans.values())


def _calculator() -> Any:
    @mesh.agent(name="calc-agent")
    class Calculator:
        pass

    @mesh.llm(system_prompt="You add numbers with the add tool.", provider="llm", filter=["add"])
    @mesh.tool(capability="ask_calc")
    async def ask_calc(question: str, llm: mesh.LlmAgent | None = None) -> dict[str, Any]:
        assert llm is not None
        answer = await llm(question)
        return {"answer": answer, "messages": llm.messages}

    return loaded(Calculator, ask_calc)


@contextlib.asynccontextmanager
async def _http_calc() -> AsyncIterator[str]:
    """The calc MCP server over streamable HTTP (uvicorn, a port bound before it starts)."""
    import uvicorn

    from tests.agents import calc_mcp_server

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    app = calc_mcp_server.server.streamable_http_app()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)


async def test_a_streamable_http_server_is_wrapped_too(wrap: Any, settings: Settings) -> None:
    async with _http_calc() as url:
        await wrap(mcp_server(name="calc-http", url=url, prefix="calc_"))
        async with connect(settings) as client:
            await client.view.wait_for(lambda v: v.has("calc_add"), WAIT)
            assert await client.call("calc_add", {"a": 4, "b": 5}) == {"result": 9}
            assert await client.call("calc_text_shout", {"text": "x"}) == {"result": "X!"}
            assert (await client.call("calc_whoami", {}))["pid"] == os.getpid()


async def test_a_server_that_cannot_start_is_a_clear_error(settings: Settings) -> None:
    agent = McpAgent(mcp_server(name="nothing", command=["/nonexistent/mcp-server"]), settings)
    with pytest.raises(RuntimeError) as info:
        await agent.start()
    assert str(info.value) == (
        "MCP server 'nothing' (/nonexistent/mcp-server): FileNotFoundError: "
        "[Errno 2] No such file or directory: '/nonexistent/mcp-server'"
    )


def test_declaration_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="give either command"):
        mcp_server(name="x")
    with pytest.raises(ValueError, match="give either command"):
        mcp_server(name="x", command=["a"], url="http://h/mcp")
    with pytest.raises(ValueError, match="url must start with http"):
        mcp_server(name="x", url="ftp://h")
    with pytest.raises(ValueError, match="agent name"):
        mcp_server(name="bad name", command="server")
    assert mcp_server(name="fs", command="npx -y server /tmp").command == (
        "npx",
        "-y",
        "server",
        "/tmp",
    )


def test_capabilities_are_nats_safe() -> None:
    assert capability_for("read.file") == "read_file"
    assert capability_for("get weather/now", "w_") == "w_get_weather_now"
    assert capability_for("ok-name_1") == "ok-name_1"
