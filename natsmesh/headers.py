"""Names of the NATS headers a mesh call carries."""

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
CALLER = "Mesh-Caller"
TOOL = "Mesh-Tool"
TAGS = "Mesh-Tags"
DEADLINE = "Mesh-Deadline"
INSTANCE = "Mesh-Instance"
#: Set on a reply when its body is an error envelope, so callers can branch without parsing.
ERROR = "Mesh-Error"
