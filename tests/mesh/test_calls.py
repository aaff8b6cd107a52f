"""Calls across agents with dependency injection, against a real nats-server."""

from __future__ import annotations

import pytest

from natsmesh.config import Settings
from natsmesh.session import connect


async def test_call_across_two_agents_is_personalised(start_agents, settings: Settings) -> None:
    await start_agents("user_prefs_agent", "flight_agent")
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 2, timeout=5)
        result = await mesh.call(
            "flight_search", {"origin": "SFO", "destination": "NRT", "date": "2026-06-01"}
        )
    assert result["personalized"] is True
    assert [f["flight"] for f in result["flights"]] == ["MH007", "SQ017"]
    assert all(f["origin"] == "SFO" and f["date"] == "2026-06-01" for f in result["flights"])
