"""Serving the gateway: uvicorn on a socket bound first (port 0 works), and the process."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import uvicorn
from starlette.types import ASGIApp

from natsmesh.config import Settings
from natsmesh.edge.faces import optional_faces
from natsmesh.edge.gateway import GatewayConfig, build_app


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: whoever runs the gateway decides when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one (read it from ``getsockname``)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.create_server((host, port), family=family, backlog=2048)
    # accepted sockets inherit it: a response's head and body must not wait for an ACK
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def running(app: ASGIApp, sock: socket.socket) -> AsyncIterator[_Server]:
    """Serve ``app`` with uvicorn on ``sock`` until the block ends (then a graceful stop)."""
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=30,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="gateway http server")
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the gateway's HTTP server stopped while starting")
                await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def serve(
    settings: Settings,
    config: GatewayConfig,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Connect to the mesh as ``gateway`` and serve until ``stop`` is set (or forever).

    ``ready(url)`` is called once the gateway answers.
    """
    from natsmesh.session import connect

    sock = bind(config.bind_host, config.port)
    try:
        async with connect(settings, caller="gateway", tracing=settings.tracing) as client:
            app = build_app(client, config, optional_faces(client))
            async with running(app, sock):
                if ready is not None:
                    ready(url_of(sock))
                await (stop or asyncio.Event()).wait()
    finally:
        sock.close()
