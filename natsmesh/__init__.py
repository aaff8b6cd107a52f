"""natsmesh: AI agents as plain Python functions, run as a mesh over NATS.

Everything public is re-exported here; it is imported lazily so that ``natsmesh call``
stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from natsmesh import natsimport

natsimport.install()  # before anything imports nats: keeps aiohttp out of `import nats`

__version__ = "0.1.0"

_EXPORTS = {
    "CallContext": "natsmesh.call_context",
    "CallStream": "natsmesh.streams",
    "Cancelled": "natsmesh.errors",
    "Final": "natsmesh.final",
    "InvalidArguments": "natsmesh.errors",
    "LlmAgent": "natsmesh.genai.agent",
    "McpMeshTool": "natsmesh.injection",
    "MeshClient": "natsmesh.client",
    "MeshContextModel": "natsmesh.genai.context",
    "MeshError": "natsmesh.errors",
    "MeshTool": "natsmesh.injection",
    "NoProvider": "natsmesh.errors",
    "PayloadTooLarge": "natsmesh.errors",
    "Runtime": "natsmesh.runtime",
    "Settings": "natsmesh.config",
    "TagMismatch": "natsmesh.errors",
    "ToolError": "natsmesh.errors",
    "ToolTimeout": "natsmesh.errors",
    "Unavailable": "natsmesh.errors",
    "agent": "natsmesh.decorators",
    "connect": "natsmesh.session",
    # a module: the FastAPI helper (``mesh.fastapi.tool("plan_trip")``), needs the fastapi extra
    "fastapi": "natsmesh.edge.fastapi",
    "llm": "natsmesh.decorators",
    "llm_provider": "natsmesh.decorators",
    "mcp_server": "natsmesh.edge.mcp_bridge",
    "run": "natsmesh.worker",
    "tool": "natsmesh.decorators",
}

#: public names that are modules themselves
_SUBMODULES = frozenset({"fastapi"})

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'natsmesh' has no attribute {name!r}")
    value = (
        importlib.import_module(module)
        if name in _SUBMODULES
        else getattr(importlib.import_module(module), name)
    )
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from natsmesh.call_context import CallContext
    from natsmesh.client import MeshClient
    from natsmesh.config import Settings
    from natsmesh.decorators import agent, llm, llm_provider, tool
    from natsmesh.edge import fastapi
    from natsmesh.edge.mcp_bridge import mcp_server
    from natsmesh.errors import (
        Cancelled,
        InvalidArguments,
        MeshError,
        NoProvider,
        PayloadTooLarge,
        TagMismatch,
        ToolError,
        ToolTimeout,
        Unavailable,
    )
    from natsmesh.final import Final
    from natsmesh.genai.agent import LlmAgent
    from natsmesh.genai.context import MeshContextModel
    from natsmesh.injection import McpMeshTool, MeshTool
    from natsmesh.runtime import Runtime
    from natsmesh.session import connect
    from natsmesh.streams import CallStream
    from natsmesh.worker import run
