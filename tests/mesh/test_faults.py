"""Faults survived: a replica killed or stopped under load, the NATS server restarted,
overload, deadlines. Each prints its counts (run with -s to see them)."""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from natsmesh.config import Settings
from natsmesh.errors import MeshError, Unavailable
from natsmesh.loader import load_file
from natsmesh.ops.server import start_server
from natsmesh.runtime import Runtime
from natsmesh.session import connect
from tests.conftest import agent_file, mesh_settings
from tests.helpers import TEST_AGENTS

WORK = TEST_AGENTS / "work_agent.py"
pytestmark = pytest.mark.slow


class Load:
    """Steady calls from several callers; counts outcomes and the longest call."""

    def __init__(self) -> None:
        self.sent = 0
        self.ok = 0
        self.failed: collections.Counter[str] = collections.Counter()
        self.longest = 0.0
        self.stop = asyncio.Event()

    async def caller(self, mesh: Any, capability: str, delay: float, timeout: float) -> None:
        while not self.stop.is_set():
            self.sent += 1
            t0 = time.perf_counter()
            try:
                await mesh.call(capability, {"delay": delay}, timeout=timeout)
                self.ok += 1
            except MeshError as exc:
                self.failed[exc.type] += 1
            self.longest = max(self.longest, time.perf_counter() - t0)

    def report(self, name: str) -> dict[str, Any]:
        data = {
            "fault": name,
            "sent": self.sent,
            "succeeded": self.ok,
            "failed": dict(self.failed),
            "longest_call_s": round(self.longest, 3),
        }
        print(json.dumps(data))
        return data


async def run_load(
    settings: Settings, capability: str, delay: float, timeout: float, fault: Any, callers: int = 3
) -> Load:
    load = Load()
    clients = [connect(settings) for _ in range(callers)]
    meshes = [await c.__aenter__() for c in clients]
    try:
        await meshes[0].view.wait_for(lambda v: len(v.records) >= 3, timeout=15)
        for m in meshes:
            await m.view.wait_for(lambda v: len(v.records) >= 3, timeout=15)
        tasks = [
            asyncio.create_task(load.caller(m, capability, delay, timeout))
            for m in meshes
            for _ in range(4)
        ]
        await asyncio.sleep(0.5)  # load runs before the fault (a duration, not synchronisation)
        await fault(meshes[0])
        await asyncio.sleep(1.5)  # and after it
        load.stop.set()
        await asyncio.gather(*tasks)
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)
    return load


async def test_replica_killed_under_load(spawn_agent, settings: Settings) -> None:
    procs = [spawn_agent(WORK) for _ in range(3)]

    async def kill(_: Any) -> None:
        procs[0].send_signal(signal.SIGKILL)

    plain = await run_load(settings, "work", 0.2, 3.0, kill)
    report = plain.report("SIGKILL, plain tool")
    assert plain.ok > 0
    assert set(plain.failed) <= {"timeout", "unavailable"}
    assert plain.longest < 3.5, "no call outlives its deadline"

    procs.append(spawn_agent(WORK))

    async def kill_again(mesh: Any) -> None:
        await mesh.view.wait_for(lambda v: len(v.records) == 3, timeout=15)
        procs[1].send_signal(signal.SIGKILL)

    idem = await run_load(settings, "work_idem", 0.2, 3.0, kill_again)
    idem.report("SIGKILL, idempotent tool")
    assert idem.failed == {}, "idempotent calls are retried on another replica"
    assert idem.ok == idem.sent
    assert report["sent"] > 0


async def test_replica_stopped_gracefully_under_load(spawn_agent, settings: Settings) -> None:
    procs = [spawn_agent(WORK) for _ in range(3)]

    async def term(mesh: Any) -> None:
        procs[0].send_signal(signal.SIGTERM)

    load = await run_load(settings, "work", 0.05, 3.0, term)
    load.report("SIGTERM under load")
    assert load.failed == {}
    assert procs[0].wait(timeout=10) == 0
    async with connect(settings) as mesh:
        assert len(mesh.view.records) == 2


