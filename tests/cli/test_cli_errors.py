"""CLI errors are one line; `stop` signals only its own processes; Ctrl-C in the collector."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from natsmesh.config import Settings
from natsmesh.ops.cluster import reserved_ports
from natsmesh.ops.processes import process_identity
from natsmesh.ops.server import RunningServer, pid_alive
from tests.cli.test_cli import natsmesh_bin


def run(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*natsmesh_bin(), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def base_env(tmp_path: Path, url: str) -> dict[str, str]:
    return {**os.environ, "NATS_URL": url, "NATSMESH_HOME": str(tmp_path / "home")}


@pytest.fixture
def http_port() -> Iterator[int]:
    """An HTTP server on a free port: it accepts connections and says nothing first."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("status",),
        ("call", "echo", "{}"),
        ("trace", "0" * 32),
        ("setup",),
        ("start", "-d", "tests/agents/echo_agent.py"),
    ],
)
def test_a_port_that_is_not_nats_is_one_line(tmp_path: Path, http_port: int, args) -> None:
    env = base_env(tmp_path, f"nats://127.0.0.1:{http_port}")
    out = run(env, *args)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in out.stderr
    assert "not a NATS" in lines[0] or "NATS port" in lines[0], lines[0]
    assert not list((tmp_path / "home").glob("pids/*.json")), "no agent was started"


def test_tls_url_refuses_a_plaintext_server(tmp_path: Path, nats_server: RunningServer) -> None:
    port = nats_server.url.rsplit(":", 1)[1]
    out = run(base_env(tmp_path, f"tls://127.0.0.1:{port}"), "list")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"error: no NATS server answers at tls://127.0.0.1:{port} "
        "(the server offers no TLS, and a tls:// URL refuses plaintext)"
    ]
    assert run(base_env(tmp_path, nats_server.url), "list").returncode == 0


def test_bad_records_do_not_break_list(tmp_path: Path, nats_server: RunningServer) -> None:
    import asyncio

    from natsmesh import wire
    from natsmesh.connection import connect_nats
    from natsmesh.registry import open_bucket
    from tests.conftest import mesh_settings

    settings = mesh_settings(nats_server.url, registry_ttl=120.0)  # no heartbeats here
    good = wire.AgentRecord("ok", "ok-1", "1.0.0", "", "h", 1, 1.0, (wire.ToolRecord("ok", "ok"),))
    bad_tag = {"capability": "y", "tags": [""]}
    bad_version = {"capability": "y", "version": "garbage"}

    async def poison() -> None:
        nc = await connect_nats(settings, "poison")
        kv = await open_bucket(nc.jetstream(), settings)
        await kv.put("ok.ok-1", wire.encode_record(good))
        for i, dep in enumerate((bad_tag, bad_version)):
            value = wire.to_builtins(wire.AgentRecord(f"b{i}", f"b{i}-1", "1", "", "h", 1, 1.0))
            value["tools"] = [{"name": "x", "capability": "x", "dependencies": [dep]}]
            await kv.put(f"b{i}.b{i}-1", json.dumps(value).encode())
        await nc.close()

    asyncio.run(poison())
    env = {**base_env(tmp_path, nats_server.url), **settings.environment()}
    for args in (("list",), ("list", "--tools"), ("list", "--json")):
        out = run(env, *args)
        assert out.returncode == 0, out.stderr
        assert "Traceback" not in out.stderr
        assert "ok" in out.stdout and "b0" not in out.stdout and "b1" not in out.stdout
        warnings = [line for line in out.stderr.splitlines() if "ignoring registry entry" in line]
        assert len(warnings) == 2, out.stderr


