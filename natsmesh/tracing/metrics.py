"""RED metrics from span messages: calls, errors, durations and bytes per tool and per edge.

One :class:`MeshMetrics` absorbs finished spans (from the span stream, never from the
call path) and keeps plain cumulative figures:

- per tool (SERVER spans), labelled ``agent`` and ``tool``: calls, errors, a duration
  histogram, request bytes received and reply bytes sent;
- per edge (CLIENT spans), labelled ``caller``, ``callee`` and ``tool``: the same, seen
  from the caller (request bytes sent, reply bytes received);
- LLM tokens per ``model``, ``provider`` (``gen_ai.system``) and ``agent``;
- calls in flight and span export counters per instance, from ``$SRV.STATS``.

They are rendered in the Prometheus text format at scrape time (a prometheus-client
custom collector), so absorbing a span costs a few dict look-ups and increments.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from natsmesh.wire import SpanMessage

#: upper bounds (seconds) of the duration histogram buckets; +Inf follows
BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
SERVER, CLIENT, ERROR = 1, 2, 2
#: request body size (CLIENT: sent, SERVER: received); reply body size (SERVER: sent, CLIENT: received)
BODY_SIZE = "messaging.message.body.size"
REPLY_SIZE = "mesh.reply.body.size"
#: the instance figures read from ``$SRV.STATS`` metadata, as (key, metric, help)
EXPORT_COUNTERS = (
    ("spans_published", "natsmesh_span_export_published", "Spans an instance published."),
    ("spans_acked", "natsmesh_span_export_acked", "Spans the span stream acknowledged."),
    ("spans_dropped", "natsmesh_span_export_dropped", "Spans an instance dropped (queue full, NATS away)."),
    ("spans_failed", "natsmesh_span_export_failed", "Spans the span stream refused."),
)  # fmt: skip


class Red:
    """Cumulative rate, errors and duration figures of one tool or edge."""

    __slots__ = ("bytes_in", "bytes_out", "calls", "counts", "errors", "seconds")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.seconds = 0.0
        #: non-cumulative bucket counts; the last one is +Inf
        self.counts = [0] * (len(BUCKETS) + 1)
        self.bytes_in = 0
        self.bytes_out = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "errors": self.errors,
            "seconds": self.seconds,
            "counts": list(self.counts),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }


class Tokens:
    """LLM turns and tokens of one (model, provider, agent)."""

    __slots__ = ("calls", "input", "output")

    def __init__(self) -> None:
        self.calls = 0
        self.input = 0
        self.output = 0


def _label(value: Any) -> str:
    return value if value.__class__ is str else str(value)


def _count(value: Any) -> int:
    return value if value.__class__ is int and value > 0 else 0


def quantile(q: float, counts: list[int]) -> float | None:
    """The ``q`` quantile (seconds) of a histogram, interpolated as Prometheus does."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if seen + count >= rank and count > 0:
            if i == len(BUCKETS):  # +Inf: the highest finite bound is all we know
                return BUCKETS[-1]
            low = BUCKETS[i - 1] if i else 0.0
            return low + (BUCKETS[i] - low) * ((rank - seen) / count)
        seen += count
    return BUCKETS[-1]


