"""A test agent whose tool calls talk-agent's slow tool: nested cancellation."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import natsmesh as mesh


@mesh.agent(name="outer-agent")
class OuterAgent:
    pass


def _mark(marker: str, what: str) -> None:
    if marker and os.sep in marker:
        with Path(marker).open("a") as out:
            out.write(f"{what} {os.getpid()}\n")


@mesh.tool(capability="outer", dependencies=["sleepy"])
async def outer(seconds: float, marker: str = "", sleepy: mesh.MeshTool | None = None) -> str:
    """Call the slow tool and sleep as long again."""
    assert sleepy is not None
    _mark(marker, "outer-started")
    try:
        inner = await sleepy(seconds=seconds, marker=marker)
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _mark(marker, "outer-cancelled")
        raise
    return f"outer {inner}"


@mesh.tool(capability="relay_count", dependencies=["count"])
async def relay_count(n: int, count: mesh.MeshTool | None = None) -> AsyncIterator[int]:
    """Stream what the streaming dependency streams, doubled."""
    assert count is not None
    async with count.stream(n=n) as parts:
        async for part in parts:
            yield part * 2


if __name__ == "__main__":
    mesh.run()
