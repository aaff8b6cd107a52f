"""Request and reply payloads on SERVER spans (opt-in): truncated, secrets redacted.

Off by default; when off, the call path only tests one boolean. On (globally with
``NATSMESH_TRACE_PAYLOADS=true``, or per agent with ``@mesh.agent(trace_payloads=True)``),
a SERVER span carries ``mesh.request.payload`` and ``mesh.reply.payload``: the JSON
bodies with the values of secret-looking keys replaced by ``***``, cut to
``NATSMESH_TRACE_PAYLOAD_LIMIT`` characters (default 1024).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

REDACTED = "***"
_SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|apikey|authori[sz]ation|credential|private[_-]?key|cookie|session)",
    re.IGNORECASE,
)
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def redact(value: Any) -> Any:
    """``value`` with the values of secret-looking keys replaced, at any depth."""
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def render(body: bytes, limit: int) -> str:
    """A body as span text: JSON with secrets redacted, cut to ``limit`` characters."""
    try:
        text = _encode(redact(_decode(body))).decode()
    except (msgspec.DecodeError, UnicodeDecodeError):
        text = body[: limit * 4].decode("utf-8", "replace")
    if len(text) > limit:
        return text[:limit] + f"…(+{len(text) - limit} chars)"
    return text
