"""``natsmesh call`` on the call protocol: Ctrl-C cancels the call down the chain."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from natsmesh import wire
from natsmesh.config import Settings
from natsmesh.session import connect
from natsmesh.tracing.store import read_trace
from tests.conftest import ROOT, env_for
from tests.helpers import TEST_AGENTS, eventually


def natsmesh_bin() -> list[str]:
    found = Path(sys.executable).parent / "natsmesh"
    return [str(found)] if found.exists() else [sys.executable, "-m", "natsmesh_cli.app"]


def lines(path: Path) -> list[str]:
    try:
        return [line.split()[0] for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


async def test_ctrl_c_cancels_the_call_and_its_nested_call(
    spawn_agent: Any, settings: Settings, tmp_path: Path
) -> None:
    spawn_agent(TEST_AGENTS / "talk_agent.py")
    spawn_agent(TEST_AGENTS / "outer_agent.py")
    marker = tmp_path / "marks"
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 2, timeout=20)
        args = json.dumps({"seconds": 30, "marker": str(marker)})
        proc = await asyncio.create_subprocess_exec(
            *natsmesh_bin(),
            "call",
            "outer",
            args,
            "--trace",
            env=env_for(settings),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await eventually(lambda: "started" in lines(marker), 20, "the inner tool to start")
            interrupted = time.time()
            proc.send_signal(signal.SIGINT)
            raw_out, raw_err = await asyncio.wait_for(proc.communicate(), 20)
            out, err = raw_out.decode(), raw_err.decode()
        finally:
            if proc.returncode is None:
                proc.kill()
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1].startswith("error: cancelled"), err
        assert "Traceback" not in err
        await eventually(
            lambda: {"cancelled", "outer-cancelled"} <= set(lines(marker)), 5, "both cancelled"
        )
        trace_id = next(
            line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("Trace ID")
        )
        spans: list[wire.SpanMessage] = []

        async def servers_ended() -> bool:
            spans[:] = await read_trace(mesh.nc, settings, trace_id)
            return sum(s.kind == 1 for s in spans) >= 2

        await eventually(servers_ended, 10, "both SERVER spans")
    servers = {s.name: s for s in spans if s.kind == 1}
    assert set(servers) == {"outer", "sleepy"}
    for span in servers.values():
        assert span.attrs["error.type"] == "cancelled"
        assert span.end / 1e9 - interrupted <= 0.5, f"{span.name} ended late"
    root = next(s for s in spans if s.service == "cli")
    assert root.attrs["error.type"] == "cancelled"


async def test_stream_prints_chunks_and_json_for_plain_tools(
    spawn_agent: Any, settings: Settings
) -> None:
    spawn_agent(TEST_AGENTS / "talk_agent.py")
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 1, timeout=20)

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*natsmesh_bin(), "call", *args],
            env=env_for(settings),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )

    streamed = await asyncio.to_thread(call, "words", '{"text": "one two three"}', "--stream")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == "one two three\n"
    collected = await asyncio.to_thread(call, "words", '{"text": "one two"}')
    assert collected.stdout.strip() == "one two"
    numbers = await asyncio.to_thread(call, "count", '{"n": 3}', "--stream")
    assert numbers.stdout.split() == ["0", "1", "2"]
    bad = await asyncio.to_thread(call, "quick", "{}", "--version", "bogus")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
