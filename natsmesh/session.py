"""Joining a mesh as a caller: ``async with natsmesh.connect() as mesh: await mesh.call(...)``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from natsmesh.client import MeshClient
from natsmesh.config import Settings
from natsmesh.connection import Hooks
from natsmesh.connection import connect as connect_nats
from natsmesh.registry import RegistryView, open_bucket


@contextlib.asynccontextmanager
async def connect(
    settings: Settings | None = None,
    *,
    caller: str = "python",
    reconnect: bool = True,
    connect_timeout: float = 5.0,
) -> AsyncIterator[MeshClient]:
    """Connect to NATS, load the registry view, and yield a :class:`MeshClient`."""
    s = settings or Settings.from_env()
    hooks = Hooks()
    nc = await connect_nats(
        s, f"natsmesh {caller}", hooks, reconnect=reconnect, initial_timeout=connect_timeout
    )
    try:
        kv = await open_bucket(nc.jetstream(), s)
        view = RegistryView(kv)
        await view.start()
        hooks.on_reconnect.append(view.restart)
        try:
            yield MeshClient(nc, view, s, caller=caller)
        finally:
            await view.stop()
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
