"""Signature analysis (once, at decoration) and the per-call dependency proxies."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pydantic

from natsmesh.genai.agent import LlmAgent
from natsmesh.genai.context import MeshContextModel
from natsmesh.signature import Signature
from natsmesh.specs import DependencySpec

if TYPE_CHECKING:
    from natsmesh.call_context import CallContext
    from natsmesh.client import MeshClient
    from natsmesh.streams import CallStream


class MeshTool:
    """A dependency injected into a tool: ``await user_prefs(user_id="demo")``.

    Bound to the call that is running, so nested calls carry its trace context and
    what is left of its deadline. Injected as ``None`` when no provider is alive.
    """

    __slots__ = ("_client", "_context", "dependency")

    def __init__(self, client: MeshClient, dependency: DependencySpec, context: CallContext | None):
        self._client = client
        self.dependency = dependency
        self._context = context

    @property
    def capability(self) -> str:
        return self.dependency.capability

    async def __call__(self, **arguments: Any) -> Any:
        """Call the best live provider of the dependency with these arguments."""
        return await self._client.call(self.dependency, arguments, context=self._context)

    def stream(self, **arguments: Any) -> CallStream:
        """Call a streaming provider and iterate over its chunks (see ``MeshClient.stream``)."""
        return self._client.stream(self.dependency, arguments, context=self._context)

    def __repr__(self) -> str:
        return f"MeshTool({self.dependency.capability!r}, tags={list(self.dependency.tags)})"


def _unwrap_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_sub(annotation: Any, cls: type) -> bool:
    inner = _unwrap_optional(annotation)
    return isinstance(inner, type) and issubclass(inner, cls)


def analyze(func: Callable[..., Any], dependency_count: int) -> Signature:
    """Split ``func``'s parameters into arguments (schema) and injected ones.

    ``MeshTool`` parameters take the declared dependencies in order; an ``LlmAgent``
    parameter takes the LLM agent; a ``MeshContextModel`` parameter takes the context.
    """
    name = getattr(func, "__qualname__", repr(func))
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:
        raise TypeError(f"{name}: cannot resolve its type hints: {exc}") from exc
    fields: dict[str, Any] = {}
    deps: list[str] = []
    llm_param = context_param = None
    context_type = None
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(param.name, Any)
        if _is_sub(annotation, MeshTool):
            deps.append(param.name)
        elif _is_sub(annotation, LlmAgent):
            llm_param = param.name
        elif _is_sub(annotation, MeshContextModel):
            context_param, context_type = param.name, _unwrap_optional(annotation)
        else:
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (annotation, default)
    if len(deps) != dependency_count:
        raise TypeError(
            f"{name}: declares {dependency_count} dependencies but has {len(deps)} "
            f"MeshTool parameters ({', '.join(deps) or 'none'}); add one "
            "`x: mesh.MeshTool = None` parameter per dependency, in the same order"
        )
    model = pydantic.create_model(  # type: ignore[call-overload]
        f"{func.__name__}_arguments",
        __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )
    return_type = hints.get("return")
    if inspect.isasyncgenfunction(func):
        return_type = None  # AsyncIterator[...] describes the chunks, not a result
    output_schema = None
    if return_type not in (None, type(None), Any):
        try:
            output_schema = pydantic.TypeAdapter(return_type).json_schema()
        except Exception:
            output_schema = None
    input_schema = model.model_json_schema()
    input_schema.pop("title", None)
    return Signature(
        args_model=model,
        input_schema=input_schema,
        output_schema=output_schema,
        dependency_params=tuple(deps),
        is_async=inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func),
        is_stream=inspect.isasyncgenfunction(func),
        return_type=return_type,
        llm_param=llm_param,
        context_param=context_param,
        context_type=context_type,
    )


#: the MCP Mesh name, for code moving over
McpMeshTool = MeshTool
