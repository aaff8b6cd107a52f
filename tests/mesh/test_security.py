"""Least-privilege permissions from deploy/nats-secure.conf, and secrets that stay put."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from natsmesh import wire
from natsmesh.config import Settings
from natsmesh.connection import connect_nats
from natsmesh.genai.provider import scrub
from natsmesh.loader import load_file
from natsmesh.ops.permissions import password_var, server_config
from natsmesh.ops.server import RunningServer, start_server
from natsmesh.registry import open_bucket
from natsmesh.runtime import Runtime
from natsmesh.session import connect
from natsmesh.tracing.export import ensure_stream
from tests.conftest import AGENTS, agent_file

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "nats-secure.conf"
USERS = ["admin", "cli", "gateway", "collector", "flight-agent", "user-prefs-agent", "hotel-agent", "weather-agent",
         "poi-agent", "planner-agent", "claude-provider", "openai-provider"]  # fmt: skip
SECRET_KEY = "sk-ant-test-0123456789abcdefSECRET"


def password(user: str) -> str:
    return f"pw-{user}-7c1e"


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    mp = pytest.MonkeyPatch()
    for user in USERS:
        mp.setenv(password_var(user), password(user))
    store = tmp_path_factory.mktemp("secure")
    server = start_server(
        store,
        config_file=CONFIG,
        extra_args=("-p", "-1", "-a", "127.0.0.1", "-sd", str(store / "js")),
    )
    yield server
    server.stop()
    mp.undo()


def as_user(server: RunningServer, user: str, **extra: object) -> Settings:
    inbox = f"_INBOX_{user}" if user not in ("admin", "cli", "collector") else None
    return Settings(
        nats_url=server.url, user=user, password=password(user), inbox_prefix=inbox, **extra
    )  # type: ignore[arg-type]


def test_sample_config_is_what_the_generator_writes() -> None:
    agents = [
        load_file(AGENTS / a / "main.py")
        for a in sorted(p.name for p in AGENTS.iterdir() if (p / "main.py").exists())
    ]
    assert CONFIG.read_text() == server_config(agents, Settings())


async def test_least_privilege_mesh(secure_server: RunningServer) -> None:
    admin = as_user(secure_server, "admin")
    nc = await connect_nats(admin, "admin")
    await open_bucket(nc.jetstream(), admin)
    await ensure_stream(nc.jetstream(), admin)
    await nc.close()

    runtimes = []
    for user, name in (("user-prefs-agent", "user_prefs_agent"), ("flight-agent", "flight_agent")):
        loaded = load_file(agent_file(name))
        rt = Runtime(loaded.agent, loaded.tools, as_user(secure_server, user))
        await rt.start()
        runtimes.append(rt)
    try:
        async with connect(as_user(secure_server, "cli")) as mesh:
            await mesh.view.wait_for(lambda v: len(v.records) == 2, timeout=5)
            result = await mesh.call(
                "flight_search", {"origin": "SFO", "destination": "NRT", "date": "d"}
            )
            assert result["personalized"] is True, "the whole path works with least privilege"

        # flight-agent may not listen on user-prefs-agent's subject
        refused = asyncio.Event()
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))
            if "permissions violation for subscription" in str(exc).lower():
                refused.set()

        intruder = await nats.connect(
            secure_server.url, user="flight-agent", password=password("flight-agent"),
            inbox_prefix="_INBOX_flight-agent", error_cb=on_error,
        )  # fmt: skip
        await intruder.subscribe(
            "mesh.cap.user_preferences.user-prefs-agent", queue="user-prefs-agent"
        )
        await asyncio.wait_for(refused.wait(), 5)
        await intruder.close()
        # nor overwrite its registry entry: the server refuses the publish to the key's subject
        # (the put itself then only times out, so the error callback tells what happened)
        denied: list[str] = []

        async def on_denied(exc: Exception) -> None:
            denied.append(str(exc))

        flight = await nats.connect(
            secure_server.url, user="flight-agent", password=password("flight-agent"),
            inbox_prefix="_INBOX_flight-agent", error_cb=on_denied,
        )  # fmt: skip
        kv = await flight.jetstream(timeout=2).key_value("natsmesh-registry")
        prefs_key = f"user-prefs-agent.{runtimes[0].instance_id}"
        with pytest.raises(nats.errors.TimeoutError):
            await kv.put(prefs_key, b'{"name": "evil"}')
        await flight.close()
        assert any(
            "permissions violation for publish" in e.lower() and prefs_key in e for e in denied
        ), denied
        async with connect(as_user(secure_server, "cli")) as mesh:
            record = next(r for r in mesh.view.records.values() if r.name == "user-prefs-agent")
            assert record.instance_id == runtimes[0].instance_id
    finally:
        for rt in runtimes:
            await rt.stop(grace=1)


async def test_unauthenticated_client_is_refused(secure_server: RunningServer) -> None:
    for credentials in ({}, {"user": "flight-agent", "password": "wrong"}):
        with pytest.raises(nats.errors.Error, match="'Authorization Violation'") as info:
            await nats.connect(
                secure_server.url,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                connect_timeout=2,
                **credentials,
            )
        assert not isinstance(info.value, nats.errors.NoServersError)


async def test_secrets_stay_in_their_process(
    secure_server: RunningServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET_KEY)
    monkeypatch.setenv("NATSMESH_CLAUDE_MODEL", "offline")
    settings = as_user(secure_server, "claude-provider")
    loaded = load_file(agent_file("claude_provider"))
    rt = Runtime(loaded.agent, loaded.tools, settings)
    await rt.start()
    try:
        async with connect(as_user(secure_server, "cli")) as mesh:
            await mesh.view.wait_for(
                lambda v: any(r.name == "claude-provider" for r in v.records.values()), 5
            )
            reply = await mesh.call("llm", {"messages": [{"role": "user", "content": "hi"}]})
            assert reply["model"] == "offline"
            record = wire.encode_record(
                next(r for r in mesh.view.records.values() if r.name == "claude-provider")
            )
            assert rt.tracing.processor is not None
            await rt.tracing.processor.flush()
        secrets = [SECRET_KEY, password("claude-provider"), password("cli")]
        assert not any(s.encode() in record for s in secrets)
        assert not any(s in repr(settings) for s in secrets)
        assert not any(s in caplog.text for s in secrets)
    finally:
        await rt.stop(grace=1)
    assert scrub(f"failed with key {SECRET_KEY}") == "failed with key ***"
    assert "sk-***" in scrub("Incorrect API key provided: sk-proj-abcdef123456")


def test_cli_connects_with_flags(secure_server: RunningServer) -> None:
    import json
    import subprocess
    import sys

    base = [sys.executable, "-m", "natsmesh_cli.app", "--server", secure_server.url]
    for flags in ([], ["--user", "cli", "--password", "wrong"]):
        refused = subprocess.run(
            [*base, *flags, "list"], capture_output=True, text=True, timeout=30
        )
        assert refused.returncode == 1
        assert "authorization refused" in refused.stderr.lower()
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    ok = subprocess.run(
        [*base, "--user", "cli", "--password", password("cli"), "list", "--json"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert isinstance(json.loads(ok.stdout), list)
    assert password("cli") not in ok.stdout + ok.stderr
