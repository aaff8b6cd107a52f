"""The decorators: they validate their arguments, attach a frozen spec and return the target."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

from natsmesh.injection import analyze
from natsmesh.specs import (
    AGENT_ATTR,
    LLM_ATTR,
    TOOL_ATTR,
    AgentSpec,
    DependencySpec,
    LlmSpec,
    ProviderSpec,
    ToolSpec,
    dependency,
    parse_tags,
    tool_filter,
    tool_spec,
)
from natsmesh.subjects import check_token
from natsmesh.versions import parse_version

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


def _check_version(version: str, what: str) -> str:
    if not isinstance(version, str) or (
        parse_version(version) == (0,) and not version.startswith("0")
    ):
        raise ValueError(f"{what} version {version!r} is not a version like '1.0.0'")
    return version


def agent(
    name: str,
    *,
    version: str = "1.0.0",
    description: str = "",
    max_in_flight: int | None = None,
    trace_payloads: bool = False,
) -> Callable[[C], C]:
    """Mark a class as the agent of its module: ``@mesh.agent(name="flight-agent")``.

    The tools are the ``@mesh.tool`` functions of the same module. ``trace_payloads``
    records request and reply payloads on its spans (redacted, truncated).
    """
    check_token(name, "agent name")
    _check_version(version, "agent")
    if max_in_flight is not None and max_in_flight < 1:
        raise ValueError("max_in_flight must be at least 1")
    spec = AgentSpec(name, version, description, max_in_flight, trace_payloads)

    def decorate(cls: C) -> C:
        if not inspect.isclass(cls):
            raise TypeError(
                "@mesh.agent decorates a class (it can be empty: `class FlightAgent: pass`)"
            )
        setattr(cls, AGENT_ATTR, spec)
        return cls

    return decorate


def tool(
    capability: str | None = None,
    *,
    description: str | None = None,
    tags: Iterable[str] | str = (),
    version: str = "1.0.0",
    dependencies: Iterable[str | Mapping[str, Any]] = (),
    idempotent: bool = False,
    timeout: float | None = None,
) -> Callable[[F], F]:
    """Make a function a mesh tool; the function is returned unchanged.

    ``capability`` defaults to the function's name. Each entry of ``dependencies``
    fills one ``mesh.MeshTool`` parameter, in order. ``idempotent=True`` lets a caller
    retry the call on another replica when the first may have started it.
    """
    if capability is not None:
        check_token(capability, "capability")
    tag_tuple = parse_tags(tags)
    if any(t[0] in "+-" for t in tag_tuple):
        raise ValueError("a tool's own tags are plain names; '+' and '-' belong in selectors")
    _check_version(version, "tool")
    deps = tuple(dependency(d) for d in dependencies)

    def decorate(func: F) -> F:
        if not callable(func):
            raise TypeError("@mesh.tool decorates a function")
        spec = ToolSpec(
            name=check_token(func.__name__, "tool name"),
            capability=capability or func.__name__,
            func=func,
            signature=analyze(func, len(deps)),
            description=description if description is not None else inspect.getdoc(func) or "",
            tags=tag_tuple,
            version=version,
            dependencies=deps,
            idempotent=idempotent,
            timeout=timeout,
            provider=getattr(func, "__natsmesh_provider__", None),
        )
        setattr(func, TOOL_ATTR, spec)
        return func

    return decorate


def llm_provider(
    model: str,
    *,
    capability: str = "llm",
    tags: Iterable[str] | str = (),
    version: str = "1.0.0",
    description: str | None = None,
    model_env: str | None = None,
    offline_without_key: bool = False,
    **parameters: Any,
) -> Callable[[F], F]:
    """Turn an empty function into a tool that completes conversations with ``model``
    through litellm.

    ``model_env`` names an environment variable that overrides the model (any litellm
    model, local ones included, or ``offline``). With ``offline_without_key`` the
    provider answers with the offline model, and says so, while the model's API key is
    not set. Other keyword arguments go to ``litellm.acompletion``.
    """
    if not model or not isinstance(model, str):
        raise ValueError("llm_provider needs a model, e.g. 'anthropic/claude-sonnet-4-5'")
    if model_env is not None and not model_env.replace("_", "").isalnum():
        raise ValueError(f"model_env {model_env!r} is not an environment variable name")
    provider = ProviderSpec(model, model_env, dict(parameters), offline_without_key)

    def decorate(func: F) -> F:
        from natsmesh.genai.provider import make_provider_function

        impl = make_provider_function(func, provider)
        setattr(impl, "__natsmesh_provider__", provider)  # noqa: B010
        wrapped = tool(
            capability,
            description=description or inspect.getdoc(func) or f"LLM provider for {model}",
            tags=tags,
            version=version,
        )(impl)
        return cast(F, wrapped)

    return decorate


def llm(
    system_prompt: str | None = None,
    *,
    context_param: str | None = None,
    provider: str | Mapping[str, Any] | None = None,
    filter: Iterable[str | Mapping[str, Any]] = (),
    filter_mode: str = "all",
    max_iterations: int = 10,
    **parameters: Any,
) -> Callable[[F], F]:
    """Inject an LLM agent (a ``mesh.LlmAgent`` parameter) into a tool.

    ``system_prompt`` is text or ``file://path.j2`` relative to the agent file;
    ``provider`` selects the LLM provider (default capability ``llm``); ``filter``
    selects the mesh tools the model may call.
    """
    if max_iterations < 1:
        raise ValueError("max_iterations must be at least 1")
    if filter_mode not in ("all", "best"):
        raise ValueError(
            "filter_mode is 'all' (every matching tool) or 'best' (one per capability)"
        )
    provider_dep: DependencySpec = dependency(provider or "llm")
    filters = tuple(tool_filter(f) for f in filter)

    def decorate(func: F) -> F:
        source = inspect.getsourcefile(func)
        base = Path(source).resolve().parent if source else Path.cwd()
        spec = LlmSpec(
            system_prompt=system_prompt,
            context_param=context_param,
            provider=provider_dep,
            filter=filters,
            filter_mode=filter_mode,
            max_iterations=max_iterations,
            base_dir=base,
            parameters=dict(parameters),
        )
        if system_prompt and system_prompt.startswith("file://"):
            path = base / system_prompt[len("file://") :]
            if not path.is_file():
                raise FileNotFoundError(f"@mesh.llm system_prompt: no template file at {path}")
        setattr(func, LLM_ATTR, spec)
        existing = tool_spec(func)
        if existing is not None and context_param is not None:
            _check_context_param(existing, context_param)
        return func

    return decorate


def _check_context_param(spec: ToolSpec, name: str) -> None:
    if spec.signature.context_param != name:
        raise TypeError(
            f"{spec.name}: context_param={name!r} must name a parameter annotated with a "
            "mesh.MeshContextModel subclass"
        )