async def test_overload_answers_unavailable_at_once(
    spawn_agent, settings: Settings, monkeypatch
) -> None:
    monkeypatch.setenv("WORK_MAX_IN_FLIGHT", "2")
    spawn_agent(WORK)
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 1, timeout=15)
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(mesh.call("work", {"delay": 1.0}, timeout=5) for _ in range(10)),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, Unavailable)]
        assert len(refused) == 8
        assert all("limit of calls in flight" in str(r) for r in refused)
        assert sum(isinstance(r, dict) for r in results) == 2
        assert time.perf_counter() - t0 < 2.5
        # with a sibling, refused calls are offered to it instead
        spawn_agent(WORK)
        await mesh.view.wait_for(lambda v: len(v.records) == 2, timeout=15)
        results = await asyncio.gather(
            *(mesh.call("work", {"delay": 0.5}, timeout=5) for _ in range(4)),
            return_exceptions=True,
        )
        assert all(isinstance(r, dict) for r in results), results


async def test_nats_server_restart(tmp_path: Path, reserved_port: int) -> None:
    # the port stays reserved while the server is down, so it can come back on it
    port = reserved_port
    server = start_server(tmp_path / "nats", port=port)
    settings = mesh_settings(server.url)
    runtimes = []
    try:
        for name in ("user_prefs_agent", "flight_agent"):
            loaded = load_file(agent_file(name))
            rt = Runtime(loaded.agent, loaded.tools, settings)
            await rt.start()
            runtimes.append(rt)
        args = {"origin": "SFO", "destination": "NRT", "date": "2026-06-01"}
        async with connect(settings) as mesh:
            assert (await mesh.call("flight_search", args))["personalized"] is True
            server.stop()
            t0 = time.perf_counter()
            with pytest.raises(Unavailable, match="connect"):
                await mesh.call("flight_search", args)
            fail_fast = time.perf_counter() - t0
            assert fail_fast < 0.5
            server = start_server(tmp_path / "nats", port=port)
            back = time.perf_counter()
            while True:
                try:
                    result = await mesh.call("flight_search", args, timeout=1)
                    if result["personalized"]:
                        break
                except MeshError:
                    pass
                assert time.perf_counter() - back < 15, "calls did not recover"
                await asyncio.sleep(0.1)
            recovered = time.perf_counter() - back
            await mesh.view.wait_for(lambda v: len(v.records) == 2, timeout=10)
            for rt in runtimes:
                assert rt.view is not None
                await rt.view.wait_for(lambda v: len(v.records) == 2, timeout=10)
        print(
            json.dumps(
                {
                    "fault": "server restart",
                    "fail_fast_s": round(fail_fast, 3),
                    "recovered_s": round(recovered, 2),
                }
            )
        )
    finally:
        for rt in runtimes:
            await rt.stop(grace=1)
        server.stop()


async def test_flood_keeps_memory_bounded_and_answers_everything(
    spawn_agent, settings: Settings, monkeypatch
) -> None:
    from bench.harness import rss_mb

    monkeypatch.setenv("WORK_MAX_IN_FLIGHT", "8")
    proc = spawn_agent(WORK)
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 1, timeout=15)
        before = rss_mb(proc.pid)
        nc = mesh.nc
        inbox = nc.new_inbox()
        replies: collections.Counter[str] = collections.Counter()
        done = asyncio.Event()
        total = 20_000

        async def on_reply(msg: Any) -> None:
            replies[msg.headers.get("Mesh-Error", "ok") if msg.headers else "ok"] += 1
            if sum(replies.values()) == total:
                done.set()

        await nc.subscribe(inbox + ".*", cb=on_reply)
        body = json.dumps({"delay": 0.05, "pad": None}).encode().replace(b', "pad": null', b"")
        subject = f"{settings.prefix}.cap.work.work-agent"
        for i in range(total):
            await nc.publish(subject, body, reply=f"{inbox}.{i}")
        await asyncio.wait_for(done.wait(), 60)
        after = rss_mb(proc.pid)
        assert (await mesh.call("work", {}))["pid"] == proc.pid
    print(
        json.dumps(
            {
                "fault": "flood",
                "requests": total,
                "replies": dict(replies),
                "rss_mb": [round(before), round(after)],
            }
        )
    )
    assert replies["unavailable"] > 0 and replies["ok"] > 0
    assert after - before < 100, "memory stays bounded"
