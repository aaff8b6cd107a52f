"""The frozen specs the decorators attach to functions and classes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from natsmesh.dependency import DependencySpec, dependency, parse_tags
from natsmesh.subjects import check_token

if TYPE_CHECKING:
    from natsmesh.signature import Signature

__all__ = [
    "AgentSpec",
    "DependencySpec",
    "LlmSpec",
    "ProviderSpec",
    "ToolFilter",
    "ToolSpec",
    "agent_spec",
    "dependency",
    "llm_spec",
    "parse_tags",
    "tool_filter",
    "tool_spec",
]

TOOL_ATTR = "__natsmesh_tool__"
AGENT_ATTR = "__natsmesh_agent__"
LLM_ATTR = "__natsmesh_llm__"


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """What ``@mesh.agent`` records."""

    name: str
    version: str = "1.0.0"
    description: str = ""
    max_in_flight: int | None = None
    #: record request and reply payloads on this agent's SERVER spans
    trace_payloads: bool = False


@dataclasses.dataclass(frozen=True)
class LlmSpec:
    """What ``@mesh.llm`` records."""

    system_prompt: str | None
    context_param: str | None
    provider: DependencySpec
    filter: tuple[ToolFilter, ...] = ()
    filter_mode: str = "all"
    max_iterations: int = 10
    #: folder that ``file://`` prompts are relative to (the agent file's)
    base_dir: Path = Path(".")
    parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ProviderSpec:
    """What ``@mesh.llm_provider`` records."""

    model: str
    #: environment variable that overrides the model
    model_env: str | None = None
    parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: answer with the offline model (and say so) when the model's API key is not set
    offline_without_key: bool = False


@dataclasses.dataclass(frozen=True)
class ToolFilter:
    """Which mesh tools an LLM may call: by capability, by tags, or both."""

    capability: str | None = None
    tags: tuple[str, ...] = ()


def tool_filter(value: str | Mapping[str, Any]) -> ToolFilter:
    """Parse ``"capability"`` or ``{"capability": ..., "tags": [...]}`` (either key may be absent)."""
    if isinstance(value, str):
        return ToolFilter(check_token(value, "capability"))
    if isinstance(value, Mapping):
        unknown = set(value) - {"capability", "tags"}
        if unknown or not value:
            raise ValueError(f"filter {dict(value)!r}: expected keys capability and/or tags")
        capability = value.get("capability")
        return ToolFilter(
            None if capability is None else check_token(str(capability), "capability"),
            parse_tags(value.get("tags", ())),
        )
    raise TypeError(f"a filter is a capability name or a dict, not {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    """What ``@mesh.tool`` records: the tool's metadata and its analysed signature."""

    name: str
    capability: str
    func: Callable[..., Any]
    signature: Signature
    description: str = ""
    tags: tuple[str, ...] = ()
    version: str = "1.0.0"
    dependencies: tuple[DependencySpec, ...] = ()
    idempotent: bool = False
    timeout: float | None = None
    provider: ProviderSpec | None = None


def tool_spec(func: Callable[..., Any]) -> ToolSpec | None:
    """The tool spec attached to ``func``, if any."""
    return getattr(func, TOOL_ATTR, None)


def llm_spec(func: Callable[..., Any]) -> LlmSpec | None:
    """The LLM spec attached to ``func``, if any."""
    return getattr(func, LLM_ATTR, None)


def agent_spec(obj: Any) -> AgentSpec | None:
    """The agent spec attached to a class, if any."""
    return getattr(obj, AGENT_ATTR, None)
