"""CPU accounting: the CPU time each process spends per call, read from /proc/<pid>/stat."""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

#: clock ticks per second of utime and stime in /proc/<pid>/stat
TICK = os.sysconf("SC_CLK_TCK")
ROLES = ("caller", "agent", "server")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of every thread of ``pid`` so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15)


def snapshot(pids: Mapping[str, int]) -> dict[str, float]:
    return {role: cpu_seconds(pid) for role, pid in pids.items()}


@dataclasses.dataclass
class Window:
    """One measured window: the calls made and the CPU seconds each process spent."""

    calls: int
    seconds: float
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def per_call_us(self) -> dict[str, float]:
        """CPU microseconds per call, by role, plus ``total``."""
        out = {role: cpu / self.calls * 1e6 for role, cpu in self.cpu.items()}
        out["total"] = sum(out.values())
        return out


async def measured(
    call: Callable[[], Awaitable[Any]], concurrency: int, seconds: float, pids: Mapping[str, int]
) -> Window:
    """Run ``concurrency`` callers for ``seconds``; count calls and each process's CPU."""
    import asyncio

    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await call()
            done += 1

    before = snapshot(pids)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    after = snapshot(pids)
    return Window(done, elapsed, {role: after[role] - before[role] for role in pids})


def median_per_call(windows: list[Window]) -> dict[str, float]:
    """The median over rounds of each role's CPU microseconds per call."""
    per_call = [w.per_call_us() for w in windows]
    return {key: statistics.median(p[key] for p in per_call) for key in per_call[0]}
