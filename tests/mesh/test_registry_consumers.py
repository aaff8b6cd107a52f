"""Short-lived callers leave no registry consumers behind (a stream allows 1000)."""

from __future__ import annotations

import nats

from natsmesh.config import Settings
from natsmesh.session import connect


async def consumers(settings: Settings) -> int:
    nc = await nats.connect(settings.nats_url)
    try:
        info = await nc.jetstream().stream_info(f"KV_{settings.registry_bucket}")
        return int(info.state.consumer_count)
    finally:
        await nc.close()


async def test_closed_views_delete_their_consumers(settings: Settings) -> None:
    async with connect(settings):
        pass
    before = await consumers(settings)
    for _ in range(20):
        async with connect(settings) as mesh:
            assert mesh.view.records == {}
    assert await consumers(settings) == before
