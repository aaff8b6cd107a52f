"""The HTTP gateway: live tools as JSON endpoints, SSE streams and an OpenAPI document.

Routes (each call ends in one ``client.call`` or ``client.stream``)::

    GET  /healthz           the process is up
    GET  /readyz            NATS is connected and the registry view is loaded (else 503)
    GET  /tools             the live tools and their schemas, from the registry view
    GET  /tools/{name}      one of them (404 when no live agent offers it)
    POST /tools/{name}      call it: JSON arguments in, JSON result out; query parameters
                            ``tags``, ``version``, ``timeout``; ``Accept: text/event-stream``
                            streams it (see :mod:`natsmesh.edge.responses`)
    GET  /openapi.json      OpenAPI 3.1, one path per live tool

Other faces plug in as :class:`~natsmesh.edge.faces.Face` objects (routes, a lifespan,
public paths): the MCP server at ``/mcp`` and the dashboard at ``/`` and ``/metrics``
come from :func:`~natsmesh.edge.faces.optional_faces` when their modules are installed;
:mod:`natsmesh.edge.serving` runs it all with uvicorn.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import natsmesh
from natsmesh import wire
from natsmesh.client import CallContext, MeshClient
from natsmesh.edge import openapi
from natsmesh.edge.auth import BearerAuth
from natsmesh.edge.faces import Face
from natsmesh.edge.http_errors import BAD_REQUEST, HttpError
from natsmesh.edge.responses import (
    CLIENT_GONE,
    KEEPALIVE,
    CallResponse,
    EventStreamResponse,
)
from natsmesh.errors import MeshError, NoProvider
from natsmesh.selection import parse_constraint
from natsmesh.specs import parse_tags
from natsmesh.tracing.context import format_traceparent, new_span_id, new_trace_id
from natsmesh.tracing.context import parse_traceparent as parse_tp

DEFAULT_PORT = 8080
LOOPBACK = "127.0.0.1"
#: paths served without a token, so that probes need no secret
PUBLIC_PATHS = ("/healthz", "/readyz")
TRACE_ID_HEADER = "x-trace-id"


@dataclasses.dataclass(frozen=True)
class GatewayConfig:
    """How the gateway serves. Build it with :meth:`from_env` (``NATSMESH_GATEWAY_*``)."""

    #: ``None``: loopback without tokens, every interface with them
    host: str | None = None
    port: int = DEFAULT_PORT
    tokens: tuple[str, ...] = ()
    #: largest request body in bytes; ``None``: the NATS server's max payload
    max_body: int | None = None
    #: browser origins allowed to call the gateway (CORS), e.g. ``https://app.example``
    cors_origins: tuple[str, ...] = ()
    #: seconds of silence before an event stream sends a keep-alive comment
    sse_keepalive: float = KEEPALIVE

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> GatewayConfig:
        """``NATSMESH_GATEWAY_HOST``, ``_PORT``, ``_TOKENS`` and ``_CORS_ORIGINS``
        (comma-separated), ``_MAX_BODY``; keyword overrides that are not ``None`` win
        (``tokens`` and ``cors_origins`` are added)."""
        import os

        from natsmesh.edge.auth import parse_tokens

        e = os.environ if env is None else env

        def number(name: str) -> int | None:
            text = e.get(name, "").strip()
            if text and not text.isdigit():
                raise ValueError(f"{name} must be a whole number, not {text!r}")
            return int(text) if text else None

        port = number("NATSMESH_GATEWAY_PORT")
        values: dict[str, Any] = {
            "host": e.get("NATSMESH_GATEWAY_HOST") or None,
            "port": DEFAULT_PORT if port is None else port,
            "max_body": number("NATSMESH_GATEWAY_MAX_BODY"),
        }
        tokens = parse_tokens([e.get("NATSMESH_GATEWAY_TOKENS", ""), *overrides.pop("tokens", ())])
        origins = parse_tokens(
            [e.get("NATSMESH_GATEWAY_CORS_ORIGINS", ""), *overrides.pop("cors_origins", ())]
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(tokens=tokens, cors_origins=origins, **values)

    @property
    def bind_host(self) -> str:
        """The address to bind: loopback unless tokens protect the gateway."""
        if self.host:
            return self.host
        return "0.0.0.0" if self.tokens else LOOPBACK


class _Gateway:
    """The gateway's own routes, bound to one mesh client."""

    def __init__(self, client: MeshClient, config: GatewayConfig) -> None:
        self.client = client
        self.config = config
        self._catalog: list[dict[str, Any]] | None = None
        self._document: bytes | None = None

    def changed(self) -> None:
        """The registry changed: the catalogue and the OpenAPI document are rebuilt."""
        self._catalog = self._document = None

    def catalog(self) -> list[dict[str, Any]]:
        if self._catalog is None:
            self._catalog = openapi.catalog(self.client.view.records.values())
        return self._catalog

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            Route("/tools", self.list_tools),
            Route("/tools/{name}", self.describe_tool, methods=["GET"]),
            Route("/tools/{name}", self.call_tool, methods=["POST"]),
            Route("/openapi.json", self.openapi_json),
        ]

    async def healthz(self, request: Request) -> Response:
        return _json(200, {"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        state = self.client.transport.state
        ready = state == "connected"
        body = {
            "ready": ready,
            "nats": state,
            "instances": len(self.client.view.records),
            "tools": len(self.catalog()),
        }
        return _json(200 if ready else 503, body)

    async def list_tools(self, request: Request) -> Response:
        return _json(200, {"tools": self.catalog()})

    async def describe_tool(self, request: Request) -> Response:
        name = request.path_params["name"]
        for tool in self.catalog():
            if tool["name"] == name:
                return _json(200, tool)
        error = NoProvider(f"no live agent offers a tool named {name!r}")
        return _json(404, {"error": error.to_wire()})

    async def openapi_json(self, request: Request) -> Response:
        if self._document is None:
            doc = openapi.document(self.catalog(), natsmesh.__version__, bool(self.config.tokens))
            self._document = wire.encode_json(doc)
        return Response(self._document, media_type="application/json")

    async def call_tool(self, request: Request) -> Any:
        name = request.path_params["name"]
        try:
            options = _call_options(request)
            body = await _read_body(
                request, self.config.max_body or self.client.transport.max_payload
            )
        except HttpError as exc:
            return Response(exc.body(), exc.status, media_type="application/json")
        trace = request_trace(self.client, request, name)
        headers = [(TRACE_ID_HEADER.encode(), trace.trace_id.encode())]
        headers.append((b"traceparent", trace.traceparent.encode()))
        client = self.client
        if "text/event-stream" in request.headers.get("accept", ""):
            return EventStreamResponse(
                lambda: client.stream(name, body, context=trace.context, **options),
                headers,
                trace.finish,
                self.config.sse_keepalive,
            )
        return CallResponse(
            lambda: client.call(name, body, context=trace.context, **options),
            headers,
            trace.finish,
        )


def _json(status: int, value: Any) -> Response:
    return Response(wire.encode_json(value), status, media_type="application/json")


def _call_options(request: Request) -> dict[str, Any]:
    """``tags``, ``version`` and ``timeout`` from the query string; 400 when malformed."""
    query = request.query_params
    options: dict[str, Any] = {}
    try:
        if query.get("tags"):
            # a tag has no spaces: one here is a `+` (preferred) that was not URL-encoded
            options["tags"] = parse_tags(query["tags"].replace(" ", "+"))
        if query.get("version"):
            parse_constraint(query["version"])
            options["version"] = query["version"]
        if query.get("timeout"):
            timeout = float(query["timeout"])
            if not timeout > 0:
                raise ValueError("timeout must be a positive number of seconds")
            options["timeout"] = timeout
    except (ValueError, TypeError) as exc:
        raise HttpError(400, BAD_REQUEST, f"bad query parameter: {exc}") from None
    return options


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, checked to be a JSON object (or empty); 400 or 413 otherwise."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HttpError(400, BAD_REQUEST, "malformed Content-Length")
        if int(length) > limit:
            raise HttpError(413, "payload_too_large", f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, "payload_too_large", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        return b"{}"
    try:
        value = wire.decode_json(body)
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HttpError(400, BAD_REQUEST, f"malformed JSON body: {message}") from None
    if not isinstance(value, dict):
        raise HttpError(400, BAD_REQUEST, "the body must be a JSON object of the tool's arguments")
    return body


@dataclasses.dataclass
class RequestTrace:
    """The trace one HTTP request belongs to, and the gateway's span in it."""

    #: what the mesh call continues
    context: CallContext
    trace_id: str
    #: the gateway's span, sent back in the response's ``traceparent`` header
    traceparent: str
    span: Any = None

    def finish(self, status: int, error: MeshError | None) -> None:
        """End the gateway's span with the response's status."""
        span = self.span
        if span is None:
            return
        span.set_attribute("http.response.status_code", status)
        if error is not None:
            span.fail(error.type, error.message)
        elif status == CLIENT_GONE:
            span.fail("cancelled", "the HTTP client went away")
        span.end()


def request_trace(client: MeshClient, request: Request, tool: str) -> RequestTrace:
    """The gateway's SERVER span for a call request, child of the client's ``traceparent``
    when it sent one, else the root of a new trace. Without tracing, no span is recorded
    but the call still carries a trace context (the client's, or a new one)."""
    traceparent = request.headers.get("traceparent")
    tracestate = request.headers.get("tracestate")
    tracing = client.tracing
    if tracing is None:
        parent = parse_tp(traceparent)
        if parent is None:
            traceparent, tracestate = format_traceparent(new_trace_id(), new_span_id()), None
            parent = parse_tp(traceparent)
        assert parent is not None and traceparent is not None
        return RequestTrace(
            CallContext(traceparent=traceparent, tracestate=tracestate),
            parent.trace_id,
            traceparent,
        )
    span = tracing.server_span(
        f"POST /tools/{tool}",
        request.headers,
        {
            "http.request.method": request.method,
            "http.route": "/tools/{name}",
            "url.path": request.url.path,
            "mesh.tool": tool,
        },
    )
    return RequestTrace(
        CallContext(traceparent=span.traceparent, tracestate=tracestate),
        span.trace_id_hex,
        span.traceparent,
        span,
    )


def _cors(config: GatewayConfig) -> list[Middleware]:
    """CORS for the configured origins, outside authentication (a preflight carries no
    token); browsers may read the trace headers."""
    if not config.cors_origins:
        return []
    from starlette.middleware.cors import CORSMiddleware

    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "accept", "traceparent", "tracestate"],
            expose_headers=[TRACE_ID_HEADER, "traceparent"],
            max_age=600,
        )
    ]


