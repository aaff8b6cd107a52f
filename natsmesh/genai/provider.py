"""LLM providers: a tool that completes one conversation turn through litellm.

litellm is imported on the first call, so only provider processes ever load it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from natsmesh.errors import ToolError, Unavailable
from natsmesh.final import Final
from natsmesh.genai import offline
from natsmesh.specs import ProviderSpec

log = logging.getLogger("natsmesh.genai")

#: completion parameters a caller may set; everything else (keys, base URLs) stays with the provider
CALLER_PARAMETERS = frozenset(
    {"temperature", "max_tokens", "top_p", "stop", "seed", "presence_penalty",
     "frequency_penalty", "tool_choice", "parallel_tool_calls", "reasoning_effort"}
)  # fmt: skip
_SECRET_NAMES = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$")


def _litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def scrub(text: str) -> str:
    """Remove the values of secret-looking environment variables from ``text``."""
    for name, value in os.environ.items():
        if value and len(value) >= 8 and _SECRET_NAMES.search(name):
            text = text.replace(value, "***")
    return re.sub(r"sk-[A-Za-z0-9_-]{8,}", "sk-***", text)


def missing_keys(model: str) -> list[str]:
    """Environment variables litellm needs for ``model`` that are not set."""
    try:
        return list(_litellm().validate_environment(model).get("missing_keys") or [])
    except Exception:
        return []


def resolve_model(spec: ProviderSpec) -> str:
    """The model to use now: the override variable, else offline when allowed and keyless."""
    override = os.environ.get(spec.model_env) if spec.model_env else None
    if override:
        return override
    if spec.offline_without_key and missing_keys(spec.model):
        return offline.MODEL
    return spec.model


def prepare(spec: ProviderSpec, tool: str) -> str:
    """Load litellm (off the event loop: the runtime calls this in a thread) and pick the
    model before the first call; log the choice."""
    model = resolve_model(spec)
    if model != offline.MODEL:
        _litellm()
    if model == offline.MODEL and not (spec.model_env and os.environ.get(spec.model_env)):
        keys = ", ".join(missing_keys(spec.model)) or "the API key"
        log.warning(
            "%s is not set: %s answers with the offline model instead of %s",
            keys,
            tool,
            spec.model,
        )
    else:
        log.info("%s answers with %s", tool, model)
    return model


def _reply(response: Any) -> dict[str, Any]:
    choice = response.choices[0]
    message = choice.message
    calls = [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments or "{}"}
        for c in (message.tool_calls or [])
    ]
    usage = getattr(response, "usage", None)
    return {
        "content": message.content or "",
        "tool_calls": calls,
        "usage": {
            "input_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
            "output_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
        },
        "model": response.model or "",
        "finish_reason": "tool_calls" if calls else (choice.finish_reason or "stop"),
    }


def _translate(exc: Exception, model: str, spec: ProviderSpec) -> Exception:
    litellm = _litellm()
    inner = getattr(exc, "original_exception", None)
    if type(exc).__name__ == "MidStreamFallbackError" and isinstance(inner, Exception):
        exc = inner  # raised in the stream (before or after its first chunk): say what it was
    kind = type(exc).__name__
    if isinstance(exc, litellm.AuthenticationError):
        keys = missing_keys(model)
        hint = f"set {', '.join(keys)}" if keys else "check the provider's API key"
        return Unavailable(f"{model}: authentication failed ({hint})", {"cause": kind})
    if isinstance(exc, litellm.RateLimitError):
        return Unavailable(
            f"{model}: rate limited by the upstream API; try again later", {"cause": kind}
        )
    outage = (
        litellm.ServiceUnavailableError,
        litellm.InternalServerError,
        litellm.APIConnectionError,
        litellm.Timeout,
        litellm.BadGatewayError,
    )
    if isinstance(exc, outage):
        return Unavailable(f"{model}: upstream outage ({kind})", {"cause": kind})
    return ToolError(f"{model}: {kind}: {scrub(str(exc))[:300]}", {"cause": kind})


async def complete(
    spec: ProviderSpec,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    response_format: dict[str, Any] | None = None,
    parameters: dict[str, Any] | None = None,
) -> AsyncIterator[Any]:
    """Complete one turn with the provider's model, streaming: the text as it comes (``str``
    chunks), then ``Final(reply)``; records ``gen_ai.*`` on the current span."""
    from opentelemetry import trace

    model = resolve_model(spec)
    span = trace.get_current_span()
    span.set_attribute("gen_ai.operation.name", "chat")
    span.set_attribute("gen_ai.request.model", model)
    span.set_attribute("gen_ai.system", model.split("/", 1)[0] if "/" in model else model)
    if model == offline.MODEL:
        reply = offline.complete(messages, tools, response_format)
        for piece in offline.pieces(reply["content"]):
            yield piece
    else:
        final: list[dict[str, Any]] = []
        async for delta in _litellm_stream(
            spec, model, messages, tools, response_format, parameters, final
        ):
            yield delta
        reply = final[0]
    span.set_attribute("gen_ai.response.model", reply["model"])
    span.set_attribute("gen_ai.usage.input_tokens", reply["usage"]["input_tokens"])
    span.set_attribute("gen_ai.usage.output_tokens", reply["usage"]["output_tokens"])
    span.set_attribute("gen_ai.response.finish_reasons", [reply["finish_reason"]])
    yield Final(reply)


async def _litellm_stream(
    spec: ProviderSpec,
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    response_format: dict[str, Any] | None,
    parameters: dict[str, Any] | None,
    final: list[dict[str, Any]],
) -> AsyncIterator[str]:
    """Stream one turn through litellm (usage included); the whole reply goes into ``final``."""
    litellm = _litellm()
    kwargs: dict[str, Any] = dict(spec.parameters)
    kwargs.update({k: v for k, v in (parameters or {}).items() if k in CALLER_PARAMETERS})
    keys = missing_keys(model)
    if keys:
        hint = (
            f" or set {spec.model_env}=offline to use the offline model" if spec.model_env else ""
        )
        raise Unavailable(
            f"{model} needs {', '.join(keys)}: set it in the provider's environment{hint}",
            {"cause": "missing_api_key", "missing": keys},
        )
    if tools:
        kwargs["tools"] = tools
    if response_format:
        kwargs["response_format"] = response_format
    kwargs["stream"] = True
    kwargs["stream_options"] = {"include_usage": True}
    try:
        response = await litellm.acompletion(model=model, messages=messages, **kwargs)
        chunks = []
        async for chunk in response:
            chunks.append(chunk)
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if delta:
                yield delta
        final.append(_reply(litellm.stream_chunk_builder(chunks, messages=messages)))
    except Exception as exc:
        raise _translate(exc, model, spec) from None


def make_provider_function(func: Callable[..., Any], spec: ProviderSpec) -> Callable[..., Any]:
    """The tool function behind ``@mesh.llm_provider``: named and placed like ``func``."""

    async def provider(
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> AsyncIterator[Any]:
        async for part in complete(spec, messages, tools, response_format, parameters):
            yield part

    provider.__name__ = func.__name__
    provider.__qualname__ = func.__qualname__
    provider.__module__ = func.__module__
    provider.__doc__ = func.__doc__
    return provider
