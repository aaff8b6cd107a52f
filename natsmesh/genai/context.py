"""The base class of context models that fill prompt templates."""

from __future__ import annotations

import pydantic


class MeshContextModel(pydantic.BaseModel):
    """Fields of a prompt template. A tool parameter of this type is injected, not sent:
    it is filled from the tool's arguments and from ``context={...}`` at call time."""

    model_config = pydantic.ConfigDict(extra="allow")
