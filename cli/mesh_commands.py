"""``natsmesh list``, ``call`` and ``status``."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import typer
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
TOOL_COLUMNS = [
    ("tool", "TOOL"),
    ("agent", "AGENT"),
    ("capability", "CAPABILITY"),
    ("tags", "TAGS"),
    ("version", "VERSION"),
    ("instances", "INSTANCES"),
]


def _settings() -> Any:
    from natsmesh.config import Settings

    return Settings.from_env()


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
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the live agents (NAME, STATUS, DEPS, ...) or, with --tools, their tools."""
    from natsmesh import overview

    async def go(mesh: Any) -> None:
        if tools:
            rows = overview.tool_rows(mesh.view)
            render(rows, TOOL_COLUMNS, as_json)
        else:
            render(overview.instance_rows(mesh.view), INSTANCE_COLUMNS, as_json)
        if not mesh.view.records and not as_json:
            print("(no agents running: `natsmesh start agents/ -d` starts the trip planner)")

    asyncio.run(_with_mesh(go))


def _parse_arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"ARGS is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", 2)
    if not isinstance(value, dict):
        fail(f"ARGS must be a JSON object of the tool's arguments, not {type(value).__name__}", 2)
    return value


def call_command(
    tool: str = typer.Argument(..., help="Tool name or capability."),
    args: str = typer.Argument("{}", help="The tool's arguments as a JSON object."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for the result."),
    tags: str = typer.Option(
        "", "--tags", help="Selector: tag, +preferred, -excluded (comma-separated)."
    ),
    version: str = typer.Option(None, "--version", help="Version constraint, e.g. '>=1.0'."),
    trace: bool = typer.Option(False, "--trace", help="Record a trace and print its ID."),
) -> None:
    """Call a tool by name or capability and print its JSON result."""
    arguments = _parse_arguments(args)
    from natsmesh.client import CallContext
    from natsmesh.tracing.context import format_traceparent, new_span_id, new_trace_id

    trace_id = new_trace_id() if trace else None
    span_id = new_span_id() if trace else None
    context = (
        CallContext(traceparent=format_traceparent(trace_id, span_id))
        if trace_id and span_id
        else None
    )

    async def go(mesh: Any) -> None:
        from natsmesh.errors import MeshError

        started = time.time_ns()
        error: MeshError | None = None
        result: Any = None
        try:
            result = await mesh.call(
                tool,
                arguments,
                tags=tags or None,
                version=version,
                timeout=timeout,
                context=context,
            )
        except MeshError as exc:
            error = exc
        if trace_id and span_id:
            await _publish_root_span(mesh, trace_id, span_id, tool, started, error)
        if error is not None:
            if trace_id:
                print(f"Trace ID: {trace_id}")
            fail(f"{error.type}: {error.message}")
        print(
            result if isinstance(result, str) else json.dumps(result, indent=2, ensure_ascii=False)
        )
        if trace_id:
            print(f"Trace ID: {trace_id}")

    asyncio.run(_with_mesh(go))


async def _publish_root_span(
    mesh: Any, trace_id: str, span_id: str, tool: str, started: int, error: Any
) -> None:
    from natsmesh import subjects, wire

    span = wire.SpanMessage(
        trace_id=trace_id,
        span_id=span_id,
        name=f"call {tool}",
        start=started,
        end=time.time_ns(),
        service="cli",
        kind=2,
        status=2 if error is not None else 0,
        status_message=error.message if error is not None else "",
        attrs={"messaging.system": "nats", "mesh.tool": tool}
        | ({"error.type": error.type} if error is not None else {}),
    )
    try:
        await mesh.nc.jetstream().publish(
            subjects.spans_subject(trace_id, mesh.settings.prefix),
            wire.encode_span(span),
            timeout=2,
        )
    except Exception:
        pass  # tracing never fails a call


def status_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """NATS URL, server version, JetStream, registry bucket, agents, dropped spans."""
    from natsmesh import overview

    async def go(mesh: Any) -> None:
        data = await overview.status(mesh)
        if as_json:
            print_json(data)
            return
        for key, value in data.items():
            print(f"{key.replace('_', ' '):<16} {value}")

    asyncio.run(_with_mesh(go))
