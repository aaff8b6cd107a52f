"""The live dashboard: Starlette routes, pushed over Server-Sent Events, and ``/metrics``.

One :class:`Dashboard` per process reads the span stream once (an ordered consumer
feeding the RED metrics and the recent-trace index), polls ``$SRV.STATS`` for calls in
flight, and pushes to every open browser: the topology and the tool catalogue when the
registry changes, the traffic figures once a second, the recent traces when they
change. Tool calls from its form go through ``POST /api/call/{tool}``, which ends in
one ``client.call`` (JSON) or ``client.stream`` (SSE, one event per chunk).

``natsmesh gateway`` includes :func:`dashboard_routes`; ``natsmesh dashboard`` serves
:meth:`Dashboard.app` on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from natsmesh import wire
from natsmesh.ops.overview import dependency_counts
from natsmesh.specs import DependencySpec
from natsmesh.tracing.live import TraceIndex, Trends
from natsmesh.tracing.metrics import MeshMetrics
from natsmesh.tracing.metrics_feed import SpanFeed, StatsPoller

if TYPE_CHECKING:
    from natsmesh.client import MeshClient

log = logging.getLogger("natsmesh.dashboard")
STATIC = Path(__file__).resolve().parent / "static"
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event."""
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


class Dashboard:
    """The dashboard's state and background work; :meth:`routes` serves it."""

    def __init__(
        self,
        client: MeshClient,
        metrics: MeshMetrics | None = None,
        *,
        history: float = 300.0,
        tick: float = 1.0,
        stats_interval: float = 5.0,
    ) -> None:
        self.client = client
        self.metrics = metrics or MeshMetrics()
        self.traces = TraceIndex()
        self.trends = Trends(self.metrics)
        self.tick = tick
        self.feed = SpanFeed(
            client.nc, client.settings, [self.metrics.absorb, self.traces.add], history
        )
        self.poller = StatsPoller(
            client.nc, self.metrics, stats_interval, lambda: len(client.view.records)
        )
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._remove_listener: Any = None
        self._last: dict[str, Any] = {}
        #: why there are no traffic figures and traces, when the span stream cannot be read
        self.feed_error: str | None = None

    # --- life -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start reading spans and pushing (idempotent; routes call it when needed)."""
        async with self._lock:
            if self._task is not None:
                return
            try:
                await self.feed.start()
            except Exception as exc:  # no span stream, or no right to read it: show the rest
                self.feed_error = (
                    f"cannot read the span stream {self.client.settings.spans_stream}: {exc}"
                )
                log.warning("dashboard: %s (no traffic or traces)", self.feed_error)
                self.feed.caught_up.set()
            self.poller.start()
            self._remove_listener = self.client.view.add_listener(self._wake.set)
            self._task = asyncio.create_task(self._run(), name="dashboard push")

    async def stop(self) -> None:
        """Stop pushing; open event streams end."""
        for queue in list(self._clients):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)
        if self._remove_listener is not None:
            self._remove_listener()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.poller.stop()
        await self.feed.stop()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """A Starlette lifespan that starts and stops the dashboard."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            now = loop.time()
            try:
                if now >= next_tick:
                    if self.feed.caught_up.is_set():  # rates start once the history was read
                        self.trends.tick()
                        self._broadcast("traffic", self._traffic())
                        self._push_if_changed("traces", self.traces.recent())
                    next_tick = now + self.tick
                self._push_if_changed("topology", self.topology())
            except Exception:  # one bad state must not freeze the page
                log.exception("dashboard push failed")
                next_tick = now + self.tick
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_tick - loop.time()))

    def _traffic(self) -> dict[str, Any]:
        return {**self.trends.traffic(), "feed_error": self.feed_error}

    def _push_if_changed(self, event: str, data: Any) -> None:
        if self._last.get(event) != data:
            self._last[event] = data
            self._broadcast(event, data)

    def _broadcast(self, event: str, data: Any) -> None:
        if not self._clients:
            return
        message = sse(event, data)
        for queue in list(self._clients):
            if queue.full():  # a slow browser: every event carries a full state, drop the oldest
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(message)

    # --- what is shown --------------------------------------------------------------

    def topology(self) -> dict[str, Any]:
        """Agents (instances, health), declared dependency edges, and the tool catalogue."""
        view = self.client.view
        agents: dict[str, dict[str, Any]] = {}
        tools: dict[str, dict[str, Any]] = {}
        edges: dict[tuple[str, str, str], dict[str, Any]] = {}
        for record in sorted(view.records.values(), key=lambda r: (r.name, r.started_at)):
            resolved, declared = dependency_counts(record, view)
            agent = agents.setdefault(
                record.name,
                {
                    "name": record.name,
                    "version": record.version,
                    "description": record.description,
                    "kind": "llm-provider"
                    if any(t.kind == "llm_provider" for t in record.tools)
                    else "agent",
                    "tools": sorted({t.name for t in record.tools}),
                    "instances": [],
                    "health": "healthy",
                    "missing": [],
                },
            )
            agent["instances"].append(
                {
                    "id": record.instance_id,
                    "host": record.host,
                    "pid": record.pid,
                    "version": record.version,
                    "started_at": record.started_at,
                    "protocol": record.protocol,
                }
            )
            if resolved < declared:
                agent["health"] = "degraded"
            for tool in record.tools:
                entry = tools.setdefault(
                    tool.name,
                    {
                        **wire.to_builtins(tool),
                        "agents": [],
                        "instances": 0,
                    },
                )
                entry["instances"] += 1
                if record.name not in entry["agents"]:
                    entry["agents"].append(record.name)
                for dep in tool.dependencies:
                    spec = DependencySpec(dep.capability, dep.tags, dep.version)
                    providers = {c.agent for c in view.select(spec)}
                    if not providers and dep.capability not in agent["missing"]:
                        agent["missing"].append(dep.capability)
                    for provider in providers:
                        edges[(record.name, provider, dep.capability)] = {
                            "from": record.name,
                            "to": provider,
                            "capability": dep.capability,
                        }
        return {
            "agents": list(agents.values()),
            "edges": list(edges.values()),
            "tools": sorted(tools.values(), key=lambda t: t["name"]),
        }

    # --- HTTP -----------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """``/``, ``/ui/*``, ``/metrics``, ``/api/events``, ``/api/state``, ``/api/traces/{id}``,
        ``POST /api/call/{tool}``."""
        return [
            Route("/", self._index, methods=["GET"]),
            Mount("/ui", StaticFiles(directory=STATIC), name="dashboard-static"),
            Route("/metrics", self._metrics, methods=["GET"]),
            Route("/api/events", self._events, methods=["GET"]),
            Route("/api/state", self._state, methods=["GET"]),
            Route("/api/traces/{trace_id}", self._trace, methods=["GET"]),
            Route("/api/call/{tool}", self._call, methods=["POST"]),
        ]

    def app(self) -> Starlette:
        """A Starlette app serving only the dashboard (``natsmesh dashboard``)."""
        return Starlette(routes=self.routes(), lifespan=self.lifespan)

    async def _index(self, request: Request) -> Response:
        await self.start()
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _metrics(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        await self.start()
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def _state(self, request: Request) -> Response:
        await self.start()
        return JSONResponse(
            {
                "topology": self.topology(),
                "traffic": self._traffic(),
                "traces": self.traces.recent(),
            }
        )

    async def _events(self, request: Request) -> Response:
        await self.start()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)
        first = [
            sse("topology", self.topology()),
            sse("traffic", self._traffic()),
            sse("traces", self.traces.recent()),
        ]

        async def stream() -> AsyncIterator[bytes]:
            self._clients.add(queue)
            try:
                for message in first:
                    yield message
                while True:
                    try:
                        item = await asyncio.wait_for(queue.get(), 15)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if item is None:
                        return
                    yield item
            finally:
                self._clients.discard(queue)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _trace(self, request: Request) -> Response:
        from natsmesh.tracing import tree
        from natsmesh.tracing.store import read_trace

        trace_id = request.path_params["trace_id"].lower()
        if not _TRACE_ID.match(trace_id):
            return JSONResponse({"error": "a trace ID is 32 hexadecimal characters"}, 400)
        spans = await read_trace(self.client.nc, self.client.settings, trace_id)
        if not spans:
            return JSONResponse({"error": f"no spans found for trace {trace_id}"}, 404)

        def node(n: tree.Node) -> dict[str, Any]:
            return {"span_id": n.span.span_id, "children": [node(c) for c in n.children]}

        return JSONResponse(
            {
                "trace_id": trace_id,
                "spans": [
                    wire.to_builtins(msgspec.structs.asdict(s))  # every field, defaults too
                    for s in sorted(spans, key=lambda s: s.start)
                ],
                "tree": [node(r) for r in tree.build(spans)],
                "complete": tree.complete(spans),
            }
        )

    async def _call(self, request: Request) -> Response:
        from natsmesh.edge.calls import call_response

        return await call_response(self.client, request)


class DashboardRoutes(Sequence[BaseRoute]):
    """The dashboard's routes (a sequence), with ``routes()`` and ``lifespan()`` for a host
    app that starts and stops its parts (the gateway's faces)."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self._routes = dashboard.routes()

    @overload
    def __getitem__(self, index: int) -> BaseRoute: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[BaseRoute]: ...
    def __getitem__(self, index: int | slice) -> BaseRoute | Sequence[BaseRoute]:
        return self._routes[index]

    def __len__(self) -> int:
        return len(self._routes)

    def routes(self) -> list[BaseRoute]:
        return list(self._routes)

    def lifespan(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Start the dashboard with the host app and stop it with it."""
        return self.dashboard.lifespan()


def dashboard_routes(
    client: MeshClient, metrics: MeshMetrics | None = None, **options: Any
) -> DashboardRoutes:
    """The dashboard's routes, for an app that serves more (``natsmesh gateway``).

    ``metrics`` is fed from the span stream (a fresh one when omitted). The dashboard
    starts on its first request, or with the host app when it enters ``routes.lifespan()``
    (which also stops it).
    """
    return DashboardRoutes(Dashboard(client, metrics, **options))
