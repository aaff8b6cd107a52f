"""The final result of a streaming tool, when it is not the collection of its chunks."""

from __future__ import annotations

from typing import Any


class Final:
    """Yield ``mesh.Final(value)`` as a streaming tool's last item to make ``value`` its
    result; it is not sent as a chunk. Without it the result is the collected chunks."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Final({self.value!r})"
