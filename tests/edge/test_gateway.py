"""The HTTP gateway over real HTTP: uvicorn on a free port, httpx, a real mesh behind it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from natsmesh import wire
from natsmesh.client import MeshClient
from natsmesh.config import Settings
from natsmesh.edge import openapi
from natsmesh.edge.faces import Face, optional_faces
from natsmesh.edge.gateway import GatewayConfig, build_app
from natsmesh.edge.http_errors import STATUS
from natsmesh.edge.serving import bind, running, url_of
from natsmesh.errors import ERROR_TYPES
from natsmesh.loader import import_file, load_file
from natsmesh.registry import open_bucket
from natsmesh.session import connect
from natsmesh.tracing import tree
from natsmesh.tracing.context import format_traceparent, new_span_id, new_trace_id
from natsmesh.tracing.context import parse_traceparent as parse_tp
from natsmesh.tracing.store import read_trace
from tests.helpers import TEST_AGENTS, SpanTap

STREAM_AGENT = TEST_AGENTS / "stream_agent.py"
SSE = {"accept": "text/event-stream"}
SERVER, CLIENT = 1, 2


@pytest.fixture
def agent_module() -> ModuleType:
    return import_file(STREAM_AGENT)


class Gateway:
    def __init__(self, url: str, client: MeshClient) -> None:
        self.url = url
        self.client = client
        self.http = httpx.AsyncClient(base_url=url, timeout=10)


@pytest.fixture
async def serve_gateway(start_agents, settings: Settings):
    """Start the stream agent in-process, then gateways over a traced client."""
    await start_agents(load_file(STREAM_AGENT))
    stack: list[Any] = []

    async def serve(config: GatewayConfig | None = None, faces: list[Face] = ()) -> Gateway:
        cm = connect(settings, caller="gateway", tracing=True)
        client = await cm.__aenter__()
        stack.append(cm)
        await client.view.wait_for(lambda v: len(v.records) >= 1, timeout=5)
        sock = bind("127.0.0.1", 0)
        server = running(build_app(client, config, faces), sock)
        await server.__aenter__()
        stack.append(server)
        gateway = Gateway(url_of(sock), client)
        stack.append(gateway.http)
        return gateway

    yield serve
    for cm in reversed(stack):
        await cm.__aexit__(None, None, None)


@pytest.fixture
async def gw(serve_gateway) -> Gateway:
    return await serve_gateway()


async def events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event, JSON data) pairs of a Server-Sent Events response."""
    name = None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            assert name is not None
            yield name, json.loads(line[6:])
            name = None


# --- health, tools, OpenAPI ---------------------------------------------------------------


async def test_health_and_readiness(serve_gateway, settings: Settings) -> None:
    gw = await serve_gateway()
    assert (await gw.http.get("/healthz")).json() == {"status": "ok"}
    ready = await gw.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "nats": "connected", "instances": 1, "tools": 4}
    await gw.client.nc.close()
    not_ready = await gw.http.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["nats"] == "closed"
    assert (await gw.http.get("/healthz")).status_code == 200


