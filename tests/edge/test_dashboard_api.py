"""The dashboard's HTTP face: the call route (JSON and SSE), traces, the pushed event stream."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

import natsmesh as mesh
from natsmesh.config import Settings
from natsmesh.edge.dashboard import Dashboard, dashboard_routes
from natsmesh.session import connect
from tests.helpers import loaded
from tests.mesh.test_metrics import CheckAgent, check, serving


@mesh.agent(name="count-agent")
class CountAgent:
    pass


@mesh.tool(capability="count")
async def count(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


def events(text: str) -> list[tuple[str, Any]]:
    """The (event, data) pairs of a Server-Sent Events body."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


async def test_call_route_answers_json_errors_and_streams(start_agents, settings: Settings) -> None:
    await start_agents(loaded(CheckAgent, check))
    async with connect(settings, caller="dashboard", tracing=True) as client:
        await client.view.wait_for(lambda v: v.has("check"), 5)
        dashboard = Dashboard(client)
        async with serving(dashboard.app()) as url, httpx.AsyncClient(base_url=url) as http:
            ok = await http.post("/api/call/check", json={"n": 3})
            assert ok.status_code == 200
            assert ok.json()["result"] == {"n": 3}
            trace_id = ok.json()["trace_id"]

            failed = await http.post("/api/call/check", json={"n": 10})
            assert failed.status_code == 502
            assert failed.json()["error"]["type"] == "tool_error"
            assert "multiple of ten" in failed.json()["error"]["message"]

            invalid = await http.post("/api/call/check", json={"n": "three"})
            # the gateway's mapping: arguments that do not validate are 422
            assert (invalid.status_code, invalid.json()["error"]["type"]) == (
                422,
                "invalid_arguments",
            )
            missing = await http.post("/api/call/nothing_here", json={})
            assert (missing.status_code, missing.json()["error"]["type"]) == (404, "no_provider")
            json_type = {"Content-Type": "application/json"}
            for body in (b"[1, 2]", b"{not json"):
                bad = await http.post("/api/call/check", content=body, headers=json_type)
                assert bad.status_code == 400
                assert bad.json()["error"]["type"] == "invalid_arguments"
            # what another site's page could send: a simple form post, or a foreign origin
            plain = await http.post("/api/call/check", content=b'{"n": 1}')
            assert plain.status_code == 415
            foreign = await http.post(
                "/api/call/check", json={"n": 1}, headers={"Origin": "http://evil.example"}
            )
            assert foreign.status_code == 403
            same = await http.post("/api/call/check", json={"n": 1}, headers={"Origin": url})
            assert same.status_code == 200

            streamed = await http.post("/api/call/check?stream=1", json={"n": 7})
            assert streamed.headers["content-type"].startswith("text/event-stream")
            kinds = events(streamed.text)
            assert kinds[0][0] == "trace"
            assert kinds[-1] == (
                "result",
                {"result": {"n": 7}, "trace_id": kinds[0][1]["trace_id"]},
            )

            # the call's trace: the dashboard's root, its CLIENT hop and the tool's SERVER span
            await dashboard.feed.wait_until(
                lambda f: any(
                    t["trace_id"] == trace_id and t["all_spans"] >= 3
                    for t in dashboard.traces.recent()
                ),
                10,
            )
            trace = (await http.get(f"/api/traces/{trace_id}")).json()
            assert [s["kind"] for s in trace["spans"]] == [0, 2, 1]
            assert trace["complete"] is True
            [root] = trace["tree"]
            assert trace["spans"][2]["span_id"] == root["span_id"]
            assert (await http.get("/api/traces/xyz")).status_code == 400
            assert (await http.get(f"/api/traces/{'0' * 32}")).status_code == 404


async def test_a_streaming_tool_answers_with_its_chunks(start_agents, settings: Settings) -> None:
    await start_agents(loaded(CountAgent, count))
    async with connect(settings, caller="dashboard", tracing=True) as client:
        await client.view.wait_for(lambda v: v.has("count"), 5)
        async with serving(Dashboard(client).app()) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.post("/api/call/count", json={"n": 3})
    assert response.headers["content-type"].startswith("text/event-stream")
    got = events(response.text)
    assert [e for e, _ in got] == ["trace", "chunk", "chunk", "chunk", "result"]
    assert [d for e, d in got if e == "chunk"] == [0, 1, 2]
    assert got[-1][1]["result"] == [0, 1, 2]


async def test_event_stream_pushes_the_full_state_first(start_agents, settings: Settings) -> None:
    await start_agents(loaded(CheckAgent, check))
    async with connect(settings, caller="gateway") as client:
        await client.view.wait_for(lambda v: v.has("check"), 5)
        dashboard = Dashboard(client)
        async with serving(dashboard.app()) as url, httpx.AsyncClient(base_url=url) as http:
            async with http.stream("GET", "/api/events") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                seen: dict[str, Any] = {}
                buffer = ""
                async for text in response.aiter_text():
                    buffer += text
                    seen.update(events(buffer))
                    if {"topology", "traffic", "traces"} <= set(seen):
                        break
            [agent] = seen["topology"]["agents"]
            assert agent["name"] == "check-agent" and agent["health"] == "healthy"
            [tool] = seen["topology"]["tools"]
            assert tool["name"] == "check"
            assert tool["input_schema"]["properties"]["n"]["type"] == "integer"
            page = await http.get("/")
            assert page.status_code == 200 and "natsmesh" in page.text
            assert (await http.get("/ui/app.js")).status_code == 200


async def test_dashboard_routes_for_a_host_app(start_agents, settings: Settings) -> None:
    """What the gateway includes: routes, plus a lifespan that starts and stops the feed."""
    from starlette.applications import Starlette

    await start_agents(loaded(CheckAgent, check))
    async with connect(settings, caller="gateway", tracing=True) as client:
        await client.view.wait_for(lambda v: v.has("check"), 5)
        routes = dashboard_routes(client)
        paths = {getattr(r, "path", None) for r in routes}
        assert {"/", "/ui", "/metrics", "/api/events", "/api/call/{tool}"} <= paths

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with routes.lifespan():
                yield

        async with serving(Starlette(routes=list(routes), lifespan=lifespan)) as url:
            async with httpx.AsyncClient(base_url=url) as http:
                assert (await http.post("/api/call/check", json={"n": 1})).status_code == 200
            dashboard = routes.dashboard
            await dashboard.feed.wait_until(lambda f: f.received >= 3, 10)
            assert dashboard.metrics.edges[("gateway", "check-agent", "check")].calls == 1
        assert dashboard._task is None, "the host app's lifespan stopped the dashboard"


async def test_without_a_readable_span_stream_the_rest_still_shows(
    start_agents, settings: Settings
) -> None:
    """The dashboard is pointed at a span stream that cannot exist (the agents' stream owns
    its subjects): topology and calls work, and the page says why there is no traffic."""
    await start_agents(loaded(CheckAgent, check))
    async with connect(settings, caller="dashboard") as client:
        await client.view.wait_for(lambda v: v.has("check"), 5)
        client.settings = dataclasses.replace(settings, spans_stream=f"MISSING_{settings.prefix}")
        dashboard = Dashboard(client)
        async with serving(dashboard.app()) as url, httpx.AsyncClient(base_url=url) as http:
            state = (await http.get("/api/state")).json()
            assert [a["name"] for a in state["topology"]["agents"]] == ["check-agent"]
            assert "MISSING_" in state["traffic"]["feed_error"]
            assert (await http.post("/api/call/check", json={"n": 1})).status_code == 200
