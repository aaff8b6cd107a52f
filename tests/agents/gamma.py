"""Test chain, last hop: raises when asked to."""

from __future__ import annotations

import asyncio
from typing import Any

import natsmesh as mesh


@mesh.agent(name="gamma-agent")
class Gamma:
    pass


@mesh.tool(capability="gamma")
async def gamma(fail: bool = False, delay: float = 0.0) -> dict[str, Any]:
    if delay:
        await asyncio.sleep(delay)
    if fail:
        raise RuntimeError("gamma was asked to fail")
    return {"gamma": True}
