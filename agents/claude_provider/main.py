"""claude-provider: Claude through litellm, as the mesh's `llm` capability (tag `claude`).

NATSMESH_CLAUDE_MODEL overrides the model (any litellm model, or `offline`). With no
ANTHROPIC_API_KEY set it answers with the offline model and says so in its replies.
The agent is defined, with its OpenAI sibling, in ../llm_providers.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import natsmesh as mesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # agents/, for llm_providers
from llm_providers import provider_agent

ClaudeProvider, claude_provider = provider_agent(__name__, "claude")

if __name__ == "__main__":
    mesh.run()
