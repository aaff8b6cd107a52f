"""What a span costs on its way into JetStream: ``python -m bench.spancost [--spans N]``.

Publishes the same span messages (the size a traced echo call makes) in several ways
and prints the CPU microseconds per span of the publisher (this process) and of
nats-server, from /proc/<pid>/stat:

- ``core``: plain NATS, no stream listens (what publishing costs without storing);
- ``stream, file`` and ``stream, memory``: one JetStream message per span, as the
  exporter publishes them (one ack per batch);
- ``stream, file, N per message``: spans batched N to a message (msgpack array).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import msgspec

from bench.cpu import snapshot
from bench.harness import Harness, Table
from natsmesh import subjects, wire
from natsmesh.connection import connect_nats
from natsmesh.tracing.context import new_span_id, new_trace_id

ATTRS = {
    "messaging.system": "nats",
    "messaging.operation.type": "process",
    "mesh.agent": "bench-echo",
    "mesh.capability": "bench_echo",
    "mesh.tool": "bench_echo",
    "mesh.request.body.size": 16,
    "mesh.reply.body.size": 27,
}


def spans(count: int) -> list[wire.SpanMessage]:
    """``count`` SERVER spans like a traced echo call's."""
    now = time.time_ns()
    out = []
    for _ in range(count):
        span = wire.SpanMessage(
            trace_id=new_trace_id(), span_id=new_span_id(), name="bench_echo", start=now,
            end=now + 50_000, service="bench-echo", instance="bench-echo-0123abcd",
            parent_id=new_span_id(), kind=1, attrs=ATTRS,
        )  # fmt: skip
        out.append(span)
    return out


async def run(count: int, batch: int) -> None:
    h = Harness.start(quick=False)
    try:
        rows = []
        for name, storage, per_message in (
            ("core (no stream)", None, 1),
            ("stream, file", "file", 1),
            ("stream, memory", "memory", 1),
            (f"stream, file, {batch} per message", "file", batch),
        ):
            settings = h.settings(tracing=True)
            nc = await connect_nats(settings, "bench-spancost")
            js = nc.jetstream()
            if storage is not None:
                from nats.js.api import StorageType, StreamConfig

                await js.add_stream(
                    StreamConfig(
                        name=settings.spans_stream,
                        subjects=[subjects.spans_wildcard(settings.prefix)],
                        storage=StorageType.FILE if storage == "file" else StorageType.MEMORY,
                    )
                )
            messages = spans(count)
            if per_message == 1:
                payloads = [
                    (subjects.spans_subject(s.trace_id, settings.prefix), wire.encode_span(s))
                    for s in messages
                ]
            else:
                encode = msgspec.msgpack.encode
                payloads = [
                    (f"{settings.prefix}.spans.batch", encode(messages[i : i + per_message]))
                    for i in range(0, count, per_message)
                ]
            pids = {"publisher": os.getpid(), "server": h.server.pid}
            before = snapshot(pids)
            for i, (subject, data) in enumerate(payloads):
                await nc.publish(subject, data, reply="" if (i + 1) % 256 else nc.new_inbox())
            await nc.flush()
            if storage is not None:
                while (await js.stream_info(settings.spans_stream)).state.messages < len(payloads):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)  # poll the stream until it holds everything
            after = snapshot(pids)
            cpu = {role: (after[role] - before[role]) / count * 1e6 for role in pids}
            size = sum(len(d) for _, d in payloads) / count
            rows.append((name, [cpu["publisher"], cpu["server"], size]))
            await nc.close()
        Table().grid(
            "spans", f"µs CPU per span ({count} spans)", ["publisher", "server", "bytes"], rows
        )
    finally:
        h.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.spancost", description=__doc__)
    parser.add_argument("--spans", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    import uvloop

    uvloop.run(run(args.spans, args.batch))


if __name__ == "__main__":
    main()
