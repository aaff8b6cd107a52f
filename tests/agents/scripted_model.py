"""A test-only litellm provider, ``natsmesh-test/<script>``: scripted model turns.

Registering it in ``litellm.custom_provider_map`` lets a test provider use an ordinary
``@mesh.llm_provider(model="natsmesh-test/<script>")``: the provider code runs unchanged
and litellm itself hands the call to :class:`ScriptedModel`, which plays the script's
turns (through litellm's own ``mock_completion``, or as a stream of generic chunks when the
provider streams) and records what litellm passed on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

PROVIDER = "natsmesh-test"

#: script name -> turns; a turn is ``{"content": ...}``, ``{"tool_calls": [{"name",
#: "arguments"}]}`` or ``{"error": "litellm.RateLimitError"}`` (litellm's mock errors)
SCRIPTS: dict[str, list[dict[str, Any]]] = {}
#: every call the model received: its model, api_key, api_base, headers and optional params
CALLS: list[dict[str, Any]] = []


def model(name: str, turns: list[dict[str, Any]]) -> str:
    """Register ``turns`` under ``name`` and return the litellm model that plays them."""
    install()
    SCRIPTS[name] = [dict(t) for t in turns]
    return f"{PROVIDER}/{name}"


def install() -> None:
    """Register the provider with litellm once per process."""
    import litellm
    from litellm.llms.custom_llm import CustomLLM

    if any(item["provider"] == PROVIDER for item in litellm.custom_provider_map):
        return

    class ScriptedModel(CustomLLM):
        async def acompletion(  # type: ignore[override]
            self, model: str, messages: list[dict[str, Any]], **kwargs: Any
        ) -> Any:
            _record(model, kwargs)
            return litellm.mock_completion(model=model, messages=messages, **_turn(model, messages))

        async def astreaming(  # type: ignore[override]
            self, model: str, messages: list[dict[str, Any]], **kwargs: Any
        ) -> AsyncIterator[dict[str, Any]]:
            _record(model, kwargs)
            turn = _turn(model, messages)
            if turn["mock_response"].startswith("litellm."):  # a scripted error
                litellm.mock_completion(model=model, messages=messages, **turn)
            for i, call in enumerate(turn.get("mock_tool_calls", [])):
                yield _chunk("", tool_use={**call, "index": i})
            words = turn["mock_response"].split(" ")
            for i, word in enumerate(words):
                yield _chunk(word if i == 0 else " " + word)
            finish = "tool_calls" if turn.get("mock_tool_calls") else "stop"
            usage = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
            yield _chunk("", is_finished=True, finish_reason=finish, usage=usage)

    litellm.custom_provider_map = [
        *litellm.custom_provider_map,
        {"provider": PROVIDER, "custom_handler": ScriptedModel()},
    ]
    litellm.utils.custom_llm_setup()


def _record(model: str, kwargs: dict[str, Any]) -> None:
    CALLS.append(
        {
            "model": model,
            "api_key": kwargs.get("api_key"),
            "api_base": kwargs.get("api_base"),
            "headers": dict(kwargs.get("headers") or {}),
            "optional_params": dict(kwargs.get("optional_params") or {}),
        }
    )


def _chunk(text: str, **fields: Any) -> dict[str, Any]:
    """One ``GenericStreamingChunk``."""
    chunk = {"text": text, "is_finished": False, "finish_reason": "", "usage": None, "index": 0}
    return {**chunk, **fields}


def _turn(model: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    script = SCRIPTS[model.removeprefix(f"{PROVIDER}/")]
    index = sum(1 for m in messages if m.get("role") == "assistant")
    turn = script[min(index, len(script) - 1)]
    calls = [
        {
            "id": f"call-{index}-{i}",
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))},
        }
        for i, c in enumerate(turn.get("tool_calls", []))
    ]
    kwargs: dict[str, Any] = {"mock_response": turn.get("error") or turn.get("content", "")}
    if calls:
        kwargs["mock_tool_calls"] = calls
    return kwargs
