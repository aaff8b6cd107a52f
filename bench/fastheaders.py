"""Experiment: a faster header codec for nats-py, to measure what header handling costs.

Not used by natsmesh. ``install()`` replaces nats-py's header encoding (in
``Client._send_publish``) and parsing (``Client._parse_header_lines``) with versions
that do the same checks with fewer Python-level steps; ``python -m bench.natscost
--fast-headers`` measures a call's CPU with it (in the caller and the responders).
"""

from __future__ import annotations

import re
from typing import Any

_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: header names seen before and valid (names repeat: a mesh uses a handful)
_VALID: set[str] = set()


def _valid(key: str) -> bool:
    if key in _VALID:
        return True
    if _KEY.fullmatch(key) and len(_VALID) < 1024:
        _VALID.add(key)
        return True
    return bool(_KEY.fullmatch(key))


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """The same result as nats-py's ``_parse_header_lines`` (names that are not tokens
    are skipped), decoding the block once instead of line by line."""
    out: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip()
            if _valid(key):
                out[key] = value.strip()
    return out


def encode_headers(headers: dict[str, Any]) -> bytes:
    """``NATS/1.0`` and the header lines, checked as nats-py checks them."""
    lines = []
    for k, v in headers.items():
        key = k.strip()
        if not key:
            continue
        if not _valid(key):
            import nats.errors

            raise nats.errors.BadHeaderError(key)
        value = v.strip()
        if "\r" in value or "\n" in value:
            value = value.replace("\r", " ").replace("\n", " ")
        lines.append(f"{key}: {value}\r\n")
    return ("NATS/1.0\r\n" + "".join(lines) + "\r\n").encode()


def install() -> None:
    """Patch nats-py's client class in this process."""
    from nats.aio import client as nats_client
    from nats.errors import BadSubjectError

    Client = nats_client.Client

    async def _send_publish(
        self: Any,
        subject: str,
        reply: str,
        payload: bytes,
        payload_size: int,
        headers: dict[str, Any] | None,
    ) -> None:
        if subject == "":
            raise BadSubjectError
        if headers is None:
            cmd = f"PUB {subject} {reply} {payload_size}\r\n".encode() + payload + b"\r\n"
        else:
            hdr = encode_headers(headers)
            cmd = (
                f"HPUB {subject} {reply} {len(hdr)} {len(hdr) + payload_size}\r\n".encode()
                + hdr
                + payload
                + b"\r\n"
            )
        stats = self.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += payload_size
        await self._send_command(cmd)
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    Client._send_publish = _send_publish  # type: ignore[method-assign]
    Client._parse_header_lines = staticmethod(parse_header_lines)  # type: ignore[method-assign]
