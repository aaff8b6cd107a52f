"""The exception tree of natsmesh and its mapping to and from the wire.

::

    MeshError
    ├── InvalidArguments      (also ValueError)    invalid_arguments
    ├── ToolError                                  tool_error
    ├── NoProvider            (also LookupError)   no_provider
    ├── Unavailable           (also ConnectionError) unavailable
    ├── ToolTimeout           (also TimeoutError)  timeout
    ├── PayloadTooLarge       (also ValueError)    payload_too_large
    ├── TagMismatch                                tag_mismatch
    └── Cancelled                                  cancelled

A remote error is rebuilt from the reply envelope by :func:`from_wire`; nats-py's
exceptions are translated in one place, :func:`translate_nats_error`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class MeshError(Exception):
    """Root of every error natsmesh raises."""

    type: ClassVar[str] = "mesh_error"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_wire(self) -> dict[str, Any]:
        """The ``error`` object of a reply envelope."""
        return {"type": self.type, "message": self.message, "details": self.details}


class InvalidArguments(MeshError, ValueError):
    """The arguments do not match the tool's signature."""

    type = "invalid_arguments"


class ToolError(MeshError):
    """The tool raised; ``details`` names the exception type."""

    type = "tool_error"


class NoProvider(MeshError, LookupError):
    """No live provider matches the capability, tags and version asked for."""

    type = "no_provider"


class Unavailable(MeshError, ConnectionError):
    """A provider exists but cannot take the call now (overloaded, stopping, unreachable)."""

    type = "unavailable"


class ToolTimeout(MeshError, TimeoutError):
    """The call's deadline passed before a reply came."""

    type = "timeout"


class PayloadTooLarge(MeshError, ValueError):
    """A request or result is larger than the connection's max payload."""

    type = "payload_too_large"


class TagMismatch(MeshError):
    """The worker does not carry the tags the caller selected (a stale view)."""

    type = "tag_mismatch"


class Cancelled(MeshError):
    """The call was cancelled: by its caller, or because its caller went away."""

    type = "cancelled"


ERROR_TYPES: dict[str, type[MeshError]] = {
    cls.type: cls
    for cls in (
        InvalidArguments,
        ToolError,
        NoProvider,
        Unavailable,
        ToolTimeout,
        PayloadTooLarge,
        TagMismatch,
        Cancelled,
    )
}


def from_wire(error: Any) -> MeshError:
    """Rebuild an exception from the ``error`` object of a reply envelope."""
    if not isinstance(error, dict):
        return MeshError(f"malformed error reply: {error!r}")
    cls = ERROR_TYPES.get(str(error.get("type")), MeshError)
    details = error.get("details")
    return cls(str(error.get("message", "")), details if isinstance(details, dict) else None)


def translate_nats_error(
    exc: BaseException, what: str, details: dict[str, Any] | None = None
) -> MeshError | None:
    """Our error for one of nats-py's connection or timeout errors, naming what was waited
    for; ``None`` for anything else (``NoRespondersError`` included: callers fail over on it)."""
    import nats.errors as ne

    if isinstance(exc, ne.NoServersError):
        return Unavailable(f"{what}: no NATS server reachable")
    if isinstance(
        exc,
        ne.ConnectionClosedError
        | ne.ConnectionDrainingError
        | ne.ConnectionReconnectingError
        | ne.StaleConnectionError,
    ):
        return Unavailable(f"{what}: the NATS connection is not usable ({exc})")
    if isinstance(exc, ne.MaxPayloadError):
        return PayloadTooLarge(f"{what}: the message is larger than the server's max payload")
    if isinstance(exc, ne.TimeoutError):
        return ToolTimeout(f"{what} did not answer within the deadline", details)
    if isinstance(exc, OSError):  # checked after nats' TimeoutError, which is an OSError too
        return Unavailable(f"{what}: the NATS connection failed ({exc})")
    return None
