"""The LLM agent ``@mesh.llm`` injects: it renders the prompt and runs the tool loop here,
in the consumer, so the provider only completes conversations and every model turn is
its own span beside the tool calls it asked for."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pydantic

from natsmesh.errors import MeshError, ToolError
from natsmesh.genai.templates import render
from natsmesh.genai.toolset import bounded_toolset
from natsmesh.selection import tags_match

log = logging.getLogger("natsmesh.genai")
#: what was last left out per tool, so that it is said once
_warned: dict[str, tuple[str, ...]] = {}

if TYPE_CHECKING:
    from natsmesh.call_context import CallContext
    from natsmesh.client import MeshClient
    from natsmesh.specs import LlmSpec
    from natsmesh.wire import ToolRecord


@dataclasses.dataclass(frozen=True)
class Turn:
    """One model reply, as the provider sent it."""

    content: str
    tool_calls: list[dict[str, Any]]
    usage: dict[str, int]
    model: str
    finish_reason: str


class LlmAgent:
    """Call it: ``await llm("Plan a trip", context={...})`` → text, or the tool's
    pydantic return type when it has one (structured output)."""

    def __init__(
        self,
        client: MeshClient,
        spec: LlmSpec,
        call: CallContext,
        context: Any,
        return_type: Any,
        tool_name: str,
    ) -> None:
        self._client = client
        self._spec = spec
        self._call = call
        self._context = context
        self._output = return_type if _is_model(return_type) else None
        self._tool_name = tool_name
        #: every model turn of the last call (usage, raw replies)
        self.turns: list[Turn] = []
        #: the whole conversation of the last call, tool results included
        self.messages: list[dict[str, Any]] = []

    def system_prompt(self, context: dict[str, Any] | None = None) -> str:
        """The rendered system prompt for this call's context plus ``context``."""
        if not self._spec.system_prompt:
            return ""
        variables: dict[str, Any] = {}
        if isinstance(self._context, pydantic.BaseModel):
            variables.update(self._context.model_dump())
        variables.update(context or {})
        return render(self._spec.system_prompt, self._spec.base_dir, variables)

    def tools(self) -> list[dict[str, Any]]:
        """The OpenAI function schemas of the mesh tools the filter lets the model call."""
        return [_function_schema(t) for t in self._tool_records().values()]

    def _tool_records(self) -> dict[str, ToolRecord]:
        """The filter's tools, bounded in count and size (see :mod:`natsmesh.genai.toolset`)."""
        filters = self._spec.filter
        if not filters:
            return {}
        matching = (
            tool
            for record in self._client.view.records.values()
            for tool in record.tools
            if tool.kind == "tool"
            and any(
                (f.capability is None or f.capability == tool.capability)
                and tags_match(tool.tags, f.tags)
                for f in filters
            )
        )
        toolset = bounded_toolset(matching, exclude=self._tool_name)
        if toolset.omitted and toolset.omitted != _warned.get(self._tool_name):
            _warned[self._tool_name] = toolset.omitted
            log.warning(
                "%s: %d tools left out of the model's request (over the bound): %s",
                self._tool_name,
                len(toolset.omitted),
                ", ".join(toolset.omitted[:10]),
            )
        return toolset.tools

    def _start(
        self,
        message: str | list[dict[str, Any]],
        context: dict[str, Any] | None,
        parameters: dict[str, Any],
    ) -> tuple[dict[str, Any], dict[str, ToolRecord]]:
        """The first request of a conversation, and the tools the model may call."""
        system = self.system_prompt(context)
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        if isinstance(message, str):
            messages.append({"role": "user", "content": message})
        else:
            messages.extend(message)
        records = self._tool_records()
        tools = [_function_schema(t) for t in records.values()]
        request: dict[str, Any] = {"messages": messages}
        if tools:
            request["tools"] = tools
        if self._output is not None:
            request["response_format"] = _response_format(self._output)
        if parameters or self._spec.parameters:
            request["parameters"] = {**self._spec.parameters, **parameters}
        self.turns = []
        self.messages = messages
        return request, records

    async def __call__(
        self,
        message: str | list[dict[str, Any]],
        *,
        context: dict[str, Any] | None = None,
        **parameters: Any,
    ) -> Any:
        """Run the conversation to its answer; raises :class:`ToolError` past ``max_iterations``."""
        request, records = self._start(message, context, parameters)
        for _ in range(self._spec.max_iterations):
            turn = await self._complete(request)
            if not turn.tool_calls:
                return self._finish(turn.content)
            self.messages.append(_assistant_message(turn))
            results = await asyncio.gather(*(self._run_tool(c, records) for c in turn.tool_calls))
            self.messages.extend(results)
        raise self._too_many()

    async def stream(
        self,
        message: str | list[dict[str, Any]],
        *,
        context: dict[str, Any] | None = None,
        **parameters: Any,
    ) -> AsyncIterator[Any]:
        """Run the conversation, yielding the model's text as it is written (``str``) and an
        event (a dict) for each tool call it makes and each result, in every turn."""
        request, records = self._start(message, context, parameters)
        for _ in range(self._spec.max_iterations):
            async with self._client.stream(
                self._spec.provider, request, context=self._call
            ) as parts:
                async for part in parts:
                    if isinstance(part, str):
                        yield part
            turn = self._turn(parts.result)
            if not turn.tool_calls:
                self._finish(turn.content)
                return
            self.messages.append(_assistant_message(turn))
            for call in turn.tool_calls:
                yield {"event": "tool_call", "tool": call.get("name"), "id": call.get("id")}
            results = await asyncio.gather(*(self._run_tool(c, records) for c in turn.tool_calls))
            for call, result in zip(turn.tool_calls, results, strict=True):
                failed = result["content"].startswith('{"error"')
                yield {"event": "tool_result", "tool": call.get("name"), "ok": not failed}
            self.messages.extend(results)
        raise self._too_many()

    def _too_many(self) -> ToolError:
        return ToolError(
            f"{self._tool_name}: the model was still calling tools after "
            f"max_iterations={self._spec.max_iterations} turns",
            {"max_iterations": self._spec.max_iterations},
        )

    async def _complete(self, request: dict[str, Any]) -> Turn:
        return self._turn(await self._client.call(self._spec.provider, request, context=self._call))

    def _turn(self, reply: Any) -> Turn:
        try:
            turn = Turn(
                content=reply.get("content") or "",
                tool_calls=list(reply.get("tool_calls") or []),
                usage=dict(reply.get("usage") or {}),
                model=str(reply.get("model", "")),
                finish_reason=str(reply.get("finish_reason", "")),
            )
        except AttributeError:
            raise ToolError(f"the LLM provider sent a malformed reply: {reply!r:.200}") from None
        self.turns.append(turn)
        return turn

    async def _run_tool(
        self, call: dict[str, Any], records: dict[str, ToolRecord]
    ) -> dict[str, Any]:
        name = str(call.get("name", ""))
        result: Any
        tool = records.get(name)
        if tool is None:
            result = {"error": f"there is no tool named {name!r}; use one of {sorted(records)}"}
        else:
            try:
                raw = call.get("arguments") or "{}"
                arguments = json.loads(raw) if isinstance(raw, str) else raw
                result = await self._client.call(tool.capability, arguments, context=self._call)
            except json.JSONDecodeError as exc:
                result = {"error": f"the arguments were not valid JSON: {exc.msg}"}
            except MeshError as exc:
                result = {"error": {"type": exc.type, "message": exc.message}}
        return {
            "role": "tool",
            "tool_call_id": call.get("id", name),
            "content": json.dumps(result, ensure_ascii=False, default=str),
        }

    def _finish(self, content: str) -> Any:
        if self._output is None:
            return content
        try:
            return self._output.model_validate_json(_strip_fence(content))
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(reply)'}: {e['msg']}"
                for e in exc.errors(include_url=False)[:5]
            )
            raise ToolError(
                f"the model's reply does not match {self._output.__name__}: {problems}",
                {"reply": content[:500]},
            ) from None


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, pydantic.BaseModel)


def _function_schema(tool: ToolRecord) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description or tool.name,
            "parameters": tool.input_schema or {"type": "object", "properties": {}},
        },
    }


def _response_format(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": model.__name__, "schema": model.model_json_schema()},
    }


def _assistant_message(turn: Turn) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": turn.content or None,
        "tool_calls": [
            {
                "id": c.get("id"),
                "type": "function",
                "function": {"name": c.get("name"), "arguments": c.get("arguments") or "{}"},
            }
            for c in turn.tool_calls
        ],
    }


def _strip_fence(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[-1].rsplit("```", 1)[0]
    return stripped
