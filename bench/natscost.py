"""Where a mesh call's CPU goes: ``python -m bench.natscost [--quick] [--concurrency N]``.

Adds to a plain nats-py echo, one step at a time, what a mesh call does, and prints the
CPU microseconds per call of the caller, the responder and nats-server at each step
(from /proc/<pid>/stat, as the bench's CPU table):

- ``raw``: ``nc.request`` and a responder that publishes the body back (the bench's baseline);
- ``+request headers``: the headers a mesh call carries (``Mesh-Caller``, ``Mesh-Deadline``,
  ``Mesh-Protocol``, ``Mesh-Tool``, and ``traceparent`` when traced);
- ``+reply header``: the worker's ``Mesh-Instance`` reply header;
- ``+task``: each request served in its own task, as the runtime does;
- ``+json``: the arguments decoded and a ``{"result": ...}`` envelope encoded, and decoded
  by the caller (msgspec);
- ``mesh``, ``mesh+trace``: the echo agent through ``MeshClient.call``.

Everything up to ``+reply header`` is nats-py's own per-message cost (and nats-server's):
no mesh code can remove it while the contract keeps those headers.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from bench.calls import mesh_client, wait_for_agents
from bench.cpu import ROLES, Window, measured, median_per_call
from bench.harness import Harness, Table
from bench.raw_responder import request_headers
from natsmesh.connection import connect_nats

STEPS = [
    ("raw", ()),
    ("+request headers", ()),
    ("+request headers, traceparent", ()),
    ("+reply header", ("headers",)),
    ("+task", ("headers", "task")),
    ("+json", ("headers", "task", "json")),
]


async def run(quick: bool, concurrency: int, fast: bool) -> None:
    if fast:
        from bench import fastheaders

        fastheaders.install()
    h = Harness.start(quick)
    rounds, seconds = (3, 0.6) if quick else (5, 2.0)
    try:
        plain, traced = h.settings(tracing=False), h.settings(tracing=True)
        agents = {"mesh": h.agent("echo", plain).pid, "mesh+trace": h.agent("echo", traced).pid}
        responders = {
            name: h.raw_responder(f"bench.{i}", *modes) for i, (name, modes) in enumerate(STEPS)
        }
        nc = await connect_nats(plain, "bench-natscost")
        body = json.dumps({"text": "hello"}).encode()
        decode = msgspec.json.decode

        def raw_call(
            step: int, hdrs: dict[str, str] | None, envelope: bool
        ) -> Callable[[], Awaitable[Any]]:
            subject = f"bench.{step}"

            async def call() -> Any:
                msg = await nc.request(subject, body, timeout=5, headers=hdrs)
                return decode(msg.data)["result"] if envelope else msg

            return call

        untraced_hdrs, traced_hdrs = request_headers(False), request_headers(True)
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "raw": raw_call(0, None, False),
            "+request headers": raw_call(1, untraced_hdrs, False),
            "+request headers, traceparent": raw_call(2, traced_hdrs, False),
            "+reply header": raw_call(3, traced_hdrs, False),
            "+task": raw_call(4, traced_hdrs, False),
            "+json": raw_call(5, traced_hdrs, True),
        }
        pids = {name: proc.pid for name, proc in responders.items()} | agents
        async with mesh_client(plain, False) as mp, mesh_client(traced, True) as mt:
            await wait_for_agents(mp, 1)
            await wait_for_agents(mt, 1)
            calls["mesh"] = lambda: mp.call("bench_echo", {"text": "hello"})
            calls["mesh+trace"] = lambda: mt.call("bench_echo", {"text": "hello"})
            for call in calls.values():  # warm up
                await measured(call, concurrency, 0.3, {})
            windows: dict[str, list[Window]] = {k: [] for k in calls}
            for _ in range(rounds):
                for name, call in calls.items():
                    roles = {"caller": os.getpid(), "agent": pids[name], "server": h.server.pid}
                    windows[name].append(await measured(call, concurrency, seconds, roles))
        await nc.close()
        rows = []
        for name, ws in windows.items():
            per_call = median_per_call(ws)
            rate = sorted(w.rate for w in ws)[len(ws) // 2]
            rows.append((name, [per_call[r] for r in (*ROLES, "total")] + [rate]))
        Table().grid(
            "natscost", f"µs CPU per call at c={concurrency}" + (", fast headers" if fast else ""), [*ROLES, "total", "calls/s"], rows,
            note="each step adds one thing to the one above; agent = the responder",
        )  # fmt: skip
    finally:
        h.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.natscost", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--fast-headers", action="store_true", help="with bench/fastheaders.py in every process"
    )
    args = parser.parse_args()
    import uvloop

    uvloop.run(run(args.quick, args.concurrency, args.fast_headers))


if __name__ == "__main__":
    main()
