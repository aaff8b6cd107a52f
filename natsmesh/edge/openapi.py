"""The gateway's catalogue of live tools and its OpenAPI 3.1 document, built from the registry."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

from natsmesh.selection import parse_version
from natsmesh.wire import AgentRecord

OPENAPI_VERSION = "3.1.0"
_ERROR_STATUSES = {
    "400": "Malformed request: the body is not a JSON object, or a query parameter is invalid",
    "401": "Missing or wrong bearer token",
    "404": "No live provider of this tool (no_provider)",
    "413": "The arguments or the result are too large (payload_too_large)",
    "422": "The arguments do not match the tool's input schema (invalid_arguments)",
    "502": "The tool raised (tool_error)",
    "503": "The providers cannot take the call now (unavailable, tag_mismatch, cancelled)",
    "504": "The call's deadline passed (timeout)",
}
_MESH_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string", "examples": ["invalid_arguments", "no_provider"]},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}
_PARAMETERS = [
    {
        "name": "tags",
        "in": "query",
        "required": False,
        "description": "Provider selector: `tag` required, `+tag` preferred, `-tag` excluded, "
        "comma-separated",
        "schema": {"type": "string"},
    },
    {
        "name": "version",
        "in": "query",
        "required": False,
        "description": "Version constraint on the provider, e.g. `>=1.0,<2`",
        "schema": {"type": "string"},
    },
    {
        "name": "timeout",
        "in": "query",
        "required": False,
        "description": "Seconds before the call fails with 504 (default: the mesh's timeout)",
        "schema": {"type": "number", "exclusiveMinimum": 0},
    },
]
_COMPONENT_NAME = re.compile(r"[^A-Za-z0-9._-]")


def catalog(records: Iterable[AgentRecord]) -> list[dict[str, Any]]:
    """One entry per tool name, sorted: the newest version's record, with every agent that
    offers it and the number of live instances."""
    tools: dict[str, dict[str, Any]] = {}
    for record in records:
        for tool in record.tools:
            entry = tools.get(tool.name)
            if entry is None or parse_version(tool.version) > parse_version(entry["version"]):
                previous = entry
                entry = tools[tool.name] = {
                    "name": tool.name,
                    "capability": tool.capability,
                    "description": tool.description,
                    "version": tool.version,
                    "tags": list(tool.tags),
                    "kind": tool.kind,
                    "stream": tool.stream,
                    "idempotent": tool.idempotent,
                    "agents": previous["agents"] if previous else [],
                    "instances": previous["instances"] if previous else 0,
                    "input_schema": tool.input_schema,
                    "output_schema": tool.output_schema,
                }
            if record.name not in entry["agents"]:
                entry["agents"].append(record.name)
            entry["instances"] += 1
    for entry in tools.values():
        entry["agents"].sort()
    return [tools[name] for name in sorted(tools)]


def document(tools: list[dict[str, Any]], version: str, secured: bool) -> dict[str, Any]:
    """An OpenAPI 3.1 document with one ``POST /tools/{name}`` operation per tool.

    The request body's schema is the tool's input schema and the 200 response's is its
    output schema; a streaming tool also answers ``text/event-stream``. Each schema's
    ``$defs`` move to ``components/schemas`` (as ``<tool>.<Name>``), so every ``$ref``
    resolves against the document.
    """
    components: dict[str, Any] = {"MeshError": _MESH_ERROR}
    paths: dict[str, Any] = {
        "/tools": {
            "get": {
                "operationId": "list_tools",
                "summary": "The live tools and their schemas",
                "responses": {
                    "200": {
                        "description": "One entry per tool",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        }
    }
    for tool in tools:
        name = tool["name"]
        input_schema = _hoist(tool["input_schema"] or {"type": "object"}, name, components)
        output_schema = _hoist(tool["output_schema"] or {}, name, components)
        content: dict[str, Any] = {"application/json": {"schema": output_schema}}
        if tool["stream"]:
            content["text/event-stream"] = {
                "schema": {
                    "type": "string",
                    "description": "`event: chunk` per streamed part, then `event: result` "
                    "or `event: error`; each `data:` is one JSON value",
                }
            }
        responses: dict[str, Any] = {
            "200": {"description": "The tool's result", "content": content}
        }
        for status, text in _ERROR_STATUSES.items():
            if status == "401" and not secured:
                continue
            responses[status] = {
                "description": text,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/MeshError"}}
                },
            }
        description = tool["description"] or name
        paths[f"/tools/{name}"] = {
            "post": {
                "operationId": name,
                "summary": description.splitlines()[0][:120],
                "description": f"{description}\n\nOffered by {', '.join(tool['agents'])} "
                f"(capability `{tool['capability']}`, version {tool['version']}, "
                f"{tool['instances']} instance(s)).",
                "tags": tool["agents"][:1],
                "parameters": copy.deepcopy(_PARAMETERS),
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": input_schema}},
                },
                "responses": responses,
            }
        }
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "natsmesh gateway",
            "version": version,
            "description": "The live tools of a natsmesh mesh, over HTTP. This document "
            "follows the registry: it changes as agents come and go.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc


def _hoist(schema: dict[str, Any], tool: str, components: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` whose ``$defs`` live in ``components`` and whose local refs
    point there."""
    schema = copy.deepcopy(schema)
    defs = schema.pop("$defs", None) or schema.pop("definitions", None) or {}
    names = {key: _COMPONENT_NAME.sub("_", f"{tool}.{key}") for key in defs}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                for prefix in ("#/$defs/", "#/definitions/"):
                    if ref.startswith(prefix) and ref[len(prefix) :] in names:
                        node["$ref"] = f"#/components/schemas/{names[ref[len(prefix) :]]}"
            for value in node.values():
                rewrite(value)
        elif isinstance(node, list):
            for item in node:
                rewrite(item)
        return node

    for key, definition in defs.items():
        components[names[key]] = rewrite(definition)
    return rewrite(schema)
