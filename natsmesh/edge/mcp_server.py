"""The mesh as an MCP server: every live mesh tool is an MCP tool, over stdio or streamable HTTP.

One :class:`MeshMcpServer` per process follows the registry view and serves any number of
MCP sessions. Its tool list is rebuilt when the registry changes; when the list really
changes it tells every session: ``notifications/tools/list_changed`` to handshake-era
sessions (up to protocol 2025-11-25, what Claude Desktop and Claude Code speak) and a
``subscriptions/listen`` event to 2026-07-28 sessions. Each ``tools/call`` ends in one
``client.call`` (or ``client.stream``, whose chunks become progress notifications).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.server.transport_security import TransportSecuritySettings
from opentelemetry import context as otel_context
from opentelemetry import trace

from natsmesh import __version__
from natsmesh.client import CallContext, MeshClient
from natsmesh.edge.mcp_tools import Expose, McpTool, error_result, mesh_tools, text, tool_result
from natsmesh.errors import MeshError
from natsmesh.tracing.context import format_traceparent

__all__ = ["Expose", "McpApp", "MeshMcpServer", "mcp_asgi_app", "serve_stdio"]

log = logging.getLogger("natsmesh.mcp")

INSTRUCTIONS = (
    "The tools of a natsmesh agent mesh. The list follows the agents that are running; "
    "each call goes to the best live provider over NATS."
)


def trace_context() -> CallContext | None:
    """The trace context a call continues: the current span's.

    The SDK's server middleware makes a span current for each request, the child of the
    request's ``_meta.traceparent`` when it has one (a non-recording one when this process
    has no OpenTelemetry provider), so the mesh CLIENT span nests under it.
    """
    current = otel_context.get_current()
    span = trace.get_current_span(current).get_span_context()
    if not span.is_valid:
        return None
    traceparent = format_traceparent(span.trace_id, span.span_id, span.trace_flags.sampled)
    return CallContext(otel_context=current, traceparent=traceparent)


class _MeshServer(Server[Any]):
    """The low-level server, advertising ``tools.listChanged`` on every transport."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