async def test_tools_and_openapi_follow_the_registry(gw: Gateway, start_agents) -> None:
    tools = {t["name"]: t for t in (await gw.http.get("/tools")).json()["tools"]}
    assert set(tools) == {"add", "count", "hold", "wait"}
    add = tools["add"]
    assert add["agents"] == ["stream-agent"] and add["instances"] == 1 and add["tags"] == ["math"]
    assert add["input_schema"]["required"] == ["a"] and add["stream"] is False
    assert tools["count"]["stream"] is True
    assert (await gw.http.get("/tools/add")).json() == add
    missing = await gw.http.get("/tools/echo")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "no_provider"

    doc = (await gw.http.get("/openapi.json")).json()
    validate(doc)  # a valid OpenAPI 3.1 document, every $ref resolvable
    assert doc["openapi"] == "3.1.0" and "security" not in doc
    assert set(doc["paths"]) == {
        "/tools",
        "/tools/add",
        "/tools/count",
        "/tools/hold",
        "/tools/wait",
    }
    post = doc["paths"]["/tools/add"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["properties"]["a"] == {
        "title": "A",
        "type": "integer",
    }
    sums = post["requestBody"]["content"]["application/json"]["schema"]["properties"]["sums"]
    assert sums["anyOf"][0]["items"] == {"$ref": "#/components/schemas/add.Sum"}
    result = post["responses"]["200"]["content"]["application/json"]["schema"]
    assert result["properties"]["total"]["type"] == "integer"
    assert set(post["responses"]) == {"200", "400", "404", "413", "422", "502", "503", "504"}
    assert (
        "text/event-stream" in doc["paths"]["/tools/count"]["post"]["responses"]["200"]["content"]
    )

    # an agent arrives: its tool is listed and gets a path; it leaves: both go
    [echo] = await start_agents(load_file(TEST_AGENTS / "echo_agent.py"))
    await gw.client.view.wait_for(lambda v: len(v.records) == 2, timeout=5)
    assert "echo" in {t["name"] for t in (await gw.http.get("/tools")).json()["tools"]}
    doc = (await gw.http.get("/openapi.json")).json()
    validate(doc)
    assert "/tools/echo" in doc["paths"]
    await echo.stop()
    await gw.client.view.wait_for(lambda v: len(v.records) == 1, timeout=5)
    assert "/tools/echo" not in (await gw.http.get("/openapi.json")).json()["paths"]
    assert "echo" not in {t["name"] for t in (await gw.http.get("/tools")).json()["tools"]}


def test_openapi_hoists_nested_definitions_and_keeps_the_newest_version() -> None:
    def record(version: str, schema: dict[str, Any]) -> wire.AgentRecord:
        tool = wire.ToolRecord("t", "t", version=version, input_schema=schema)
        return wire.AgentRecord("a", f"a-{version}", "1", "", "h", 1, 0.0, tools=(tool,))

    nested = {
        "$defs": {"X": {"type": "object", "properties": {"y": {"$ref": "#/$defs/Y"}}}, "Y": {}},
        "properties": {"x": {"$ref": "#/$defs/X"}},
    }
    tools = openapi.catalog([record("1.0.0", {}), record("1.10.0", nested), record("1.9", {})])
    assert tools[0]["version"] == "1.10.0" and tools[0]["instances"] == 3
    doc = openapi.document(tools, "0", secured=True)
    validate(doc)
    schemas = doc["components"]["schemas"]
    assert schemas["t.X"]["properties"]["y"] == {"$ref": "#/components/schemas/t.Y"}
    body = doc["paths"]["/tools/t"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"properties": {"x": {"$ref": "#/components/schemas/t.X"}}}
    assert doc["security"] == [{"bearer": []}]


# --- calls and errors ----------------------------------------------------------------------


async def test_json_call_with_tags_version_and_timeout(gw: Gateway) -> None:
    response = await gw.http.post("/tools/add", json={"a": 2, "b": 3})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"total": 5, "parts": [2, 3]}
    empty = await gw.http.post("/tools/count", content=b"")  # no body: the defaults
    assert empty.json() == [0, 1, 2]  # a streaming tool's collected result
    ok = await gw.http.post(
        "/tools/add", params={"tags": "math", "version": ">=1.0"}, json={"a": 1}
    )
    assert ok.json()["total"] == 1
    # `+` preferred, whether URL-encoded or not (a bare `+` arrives as a space)
    assert (await gw.http.post("/tools/add?tags=+fast", json={"a": 1})).status_code == 200
    assert (await gw.http.post("/tools/add?tags=%2Bfast", json={"a": 1})).status_code == 200
    for params in ({"tags": "-math"}, {"tags": "fast"}, {"version": ">=2"}):
        refused = await gw.http.post("/tools/add", params=params, json={"a": 1})
        assert refused.status_code == 404, params
        assert refused.json()["error"]["type"] == "no_provider"
    started = time.monotonic()
    late = await gw.http.post("/tools/wait", params={"timeout": "0.3"}, json={"key": "late"})
    assert late.status_code == 504 and late.json()["error"]["type"] == "timeout"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"version": "newest"}, "bad query parameter: version constraint 'newest'"),
        ({"timeout": "soon"}, "bad query parameter: could not convert"),
        ({"timeout": "-1"}, "bad query parameter: timeout must be a positive"),
    ],
)
async def test_bad_query_parameters_are_400(gw: Gateway, params: dict, message: str) -> None:
    response = await gw.http.post("/tools/add", params=params, json={"a": 1})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(message)


