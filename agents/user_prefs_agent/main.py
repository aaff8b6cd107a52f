"""user-prefs-agent: a user's travel preferences."""

from __future__ import annotations

from typing import Any

import natsmesh as mesh


@mesh.agent(name="user-prefs-agent", version="1.0.0", description="User travel preferences")
class UserPrefsAgent:
    pass


@mesh.tool(
    capability="user_preferences",
    description="Travel preferences of a user: airlines, budget, interests, hotel standard",
    tags=["preferences", "travel"],
    idempotent=True,
)
async def get_user_prefs(user_id: str = "demo-user") -> dict[str, Any]:
    return {
        "user_id": user_id,
        "preferred_airlines": ["SQ", "MH"],
        "budget": {"max_flight": 1000, "currency": "USD"},
        "interests": ["cultural", "food", "nature"],
        "hotel": {"min_stars": 3},
    }


if __name__ == "__main__":
    mesh.run()
