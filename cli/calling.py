"""``natsmesh call``: one call, printed; streamed chunks as they come; Ctrl-C cancels it.

Kept free of typer so that a fast entry point can use it; imports what a call needs only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from natsmesh_cli.options import settings as cli_settings
from natsmesh_cli.output import fail


def parse_arguments(text: str) -> dict[str, Any]:
    """The call's JSON object of arguments; exits with a one-line error otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"ARGS is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", 2)
    if not isinstance(value, dict):
        fail(f"ARGS must be a JSON object of the tool's arguments, not {type(value).__name__}", 2)
    return value


def run_call(
    tool: str,
    args: str,
    *,
    timeout: float,
    tags: str = "",
    version: str | None = None,
    trace: bool = False,
    stream: bool | None = None,
) -> None:
    """Call ``tool`` and print its result; ``stream=None`` streams when stdout is a terminal
    and the tool streams. Exit codes: 0 ok, 1 mesh error, 2 bad input, 130 interrupted."""
    arguments = parse_arguments(args)
    if version is not None:
        from natsmesh.versions import parse_constraint

        try:
            parse_constraint(version)
        except ValueError as exc:
            fail(str(exc), 2)
    call = _Call(tool, arguments, timeout, tags or None, version, trace, stream)
    try:
        asyncio.run(call.run())
    except KeyboardInterrupt:
        print(file=sys.stderr)
        fail(f"cancelled: {tool} was interrupted (the call was cancelled on the worker)", 130)


class _Call:
    def __init__(
        self,
        tool: str,
        arguments: dict[str, Any],
        timeout: float,
        tags: str | None,
        version: str | None,
        trace: bool,
        stream: bool | None,
    ) -> None:
        self.tool = tool
        self.arguments = arguments
        self.timeout = timeout
        self.tags = tags
        self.version = version
        self.stream = stream
        self.trace_id: str | None = None
        self.span_id: str | None = None
        if trace:
            from natsmesh.tracing.context import new_span_id, new_trace_id

            self.trace_id, self.span_id = new_trace_id(), new_span_id()

    async def run(self) -> None:
        from natsmesh.errors import MeshError

        try:
            await self._connected()
        except MeshError as exc:
            fail(exc.message if exc.type == "unavailable" else f"{exc.type}: {exc.message}")

    async def _connected(self) -> None:
        """Connect, read the registry once, call; lighter than ``natsmesh.connect``: one
        call needs no registry watcher, and no JetStream layer (see
        :func:`natsmesh.registry_snapshot.snapshot`)."""
        from natsmesh.client import MeshClient
        from natsmesh.connection import Hooks, connect_nats
        from natsmesh.conversation import settle
        from natsmesh.registry_snapshot import snapshot

        settings = cli_settings()
        hooks = Hooks()
        nc = await connect_nats(
            settings, "natsmesh cli", hooks, reconnect=False, initial_timeout=5.0
        )
        try:
            view = await snapshot(nc, settings)
            mesh = MeshClient(nc, view, settings, caller="cli")
            hooks.on_disconnect.append(mesh.connection_lost)
            try:
                await self._call(mesh)
            finally:
                await settle()  # a cancel sent after Ctrl-C reaches its worker first
                await mesh.watchdog.stop()
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    def _context(self) -> Any:
        if not (self.trace_id and self.span_id):
            return None
        from natsmesh.call_context import CallContext
        from natsmesh.tracing.context import format_traceparent

        return CallContext(traceparent=format_traceparent(self.trace_id, self.span_id))

    def _streams(self, mesh: Any) -> bool:
        if self.stream is not None:
            return self.stream
        if not sys.stdout.isatty():
            return False
        try:
            capability = mesh.view.resolve(self.tool)
        except Exception:
            return False
        return any(
            t.stream
            for r in mesh.view.records.values()
            for t in r.tools
            if t.capability == capability
        )

    async def _call(self, mesh: Any) -> None:
        from natsmesh.errors import Cancelled, MeshError

        started = time.time_ns()
        error: MeshError | None = None
        result: Any = None
        options = {
            "tags": self.tags,
            "version": self.version,
            "timeout": self.timeout,
            "context": self._context(),
        }
        streamed = False
        try:
            if self._streams(mesh):
                streamed = True
                result = await self._read_stream(mesh, options)
            else:
                result = await mesh.call(self.tool, self.arguments, **options)
        except MeshError as exc:
            error = exc
        except asyncio.CancelledError:
            await self._root_span(mesh, started, Cancelled("interrupted"))
            if self.trace_id:
                print(f"Trace ID: {self.trace_id}", flush=True)
            raise
        await self._root_span(mesh, started, error)
        if error is not None:
            if self.trace_id:
                print(f"Trace ID: {self.trace_id}")
            fail(f"{error.type}: {error.message}")
        if not streamed:
            text = (
                result
                if isinstance(result, str)
                else json.dumps(result, indent=2, ensure_ascii=False)
            )
            print(text)
        if self.trace_id:
            print(f"Trace ID: {self.trace_id}")

    async def _read_stream(self, mesh: Any, options: dict[str, Any]) -> Any:
        """Print text chunks as they come (events on stderr); returns the result."""
        out, err = sys.stdout, sys.stderr
        text = False
        async with mesh.stream(self.tool, self.arguments, **options) as parts:
            async for part in parts:
                if isinstance(part, str):
                    out.write(part)
                    out.flush()
                    text = True
                elif isinstance(part, dict) and "event" in part:
                    err.write(f"  [{part.get('event')}] {part.get('tool', '')}\n")
                    err.flush()
                else:
                    out.write(json.dumps(part, ensure_ascii=False) + "\n")
                    out.flush()
        if text:
            out.write("\n")
        elif parts.result is not None and not isinstance(parts.result, list):
            out.write(json.dumps(parts.result, indent=2, ensure_ascii=False) + "\n")
        out.flush()
        return parts.result

    async def _root_span(self, mesh: Any, started: int, error: Any) -> None:
        if not (self.trace_id and self.span_id):
            return
        from natsmesh import subjects, wire

        span = wire.SpanMessage(
            trace_id=self.trace_id,
            span_id=self.span_id,
            name=f"call {self.tool}",
            start=started,
            end=time.time_ns(),
            service="cli",
            kind=2,
            status=2 if error is not None else 0,
            status_message=error.message if error is not None else "",
            attrs={"messaging.system": "nats", "mesh.tool": self.tool}
            | ({"error.type": error.type} if error is not None else {}),
        )
        try:  # a request, not nats-py's JetStream publish: the stream's ack is the reply
            await mesh.nc.request(
                subjects.spans_subject(self.trace_id, mesh.settings.prefix),
                wire.encode_spans([span]),
                timeout=2,
            )
        except (Exception, asyncio.CancelledError):
            pass  # tracing never fails a call
