"""registry_snapshot.snapshot: the registry read once, without nats-py's JetStream layer, agrees with
the watched view."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from natsmesh.config import Settings
from natsmesh.connection import connect_nats
from natsmesh.errors import Unavailable
from natsmesh.ops.server import start_server
from natsmesh.records import encode_for_registry
from natsmesh.registry import RegistryView, open_bucket
from natsmesh.registry_snapshot import snapshot
from natsmesh.wire import AgentRecord, ToolRecord
from tests.helpers import eventually


def record(name: str, instance: str, capability: str = "echo") -> AgentRecord:
    return AgentRecord(
        name=name,
        instance_id=instance,
        version="1.0.0",
        description="",
        host="test",
        pid=1,
        started_at=time.time(),
        tools=(ToolRecord(name=capability, capability=capability),),
    )


@pytest.fixture
async def bucket(settings: Settings) -> AsyncIterator[KeyValue]:
    nc = await nats.connect(settings.nats_url)
    try:
        yield await open_bucket(nc.jetstream(), settings)
    finally:
        await nc.close()


async def consumers(nc: nats.NATS, settings: Settings) -> int:
    info = await nc.jetstream().stream_info(f"KV_{settings.registry_bucket}")
    return int(info.state.consumer_count)


async def _none_left(nc: nats.NATS, settings: Settings) -> bool:
    return await consumers(nc, settings) == 0


async def read(settings: Settings) -> RegistryView:
    nc = await connect_nats(settings, "test", reconnect=False)
    try:
        return await snapshot(nc, settings)
    finally:
        await nc.close()


async def test_it_holds_the_last_live_entry_of_every_key(
    settings: Settings, bucket: KeyValue
) -> None:
    for i in range(40):  # more than one delivery batch of the server's
        await bucket.put(f"a{i}.x", encode_for_registry(record(f"a{i}", "x")))
    await bucket.put("a0.x", encode_for_registry(record("a0", "x", "newer")))
    await bucket.delete("a1.x")
    await bucket.put("a2.x", b"not a record")
    await bucket.put("a3.x", encode_for_registry(record("someone-else", "x")))  # not its key

    view = await read(settings)

    live = RegistryView(bucket)
    await live.start()
    try:
        assert (
            set(view.records)
            == set(live.records)
            == {f"a{i}.x" for i in range(40)}
            - {
                "a1.x",
                "a2.x",
                "a3.x",
            }
        )
        assert view.records == live.records
        assert view.resolve("newer") == "newer" and view.has("echo")
        assert abs(view.last_seen["a5.x"] - live.last_seen["a5.x"]) < 0.01
    finally:
        await live.stop()


async def test_it_leaves_no_consumer_behind(settings: Settings, bucket: KeyValue) -> None:
    await bucket.put("a.x", encode_for_registry(record("a", "x")))
    nc = await connect_nats(settings, "test", reconnect=False)
    try:
        for _ in range(5):
            assert set((await snapshot(nc, settings)).records) == {"a.x"}
        # deleted at once, well before the consumer's inactivity threshold (10 s)
        await eventually(lambda: _none_left(nc, settings), 5, "no consumer left")
    finally:
        await nc.close()


async def test_an_empty_or_missing_registry_reads_empty(settings: Settings) -> None:
    view = await read(settings)  # the bucket does not exist: a call must not create it
    assert view.records == {}
    nc = await nats.connect(settings.nats_url)
    try:
        names = [s.config.name for s in await nc.jetstream().streams_info()]
        assert f"KV_{settings.registry_bucket}" not in names
        await nc.jetstream().create_key_value(KeyValueConfig(bucket=settings.registry_bucket))
    finally:
        await nc.close()
    assert (await read(settings)).records == {}


def test_without_jetstream_it_says_so_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "no-js.conf"
    config.write_text('listen: "127.0.0.1:-1"\n')
    server = start_server(tmp_path / "nats", config_file=config)
    try:
        with pytest.raises(Unavailable) as caught:
            asyncio.run(read(Settings(nats_url=server.url)))
        message = caught.value.message
        assert "\n" not in message and "is JetStream enabled?" in message, message
    finally:
        server.stop()
