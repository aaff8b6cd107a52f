"""Bearer-token authentication for everything the gateway serves (ASGI middleware)."""

from __future__ import annotations

import hmac
from collections.abc import Collection, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from natsmesh.edge.http_errors import UNAUTHORIZED, error_body


def parse_tokens(values: Iterable[str]) -> tuple[str, ...]:
    """Tokens from ``--token`` values and ``NATSMESH_GATEWAY_TOKENS`` (comma-separated);
    blanks dropped, order kept, duplicates removed."""
    out: dict[str, None] = {}
    for value in values:
        for token in value.split(","):
            if token.strip():
                out[token.strip()] = None
    return tuple(out)


class BearerAuth:
    """Refuses HTTP requests without one of ``tokens`` as ``Authorization: Bearer <token>``.

    With no tokens it lets everything through. ``public`` paths are always served (an
    entry ending in ``/`` covers everything below it).
    """

    def __init__(self, app: ASGIApp, tokens: Collection[str], public: Collection[str] = ()):
        self.app = app
        self._tokens = [t.encode() for t in tokens]
        self._exact = frozenset(p for p in public if not p.endswith("/"))
        self._prefixes = tuple(p for p in public if p.endswith("/"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self._tokens:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path in self._exact or path.startswith(self._prefixes) or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        presented = any(k == b"authorization" for k, _ in scope.get("headers", ()))
        challenge = b'Bearer realm="natsmesh"' + (b', error="invalid_token"' if presented else b"")
        message = (
            "the bearer token is not valid"
            if presented
            else "this gateway needs a bearer token: send `Authorization: Bearer <token>`"
        )
        body = error_body(UNAUTHORIZED, message)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", challenge),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope: Scope) -> bool:
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    return False
                token = token.strip()
                # compare with every token, so the time taken does not say which one matched
                return sum(hmac.compare_digest(token, t) for t in self._tokens) > 0
        return False
