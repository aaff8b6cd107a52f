"""weather-agent: a weather forecast for a place and date."""

from __future__ import annotations

from typing import Any

import natsmesh as mesh


@mesh.agent(name="weather-agent", version="1.0.0", description="Weather forecasts")
class WeatherAgent:
    pass


@mesh.tool(
    capability="weather_forecast",
    description="Weather forecast for a location on a date",
    tags=["weather", "travel"],
    idempotent=True,
)
async def get_weather(location: str, date: str = "") -> dict[str, Any]:
    when = f" on {date}" if date else ""
    return {
        "location": location,
        "date": date,
        "conditions": "partly cloudy",
        "high_c": 28,
        "low_c": 19,
        "rain_chance": 30,
        "summary": f"{location}{when}: partly cloudy, 19-28 °C, 30% chance of rain",
    }


if __name__ == "__main__":
    mesh.run()
