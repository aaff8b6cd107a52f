"""The LLM agent injected by ``@mesh.llm``: renders the prompt, runs the tool loop in the consumer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from natsmesh.client import CallContext, MeshClient
    from natsmesh.specs import LlmSpec


class LlmAgent:
    """Placeholder; the loop lands with the LLM work."""

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
        self._return_type = return_type
        self._tool_name = tool_name
