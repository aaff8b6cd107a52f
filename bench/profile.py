"""Profile the hot path: ``python -m bench.profile [--trace] [--calls N]``.

An echo agent and a caller in one process, on a private nats-server; prints cProfile's
top functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from bench.calls import mesh_client
from bench.harness import AGENTS
from natsmesh.config import Settings
from natsmesh.loader import load_file
from natsmesh.ops.server import start_server
from natsmesh.runtime import Runtime


async def profile(traced: bool, calls: int, top: int) -> None:
    server = start_server(Path(tempfile.mkdtemp(prefix="natsmesh-profile-")))
    settings = Settings(
        nats_url=server.url,
        tracing=traced,
        prefix="prof",
        registry_bucket="prof",
        spans_stream="PROF",
    )
    loaded = load_file(AGENTS / "echo.py")
    runtime = Runtime(loaded.agent, loaded.tools, settings)
    await runtime.start()
    try:
        async with mesh_client(settings, traced) as client:
            await client.view.wait_for(lambda v: len(v.records) == 1, 5)
            for _ in range(500):
                await client.call("bench_echo", {"text": "hello"})
            profiler = cProfile.Profile()
            profiler.enable()
            t0 = time.perf_counter()
            for _ in range(calls):
                await client.call("bench_echo", {"text": "hello"})
            elapsed = time.perf_counter() - t0
            profiler.disable()
            print(f"{calls} calls, {elapsed / calls * 1e6:.0f} µs each under the profiler")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(top)
    finally:
        await runtime.stop(grace=1)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--trace", action="store_true", help="with tracing on")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    import uvloop

    uvloop.run(profile(args.trace, args.calls, args.top))


if __name__ == "__main__":
    main()
