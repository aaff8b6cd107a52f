"""``natsmesh start``, ``stop`` and ``logs``."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import typer
from natsmesh_cli.options import settings as cli_settings
from natsmesh_cli.output import fail, info


def _load_all(paths: list[Path]) -> list[tuple[Path, str]]:
    from natsmesh.loader import find_agent_files, load_file

    out = []
    for path in paths:
        try:
            files = find_agent_files(path)
        except FileNotFoundError as exc:
            fail(str(exc))
        for file in files:
            try:
                out.append((file, load_file(file).agent.name))
            except Exception as exc:
                fail(f"cannot load {file}: {exc}")
    return out


async def _wait_registered(settings: Any, names: list[str], timeout: float) -> set[str]:
    from natsmesh.errors import MeshError
    from natsmesh.session import connect

    try:
        async with connect(settings, caller="cli", reconnect=False) as mesh:
            return await _registered(mesh, names, timeout)
    except MeshError as exc:
        fail(f"{exc.message}; the agents were started, see `natsmesh logs AGENT`")


async def _registered(mesh: Any, names: list[str], timeout: float) -> set[str]:
    def ready(view: Any) -> bool:
        return set(names) <= {r.name for r in view.records.values()}

    try:
        await mesh.view.wait_for(ready, timeout)
    except TimeoutError:
        pass
    return {r.name for r in mesh.view.records.values()}


def start_command(
    paths: list[Path] = typer.Argument(..., help="Agent files, or folders of agents."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background."),
    watch: bool = typer.Option(
        False, "--watch", "-w", help="Restart an agent when its file changes."
    ),
    no_tracing: bool = typer.Option(False, "--no-tracing", help="Publish no spans."),
    gateway: bool = typer.Option(
        False, "--gateway", help="Also serve the HTTP gateway (options: NATSMESH_GATEWAY_*)."
    ),
) -> None:
    """Run agents as worker processes; starts an embedded nats-server when none answers."""
    from natsmesh.ops.processes import ensure_nats
    from natsmesh.ops.server import ServerError

    settings = cli_settings(tracing=False if no_tracing else None)
    agents = _load_all(paths)
    try:
        started = ensure_nats(settings)
    except ServerError as exc:
        fail(str(exc))
    if started:
        info(f"natsmesh: {started}")
    if detach:
        if watch:
            fail("--watch runs in the foreground; drop -d to use it", 2)
        _start_detached(settings, agents)
        if gateway:
            from natsmesh_cli.gateway_commands import start_detached

            start_detached(settings)
    elif gateway:
        from natsmesh_cli.gateway_commands import gateway_process, stop_foreground

        proc = gateway_process(settings)
        try:
            _run_foreground(settings, agents, watch)
        finally:
            stop_foreground(proc)
    else:
        _run_foreground(settings, agents, watch)


def _start_detached(settings: Any, agents: list[tuple[Path, str]]) -> None:
    from natsmesh.ops.processes import log_file, spawn_detached

    procs = [spawn_detached(settings, file, name) for file, name in agents]
    names = [name for _, name in agents]
    live = asyncio.run(_wait_registered(settings, names, 20))
    failed = False
    for proc in procs:
        ok = proc.agent in live
        failed |= not ok
        mark = "✓" if ok else "✗"
        print(f"{mark} {proc.agent:<20} pid {proc.pid:<8} logs: {log_file(settings, proc.agent)}")
    if failed:
        fail("some agents did not register within 20 s; see their logs (`natsmesh logs AGENT`)")


def _pump(proc: subprocess.Popen[bytes], name: str) -> None:
    assert proc.stdout is not None
    for line in iter(proc.stdout.readline, b""):
        sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
        sys.stdout.flush()


def _spawn(settings: Any, file: Path, name: str) -> subprocess.Popen[bytes]:
    from natsmesh.ops.processes import worker_command, worker_env

    proc = subprocess.Popen(
        worker_command(file),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=worker_env(settings),
    )
    threading.Thread(target=_pump, args=(proc, name), daemon=True).start()
    return proc


def _run_foreground(settings: Any, agents: list[tuple[Path, str]], watch: bool) -> None:
    procs = {file: _spawn(settings, file, name) for file, name in agents}
    names = dict(agents)
    mtimes = {file: file.stat().st_mtime for file in procs}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set():
            time.sleep(0.3)
            for file, proc in list(procs.items()):
                if watch and file.stat().st_mtime != mtimes[file]:
                    mtimes[file] = file.stat().st_mtime
                    info(f"natsmesh: {file} changed; restarting {names[file]}")
                    proc.terminate()
                    proc.wait()
                    procs[file] = _spawn(settings, file, names[file])
            if all(p.poll() is not None for p in procs.values()) and not watch:
                break
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=35)
            except subprocess.TimeoutExpired:
                proc.kill()


def stop_command(
    agent: str = typer.Argument(None, help="Stop only this agent (all its instances)."),
    keep_server: bool = typer.Option(
        False, "--keep-server", help="Leave the embedded nats-server running."
    ),
) -> None:
    """Stop detached agents (and the embedded nats-server when stopping all)."""
    from natsmesh.ops.processes import stop_agents, stop_embedded_server

    settings = cli_settings()
    stopped = stop_agents(settings, agent)
    for proc in stopped:
        print(f"stopped {proc.agent} (pid {proc.pid})")
    if agent is None and not keep_server:
        pid = stop_embedded_server(settings)
        if pid:
            print(f"stopped the embedded nats-server (pid {pid})")
    elif agent is not None and not stopped:
        fail(f"no detached instance of {agent!r} is running")
    if not stopped and agent is None:
        print("no detached agents were running")


def logs_command(
    agent: str = typer.Argument(..., help="Agent name."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(50, "--lines", "-n", help="How many lines to show first."),
) -> None:
    """Print a detached agent's log."""
    from natsmesh.ops.processes import log_file

    path = log_file(cli_settings(), agent)
    if not path.is_file():
        fail(f"no log for {agent!r} at {path}")
    with open(path, errors="replace") as f:
        for line in f.readlines()[-lines:]:
            sys.stdout.write(line)
        sys.stdout.flush()
        while follow:
            line = f.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.2)
