"""flight-agent: searches flights, personalised by the user's preferences."""

from __future__ import annotations

from typing import Any

import natsmesh as mesh

FLIGHTS = [
    {"flight": "MH007", "airline": "MH", "departure": "09:15", "arrival": "14:40", "price": 842},
    {"flight": "SQ017", "airline": "SQ", "departure": "11:50", "arrival": "17:05", "price": 901},
    {"flight": "AA100", "airline": "AA", "departure": "14:30", "arrival": "20:15", "price": 1150},
]


@mesh.agent(name="flight-agent", version="1.0.0", description="Flight search")
class FlightAgent:
    pass


@mesh.tool(
    capability="flight_search",
    description="Search flights between two airports on a date",
    tags=["flights", "travel"],
    dependencies=["user_preferences"],
    idempotent=True,
)
async def flight_search(
    origin: str,
    destination: str,
    date: str,
    user_id: str = "demo-user",
    user_prefs: mesh.MeshTool | None = None,
) -> dict[str, Any]:
    flights = [{**f, "origin": origin, "destination": destination, "date": date} for f in FLIGHTS]
    if user_prefs is None:
        return {"flights": flights, "personalized": False}
    prefs = await user_prefs(user_id=user_id)
    budget = prefs.get("budget", {}).get("max_flight", float("inf"))
    preferred = prefs.get("preferred_airlines", [])
    affordable = [f for f in flights if f["price"] <= budget]
    affordable.sort(key=lambda f: (f["airline"] not in preferred, f["price"]))
    return {"flights": affordable, "personalized": True, "preferred_airlines": preferred}


if __name__ == "__main__":
    mesh.run()
