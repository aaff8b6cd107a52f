"""The mesh's own CPU per call, without NATS in the loop: ``python -m bench.hotpath``.

Two measurements in one process, on a private nats-server (only for start-up):

- **caller**: ``MeshClient.call`` over a transport whose ``publish`` answers at once with
  the reply a worker sends (the real inboxes, conversation, selection and spans; no
  nats-py publish, no network);
- **agent**: the runtime's request handler fed requests directly (the real task,
  dispatcher, validation, spans and reply; ``nc.publish`` does nothing).

Each variant runs in a fresh process; the figure is the least CPU time per call over
the repeats (interference from other processes only adds). The critical path is timed
too: one call alone, the caller's whole ``call`` and the agent's time from the request
to its reply's publish (what a span finished after the reply no longer adds). ``--ablate`` takes pieces
out (see bench/ablate.py), so a difference is what that piece costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from bench.harness import AGENTS, Table

BODY = {"text": "hello"}


class _Reply:
    """The final reply a worker sends for the echo."""

    subject = ""
    reply = ""
    data = b'{"result":{"text":"hello"}}'
    headers: ClassVar[dict[str, str]] = {"Mesh-Instance": "bench-echo-0123abcd"}


class _Request:
    __slots__ = ("data", "headers", "reply", "subject")

    def __init__(self, reply: str, headers: dict[str, str]) -> None:
        self.subject = "b.cap.bench_echo.bench-echo"
        self.reply = reply
        self.data = b'{"text":"hello"}'
        self.headers = headers


class _InstantTransport:
    """The real transport's inboxes; a request is answered the moment it is published."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.max_payload = real.max_payload
        self.state = "connected"

    async def inbox(self) -> Any:
        return await self.real.inbox()

    async def publish(
        self, subject: str, body: bytes, headers: Any = None, reply: str = ""
    ) -> None:
        box = self.real._inboxes.get(reply)
        if box is not None:
            box.put(_Reply())

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        return await self.real.request(*args, **kwargs)


async def _noop(*args: Any, **kwargs: Any) -> None:
    return None


