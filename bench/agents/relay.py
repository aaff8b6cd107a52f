"""Benchmark agent: calls the echo tool through dependency injection."""

from __future__ import annotations

from typing import Any

import natsmesh as mesh


@mesh.agent(name="bench-relay")
class Relay:
    pass


@mesh.tool(capability="bench_relay", dependencies=["bench_echo"])
async def bench_relay(text: str = "", echo: mesh.MeshTool | None = None) -> Any:
    assert echo is not None
    return await echo(text=text)


if __name__ == "__main__":
    mesh.run()
