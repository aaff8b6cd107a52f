"""Agent worker processes and the embedded nats-server: spawn, pid files, logs, stop."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from natsmesh.config import Settings
from natsmesh.server import ServerError, healthy, pid_alive, start_server, stop_pid

SERVER_PID_FILE = "nats-server.json"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


@dataclasses.dataclass(frozen=True)
class AgentProcess:
    """A detached worker, as its pid file records it."""

    pid: int
    agent: str
    file: str
    pid_file: Path


def pids_dir(settings: Settings) -> Path:
    path = settings.home_path / "pids"
    path.mkdir(parents=True, exist_ok=True)
    return path


def logs_dir(settings: Settings) -> Path:
    path = settings.home_path / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_file(settings: Settings, agent: str) -> Path:
    """Where a detached agent's output goes."""
    return logs_dir(settings) / f"{agent}.log"


def reachable(url: str, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at a ``nats://host:port`` URL."""
    parsed = urlparse(url if "://" in url else f"nats://{url}")
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 4222), timeout
        ):
            return True
    except OSError:
        return False


def ensure_nats(settings: Settings) -> str | None:
    """Start the embedded nats-server when nothing answers at a local NATS_URL.

    Returns a sentence saying what was started, or ``None`` when a server was already there.
    Raises :class:`ServerError` when the URL is remote and unreachable.
    """
    urls = settings.servers()
    if any(reachable(u) for u in urls):
        return None
    parsed = urlparse(urls[0] if "://" in urls[0] else f"nats://{urls[0]}")
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 4222
    if host not in LOCAL_HOSTS:
        raise ServerError(f"no NATS server answers at {settings.nats_url}")
    store = settings.home_path / "nats"
    server = start_server(
        store, host=host, port=port, detach=True, log_file=logs_dir(settings) / "nats-server.log"
    )
    record = {
        "pid": server.pid,
        "url": server.url,
        "monitor": server.monitor_url,
        "store": str(store),
    }
    (settings.home_path / SERVER_PID_FILE).write_text(json.dumps(record))
    return (
        f"started an embedded nats-server with JetStream at {server.url} "
        f"(pid {server.pid}, data in {store}, stop it with `natsmesh stop`)"
    )


def stop_embedded_server(settings: Settings) -> int | None:
    """Stop the nats-server that ``ensure_nats`` started; its pid, or ``None`` if none ran."""
    path = settings.home_path / SERVER_PID_FILE
    if not path.is_file():
        return None
    try:
        pid = int(json.loads(path.read_text())["pid"])
    except (ValueError, KeyError):
        path.unlink()
        return None
    stop_pid(pid)
    path.unlink(missing_ok=True)
    return pid


def embedded_server(settings: Settings) -> dict[str, str] | None:
    """The embedded server's record while it runs."""
    path = settings.home_path / SERVER_PID_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return None
    if not pid_alive(int(record["pid"])):
        return None
    record["healthy"] = str(healthy(record.get("monitor", "")))
    return record


def worker_command(path: Path) -> list[str]:
    return [sys.executable, "-m", "natsmesh.worker", str(path.resolve())]


def worker_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The parent's environment plus the mesh settings, for a worker process."""
    env = dict(os.environ)
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings.environment())
    env.update(extra or {})
    return env


def spawn_detached(settings: Settings, path: Path, agent: str) -> AgentProcess:
    """Start a worker in its own session, its output appended to the agent's log file."""
    with open(log_file(settings, agent), "ab") as out:
        proc = subprocess.Popen(
            worker_command(path),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=worker_env(settings),
            start_new_session=True,
        )
    pid_file = pids_dir(settings) / f"{agent}.{proc.pid}.json"
    pid_file.write_text(json.dumps({"pid": proc.pid, "agent": agent, "file": str(path.resolve())}))
    return AgentProcess(proc.pid, agent, str(path), pid_file)


def detached_agents(settings: Settings, agent: str | None = None) -> list[AgentProcess]:
    """The detached workers whose pid files say they run (stale files are removed)."""
    out = []
    for pid_file in sorted(pids_dir(settings).glob("*.json")):
        try:
            record = json.loads(pid_file.read_text())
            proc = AgentProcess(int(record["pid"]), record["agent"], record["file"], pid_file)
        except (ValueError, KeyError):
            pid_file.unlink(missing_ok=True)
            continue
        if not pid_alive(proc.pid):
            pid_file.unlink(missing_ok=True)
            continue
        if agent is None or proc.agent == agent:
            out.append(proc)
    return out


def stop_agents(
    settings: Settings, agent: str | None = None, timeout: float = 15.0
) -> list[AgentProcess]:
    """SIGTERM detached workers (all, or one agent's) and wait until they have stopped."""
    procs = detached_agents(settings, agent)
    for proc in procs:  # all at once, so they stop in parallel
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        stop_pid(proc.pid, max(0.0, deadline - time.monotonic()))
        proc.pid_file.unlink(missing_ok=True)
    return procs
