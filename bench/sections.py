"""The measurements. Every figure is compared with its baseline in the same run."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.calls import Call, interleaved, mesh_client, sequential, throughput, wait_for_agents
from bench.cpu import ROLES, Window, measured, median_per_call
from bench.harness import Harness, Table, percentiles, rss_mb, summarize
from bench.raw_responder import request_headers
from natsmesh.client import MeshClient
from natsmesh.config import Settings
from natsmesh.connection import connect_nats


class Bench:
    """Runs every section and fills the table."""

    def __init__(self, harness: Harness, table: Table) -> None:
        self.h = harness
        self.t = table
        q = harness.quick
        self.rounds = 3 if q else 5
        self.n = 300 if q else 2000
        self.seconds = 0.6 if q else 2.0
        #: spans/s the traced mesh makes at its c=64 peak (set by the throughput section)
        self.spans64 = 0.0

    async def run(self) -> None:
        plain, traced = self.h.settings(tracing=False), self.h.settings(tracing=True)
        responder = self.h.raw_responder("bench.raw")
        with_headers = self.h.raw_responder("bench.raw.headers", "headers")
        echo = {}
        for s in (plain, traced):
            echo[s.tracing] = self.h.agent("echo", s)
            self.h.agent("relay", s)
        #: the process that answers each kind of call, for CPU accounting
        self.agents = {
            "raw": responder.pid,
            "raw+headers": with_headers.pid,
            "mesh": echo[False].pid,
            "mesh+trace": echo[True].pid,
        }
        nc = await connect_nats(plain, "bench-raw")
        try:
            async with mesh_client(plain, False) as mp, mesh_client(traced, True) as mt:
                await wait_for_agents(mp, 2)
                await wait_for_agents(mt, 2)
                raw, headed = self._raw_call(nc), self._raw_call(nc, headers=True)
                await self.latency(raw, headed, mp, mt)
                await self.relay(nc, mt)
                await self.throughput(raw, headed, mp, mt, nc, traced)
                await self.trace_lookup(nc, mt, traced)
                await self.cli(traced, mt)
        finally:
            await nc.close()
        await self.scale_out()
        await self.discovery()
        await self.collector()
        await self.metrics()
        from bench.gateway import gateway_section
        from bench.streaming import streaming

        await streaming(self.h, self.t, self.rounds)
        await gateway_section(self.h, self.t)

    # --- metrics: the aggregation behind /metrics and the dashboard ------------------------
    async def metrics(self) -> None:
        from bench.metrics import feed_absorption, figures

        made = getattr(self, "spans64", 0.0)
        found = figures(self.h.quick)
        found["dashboard_feed_spans_s"] = await feed_absorption(
            self.h.settings(tracing=False), 10_000 if self.h.quick else 50_000
        )
        labels = {
            "metrics_spans_s": "aggregator (decode + absorb)",
            "dashboard_spans_s": "aggregator + trace index",
            "dashboard_feed_spans_s": "whole feed (stream to index)",
        }
        for key, value in found.items():
            ratio = f"{value / made:.2f}" if made else ""
            self.t.add(
                "metrics",
                f"{labels[key]} spans/s",
                f"{value:.0f}",
                f"{made:.0f}",
                ratio,
                "target >= 2",
            )
            self.t.figure(key, value)
            if made:
                self.t.figure(key.replace("_spans_s", "_ratio"), value / made)

    @staticmethod
    def _raw_call(nc: Any, headers: bool = False) -> Call:
        """The raw echo; with ``headers``, carrying a traced mesh call's headers to a
        responder that answers with a worker's reply header (nats-py's own cost)."""
        body = json.dumps({"text": "hello"}).encode()
        subject = "bench.raw.headers" if headers else "bench.raw"
        hdrs = request_headers(traced=True) if headers else None

        async def raw() -> Any:
            return await nc.request(subject, body, timeout=5, headers=hdrs)

        return raw

    # --- 1. latency -------------------------------------------------------------------
    async def latency(self, raw: Call, headed: Call, plain: MeshClient, traced: MeshClient) -> None:
        calls = {
            "raw": raw,
            "raw+headers": headed,
            "mesh": lambda: plain.call("bench_echo", {"text": "hello"}),
            "mesh+trace": lambda: traced.call("bench_echo", {"text": "hello"}),
        }
        for call in calls.values():  # warm up
            await sequential(call, 200)
        results: dict[str, list[dict[str, float]]] = {k: [] for k in calls}
        for _ in range(self.rounds):
            for name, call in calls.items():
                results[name].append(percentiles(await sequential(call, self.n)))
        med = {
            k: {p: summarize([r[p] for r in v])[0] for p in ("p50", "p90", "p99")}
            for k, v in results.items()
        }
        for name in calls:
            _, lo, hi = summarize([r["p50"] for r in results[name]])
            for p in ("p50", "p90", "p99"):
                ratio = med[name][p] / med["raw"][p]
                self.t.add(
                    "latency", f"{name} {p} (µs)", f"{med[name][p]:.0f}", f"{med['raw'][p]:.0f}",
                    f"{ratio:.2f}x", f"p50 {lo:.0f}-{hi:.0f}" if p == "p50" else "",
                )  # fmt: skip
        self.t.figure("raw_p50_us", med["raw"]["p50"])
        self.t.figure("rawhdr_p50_us", med["raw+headers"]["p50"])
        self.t.figure("mesh_p50_us", med["mesh"]["p50"])
        self.t.figure("mesh_traced_p50_us", med["mesh+trace"]["p50"])
        self.t.figure("latency_ratio_traced", med["mesh+trace"]["p50"] / med["raw"]["p50"])
        cost = (med["mesh+trace"]["p50"] - med["mesh"]["p50"]) / med["mesh"]["p50"] * 100
        self.t.add("tracing", "cost on call p50 (%)", f"{cost:.1f}", "", "", "target <= 15")
        self.t.figure("tracing_cost_pct", cost)
        await self.latency_interleaved(calls)

    async def latency_interleaved(self, calls: dict[str, Call]) -> None:
        """The same calls taken in turn, one of each per cycle, so that every kind sees the
        same machine: on a VM, a loop of one kind of call alone runs at a pace of its own
        (how soon an idle vCPU wakes depends on how long it idled)."""
        samples = await interleaved(calls, self.n * self.rounds // 2)
        p50 = {k: statistics.median(v) / 1000 for k, v in samples.items()}
        for name in calls:
            ratio = p50[name] / p50["raw"]
            self.t.add(
                "latency", f"{name} p50 (µs), interleaved", f"{p50[name]:.0f}",
                f"{p50['raw']:.0f}", f"{ratio:.2f}x", "one call of each kind in turn",
            )  # fmt: skip
        self.t.figure("latency_ratio_traced_interleaved", p50["mesh+trace"] / p50["raw"])
        self.t.figure("latency_ratio_rawhdr_interleaved", p50["raw+headers"] / p50["raw"])

    # --- 2. relay ---------------------------------------------------------------------
    async def relay(self, nc: Any, traced: MeshClient) -> None:
        raw = self._raw_call(nc)

        async def two_raw() -> None:
            await raw()
            await raw()

        relay = lambda: traced.call("bench_relay", {"text": "hello"})  # noqa: E731
        await sequential(relay, 200)
        base, mesh = [], []
        for _ in range(self.rounds):
            base.append(percentiles(await sequential(two_raw, self.n))["p50"])
            mesh.append(percentiles(await sequential(relay, self.n))["p50"])
        b, m = summarize(base)[0], summarize(mesh)
        self.t.add(
            "relay",
            "A->B via DI p50 (µs), traced",
            f"{m[0]:.0f}",
            f"{b:.0f}",
            f"{m[0] / b:.2f}x",
            f"{m[1]:.0f}-{m[2]:.0f}",
        )
        self.t.figure("relay_ratio", m[0] / b)
        samples = await interleaved({"raw": two_raw, "relay": relay}, self.n * self.rounds // 2)
        p50 = {k: statistics.median(v) / 1000 for k, v in samples.items()}
        ratio = p50["relay"] / p50["raw"]
        self.t.add(
            "relay", "A->B via DI p50 (µs), interleaved", f"{p50['relay']:.0f}",
            f"{p50['raw']:.0f}", f"{ratio:.2f}x", "a relay and two raw calls in turn",
        )  # fmt: skip
        self.t.figure("relay_ratio_interleaved", ratio)

    # --- 3. throughput and CPU per call ---------------------------------------------
    async def throughput(
        self,
        raw: Call,
        headed: Call,
        plain: MeshClient,
        traced: MeshClient,
        nc: Any,
        settings: Settings,
    ) -> None:
        calls = {
            "raw": raw,
            "mesh": lambda: plain.call("bench_echo", {"text": "hello"}),
            "mesh+trace": lambda: traced.call("bench_echo", {"text": "hello"}),
        }
        js = nc.jetstream()
        for c in (1, 16, 64):
            if c == 64:
                spans_before = await _spans_published(nc, traced)
            # nats-py's own cost: a raw echo with a traced mesh call's headers (CPU table)
            measure = calls | {"raw+headers": headed} if c == 64 else calls
            windows: dict[str, list[Window]] = {k: [] for k in measure}
            for _ in range(self.rounds):
                for name, call in measure.items():
                    pids = {
                        "caller": os.getpid(),
                        "agent": self.agents[name],
                        "server": self.h.server.pid,
                    }
                    windows[name].append(await measured(call, c, self.seconds, pids))
            rates = {k: summarize([w.rate for w in v]) for k, v in windows.items()}
            r = rates["raw"][0]
            for name, label in (("mesh", "untraced"), ("mesh+trace", "traced")):
                m = rates[name]
                self.t.add(
                    "throughput",
                    f"c={c} calls/s, {label}",
                    f"{m[0]:.0f}",
                    f"{r:.0f}",
                    f"{m[0] / r:.2f}",
                    f"{m[1]:.0f}-{m[2]:.0f}",
                )
            if c == 64:
                self.t.figure("throughput64_ratio", rates["mesh+trace"][0] / r)
                self.t.figure("throughput64_ratio_untraced", rates["mesh"][0] / r)
                self.t.figure("throughput64_calls_s", rates["mesh+trace"][0])
                self.cpu_table(windows, {k: v[0] for k, v in rates.items()})
                await _settled(js, settings.spans_stream)
                spans = await _spans_published(nc, traced) - spans_before
                per_call = spans / sum(w.calls for w in windows["mesh+trace"])
                self.spans64 = rates["mesh+trace"][0] * per_call
                self.t.add(
                    "tracing", "spans made at c=64 peak (spans/s)", f"{self.spans64:.0f}",
                    "", "", f"{per_call:.2f} spans per call",
                )  # fmt: skip
                self.t.figure("spans64_s", self.spans64)

    async def trace_lookup(self, nc: Any, client: MeshClient, settings: Settings) -> None:
        """What ``natsmesh trace <id>`` pays to find a trace in the span stream as the
        throughput section left it: a trace just made, and the stream's oldest."""
        from natsmesh import subjects, wire
        from natsmesh.client import CallContext
        from natsmesh.tracing.context import format_traceparent, new_span_id, new_trace_id
        from natsmesh.tracing.store import read_trace

        js = nc.jetstream()
        stream = settings.spans_stream
        info = await js.stream_info(stream)
        first = await js.get_msg(stream, seq=info.state.first_seq)
        oldest = wire.decode_spans(first.data)[0][0].trace_id
        # two traces just made: one with its root span (as `natsmesh call --trace` records
        # it), one continued from a parent outside the mesh (no root in the stream)
        rooted, outside = new_trace_id(), new_trace_id()
        for trace_id in (rooted, outside):
            root, started = new_span_id(), time.time_ns()
            context = CallContext(traceparent=format_traceparent(trace_id, root))
            await client.call("bench_echo", {"text": "hello"}, context=context)
            if trace_id == rooted:
                span = wire.SpanMessage(
                    trace_id, root, "call bench_echo", started, time.time_ns(), "bench", kind=2
                )
                await js.publish(
                    subjects.spans_subject(trace_id, settings.prefix), wire.encode_spans([span])
                )
        deadline = time.monotonic() + 5
        while len(await read_trace(nc, settings, outside)) < 2 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the exporters flush every 50 ms: poll
        info = await js.stream_info(stream)
        size = f"stream: {info.state.messages} messages, {info.state.bytes / 2**20:.0f} MiB"
        kinds = (  # without its root in the stream, a lookup reads the whole shard
            ("recent trace (ms)", "recent", rooted, 5),
            ("recent, parent outside (ms)", "outside", outside, 5),
            ("oldest trace (ms)", "oldest", oldest, 3),
        )
        for label, key, trace_id, repeats in kinds:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                found = await read_trace(nc, settings, trace_id, timeout=30)
                times.append((time.perf_counter() - t0) * 1000)
            mid, lo, hi = summarize(times)
            note = f"{len(found)} spans; {lo:.1f}-{hi:.1f}; {size}"
            self.t.add("tracing", f"trace lookup, {label}", f"{mid:.1f}", "", "", note)
            self.t.figure(f"trace_lookup_{key}_ms", mid)

    def cpu_table(self, windows: dict[str, list[Window]], rates: dict[str, float]) -> None:
        """CPU microseconds per call at c=64, by process, from /proc/<pid>/stat."""
        keys = {"raw": "raw", "raw+headers": "rawhdr", "mesh": "mesh", "mesh+trace": "trace"}
        rows = []
        for name, key in keys.items():
            per_call = median_per_call(windows[name])
            rows.append((name, [per_call[r] for r in (*ROLES, "total")] + [rates[name]]))
            for role, value in per_call.items():
                self.t.figure(f"cpu64_{key}_{role}_us", value)
        self.t.grid(
            "cpu", "µs CPU per call at c=64", [*ROLES, "total", "calls/s"], rows,
            note="caller = this process; agent = the raw responder or the echo agent; "
            "raw+headers: a raw echo carrying a traced mesh call's headers",
        )  # fmt: skip

    # --- 4. scale-out -----------------------------------------------------------------
    async def scale_out(self) -> None:
        per_replica = 8
        base = 0.0
        counts = (1, 2, 4) if self.h.quick else (1, 2, 4, 8)
        for n in counts:
            settings = self.h.settings(tracing=False)
            procs = [self.h.agent("sleepy", settings) for _ in range(n)]
            async with mesh_client(settings, False) as client:
                await wait_for_agents(client, n)
                call = lambda c=client: c.call("bench_sleepy", {})  # noqa: E731
                await throughput(call, per_replica * n, 0.3)
                rate = statistics.median(
                    [
                        await throughput(call, per_replica * n, self.seconds)
                        for _ in range(self.rounds)
                    ]
                )
            for p in procs:
                self.h.stop(p)
            base = base or rate
            speedup = rate / base
            self.t.add(
                "scale-out",
                f"{n} replicas, 10 ms tool, calls/s",
                f"{rate:.0f}",
                f"{base:.0f}",
                f"{speedup:.2f}x",
                f"ideal {n}x" + (", target >= 7.2x" if n == 8 else ""),
            )
            self.t.figure(f"scale{n}_speedup", speedup)

    # --- 5. discovery -----------------------------------------------------------------
    async def discovery(self) -> None:
        settings = self.h.settings(tracing=False)
        async with mesh_client(settings, False) as client:
            proc = self.h.agent("echo", settings)
            await wait_for_agents(client, 1)
            key, _ = next(iter(client.view.records.items()))
            registered = client.view.last_seen[key]
            await client.call("bench_echo", {"text": "first"})
            first = (time.time() - registered) * 1000
            self.t.add(
                "discovery", "registered -> first call (ms)", f"{first:.1f}", "", "", "target <= 50"
            )
            self.t.figure("discovery_ms", first)
            t0 = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            await client.view.wait_for(lambda v: not v.records, 30)
            stopped = (time.perf_counter() - t0) * 1000
            proc.wait()
            proc = self.h.agent("echo", settings)
            await wait_for_agents(client, 1)
            t0 = time.perf_counter()
            proc.send_signal(signal.SIGKILL)
            await client.view.wait_for(lambda v: not v.records, 30)
            killed = time.perf_counter() - t0
            proc.wait()
        self.t.add("discovery", "clean stop leaves views (ms)", f"{stopped:.0f}")
        self.t.add(
            "discovery",
            "SIGKILL leaves views (s)",
            f"{killed:.2f}",
            f"{settings.registry_ttl:.1f}",
            "",
            "bound: registry TTL",
        )
        self.t.figure("stop_leave_ms", stopped)
        self.t.figure("kill_leave_s", killed)

    # --- 6. tracing pipeline ----------------------------------------------------------
    async def collector(self) -> None:
        """The collector's export rate over OTLP/gRPC (the default) and OTLP/HTTP, spans
        25 to a message (what a busy agent's 50 ms flush puts in a shard's message); and
        over gRPC one span to a message (the worst case: a quiet mesh, older agents)."""
        for protocol in ("grpc", "http"):
            await self._collector(protocol, 25)
        await self._collector("grpc", 1)

    async def _collector(self, protocol: str, per_message: int) -> None:
        from bench.collector import absorb

        count = 20_000 if self.h.quick else 100_000
        run = await absorb(self.h, protocol, count, batch=1000, per_message=per_message)
        name = {"grpc": "OTLP/gRPC", "http": "OTLP/HTTP"}[protocol]
        single = per_message == 1
        tag = f"{protocol}_single" if single else protocol
        self.t.add(
            "tracing",
            f"collector -> {protocol} 1/msg (spans/s)" if single else f"collector -> {name} (spans/s)",
            f"{run.rate:.0f}", "", "",
            "µs CPU per span: " + ", ".join(f"{k} {v:.1f}" for k, v in run.cpu.items()),
        )  # fmt: skip
        self.t.add(
            "tracing", f"collector {tag} µs CPU per span", f"{run.cpu['collector']:.1f}", "",
            "", "by stage: " + ", ".join(f"{k} {v:.1f}" for k, v in run.stages.items()),
        )  # fmt: skip
        self.t.figure(f"collector_{tag}_spans_s", run.rate)
        self.t.figure(f"collector_{tag}_cpu_us_per_span", run.cpu["collector"])
        if self.spans64 and not single:
            ratio = run.rate / self.spans64
            self.t.add(
                "tracing", f"collector {protocol} / spans at c=64 peak", f"{ratio:.2f}", "", "",
                "target >= 2",
            )  # fmt: skip
            self.t.figure(f"collector_{protocol}_ratio", ratio)

    # --- 7. CLI and memory ------------------------------------------------------------
    async def cli(self, settings: Settings, client: MeshClient) -> None:
        binary = os.path.join(os.path.dirname(sys.executable), "natsmesh")
        with tempfile.TemporaryDirectory(prefix="natsmesh-pycache-") as cache:
            await self._cli(binary, cli_env(self.h.env(settings), cache))
        self.memory(client)

    async def _cli(self, binary: str, env: dict[str, str]) -> None:
        cpu: dict[str, list[float]] = {"call": [], "pass": []}

        async def wall_ms(command: list[str]) -> float:
            """Wall time of ``command``; its CPU time (user + system) goes to ``cpu``."""
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            out = await asyncio.to_thread(
                subprocess.run, command, env=env, capture_output=True, check=True
            )
            wall = (time.perf_counter() - t0) * 1000
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            cpu["pass" if command[-1] == "pass" else "call"].append(used * 1000)
            assert command[-1] == "pass" or b"cli" in out.stdout
            return wall

        call = [binary, "call", "bench_echo", '{"text":"cli"}']
        python = [sys.executable, "-c", "pass"]
        await wall_ms(call)  # warm up: the page cache, and the bytecode of both
        await wall_ms(python)
        cpu["call"].clear()
        cpu["pass"].clear()
        walls, passes = [], []
        for _ in range(7 if self.h.quick else 21):  # interleaved: both see the same load
            walls.append(await wall_ms(call))
            passes.append(await wall_ms(python))
        wall, base = summarize(walls), summarize(passes)[0]
        cpu_call, cpu_pass = statistics.median(cpu["call"]), statistics.median(cpu["pass"])
        self.t.add(
            "cli",
            "natsmesh call wall (ms)",
            f"{wall[0]:.0f}",
            f"{base:.0f}",
            f"{wall[0] / base:.2f}x",
            f"{wall[1]:.0f}-{wall[2]:.0f}; baseline python -c pass; target <= 5x",
        )
        self.t.add(
            "cli", "natsmesh call CPU (ms)", f"{cpu_call:.0f}", f"{cpu_pass:.0f}",
            f"{cpu_call / cpu_pass:.2f}x", "user + system; baseline python -c pass",
        )  # fmt: skip
        self.t.figure("cli_call_ms", wall[0])
        self.t.figure("python_pass_ms", base)
        self.t.figure("cli_ratio", wall[0] / base)
        self.t.figure("cli_cpu_ratio", cpu_call / cpu_pass)

    def memory(self, client: MeshClient) -> None:
        pids = [r.pid for r in client.view.records.values()]
        memory = [rss_mb(pid) for pid in pids]
        self.t.add(
            "memory",
            "agent process RSS (MiB)",
            f"{statistics.median(memory):.0f}",
            "",
            "",
            f"{min(memory):.0f}-{max(memory):.0f}",
        )
        self.t.figure("agent_rss_mb", statistics.median(memory))


