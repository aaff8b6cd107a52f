"""What a call carries onward to the calls made inside it: deadline and trace context."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class CallContext:
    """What a nested call inherits from the call it is made in."""

    #: absolute deadline, Unix seconds
    deadline: float | None = None
    #: OpenTelemetry context of the enclosing span (agents)
    otel_context: Any = None
    #: raw ``traceparent`` to forward when this process records no spans (the CLI, a gateway)
    traceparent: str | None = None
    tracestate: str | None = None
