"""Test chain, last hop: raises when asked to."""

from __future__ import annotations

from typing import Any

import natsmesh as mesh


@mesh.agent(name="gamma-agent")
class Gamma:
    pass


@mesh.tool(capability="gamma")
async def gamma(fail: bool = False) -> dict[str, Any]:
    if fail:
        raise RuntimeError("gamma was asked to fail")
    return {"gamma": True}
