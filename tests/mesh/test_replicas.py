"""Scaling out: replicas share one queue group; a killed replica costs no later call."""

from __future__ import annotations

import asyncio
import collections
import signal

from natsmesh.config import Settings
from natsmesh.session import connect
from tests.helpers import TEST_AGENTS


async def test_three_replicas_share_the_load_and_survive_a_kill(
    spawn_agent, settings: Settings
) -> None:
    procs = [spawn_agent(TEST_AGENTS / "echo_agent.py") for _ in range(3)]
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 3, timeout=15)
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> int:
            async with sem:
                return (await mesh.call("echo", {"text": str(i)}))["pid"]

        pids = collections.Counter(await asyncio.gather(*(one(i) for i in range(300))))
        assert set(pids) == {p.pid for p in procs}
        assert min(pids.values()) >= 60, f"uneven spread: {pids}"

        victim = procs[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        results = await asyncio.gather(*(one(i) for i in range(100)))
        assert victim.pid not in results
        assert len(results) == 100
