"""Experiment: what each piece of a mesh call costs, by taking it out (``python -m bench.ablate``).

Each ablation patches natsmesh in one process (never in the code base): the echo agent's
process for ``agent:*``, this caller process for ``caller:*``. The table gives the CPU
microseconds per call (from /proc/<pid>/stat) at c=64 with each piece removed, next to
the unpatched mesh, measured in the same run. A difference is what that piece costs.
Removing a piece breaks the behaviour it provides: this measures, it does not propose.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable
from typing import Any

from bench.calls import mesh_client, wait_for_agents
from bench.cpu import ROLES, Window, measured, median_per_call
from bench.harness import Harness, Table


def _no_validation() -> None:
    """pydantic ``model_validate_json`` -> ``msgspec.json.decode`` (no checks)."""
    import msgspec

    from natsmesh.injection import Signature

    decode = msgspec.json.decode
    Signature.validate = lambda self, body: decode(body or b"{}")  # type: ignore[method-assign]


def _no_deadline_timer() -> None:
    """The ``asyncio.timeout`` around the tool (a timer per call)."""
    from natsmesh import dispatch

    class _Asyncio:
        def __getattr__(self, name: str) -> Any:
            import asyncio

            return getattr(asyncio, name)

        @staticmethod
        def timeout(delay: float) -> Any:
            return contextlib.nullcontext()

    dispatch.asyncio = _Asyncio()  # type: ignore[assignment]


def _no_accept_timer() -> None:
    """``Responder.begin``: the ``call_later`` that sends ``accepted`` after 100 ms."""
    from natsmesh.responder import Responder

    Responder.begin = lambda self, streaming, remaining: None  # type: ignore[method-assign]


def _no_task() -> None:
    """The task per request: serve inline in the subscription's callback."""
    from natsmesh.runtime import Runtime

    def _handler(self: Any, dispatcher: Any) -> Any:
        async def on_request(msg: Any) -> None:
            self._in_flight += 1
            await self._serve(msg, dispatcher)

        return on_request

    Runtime._handler = _handler  # type: ignore[method-assign]


def _no_stats() -> None:
    """The ``$SRV.STATS`` bookkeeping per call."""
    from natsmesh.services import ServiceStats

    ServiceStats.record = lambda self, tool, elapsed_ns, error_type: None  # type: ignore[method-assign]


def _no_span_export() -> None:
    """Spans are made and ended but never published (no encode, no JetStream)."""
    from natsmesh.tracing.export import NatsSpanProcessor

    NatsSpanProcessor.enqueue = lambda self, message: None  # type: ignore[method-assign]


def _no_otel_context() -> None:
    """The SERVER span made current while the tool runs (OpenTelemetry context attach/detach)."""
    from natsmesh.tracing.spans import Tracing

    Tracing.context_of = staticmethod(lambda span: None)  # type: ignore[method-assign]


def _no_span_finish() -> None:
    """The SERVER span's end after the reply (reply attributes, message, queueing)."""
    from natsmesh.dispatch import Dispatcher

    Dispatcher.finish = lambda self, outcome, end: None  # type: ignore[method-assign]


#: agent-side ablations (applied in the echo agent's process)
AGENT: dict[str, Callable[[], None]] = {
    "validation": _no_validation,
    "deadline timer": _no_deadline_timer,
    "accept timer": _no_accept_timer,
    "task per request": _no_task,
    "stats": _no_stats,
    "span export": _no_span_export,
    "otel context": _no_otel_context,
    "span finish": _no_span_finish,
}
#: the ablations that only change a traced call
TRACED = ("span export", "otel context", "span finish")
#: caller-side ablations (applied in this process, for its traced client)
CALLER: dict[str, Callable[[], None]] = {"span export": _no_span_export}


def apply(names: str) -> None:
    """Apply agent ablations named in ``names`` (comma-separated); used as a prelude."""
    for name in filter(None, names.split(",")):
        AGENT[name]()


async def run(quick: bool, concurrency: int) -> None:
    h = Harness.start(quick)
    rounds, seconds = (3, 0.6) if quick else (5, 2.0)
    try:
        variants: dict[str, tuple[bool, str]] = {"mesh": (False, ""), "mesh+trace": (True, "")}
        variants |= {f"mesh -{n}": (False, n) for n in AGENT if n not in TRACED}
        variants |= {f"mesh+trace -{n} (agent)": (True, n) for n in TRACED}
        agents: dict[str, int] = {}
        calls: dict[str, Callable[[], Any]] = {}
        async with contextlib.AsyncExitStack() as stack:
            for name, (traced, ablation) in variants.items():  # a mesh of its own each
                settings = h.settings(tracing=traced)
                prelude = f"import bench.ablate as a; a.apply({ablation!r}); "
                agents[name] = h.agent("echo", settings, prelude=prelude).pid
                client = await stack.enter_async_context(mesh_client(settings, traced))
                await wait_for_agents(client, 1)
                calls[name] = _echo(client)
            for call in calls.values():  # warm up
                await measured(call, concurrency, 0.3, {})
            windows: dict[str, list[Window]] = {k: [] for k in calls}
            for _ in range(rounds):
                for name, call in calls.items():
                    pids = {"caller": os.getpid(), "agent": agents[name], "server": h.server.pid}
                    windows[name].append(await measured(call, concurrency, seconds, pids))
        rows = []
        for name, ws in windows.items():
            per_call = median_per_call(ws)
            rate = sorted(w.rate for w in ws)[len(ws) // 2]
            rows.append((name, [per_call[r] for r in (*ROLES, "total")] + [rate]))
        Table().grid(
            "ablate", f"µs CPU per call at c={concurrency}", [*ROLES, "total", "calls/s"], rows,
            note="'-x': the agent runs without x (bench/ablate.py)",
        )  # fmt: skip
    finally:
        h.close()


def _echo(client: Any) -> Callable[[], Any]:
    return lambda: client.call("bench_echo", {"text": "hello"})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ablate", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    import uvloop

    uvloop.run(run(args.quick, args.concurrency))


if __name__ == "__main__":
    main()
