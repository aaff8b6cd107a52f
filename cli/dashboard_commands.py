"""``natsmesh dashboard``: the live dashboard and ``/metrics`` without the gateway."""

from __future__ import annotations

import asyncio

import typer
from natsmesh_cli.options import settings as cli_settings
from natsmesh_cli.output import fail


def dashboard_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", "-p", help="Port to listen on (0 picks one)."),
    history: float = typer.Option(
        300.0, "--history", help="Seconds of spans to read from the stream at start."
    ),
) -> None:
    """Serve the live dashboard (topology, tools, traffic, traces, tokens) and /metrics."""
    from natsmesh.worker import setup_logging

    settings = cli_settings()
    setup_logging(settings.debug)
    if history < 0:
        fail("--history is a number of seconds, 0 or more", 2)
    asyncio.run(serve_dashboard(settings, host, port, history))


async def serve_dashboard(settings: object, host: str, port: int, history: float) -> None:
    """Connect as caller ``dashboard`` and serve until interrupted."""
    import socket

    import uvicorn

    from natsmesh.edge.dashboard import Dashboard
    from natsmesh.errors import MeshError
    from natsmesh.session import connect

    try:
        sock = socket.create_server((host, port))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}")
    try:
        async with connect(settings, caller="dashboard", tracing=True) as client:  # type: ignore[arg-type]
            dashboard = Dashboard(client, history=history)
            config = uvicorn.Config(
                dashboard.app(), log_level="warning", timeout_graceful_shutdown=2
            )
            bound = sock.getsockname()[1]
            print(f"dashboard: http://{host}:{bound}/  (metrics at /metrics)", flush=True)
            await uvicorn.Server(config).serve(sockets=[sock])
    except MeshError as exc:
        fail(exc.message)
    finally:
        sock.close()
