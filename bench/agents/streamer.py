"""Benchmark agent: a streaming tool."""

from __future__ import annotations

from collections.abc import AsyncIterator

import natsmesh as mesh


@mesh.agent(name="bench-streamer")
class Streamer:
    pass


@mesh.tool(capability="bench_stream")
async def bench_stream(n: int = 1000, size: int = 16) -> AsyncIterator[str]:
    piece = "x" * size
    for _ in range(n):
        yield piece


if __name__ == "__main__":
    mesh.run()
