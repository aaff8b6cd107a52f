"""The mesh as an MCP server, driven by the mcp SDK's own ClientSession: over stdio
(``natsmesh mcp`` as Claude Desktop runs it) and over streamable HTTP (the ASGI app mounted
in Starlette and served by uvicorn, as the gateway does), in both protocol eras."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import listen
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from natsmesh.config import Settings
from natsmesh.edge.mcp_server import mcp_asgi_app
from natsmesh.edge.mcp_tools import Expose, mesh_tools, output_schema
from natsmesh.loader import collect, load_file
from natsmesh.session import connect
from natsmesh.tracing.context import new_span_id, new_trace_id
from natsmesh.wire import ToolRecord
from tests.agents import mcp_stream_agent as stream_agent
from tests.conftest import env_for, mesh_settings
from tests.helpers import TEST_AGENTS, SpanTap, eventually

NATSMESH = str(Path(sys.executable).parent / "natsmesh")
TRIP_AGENTS = (
    "user_prefs_agent",
    "flight_agent",
    "hotel_agent",
    "weather_agent",
    "poi_agent",
    "claude_provider",
    "planner_agent",
)
WAIT = 15.0
SERVER, CLIENT = 1, 2


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "NATSMESH_CLAUDE_MODEL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def settings(nats_server: Any) -> Settings:
    """A call timeout well past WAIT, so that no deadline passes for a cancellation."""
    return mesh_settings(nats_server.url, timeout=60.0)


@pytest.fixture
def streamer() -> Any:
    """The stream agent, loaded from the module the test can see (fresh events per test)."""
    stream_agent.STARTED = asyncio.Event()
    stream_agent.CANCELLED = asyncio.Event()
    return collect(stream_agent)


class Mcp:
    """One MCP client connection and a way to wait for ``tools/list`` changes."""

    def __init__(self, session: ClientSession, mode: str, changes: asyncio.Queue[Any]) -> None:
        self.session = session
        self.mode = mode
        self.changes = changes

    async def names(self) -> list[str]:
        return [t.name for t in (await self.session.list_tools()).tools]

    async def lists(self, *names: str) -> None:
        """Wait until these tools are listed (the server's view of the registry may lag
        the test's for a moment)."""

        async def listed() -> bool:
            return set(names) <= set(await self.names())

        await eventually(listed, WAIT, f"{', '.join(names)} to be listed")

    @contextlib.asynccontextmanager
    async def change(self) -> AsyncIterator[None]:
        """Expect one tool-list change caused by the block."""
        if self.mode == "http-2026":
            async with listen(self.session, tools_list_changed=True) as sub:
                yield
                event = await asyncio.wait_for(anext(sub), WAIT)
                assert type(event).__name__ == "ToolsListChanged"
            return
        while not self.changes.empty():
            self.changes.get_nowait()
        yield
        note = await asyncio.wait_for(self.changes.get(), WAIT)
        assert isinstance(note, types.ToolListChangedNotification)


def _handler(queue: asyncio.Queue[Any], garbage: list[Exception] | None = None) -> Any:
    async def handle(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            await queue.put(message)
        elif isinstance(message, Exception) and garbage is not None:
            garbage.append(message)  # a stdout line that is not JSON-RPC

    return handle


@contextlib.asynccontextmanager
async def stdio_mcp(
    settings: Settings, *args: str, garbage: list[Exception] | None = None, **env: str
) -> AsyncIterator[Mcp]:
    """``natsmesh mcp ARGS`` as a child process, as Claude Desktop starts it."""
    params = StdioServerParameters(
        command=NATSMESH, args=["mcp", *args], env=env_for(settings) | env
    )
    queue: asyncio.Queue[Any] = asyncio.Queue()
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, message_handler=_handler(queue, garbage)) as session,
    ):
        await session.initialize()
        yield Mcp(session, "stdio", queue)


class _GetStreamOpen(logging.Handler):
    """Sees the SDK client log that its standing GET stream (for server notifications) is open."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.open = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "GET SSE connection established":
            self.loop.call_soon_threadsafe(self.open.set)


@contextlib.asynccontextmanager
async def http_mcp(url: str, mode: str) -> AsyncIterator[Mcp]:
    """A ClientSession over streamable HTTP: the handshake era, or 2026-07-28 (discover)."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    watcher = _GetStreamOpen()
    client_log = logging.getLogger("mcp.client.streamable_http")
    client_log.addHandler(watcher)
    level = client_log.level
    client_log.setLevel(logging.DEBUG)
    try:
        async with (
            streamable_http_client(url) as (read, write),
            ClientSession(read, write, message_handler=_handler(queue)) as session,
        ):
            if mode == "http-2026":
                await session.discover()
            else:
                await session.initialize()
                # list_changed rides the standing GET stream: wait until it is open
                await asyncio.wait_for(watcher.open.wait(), WAIT)
            yield Mcp(session, mode, queue)
    finally:
        client_log.removeHandler(watcher)
        client_log.setLevel(level)


