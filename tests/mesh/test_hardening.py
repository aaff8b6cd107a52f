"""Attacks from round 2 of adversarial testing: raw frames, a busy registry, bad records."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from urllib.parse import urlparse

import nats.js.errors
import pytest

from natsmesh import wire
from natsmesh.config import Settings
from natsmesh.connection import MeshConnection, connect_nats, dropped_messages
from natsmesh.loader import load_file
from natsmesh.records import MAX_RECORD_BYTES
from natsmesh.registry import Registration, RegistryView, open_bucket
from natsmesh.session import connect
from natsmesh.wire import AgentRecord, DependencyRecord, ToolRecord
from tests.helpers import TEST_AGENTS

#: header blocks that nats-server forwards unchanged and nats-py 2.16 cannot parse
BAD_HEADERS = [
    b"NATS/1.0 \xff\xfe\xfd\r\n\r\n",  # a status line that is not UTF-8
    b"NATS/1.0 503 \xff\xfe\r\n\r\n",  # a description that is not UTF-8
    b"NATS/1.0",  # no line end at all
]


def raw_publish(url: str, frames: list[tuple[str, bytes, bytes]]) -> None:
    """Publish ``(subject, header block, body)`` frames over a plain socket, as any client
    could, and wait for the server's PONG (so every frame has been routed)."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=5) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"INFO")
        out = [b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n']
        for subject, hdr, body in frames:
            out.append(
                f"HPUB {subject} {len(hdr)} {len(hdr) + len(body)}\r\n".encode()
                + hdr
                + body
                + b"\r\n"
            )
        out.append(b"PING\r\n")
        sock.sendall(b"".join(out))
        line = reader.readline()
        assert line == b"PONG\r\n", line


async def test_malformed_frames_are_dropped_and_the_agent_answers_at_once(
    start_agents, settings: Settings
) -> None:
    (rt,) = await start_agents(load_file(TEST_AGENTS / "echo_agent.py"))
    assert isinstance(rt.nc, MeshConnection)
    before = dropped_messages()["malformed"]
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 1, timeout=5)
        cap = f"{settings.prefix}.cap.echo.echo-agent"
        frames = [(s, h, b'{"text": "evil"}') for s in ("$SRV.PING", cap) for h in BAD_HEADERS]
        await asyncio.to_thread(raw_publish, settings.nats_url, frames)
        # nats-py alone stops reading here until a ping timeout (about 20 s): the agent
        # must answer now, well inside 3 s, and its ping still works
        started = time.perf_counter()
        result = await asyncio.wait_for(mesh.call("echo", {"text": "next"}), 3)
        print(
            f"first call after {len(frames)} malformed frames: {time.perf_counter() - started:.3f} s"
        )
        assert result["text"] == "next"
        assert rt.nc.dropped["malformed"] == len(frames)
        assert dropped_messages()["malformed"] - before == len(frames)
        pong = await mesh.nc.request(f"$SRV.PING.echo-agent.{rt.instance_id}", b"", timeout=3)
        assert json.loads(pong.data)["id"] == rt.instance_id


def record(name: str, instance: str, tools: tuple[ToolRecord, ...] = ()) -> AgentRecord:
    return AgentRecord(name, instance, "1.0.0", "", "h", 1, 1.0, tools, protocol=2)


async def test_a_new_view_sees_every_live_provider_of_a_busy_registry(
    settings: Settings,
) -> None:
    """200 instances heartbeating every 0.1 s; each fresh view must hold all 200."""
    nc = await connect_nats(settings, "heartbeats")
    kv = await open_bucket(nc.jetstream(), settings)
    tool = (ToolRecord("echo", "echo"),)
    regs = [
        Registration(kv, f"a{i}.a{i}-1", record(f"a{i}", f"a{i}-1", tool), 0.1) for i in range(200)
    ]
    await asyncio.gather(*(r.start() for r in regs))
    short = []
    try:
        for _ in range(15):
            reader = await connect_nats(settings, "fresh")
            view = RegistryView(await open_bucket(reader.jetstream(), settings, create=False))
            await view.start(timeout=10)
            short.append(200 - len(view.records))
            await view.stop()
            await reader.close()
    finally:
        await asyncio.gather(*(r.stop() for r in regs))
        await nc.close()
    assert short == [0] * 15, f"fresh views missed providers: {short}"


