"""Joining a mesh as a caller: ``async with natsmesh.connect() as mesh: await mesh.call(...)``."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from natsmesh.client import MeshClient
from natsmesh.config import Settings
from natsmesh.connection import Hooks, connect_nats
from natsmesh.conversation import settle
from natsmesh.registry import RegistryView, open_bucket


@contextlib.asynccontextmanager
async def connect(
    settings: Settings | None = None,
    *,
    caller: str = "python",
    reconnect: bool = True,
    connect_timeout: float = 5.0,
    tracing: bool = False,
) -> AsyncIterator[MeshClient]:
    """Connect to NATS, load the registry view, and yield a :class:`MeshClient`.

    With ``tracing``, calls make CLIENT spans published like an agent's (service ``caller``).
    """
    s = settings or Settings.from_env()
    hooks = Hooks()
    nc = await connect_nats(
        s, f"natsmesh {caller}", hooks, reconnect=reconnect, initial_timeout=connect_timeout
    )
    try:
        kv = await open_bucket(nc.jetstream(), s)
        view = RegistryView(kv)
        await view.start()
        pending: set[asyncio.Task[None]] = set()

        async def recover() -> None:  # in the background: JetStream may need a moment
            task = asyncio.create_task(view.restart())
            pending.add(task)
            task.add_done_callback(pending.discard)

        hooks.on_reconnect.append(recover)
        spans = None
        if tracing:
            from natsmesh.tracing.spans import Tracing

            spans = await Tracing.open(nc, s, caller, f"{caller}-{os.getpid()}")
        client = MeshClient(nc, view, s, caller=caller, tracing=spans)
        hooks.on_disconnect.append(client.connection_lost)
        try:
            yield client
        finally:
            await settle()  # cancels sent after a cancellation reach their workers first
            await client.watchdog.stop()
            if spans is not None:
                await spans.stop()
            await view.stop()
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