def build_app(
    client: MeshClient, config: GatewayConfig | None = None, faces: Sequence[Face] = ()
) -> Starlette:
    """The gateway's ASGI app over a connected client, with extra ``faces`` mounted.

    Its own routes come first; a face cannot shadow them. Bearer authentication covers
    every route but ``/healthz``, ``/readyz`` and the faces' public paths.
    """
    config = config or GatewayConfig()
    gateway = _Gateway(client, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        remove = client.view.add_listener(gateway.changed)
        try:
            async with contextlib.AsyncExitStack() as stack:
                for face in faces:
                    if face.lifespan is not None:
                        await stack.enter_async_context(face.lifespan())
                yield
        finally:
            remove()

    public = [*PUBLIC_PATHS, *(p for face in faces for p in face.public)]
    return Starlette(
        routes=[*gateway.routes(), *(r for face in faces for r in face.routes)],
        middleware=[*_cors(config), Middleware(BearerAuth, tokens=config.tokens, public=public)],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_exception},
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) in the gateway's error shape."""
    assert isinstance(exc, HTTPException)
    error_type = exc.detail.lower().replace(" ", "_")
    message = f"{request.method} {request.url.path}: {exc.detail.lower()}"
    response = _json(
        exc.status_code, {"error": {"type": error_type, "message": message, "details": {}}}
    )
    response.headers.update(exc.headers or {})
    return response
