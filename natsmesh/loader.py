"""Importing agent files and folders and collecting the specs their decorators recorded."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from natsmesh.specs import AgentSpec, ToolSpec, agent_spec, llm_spec, tool_spec

if TYPE_CHECKING:
    from natsmesh.edge.mcp_bridge import McpServerSpec

AGENT_FILE_NAMES = ("main.py", "agent.py")


@dataclasses.dataclass(frozen=True)
class LoadedAgent:
    """An agent file's agent spec and tools."""

    agent: AgentSpec
    tools: tuple[ToolSpec, ...]
    path: Path | None = None
    #: an MCP server whose tools this agent serves (listed when it starts; see ``mesh.mcp_server``)
    mcp: McpServerSpec | None = None


def collect(module: ModuleType, path: Path | None = None) -> LoadedAgent:
    """The agent and tools a module defines; raises ``ValueError`` saying what is missing."""
    where = str(path or module.__name__)
    own = [
        obj for obj in vars(module).values() if getattr(obj, "__module__", None) == module.__name__
    ]
    agents = [a for obj in own if inspect.isclass(obj) and (a := agent_spec(obj)) is not None]
    tools = [t for obj in own if callable(obj) and (t := tool_spec(obj)) is not None]
    from natsmesh.edge.mcp_bridge import McpServerSpec

    servers = [obj for obj in vars(module).values() if isinstance(obj, McpServerSpec)]
    if servers:
        if len(servers) > 1 or agents or tools:
            raise ValueError(f"{where}: a file with mesh.mcp_server(...) declares nothing else")
        return LoadedAgent(servers[0].agent, (), path, servers[0])
    if not agents:
        raise ValueError(
            f"{where}: no @mesh.agent class; add one, e.g.\n"
            '    @mesh.agent(name="my-agent")\n    class MyAgent:\n        pass'
        )
    if len(agents) > 1:
        raise ValueError(f"{where}: more than one @mesh.agent class; keep one agent per file")
    if not tools:
        raise ValueError(f"{where}: the agent has no @mesh.tool functions")
    seen: dict[str, str] = {}
    for t in tools:
        if t.capability in seen:
            raise ValueError(
                f"{where}: tools {seen[t.capability]} and {t.name} both provide {t.capability!r}"
            )
        seen[t.capability] = t.name
        llm = llm_spec(t.func)
        if llm is not None and t.signature.llm_param is None:
            raise TypeError(f"{t.name}: @mesh.llm needs a parameter annotated `mesh.LlmAgent`")
        if llm is not None and llm.context_param and llm.context_param != t.signature.context_param:
            raise TypeError(
                f"{t.name}: context_param={llm.context_param!r} must name a parameter annotated "
                "with a mesh.MeshContextModel subclass"
            )
    return LoadedAgent(agents[0], tuple(tools), path)


def import_file(path: Path) -> ModuleType:
    """Import a Python file under a unique module name (its folder goes on ``sys.path``)."""
    path = path.resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    name = f"natsmesh_agent_{path.parent.name}_{path.stem}_{digest}".replace("-", "_")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_file(path: Path | str) -> LoadedAgent:
    """Import one agent file and collect its agent."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such agent file")
    return collect(import_file(p), p)


def find_agent_files(path: Path | str) -> list[Path]:
    """The agent files a path names: the file itself, ``<dir>/main.py``, or every
    ``<dir>/<agent>/main.py`` below a folder of agents."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such file or folder")
    for name in AGENT_FILE_NAMES:
        if (p / name).is_file():
            return [p / name]
    files = []
    for child in sorted(p.iterdir()):
        if child.is_dir():
            for name in AGENT_FILE_NAMES:
                if (child / name).is_file():
                    files.append(child / name)
                    break
    if not files:
        raise FileNotFoundError(f"{p}: no agent files (expected <agent>/main.py below it)")
    return files
