"""The FastAPI helper and the example app, against the real trip planner on a real mesh."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import natsmesh as mesh
from natsmesh.config import Settings
from natsmesh.loader import load_file
from natsmesh.tracing.context import format_traceparent, new_span_id, new_trace_id
from tests.helpers import TEST_AGENTS, SpanTap

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app.py"
TRIP = {"destination": "Kyoto", "dates": "June 1-5, 2026", "budget": "$2000"}
PLANNER = (
    "user_prefs_agent",
    "flight_agent",
    "hotel_agent",
    "weather_agent",
    "poi_agent",
    "claude_provider",
    "openai_provider",
    "planner_agent",
)


def example_app() -> FastAPI:
    spec = importlib.util.spec_from_file_location("natsmesh_example_fastapi_app", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (ASGITransport does not) and an httpx client on it."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app", timeout=30
        ) as http,
    ):
        yield http


@pytest.fixture
async def planner_app(start_agents, settings: Settings, monkeypatch) -> AsyncIterator[Any]:
    await start_agents(*PLANNER)
    for key, value in settings.environment().items():  # the example reads the environment
        monkeypatch.setenv(key, value)
    app = example_app()
    async for http in serving(app):
        client = app.state.natsmesh
        await client.view.wait_for(lambda v: len(v.records) == len(PLANNER), timeout=10)
        yield http, client


async def test_example_app_plans_a_trip_in_the_requests_trace(
    planner_app, settings: Settings
) -> None:
    http, client = planner_app
    trace_id, root = new_trace_id(), new_span_id()
    sub = await SpanTap.open(client.nc, settings.prefix, trace_id)
    response = await http.post(
        "/plan", json=TRIP, headers={"traceparent": format_traceparent(trace_id, root)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["destination"] == "Kyoto"
    assert body["plan"].startswith("[offline model]") and "Kyoto" in body["plan"]
    spans = {}
    while not any(s.name == "plan_trip" for s in spans.values()):
        span = await sub.next(10)
        spans[span.span_id] = span
    while not any(s.service == "trip-web" for s in spans.values()):
        span = await sub.next(10)
        spans[span.span_id] = span
    call = next(s for s in spans.values() if s.service == "trip-web")
    plan = next(s for s in spans.values() if s.name == "plan_trip")
    assert call.parent_id == root  # the handler's call continues the request's traceparent
    assert plan.parent_id == call.span_id


async def test_example_app_validates_its_body(planner_app) -> None:
    http, _ = planner_app
    response = await http.post("/plan", json={"destination": "Kyoto"})
    assert response.status_code == 422  # FastAPI's own validation, before the mesh


async def test_mesh_errors_and_shared_trace_in_an_app_of_ones_own(
    start_agents, settings: Settings
) -> None:
    await start_agents(load_file(TEST_AGENTS / "stream_agent.py"))
    app = FastAPI(lifespan=mesh.fastapi.lifespan(settings, caller="own-app"))
    mesh.fastapi.add_error_handler(app)
    seen: list[Any] = []

    @app.post("/sum")
    async def total(
        a: int,
        add: mesh.MeshTool = mesh.fastapi.tool("add", tags=["math"]),
        again: mesh.MeshTool = mesh.fastapi.tool("add"),
    ) -> dict[str, Any]:
        seen.append((add, again))
        first = await add(a=a)
        return {"total": (await again(a=first["total"], b=1))["total"]}

    @app.post("/missing")
    async def missing(nope: mesh.MeshTool = mesh.fastapi.tool("nope")) -> Any:
        return await nope()

    async for http in serving(app):
        client = app.state.natsmesh
        await client.view.wait_for(lambda v: v.has("add"), timeout=5)
        assert (await http.post("/sum", params={"a": 2})).json() == {"total": 3}
        assert seen[0][0].dependency.tags == ("math",) and seen[0][1].dependency.tags == ()
        failed = await http.post("/sum", params={"a": -1})
        assert failed.status_code == 502
        assert failed.json()["error"]["type"] == "tool_error"
        absent = await http.post("/missing")
        assert absent.status_code == 404 and absent.json()["error"]["type"] == "no_provider"
        # the tools of one request without a traceparent share one new trace; requests differ
        (a1, b1), (a2, _) = seen
        assert a1._context.traceparent and a1._context.traceparent == b1._context.traceparent
        assert a1._context.traceparent != a2._context.traceparent


def test_a_tool_outside_a_connected_app_says_what_to_do() -> None:
    from fastapi.testclient import TestClient

    app = FastAPI()

    @app.get("/x")
    async def x(t: mesh.MeshTool = mesh.fastapi.tool("add")) -> None:
        return None

    with pytest.raises(RuntimeError, match=r"lifespan=natsmesh\.fastapi\.lifespan\(\)"):
        TestClient(app).get("/x")
