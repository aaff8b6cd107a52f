"""Bench section: a call through the HTTP gateway against the same call made directly.

The gateway runs as its own process (``natsmesh gateway``), as in production; the bench
process calls it over keep-alive connections with aiohttp (httpx's connection pool costs
the caller several milliseconds of CPU per call at 64 concurrent calls, more than the
gateway itself, so it would measure httpx). Rows: p50 of both and the time
the gateway adds (target: at most 1 ms), the HTTP round trip alone (``/healthz``), and
calls/s at 64 concurrent callers through the gateway and directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.calls import mesh_client, sequential, throughput, wait_for_agents
from bench.harness import Harness, Table, percentiles, summarize

#: target for the p50 the gateway adds to a direct mesh call, in microseconds
ADDED_P50_TARGET_US = 1000.0


def start_gateway(harness: Harness, settings: Any) -> tuple[subprocess.Popen[bytes], str]:
    """``natsmesh gateway --port 0`` on the harness's mesh; its process and base URL."""
    env = {**harness.env(settings), "NATSMESH_GATEWAY_TOKENS": "", "NATSMESH_GATEWAY_HOST": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "natsmesh_cli.app", "gateway", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    harness.procs.append(proc)
    assert proc.stdout is not None
    for raw in iter(proc.stdout.readline, b""):
        line = raw.decode()
        if line.startswith("gateway: http://"):
            return proc, line.split()[1]
    raise RuntimeError("natsmesh gateway stopped before it served")


async def gateway_section(harness: Harness, table: Table) -> None:
    """Add the gateway rows to ``table`` (call it from ``Bench.run``)."""
    import aiohttp

    quick = harness.quick
    rounds, n, seconds = (3, 300, 0.6) if quick else (5, 2000, 2.0)
    settings = harness.settings(tracing=True)
    harness.agent("echo", settings)
    _, url = start_gateway(harness, settings)
    body = json.dumps({"text": "hello"}).encode()
    json_type = {"content-type": "application/json"}
    async with (
        mesh_client(settings, True) as direct,
        aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=64)) as http,
    ):
        await wait_for_agents(direct, 1)

        async def through_gateway() -> Any:
            async with http.post("/tools/bench_echo", data=body, headers=json_type) as response:
                response.raise_for_status()
                return await response.read()

        async def health() -> Any:
            async with http.get("/healthz") as response:
                return await response.read()

        async def mesh() -> Any:
            return await direct.call("bench_echo", {"text": "hello"})

        calls = {"mesh": mesh, "gateway": through_gateway, "http": health}
        for call in calls.values():  # warm up (connections, caches, the gateway's view)
            await sequential(call, 200)
        p50: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(rounds):
            for name, call in calls.items():
                p50[name].append(percentiles(await sequential(call, n))["p50"])
        med = {k: summarize(v) for k, v in p50.items()}
        added = med["gateway"][0] - med["mesh"][0]
        table.add(
            "gateway", "HTTP call p50 (µs), traced", f"{med['gateway'][0]:.0f}",
            f"{med['mesh'][0]:.0f}", f"{med['gateway'][0] / med['mesh'][0]:.2f}x",
            f"{med['gateway'][1]:.0f}-{med['gateway'][2]:.0f}",
        )  # fmt: skip
        table.add(
            "gateway", "added to a mesh call p50 (µs)", f"{added:.0f}", "", "",
            f"target <= {ADDED_P50_TARGET_US:.0f}",
        )  # fmt: skip
        table.add("gateway", "HTTP alone: /healthz p50 (µs)", f"{med['http'][0]:.0f}")
        table.figure("gateway_p50_us", med["gateway"][0])
        table.figure("gateway_added_p50_us", added)

        await throughput(through_gateway, 64, 0.3)
        via, plain = [], []
        for _ in range(rounds):
            via.append(await throughput(through_gateway, 64, seconds))
            plain.append(await throughput(mesh, 64, seconds))
        v, m = summarize(via), summarize(plain)[0]
        table.add(
            "gateway", "c=64 calls/s via HTTP, traced", f"{v[0]:.0f}", f"{m:.0f}",
            f"{v[0] / m:.2f}", f"{v[1]:.0f}-{v[2]:.0f}",
        )  # fmt: skip
        table.figure("gateway_c64_calls_s", v[0])


if __name__ == "__main__":  # python -m bench.gateway [--quick]: this section alone
    import uvloop

    bench_harness = Harness.start("--quick" in sys.argv)
    bench_table = Table()
    bench_table.header()
    try:
        uvloop.run(gateway_section(bench_harness, bench_table))
    finally:
        bench_harness.close()
    print(bench_table.final_line())
