"""``natsmesh gateway`` and ``natsmesh start --gateway`` as processes, reached over HTTP."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import httpx

from natsmesh.config import Settings
from tests.conftest import env_for
from tests.helpers import TEST_AGENTS, eventually

URL = re.compile(r"gateway: (http://\S+) ")


async def lines_until(
    proc: asyncio.subprocess.Process, pattern: str, timeout: float = 30
) -> list[str]:
    """Output lines up to the first that contains ``pattern``."""
    assert proc.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"the process ended before {pattern!r}: {seen}")
            seen.append(line)
            if pattern in line:
                return seen


async def natsmesh(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "natsmesh_cli.app", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip


async def stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(20):
        await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode


async def test_gateway_command_serves_on_loopback_and_says_so(
    settings: Settings, tmp_path: Path
) -> None:
    env = {**env_for(settings), "NATSMESH_HOME": str(tmp_path)}
    env.pop("NATSMESH_GATEWAY_TOKENS", None)
    proc = await natsmesh("gateway", "--port", "0", env=env)
    try:
        lines = await lines_until(proc, "no tokens configured")
        url = URL.search("".join(lines))
        assert url is not None and url.group(1).startswith("http://127.0.0.1:")
        assert "only this machine can reach it" in lines[-1]
        async with httpx.AsyncClient(base_url=url.group(1)) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            assert (await http.get("/readyz")).json()["ready"] is True
            assert (await http.get("/tools")).json() == {"tools": []}
    finally:
        code = await stop(proc)
    assert code == 0


async def test_start_gateway_serves_the_agents_it_starts(
    settings: Settings, tmp_path: Path
) -> None:
    env = {
        **env_for(settings),
        "NATSMESH_HOME": str(tmp_path),
        "NATSMESH_GATEWAY_PORT": "0",
        "NATSMESH_GATEWAY_HOST": "127.0.0.1",
        "NATSMESH_GATEWAY_TOKENS": "tok1,tok2",
    }
    proc = await natsmesh("start", str(TEST_AGENTS / "stream_agent.py"), "--gateway", env=env)
    try:
        lines = await lines_until(proc, "[gateway] gateway: http://")
        url = URL.search(lines[-1])
        assert url is not None
        auth = {"authorization": "Bearer tok2"}
        async with httpx.AsyncClient(base_url=url.group(1), timeout=10) as http:
            assert (await http.get("/tools")).status_code == 401

            async def listed() -> set[str]:
                return {t["name"] for t in (await http.get("/tools", headers=auth)).json()["tools"]}

            await eventually(listed, 20, "the agent to register")
            assert await listed() == {"add", "count", "hold", "wait"}
            added = await http.post("/tools/add", json={"a": 40, "b": 2}, headers=auth)
            assert added.json()["total"] == 42
    finally:
        await stop(proc)


async def test_start_detached_gateway_is_stopped_with_the_agents(
    settings: Settings, tmp_path: Path
) -> None:
    from natsmesh.ops.server import pid_alive

    env = {
        **env_for(settings),
        "NATSMESH_HOME": str(tmp_path),
        "NATSMESH_GATEWAY_PORT": "0",
        "NATSMESH_GATEWAY_HOST": "127.0.0.1",
    }
    env.pop("NATSMESH_GATEWAY_TOKENS", None)
    start = await natsmesh(
        "start", "-d", "--gateway", str(TEST_AGENTS / "stream_agent.py"), env=env
    )
    out, _ = await asyncio.wait_for(start.communicate(), 60)
    assert start.returncode == 0, out
    line = next(x for x in out.decode().splitlines() if x.startswith("✓ gateway"))
    pid, url = int(line.split()[3]), line.split()[4]
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            tools = (await http.get("/tools")).json()["tools"]
        assert "add" in {t["name"] for t in tools}
        assert "gateway: http://" in (tmp_path / "logs" / "gateway.log").read_text()
    finally:
        stop_all = await natsmesh("stop", env=env)
        out, _ = await asyncio.wait_for(stop_all.communicate(), 60)
    assert f"stopped gateway (pid {pid})" in out.decode()
    assert not pid_alive(pid)
