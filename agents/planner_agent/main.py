"""planner-agent: plans a trip with an LLM that calls the mesh's travel tools.

Tier 1: the user's preferences are fetched before the model is asked (a dependency).
Tier 2: flights, hotels, weather and places are tools the model calls as it needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import natsmesh as mesh


class TripRequest(mesh.MeshContextModel):
    """What the prompt template knows about the trip."""

    destination: str
    dates: str
    budget: str
    user_preferences: dict[str, Any] | None = None


@mesh.agent(name="planner-agent", version="1.0.0", description="Trip planner (LLM)")
class PlannerAgent:
    pass


@mesh.llm(
    system_prompt="file://prompts/plan_trip.j2",
    context_param="ctx",
    provider={"capability": "llm", "tags": ["+claude"]},
    filter=["flight_search", "hotel_search", "weather_forecast", "poi_search"],
    max_iterations=8,
)
@mesh.tool(
    capability="trip_planning",
    description="Plan a trip: flights, hotel, weather-aware sights, day by day (streams)",
    tags=["planner", "travel", "llm"],
    dependencies=["user_preferences"],
    timeout=120,
)
async def plan_trip(
    destination: str,
    dates: str,
    budget: str,
    user_id: str = "demo-user",
    ctx: TripRequest | None = None,
    user_prefs: mesh.MeshTool | None = None,
    llm: mesh.LlmAgent | None = None,
) -> AsyncIterator[Any]:
    """Stream the itinerary as the model writes it, with an event per tool call; the
    collected result is the itinerary's text."""
    assert llm is not None
    prefs = await user_prefs(user_id=user_id) if user_prefs is not None else None
    async for part in llm.stream(
        f"Plan my trip to {destination} for {dates} with a budget of {budget}.",
        context={"user_preferences": prefs},
    ):
        yield part


if __name__ == "__main__":
    mesh.run()
