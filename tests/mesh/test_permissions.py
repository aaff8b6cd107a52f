"""The generated least-privilege config against a real nats-server: each attack refused."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

import natsmesh as mesh
from natsmesh import wire
from natsmesh.config import Settings
from natsmesh.loader import load_file
from natsmesh.ops.permissions import password_var
from natsmesh.ops.server import RunningServer, start_server
from natsmesh.runtime import Runtime
from natsmesh.session import connect
from natsmesh.tracing.collector import Collector
from natsmesh.wire import AgentRecord, ToolRecord
from tests.conftest import agent_file
from tests.helpers import loaded

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "nats-secure.conf"
USERS = re.findall(r'user: "([^"]+)"', CONFIG.read_text())
BUCKET = "natsmesh-registry"
FLIGHT = {"origin": "SFO", "destination": "NRT", "date": "2026-05-01"}


def password(user: str) -> str:
    return f"pw-{user}-4b9d"


def cli(server: RunningServer, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    base = [sys.executable, "-m", "natsmesh_cli.app", "--server", server.url]
    auth = ["--user", user, "--password", password(user)]
    return subprocess.run([*base, *auth, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    mp = pytest.MonkeyPatch()
    for user in USERS:
        mp.setenv(password_var(user), password(user))
    store = tmp_path_factory.mktemp("secure")
    server = start_server(
        store,
        config_file=CONFIG,
        extra_args=("-p", "-1", "-a", "127.0.0.1", "-sd", str(store / "js")),
    )
    try:
        done = cli(server, "admin", "setup")
        assert done.returncode == 0, done.stderr
        yield server
    finally:
        server.stop()
        mp.undo()


def as_user(server: RunningServer, user: str, **extra: Any) -> Settings:
    inbox = None if user in ("admin", "cli", "collector") else f"_INBOX_{user}"
    return Settings(
        nats_url=server.url, user=user, password=password(user), inbox_prefix=inbox, **extra
    )


class Intruder:
    """A plain nats-py client logged in as an agent's user, collecting the server's errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Any = None
        self._changed = asyncio.Event()

    async def open(self, server: RunningServer, user: str) -> Intruder:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))
            self._changed.set()

        self.nc = await nats.connect(
            server.url, user=user, password=password(user), inbox_prefix=f"_INBOX_{user}",
            error_cb=on_error, allow_reconnect=False,
        )  # fmt: skip
        return self

    async def refused(self, kind: str, subject: str) -> None:
        """Wait for the server's 'Permissions Violation for <kind> to "<subject>"'."""
        expected = f'permissions violation for {kind} to "{subject}"'.lower()
        async with asyncio.timeout(5):
            while not any(expected in e.lower() for e in self.errors):
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def agents(secure: RunningServer) -> Any:
    runtimes = []
    for user, name in (("user-prefs-agent", "user_prefs_agent"), ("flight-agent", "flight_agent")):
        loaded = load_file(agent_file(name))
        rt = Runtime(loaded.agent, loaded.tools, as_user(secure, user))
        await rt.start()
        runtimes.append(rt)
    yield runtimes
    for rt in runtimes:
        await rt.stop(grace=1)


async def test_an_agent_cannot_claim_another_capability(secure, agents) -> None:
    intruder = await Intruder().open(secure, "flight-agent")
    try:
        for subject in ("mesh.cap.user_preferences.flight-agent", "mesh.inst.*.user_preferences"):
            await intruder.nc.subscribe(subject)
            await intruder.refused("subscription", subject)
        # it may advertise the capability under its own name (its own key) ...
        kv = await intruder.nc.jetstream().key_value(BUCKET)
        fake = AgentRecord(
            "flight-agent", "fake-1", "1.0.0", "", "h", 1, 1.0,
            (ToolRecord("user_preferences", "user_preferences"),), protocol=2,
        )  # fmt: skip
        await kv.put("flight-agent.fake-1", wire.encode_record(fake))
        # ... but nobody answers for it, so every call reaches the real provider
        async with connect(as_user(secure, "cli")) as mesh:
            await mesh.view.wait_for(lambda v: "flight-agent.fake-1" in v.records, 5)
            for _ in range(10):
                prefs = await mesh.call("user_preferences", {"user_id": "u1"})
                assert prefs["user_id"] == "u1" and "preferred_airlines" in prefs
        await kv.delete("flight-agent.fake-1")
    finally:
        await intruder.nc.close()