async def measure(traced: bool, calls: int, repeats: int, concurrency: int) -> dict[str, float]:
    from natsmesh.config import Settings
    from natsmesh.loader import load_file
    from natsmesh.ops.server import start_server
    from natsmesh.runtime import Runtime
    from natsmesh.session import connect

    server = start_server(Path(tempfile.mkdtemp(prefix="natsmesh-hotpath-")))
    settings = Settings(
        nats_url=server.url, tracing=traced, prefix="hp", registry_bucket="hp", spans_stream="HP"
    )
    loaded = load_file(AGENTS / "echo.py")
    runtime = Runtime(loaded.agent, loaded.tools, settings)
    await runtime.start()
    try:
        async with connect(settings, caller="bench", tracing=traced) as client:
            await client.view.wait_for(lambda v: len(v.records) == 1, 10)
            # no publishing from here on: replies, spans and requests go nowhere
            runtime.nc.publish = _noop  # type: ignore[union-attr,method-assign]
            client.nc.publish = _noop
            client.transport = _InstantTransport(client.transport)  # type: ignore[assignment]
            handler = runtime._subs[0]._cb
            headers = {
                "Mesh-Caller": "bench",
                "Mesh-Deadline": str(int((time.time() + 3600) * 1000)),
                "Mesh-Protocol": "2",
                "Mesh-Tool": "bench_echo",
            }
            if traced:
                headers["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

            async def caller_round() -> None:
                async def worker(n: int) -> None:
                    for _ in range(n):
                        await client.call("bench_echo", BODY)

                await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))

            async def agent_round() -> None:
                for start in range(0, calls, concurrency):
                    for i in range(start, start + concurrency):
                        await handler(_Request(f"_INBOX.hp.{i}", headers))
                    await asyncio.gather(*list(runtime._tasks))

            replied: list[asyncio.Future[int]] = []

            async def reply_spy(subject: str, *args: Any, **kwargs: Any) -> None:
                if replied and subject.startswith("_INBOX.hp.path") and not replied[0].done():
                    replied[0].set_result(time.perf_counter_ns())

            runtime.nc.publish = reply_spy  # type: ignore[union-attr,method-assign]

            async def paths(n: int) -> tuple[float, float]:
                """Median wall µs of one call alone: the caller's whole call (the reply
                comes at once), the agent's from the request to its reply's publish."""
                caller, agent = [], []
                loop = asyncio.get_running_loop()
                for i in range(n):
                    t0 = time.perf_counter_ns()
                    await client.call("bench_echo", BODY)
                    caller.append(time.perf_counter_ns() - t0)
                    replied[:] = [loop.create_future()]
                    t0 = time.perf_counter_ns()
                    await handler(_Request(f"_INBOX.hp.path{i}", headers))
                    agent.append(await replied[0] - t0)
                    await asyncio.gather(*list(runtime._tasks))
                return sorted(caller)[n // 2] / 1e3, sorted(agent)[n // 2] / 1e3

            best: dict[str, float] = {}
            for _ in range(repeats):
                caller_path, agent_path = await paths(max(calls // 8, 100))
                best["caller_path"] = min(best.get("caller_path", caller_path), caller_path)
                best["agent_path"] = min(best.get("agent_path", agent_path), agent_path)
            for name, round_ in (("caller", caller_round), ("agent", agent_round)):
                await round_()  # warm up
                for _ in range(repeats):
                    t0 = time.process_time()
                    await round_()
                    if traced:  # the exporters' encoding is part of the cost
                        await client.tracing.processor.flush()  # type: ignore[union-attr]
                        await runtime.tracing.processor.flush()  # type: ignore[union-attr]
                    us = (time.process_time() - t0) / calls * 1e6
                    best[name] = min(best.get(name, us), us)
            return best
    finally:
        await runtime.stop(grace=1)
        server.stop()


def variants(traced: bool) -> list[tuple[str, str]]:
    """Every agent ablation untraced; with tracing, the ones of tracing."""
    from bench.ablate import AGENT, TRACED

    names = list(TRACED) if traced else [n for n in AGENT if n not in TRACED]
    return [("", "")] + [(f"-{n}", n) for n in names]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--calls", type=int, default=6400)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--ablate", default="", help="comma-separated (see bench/ablate.py)")
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("--one", action="store_true", help="one variant, JSON out (internal)")
    args = parser.parse_args()
    import uvloop

    if args.one:
        from bench.ablate import apply

        apply(args.ablate)
        result = uvloop.run(measure(args.trace, args.calls, args.repeats, args.concurrency))
        print(json.dumps(result))
        return
    rows = []
    for traced in (False, True):
        for label, ablation in variants(traced):
            command = [sys.executable, "-m", "bench.hotpath", "--one", "--ablate", ablation]
            command += ["--calls", str(args.calls), "--repeats", str(args.repeats)]
            command += ["--concurrency", str(args.concurrency)] + (["--trace"] * traced)
            out = subprocess.run(
                command, capture_output=True, text=True, check=True, env=os.environ
            )
            best = json.loads(out.stdout.strip().splitlines()[-1])
            name = ("mesh+trace" if traced else "mesh") + (f" {label}" if label else "")
            total = best["caller"] + best["agent"]
            rows.append((name, [best["caller"], best["agent"], total, best["caller_path"],
                                best["agent_path"]]))  # fmt: skip
    Table().grid(
        "hotpath", "µs CPU per call, no NATS", ["caller", "agent", "total", "c path", "a path"],
        rows,
        note="least over repeats; '-x': without x (bench/ablate.py); nats-py and the "
        "network not included; 'c path', 'a path': wall µs of one call alone (median), the "
        "caller's whole call and the agent's request-to-reply-publish",
    )  # fmt: skip


if __name__ == "__main__":
    main()
