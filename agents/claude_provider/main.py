"""claude-provider: Claude through litellm, as the mesh's `llm` capability (tag `claude`).

NATSMESH_CLAUDE_MODEL overrides the model (any litellm model, or `offline`). With no
ANTHROPIC_API_KEY set it answers with the offline model and says so in its replies.
"""

from __future__ import annotations

import natsmesh as mesh


@mesh.agent(name="claude-provider", version="1.0.0", description="Claude via litellm")
class ClaudeProvider:
    pass


@mesh.llm_provider(
    model="anthropic/claude-sonnet-4-5",
    capability="llm",
    tags=["claude"],
    model_env="NATSMESH_CLAUDE_MODEL",
    offline_without_key=True,
    max_tokens=4096,
)
def claude_provider() -> None:
    """Complete conversations with Claude."""


if __name__ == "__main__":
    mesh.run()
