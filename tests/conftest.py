"""Fixtures: a real nats-server per test module, isolated mesh settings per test."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from natsmesh.config import Settings
from natsmesh.loader import LoadedAgent, load_file
from natsmesh.ops.cluster import reserved_ports
from natsmesh.ops.processes import worker_env
from natsmesh.ops.server import RunningServer, start_server, stop_pid
from natsmesh.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "agents"

#: environment that would leak the developer's or CI's mesh, credentials or model keys into
#: the tests (and, through ``os.environ``, into every subprocess they start)
INHERITED_PREFIXES = ("NATS_", "NATSMESH_", "OTEL_EXPORTER_OTLP_", "OTEL_TRACES_")
INHERITED_NAMES = ("TELEMETRY_ENDPOINT", "ANTHROPIC_API_KEY", "OPENAI_API_KEY")


def clear_inherited_environment(env: MutableMapping[str, str]) -> list[str]:
    """Remove the mesh, NATS, OTLP and model-key variables from ``env``; the names removed."""
    names = [n for n in env if n.startswith(INHERITED_PREFIXES) or n in INHERITED_NAMES]
    for name in names:
        del env[name]
    return names


clear_inherited_environment(os.environ)
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A nats-server with JetStream on a free loopback port, for this test module."""
    server = start_server(tmp_path_factory.mktemp("nats"))
    yield server
    server.stop()


@pytest.fixture
def reserved_port() -> Iterator[int]:
    """A loopback port held for the test: no one else gets it, nats-server can listen on it
    (for a server that must come back on the same port)."""
    with reserved_ports(1) as [port]:
        yield port


def mesh_settings(url: str, **overrides: Any) -> Settings:
    """Settings for an isolated mesh on a shared server: own prefix, bucket and stream."""
    tag = secrets.token_hex(3)
    values: dict[str, Any] = {
        "nats_url": url,
        "prefix": f"t{tag}",
        "registry_bucket": f"reg-{tag}",
        "spans_stream": f"SPANS_{tag}",
        "registry_ttl": 3.0,
        "timeout": 10.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(nats_server: RunningServer) -> Settings:
    return mesh_settings(nats_server.url)


def agent_file(name: str) -> Path:
    return AGENTS / name / "main.py"


def load_agent(name: str) -> LoadedAgent:
    return load_file(agent_file(name))


@pytest.fixture
async def start_agents(settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    """Start in-process runtimes; all are stopped at the end of the test."""
    runtimes: list[Runtime] = []

    async def start(*loaded: LoadedAgent | str, settings_: Settings | None = None) -> list[Runtime]:
        started = []
        for item in loaded:
            spec = load_agent(item) if isinstance(item, str) else item
            rt = Runtime(spec.agent, spec.tools, settings_ or settings)
            await rt.start()
            runtimes.append(rt)
            started.append(rt)
        return started

    yield start
    await asyncio.gather(*(rt.stop(grace=2) for rt in runtimes), return_exceptions=True)


def env_for(settings: Settings) -> dict[str, str]:
    """Environment that makes a subprocess join the same isolated mesh."""
    return worker_env(settings)


@pytest.fixture
def spawn_agent(
    settings: Settings, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start an agent file as its own worker process (for SIGKILL and SIGTERM tests)."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(path: Path, settings_: Settings | None = None) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{path.parent.name}-{len(procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "natsmesh.worker", str(path)],
            env=env_for(settings_ or settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            stop_pid(proc.pid, timeout=5)
        proc.wait(timeout=10)
