"""Live views for the dashboard: rolling traffic trends and an index of recent traces.

:class:`Trends` samples a :class:`~natsmesh.tracing.metrics.MeshMetrics` once per tick
and turns the cumulative figures into calls/s, error %, p50/p99 over a window, bytes
and a per-second sparkline. :class:`TraceIndex` is a span sink that keeps a bounded
summary of the most recent traces.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from natsmesh.tracing.metrics import MeshMetrics, Red, quantile
from natsmesh.wire import SpanMessage

SERVER, ERROR = 1, 2
#: seconds of history in sparklines and in the p50/p99 window
WINDOW = 60
#: seconds over which calls/s is averaged
RATE_WINDOW = 10

_Sample = tuple[int, int, tuple[int, ...], int, int]  # calls, errors, counts, bytes in, out


def _sample(red: Red) -> _Sample:
    return (red.calls, red.errors, tuple(red.counts), red.bytes_in, red.bytes_out)


class Trends:
    """Per-second samples of the cumulative figures, and the rates derived from them."""

    def __init__(self, metrics: MeshMetrics, window: int = WINDOW) -> None:
        self.metrics = metrics
        self.window = window
        self._samples: collections.deque[tuple[float, dict[str, dict[Any, _Sample]]]] = (
            collections.deque(maxlen=window + 1)
        )

    def tick(self, now: float | None = None) -> None:
        """Take one sample (call once a second)."""
        m = self.metrics
        self._samples.append(
            (
                now if now is not None else time.time(),
                {
                    "tools": {k: _sample(r) for k, r in dict(m.tools).items()},
                    "edges": {k: _sample(r) for k, r in dict(m.edges).items()},
                },
            )
        )

    def _rows(self, which: str) -> list[dict[str, Any]]:
        samples = list(self._samples)
        if not samples:
            return []
        now_t, now = samples[-1][0], samples[-1][1][which]
        rate_from = samples[max(0, len(samples) - 1 - RATE_WINDOW)]
        first_t, first = samples[0][0], samples[0][1][which]
        rows: list[dict[str, Any]] = []
        for key, (calls, errors, counts, b_in, b_out) in now.items():
            old = rate_from[1][which].get(key, (0, 0, (0,) * len(counts), 0, 0))
            dt = max(now_t - rate_from[0], 1e-9)
            base = first.get(key, (0, 0, (0,) * len(counts), 0, 0))
            window_calls = calls - base[0]
            window_counts = [c - b for c, b in zip(counts, base[2], strict=True)]
            shown = window_counts if window_calls > 0 else list(counts)
            p50, p99 = quantile(0.5, shown), quantile(0.99, shown)
            spark: list[int] = []
            previous: int | None = None
            for _, sample in samples:
                value = sample[which].get(key, (0,))[0]
                if previous is not None:
                    spark.append(value - previous)
                previous = value
            rows.append(
                {
                    "key": list(key),
                    "calls": calls,
                    "errors": errors,
                    "window_calls": window_calls,
                    "rate": (calls - old[0]) / dt if len(samples) > 1 else 0.0,
                    "error_pct": 100.0 * (errors - base[1]) / window_calls
                    if window_calls > 0
                    else (100.0 * errors / calls if calls else 0.0),
                    "p50_ms": None if p50 is None else p50 * 1000,
                    "p99_ms": None if p99 is None else p99 * 1000,
                    "bytes_in": b_in,
                    "bytes_out": b_out,
                    "bytes_in_rate": (b_in - base[3]) / max(now_t - first_t, 1e-9)
                    if len(samples) > 1
                    else 0.0,
                    "bytes_out_rate": (b_out - base[4]) / max(now_t - first_t, 1e-9)
                    if len(samples) > 1
                    else 0.0,
                    "spark": spark,
                }
            )
        rows.sort(key=lambda r: (-float(r["rate"]), -int(r["calls"]), r["key"]))
        return rows

    def traffic(self) -> dict[str, Any]:
        """What the dashboard's traffic tables show, now."""
        m = self.metrics
        return {
            "time": time.time(),
            "spans": m.spans,
            "window": self.window,
            "tools": self._rows("tools"),
            "edges": self._rows("edges"),
            "tokens": [
                {
                    "model": model,
                    "provider": provider,
                    "agent": agent,
                    "calls": t.calls,
                    "input": t.input,
                    "output": t.output,
                }
                for (model, provider, agent), t in sorted(dict(m.tokens).items())
            ],
            "instances": {
                instance: {"agent": agent, **data}
                for instance, (agent, data) in dict(m.instances).items()
            },
        }


class _Trace:
    """The running summary of one trace."""

    __slots__ = ("end", "errors", "root", "root_start", "service", "shown", "spans", "start")

    def __init__(self, span: SpanMessage) -> None:
        self.start, self.end = span.start, span.end
        self.spans = self.shown = self.errors = 0
        self.root, self.service = span.name, span.service
        self.root_start: int | None = None


class TraceIndex:
    """A bounded summary of the most recent traces (a span sink)."""

    def __init__(self, limit: int = 300) -> None:
        self.limit = limit
        self.traces: collections.OrderedDict[str, _Trace] = collections.OrderedDict()
        #: bumped at every change, so pushers can tell when to send
        self.version = 0

    def add(self, span: SpanMessage) -> None:
        """Fold one span into its trace's summary."""
        self.version += 1
        traces = self.traces
        t = traces.get(span.trace_id)
        if t is None:
            t = traces[span.trace_id] = _Trace(span)
            if len(traces) > self.limit:
                traces.popitem(last=False)
        t.spans += 1
        if span.start < t.start:
            t.start = span.start
        if span.end > t.end:
            t.end = span.end
        if span.status == ERROR:
            t.errors += 1
        if span.kind == SERVER:
            t.shown += 1
            if t.root_start is None or span.start < t.root_start:
                t.root_start = span.start
                t.root, t.service = span.name, span.service

    def recent(self, n: int = 50) -> list[dict[str, Any]]:
        """The ``n`` traces that started last, newest first."""
        rows = sorted(self.traces.items(), key=lambda kv: kv[1].start, reverse=True)[:n]
        return [
            {
                "trace_id": trace_id,
                "root": t.root,
                "service": t.service,
                "start": t.start / 1e9,
                "duration_ms": (t.end - t.start) / 1e6,
                "spans": t.shown,
                "all_spans": t.spans,
                "errors": t.errors,
            }
            for trace_id, t in rows
        ]
