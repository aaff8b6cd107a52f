"""A test agent for replica faults: each call writes ``start``/``end`` lines to a ledger file
(``$LEDGER_DIR/<pid>``), so a test knows which calls a killed replica had in flight."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import natsmesh as mesh

_LEDGER = Path(os.environ.get("LEDGER_DIR", "/tmp")) / str(os.getpid())


def _note(what: str, call: str) -> None:
    with _LEDGER.open("a") as out:
        out.write(f"{what} {call}\n")


@mesh.agent(name="ledger-agent")
class LedgerAgent:
    pass


async def _work(call: str, delay: float) -> dict[str, Any]:
    _note("start", call)
    try:
        await asyncio.sleep(delay)
    finally:
        _note("end", call)
    return {"pid": os.getpid(), "call": call}


@mesh.tool(capability="step")
async def step(call: str, delay: float = 0.2) -> dict[str, Any]:
    return await _work(call, delay)


@mesh.tool(capability="step_idem", idempotent=True)
async def step_idem(call: str, delay: float = 0.2) -> dict[str, Any]:
    return await _work(call, delay)


if __name__ == "__main__":
    mesh.run()
