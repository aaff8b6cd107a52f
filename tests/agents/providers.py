"""Test agents that provide one capability with different tags and versions."""

from __future__ import annotations

from typing import Any

import natsmesh as mesh


def provider(name: str, tags: list[str], version: str) -> Any:
    """Build a module-like namespace for one provider agent."""

    @mesh.agent(name=name, version=version)
    class Agent:
        pass

    @mesh.tool(capability="translate", tags=tags, version=version)
    async def translate(text: str) -> dict[str, Any]:
        return {"by": name, "text": text}

    return Agent, translate