def _sleeper(*argv: str) -> subprocess.Popen[bytes]:
    """An unrelated process (its command line may even look like a worker's)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *argv])


def test_stop_leaves_a_reused_pid_alone(tmp_path: Path, reserved_port: int) -> None:
    env = base_env(tmp_path, f"nats://127.0.0.1:{reserved_port}")
    home = tmp_path / "home"
    (home / "pids").mkdir(parents=True)
    agent_file = str(Path("tests/agents/echo_agent.py").resolve())
    plain = _sleeper()
    lookalike = _sleeper("-m", "natsmesh.worker", agent_file)
    try:
        identity = process_identity(lookalike.pid)
        assert identity is not None and identity[0] is not None
        # an old pid file (no start time) whose pid now runs something else
        (home / "pids" / f"echo-agent.{plain.pid}.json").write_text(
            json.dumps({"pid": plain.pid, "agent": "echo-agent", "file": agent_file})
        )
        # a pid file whose process had the same command line but started at another time
        (home / "pids" / f"echo-agent.{lookalike.pid}.json").write_text(
            json.dumps(
                {
                    "pid": lookalike.pid,
                    "agent": "echo-agent",
                    "file": agent_file,
                    "started": identity[0] - 1,
                }
            )
        )
        (home / "nats-server.json").write_text(json.dumps({"pid": plain.pid, "url": "x"}))
        out = run(env, "stop")
        assert out.returncode == 0, out.stderr
        assert "no detached agents were running" in out.stdout
        assert "stopped" not in out.stdout.replace("no detached", "")
        assert pid_alive(plain.pid) and pid_alive(lookalike.pid)
        assert not list((home / "pids").glob("*.json")), "stale pid files are removed"
    finally:
        for proc in (plain, lookalike):
            proc.kill()
            proc.wait()


def _collector(env: dict[str, str], otlp_port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*natsmesh_bin(), "collector", "--protocol", "http", "--otlp-endpoint",
         f"http://127.0.0.1:{otlp_port}/v1/traces"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _interrupt(proc: subprocess.Popen[str], ready: str) -> str:
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if ready in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, "".join(seen) + rest
    return "".join(seen) + rest


def test_ctrl_c_in_the_collector(tmp_path: Path, nats_server: RunningServer) -> None:
    with reserved_ports(2) as [nats_port, otlp_port]:  # nothing listens on either
        waiting = _interrupt(
            _collector(base_env(tmp_path, f"nats://127.0.0.1:{nats_port}"), otlp_port),
            "cannot reach NATS",
        )
    assert "Traceback" not in waiting
    assert waiting.strip().splitlines()[-1] == "collector: stopped before NATS was reached"
    settings = Settings(nats_url=nats_server.url, spans_stream="SPANS_ctrlc", prefix="ctrlc")
    env = {**base_env(tmp_path, nats_server.url), **settings.environment()}
    with reserved_ports(1) as [otlp_port]:
        running = _interrupt(_collector(env, otlp_port), "collector: SPANS_ctrlc")
    assert "Traceback" not in running and "cannot reach" not in running
    assert running.strip().splitlines()[-1] == "collector: stopped"


def test_a_frozen_client_is_dropped_by_the_server(nats_server: RunningServer) -> None:
    """SIGSTOP freezes a client; the server's pings drop its connection within 15 s."""
    import urllib.request

    def connections() -> int:
        with urllib.request.urlopen(f"{nats_server.monitor_url}/connz", timeout=2) as r:
            return int(json.loads(r.read())["num_connections"])

    script = (
        "import asyncio, nats\n"
        "async def main():\n"
        f"    nc = await nats.connect('{nats_server.url}')\n"
        "    print('connected', flush=True)\n"
        "    await asyncio.sleep(120)\n"
        "asyncio.run(main())\n"
    )
    before = connections()
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
        assert connections() == before + 1
        proc.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        while connections() > before and time.monotonic() - frozen < 30:
            time.sleep(0.2)
        dropped_after = time.monotonic() - frozen
        print(f"frozen client dropped after {dropped_after:.1f} s")
        assert connections() == before
        assert dropped_after <= 15
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()
