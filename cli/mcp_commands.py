"""``natsmesh mcp``: the mesh as an MCP server over stdio (Claude Desktop, Claude Code)."""

from __future__ import annotations

import asyncio

import typer
from natsmesh_cli.options import settings as cli_settings
from natsmesh_cli.output import fail


def mcp_command(
    tool: list[str] = typer.Option(
        [], "--tool", "-t", help="Expose only these tools (name or capability; wildcards ok)."
    ),
    tag: list[str] = typer.Option([], "--tag", help="Expose only tools with one of these tags."),
    exclude: list[str] = typer.Option(
        [], "--exclude", "-x", help="Never expose these tools (name or capability; wildcards ok)."
    ),
    exclude_tag: list[str] = typer.Option(
        [], "--exclude-tag", help="Never expose tools with one of these tags."
    ),
    no_tracing: bool = typer.Option(False, "--no-tracing", help="Publish no spans."),
) -> None:
    """Serve the live mesh tools over MCP on stdin/stdout (logs go to stderr).

    With --tool or --tag a tool must match one of them; --exclude and --exclude-tag win.
    """
    from natsmesh.edge.mcp_server import Expose, serve_stdio
    from natsmesh.errors import MeshError
    from natsmesh.session import connect
    from natsmesh.worker import setup_logging

    settings = cli_settings()
    setup_logging(settings.debug)
    expose = Expose(tuple(tool), tuple(tag), tuple(exclude), tuple(exclude_tag))
    tracing = settings.tracing and not no_tracing

    async def serve() -> None:
        async with connect(settings, caller="mcp", tracing=tracing) as client:
            await serve_stdio(client, expose)

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    except MeshError as exc:
        fail(
            f"{exc.message}; start the mesh first (`natsmesh start agents/ -d`) "
            "or point --server at it"
        )
