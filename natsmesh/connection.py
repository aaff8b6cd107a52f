"""Opening NATS connections with the configured security and reconnect hooks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client as NATS

from natsmesh.config import Settings
from natsmesh.errors import Unavailable

log = logging.getLogger("natsmesh.connection")

ReconnectHook = Callable[[], Awaitable[None]]


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


async def connect(
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

    warned = False

    async def error_cb(exc: Exception) -> None:
        # nats-py reports every failed (re)connect attempt here: warn once, then stay quiet
        nonlocal warned
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
        return await nats.connect(
            servers=settings.servers(),
            name=name,
            connect_timeout=connect_timeout,
            allow_reconnect=reconnect,
            # nats-py treats 0 as "no limit" while connecting: 1 means try each server twice
            max_reconnect_attempts=-1 if reconnect else 1,
            reconnect_time_wait=0.25,
            ping_interval=5,
            max_outstanding_pings=3,
            error_cb=error_cb,
            reconnected_cb=hooks.reconnected,
            disconnected_cb=hooks.disconnected,
            **options,
        )

    try:
        return await asyncio.wait_for(attempt(), initial_timeout)
    except (TimeoutError, OSError, nats.errors.NoServersError) as exc:
        raise Unavailable(
            f"no NATS server answers at {settings.nats_url} ({exc or type(exc).__name__})"
        ) from exc
