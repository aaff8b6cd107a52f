"""The LLM tool set: bounded, deduplicated, stable."""

from __future__ import annotations

import random

from natsmesh.genai.toolset import MAX_LLM_TOOLS, bounded_toolset, tool_size
from natsmesh.wire import ToolRecord


def tool(name: str, capability: str | None = None, **kw: object) -> ToolRecord:
    return ToolRecord(name, capability or name, **kw)  # type: ignore[arg-type]


def test_three_thousand_advertised_tools_become_a_bounded_set() -> None:
    tools = [tool(f"t{i:04}", description="d" * 150) for i in range(3000)]
    chosen = bounded_toolset(tools)
    assert len(chosen.tools) == MAX_LLM_TOOLS
    assert len(chosen.omitted) == 3000 - MAX_LLM_TOOLS
    assert sum(tool_size(t) for t in chosen.tools.values()) <= 128 * 1024


def test_size_bound_skips_big_tools_and_keeps_smaller_ones() -> None:
    big = tool("b_big", input_schema={"description": "x" * 5000})
    small = [tool("a_small"), tool("c_small")]
    chosen = bounded_toolset([big, *small], max_bytes=1000)
    assert list(chosen.tools) == ["a_small", "c_small"]
    assert chosen.omitted == ("b_big",)


def test_one_tool_per_name_whatever_the_order() -> None:
    replicas = [tool("search", "search_v", version=v) for v in ("2.0.0", "1.0.0", "1.5.0")] * 100
    results = set()
    for _ in range(5):
        random.shuffle(replicas)
        chosen = bounded_toolset(replicas)
        assert list(chosen.tools) == ["search"]
        results.add(chosen.tools["search"].version)
    assert results == {"1.0.0"}


def test_providers_and_the_caller_itself_are_not_offered() -> None:
    tools = [tool("llm", kind="llm_provider"), tool("plan_trip"), tool("weather"), tool("x" * 65)]
    assert list(bounded_toolset(tools, exclude="plan_trip").tools) == ["weather"]
