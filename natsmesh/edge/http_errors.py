"""Mesh errors as HTTP responses: one status per error type, the error envelope as the body."""

from __future__ import annotations

from typing import Any

from natsmesh import wire
from natsmesh.errors import MeshError

#: HTTP status for each mesh error type; anything else (a malformed reply) is 502
STATUS: dict[str, int] = {
    "invalid_arguments": 422,
    "no_provider": 404,
    "unavailable": 503,
    "timeout": 504,
    "tool_error": 502,
    "payload_too_large": 413,
    # the call was cancelled on the worker's side (it stopped): the client is still there
    # to read this, so it is "try again", not nginx's 499 for a client that went away
    "cancelled": 503,
    "tag_mismatch": 503,
}
#: errors of the gateway itself, before any mesh call
BAD_REQUEST, UNAUTHORIZED = "bad_request", "unauthorized"


def status_of(error: MeshError) -> int:
    """The HTTP status for a mesh error."""
    return STATUS.get(error.type, 502)


def error_body(error_type: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    """``{"error": {"type", "message", "details"}}``, as JSON bytes."""
    return wire.encode_json(
        {"error": {"type": error_type, "message": message, "details": details or {}}}
    )


def mesh_error_body(error: MeshError) -> bytes:
    """The error envelope of a mesh error, as JSON bytes."""
    return wire.encode_json({"error": error.to_wire()})


class HttpError(Exception):
    """A request the gateway refuses before calling the mesh (400, 401, 413)."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message

    def body(self) -> bytes:
        return error_body(self.error_type, self.message)
