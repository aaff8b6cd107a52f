"""The collector's absorption rate and its CPU per span, by stage: ``python -m bench.collector``.

Spans go into a stream first (``--per-message`` to a message: agents batch them, a
busy one dozens to a message; 1 is the worst case, and what publishers before batches
sent); then one collector (in this process) exports them to an
OTLP receiver in a process of its own (bench/receivers.py), so the collector's CPU is
its own. CPU per span comes from /proc for the collector, the receiver and nats-server,
and from the collector's own per-stage accounting (``Collector.cpu``: fetch, decode,
encode, send, ack; "other" is the rest of the process: gRPC's threads, the event loop).
Protocols and rounds are interleaved; the summary gives medians and spreads.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import subprocess
import sys
import time

from bench.cpu import snapshot
from bench.harness import HERE, Harness
from natsmesh.connection import connect_nats

#: the stages of ``Collector.cpu``
STAGES = ("fetch", "decode", "encode", "send", "ack")


@dataclasses.dataclass
class Absorbed:
    """One run: spans per second, and CPU µs per span by process and by stage."""

    protocol: str
    rate: float
    cpu: dict[str, float]
    stages: dict[str, float]


def span_messages(count: int, per_message: int = 1) -> list[tuple[str, bytes, int]]:
    """``(trace ID, message body, span count)`` for ``count`` spans of traced echo calls,
    ``per_message`` to a message (a batch, as a busy agent sends them; 1: a single span
    map, as publishers before batches did)."""
    from natsmesh import wire

    spans = [wire.decode_span(p) for p in span_payloads(count)]
    if per_message == 1:
        return [(s.trace_id, wire.encode_span(s), 1) for s in spans]
    out = []
    for i in range(0, count, per_message):
        batch = spans[i : i + per_message]
        out.append((batch[0].trace_id, wire.encode_spans(batch), len(batch)))
    return out


def span_payloads(count: int) -> list[bytes]:
    """``count`` single-span messages of traced echo calls: a CLIENT span from the caller
    and a SERVER span from the agent per trace, with the attributes the mesh gives them."""
    import secrets

    from natsmesh import wire

    now = time.time_ns()
    out = []
    for i in range(count):
        if i % 2 == 0:
            trace_id, client_id = secrets.token_hex(16), secrets.token_hex(8)
        server = i % 2 == 1
        out.append(
            wire.encode_span(
                wire.SpanMessage(
                    trace_id=trace_id,
                    span_id=secrets.token_hex(8) if server else client_id,
                    parent_id=client_id if server else None,
                    name="bench_echo",
                    start=now + i * 1000,
                    end=now + i * 1000 + 50_000,
                    service="bench-echo" if server else "bench-caller",
                    instance="bench-echo-1" if server else "bench-caller-1",
                    kind=1 if server else 2,
                    attrs={
                        "messaging.system": "nats",
                        "messaging.destination.name": "mesh.cap.bench_echo.bench-echo",
                        "mesh.agent": "bench-echo",
                        "mesh.tool": "bench_echo",
                        "messaging.message.body.size": 20 + i % 7,
                    },
                )
            )
        )
    return out


def start_receiver(protocol: str) -> tuple[subprocess.Popen[str], int]:
    """bench/receivers.py's counting receiver in a process of its own, and its port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.receivers", protocol],
        cwd=HERE.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def received(proc: subprocess.Popen[str]) -> int:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("count\n")
    proc.stdin.flush()
    return int(proc.stdout.readline())


async def absorb(
    h: Harness, protocol: str, count: int, batch: int = 2000, per_message: int = 1
) -> Absorbed:
    """Fill a fresh stream with ``count`` spans, ``per_message`` to a message, then time
    one collector exporting them (``batch``: spans per export)."""
    from natsmesh import subjects
    from natsmesh.tracing.collector import Collector, OtlpSender
    from natsmesh.tracing.export import ensure_stream

    settings = h.settings(tracing=True)
    nc = await connect_nats(settings, "bench-collector")
    try:
        js = nc.jetstream()
        await ensure_stream(js, settings)
        messages = span_messages(count, per_message)
        for i, (trace_id, data, _n) in enumerate(messages):
            await nc.publish(subjects.spans_subject(trace_id, settings.prefix), data)
            if i % 5000 == 0:
                await nc.flush()
        await nc.flush()
        stored = len(messages)
        while (await js.stream_info(settings.spans_stream)).state.messages < stored:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the server acks nothing here: poll the stream's count
        receiver, port = start_receiver(protocol)
        sender = OtlpSender(f"http://127.0.0.1:{port}", protocol)
        collector = Collector(nc, settings, sender, batch=batch)
        stop = asyncio.Event()
        pids = {"collector": os.getpid(), "receiver": receiver.pid, "server": h.server.pid}
        before = snapshot(pids)
        t0 = time.perf_counter()
        task = asyncio.create_task(collector.run(stop, report_every=3600))
        try:
            await collector.wait_until(lambda c: c.exported >= count, 300)
            rate = count / (time.perf_counter() - t0)
            after = snapshot(pids)
            got = received(receiver)
        finally:
            stop.set()
            await task
            sender.close()
            assert receiver.stdin is not None
            receiver.stdin.close()
            receiver.wait()
        assert got >= count, (got, count)
        cpu = {role: (after[role] - before[role]) / count * 1e6 for role in pids}
        stages = {k: v / count * 1e6 for k, v in getattr(collector, "cpu", {}).items()}
        if stages:
            stages["other"] = cpu["collector"] - sum(stages.values())
        return Absorbed(protocol, rate, cpu, stages)
    finally:
        await nc.close()


def describe(runs: list[Absorbed]) -> str:
    """One line: medians (and spreads) of rate and CPU per span."""

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"

    rates = [r.rate for r in runs]
    line = f"{runs[0].protocol:<5} {statistics.median(rates):8.0f} spans/s ({min(rates):.0f}-{max(rates):.0f})"
    line += "; µs CPU per span: " + ", ".join(
        f"{role} {med([r.cpu[role] for r in runs])}" for role in runs[0].cpu
    )
    if runs[0].stages:
        line += "\n      collector by stage: " + ", ".join(
            f"{s} {med([r.stages[s] for r in runs])}" for s in runs[0].stages
        )
    return line


async def main(args: argparse.Namespace) -> None:
    h = Harness.start(quick=False)
    try:
        runs: dict[str, list[Absorbed]] = {p: [] for p in args.protocol}
        for n in range(args.rounds):
            for protocol in args.protocol if n % 2 == 0 else reversed(args.protocol):
                run = await absorb(h, protocol, args.spans, args.batch, args.per_message)
                runs[protocol].append(run)
                print(describe([run]), flush=True)
        print(
            f"medians of {args.rounds} rounds, {args.spans} spans each, {args.per_message} "
            f"per message, batches of {args.batch} spans:"
        )
        for protocol_runs in runs.values():
            print(describe(protocol_runs), flush=True)
    finally:
        h.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.collector", description=__doc__)
    parser.add_argument("--spans", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2000, help="spans per export")
    parser.add_argument(
        "--per-message", type=int, default=1, help="spans per message (a busy agent: dozens)"
    )
    parser.add_argument("--protocol", nargs="+", default=["grpc", "http"])
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    a = parser.parse_args()
    if a.loop == "uvloop":
        import uvloop

        uvloop.run(main(a))
    else:
        asyncio.run(main(a))
