"""Helpers every bench section uses: a mesh caller, and sequential and concurrent calls."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.cpu import measured
from natsmesh.client import MeshClient
from natsmesh.config import Settings
from natsmesh.session import connect

Call = Callable[[], Awaitable[Any]]


def mesh_client(settings: Settings, traced: bool) -> Any:
    """A caller like an agent: its own view and, when traced, its own span exporter."""
    return connect(settings, caller="bench", tracing=traced)


async def wait_for_agents(client: MeshClient, count: int, timeout: float = 30) -> None:
    await client.view.wait_for(lambda v: len(v.records) >= count, timeout)


async def sequential(call: Call, n: int) -> list[int]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await call()
        samples.append(time.perf_counter_ns() - t0)
    return samples


async def interleaved(calls: dict[str, Call], cycles: int) -> dict[str, list[int]]:
    """Nanoseconds per call of each kind, the kinds taken in turn ``cycles`` times."""
    samples: dict[str, list[int]] = {k: [] for k in calls}
    for _ in range(cycles):
        for name, call in calls.items():
            t0 = time.perf_counter_ns()
            await call()
            samples[name].append(time.perf_counter_ns() - t0)
    return samples


async def throughput(call: Call, concurrency: int, seconds: float) -> float:
    """Calls per second with ``concurrency`` callers for ``seconds``."""
    return (await measured(call, concurrency, seconds, {})).rate
