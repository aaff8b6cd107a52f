"""hotel-agent: searches hotels."""

from __future__ import annotations

from typing import Any

import natsmesh as mesh

HOTELS = [
    {
        "name": "Grand Hyatt",
        "stars": 5,
        "price_per_night": 320,
        "amenities": ["pool", "spa", "gym"],
    },
    {"name": "Sakura Inn", "stars": 3, "price_per_night": 95, "amenities": ["wifi", "breakfast"]},
    {"name": "Capsule Stay", "stars": 2, "price_per_night": 45, "amenities": ["wifi"]},
]


@mesh.agent(name="hotel-agent", version="1.0.0", description="Hotel search")
class HotelAgent:
    pass


@mesh.tool(
    capability="hotel_search",
    description="Search hotels in a city for a stay",
    tags=["hotels", "travel"],
    idempotent=True,
)
async def hotel_search(
    destination: str, check_in: str = "", check_out: str = "", min_stars: int = 0
) -> dict[str, Any]:
    hotels = [{**h, "city": destination} for h in HOTELS if h["stars"] >= min_stars]
    return {
        "destination": destination,
        "check_in": check_in,
        "check_out": check_out,
        "hotels": hotels,
    }


if __name__ == "__main__":
    mesh.run()
