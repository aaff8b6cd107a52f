"""Benchmark agent: an echo tool."""

from __future__ import annotations

import natsmesh as mesh


@mesh.agent(name="bench-echo")
class Echo:
    pass


@mesh.tool(capability="bench_echo")
async def bench_echo(text: str = "") -> dict[str, str]:
    return {"text": text}


if __name__ == "__main__":
    mesh.run()
