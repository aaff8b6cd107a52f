"""The offline model: a deterministic stand-in for an LLM, so the planner runs with no API key.

It takes the same request and gives the same reply shape as a real model: on the first
turn it asks for every offered tool (arguments filled from ``Key: value`` lines of the
prompt), then it writes a plan from the tool results and says plainly what it is.
"""

from __future__ import annotations

import json
import re
from typing import Any

MODEL = "offline"
NOTICE = (
    "[offline model] This answer comes from natsmesh's built-in offline model, not from an LLM. "
    "For a real one, set ANTHROPIC_API_KEY (or OPENAI_API_KEY) and restart the providers "
    "(`natsmesh stop && natsmesh start agents/ -d`), or set NATSMESH_CLAUDE_MODEL to any "
    "litellm model, a local one such as ollama/llama3 included."
)
_FACT = re.compile(r"^[\s>*#-]*([A-Za-z][A-Za-z _]{0,30}):\s*\**\s*(\S.*?)\s*$", re.MULTILINE)
_SYNONYMS = {
    "location": ("location", "destination", "city", "place"),
    "destination": ("destination", "location", "city"),
    "city": ("city", "destination", "location"),
    "date": ("date", "dates", "start date", "check in"),
    "check_in": ("check in", "dates", "date"),
    "check_out": ("check out", "dates", "date"),
    "origin": ("origin", "from", "home airport"),
    "user_id": ("user id", "user"),
}
_DEFAULTS = {"origin": "SFO", "user_id": "demo-user"}


def _facts(messages: list[dict[str, Any]]) -> dict[str, str]:
    facts: dict[str, str] = {}
    for m in messages:
        if m.get("role") in ("system", "user") and isinstance(m.get("content"), str):
            for key, value in _FACT.findall(m["content"]):
                facts.setdefault(key.strip().lower().replace("_", " "), value)
    return facts


def _argument(name: str, schema: dict[str, Any], facts: dict[str, str]) -> Any:
    for key in _SYNONYMS.get(name, (name.replace("_", " "),)):
        if key in facts:
            value: Any = facts[key]
            break
    else:
        value = _DEFAULTS.get(name)
    kind = schema.get("type")
    if kind == "integer":
        digits = re.search(r"\d+", str(value or ""))
        return int(digits.group()) if digits else schema.get("default", 0)
    if kind == "number":
        digits = re.search(r"\d+(\.\d+)?", str(value or ""))
        return float(digits.group()) if digits else schema.get("default", 0.0)
    if kind == "boolean":
        return bool(schema.get("default", False))
    if value is None:
        return schema.get("default", "")
    if name in ("date", "check_in") and isinstance(value, str):
        return value.split("-")[0].strip() if re.search(r"\d+-\d+", value) else value
    return value


def _arguments(parameters: dict[str, Any], facts: dict[str, str]) -> dict[str, Any]:
    properties = parameters.get("properties", {})
    required = set(parameters.get("required", []))
    out = {}
    for name, schema in properties.items():
        known = any(k in facts for k in _SYNONYMS.get(name, (name.replace("_", " "),)))
        if name in required or known:
            out[name] = _argument(name, schema, facts)
    return out


def _summary(name: str, content: str) -> str:
    try:
        data = json.loads(content)
    except (TypeError, ValueError):
        return f"- {name}: {content[:200]}"
    if isinstance(data, dict) and "error" in data:
        return f"- {name}: failed ({data['error']})"
    if isinstance(data, dict) and data.get("flights"):
        items = ", ".join(
            f"{f['flight']} {f['departure']}→{f['arrival']} ${f['price']}" for f in data["flights"]
        )
        return f"- Flights: {items}"
    if isinstance(data, dict) and data.get("hotels"):
        items = ", ".join(
            f"{h['name']} {h['stars']}★ ${h['price_per_night']}/night" for h in data["hotels"]
        )
        return f"- Hotels: {items}"
    if isinstance(data, dict) and data.get("pois"):
        items = ", ".join(f"{p['name']} ({p['type']})" for p in data["pois"])
        return f"- Places: {items}. {data.get('recommendation', '')}".rstrip()
    if isinstance(data, dict) and "summary" in data:
        return f"- Weather: {data['summary']}"
    return f"- {name}: {json.dumps(data, ensure_ascii=False)[:200]}"


def _text(messages: list[dict[str, Any]], facts: dict[str, str]) -> str:
    names = {
        c["id"]: c["function"]["name"]
        for m in messages
        if m.get("role") == "assistant"
        for c in m.get("tool_calls") or []
    }
    found = [
        _summary(names.get(m.get("tool_call_id", ""), "tool"), m.get("content", ""))
        for m in messages
        if m.get("role") == "tool"
    ]
    head = ", ".join(
        f"{k.title()}: {facts[k]}" for k in ("destination", "dates", "budget") if k in facts
    )
    lines = [NOTICE, "", f"Trip plan ({head})" if head else "Answer"]
    if found:
        lines += ["", "What the mesh found:", *found]
    lines += [
        "",
        "Suggested outline: arrive and settle in on day 1, the places above on the middle days,"
        " and keep the last day free for anything the weather changed.",
    ]
    return "\n".join(lines)


def _structured(schema: dict[str, Any], facts: dict[str, str], text: str) -> str:
    props = schema.get("properties", {})
    obj: dict[str, Any] = {}
    for name, field in props.items():
        kind = field.get("type")
        if kind == "string":
            obj[name] = facts.get(
                name.replace("_", " "), text if name in ("summary", "plan", "text") else ""
            )
        elif kind == "array":
            obj[name] = []
        elif kind == "integer":
            obj[name] = 0
        elif kind == "number":
            obj[name] = 0.0
        elif kind == "boolean":
            obj[name] = False
        elif "default" in field:
            obj[name] = field["default"]
    return json.dumps(obj, ensure_ascii=False)


def complete(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    response_format: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One turn of the offline model, in the provider's reply shape."""
    facts = _facts(messages)
    answered = any(m.get("role") == "tool" for m in messages)
    prompt_tokens = sum(len(str(m.get("content") or "")) for m in messages) // 4 + 1
    if tools and not answered:
        calls = [
            {
                "id": f"offline-{i}",
                "name": t["function"]["name"],
                "arguments": json.dumps(_arguments(t["function"].get("parameters", {}), facts)),
            }
            for i, t in enumerate(tools)
        ]
        return _reply("", calls, prompt_tokens, "tool_calls")
    text = _text(messages, facts)
    if response_format and response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema", {}).get("schema", {})
        text = _structured(schema, facts, text)
    return _reply(text, [], prompt_tokens, "stop")


_PIECE = re.compile(r"\S+\s*|\s+")


def pieces(text: str) -> list[str]:
    """``text`` as the offline model streams it: word by word, spaces kept."""
    return _PIECE.findall(text)


def _reply(
    content: str, calls: list[dict[str, Any]], prompt_tokens: int, finish: str
) -> dict[str, Any]:
    return {
        "content": content,
        "tool_calls": calls,
        "usage": {
            "input_tokens": prompt_tokens,
            "output_tokens": len(content) // 4 + 10 * len(calls),
        },
        "model": MODEL,
        "finish_reason": finish,
    }
