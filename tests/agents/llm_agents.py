"""Test LLM agents: scripted providers (a test-only litellm provider) and consumers."""

from __future__ import annotations

from typing import Any

import pydantic

import natsmesh as mesh
from tests.agents import scripted_model
from tests.helpers import loaded


def scripted_provider(name: str, tags: list[str], script: list[dict[str, Any]], **options: Any):
    """A provider whose model replies are scripted turn by turn: an ordinary provider whose
    model, ``natsmesh-test/<name>``, is the test-only litellm provider of ``scripted_model``."""

    @mesh.agent(name=name)
    class Provider:
        pass

    def provider() -> None:
        """Scripted provider."""

    provider.__name__ = provider.__qualname__ = name.replace("-", "_")
    model = scripted_model.model(name, script)
    decorated = mesh.llm_provider(model=model, tags=tags, **options)(provider)
    return loaded(Provider, decorated)


def keyless_provider(name: str = "keyless-provider"):
    """A real provider with no key and no offline fallback."""

    @mesh.agent(name=name)
    class Provider:
        pass

    @mesh.llm_provider(model="anthropic/claude-sonnet-4-5", tags=["claude"])
    def keyless() -> None:
        """No key."""

    return loaded(Provider, keyless)


class Trip(mesh.MeshContextModel):
    destination: str
    mood: str = ""


class Plan(pydantic.BaseModel):
    city: str
    days: int


def asker(
    max_iterations: int = 4, prompt: str = "file://prompts/ask.j2", tags: list[str] | None = None
):
    """A consumer whose tool asks the LLM, offering the weather and hotel tools."""

    @mesh.agent(name="asker-agent")
    class Asker:
        pass

    @mesh.llm(
        system_prompt=prompt,
        context_param="ctx",
        provider={"capability": "llm", "tags": tags or ["+claude"]},
        filter=["weather_forecast", {"tags": ["hotels"]}],
        max_iterations=max_iterations,
    )
    @mesh.tool(capability="ask")
    async def ask(
        destination: str,
        question: str = "What should I do?",
        mood: str = "",
        extra: dict[str, Any] | None = None,
        ctx: Trip | None = None,
        llm: mesh.LlmAgent | None = None,
    ) -> dict[str, Any]:
        assert llm is not None
        answer = await llm(question, context=extra or {})
        return {
            "answer": answer,
            "system": llm.system_prompt(extra or {}),
            "messages": llm.messages,
            "tools": [t["function"]["name"] for t in llm.tools()],
        }

    return loaded(Asker, ask)


def planner():
    """A consumer with structured output."""

    @mesh.agent(name="structured-agent")
    class Structured:
        pass

    @mesh.llm(system_prompt="Reply with JSON.", provider="llm")
    @mesh.tool(capability="structured_plan")
    async def structured_plan(destination: str, llm: mesh.LlmAgent | None = None) -> Plan:
        assert llm is not None
        return await llm(f"Plan {destination}")

    return loaded(Structured, structured_plan)
