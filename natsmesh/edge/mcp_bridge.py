"""MCP servers as mesh agents: each tool of an MCP server becomes a mesh tool.

An agent file declares the server (``fs = mesh.mcp_server(name="fs", command=[...])``);
``natsmesh start`` runs it like any agent. At start the agent opens one MCP client
session (a stdio child process, or a streamable-HTTP URL), lists the server's tools and
turns each into a :class:`~natsmesh.specs.ToolSpec` whose function calls the session; an
ordinary :class:`~natsmesh.Runtime` then serves them, so registration, validation,
tracing (the SERVER span), deadlines, cancellation and scaling (start it twice: one
queue group) are the same as for Python tools.

Arguments are checked against the MCP tool's JSON Schema here, with ``jsonschema`` (a
dependency of the MCP SDK), so a bad call is the mesh's usual ``invalid_arguments`` with
field errors before it reaches the server; the server validates again on its side.
Nothing here imports ``mcp`` until the agent starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import shlex
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from natsmesh.config import Settings
from natsmesh.errors import InvalidArguments, ToolError
from natsmesh.injection import Signature
from natsmesh.specs import AgentSpec, ToolSpec, parse_tags
from natsmesh.subjects import check_token

if TYPE_CHECKING:
    from mcp import ClientSession

    from natsmesh.runtime import Runtime

log = logging.getLogger("natsmesh.mcp_bridge")

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclasses.dataclass(frozen=True)
class McpServerSpec:
    """What ``mesh.mcp_server`` records: the MCP server to wrap and how its tools are named."""

    name: str
    command: tuple[str, ...] = ()
    url: str | None = None
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    headers: Mapping[str, str] | None = None
    prefix: str = ""
    tags: tuple[str, ...] = ()
    version: str = "1.0.0"
    description: str = ""

    @property
    def agent(self) -> AgentSpec:
        where = self.url or shlex.join(self.command)
        return AgentSpec(self.name, self.version, self.description or f"MCP server {where}")


def mcp_server(
    name: str,
    *,
    command: Sequence[str] | str | None = None,
    url: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    headers: Mapping[str, str] | None = None,
    prefix: str = "",
    tags: Sequence[str] | str = (),
    version: str = "1.0.0",
    description: str = "",
) -> McpServerSpec:
    """Declare an MCP server as this file's agent; its tools become mesh tools.

    Give ``command`` (argv of a stdio server, as in Claude Desktop's ``command`` plus
    ``args``; ``env`` is added to a minimal safe environment) or ``url`` (streamable
    HTTP; ``headers`` for authentication). Each tool's capability is the MCP tool name
    with characters other than letters, digits, ``_`` and ``-`` mapped to ``_``, after
    ``prefix``. ``tags`` go on every tool.
    """
    check_token(name, "agent name")
    if (command is None) == (url is None):
        raise ValueError(f"mcp_server {name!r}: give either command=[...] or url=...")
    argv = tuple(shlex.split(command) if isinstance(command, str) else command or ())
    if command is not None and not argv:
        raise ValueError(f"mcp_server {name!r}: command is empty")
    if url is not None and not url.startswith(("http://", "https://")):
        raise ValueError(f"mcp_server {name!r}: url must start with http:// or https://")
    if prefix:
        check_token(prefix, "prefix")
    tag_tuple = parse_tags(tags)
    if any(t[0] in "+-" for t in tag_tuple):
        raise ValueError("a tool's own tags are plain names; '+' and '-' belong in selectors")
    return McpServerSpec(
        name,
        argv,
        url,
        dict(env) if env else None,
        cwd,
        dict(headers) if headers else None,
        prefix,
        tag_tuple,
        version,
        description,
    )


def capability_for(tool_name: str, prefix: str = "") -> str:
    """The NATS-safe capability for an MCP tool name (``read.file`` -> ``read_file``)."""
    return prefix + (_UNSAFE.sub("_", tool_name) or "_")


@dataclasses.dataclass(frozen=True)
class JsonSchemaSignature(Signature):
    """The signature of a tool described by a JSON Schema instead of a Python signature."""

    validator: Any = None

    def validate(self, body: bytes) -> dict[str, Any]:
        """The arguments object, checked against the schema; raises ``InvalidArguments``."""
        import msgspec

        try:
            value = msgspec.json.decode(body or b"{}")
        except msgspec.DecodeError as exc:
            raise InvalidArguments(f"invalid arguments: the body is not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise InvalidArguments("invalid arguments: expected a JSON object of arguments")
        if self.validator is not None:
            errors = sorted(self.validator.iter_errors(value), key=lambda e: list(e.path))
            if errors:
                fields = [
                    {"field": ".".join(str(p) for p in e.path) or "(body)", "error": e.message}
                    for e in errors
                ]
                summary = "; ".join(f"{f['field']}: {f['error']}" for f in fields[:5])
                raise InvalidArguments(f"invalid arguments: {summary}", {"errors": fields})
        return value


def json_schema_signature(
    input_schema: Mapping[str, Any], output_schema: Mapping[str, Any] | None
) -> JsonSchemaSignature:
    """A signature from an MCP tool's schemas (no local check when the schema is invalid)."""
    import jsonschema
    import pydantic

    schema = dict(input_schema or {"type": "object"})
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
        validator = cls(schema)
    except jsonschema.SchemaError as exc:
        log.warning("not checking arguments locally: invalid input schema (%s)", exc.message)
        validator = None
    return JsonSchemaSignature(
        args_model=pydantic.create_model(
            "mcp_arguments", __config__=pydantic.ConfigDict(extra="allow")
        ),
        input_schema=schema,
        output_schema=dict(output_schema) if output_schema else None,
        dependency_params=(),
        is_async=True,
        validator=validator,
    )


