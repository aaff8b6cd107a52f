"""`natsmesh start -w` restarts an agent when its file changes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from natsmesh.config import Settings
from natsmesh.ops.processes import worker_env
from natsmesh.session import connect

AGENT = """
import natsmesh as mesh


@mesh.agent(name="watched-agent", version="{version}")
class Watched:
    pass


@mesh.tool(capability="watched")
async def watched() -> str:
    return "{answer}"
"""


def start_watching(path: Path, settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "natsmesh_cli.app", "start", str(path), "-w"],
        env=worker_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_watch_restarts_on_change(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "watched.py"
    path.write_text(AGENT.format(version="1.0.0", answer="first"))
    proc = start_watching(path, settings)
    try:
        async with connect(settings) as mesh:
            await mesh.view.wait_for(lambda v: len(v.records) == 1, timeout=20)
            assert await mesh.call("watched", {}) == "first"
            path.write_text(AGENT.format(version="2.0.0", answer="second"))
            await mesh.view.wait_for(
                lambda v: [r.version for r in v.records.values()] == ["2.0.0"], timeout=20
            )
            assert await mesh.call("watched", {}) == "second"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