async def _messages(js: Any, stream: str) -> int:
    return int((await js.stream_info(stream)).state.messages)


async def _spans_published(nc: Any, client: MeshClient) -> int:
    """Spans the exporters made so far (published or dropped): the bench's own, and every
    agent's from ``$SRV.STATS``."""
    from natsmesh.tracing.metrics_feed import gather_stats

    counted = 0
    processor = client.tracing.processor if client.tracing is not None else None
    if processor is not None:
        counted += processor.published + processor.dropped
    for stats in await gather_stats(nc, timeout=0.5):
        figures = stats.get("metadata") or {}
        counted += int(figures.get("spans_published", 0)) + int(figures.get("spans_dropped", 0))
    return counted


async def _settled(js: Any, stream: str, patience: float = 5.0) -> int:
    """The stream's message count once the exporters have flushed (it stops growing)."""
    count, deadline = await _messages(js, stream), time.monotonic() + patience
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)  # the exporters ack nothing to us: poll the count
        latest = await _messages(js, stream)
        if latest == count:
            break
        count = latest
    return count


def cli_env(env: dict[str, str], cache: str) -> dict[str, str]:
    """``env`` for timing the CLI as an installed tool runs: with bytecode, cached under
    ``cache`` (pip compiles an installed package; an environment that forbids writing
    bytecode, PYTHONDONTWRITEBYTECODE, would make every run compile natsmesh, 20-25 ms)."""
    out = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out["PYTHONPYCACHEPREFIX"] = cache
    return out