def mesh_result(tool: str, result: Any) -> Any:
    """An MCP ``CallToolResult`` as a mesh result: the structured content when there is
    some, else the text (one string, or a list), else the content blocks as JSON.
    An MCP tool error raises :class:`ToolError` with its first line."""
    blocks = [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in result.content]
    texts = [b["text"] for b in blocks if b.get("type") == "text"]
    if result.is_error:
        message = (texts[0].strip().splitlines() or [""])[0] if texts else ""
        raise ToolError(message or f"{tool} failed", {"mcp_tool": tool, "content": blocks})
    if result.structured_content is not None:
        return result.structured_content
    if blocks and len(texts) == len(blocks):
        return texts[0] if len(texts) == 1 else texts
    return blocks


def tool_specs(spec: McpServerSpec, tools: Sequence[Any], session: ClientSession) -> list[ToolSpec]:
    """Mesh tool specs for the MCP server's tools; each calls ``session``."""
    out: list[ToolSpec] = []
    seen: dict[str, str] = {}
    for tool in tools:
        capability = capability_for(tool.name, spec.prefix)
        if capability in seen:
            raise ValueError(
                f"MCP tools {seen[capability]!r} and {tool.name!r} both map to {capability!r}"
            )
        seen[capability] = tool.name
        annotations = tool.annotations
        out.append(
            ToolSpec(
                name=capability,
                capability=capability,
                func=_caller(session, tool.name),
                signature=json_schema_signature(tool.input_schema, tool.output_schema),
                description=tool.description or tool.title or "",
                tags=spec.tags,
                idempotent=bool(annotations and annotations.idempotent_hint),
            )
        )
    return out


def _caller(session: ClientSession, tool: str) -> Any:
    async def call(**arguments: Any) -> Any:
        # the SDK puts the current span (the mesh SERVER span) in _meta.traceparent
        return mesh_result(tool, await session.call_tool(tool, arguments))

    call.__name__ = call.__qualname__ = capability_for(tool)
    return call


@contextlib.asynccontextmanager
async def open_session(spec: McpServerSpec) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session with the server (its process runs meanwhile)."""
    from mcp import ClientSession, StdioServerParameters

    async with contextlib.AsyncExitStack() as stack:
        if spec.url is not None:
            from mcp.client.streamable_http import streamable_http_client
            from mcp.shared._httpx_utils import create_mcp_http_client

            http = await stack.enter_async_context(
                create_mcp_http_client(headers=dict(spec.headers or {}))
            )
            read, write = await stack.enter_async_context(
                streamable_http_client(spec.url, http_client=http)
            )
        else:
            from mcp.client.stdio import stdio_client

            params = StdioServerParameters(
                command=spec.command[0],
                args=list(spec.command[1:]),
                env=dict(spec.env) if spec.env else None,
                cwd=spec.cwd,
            )
            read, write = await stack.enter_async_context(stdio_client(params))
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        yield session


async def list_tools(session: ClientSession) -> list[Any]:
    """Every tool of the server, all pages."""
    import mcp_types as types

    tools: list[Any] = []
    cursor: str | None = None
    while True:
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools


def _first_error(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class McpAgent:
    """One wrapped MCP server as a running mesh agent: ``await start()``, ``await stop()``.

    The MCP session lives in a task of its own (its context managers must enter and exit
    in one task); the :class:`~natsmesh.Runtime` serving its tools is ``self.runtime``.
    """

    def __init__(self, spec: McpServerSpec, settings: Settings | None = None) -> None:
        self.spec = spec
        self.settings = settings or Settings.from_env()
        self.runtime: Runtime | None = None
        self.tools: list[ToolSpec] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the MCP server, list its tools, then serve them on the mesh."""
        from natsmesh.runtime import Runtime

        ready: asyncio.Future[list[ToolSpec]] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._hold(ready), name=f"mcp session {self.spec.name}")
        try:
            self.tools = await ready
        except BaseException as exc:
            await self._close()
            where = self.spec.url or shlex.join(self.spec.command)
            cause = _first_error(exc)
            raise RuntimeError(
                f"MCP server {self.spec.name!r} ({where}): {type(cause).__name__}: {cause}"
            ) from None
        self.runtime = Runtime(self.spec.agent, self.tools, self.settings)
        try:
            await self.runtime.start()
        except BaseException:
            await self._close()
            raise

    async def _hold(self, ready: asyncio.Future[list[ToolSpec]]) -> None:
        try:
            async with open_session(self.spec) as session:
                tools = tool_specs(self.spec, await list_tools(session), session)
                ready.set_result(tools)
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            elif not isinstance(exc, asyncio.CancelledError):
                log.error("MCP session of %s ended: %s", self.spec.name, _first_error(exc))

    async def stop(self) -> None:
        """Stop serving (the Runtime's ordered stop), then close the MCP session."""
        if self.runtime is not None:
            await self.runtime.stop()
            self.runtime = None
        await self._close()

    async def _close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, 10)
            self._task = None

    async def serve_forever(self) -> None:
        """Start, serve until SIGINT or SIGTERM, then stop."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
        except RuntimeError as exc:
            log.error("%s", exc)
            raise SystemExit(1) from None
        log.info("%s wraps MCP tools %s", self.spec.name, ", ".join(t.name for t in self.tools))
        try:
            await stop.wait()
        finally:
            await self.stop()