async def test_mesh_errors_map_to_http_statuses(gw: Gateway, settings: Settings) -> None:
    def error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()["error"]
        assert body["type"] == error_type and body["message"]
        return body

    invalid = error(await gw.http.post("/tools/add", json={"a": "x"}), 422, "invalid_arguments")
    assert invalid["details"]["errors"][0]["field"] == "a"
    raised = error(await gw.http.post("/tools/add", json={"a": -1}), 502, "tool_error")
    assert raised["message"] == "ValueError: a must not be negative"
    error(await gw.http.post("/tools/nope", json={}), 404, "no_provider")
    error(await gw.http.get("/nowhere"), 404, "not_found")
    wrong = error(await gw.http.put("/tools/add", json={}), 405, "method_not_allowed")
    assert wrong["message"] == "PUT /tools/add: method not allowed"
    # a provider in the registry with no live instance: unavailable
    kv = await open_bucket(gw.client.nc.jetstream(), settings)
    ghost = wire.AgentRecord(
        "ghost-agent", "ghost-agent-1", "1.0.0", "", "h", 1, time.time(),
        tools=(wire.ToolRecord("haunt", "haunt"),), protocol=2,
    )  # fmt: skip
    await kv.put("ghost-agent.ghost-agent-1", wire.encode_record(ghost))
    await gw.client.view.wait_for(lambda v: v.has("haunt"), timeout=5)
    error(await gw.http.post("/tools/haunt", json={}), 503, "unavailable")
    # larger than the NATS server accepts, smaller than the gateway's limit: the mesh refuses
    big = {"a": 1, "pad": "x" * (gw.client.nc.max_payload + 10)}
    error(await gw.http.post("/tools/add", json=big), 413, "payload_too_large")


def test_every_mesh_error_type_has_its_status() -> None:
    assert set(ERROR_TYPES) | {"cancelled"} <= set(STATUS)
    assert STATUS == {
        "invalid_arguments": 422,
        "no_provider": 404,
        "unavailable": 503,
        "timeout": 504,
        "tool_error": 502,
        "payload_too_large": 413,
        "cancelled": 503,
        "tag_mismatch": 503,
    }


async def test_malformed_and_oversized_bodies(serve_gateway) -> None:
    gw = await serve_gateway(GatewayConfig(max_body=200))
    malformed = await gw.http.post("/tools/add", content=b'{"a": 1,')
    assert malformed.status_code == 400
    message = malformed.json()["error"]["message"]
    assert message.startswith("malformed JSON body: ") and "\n" not in message
    listed = await gw.http.post("/tools/add", json=[1, 2])
    assert listed.status_code == 400 and "JSON object" in listed.json()["error"]["message"]
    large = await gw.http.post("/tools/add", json={"a": 1, "pad": "x" * 300})
    assert large.status_code == 413 and large.json()["error"]["type"] == "payload_too_large"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        yield b'{"a": 1, "pad": "'
        for _ in range(10):
            yield b"x" * 50
        yield b'"}'

    streamed = await gw.http.post("/tools/add", content=chunked())
    assert streamed.status_code == 413
    assert (await gw.http.post("/tools/add", json={"a": 4})).json()["total"] == 4


async def test_bearer_tokens(serve_gateway) -> None:
    gw = await serve_gateway(GatewayConfig(tokens=("s3cret", "other")))
    missing = await gw.http.get("/tools")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="natsmesh"'
    assert missing.json()["error"]["type"] == "unauthorized"
    wrong = await gw.http.post("/tools/add", json={"a": 1}, headers={"authorization": "Bearer x"})
    assert wrong.status_code == 401 and "invalid_token" in wrong.headers["www-authenticate"]
    basic = await gw.http.get("/tools", headers={"authorization": "Basic czNjcmV0"})
    assert basic.status_code == 401
    for token in ("s3cret", "other"):
        ok = await gw.http.post(
            "/tools/add", json={"a": 1}, headers={"authorization": f"Bearer {token}"}
        )
        assert ok.status_code == 200
    assert (await gw.http.get("/healthz")).status_code == 200
    assert (await gw.http.get("/readyz")).status_code == 200
    doc = (await gw.http.get("/openapi.json", headers={"authorization": "Bearer s3cret"})).json()
    assert doc["security"] == [{"bearer": []}]