async def test_bad_and_oversized_records_are_skipped_with_one_warning(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "natsmesh.registry")
    nc = await connect_nats(settings, "poison")
    kv = await open_bucket(nc.jetstream(), settings)
    await kv.put("p0.p0-1", wire.encode_record(record("p0", "p0-1")))
    bad_dep = ToolRecord("x", "x", dependencies=(DependencyRecord("y", ("",)),))
    bad_version = ToolRecord("x", "x", dependencies=(DependencyRecord("y", (), "garbage"),))
    many = tuple(ToolRecord(f"t{i}", f"t{i}") for i in range(300))
    poison = {
        "p1.p1-1": wire.encode_record(record("p1", "p1-1", (bad_dep,))),
        "p2.p2-1": wire.encode_record(record("p2", "p2-1", (bad_version,))),
        "p3.p3-1": wire.encode_record(record("p3", "p3-1", many)),
        "p4.p4-1": wire.encode_record(record("echo-agent", "p4-1", (ToolRecord("x", "x"),))),
        "p5.p5-1": b'{"name": "p5"',
    }
    async with connect(settings) as mesh:
        for _ in range(3):  # three heartbeats of each: still one warning per key
            for key, value in poison.items():
                await kv.put(key, value)
        await kv.put("p6.p6-1", wire.encode_record(record("p6", "p6-1")))
        await mesh.view.wait_for(lambda v: "p6.p6-1" in v.records, timeout=5)
        assert sorted(r.name for r in mesh.view.records.values()) == ["p0", "p6"]
        # the bucket itself refuses a value over the bound
        with pytest.raises(nats.js.errors.APIError, match=r"(?i)maximum"):
            await kv.put("p7.p7-1", b"x" * (MAX_RECORD_BYTES + 1))
    await nc.close()
    warnings = [
        r.getMessage() for r in caplog.records if "ignoring registry entry" in r.getMessage()
    ]
    assert sorted(w.split()[3].rstrip(":") for w in warnings) == sorted(poison)
    assert "an empty tag" in " ".join(warnings)
    assert "garbage" in " ".join(warnings)
    assert "300 tools" in " ".join(warnings)
    assert "not its key's writer" in " ".join(warnings)


async def test_an_oversized_agent_refuses_to_start(settings: Settings) -> None:
    from natsmesh.records import RecordError

    nc = await connect_nats(settings, "big")
    kv = await open_bucket(nc.jetstream(), settings)
    many = tuple(ToolRecord(f"t{i}", f"t{i}") for i in range(300))
    with pytest.raises(RecordError, match="300 tools; the limit is 256"):
        Registration(kv, "big.big-1", record("big", "big-1", many), 1)
    huge = (ToolRecord("t", "t", description="x" * MAX_RECORD_BYTES),)
    with pytest.raises(RecordError, match="KiB; the limit is 256 KiB"):
        Registration(kv, "big.big-1", record("big", "big-1", huge), 1)
    await nc.close()


async def test_an_outage_does_not_empty_the_view(tmp_path, reserved_port: int) -> None:
    """No heartbeat can arrive while NATS is down: the view keeps its entries meanwhile."""
    from natsmesh.ops.server import start_server
    from tests.conftest import mesh_settings

    port = reserved_port  # reserved while the server is down, so it can come back on it
    server = start_server(tmp_path / "nats", port=port)
    settings = mesh_settings(server.url, registry_ttl=2.0)
    writer = await connect_nats(settings, "writer")
    kv = await open_bucket(writer.jetstream(), settings)
    registration = Registration(kv, "a.a-1", record("a", "a-1"), 0.5)
    await registration.start()
    try:
        async with connect(settings) as mesh:
            await mesh.view.wait_for(lambda v: "a.a-1" in v.records, 5)
            server.stop()
            await asyncio.sleep(2 * settings.registry_ttl)  # the outage: twice the TTL
            assert "a.a-1" in mesh.view.records, "the outage did not count as silence"
            server = start_server(tmp_path / "nats", port=port)
            await mesh.view.wait_for(lambda v: "a.a-1" in v.records, 10)
    finally:
        await registration.stop()
        await writer.close()
        server.stop()
