"""A test agent: echoes, tells which process answered, can be slow."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import natsmesh as mesh


@mesh.agent(name="echo-agent", version="1.2.0")
class EchoAgent:
    pass


@mesh.tool(capability="echo", tags=["test"], idempotent=True)
async def echo(text: str = "", delay: float = 0.0, size: int = 0) -> dict[str, Any]:
    if delay:
        await asyncio.sleep(delay)
    return {"text": text, "pid": os.getpid(), "padding": "x" * size}


if __name__ == "__main__":
    mesh.run()
