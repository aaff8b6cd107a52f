"""Names of the NATS headers a mesh call carries, and the values of ``Mesh-Kind``."""

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
CALLER = "Mesh-Caller"
TOOL = "Mesh-Tool"
TAGS = "Mesh-Tags"
DEADLINE = "Mesh-Deadline"
INSTANCE = "Mesh-Instance"
#: Set on a reply when its body is an error envelope, so callers can branch without parsing.
ERROR = "Mesh-Error"
#: Request: the call protocol the caller speaks ("2"); absent means protocol 1.
PROTOCOL = "Mesh-Protocol"
#: Request: "1" when the caller reads a streaming tool's chunks (absent: only the final reply).
STREAM = "Mesh-Stream"
#: What a message on the reply subject is (absent means the final reply).
KIND = "Mesh-Kind"
#: A chunk's position in its stream: 1, 2, ...
SEQ = "Mesh-Seq"
#: On a final reply after chunks: how many chunks were sent.
CHUNKS = "Mesh-Chunks"
#: The status header nats-server sets on its "no responders" reply.
STATUS = "Status"
NO_RESPONDERS = "503"

# values of Mesh-Kind
FINAL = "final"
ACCEPTED = "accepted"
CHUNK = "chunk"
PROBE = "probe"
#: a caller's answer to a probe or a chunk's credit request: still reading
ALIVE = "alive"
#: a caller's answer to a probe: it no longer waits for this call
GONE = "gone"