class MeshMcpServer:
    """An MCP server whose tools are the live mesh tools (see the module docstring).

    ``client`` is a connected :class:`~natsmesh.MeshClient` (best made with
    ``natsmesh.connect(settings, caller="mcp", tracing=True)``). Call :meth:`following`
    around serving, so the tool list follows the registry.
    """

    def __init__(self, client: MeshClient, expose: Expose | None = None) -> None:
        self.client = client
        self.expose = expose or Expose()
        self.bus = InMemorySubscriptionBus()
        self.listen = ListenHandler(self.bus)
        self.server = _MeshServer(
            "natsmesh",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_subscriptions_listen=self.listen,
        )
        self.server.middleware.insert(0, self._export_spans)  # outside the SDK's span
        self.server.middleware.append(self._track_sessions)
        self.tools = mesh_tools(client.view.records.values(), self.expose)
        self._sessions: list[ServerSession] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        """Follow the registry while the block runs."""
        self.refresh()
        remove = self.client.view.add_listener(self.refresh)
        try:
            yield
        finally:
            remove()
            self.listen.close()
            for task in self._tasks:
                task.cancel()

    def refresh(self) -> None:
        """Rebuild the tool list; tell the sessions when it changed. Runs on every
        registry change, heartbeats included, so it compares before it notifies."""
        tools = mesh_tools(self.client.view.records.values(), self.expose)
        if tools == self.tools:
            return
        added, removed = tools.keys() - self.tools.keys(), self.tools.keys() - tools.keys()
        self.tools = tools
        log.info("MCP tools changed (+%s, -%s)", sorted(added), sorted(removed))
        task = asyncio.get_running_loop().create_task(self._notify())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        await self.bus.publish(ToolsListChanged())
        for session in list(self._sessions):
            try:
                await session.send_tool_list_changed()
            except Exception as exc:  # the session is gone
                log.debug("dropping an MCP session: %s", exc)
                self._forget(session)

    async def _export_spans(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """Export the SDK's span of a ``tools/call`` (the parent of the mesh CLIENT span)
        with this process's spans: spans made with the OpenTelemetry API go to the exporter
        that is attached while they end."""
        tracing = self.client.tracing
        if tracing is None or ctx.method != "tools/call":
            return await call_next(ctx)
        token = tracing.attach(otel_context.get_current())
        try:
            return await call_next(ctx)
        finally:
            tracing.detach(token)

    async def _track_sessions(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """Remember each handshake-era session once it is initialized (it has a standing
        channel for ``list_changed``); 2026-07-28 sessions listen on the bus instead."""
        result = await call_next(ctx)
        if ctx.method == "notifications/initialized":
            session = ctx.session
            self._sessions.append(session)
            # the connection unwinds its exit stack when it closes; the SDK hands the
            # low-level handlers no public way to reach it yet
            connection = getattr(session, "_connection", None)
            if connection is not None:
                connection.exit_stack.callback(self._forget, session)
        return result

    @property
    def sessions(self) -> tuple[ServerSession, ...]:
        """The open handshake-era sessions, which ``list_changed`` is sent to."""
        return tuple(self._sessions)

    def _forget(self, session: ServerSession) -> None:
        with contextlib.suppress(ValueError):
            self._sessions.remove(session)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[t.tool for t in self.tools.values()])

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        entry = self.tools.get(params.name)
        if entry is None:
            return error_result(
                f"no live mesh tool named {params.name!r} is exposed here (tools/list shows them)"
            )
        arguments = params.arguments or {}
        context = trace_context()
        try:
            if entry.stream:
                value = await self._stream(entry, arguments, context, ctx.session)
            else:
                value = await self.client.call(entry.capability, arguments, context=context)
        except MeshError as exc:
            return error_result(exc.message, exc.to_wire())
        except Exception as exc:
            log.exception("MCP call of %s failed", entry.capability)
            return error_result(f"{type(exc).__name__}: {exc}")
        return tool_result(entry, value)

    async def _stream(
        self,
        entry: McpTool,
        arguments: Mapping[str, Any],
        context: CallContext | None,
        session: ServerSession,
    ) -> Any:
        """Each chunk is a progress notification (when the client sent a progress token):
        ``progress`` counts the chunks, ``message`` is the chunk as JSON text."""
        async with self.client.stream(entry.capability, arguments, context=context) as parts:
            count = 0
            async for chunk in parts:
                count += 1
                await session.report_progress(count, None, text(chunk))
        return parts.result


async def serve_stdio(client: MeshClient, expose: Expose | None = None) -> None:
    """Serve MCP over this process's stdin and stdout until the client closes stdin."""
    from mcp.server.stdio import stdio_server

    face = MeshMcpServer(client, expose)
    with face.following():
        async with stdio_server() as (read, write):
            await face.server.run(read, write, face.server.create_initialization_options())


class McpApp:
    """The MCP server as an ASGI app for streamable HTTP (any path: mount it anywhere).

    Run on its own (``uvicorn.run(app)``) it handles its lifespan itself. Mounted in a
    Starlette app (``Mount("/mcp", app=app)``), the parent's lifespan must enter
    ``app.lifespan()``: Starlette does not run a mounted app's lifespan, and the MCP
    session manager only serves inside it.
    """

    def __init__(
        self,
        face: MeshMcpServer,
        *,
        json_response: bool = False,
        security: TransportSecuritySettings | None = None,
    ) -> None:
        self.face = face
        self.session_manager = StreamableHTTPSessionManager(
            app=face.server, json_response=json_response, security_settings=security
        )
        self._asgi = StreamableHTTPASGIApp(self.session_manager)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Serve sessions and follow the registry while the block runs (once per app)."""
        async with self.session_manager.run():
            with self.face.following():
                yield

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self._asgi(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        await receive()  # lifespan.startup
        started = False
        try:
            async with self.lifespan():
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()  # lifespan.shutdown
        except BaseException as exc:
            if not started:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
            raise
        await send({"type": "lifespan.shutdown.complete"})


def mcp_asgi_app(
    client: MeshClient,
    *,
    expose: Expose | None = None,
    json_response: bool = False,
    security: TransportSecuritySettings | None = None,
) -> McpApp:
    """The mesh's MCP server as a streamable-HTTP ASGI app (see :class:`McpApp`).

    ``security`` passes the SDK's DNS-rebinding protection settings through (allowed
    hosts and origins); the default checks nothing, so put authentication in front.
    """
    return McpApp(MeshMcpServer(client, expose), json_response=json_response, security=security)
