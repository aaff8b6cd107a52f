"""Benchmark agent: an I/O-bound tool (it awaits about 10 ms)."""

from __future__ import annotations

import asyncio

import natsmesh as mesh


@mesh.agent(name="bench-sleepy", max_in_flight=64)
class Sleepy:
    pass


@mesh.tool(capability="bench_sleepy")
async def bench_sleepy() -> int:
    await asyncio.sleep(0.01)
    return 1


if __name__ == "__main__":
    mesh.run()