class MeshMetrics:
    """Absorbs span messages; renders RED figures for Prometheus and the dashboard."""

    def __init__(self) -> None:
        self.tools: dict[tuple[str, str], Red] = {}
        self.edges: dict[tuple[str, str, str], Red] = {}
        self.tokens: dict[tuple[str, str, str], Tokens] = {}
        #: instance id -> (agent, ``$SRV.STATS`` metadata), replaced at every poll
        self.instances: dict[str, tuple[str, dict[str, Any]]] = {}
        self.spans = 0
        self.started = time.time()
        self._sources: list[Callable[[], Iterable[Metric]]] = []
        self._registry: CollectorRegistry | None = None

    # --- absorbing ------------------------------------------------------------------

    def absorb(self, span: SpanMessage) -> None:
        """Count one finished span (cheap: called for every span of the mesh).

        Span messages come from any process on the mesh: attribute values of the wrong
        type become strings (labels) or are ignored (sizes, tokens); nothing here raises.
        """
        self.spans += 1
        attrs = span.attrs
        kind = span.kind
        if kind in (SERVER, CLIENT) and "mesh.tool" in attrs:
            tool = _label(attrs["mesh.tool"])
            if kind == SERVER:
                key = (span.service, tool)
                red = self.tools.get(key)
                if red is None:
                    red = self.tools[key] = Red()
                received, sent = attrs.get(BODY_SIZE), attrs.get(REPLY_SIZE)
            else:
                callee = attrs.get("mesh.agent")
                if callee is None:  # a hop that never reached a provider
                    return
                caller = attrs.get("mesh.caller") or span.service
                edge = (_label(caller), _label(callee), tool)
                red = self.edges.get(edge)
                if red is None:
                    red = self.edges[edge] = Red()
                sent, received = attrs.get(BODY_SIZE), attrs.get(REPLY_SIZE)
            seconds = max(0.0, (span.end - span.start) / 1e9)
            red.calls += 1
            if span.status == ERROR:
                red.errors += 1
            red.seconds += seconds
            red.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            if received.__class__ is int and received > 0:
                red.bytes_in += received
            if sent.__class__ is int and sent > 0:
                red.bytes_out += sent
        tokens_in = attrs.get("gen_ai.usage.input_tokens")
        if tokens_in is not None:
            model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model") or "?"
            key3 = (_label(model), _label(attrs.get("gen_ai.system", "")), span.service)
            usage = self.tokens.get(key3)
            if usage is None:
                usage = self.tokens[key3] = Tokens()
            usage.calls += 1
            usage.input += _count(tokens_in)
            usage.output += _count(attrs.get("gen_ai.usage.output_tokens"))

    def absorb_all(self, spans: Iterable[SpanMessage]) -> None:
        """Count several spans."""
        for span in spans:
            self.absorb(span)

    def set_instances(self, stats: Iterable[dict[str, Any]]) -> None:
        """Replace the per-instance figures with fresh ``$SRV.STATS`` answers."""
        self.instances = {
            str(s.get("id", "?")): (str(s.get("name", "?")), dict(s.get("metadata") or {}))
            for s in stats
        }

    def add_source(self, source: Callable[[], Iterable[Metric]]) -> None:
        """Render more metric families at each scrape (the collector's own counters)."""
        self._sources.append(source)

    # --- Prometheus -----------------------------------------------------------------

    @property
    def registry(self) -> CollectorRegistry:
        """A registry holding only these metrics (nothing process-global)."""
        if self._registry is None:
            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(_Exposition(self))  # type: ignore[arg-type]
        return self._registry

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        """Every metric family, built from the figures now."""
        yield from _red_families("natsmesh_tool", ["agent", "tool"], dict(self.tools), "tool")
        yield from _red_families(
            "natsmesh_edge", ["caller", "callee", "tool"], dict(self.edges), "caller→callee edge"
        )
        labels = ["model", "provider", "agent"]
        tokens = CounterMetricFamily(
            "natsmesh_llm_tokens",
            "LLM tokens by model, provider and direction.",
            labels=[*labels, "type"],
        )
        turns = CounterMetricFamily("natsmesh_llm_calls", "LLM turns by model.", labels=labels)
        for key, usage in dict(self.tokens).items():
            tokens.add_metric([*key, "input"], usage.input)
            tokens.add_metric([*key, "output"], usage.output)
            turns.add_metric(list(key), usage.calls)
        yield tokens
        yield turns
        inflight = GaugeMetricFamily(
            "natsmesh_calls_in_flight", "Calls running on an instance ($SRV.STATS).",
            labels=["agent", "instance"],
        )  # fmt: skip
        export = [
            CounterMetricFamily(name, text, labels=["agent", "instance"])
            for _, name, text in EXPORT_COUNTERS
        ]
        for instance, (agent, data) in dict(self.instances).items():
            if "in_flight" in data:
                inflight.add_metric([agent, instance], float(data["in_flight"]))
            for family, (field, _, _) in zip(export, EXPORT_COUNTERS, strict=True):
                if field in data:
                    family.add_metric([agent, instance], float(data[field]))
        yield inflight
        yield from export
        absorbed = CounterMetricFamily(
            "natsmesh_metrics_spans", "Spans these metrics were computed from."
        )
        absorbed.add_metric([], self.spans)
        yield absorbed
        for source in self._sources:
            yield from source()

    # --- the dashboard's view -------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Cumulative figures as plain data (keys joined with ``|``)."""
        return {
            "time": time.time(),
            "spans": self.spans,
            "tools": {"|".join(k): r.as_dict() for k, r in dict(self.tools).items()},
            "edges": {"|".join(k): r.as_dict() for k, r in dict(self.edges).items()},
            "tokens": {
                "|".join(k): {"calls": t.calls, "input": t.input, "output": t.output}
                for k, t in dict(self.tokens).items()
            },
            "instances": {
                i: {"agent": agent, **{k: v for k, v in data.items() if k != "agent"}}
                for i, (agent, data) in dict(self.instances).items()
            },
        }


class _Exposition:
    """The prometheus-client collector over a :class:`MeshMetrics`."""

    def __init__(self, metrics: MeshMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self.metrics.collect()


def _red_families(
    prefix: str, labels: list[str], figures: dict[Any, Red], what: str
) -> Iterator[Metric]:
    calls = CounterMetricFamily(f"{prefix}_calls", f"Calls per {what}.", labels=labels)
    errors = CounterMetricFamily(f"{prefix}_errors", f"Failed calls per {what}.", labels=labels)
    duration = HistogramMetricFamily(
        f"{prefix}_duration_seconds", f"Call duration per {what}.", labels=labels
    )
    received = CounterMetricFamily(
        f"{prefix}_received_bytes", f"Body bytes received per {what}.", labels=labels
    )
    sent = CounterMetricFamily(
        f"{prefix}_sent_bytes", f"Body bytes sent per {what}.", labels=labels
    )
    for key, red in figures.items():
        values = list(key)
        counts = list(red.counts)
        calls.add_metric(values, red.calls)
        errors.add_metric(values, red.errors)
        cumulative, buckets = 0, []
        for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        duration.add_metric(values, buckets, red.seconds)
        received.add_metric(values, red.bytes_in)
        sent.add_metric(values, red.bytes_out)
    yield from (calls, errors, duration, received, sent)
