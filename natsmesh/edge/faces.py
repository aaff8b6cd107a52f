"""Faces: what the gateway serves beside its own routes (the MCP server, the dashboard)."""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from natsmesh.client import MeshClient

log = logging.getLogger("natsmesh.gateway")

#: the optional faces: (module, factory called with the client, path it is served at)
FACTORIES = (
    ("natsmesh.edge.mcp_server", "mcp_asgi_app", "/mcp"),
    ("natsmesh.edge.dashboard", "dashboard_routes", "/"),
)


@dataclasses.dataclass(frozen=True)
class Face:
    """Something the gateway serves beside its own routes (the MCP server, the dashboard)."""

    routes: Sequence[BaseRoute] = ()
    #: entered when the gateway starts, left when it stops (a session manager, a poller)
    lifespan: Callable[[], AbstractAsyncContextManager[Any]] | None = None
    #: paths served without a bearer token (an entry ending in ``/`` covers what is below)
    public: Sequence[str] = ()


class _Asgi:
    """An ASGI app as a route endpoint (Starlette would treat a plain function as a view)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def mounted(path: str, app: ASGIApp) -> Face:
    """A face serving the ASGI ``app`` at ``path`` and below (the path is passed on
    unchanged). The app's own lifespan runs with the gateway's: its ``lifespan()`` method
    when it has one (``McpApp``), else a Starlette app's router lifespan."""
    own = getattr(app, "lifespan", None)
    router = getattr(app, "router", None)
    lifespan: Callable[[], AbstractAsyncContextManager[Any]] | None = None
    if callable(own):
        lifespan = own
    elif router is not None and hasattr(router, "lifespan_context"):
        lifespan = lambda: router.lifespan_context(app)  # noqa: E731
    endpoint = _Asgi(app)
    return Face(
        routes=[Route(path, endpoint), Route(path.rstrip("/") + "/{rest:path}", endpoint)],
        lifespan=lifespan,
    )


def as_face(made: Any, path: str) -> Face:
    """What a face factory returned, as a :class:`Face`: a face as it is; a list of routes;
    an object with ``routes()`` and ``lifespan()`` (a dashboard); or an ASGI app, served
    at ``path``."""
    if isinstance(made, Face):
        return made
    routes = getattr(made, "routes", None)
    if callable(routes) and callable(getattr(made, "lifespan", None)):
        return Face(routes=list(routes()), lifespan=made.lifespan)
    if isinstance(made, Sequence):
        return Face(routes=list(made))
    if path == "/":
        return Face(routes=[Mount("/", made)])
    return mounted(path, made)


def optional_faces(client: MeshClient) -> list[Face]:
    """The faces whose modules are installed, each made by one factory called with the
    client: ``natsmesh.edge.mcp_server.mcp_asgi_app`` (served at ``/mcp``) and
    ``natsmesh.edge.dashboard.dashboard_routes`` (``/``, ``/metrics``); see :func:`as_face`."""
    faces: list[Face] = []
    for module_name, factory, path in FACTORIES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            log.debug("gateway: no %s (%s)", module_name, exc)
            continue
        faces.append(as_face(getattr(module, factory)(client), path))
    return faces
