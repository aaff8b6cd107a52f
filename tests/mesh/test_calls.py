"""Calls across agents with dependency injection, against a real nats-server."""

from __future__ import annotations

import signal

from natsmesh.config import Settings
from natsmesh.overview import instance_rows
from natsmesh.session import connect
from tests.conftest import agent_file

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
        # the dependant answers at once without it: no responders makes the proxy fail fast,
        # and once the TTL has passed the registry drops the entry (limit marker)
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
