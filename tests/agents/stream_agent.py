"""A test agent for the gateway: a streaming tool, a slow one, and one that records its
cancellation (run in-process so the test can wait for it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pydantic

import natsmesh as mesh

#: the keys of the calls whose task was cancelled, and an event per key
cancelled: set[str] = set()
_events: dict[str, asyncio.Event] = {}


def event(key: str) -> asyncio.Event:
    """The event set when the call with ``key`` starts (``started``) or is cancelled."""
    return _events.setdefault(key, asyncio.Event())


@mesh.agent(name="stream-agent", version="2.1.0")
class StreamAgent:
    pass


class Sum(pydantic.BaseModel):
    total: int
    parts: list[int] = []


@mesh.tool(capability="count", tags=["stream"])
async def count(n: int = 3, fail_at: int = -1) -> AsyncIterator[int]:
    """Count from 0 to n-1, one chunk each; raise at ``fail_at``."""
    for i in range(n):
        if i == fail_at:
            raise RuntimeError(f"failed at {i}")
        yield i


@mesh.tool(capability="add", tags=["math"])
async def add(a: int, b: int = 0, sums: list[Sum] | None = None) -> Sum:
    """Add two numbers."""
    if a < 0:
        raise ValueError("a must not be negative")
    return Sum(total=a + b, parts=[a, b])


@mesh.tool(capability="hold")
async def hold(key: str, seconds: float = 30.0, chunks: int = 0) -> AsyncIterator[int]:
    """Yield ``chunks`` values, then wait; record a cancellation under ``key``."""
    try:
        for i in range(chunks):
            yield i
        event(f"{key}:started").set()
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        cancelled.add(key)
        event(key).set()
        raise


@mesh.tool(capability="wait")
async def wait(key: str, seconds: float = 30.0) -> str:
    """Wait (not streaming); record a cancellation under ``key``."""
    try:
        event(f"{key}:started").set()
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        cancelled.add(key)
        event(key).set()
        raise
    return "done"


if __name__ == "__main__":
    mesh.run()