async def test_cors_for_configured_origins(serve_gateway) -> None:
    app = "https://app.example"
    gw = await serve_gateway(GatewayConfig(tokens=("t",), cors_origins=(app,)))
    preflight = await gw.http.options(
        "/tools/add",
        headers={
            "origin": app,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, traceparent",
        },
    )
    assert preflight.status_code == 200  # no token needed for a preflight
    assert preflight.headers["access-control-allow-origin"] == app
    call = await gw.http.post(
        "/tools/add", json={"a": 1}, headers={"origin": app, "authorization": "Bearer t"}
    )
    assert call.status_code == 200 and call.headers["access-control-allow-origin"] == app
    assert "x-trace-id" in call.headers["access-control-expose-headers"]
    other = await gw.http.post(
        "/tools/add",
        json={"a": 1},
        headers={"origin": "https://evil.example", "authorization": "Bearer t"},
    )
    assert "access-control-allow-origin" not in other.headers
    plain = await serve_gateway(GatewayConfig())
    quiet = await plain.http.post("/tools/add", json={"a": 1}, headers={"origin": app})
    assert "access-control-allow-origin" not in quiet.headers


def test_the_listening_socket_sends_small_writes_at_once() -> None:
    import socket

    sock = bind("127.0.0.1", 0)  # accepted connections inherit TCP_NODELAY (no 40 ms stalls)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()


def test_config_from_env_binds_loopback_without_tokens() -> None:
    assert GatewayConfig.from_env({}).bind_host == "127.0.0.1"
    config = GatewayConfig.from_env(
        {"NATSMESH_GATEWAY_TOKENS": "a, b,,", "NATSMESH_GATEWAY_PORT": "9000"}, tokens=["c,a"]
    )
    assert config.tokens == ("a", "b", "c") and config.port == 9000
    assert config.bind_host == "0.0.0.0"
    assert GatewayConfig.from_env({}, host="::1", tokens=["t"]).bind_host == "::1"
    assert GatewayConfig.from_env({"NATSMESH_GATEWAY_PORT": "0"}).port == 0
    with pytest.raises(ValueError, match="NATSMESH_GATEWAY_MAX_BODY must be a whole number"):
        GatewayConfig.from_env({"NATSMESH_GATEWAY_MAX_BODY": "1e6"})


async def test_faces_are_mounted_and_can_be_public(serve_gateway) -> None:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    started: list[str] = []

    class Lifespan:
        async def __aenter__(self) -> None:
            started.append("up")

        async def __aexit__(self, *exc: object) -> None:
            started.append("down")

    async def metrics(request: Any) -> PlainTextResponse:
        return PlainTextResponse("calls_total 1\n")

    face = Face(routes=[Route("/metrics", metrics)], lifespan=Lifespan, public=["/metrics"])
    gw = await serve_gateway(GatewayConfig(tokens=("t",)), [face])
    assert started == ["up"]
    assert (await gw.http.get("/metrics")).text == "calls_total 1\n"
    assert (await gw.http.get("/tools")).status_code == 401


# --- Server-Sent Events ---------------------------------------------------------------------


async def test_sse_stream_is_read_to_its_end(gw: Gateway) -> None:
    async with gw.http.stream("POST", "/tools/count", json={"n": 3}, headers=SSE) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert parse_tp(response.headers["traceparent"]) is not None
        got = [e async for e in events(response)]
    assert got == [("chunk", 0), ("chunk", 1), ("chunk", 2), ("result", [0, 1, 2])]


async def test_sse_error_after_chunks_is_an_error_event(gw: Gateway) -> None:
    body = {"n": 5, "fail_at": 2}
    async with gw.http.stream("POST", "/tools/count", json=body, headers=SSE) as response:
        got = [e async for e in events(response)]
    assert got[:2] == [("chunk", 0), ("chunk", 1)]
    assert got[2][0] == "error" and got[2][1]["type"] == "tool_error" and len(got) == 3


