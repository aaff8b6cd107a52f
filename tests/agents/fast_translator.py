"""A test agent run as its own process: the preferred (``fast``) provider of ``translate``."""

from __future__ import annotations

from typing import Any

import natsmesh as mesh


@mesh.agent(name="fast-translator", version="1.0.0")
class FastTranslator:
    pass


@mesh.tool(capability="translate", tags=["fast", "cheap"], version="1.0.0")
async def translate(text: str) -> dict[str, Any]:
    return {"by": "fast-translator", "text": text}