@contextlib.asynccontextmanager
async def serve_http(settings: Settings, apps: list[Any] | None = None) -> AsyncIterator[str]:
    """The MCP app mounted at /mcp in a Starlette app under uvicorn, on a free port."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    async with connect(settings, caller="mcp", tracing=True) as client:
        mcp_app = mcp_asgi_app(client)
        if apps is not None:
            apps.append(mcp_app)

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            async with mcp_app.lifespan():
                yield

        app = Starlette(routes=[Mount("/mcp", app=mcp_app)], lifespan=lifespan)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))  # the port is ours before uvicorn starts: no race
        sock.listen(128)
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, WAIT)


@pytest.fixture(params=["stdio", "http", "http-2026"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def open_mcp(mode: str, settings: Settings) -> AsyncIterator[Any]:
    """``open_mcp()``: an MCP connection of this test's mode to the test's mesh."""
    if mode == "stdio":
        yield lambda: stdio_mcp(settings)
        return
    async with serve_http(settings) as url:
        yield lambda: http_mcp(url, mode)


async def _spans(nc: Any, settings: Settings, trace_id: str, done: Any) -> list[Any]:
    sub = await SpanTap.open(nc, settings.prefix, trace_id)
    spans: list[Any] = []
    try:
        async with asyncio.timeout(WAIT):
            while not done(spans):
                spans.append(await sub.next(WAIT))
    except TimeoutError:
        raise AssertionError(
            f"spans so far: {[(x.name, x.kind, x.service) for x in spans]}"
        ) from None
    finally:
        await sub.close()
    return spans


async def test_lists_and_calls_the_trip_planner(
    start_agents: Any, settings: Settings, open_mcp: Any
) -> None:
    await start_agents(*TRIP_AGENTS)
    trace_id, root = new_trace_id(), new_span_id()
    async with connect(settings) as mesh, open_mcp() as mcp:
        await mesh.view.wait_for(lambda v: len(v.records) == len(TRIP_AGENTS), WAIT)
        await mcp.lists("plan_trip")
        listing = {t.name: t for t in (await mcp.session.list_tools()).tools}
        assert {"plan_trip", "flight_search", "hotel_search", "get_weather"} <= set(listing)
        assert "claude_provider" not in listing  # LLM providers are not MCP tools
        record = next(
            t for r in mesh.view.records.values() for t in r.tools if t.name == "plan_trip"
        )
        plan = listing["plan_trip"]
        assert plan.input_schema == record.input_schema
        assert plan.description == record.description
        hotels = listing["hotel_search"]
        assert hotels.output_schema == {"type": "object", "additionalProperties": True}

        spans = asyncio.ensure_future(
            _spans(mesh.nc, settings, trace_id, _planned(record.capability))
        )
        await asyncio.sleep(0)  # subscribed before the call
        progress: list[str | None] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(message)

        parent = SpanContext(int(trace_id, 16), int(root, 16), False, TraceFlags(1))
        with trace.use_span(NonRecordingSpan(parent)):  # the SDK sends it as _meta.traceparent
            result = await mcp.session.call_tool(
                "plan_trip",
                {"destination": "Kyoto", "dates": "June 1-5", "budget": "$2000"},
                progress_callback=on_progress,
            )
        assert not result.is_error, result.content
        text = result.content[0].text  # type: ignore[union-attr]
        assert "Kyoto" in text
        assert progress  # plan_trip streams: its chunks came as progress notifications
        found_hotels = await mcp.session.call_tool("hotel_search", {"destination": "Kyoto"})
        assert found_hotels.structured_content["destination"] == "Kyoto"  # type: ignore[index]
        assert json.loads(found_hotels.content[0].text) == found_hotels.structured_content  # type: ignore[union-attr]
        # all in the MCP client's trace (the subject has its id): the request's span ->
        # the SDK's MCP server span -> the mesh CLIENT span -> the planner's SERVER span
        found = {x.span_id: x for x in await spans}
        server = next(x for x in found.values() if x.name == "plan_trip" and x.kind == SERVER)
        hop = found[server.parent_id]
        assert hop.kind == CLIENT and hop.service == "mcp"
        assert hop.name == f"call {record.capability}"
        request = found[hop.parent_id]
        assert request.name == "tools/call plan_trip" and request.service == "mcp"
        assert request.kind == SERVER and request.parent_id is not None


def _planned(capability: str) -> Any:
    """Done when the planner's SERVER span, the mcp process's CLIENT span and the SDK's
    span of the MCP request have arrived."""

    def done(spans: list[Any]) -> bool:
        names = {(s.name, s.kind) for s in spans}
        return {
            ("plan_trip", SERVER),
            (f"call {capability}", CLIENT),
            ("tools/call plan_trip", SERVER),
        } <= names

    return done


async def test_without_spans_of_its_own_the_call_still_continues_the_trace(
    start_agents: Any, settings: Settings
) -> None:
    await start_agents(load_file(TEST_AGENTS / "echo_agent.py"))
    trace_id, root = new_trace_id(), new_span_id()
    async with connect(settings) as mesh, stdio_mcp(settings, "--no-tracing") as mcp:
        await mcp.lists("echo")
        spans = asyncio.ensure_future(
            _spans(mesh.nc, settings, trace_id, lambda s: any(x.name == "echo" for x in s))
        )
        await asyncio.sleep(0)  # subscribed before the call
        parent = SpanContext(int(trace_id, 16), int(root, 16), False, TraceFlags(1))
        with trace.use_span(NonRecordingSpan(parent)):
            assert not (await mcp.session.call_tool("echo", {"text": "hi"})).is_error
        [echo] = [x for x in await spans if x.name == "echo"]
    assert echo.kind == SERVER and echo.service == "echo-agent"  # in the MCP client's trace


async def test_a_tool_appears_and_disappears(
    start_agents: Any, open_mcp: Any, streamer: Any
) -> None:
    async with open_mcp() as mcp:
        assert await mcp.names() == []
        async with mcp.change():
            [agent] = await start_agents(streamer)
        assert await mcp.names() == ["broken", "count", "sleepy"]
        async with mcp.change():
            await agent.stop()
        assert await mcp.names() == []


async def test_streamed_chunks_are_progress(
    start_agents: Any, open_mcp: Any, streamer: Any
) -> None:
    await start_agents(streamer)
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async with open_mcp() as mcp:
        await mcp.lists("count")
        result = await mcp.session.call_tool("count", {"n": 3}, progress_callback=on_progress)
        assert not result.is_error, result.content
    assert [m for _, _, m in progress] == ['{"i":0}', '{"i":1}', '{"i":2}']
    assert [p for p, _, _ in progress] == [1, 2, 3]


async def test_mesh_errors_are_tool_errors(start_agents: Any, open_mcp: Any, streamer: Any) -> None:
    await start_agents(streamer)
    async with open_mcp() as mcp:
        await mcp.lists("broken")
        broken = await mcp.session.call_tool("broken", {"text": "design"})
        assert broken.is_error
        assert [c.text for c in broken.content] == ["RuntimeError: broken by design"]  # type: ignore[union-attr]
        assert broken.meta is not None and broken.meta["natsmesh/error"]["type"] == "tool_error"
        invalid = await mcp.session.call_tool("broken", {"text": 3})
        assert invalid.is_error
        assert invalid.content[0].text == "invalid arguments: text: Input should be a valid string"  # type: ignore[union-attr]
        missing = await mcp.session.call_tool("no_such_tool", {})
        assert (
            missing.is_error and "no live mesh tool named 'no_such_tool'" in missing.content[0].text
        )  # type: ignore[union-attr]
        # the connection carries on
        assert "count" in await mcp.names()


async def test_cancelling_the_mcp_call_cancels_the_mesh_call(
    start_agents: Any, open_mcp: Any, streamer: Any
) -> None:
    await start_agents(streamer)
    async with open_mcp() as mcp:
        await mcp.lists("sleepy")
        call = asyncio.ensure_future(mcp.session.call_tool("sleepy", {"seconds": 60}))
        await asyncio.wait_for(stream_agent.STARTED.wait(), WAIT)
        call.cancel()  # the SDK sends notifications/cancelled
        await asyncio.wait_for(stream_agent.CANCELLED.wait(), WAIT)
        with pytest.raises(asyncio.CancelledError):
            await call


async def test_expose_filters_by_tag_and_name(
    start_agents: Any, settings: Settings, streamer: Any
) -> None:
    await start_agents(streamer, load_file(TEST_AGENTS / "echo_agent.py"), "hotel_agent")
    async with stdio_mcp(settings, "--tag", "test", "--exclude", "broken") as mcp:
        await mcp.lists("count", "echo", "sleepy")
        assert await mcp.names() == ["count", "echo", "sleepy"]
        refused = await mcp.session.call_tool("broken", {"text": "x"})
        assert refused.is_error and "is exposed here" in refused.content[0].text  # type: ignore[union-attr]
    async with stdio_mcp(settings, "--tool", "s*", "--tool", "hotel_search") as mcp:
        await mcp.lists("hotel_search", "sleepy")
        assert await mcp.names() == ["hotel_search", "sleepy"]
    async with stdio_mcp(settings, "--exclude-tag", "test") as mcp:
        await mcp.lists("hotel_search")
        assert await mcp.names() == ["hotel_search"]


async def test_stdout_carries_only_the_protocol(
    start_agents: Any, settings: Settings, streamer: Any
) -> None:
    await start_agents(streamer)
    garbage: list[Exception] = []
    async with stdio_mcp(settings, garbage=garbage, NATSMESH_DEBUG="true") as mcp:
        await mcp.lists("broken", "count", "sleepy")
        assert (await mcp.session.call_tool("broken", {"text": "x"})).is_error
        async with mcp.change():
            [echo] = await start_agents(load_file(TEST_AGENTS / "echo_agent.py"))
        assert not (await mcp.session.call_tool("echo", {"text": "x"})).is_error
        await echo.stop()
    assert garbage == []


async def test_closed_http_sessions_are_forgotten(settings: Settings) -> None:
    apps: list[Any] = []
    async with serve_http(settings, apps) as url:
        [app] = apps
        for _ in range(3):
            async with http_mcp(url, "http") as mcp:
                await mcp.names()
                assert len(app.face.sessions) == 1
            await eventually(lambda: not app.face.sessions, WAIT, "the session to be forgotten")


async def test_the_gateway_serves_mcp_behind_its_tokens(
    start_agents: Any, settings: Settings, streamer: Any
) -> None:
    import uvicorn
    from mcp.shared._httpx_utils import create_mcp_http_client

    from natsmesh.edge.faces import optional_faces
    from natsmesh.edge.gateway import GatewayConfig, build_app

    await start_agents(streamer)
    async with connect(settings, caller="gateway", tracing=True) as client:
        app = build_app(client, GatewayConfig(tokens=("s3cret",)), optional_faces(client))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
        try:
            headers = {"Authorization": "Bearer s3cret"}
            async with (
                create_mcp_http_client(headers=headers) as http,
                streamable_http_client(url, http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                mcp = Mcp(session, "http", asyncio.Queue())
                await mcp.lists("count")
                result = await session.call_tool("count", {"n": 2})
                assert not result.is_error, result.content
            async with create_mcp_http_client() as http:  # no token: refused
                refused = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert refused.status_code == 401
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, WAIT)


def _tool(name: str, tags: tuple[str, ...] = (), kind: str = "tool", **kw: Any) -> ToolRecord:
    return ToolRecord(
        name=name,
        capability=kw.pop("capability", name),
        version="1.0.0",
        tags=tags,
        description="",
        input_schema={"type": "object"},
        output_schema=kw.pop("output_schema", None),
        kind=kind,
    )


def test_expose_rules() -> None:
    travel = _tool("search_flights", ("travel",), capability="flight_search")
    beta = _tool("beta_tool", ("travel", "beta"))
    llm = _tool("claude", kind="llm_provider")
    assert Expose().allows(travel) and not Expose().allows(llm)
    assert Expose(tools=("flight_*",)).allows(travel)  # by capability
    assert Expose(tools=("search_*",)).allows(travel)  # by tool name
    assert not Expose(tools=("hotel_*",)).allows(travel)
    assert Expose(tags=("travel",)).allows(beta)
    assert not Expose(tags=("travel",), exclude_tags=("beta",)).allows(beta)
    assert not Expose(tags=("travel",), exclude_tools=("flight_search",)).allows(travel)


def test_output_schemas_are_objects() -> None:
    model = {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {}}}
    assert output_schema(model) == (model, False)
    assert output_schema(None) == (None, False)
    listed = {"type": "array", "items": {"$ref": "#/$defs/A"}, "$defs": {"A": {}}}
    assert output_schema(listed) == (
        {
            "type": "object",
            "properties": {"result": {"type": "array", "items": {"$ref": "#/$defs/A"}}},
            "required": ["result"],
            "$defs": {"A": {}},
        },
        True,
    )


def test_one_mcp_tool_per_capability() -> None:
    from natsmesh.wire import AgentRecord

    def agent(name: str, *tools: ToolRecord) -> AgentRecord:
        return AgentRecord(
            name=name,
            instance_id=f"{name}-1",
            version="1.0.0",
            description="",
            host="h",
            pid=1,
            started_at=0.0,
            tools=tools,
        )

    records = [
        agent("b-agent", _tool("translate"), _tool("zeta"), _tool("lookup", capability="geo")),
        agent("a-agent", _tool("translate_v2", capability="translate")),
        agent("c-agent", _tool("lookup", capability="dictionary")),
    ]
    tools = mesh_tools(records, Expose())
    # one tool per capability, named after the tool; a shared name gives way to capabilities
    assert list(tools) == ["dictionary", "geo", "translate_v2", "zeta"]
    assert tools["translate_v2"].tool.name == "translate_v2"
    assert tools["translate_v2"].capability == "translate"
    assert tools["geo"].capability == "geo"
