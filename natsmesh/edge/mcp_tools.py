"""The mesh's tools as MCP tools: which are exposed, their names and schemas, results, errors."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import mcp_types as types

from natsmesh import wire
from natsmesh.wire import AgentRecord, ToolRecord

#: ``_meta`` key of a tool error result that carries the mesh error ({type, message, details})
ERROR_META_KEY = "natsmesh/error"


@dataclasses.dataclass(frozen=True)
class Expose:
    """Which mesh tools are MCP tools.

    Names match a tool's name or its capability (shell wildcards allowed); tags match any
    of a tool's tags. With include rules (``tools`` or ``tags``), a tool must match one of
    them; an exclude rule always wins. LLM providers are not tools for MCP clients and are
    never exposed.
    """

    tools: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    exclude_tools: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()

    def allows(self, tool: ToolRecord) -> bool:
        if tool.kind != "tool":
            return False

        def named(patterns: tuple[str, ...]) -> bool:
            return any(
                fnmatch.fnmatchcase(tool.name, p) or fnmatch.fnmatchcase(tool.capability, p)
                for p in patterns
            )

        if named(self.exclude_tools) or set(tool.tags) & set(self.exclude_tags):
            return False
        if not (self.tools or self.tags):
            return True
        return named(self.tools) or bool(set(tool.tags) & set(self.tags))


@dataclasses.dataclass(frozen=True)
class McpTool:
    """One mesh capability as an MCP tool."""

    tool: types.Tool
    capability: str
    stream: bool
    #: the mesh result is not a JSON object, so structured content wraps it: ``{"result": ...}``
    wrapped: bool


def output_schema(schema: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
    """The MCP output schema for a mesh result schema, and whether results are wrapped.

    MCP wants an object at the root (through protocol 2025-11-25); anything else is
    wrapped as ``{"result": <schema>}``, with ``$defs`` kept at the root for ``$ref``.
    """
    if schema is None:
        return None, False
    if schema.get("type") == "object":
        return dict(schema), False
    inner = dict(schema)
    defs = inner.pop("$defs", None)
    wrapped: dict[str, Any] = {
        "type": "object",
        "properties": {"result": inner},
        "required": ["result"],
    }
    if defs:
        wrapped["$defs"] = defs
    return wrapped, True


def mcp_tool(record: ToolRecord, name: str | None = None) -> McpTool:
    """The MCP tool for a mesh tool record (named after the tool unless ``name`` is given)."""
    input_schema = dict(record.input_schema or {})
    input_schema.setdefault("type", "object")
    schema, wrapped = output_schema(record.output_schema)
    tool = types.Tool(
        name=name or record.name,
        description=record.description or None,
        input_schema=input_schema,
        output_schema=schema,
        annotations=types.ToolAnnotations(idempotent_hint=True) if record.idempotent else None,
    )
    return McpTool(tool, record.capability, record.stream, wrapped)


def mesh_tools(records: Iterable[AgentRecord], expose: Expose) -> dict[str, McpTool]:
    """The exposed tools of live agents, one per capability, by MCP name, sorted.

    An MCP tool is named after the mesh tool (``plan_trip``), as ``@mesh.llm`` shows tools
    to models, and calls its capability. Several providers of one capability are one
    MCP tool (the mesh picks a provider per call), described by the first agent by name;
    tools of different capabilities that share a name are named after their capabilities.
    """
    chosen: dict[str, ToolRecord] = {}
    for record in sorted(records, key=lambda r: (r.name, r.instance_id)):
        for t in record.tools:
            if t.capability not in chosen and expose.allows(t):
                chosen[t.capability] = t
    names = Counter(t.name for t in chosen.values())
    out = {}
    for capability, t in chosen.items():
        name = t.name if names[t.name] == 1 else capability
        out[name] = mcp_tool(t, name)
    return dict(sorted(out.items()))


def text(value: Any) -> str:
    """A value as MCP text: a string as is, anything else as JSON."""
    return value if isinstance(value, str) else wire.encode_json(value).decode()


def tool_result(entry: McpTool, value: Any) -> types.CallToolResult:
    """A mesh result as an MCP tool result: text, plus structured content when the tool
    declares an output schema."""
    structured = None
    if entry.tool.output_schema is not None:
        structured = {"result": value} if entry.wrapped else value
    return types.CallToolResult(
        content=[types.TextContent(text=text(value))], structured_content=structured
    )


def error_result(message: str, error: Mapping[str, Any] | None = None) -> types.CallToolResult:
    """An MCP tool error (``isError: true``) with a one-line message."""
    line = message.splitlines()[0] if message else "error"
    meta = {ERROR_META_KEY: dict(error)} if error is not None else None
    return types.CallToolResult.model_validate(
        {"content": [{"type": "text", "text": line}], "isError": True, "_meta": meta}
    )
