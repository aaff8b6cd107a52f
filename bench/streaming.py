"""Streaming against raw NATS: time to first chunk and chunks per second.

The baseline publishes the same number of chunks of the same size to the reply subject
with plain nats-py, without headers or flow control.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.harness import HERE, Harness, Table, summarize
from natsmesh.connection import connect_nats
from natsmesh.session import connect

RAW_SUBJECT = "bench.rawstream"


def raw_streamer(h: Harness) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "raw_streamer.py"), h.server.url, RAW_SUBJECT],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    h.procs.append(proc)
    return proc


async def _raw_once(nc: Any, n: int, size: int) -> tuple[float, float]:
    """(seconds to the first chunk, seconds to the end) of one raw stream."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    t0 = time.perf_counter()
    await nc.publish(RAW_SUBJECT, json.dumps({"n": n, "size": size}).encode(), reply=inbox)
    first = 0.0
    while True:
        msg = await sub.next_msg(timeout=10)
        if not first:
            first = time.perf_counter() - t0
        if not msg.data:
            break
    total = time.perf_counter() - t0
    await sub.unsubscribe()
    return first, total


async def _mesh_once(mesh: Any, n: int, size: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    first = 0.0
    async with mesh.stream("bench_stream", {"n": n, "size": size}) as parts:
        async for _ in parts:
            if not first:
                first = time.perf_counter() - t0
    return first, time.perf_counter() - t0


async def streaming(h: Harness, t: Table, rounds: int) -> None:
    """Rows: time to first chunk (µs, p50) and chunks/s, mesh (traced) against raw."""
    settings = h.settings(tracing=True)
    h.agent("streamer", settings)
    raw_streamer(h)
    n, size = (500, 16) if h.quick else (5000, 16)
    nc = await connect_nats(settings, "bench-raw-stream")
    try:
        async with connect(settings, caller="bench", tracing=True) as mesh:
            await mesh.view.wait_for(lambda v: len(v.records) >= 1, 30)
            await _mesh_once(mesh, 50, size)
            await _raw_once(nc, 50, size)
            raw = [await _raw_once(nc, n, size) for _ in range(rounds)]
            ours = [await _mesh_once(mesh, n, size) for _ in range(rounds)]
            first_raw = [await _raw_once(nc, 1, size) for _ in range(50)]
            first_mesh = [await _mesh_once(mesh, 1, size) for _ in range(50)]
    finally:
        await nc.close()
    ttfc_raw = statistics.median(f for f, _ in first_raw) * 1e6
    ttfc = statistics.median(f for f, _ in first_mesh) * 1e6
    t.add(
        "stream",
        "time to first chunk p50 (µs)",
        f"{ttfc:.0f}",
        f"{ttfc_raw:.0f}",
        f"{ttfc / ttfc_raw:.2f}x",
    )
    rate_raw = summarize([n / total for _, total in raw])[0]
    rate = summarize([n / total for _, total in ours])
    t.add(
        "stream",
        f"chunks/s ({n} x {size} B), traced",
        f"{rate[0]:.0f}",
        f"{rate_raw:.0f}",
        f"{rate[0] / rate_raw:.2f}",
        f"{rate[1]:.0f}-{rate[2]:.0f}",
    )
    t.figure("ttfc_us", ttfc)
    t.figure("ttfc_ratio", ttfc / ttfc_raw)
    t.figure("chunks_s", rate[0])
    t.figure("chunks_ratio", rate[0] / rate_raw)


if __name__ == "__main__":  # python -m bench.streaming [--quick]
    import uvloop

    harness = Harness.start("--quick" in sys.argv)
    table = Table()
    table.header()
    try:
        uvloop.run(streaming(harness, table, 3))
    finally:
        harness.close()
    print(table.final_line())
