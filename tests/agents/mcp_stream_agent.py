"""A test agent for the MCP faces: a streaming tool and a slow tool that records cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import natsmesh as mesh

#: set when a ``sleepy`` call is cancelled (the agent runs in the test's process)
CANCELLED = asyncio.Event()
#: set when a ``sleepy`` call starts
STARTED = asyncio.Event()


@mesh.agent(name="mcp-stream-agent")
class McpStreamAgent:
    pass


@mesh.tool(capability="count", tags=["test"])
async def count(n: int = 3) -> AsyncIterator[dict[str, Any]]:
    """Yield n chunks: {"i": 0}, {"i": 1}, ..."""
    for i in range(n):
        yield {"i": i}


@mesh.tool(capability="sleepy", tags=["test"])
async def sleepy(seconds: float = 30.0) -> str:
    """Sleep, unless cancelled."""
    STARTED.set()
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        CANCELLED.set()
        raise
    return "slept"


@mesh.tool(capability="broken", tags=["test"])
async def broken(text: str) -> str:
    """Always fails."""
    raise RuntimeError(f"broken by {text}\nsecond line")
