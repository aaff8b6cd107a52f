"""Test chain, first hop: alpha -> beta -> gamma."""

from __future__ import annotations

from typing import Any

import natsmesh as mesh


@mesh.agent(name="alpha-agent")
class Alpha:
    pass


@mesh.tool(capability="alpha", dependencies=["beta"])
async def alpha(
    fail: bool = False, delay: float = 0.0, beta: mesh.MeshTool | None = None
) -> dict[str, Any]:
    assert beta is not None
    return {"alpha": True, "beta": await beta(fail=fail, delay=delay)}
