"""FastAPI helper: inject mesh tools into route handlers, continuing the request's trace.

::

    import natsmesh as mesh
    from fastapi import FastAPI

    app = FastAPI(lifespan=mesh.fastapi.lifespan())
    mesh.fastapi.add_error_handler(app)


    @app.post("/plan")
    async def plan(body: Trip, plan_trip: mesh.MeshTool = mesh.fastapi.tool("plan_trip")):
        return {"plan": await plan_trip(**body.model_dump())}

Needs the ``fastapi`` extra (``pip install 'natsmesh[fastapi]'``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

try:
    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import Response
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("natsmesh.fastapi needs FastAPI: pip install 'natsmesh[fastapi]'") from exc

from natsmesh.client import CallContext, MeshClient
from natsmesh.config import Settings
from natsmesh.edge.http_errors import mesh_error_body, status_of
from natsmesh.errors import MeshError, NoProvider
from natsmesh.injection import MeshTool
from natsmesh.specs import DependencySpec
from natsmesh.tracing.context import format_traceparent, new_span_id, new_trace_id

#: where the lifespan keeps the client: ``app.state.natsmesh``
STATE = "natsmesh"


def lifespan(
    settings: Settings | None = None, *, caller: str = "fastapi", tracing: bool = True
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A FastAPI ``lifespan`` that connects the app to the mesh while it runs.

    ``settings`` default to the environment (``NATS_URL``, ``NATSMESH_*``), read when the
    app starts. With ``tracing``, each call makes a CLIENT span (service ``caller``).
    """

    @contextlib.asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        from natsmesh.session import connect

        async with connect(settings or Settings.from_env(), caller=caller, tracing=tracing) as c:
            setattr(app.state, STATE, c)
            try:
                yield
            finally:
                delattr(app.state, STATE)

    return run


def client_of(request: Request) -> MeshClient:
    """The mesh client the app's lifespan connected."""
    client = getattr(request.app.state, STATE, None)
    if client is None:
        raise RuntimeError(
            "the app is not connected to the mesh: create it with "
            "FastAPI(lifespan=natsmesh.fastapi.lifespan())"
        )
    return client


def call_context(request: Request) -> CallContext:
    """The trace context of the request: its ``traceparent``, or one new trace per request
    (shared by every tool the handler calls)."""
    context = getattr(request.state, "natsmesh_context", None)
    if context is None:
        traceparent = request.headers.get("traceparent")
        tracestate = request.headers.get("tracestate")
        if not traceparent:
            traceparent, tracestate = format_traceparent(new_trace_id(), new_span_id()), None
        context = CallContext(traceparent=traceparent, tracestate=tracestate)
        request.state.natsmesh_context = context
    return context


def tool(name: str, *, tags: Any = None, version: str | None = None) -> Any:
    """A dependency that injects a :class:`~natsmesh.MeshTool` for the tool (or capability)
    ``name``: ``plan: mesh.MeshTool = mesh.fastapi.tool("plan_trip")``.

    The proxy's calls continue the HTTP request's ``traceparent``. The name is resolved
    per request, so a provider that starts later is found; with none alive, calling the
    proxy raises :class:`~natsmesh.NoProvider`.
    """

    def inject(request: Request) -> MeshTool:
        client = client_of(request)
        try:
            dep = client.dependency_for(name, tags, version)
        except NoProvider:
            dep = client.dependency_for(DependencySpec(name), tags, version)
        return MeshTool(client, dep, call_context(request))

    return Depends(inject)


async def error_handler(request: Request, exc: Exception) -> Response:
    """Answer a :class:`~natsmesh.MeshError` a handler let through as the gateway does:
    the error envelope as JSON, with the status of its type (404, 422, 502, 503, 504...)."""
    if not isinstance(exc, MeshError):
        raise exc
    return Response(mesh_error_body(exc), status_of(exc), media_type="application/json")


def add_error_handler(app: FastAPI) -> None:
    """Register :func:`error_handler` for every mesh error."""
    app.add_exception_handler(MeshError, error_handler)


__all__ = ["add_error_handler", "call_context", "client_of", "error_handler", "lifespan", "tool"]
