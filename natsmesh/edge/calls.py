"""``POST /api/call/{tool}``: the dashboard's form calling a tool, as JSON or as a stream.

A thin route: refuse cross-site requests, parse the body, make the trace the call belongs to, then one
``client.call`` (a JSON answer) or one ``client.stream`` (Server-Sent Events: a
``chunk`` event per streamed part, then ``result`` or ``error``). Every answer names
its ``trace_id`` so the dashboard can open the call's trace.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from natsmesh.call_context import CallContext
from natsmesh.edge.http_errors import STATUS
from natsmesh.errors import MeshError
from natsmesh.tracing.context import format_traceparent, new_span_id, new_trace_id

if TYPE_CHECKING:
    from natsmesh.client import MeshClient


def _event(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": "invalid_arguments", "message": message}}, 400)


def _cross_site(request: Request) -> JSONResponse | None:
    """Refuse what another web site's page could send: a browser sends a cross-origin
    ``application/json`` POST only after a preflight this app never answers, and names
    the page's origin."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return JSONResponse(
            {
                "error": {
                    "type": "invalid_arguments",
                    "message": "send the arguments as application/json",
                }
            },
            415,
        )
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        return JSONResponse(
            {"error": {"type": "forbidden", "message": f"calls from {origin} are not allowed"}},
            403,
        )
    return None


def streams(client: MeshClient, tool: str) -> bool:
    """True when a live provider of ``tool`` (a name or a capability) streams."""
    return any(
        t.stream
        for r in client.view.records.values()
        for t in r.tools
        if tool in (t.name, t.capability)
    )


@contextlib.contextmanager
def _trace(client: MeshClient, tool: str) -> Iterator[tuple[str, CallContext]]:
    """The trace of one call: an INTERNAL root span when this client records spans."""
    tracing = client.tracing
    if tracing is None:
        trace_id = new_trace_id()
        yield trace_id, CallContext(traceparent=format_traceparent(trace_id, new_span_id()))
        return
    from opentelemetry.trace import SpanKind

    from natsmesh.tracing.spans import MeshSpan

    span = MeshSpan(
        tracing.processor,
        tracing.service,
        tracing.instance,
        f"dashboard call {tool}",
        SpanKind.INTERNAL,
        None,
        {"mesh.tool": tool},
    )
    try:
        yield f"{span.trace_id:032x}", CallContext(otel_context=tracing.context_of(span))
    finally:
        span.end()


async def call_response(client: MeshClient, request: Request) -> Response:
    """Answer one call request (see the module docstring)."""
    tool = request.path_params["tool"]
    refused = _cross_site(request)
    if refused is not None:
        return refused
    body = await request.body()
    try:
        arguments = json.loads(body) if body.strip() else {}
    except ValueError as exc:
        return _bad(f"the body is not valid JSON ({exc})")
    if not isinstance(arguments, dict):
        return _bad(f"the body must be a JSON object of arguments, not {type(arguments).__name__}")
    try:
        timeout = float(request.query_params.get("timeout", client.settings.timeout))
    except ValueError:
        return _bad("timeout is a number of seconds")
    wants_stream = request.query_params.get("stream") in ("1", "true") or streams(client, tool)
    if not wants_stream:
        with _trace(client, tool) as (trace_id, context):
            try:
                result = await client.call(tool, arguments, timeout=timeout, context=context)
            except MeshError as exc:
                return JSONResponse(
                    {"error": exc.to_wire(), "trace_id": trace_id}, STATUS.get(exc.type, 500)
                )
        return JSONResponse({"result": result, "trace_id": trace_id})

    async def events() -> AsyncIterator[bytes]:
        with _trace(client, tool) as (trace_id, context):
            yield _event("trace", {"trace_id": trace_id})
            try:
                async with client.stream(
                    tool, arguments, timeout=timeout, context=context
                ) as parts:
                    async for chunk in parts:
                        yield _event("chunk", chunk)
                yield _event("result", {"result": parts.result, "trace_id": trace_id})
            except MeshError as exc:
                yield _event("error", {"error": exc.to_wire(), "trace_id": trace_id})

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
