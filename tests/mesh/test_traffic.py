"""Data transferred: body sizes on spans sum to what ``natsmesh status`` reports per agent
and per caller→callee edge."""

from __future__ import annotations

import collections
from typing import Any

from natsmesh import subjects, wire
from natsmesh.config import Settings
from natsmesh.ops.overview import status
from natsmesh.session import connect
from tests.helpers import eventually

SERVER = 1


async def test_status_sums_the_body_sizes_on_the_spans(start_agents, settings: Settings) -> None:
    await start_agents("user_prefs_agent", "flight_agent")
    async with connect(settings, caller="traffic-test", tracing=True) as mesh:
        spans: list[Any] = []

        async def collect(msg: Any) -> None:
            spans.extend(wire.decode_spans(msg.data)[0])

        await mesh.nc.subscribe(subjects.spans_wildcard(settings.prefix), cb=collect)
        await mesh.nc.flush()
        for destination in ("NRT", "KIX", "CDG"):
            await mesh.call(
                "flight_search", {"origin": "SFO", "destination": destination, "date": "2026-06-01"}
            )
        await mesh.call("get_user_prefs", {"user_id": "someone-else"})
        await eventually(lambda: sum(s.kind == SERVER for s in spans) == 7, 10, "7 SERVER spans")
        report = await status(mesh)
    servers = [s for s in spans if s.kind == SERVER]
    per_agent: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for span in servers:
        row = per_agent[span.service]
        row[0] += 1
        row[1] += span.attrs["messaging.message.body.size"]
        row[2] += span.attrs["mesh.reply.body.size"]
    agents = {
        r["agent"]: [r["calls"], r["bytes_in"], r["bytes_out"]] for r in report["traffic"]["agents"]
    }
    assert agents == dict(per_agent)
    assert all(v[1] > 0 and v[2] > 0 for v in agents.values())
    edges = {(e["caller"], e["callee"]): e["calls"] for e in report["traffic"]["edges"]}
    assert edges == {
        ("traffic-test", "flight-agent"): 3,
        ("traffic-test", "user-prefs-agent"): 1,
        ("flight-agent", "user-prefs-agent"): 3,
    }
