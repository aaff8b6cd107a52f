"""What a tool's signature says, worked out once at decoration: its argument model and schemas."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pydantic

from natsmesh.errors import InvalidArguments

if TYPE_CHECKING:
    from natsmesh.genai.context import MeshContextModel


@dataclasses.dataclass(frozen=True)
class Signature:
    """What a tool's signature says, worked out once."""

    args_model: type[pydantic.BaseModel]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    dependency_params: tuple[str, ...]
    is_async: bool
    #: the tool is an async generator: each value it yields is a streamed chunk
    is_stream: bool = False
    return_type: Any = None
    llm_param: str | None = None
    context_param: str | None = None
    context_type: type[MeshContextModel] | None = None

    def validate(self, body: bytes) -> dict[str, Any]:
        """Validate a JSON request body; raises :class:`InvalidArguments` with the field errors."""
        try:
            model = self.args_model.model_validate_json(body or b"{}")
        except pydantic.ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            fields = [
                {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "error": e["msg"]}
                for e in errors
            ]
            summary = "; ".join(f"{f['field']}: {f['error']}" for f in fields[:5])
            raise InvalidArguments(f"invalid arguments: {summary}", {"errors": fields}) from None
        return dict(model.__dict__)
