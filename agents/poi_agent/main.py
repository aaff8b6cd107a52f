"""poi-agent: places of interest, indoor ones when rain is likely."""

from __future__ import annotations

from typing import Any

import natsmesh as mesh

OUTDOOR = ["Senso-ji Temple", "Ueno Park", "Meiji Shrine"]
INDOOR = ["TeamLab Borderless", "Tokyo National Museum", "Akihabara Arcades"]


@mesh.agent(name="poi-agent", version="1.0.0", description="Points of interest")
class PoiAgent:
    pass


@mesh.tool(
    capability="poi_search",
    description="Points of interest in a location, chosen for the weather",
    tags=["poi", "travel"],
    dependencies=["weather_forecast"],
    idempotent=True,
)
async def search_pois(
    location: str, date: str = "", weather: mesh.MeshTool | None = None
) -> dict[str, Any]:
    forecast = await weather(location=location, date=date) if weather is not None else None
    rainy = forecast is not None and forecast.get("rain_chance", 0) > 50
    if rainy:
        picks = [(p, "indoor") for p in INDOOR] + [(OUTDOOR[0], "outdoor")]
        recommendation = "Rain is likely: mostly indoor places, one temple if it clears."
    else:
        picks = [(p, "outdoor") for p in OUTDOOR] + [(INDOOR[0], "indoor")]
        recommendation = "Good weather: mostly outdoor places, one indoor backup."
    if forecast is None:
        recommendation = "No forecast available: a mix, outdoor first."
    return {
        "location": location,
        "pois": [{"name": n, "type": kind, "location": location} for n, kind in picks],
        "weather": forecast["summary"] if forecast else None,
        "recommendation": recommendation,
    }


if __name__ == "__main__":
    mesh.run()