async def test_registry_writes_are_bounded_to_own_keys_without_rollups(secure, agents) -> None:
    intruder = await Intruder().open(secure, "flight-agent")
    js = intruder.nc.jetstream()
    try:
        victim = f"$KV.{BUCKET}.user-prefs-agent.{agents[0].instance_id}"
        await intruder.nc.publish(victim, b'{"name": "evil"}')
        await intruder.refused("publish", victim)
        with pytest.raises(nats.js.errors.APIError, match=r"(?i)rollup"):
            await js.publish(f"$KV.{BUCKET}.flight-agent.x", b"", headers={"Nats-Rollup": "all"})
        with pytest.raises(nats.js.errors.APIError, match=r"(?i)maximum"):
            await js.publish(f"$KV.{BUCKET}.flight-agent.x", b"x" * 300_000)
        async with connect(as_user(secure, "cli")) as mesh:
            assert {r.name for r in mesh.view.records.values()} == {
                "user-prefs-agent",
                "flight-agent",
            }, "nothing was purged"
    finally:
        await intruder.nc.close()


async def test_a_push_consumer_cannot_deliver_calls_to_an_agent(secure, agents) -> None:
    victim = agents[0]
    intruder = await Intruder().open(secure, "flight-agent")
    js = intruder.nc.jetstream()
    try:
        # nats-server (2.15) does not check a push consumer's deliver subject against the
        # creator's permissions (nats-server issue #8274): the receiving side refuses it
        targets = [
            ("mesh.cap.user_preferences.user-prefs-agent", "user-prefs-agent"),
            (f"mesh.inst.{victim.instance_id}.user_preferences", None),
            (f"$SRV.PING.user-prefs-agent.{victim.instance_id}", None),
        ]
        for deliver, group in targets:
            await js.add_consumer(
                f"KV_{BUCKET}",
                ConsumerConfig(
                    deliver_subject=deliver,
                    deliver_group=group,
                    filter_subject=f"$KV.{BUCKET}.flight-agent.evil",
                    deliver_policy=DeliverPolicy.ALL,
                    ack_policy=AckPolicy.NONE,
                ),
            )
        await js.publish(f"$KV.{BUCKET}.flight-agent.evil", b'{"user_id": "chosen-by-attacker"}')
        assert victim.nc is not None
        dropped = victim.nc.dropped  # type: ignore[attr-defined]
        for _ in range(100):  # up to 5 s
            if dropped["jetstream_delivery"] == len(targets):
                break
            await asyncio.sleep(0.05)
        assert dropped["jetstream_delivery"] == len(targets)
        assert victim.stats.endpoints.get("user_preferences") is None, "the call never ran"
    finally:
        await intruder.nc.close()


async def test_control_subjects_are_closed_to_agents(secure, agents) -> None:
    weather = await Intruder().open(secure, "weather-agent")  # calls nobody
    flight = await Intruder().open(secure, "flight-agent")  # calls user_preferences
    try:
        for subject in (
            "$SRV.PING",
            "$SRV.STATS.user-prefs-agent",
            "mesh.cancel.x",
            "$SRV.PING.a.b",
        ):
            await weather.nc.publish(subject, b"")
            await weather.refused("publish", subject)
        for subject in ("$SRV.INFO", "$SRV.STATS.user-prefs-agent"):
            await flight.nc.publish(subject, b"")
            await flight.refused("publish", subject)
        # what a caller needs stays open: the instance running its call answers a ping
        pong = await flight.nc.request(
            f"$SRV.PING.user-prefs-agent.{agents[0].instance_id}", b"", timeout=3
        )
        assert json.loads(pong.data)["id"] == agents[0].instance_id
    finally:
        await weather.nc.close()
        await flight.nc.close()