async def test_sse_of_a_plain_tool_and_errors_before_the_first_event(gw: Gateway) -> None:
    async with gw.http.stream("POST", "/tools/add", json={"a": 1}, headers=SSE) as response:
        assert response.status_code == 200
        got = [e async for e in events(response)]
    assert got == [("result", {"total": 1, "parts": [1, 0]})]
    # nothing was streamed yet: an ordinary JSON error with its status
    missing = await gw.http.post("/tools/nope", json={}, headers=SSE)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "no_provider"
    invalid = await gw.http.post("/tools/add", json={"a": "x"}, headers=SSE)
    assert invalid.status_code == 422


async def test_a_silent_stream_sends_keep_alives(serve_gateway, agent_module) -> None:
    gw = await serve_gateway(GatewayConfig(sse_keepalive=0.05))
    key = f"quiet-{new_span_id()}"
    body = {"key": key, "chunks": 1, "seconds": 0.5}
    async with gw.http.stream("POST", "/tools/hold", json=body, headers=SSE) as response:
        lines = [line async for line in response.aiter_lines()]
    assert lines[:3] == ["event: chunk", "data: 0", ""]
    assert lines.count(": keep-alive") >= 2  # 0.5 s of silence, a comment every 0.05 s
    assert lines[-3:] == ["event: result", "data: [0]", ""]
    # silent from the start: a keep-alive begins the stream (a plain tool's result follows)
    body = {"key": f"w-{key}", "seconds": 0.3}
    async with gw.http.stream("POST", "/tools/wait", json=body, headers=SSE) as response:
        assert response.status_code == 200
        lines = [line async for line in response.aiter_lines()]
    assert lines[0] == ": keep-alive" and lines[-3:] == ["event: result", 'data: "done"', ""]


# --- disconnects cancel the work ------------------------------------------------------------


async def test_disconnect_mid_stream_cancels_the_workers_task(
    gw: Gateway, agent_module: ModuleType
) -> None:
    key = f"sse-{new_span_id()}"
    body = {"key": key, "chunks": 2}
    async with gw.http.stream("POST", "/tools/hold", json=body, headers=SSE) as response:
        seen = []
        async for item in events(response):
            seen.append(item)
            if len(seen) == 2:
                break
    assert seen == [("chunk", 0), ("chunk", 1)]
    await asyncio.wait_for(agent_module.event(key).wait(), 5)
    assert key in agent_module.cancelled


async def test_disconnect_during_a_call_cancels_the_workers_task(
    gw: Gateway, agent_module: ModuleType
) -> None:
    key = f"json-{new_span_id()}"
    request = asyncio.create_task(gw.http.post("/tools/wait", json={"key": key}))
    await asyncio.wait_for(agent_module.event(f"{key}:started").wait(), 5)
    request.cancel()  # httpx closes the connection
    with pytest.raises(asyncio.CancelledError):
        await request
    await asyncio.wait_for(agent_module.event(key).wait(), 5)
    assert key in agent_module.cancelled


async def test_disconnect_ends_the_gateway_span_as_cancelled(
    gw: Gateway, agent_module: ModuleType, settings: Settings
) -> None:
    trace_id = new_trace_id()
    sub = await SpanTap.open(gw.client.nc, settings.prefix, trace_id)
    key = f"gone-{new_span_id()}"
    headers = {"traceparent": format_traceparent(trace_id, new_span_id())}
    request = asyncio.create_task(gw.http.post("/tools/wait", json={"key": key}, headers=headers))
    await asyncio.wait_for(agent_module.event(f"{key}:started").wait(), 5)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    while True:
        span = await sub.next()
        if span.kind == SERVER and span.service == "gateway":
            break
    assert span.attrs["http.response.status_code"] == 499
    assert span.status == 2 and span.attrs["error.type"] == "cancelled"


# --- tracing ---------------------------------------------------------------------------------


