"""Calls across agents with dependency injection, against a real nats-server."""

from __future__ import annotations

import signal

import pytest

from natsmesh.config import Settings
from natsmesh.errors import Unavailable
from natsmesh.ops.overview import instance_rows
from natsmesh.ops.server import RunningServer
from natsmesh.session import connect
from tests.conftest import agent_file, mesh_settings

FLIGHT_ARGS = {"origin": "SFO", "destination": "NRT", "date": "2026-06-01"}


def deps_of(view, name: str) -> str:
    return next(r["deps"] for r in instance_rows(view) if r["name"] == name)


async def test_call_across_two_agents_is_personalised(start_agents, settings: Settings) -> None:
    await start_agents("user_prefs_agent", "flight_agent")
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 2, timeout=5)
        result = await mesh.call("flight_search", FLIGHT_ARGS)
    assert result["personalized"] is True
    assert [f["flight"] for f in result["flights"]] == ["MH007", "SQ017"]
    assert all(f["origin"] == "SFO" and f["date"] == "2026-06-01" for f in result["flights"])


async def test_dependency_leaves_cleanly_and_comes_back(start_agents, settings: Settings) -> None:
    [prefs] = await start_agents("user_prefs_agent")
    await start_agents("flight_agent")
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: deps_of(v, "flight-agent") == "1/1", timeout=5)
        await prefs.stop()
        # a clean stop deletes the key at once: no TTL wait
        await mesh.view.wait_for(lambda v: deps_of(v, "flight-agent") == "0/1", timeout=2)
        result = await mesh.call("flight_search", FLIGHT_ARGS)
        assert result["personalized"] is False
        assert len(result["flights"]) == 3
        await start_agents("user_prefs_agent")
        await mesh.view.wait_for(lambda v: deps_of(v, "flight-agent") == "1/1", timeout=5)
        assert (await mesh.call("flight_search", FLIGHT_ARGS))["personalized"] is True


async def test_dependency_killed_fails_fast_while_still_listed(
    start_agents, spawn_agent, nats_server: RunningServer
) -> None:
    # a long TTL: the dead dependency's entry certainly outlives the call
    slow_expiry = mesh_settings(nats_server.url, registry_ttl=60)
    proc = spawn_agent(agent_file("user_prefs_agent"), settings_=slow_expiry)
    await start_agents("flight_agent", settings_=slow_expiry)
    async with connect(slow_expiry) as mesh:
        await mesh.view.wait_for(lambda v: deps_of(v, "flight-agent") == "1/1", timeout=10)
        assert (await mesh.call("flight_search", FLIGHT_ARGS))["personalized"] is True
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # the dependant's proxy meets "no responders" and says so at once, instead of
        # waiting for the call's deadline
        with pytest.raises(Unavailable, match="user-prefs-agent has no live instance"):
            await mesh.call("flight_search", FLIGHT_ARGS)
        assert deps_of(mesh.view, "flight-agent") == "1/1", "the dead dependency was still listed"


async def test_dependency_killed_expires_after_ttl(
    start_agents, spawn_agent, settings: Settings
) -> None:
    proc = spawn_agent(agent_file("user_prefs_agent"))
    [flight] = await start_agents("flight_agent")
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: deps_of(v, "flight-agent") == "1/1", timeout=10)
        assert (await mesh.call("flight_search", FLIGHT_ARGS))["personalized"] is True
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # once the TTL has passed the registry drops the entry (limit marker) and the
        # dependant answers without it
        await mesh.view.wait_for(
            lambda v: deps_of(v, "flight-agent") == "0/1", timeout=settings.registry_ttl + 5
        )
        assert flight.view is not None
        await flight.view.wait_for(lambda v: not v.has("user_preferences"), timeout=2)
        result = await mesh.call("flight_search", FLIGHT_ARGS)
        assert result["personalized"] is False
        spawn_agent(agent_file("user_prefs_agent"))
        await flight.view.wait_for(lambda v: v.has("user_preferences"), timeout=10)
        assert (await mesh.call("flight_search", FLIGHT_ARGS))["personalized"] is True


async def test_two_level_dependency_chain(start_agents, settings: Settings) -> None:
    await start_agents("weather_agent", "poi_agent")
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 2, timeout=5)
        result = await mesh.call("poi_search", {"location": "Tokyo", "date": "2026-06-02"})
    assert result["weather"].startswith("Tokyo on 2026-06-02")
    assert [p["type"] for p in result["pois"]] == ["outdoor", "outdoor", "outdoor", "indoor"]
    assert all(p["location"] == "Tokyo" for p in result["pois"])
