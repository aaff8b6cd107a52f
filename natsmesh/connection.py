"""Opening NATS connections with the configured security, reconnect hooks and a guarded reader."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NATS

from natsmesh.config import Settings
from natsmesh.errors import Unavailable
from natsmesh.natsimport import is_websocket, websocket_support

log = logging.getLogger("natsmesh.connection")

ReconnectHook = Callable[[], Awaitable[None]]

#: a JetStream delivery carries a reply subject under this prefix
_JS_ACK = b"$JS.ACK."
#: seconds between two warnings about dropped messages (the counters keep every one)
_WARN_EVERY = 10.0

_dropped = {"malformed": 0, "jetstream_delivery": 0}


def dropped_messages() -> dict[str, int]:
    """Messages this process's connections dropped at the door, by reason.

    ``malformed``: a frame nats-py could not parse (a header block that is not UTF-8, an
    empty header block, ...); ``jetstream_delivery``: a JetStream push delivery that landed
    on a mesh subject (someone pointed a consumer's deliver subject at us).
    """
    return dict(_dropped)


class TLSRequired(nats.errors.Error):
    """A ``tls://`` URL reached a server that offers no TLS: refuse to talk in plaintext."""

    def __str__(self) -> str:
        return "the server offers no TLS, and a tls:// URL refuses plaintext"


_SPACE = re.compile(r"\s")
#: what ``bytes.strip()`` strips (``str.strip()`` strips more)
_ASCII_SPACE = " \t\n\r\x0b\x0c"
#: header names already seen valid (bounded: names beyond it are checked every time)
_NAMES: set[str] = set()


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """``Name: value`` lines as a dict, by nats-py's rules: a name with whitespace inside or
    a byte outside ASCII is skipped; values are UTF-8 with malformed bytes replaced."""
    out: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip(_ASCII_SPACE)
        if key not in _NAMES:
            if not key.isascii() or _SPACE.search(key):
                continue
            if len(_NAMES) < 1024:
                _NAMES.add(key)
        out[key] = value.strip(_ASCII_SPACE)
    return out


class MeshConnection(NATS):
    """nats-py's client with a reader that survives bad frames.

    nats-py parses a message's headers inside its read loop; an exception there (a status
    line that is not UTF-8, nats.py issues #491 and #924) ends the loop, and the connection
    stays deaf until a ping timeout forces a reconnect. Here such a message is dropped and
    counted, and the next one is served at once. Messages that a JetStream push consumer
    delivers onto a guarded subject (the mesh's own, ``$SRV.*``) are dropped too: with
    them, anyone allowed to create a consumer could make an agent run a call.
    """

    def __init__(self, guarded: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._guarded = guarded
        self._warned_at = 0.0
        self.dropped = {"malformed": 0, "jetstream_delivery": 0}

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:  # type: ignore[override]
        """nats-py's header parsing, same result, a few times faster: the block is decoded
        once, and header names (a mesh uses a handful) are checked against a cache."""
        return parse_header_lines(raw)

    def _drop(self, reason: str, subject: bytes | str, detail: str) -> None:
        self.dropped[reason] += 1
        _dropped[reason] += 1
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            log.warning(
                "dropped a message on %s (%s: %s); %d dropped so far",
                subject.decode(errors="replace") if isinstance(subject, bytes) else subject,
                reason.replace("_", " "),
                detail,
                self.dropped[reason],
            )

    async def _process_msg(  # type: ignore[override]
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        if self._guarded and reply and reply.startswith(_JS_ACK):
            sub = self._subs.get(sid)
            if sub is not None and sub._jsi is None and sub.subject.startswith(self._guarded):
                self._drop("jetstream_delivery", subject, "a consumer's deliver subject")
                return
        try:
            await super()._process_msg(sid, subject, reply, data, headers)
        except Exception as exc:
            self._drop("malformed", subject, f"{type(exc).__name__}: {exc}")

    async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:  # type: ignore[override]
        server = self._current_server
        if initial_connection and server is not None and server.uri.scheme == "tls":
            if info.get("tls_available"):  # TLS is optional there: nats-py upgrades only
                info["tls_required"] = True  # when it is required, so say it is
            if not info.get("tls_required"):
                raise TLSRequired()
        await super()._process_info(info, initial_connection)


class Hooks:
    """Callbacks run after the connection comes back (watchers, registrations)."""

    def __init__(self) -> None:
        self.on_reconnect: list[ReconnectHook] = []
        self.on_disconnect: list[Callable[[], None]] = []

    async def reconnected(self) -> None:
        log.info("reconnected to NATS")
        for hook in list(self.on_reconnect):
            try:
                await hook()
            except Exception:
                log.exception("reconnect hook failed")

    async def disconnected(self) -> None:
        log.info("disconnected from NATS")
        for hook in list(self.on_disconnect):
            hook()


def guarded_subjects(settings: Settings) -> tuple[str, ...]:
    """Subject prefixes on which a JetStream delivery is never a legitimate message."""
    return (f"{settings.prefix}.", "$SRV.")


async def connect_nats(
    settings: Settings,
    name: str,
    hooks: Hooks | None = None,
    *,
    reconnect: bool = True,
    connect_timeout: float = 2.0,
    initial_timeout: float | None = None,
) -> NATS:
    """Connect to ``settings.nats_url``; raises :class:`Unavailable` when nothing answers.

    With ``reconnect`` the first connection is retried until ``initial_timeout`` passes
    (forever when it is ``None``, as agents do: they wait for NATS to come up).
    """
    hooks = hooks or Hooks()
    if is_websocket(settings.servers()):
        websocket_support()

    warned = False
    last_error: list[BaseException] = []

    async def error_cb(exc: Exception) -> None:
        # nats-py reports every failed (re)connect attempt here: warn once, then stay quiet
        nonlocal warned
        if "permissions violation" in str(exc).lower():
            # the connection stays up: a subscription or publish the server refused
            log.warning("NATS refused: %s (see `natsmesh permissions`)", exc)
            return
        last_error[:] = [exc]
        if not warned and reconnect:
            log.warning(
                "cannot reach NATS at %s (%s); retrying",
                settings.nats_url,
                exc or type(exc).__name__,
            )
            warned = True
        else:
            log.debug("nats: %s", exc)

    options = settings.connect_options()

    async def attempt() -> NATS:
        nc = MeshConnection(guarded_subjects(settings))
        await nc.connect(
            servers=settings.servers(),
            name=name,
            connect_timeout=connect_timeout,  # type: ignore[arg-type]
            allow_reconnect=reconnect,
            # nats-py treats 0 as "no limit" while connecting: 1 means try each server twice
            max_reconnect_attempts=-1 if reconnect else 1,
            reconnect_time_wait=0.25,  # type: ignore[arg-type]
            ping_interval=5,
            max_outstanding_pings=3,
            error_cb=error_cb,
            reconnected_cb=hooks.reconnected,
            disconnected_cb=hooks.disconnected,
            **options,
        )
        return nc

    try:
        return await asyncio.wait_for(attempt(), initial_timeout)
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        cause = last_error[0] if last_error else exc
        raise Unavailable(
            f"no NATS server answers at {settings.nats_url} ({_reason(cause)})"
        ) from exc


def _reason(exc: BaseException) -> str:
    """What went wrong while connecting, in words a user can act on."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TLSRequired):
        return text
    if "authorization" in text.lower():
        return "authorization refused: check the user, password, token, creds or nkey"
    if "INFO" in text or "json parse" in text:
        return "something answers there, but it is not a NATS server"
    if isinstance(exc, TimeoutError):
        return "no NATS handshake in time: is that a NATS port?"
    return text
