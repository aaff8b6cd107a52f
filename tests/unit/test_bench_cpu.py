"""The bench's CPU accounting reads a process's own CPU time from /proc."""

from __future__ import annotations

import os
import time

from bench.cpu import Window, cpu_seconds


def test_cpu_seconds_counts_this_process_cpu_time() -> None:
    before, t0 = cpu_seconds(os.getpid()), time.process_time()
    while time.process_time() - t0 < 0.3:  # burn user CPU (CPU time is asserted, not wall)
        sum(range(100_000))
    used = cpu_seconds(os.getpid()) - before
    assert 0.2 <= used <= (time.process_time() - t0) + 0.05


def test_window_per_call() -> None:
    window = Window(calls=1000, seconds=2.0, cpu={"caller": 0.02, "agent": 0.01})
    assert window.rate == 500
    assert window.per_call_us() == {"caller": 20.0, "agent": 10.0, "total": 30.0}