async def test_a_gateway_call_is_one_tree_continuing_the_clients_trace(
    gw: Gateway, settings: Settings
) -> None:
    trace_id, root = new_trace_id(), new_span_id()
    sub = await SpanTap.open(gw.client.nc, settings.prefix, trace_id)
    headers = {"traceparent": format_traceparent(trace_id, root), "tracestate": "k=v"}
    response = await gw.http.post("/tools/add", json={"a": 1}, headers=headers)
    assert response.status_code == 200
    assert response.headers["x-trace-id"] == trace_id
    returned = parse_tp(response.headers["traceparent"])
    assert returned is not None and returned.trace_id == trace_id and returned.span_id != root
    spans = await sub.take(3)
    await sub.close()
    by_kind = {(s.kind, s.service): s for s in spans}
    http = by_kind[(SERVER, "gateway")]
    call = by_kind[(CLIENT, "gateway")]
    tool = by_kind[(SERVER, "stream-agent")]
    assert http.parent_id == root and http.span_id == returned.span_id
    assert call.parent_id == http.span_id and tool.parent_id == call.span_id
    assert http.name == "POST /tools/add" and http.attrs["http.response.status_code"] == 200
    # the stored trace, as `natsmesh trace` reads it, is one tree under the gateway's span
    stored = await read_trace(gw.client.nc, settings, trace_id)
    assert sorted(s.span_id for s in stored) == sorted(s.span_id for s in spans)
    lines = tree.render(trace_id, stored).splitlines()
    assert lines[1].startswith("└─ POST /tools/add (gateway) [")
    assert lines[2].startswith("   └─ add (stream-agent) [") and lines[2].endswith("✓")
    assert len(lines) == 4


async def test_without_a_traceparent_the_gateway_starts_a_trace(
    gw: Gateway, settings: Settings
) -> None:
    response = await gw.http.post("/tools/add", json={"a": -1})
    assert response.status_code == 502
    trace_id = response.headers["x-trace-id"]
    sub = await SpanTap.open(gw.client.nc, settings.prefix, trace_id)
    found = {s.span_id: s for s in await read_trace(gw.client.nc, settings, trace_id)}
    while len(found) < 3:  # the rest may still be on the way
        span = await sub.next()
        found[span.span_id] = span
    spans = list(found.values())
    http = next(s for s in spans if s.service == "gateway" and s.kind == SERVER)
    assert http.parent_id is None and http.status == 2
    assert http.attrs["error.type"] == "tool_error"
    assert http.attrs["http.response.status_code"] == 502


async def test_optional_faces_are_found_by_module(serve_gateway, monkeypatch) -> None:
    """The seam for the MCP face and the dashboard: a module with the factory is enough."""
    import sys
    from types import SimpleNamespace

    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    log: list[str] = []

    class McpLike:  # an ASGI app with its own lifespan, like the MCP face's
        def __init__(self, client: MeshClient) -> None:
            self.client = client

        def lifespan(self) -> Any:
            class Span:
                async def __aenter__(self) -> None:
                    log.append("mcp up")

                async def __aexit__(self, *exc: object) -> None:
                    log.append("mcp down")

            return Span()

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await PlainTextResponse(f"mcp {scope['method']} {scope['path']}")(scope, receive, send)

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("dashboard")

    monkeypatch.setitem(
        sys.modules, "natsmesh.edge.mcp_server", SimpleNamespace(mcp_asgi_app=McpLike)
    )
    monkeypatch.setitem(
        sys.modules,
        "natsmesh.edge.dashboard",
        SimpleNamespace(dashboard_routes=lambda client: [Route("/", home), Route("/tools", home)]),
    )
    probe = await serve_gateway()
    gw = await serve_gateway(faces=optional_faces(probe.client))
    assert log == ["mcp up"]
    assert (await gw.http.post("/mcp")).text == "mcp POST /mcp"
    assert (await gw.http.get("/mcp/x")).text == "mcp GET /mcp/x"
    assert (await gw.http.get("/")).text == "dashboard"
    assert "tools" in (await gw.http.get("/tools")).json()  # a face cannot shadow the gateway


async def test_the_dashboard_is_served_when_installed(serve_gateway) -> None:
    """The real dashboard module, found by the gateway's faces, at ``/`` and ``/metrics``."""
    pytest.importorskip("natsmesh.edge.dashboard")
    probe = await serve_gateway()
    gw = await serve_gateway(faces=optional_faces(probe.client))
    home = await gw.http.get("/")
    assert home.status_code == 200 and "text/html" in home.headers["content-type"]
    metrics = await gw.http.get("/metrics")
    assert metrics.status_code == 200 and "text/plain" in metrics.headers["content-type"]
    assert (await gw.http.get("/tools")).json()["tools"]  # the gateway's own route still wins