async def test_a_worker_may_send_several_messages_per_call(secure) -> None:
    """Protocol 2 (accepted, chunks, final) needs allow_responses with a count."""
    worker = await Intruder().open(secure, "weather-agent")
    inbox_got: list[bytes] = []
    try:

        async def answer(msg: Any) -> None:
            for part in (b"accepted", b"chunk", b"final"):
                await worker.nc.publish(msg.reply, part)

        await worker.nc.subscribe("mesh.cap.weather_forecast.weather-agent", cb=answer)
        await worker.nc.flush()
        caller = await Intruder().open(secure, "planner-agent")
        got = asyncio.Queue[bytes]()
        inbox = caller.nc.new_inbox()

        async def receive(msg: Any) -> None:
            got.put_nowait(msg.data)

        await caller.nc.subscribe(inbox, cb=receive)
        await caller.nc.publish("mesh.cap.weather_forecast.weather-agent", b"{}", reply=inbox)
        async with asyncio.timeout(5):
            while len(inbox_got) < 3:
                inbox_got.append(await got.get())
        assert inbox_got == [b"accepted", b"chunk", b"final"]
        assert not worker.errors
        await caller.nc.publish("mesh.cancel.x", b"reply")  # callers may cancel
        await caller.nc.flush()
        await caller.nc.close()
        assert not caller.errors
    finally:
        await worker.nc.close()


@mesh.agent(name="weather-agent")
class StreamingWeather:
    """An agent that runs as the weather-agent user, with a streaming tool."""


STOPPED = asyncio.Event()


@mesh.tool(capability="weather_forecast")
async def forecast_parts(n: int, delay: float = 0.0) -> AsyncIterator[int]:
    try:
        for i in range(n):
            if delay:
                await asyncio.sleep(delay)
            yield i
    finally:
        STOPPED.set()


async def test_streams_and_cancels_under_the_generated_config(
    secure, caplog: pytest.LogCaptureFixture
) -> None:
    spec = loaded(StreamingWeather, forecast_parts)
    rt = Runtime(spec.agent, spec.tools, as_user(secure, "weather-agent"))
    await rt.start()
    try:
        async with connect(as_user(secure, "planner-agent")) as planner:
            await planner.view.wait_for(lambda v: v.has("weather_forecast"), 5)
            async with planner.stream("weather_forecast", {"n": 3000}) as parts:
                got = [part async for part in parts]
            assert got == list(range(3000)), "every chunk of a long stream arrives"
            STOPPED.clear()
            async with planner.stream("weather_forecast", {"n": 1000, "delay": 0.05}) as parts:
                async for part in parts:
                    if part == 2:
                        break  # leaving the block cancels the call on the worker
            await asyncio.wait_for(STOPPED.wait(), 5)
    finally:
        await rt.stop(grace=1)
    assert "NATS refused" not in caplog.text, "the mesh needs no right the config lacks"


async def test_gateway_user_calls_and_a_traced_call_shows_its_tree(
    secure, agents, caplog: pytest.LogCaptureFixture
) -> None:
    async with connect(as_user(secure, "gateway")) as gateway:
        await gateway.view.wait_for(lambda v: len(v.records) >= 2, 5)
        result = await gateway.call("flight_search", FLIGHT)
        assert result["personalized"] is True
    # the agents run on this event loop: the CLI runs in a thread so they can answer
    again = await asyncio.to_thread(cli, secure, "admin", "setup")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "registry bucket natsmesh-registry: ready",
        "span stream NATSMESH_SPANS: ready",
    ]
    call = await asyncio.to_thread(
        cli, secure, "cli", "call", "flight_search", json.dumps(FLIGHT), "--trace"
    )
    assert call.returncode == 0, call.stderr
    trace_id = re.search(r"Trace ID: ([0-9a-f]{32})", call.stdout + call.stderr)
    assert trace_id, call.stdout
    for rt in agents:
        assert rt.tracing is not None and rt.tracing.processor is not None
        await rt.tracing.processor.flush()
    tree = await asyncio.to_thread(cli, secure, "cli", "trace", trace_id.group(1))
    assert tree.returncode == 0, tree.stderr
    assert "flight_search (flight-agent)" in tree.stdout
    assert "get_user_prefs (user-prefs-agent)" in tree.stdout

    class Sink:
        timeout = 1.0  # the collector sizes its ack wait by it

        def __init__(self) -> None:
            self.posted: list[Any] = []

        def requests(self, spans: list[Any], per_request: int) -> list[tuple[list[Any], int]]:
            return [(spans, len(spans))]

        def post(self, request: Any) -> None:
            self.posted.append(request)

    nc = await nats.connect(secure.url, user="collector", password=password("collector"))
    sink = Sink()
    collector = Collector(nc, as_user(secure, "collector"), sink)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))
    try:
        await collector.wait_until(lambda c: c.exported >= 3, 10)
    finally:
        stop.set()
        await task
        await nc.close()
    assert collector.failures == 0
    assert "NATS refused" not in caplog.text, "the mesh needs no right the config lacks"
