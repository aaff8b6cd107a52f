"""openai-provider: GPT through litellm, as the mesh's `llm` capability (tags `openai`, `gpt`).

NATSMESH_OPENAI_MODEL overrides the model (any litellm model, or `offline`). With no
OPENAI_API_KEY set it answers with the offline model and says so in its replies.
"""

from __future__ import annotations

import natsmesh as mesh


@mesh.agent(name="openai-provider", version="1.0.0", description="OpenAI via litellm")
class OpenAIProvider:
    pass


@mesh.llm_provider(
    model="openai/gpt-4o-mini",
    capability="llm",
    tags=["openai", "gpt"],
    model_env="NATSMESH_OPENAI_MODEL",
    offline_without_key=True,
    max_tokens=4096,
)
def openai_provider() -> None:
    """Complete conversations with GPT."""


if __name__ == "__main__":
    mesh.run()
