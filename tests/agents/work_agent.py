"""A test agent for fault tests: a plain and an idempotent tool that take a while."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import natsmesh as mesh


@mesh.agent(name="work-agent", max_in_flight=int(os.environ.get("WORK_MAX_IN_FLIGHT", "256")))
class WorkAgent:
    pass


@mesh.tool(capability="work")
async def work(delay: float = 0.0) -> dict[str, Any]:
    await asyncio.sleep(delay)
    return {"pid": os.getpid()}


@mesh.tool(capability="work_idem", idempotent=True)
async def work_idem(delay: float = 0.0) -> dict[str, Any]:
    await asyncio.sleep(delay)
    return {"pid": os.getpid()}


if __name__ == "__main__":
    mesh.run()
