"""``natsmesh list``, ``call`` and ``status``."""

from __future__ import annotations

import asyncio
from typing import Any

import typer
from natsmesh_cli.options import settings as cli_settings
from natsmesh_cli.output import fail, print_json, render

INSTANCE_COLUMNS = [
    ("name", "NAME"),
    ("status", "STATUS"),
    ("deps", "DEPS"),
    ("version", "VERSION"),
    ("instance", "INSTANCE"),
    ("age", "AGE"),
    ("last_seen", "LAST SEEN"),
]
WIDE_COLUMNS = [
    ("name", "NAME"),
    ("runtime", "RUNTIME"),
    ("type", "TYPE"),
    *INSTANCE_COLUMNS[1:],
    ("host", "HOST"),
    ("pid", "PID"),
]
TRAFFIC_AGENT_COLUMNS = [
    ("agent", "AGENT"),
    ("calls", "CALLS"),
    ("bytes_in", "BYTES IN"),
    ("bytes_out", "BYTES OUT"),
]
TRAFFIC_EDGE_COLUMNS = [
    ("caller", "CALLER"),
    ("callee", "CALLEE"),
    ("calls", "CALLS"),
    ("bytes_in", "BYTES IN"),
    ("bytes_out", "BYTES OUT"),
]
TOOL_COLUMNS = [
    ("tool", "TOOL"),
    ("agent", "AGENT"),
    ("capability", "CAPABILITY"),
    ("tags", "TAGS"),
    ("version", "VERSION"),
    ("instances", "INSTANCES"),
]


def _settings() -> Any:

    return cli_settings()


async def _with_mesh(fn: Any) -> Any:
    from natsmesh.errors import MeshError
    from natsmesh.session import connect

    try:
        async with connect(_settings(), caller="cli", reconnect=False) as mesh:
            return await fn(mesh)
    except MeshError as exc:
        fail(f"{exc.message}" if exc.type == "unavailable" else f"{exc.type}: {exc.message}")


def list_command(
    tools: bool = typer.Option(False, "--tools", "-t", help="List tools instead of agents."),
    wide: bool = typer.Option(False, "--wide", "-w", help="Add RUNTIME, TYPE, HOST and PID."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the live agents (NAME, STATUS, DEPS, ...) or, with --tools, their tools."""
    from natsmesh.ops import overview

    async def go(mesh: Any) -> None:
        if tools:
            rows = overview.tool_rows(mesh.view)
            render(rows, TOOL_COLUMNS, as_json)
            if not as_json:
                print(f"{len(rows)} tool(s) found")
        else:
            rows = overview.instance_rows(mesh.view)
            render(rows, WIDE_COLUMNS if wide else INSTANCE_COLUMNS, as_json)
            if not as_json and rows:
                print(f"{len(rows)} instance(s) of {len({r['name'] for r in rows})} agent(s)")
        if not mesh.view.records and not as_json:
            print("(no agents running: `natsmesh start agents/ -d` starts the trip planner)")

    asyncio.run(_with_mesh(go))


def call_command(
    tool: str = typer.Argument(..., help="Tool name or capability."),
    args: str = typer.Argument("{}", help="The tool's arguments as a JSON object."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for the result."),
    tags: str = typer.Option(
        "", "--tags", help="Selector: tag, +preferred, -excluded (comma-separated)."
    ),
    version: str = typer.Option(None, "--version", help="Version constraint, e.g. '>=1.0'."),
    trace: bool = typer.Option(False, "--trace", help="Record a trace and print its ID."),
    stream: bool = typer.Option(
        None,
        "--stream/--no-stream",
        help="Print a streaming tool's chunks as they come (default: on a terminal).",
    ),
) -> None:
    """Call a tool by name or capability and print its JSON result (Ctrl-C cancels it)."""
    from natsmesh_cli.calling import run_call

    run_call(tool, args, timeout=timeout, tags=tags, version=version, trace=trace, stream=stream)


def status_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """NATS URL, server version, JetStream, registry bucket, agents, dropped spans."""
    from natsmesh.ops import overview

    async def go(mesh: Any) -> None:
        data = await overview.status(mesh)
        if as_json:
            print_json(data)
            return
        traffic = data.pop("traffic")
        for key, value in data.items():
            print(f"{key.replace('_', ' '):<16} {value}")
        if traffic["agents"]:
            print("\ntraffic per agent (since each instance started)")
            render(traffic["agents"], TRAFFIC_AGENT_COLUMNS, False)
        if traffic["edges"]:
            print("\ntraffic per edge")
            render(traffic["edges"], TRAFFIC_EDGE_COLUMNS, False)

    asyncio.run(_with_mesh(go))
