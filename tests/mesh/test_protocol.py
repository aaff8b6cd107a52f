"""The call as a conversation (protocol 2): accepted, chunks, flow control, cancellation,
probes, and protocol-1 peers on the same mesh."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import msgspec
import nats
import pytest

from natsmesh import headers as H
from natsmesh import protocol, subjects, wire
from natsmesh.config import Settings
from natsmesh.loader import LoadedAgent, load_file
from natsmesh.session import connect
from natsmesh.tracing.store import read_trace
from tests.helpers import TEST_AGENTS, eventually


def talk() -> LoadedAgent:
    return load_file(TEST_AGENTS / "talk_agent.py")


def module_of(agent: LoadedAgent) -> dict[str, Any]:
    """The globals of a loaded agent file (where its test observations live)."""
    return agent.tools[0].func.__globals__


async def raw_call(
    settings: Settings, capability: str, agent: str, args: dict[str, Any], hdrs: dict[str, str]
) -> list[Any]:
    """Send one request with plain nats-py and return every message of its reply subject."""
    nc = await nats.connect(settings.nats_url)
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish(
            subjects.cap_subject(capability, agent, settings.prefix),
            wire.encode_json(args),
            reply=inbox,
            headers=hdrs,
        )
        messages = []
        while True:
            msg = await sub.next_msg(timeout=5)
            messages.append(msg)
            if not msg.headers or msg.headers.get(H.KIND) in (None, H.FINAL):
                return messages
    finally:
        await nc.close()


async def test_a_fast_call_is_one_message_and_a_slow_one_is_accepted(
    start_agents, settings: Settings
) -> None:
    [rt] = await start_agents(talk())
    p2 = {H.PROTOCOL: "2"}
    fast = await raw_call(settings, "quick", "talk-agent", {"x": 1}, p2)
    assert [m.headers.get(H.KIND) for m in fast] == [None]
    assert msgspec.json.decode(fast[0].data) == {"result": 2}

    slow = await raw_call(settings, "sleepy", "talk-agent", {"seconds": 0.3}, p2)
    kinds = [m.headers.get(H.KIND) for m in slow]
    assert kinds == [H.ACCEPTED, None]
    assert slow[0].headers[H.INSTANCE] == rt.instance_id

    # a protocol-1 caller hears only the final reply, even from a stream
    old = await raw_call(settings, "words", "talk-agent", {"text": "a b c"}, {})
    assert len(old) == 1
    assert msgspec.json.decode(old[0].data) == {"result": "a b c"}


async def test_chunks_stream_in_order_and_await_collects_them(
    start_agents, settings: Settings
) -> None:
    await start_agents(talk())
    async with connect(settings) as mesh:
        async with mesh.stream("count", {"n": 100}) as parts:
            got = [part async for part in parts]
        assert got == list(range(100))
        assert parts.result == list(range(100))
        assert await mesh.call("count", {"n": 5}) == [0, 1, 2, 3, 4]
        assert await mesh.call("words", {"text": "to be or not"}) == "to be or not"
        streamed = [p async for p in mesh.stream("words", {"text": "x y"})]
        assert streamed == ["x", " y"]
        # a tool that does not stream yields no chunks, only its result
        plain = mesh.stream("quick", {"x": 41})
        assert [p async for p in plain] == []
        assert plain.result == 42


async def test_eight_concurrent_streams_lose_nothing(start_agents, settings: Settings) -> None:
    await start_agents(talk())
    async with connect(settings) as mesh:

        async def one(n: int) -> list[int]:
            async with mesh.stream("count", {"n": n}) as parts:
                return [p async for p in parts]

        sizes = [300 + 17 * i for i in range(8)]
        results = await asyncio.gather(*(one(n) for n in sizes))
        assert results == [list(range(n)) for n in sizes]


async def test_a_dependency_proxy_streams(start_agents, settings: Settings) -> None:
    await start_agents(talk(), load_file(TEST_AGENTS / "outer_agent.py"))
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 2, timeout=5)
        parts = [p async for p in mesh.stream("relay_count", {"n": 70})]
        assert parts == [2 * i for i in range(70)]


async def test_a_slow_reader_holds_the_producer_within_three_windows(
    start_agents, settings: Settings
) -> None:
    [rt] = await start_agents(talk())
    produced = rt.tools[0].func.__globals__["PRODUCED"]
    bound = 3 * protocol.CREDIT_WINDOW + 1
    async with connect(settings) as mesh:
        async with mesh.stream("count", {"n": 10_000, "key": "slow"}) as parts:
            first = [await parts.__anext__() for _ in range(3)]
            assert first == [0, 1, 2]
            # credit comes at once while the reader holds at most one window; then the producer
            # runs on until two more windows are unanswered, and waits
            await eventually(lambda: produced.get("slow", 0) >= bound - 1, 5, "the producer")
            with pytest.raises(AssertionError):
                await eventually(lambda: produced["slow"] > bound + 1, 0.5, "a runaway producer")
            # reading on lets it go on
            rest = [await parts.__anext__() for _ in range(200)]
            assert rest == list(range(3, 203))
        assert produced["slow"] < 10_000, "leaving the stream cancels the producer"


async def test_cancelling_the_caller_cancels_the_worker(start_agents, settings: Settings) -> None:
    [rt] = await start_agents(talk())
    events = rt.tools[0].func.__globals__["EVENTS"]

    def event(name: str) -> asyncio.Event:
        return events.setdefault(name, asyncio.Event())

    async with connect(settings, tracing=True) as mesh:
        for marker, wait in (("after", True), ("before", False)):
            task = asyncio.create_task(mesh.call("sleepy", {"seconds": 30, "marker": marker}))
            await asyncio.wait_for(event(f"{marker}:started").wait(), 5)
            if wait:  # cancel once the call was accepted, and also right after it started
                await asyncio.sleep(protocol.ACCEPT_DELAY * 2)  # a duration: let accepted arrive
            t0 = time.monotonic()
            task.cancel()
            await asyncio.wait_for(event(f"{marker}:cancelled").wait(), 5)
            # the explicit cancel, not the worker's probe (which starts after PROBE_AFTER)
            assert time.monotonic() - t0 < min(0.5, protocol.PROBE_AFTER)
            with pytest.raises(asyncio.CancelledError):
                await task
    assert rt.stats.endpoints["sleepy"].last_error == "cancelled"


async def test_nested_calls_are_cancelled_down_the_chain_and_spans_say_so(
    start_agents, settings: Settings, tmp_path
) -> None:
    await start_agents(talk(), load_file(TEST_AGENTS / "outer_agent.py"))
    marker = tmp_path / "marks"
    async with connect(settings, tracing=True) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 2, timeout=5)
        task = asyncio.create_task(mesh.call("outer", {"seconds": 30, "marker": str(marker)}))
        await eventually(lambda: "started" in _read(marker), 5, "the inner tool to start")
        t0 = time.monotonic()
        task.cancel()
        await eventually(
            lambda: {"cancelled", "outer-cancelled"} <= set(_read(marker)), 5, "both cancelled"
        )
        assert time.monotonic() - t0 < 0.5, "explicit cancels down the chain, not probes"
        with pytest.raises(asyncio.CancelledError):
            await task
    # both SERVER spans end with error.type=cancelled
    async with connect(settings) as mesh:
        trace_id = await _last_trace(mesh, settings, "outer")
        spans: list[Any] = []

        async def four() -> bool:
            spans[:] = await read_trace(mesh.nc, settings, trace_id)
            return len(spans) >= 4

        await eventually(four, 10, "the four spans")
        cancelled = {
            s.name for s in spans if s.kind == 1 and s.attrs.get("error.type") == "cancelled"
        }
        assert cancelled == {"outer", "sleepy"}


def _read(path) -> list[str]:
    try:
        return [line.split()[0] for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


async def _last_trace(mesh: Any, settings: Settings, name: str) -> str:
    js = mesh.nc.jetstream()
    sub = await js.subscribe(subjects.spans_wildcard(settings.prefix), ordered_consumer=True)
    found = ""
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1)
            except Exception:
                return found
            for span in wire.decode_spans(msg.data)[0]:
                if span.name == name and span.kind == 1:
                    found = span.trace_id
    finally:
        await sub.unsubscribe()


async def test_a_killed_caller_is_noticed_and_its_work_cancelled(
    start_agents, settings: Settings, tmp_path
) -> None:
    await start_agents(talk())
    marker = tmp_path / "marks"
    script = (
        "import asyncio, natsmesh\n"
        f"s = natsmesh.Settings(**{_settings_kwargs(settings)!r})\n"
        "async def main():\n"
        "    async with natsmesh.connect(s) as mesh:\n"
        f"        await mesh.call('sleepy', {{'seconds': 30, 'marker': {str(marker)!r}}})\n"
        "asyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    try:
        await eventually(lambda: "started" in _read(marker), 15, "the call to start")
        proc.kill()
        await proc.wait()
        t0 = time.monotonic()
        await eventually(lambda: "cancelled" in _read(marker), 10, "the worker to cancel")
        assert time.monotonic() - t0 <= 2.0
    finally:
        if proc.returncode is None:
            proc.kill()


def _settings_kwargs(settings: Settings) -> dict[str, Any]:
    keys = ("nats_url", "prefix", "registry_bucket", "spans_stream", "registry_ttl", "timeout")
    return {k: getattr(settings, k) for k in keys}


async def test_a_protocol_1_worker_still_answers_a_protocol_2_caller(settings: Settings) -> None:
    """Rolling upgrade: an old agent (no ``protocol`` in its record, one plain reply)."""
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream()
        async with connect(settings) as mesh:  # creates the bucket
            kv = await js.key_value(settings.registry_bucket)
            seen: list[dict[str, str]] = []

            async def old_worker(msg: Any) -> None:
                seen.append(dict(msg.headers or {}))
                await asyncio.sleep(protocol.ACCEPT_TIMEOUT * 1.5)  # slower than the accept bound
                await nc.publish(msg.reply, b'{"result":"old"}', headers={H.INSTANCE: "old-1"})

            await nc.subscribe(
                subjects.cap_subject("legacy", "old-agent", settings.prefix),
                queue="old-agent",
                cb=old_worker,
            )
            await nc.flush()
            record = (
                b'{"name":"old-agent","instance_id":"old-1","version":"1.0.0","description":"",'
                b'"host":"h","pid":1,"started_at":0,"runtime":"python","v":1,'
                b'"tools":[{"name":"legacy","capability":"legacy"}]}'
            )
            await kv.put("old-agent.old-1", record)
            await mesh.view.wait_for(lambda v: v.has("legacy"), timeout=5)
            assert await mesh.call("legacy", {}) == "old"
            assert seen and seen[0][H.PROTOCOL] == "2"
    finally:
        await nc.close()
