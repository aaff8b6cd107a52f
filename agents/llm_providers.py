"""The demo's two LLM provider agents, defined once: one row per provider.

``agents/claude_provider/main.py`` and ``agents/openai_provider/main.py`` each build their
agent from a row here. A provider answers the mesh's ``llm`` capability through litellm;
``<model_env>`` overrides the model (any litellm model, or ``offline``), and with no API
key set it answers with the offline model and says so in its replies.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import natsmesh as mesh


@dataclasses.dataclass(frozen=True)
class Provider:
    agent: str
    description: str
    model: str
    tags: tuple[str, ...]
    model_env: str
    doc: str


PROVIDERS = {
    "claude": Provider(
        "claude-provider", "Claude via litellm", "anthropic/claude-sonnet-4-5", ("claude",),
        "NATSMESH_CLAUDE_MODEL", "Complete conversations with Claude.",
    ),
    "openai": Provider(
        "openai-provider", "OpenAI via litellm", "openai/gpt-4o-mini", ("openai", "gpt"),
        "NATSMESH_OPENAI_MODEL", "Complete conversations with GPT.",
    ),
}  # fmt: skip


def provider_agent(module: str, key: str) -> tuple[type, Any]:
    """The agent class and the provider tool of ``PROVIDERS[key]``, placed in ``module`` (the
    agent file assigns both to module-level names, where the loader finds them)."""
    row = PROVIDERS[key]
    cls = type(f"{key.title()}Provider", (), {"__module__": module, "__doc__": row.description})
    agent = mesh.agent(name=row.agent, version="1.0.0", description=row.description)(cls)

    def provider() -> None:
        pass

    provider.__name__ = provider.__qualname__ = row.agent.replace("-", "_")
    provider.__module__ = module
    provider.__doc__ = row.doc
    tool = mesh.llm_provider(
        model=row.model,
        capability="llm",
        tags=list(row.tags),
        model_env=row.model_env,
        offline_without_key=True,
        max_tokens=4096,
    )(provider)
    return agent, tool
