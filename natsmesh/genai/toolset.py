"""The tools an LLM is offered: bounded in count and size, one per name, in a stable order."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from natsmesh import wire
from natsmesh.wire import ToolRecord

#: the most tools one model turn is offered (OpenAI accepts 128; fewer choose better)
MAX_LLM_TOOLS = 64
#: the most bytes of tool names, descriptions and schemas one model turn carries (the
#: request to the provider must stay well under NATS's 1 MiB payload with the messages)
MAX_LLM_TOOL_BYTES = 128 * 1024
#: the longest function name providers accept
MAX_NAME = 64


@dataclasses.dataclass(frozen=True)
class Toolset:
    """What to offer the model, and what was left out (to say so once)."""

    tools: dict[str, ToolRecord]
    omitted: tuple[str, ...] = ()


def tool_size(tool: ToolRecord) -> int:
    """Bytes the tool adds to a model request (name, description, argument schema)."""
    return len(wire.encode_json([tool.name, tool.description, tool.input_schema]))


def bounded_toolset(
    candidates: Iterable[ToolRecord],
    *,
    exclude: str | None = None,
    max_tools: int = MAX_LLM_TOOLS,
    max_bytes: int = MAX_LLM_TOOL_BYTES,
) -> Toolset:
    """Pick the tools to offer a model from ``candidates`` (already filtered).

    Plain tools only (not LLM providers), never the tool named ``exclude`` (the caller
    itself); one tool per name however many instances advertise it (the smallest
    version wins ties, so the choice does not depend on the registry's order); in name
    order, as many as fit in ``max_tools`` and ``max_bytes``. A tool that does not fit
    is omitted, and smaller ones after it may still be offered.
    """
    by_name: dict[str, ToolRecord] = {}
    for tool in candidates:
        if tool.kind != "tool" or tool.name == exclude or not 0 < len(tool.name) <= MAX_NAME:
            continue
        kept = by_name.get(tool.name)
        if kept is None or (tool.capability, tool.version) < (kept.capability, kept.version):
            by_name[tool.name] = tool
    chosen: dict[str, ToolRecord] = {}
    omitted: list[str] = []
    used = 0
    for name in sorted(by_name):
        size = tool_size(by_name[name])
        if len(chosen) >= max_tools or used + size > max_bytes:
            omitted.append(name)
            continue
        chosen[name] = by_name[name]
        used += size
    return Toolset(chosen, tuple(omitted))
