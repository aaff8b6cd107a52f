"""The call tree from span messages, and spans read back from Tempo's JSON."""

from __future__ import annotations

import base64

from natsmesh.tracing import tree
from natsmesh.tracing.store import spans_from_otlp_json
from natsmesh.wire import SpanMessage

T = "2bb20ffe16ff3e03ff356aada9d11947"


def span(
    span_id: str, parent: str | None, name: str, service: str, kind: int, start: int, end: int, **kw
) -> SpanMessage:
    return SpanMessage(trace_id=T, span_id=span_id, parent_id=parent, name=name, service=service,
                       kind=kind, start=start, end=end, **kw)  # fmt: skip


def test_render_folds_client_spans_and_sums_up() -> None:
    spans = [
        span("a" * 16, "f" * 16, "flight_search", "flight-agent", 1, 0, 3_000_000),
        span("b" * 16, "a" * 16, "call user_preferences", "flight-agent", 2, 100_000, 1_200_000),
        span("c" * 16, "b" * 16, "get_user_prefs", "user-prefs-agent", 1, 200_000, 1_200_000),
    ]
    assert tree.render(T, spans).splitlines() == [
        f"Call Tree for trace {T}",
        "└─ flight_search (flight-agent) [3.0ms] ✓",
        "   └─ get_user_prefs (user-prefs-agent) [1.0ms] ✓",
        "Summary: 2 spans across 2 agents | 3.0ms | ✓",
    ]


def test_render_marks_errors_and_tokens() -> None:
    spans = [
        span("a" * 16, None, "plan_trip", "planner-agent", 1, 0, 50_000_000, status=2, status_message="boom",
             attrs={"error.type": "tool_error"}),
        span("b" * 16, "a" * 16, "claude_provider", "claude-provider", 1, 1, 20_000_000,
             attrs={"gen_ai.usage.input_tokens": 812, "gen_ai.usage.output_tokens": 95}),
    ]  # fmt: skip
    lines = tree.render(T, spans).splitlines()
    assert lines[1] == "└─ plan_trip (planner-agent) [50ms] ✗ tool_error: boom"
    assert lines[2].endswith("✓   in 812 out 95 tokens")
    assert lines[3].endswith("| ✗")


def test_completeness() -> None:
    client = span("b" * 16, "a" * 16, "call x", "a", 2, 0, 1)
    assert not tree.complete([client])
    assert (
        tree.complete([client, span("c" * 16, "b" * 16, "x", "b", 1, 0, 1)]) is False
    )  # parent a missing
    assert tree.complete(
        [
            span("a" * 16, None, "t", "a", 1, 0, 2),
            client,
            span("c" * 16, "b" * 16, "x", "b", 1, 0, 1),
        ]
    )


def test_tempo_json_becomes_span_messages() -> None:
    b64 = lambda h: base64.b64encode(bytes.fromhex(h)).decode()  # noqa: E731
    data = {
        "batches": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "flight-agent"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {"traceId": b64(T), "spanId": b64("a" * 16), "name": "flight_search",
                             "kind": "SPAN_KIND_SERVER", "startTimeUnixNano": "1000", "endTimeUnixNano": "3001000",
                             "attributes": [{"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}}],
                             "status": {"code": "STATUS_CODE_ERROR", "message": "bad"}},
                        ]
                    }
                ],
            }
        ]
    }  # fmt: skip
    [s] = spans_from_otlp_json(data)
    assert (s.trace_id, s.span_id, s.kind, s.status, s.service) == (
        T,
        "a" * 16,
        1,
        2,
        "flight-agent",
    )
    assert s.attrs["gen_ai.usage.input_tokens"] == 12
    assert s.end - s.start == 3_000_000


def test_a_stream_shows_its_chunks_and_first_chunk() -> None:
    spans = [span("a" * 16, None, "plan_trip", "planner-agent", 1, 0, 50_000_000)]
    spans[0].attrs.update({"mesh.stream.chunks": 412, "mesh.stream.first_chunk_ms": 12.5})
    lines = tree.render("t" * 32, spans).splitlines()
    assert lines[1].endswith("412 chunks, first at 12ms")
