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
from typing import Any
from urllib.parse import urlparse

from natsmesh.config import Settings
from natsmesh.ops.server import ServerError, healthy, pid_alive, start_server, stop_pid

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


def probe(url: str, timeout: float = 1.0) -> str | None:
    """What answers at a ``nats://host:port`` URL: ``"nats"`` (a server that sends its
    ``INFO`` line), ``"other"`` (something that is not NATS), or ``None`` (nothing)."""
    parsed = urlparse(url if "://" in url else f"nats://{url}")
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 4222), timeout
        ) as sock:
            sock.settimeout(timeout)
            try:
                first = sock.recv(5)
            except TimeoutError:
                # it accepts, but says nothing: an HTTP server, say (or a server that
                # waits for a TLS handshake first, which only a tls:// URL can expect)
                return "nats" if parsed.scheme == "tls" else "other"
            return "nats" if first.startswith(b"INFO") else "other"
    except OSError:
        return None


def reachable(url: str, timeout: float = 0.5) -> bool:
    """True when a NATS server answers at a ``nats://host:port`` URL."""
    return probe(url, timeout) == "nats"


def process_identity(pid: int) -> tuple[int | None, str] | None:
    """``(start time in clock ticks since boot, command line)`` of a running process, or
    ``None`` when it is gone. A reused pid has another start time."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            started: int | None = int(f.read().rsplit(")", 1)[1].split()[19])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        return started, cmdline
    except FileNotFoundError:
        return None
    except (OSError, ValueError, IndexError):  # no /proc (macOS): ask ps
        try:
            out = subprocess.run(
                ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return (None, out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def same_process(record: dict[str, object], marker: str) -> bool:
    """True when the process a pid file names is still the one we started: the pid runs,
    its start time is the recorded one, and its command line contains ``marker``."""
    pid = int(str(record["pid"]))
    if not pid_alive(pid):
        return False
    identity = process_identity(pid)
    if identity is None:
        return False
    started, cmdline = identity
    recorded = record.get("started")
    if recorded is not None and started is not None and int(str(recorded)) != started:
        return False
    return marker in cmdline


def ensure_nats(settings: Settings) -> str | None:
    """Start the embedded nats-server when nothing answers at a local NATS_URL.

    Returns a sentence saying what was started, or ``None`` when a server was already there.
    Raises :class:`ServerError` when the URL is remote and unreachable.
    """
    urls = settings.servers()
    answers = [probe(u) for u in urls]
    if "nats" in answers:
        return None
    if "other" in answers:
        raise ServerError(
            f"something answers at {settings.nats_url}, but it is not a NATS server: "
            "point NATS_URL (or --server) at NATS"
        )
    parsed = urlparse(urls[0] if "://" in urls[0] else f"nats://{urls[0]}")
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 4222
    if host not in LOCAL_HOSTS:
        raise ServerError(f"no NATS server answers at {settings.nats_url}")
    store = settings.home_path / "nats"
    server = start_server(
        store, host=host, port=port, detach=True, log_file=logs_dir(settings) / "nats-server.log"
    )
    identity = process_identity(server.pid)
    record = {
        "pid": server.pid,
        "started": identity[0] if identity else None,
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
        record = json.loads(path.read_text())
        pid = int(record["pid"])
    except (ValueError, KeyError, TypeError):
        path.unlink()
        return None
    path.unlink(missing_ok=True)
    if not same_process(record, "nats-server"):
        return None  # gone, or its pid now belongs to someone else: leave that one alone
    stop_pid(pid)
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
    if not same_process(record, "nats-server"):
        return None
    record["healthy"] = str(healthy(record.get("monitor", "")))
    return record


def worker_command(path: Path) -> list[str]:
    return [sys.executable, "-m", "natsmesh.worker", str(path.resolve())]


def worker_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The parent's environment plus the mesh settings, for a worker process."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings.environment(secrets=True))
    env.update(extra or {})
    return env


def spawn_detached(settings: Settings, path: Path, agent: str) -> AgentProcess:
    """Start a worker in its own session, its output appended to the agent's log file."""
    return spawn_process(settings, worker_command(path), agent, str(path.resolve()))


def spawn_process(
    settings: Settings, command: list[str], name: str, file: str = ""
) -> AgentProcess:
    """Start ``command`` in its own session as ``name``: output appended to its log file,
    a pid file (with its start time, and the command when it runs no agent file) so that
    ``natsmesh stop`` can stop it, and only it."""
    with open(log_file(settings, name), "ab") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=worker_env(settings),
            start_new_session=True,
        )
    pid_file = pids_dir(settings) / f"{name}.{proc.pid}.json"
    identity = process_identity(proc.pid)
    record: dict[str, Any] = {
        "pid": proc.pid,
        "agent": name,
        "file": file,
        "started": identity[0] if identity else None,
    }
    if not file:
        record["command"] = " ".join(command[1:])  # how `stop` knows the pid is still ours
    pid_file.write_text(json.dumps(record))
    return AgentProcess(proc.pid, name, file, pid_file)


def detached_agents(settings: Settings, agent: str | None = None) -> list[AgentProcess]:
    """The detached workers whose pid files say they run (stale files are removed).

    A pid file is stale when its pid is gone, or runs another process now (another start
    time, or a command line that is not this agent's worker): pids are reused.
    """
    out = []
    for pid_file in sorted(pids_dir(settings).glob("*.json")):
        try:
            record = json.loads(pid_file.read_text())
            proc = AgentProcess(int(record["pid"]), record["agent"], record["file"], pid_file)
        except (ValueError, KeyError, TypeError):
            pid_file.unlink(missing_ok=True)
            continue
        # a worker's command line names its file; another process (the gateway) its command
        marker = str(record.get("command") or f"natsmesh.worker {proc.file}")
        if not same_process(record, marker):
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
