"""Test chain, second hop."""

from __future__ import annotations

from typing import Any

import natsmesh as mesh


@mesh.agent(name="beta-agent")
class Beta:
    pass


@mesh.tool(capability="beta", dependencies=["gamma"])
async def beta(
    fail: bool = False, delay: float = 0.0, gamma: mesh.MeshTool | None = None
) -> dict[str, Any]:
    assert gamma is not None
    return {"beta": True, "gamma": await gamma(fail=fail, delay=delay)}
