"""The call tree of one trace: build it from span messages and render it as text."""

from __future__ import annotations

import dataclasses

from natsmesh.wire import SpanMessage

SERVER, CLIENT = 1, 2
ERROR = 2


@dataclasses.dataclass
class Node:
    """A shown span and the shown spans below it."""

    span: SpanMessage
    children: list[Node] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.span.status == ERROR or any(c.failed for c in self.children)


def _shown(span: SpanMessage) -> bool:
    """Tool executions (SERVER spans) are shown; CLIENT hops fold into them."""
    return span.kind == SERVER


def build(spans: list[SpanMessage]) -> list[Node]:
    """Roots of the tree of shown spans, children in start order."""
    by_id = {s.span_id: s for s in spans}
    nodes = {s.span_id: Node(s) for s in spans if _shown(s)}
    roots: list[Node] = []
    for span_id, node in nodes.items():
        parent_id = node.span.parent_id
        parent = None
        while parent_id is not None and parent_id in by_id:
            if parent_id in nodes and parent_id != span_id:
                parent = nodes[parent_id]
                break
            parent_id = by_id[parent_id].parent_id
        (parent.children if parent else roots).append(node)
    for node in nodes.values():
        node.children.sort(key=lambda n: n.span.start)
    roots.sort(key=lambda n: n.span.start)
    return roots


def complete(spans: list[SpanMessage]) -> bool:
    """True when no span waits for its parent and every successful CLIENT span has a child."""
    ids = {s.span_id for s in spans}
    parents = {s.parent_id for s in spans}
    for s in spans:
        if s.parent_id is not None and s.parent_id not in ids and s.kind != SERVER:
            return False
        if s.kind == CLIENT and s.status != ERROR and s.span_id not in parents:
            return False
    return bool(spans)


def _ms(ns: int) -> str:
    ms = ns / 1e6
    return f"{ms:.0f}ms" if ms >= 10 else f"{ms:.1f}ms" if ms >= 1 else f"{ms:.2f}ms"


def _label(span: SpanMessage) -> str:
    mark = "✗" if span.status == ERROR else "✓"
    text = f"{span.name} ({span.service}) [{_ms(span.end - span.start)}] {mark}"
    if span.status == ERROR:
        kind = span.attrs.get("error.type", "error")
        text += f" {kind}: {span.status_message}" if span.status_message else f" {kind}"
    tokens_in = span.attrs.get("gen_ai.usage.input_tokens")
    tokens_out = span.attrs.get("gen_ai.usage.output_tokens")
    if tokens_in is not None or tokens_out is not None:
        text += f"   in {tokens_in or 0} out {tokens_out or 0} tokens"
    chunks = span.attrs.get("mesh.stream.chunks")
    if chunks:
        first = span.attrs.get("mesh.stream.first_chunk_ms", 0)
        text += f"   {chunks} chunks, first at {_ms(int(first * 1e6))}"
    return text


def render(trace_id: str, spans: list[SpanMessage], payloads: bool = False) -> str:
    """The text tree and the summary line; with ``payloads``, each span's recorded
    request and reply under it."""
    roots = build(spans)
    lines = [f"Call Tree for trace {trace_id}"]

    def walk(node: Node, prefix: str, last: bool) -> None:
        lines.append(f"{prefix}{'└─ ' if last else '├─ '}{_label(node.span)}")
        child_prefix = prefix + ("   " if last else "│  ")
        if payloads:
            for key, name in (("mesh.request.payload", "args"), ("mesh.reply.payload", "reply")):
                if key in node.span.attrs:
                    bar = "│  " if node.children else "   "
                    lines.append(f"{child_prefix}{bar}{name}: {node.span.attrs[key]}")
        for i, child in enumerate(node.children):
            walk(child, child_prefix, i == len(node.children) - 1)

    for i, root in enumerate(roots):
        walk(root, "", i == len(roots) - 1)
    shown = [s for s in spans if _shown(s)]
    agents = {s.service for s in shown}
    total = (max(s.end for s in spans) - min(s.start for s in spans)) if spans else 0
    ok = "✗" if any(s.status == ERROR for s in spans) else "✓"
    lines.append(f"Summary: {len(shown)} spans across {len(agents)} agents | {_ms(total)} | {ok}")
    return "\n".join(lines)
