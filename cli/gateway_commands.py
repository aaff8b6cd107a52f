"""``natsmesh gateway``, and the gateway process that ``natsmesh start --gateway`` runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from typing import Any

import typer
from natsmesh_cli.options import settings as cli_settings
from natsmesh_cli.output import fail, info

GATEWAY = "gateway"
_COMMAND = [sys.executable, "-m", "natsmesh_cli.app", GATEWAY]


def gateway_command(
    host: str = typer.Option(
        None,
        "--host",
        help="Address to bind ($NATSMESH_GATEWAY_HOST); default 127.0.0.1 without tokens, "
        "0.0.0.0 with them.",
    ),
    port: int = typer.Option(
        None, "--port", "-p", help="Port ($NATSMESH_GATEWAY_PORT, default 8080; 0 picks one)."
    ),
    token: list[str] = typer.Option(
        None,
        "--token",
        help="Bearer token clients must send; repeat for several "
        "($NATSMESH_GATEWAY_TOKENS, comma-separated).",
    ),
    cors_origin: list[str] = typer.Option(
        None,
        "--cors-origin",
        help="Browser origin allowed to call the gateway (CORS), e.g. https://app.example; "
        "repeat for several ($NATSMESH_GATEWAY_CORS_ORIGINS, comma-separated; * for any).",
    ),
    max_body: int = typer.Option(
        None,
        "--max-body",
        help="Largest request body in bytes ($NATSMESH_GATEWAY_MAX_BODY; default: the NATS "
        "server's max payload).",
    ),
) -> None:
    """Serve the mesh over HTTP: /tools, /tools/NAME, /openapi.json, SSE, /healthz, /readyz."""
    import asyncio
    import signal

    from natsmesh.edge.gateway import GatewayConfig
    from natsmesh.edge.serving import serve
    from natsmesh.errors import MeshError
    from natsmesh.ops.processes import ensure_nats
    from natsmesh.ops.server import ServerError
    from natsmesh.runtime import event_loop_runner
    from natsmesh.worker import setup_logging

    settings = cli_settings()
    setup_logging(settings.debug)
    try:
        config = GatewayConfig.from_env(
            host=host,
            port=port,
            tokens=token or (),
            cors_origins=cors_origin or (),
            max_body=max_body,
        )
    except ValueError as exc:
        fail(f"bad gateway setting: {exc}", 2)
    try:
        started = ensure_nats(settings)
    except ServerError as exc:
        fail(str(exc))
    if started:
        info(f"natsmesh: {started}")

    def ready(url: str) -> None:
        print(f"gateway: {url} (tools: {url}/tools, OpenAPI: {url}/openapi.json)", flush=True)
        if not config.tokens:
            where = (
                "only this machine can reach it"
                if config.bind_host in ("127.0.0.1", "localhost", "::1")
                else "ANYONE who can reach this address can call every tool"
            )
            print(
                f"gateway: no tokens configured, so {where}; set --token or "
                "NATSMESH_GATEWAY_TOKENS to require `Authorization: Bearer <token>`",
                flush=True,
            )

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, config, ready, stop)

    try:
        with event_loop_runner() as runner:
            runner.run(go())
    except MeshError as exc:
        fail(exc.message)
    except OSError as exc:
        fail(f"cannot serve on {config.bind_host}:{config.port}: {exc.strerror or exc}")


def gateway_process(settings: Any) -> subprocess.Popen[bytes]:
    """Start ``natsmesh gateway`` as a child of ``natsmesh start`` in the foreground
    (options from the ``NATSMESH_GATEWAY_*`` environment); its lines are printed with a
    ``[gateway]`` prefix."""
    from natsmesh.ops.processes import worker_env

    proc = subprocess.Popen(
        _COMMAND, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=worker_env(settings)
    )
    threading.Thread(target=_pump, args=(proc,), daemon=True).start()
    return proc


def _pump(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    for line in iter(proc.stdout.readline, b""):
        sys.stdout.write(f"[{GATEWAY}] {line.decode(errors='replace')}")
        sys.stdout.flush()


class _Started:
    """A detached process we started (not our child to wait on any more)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def alive(self) -> bool:
        try:
            waited, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return waited == 0


def start_detached(settings: Any, timeout: float = 20) -> None:
    """Start the gateway in the background for ``natsmesh start -d --gateway``: its output
    goes to the ``gateway`` log and a pid file lets ``natsmesh stop`` stop it. Waits until
    it serves (its log says where) and prints the address."""
    from natsmesh.ops.processes import log_file, spawn_process

    log = log_file(settings, GATEWAY)
    offset = log.stat().st_size if log.exists() else 0
    started = spawn_process(settings, _COMMAND, GATEWAY)
    proc = _Started(started.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.alive():
        with open(log, "rb") as f:
            f.seek(offset)
            served = re.search(rb"^gateway: (http://\S+)", f.read(), re.MULTILINE)
        if served:
            url = served.group(1).decode()
            print(f"✓ {GATEWAY:<20} pid {proc.pid:<8} {url}  logs: {log}")
            return
        time.sleep(0.1)
    fail(f"the gateway did not start; see `natsmesh logs {GATEWAY}`")


def stop_foreground(proc: subprocess.Popen[bytes]) -> None:
    """Stop a gateway that ``natsmesh start --gateway`` runs in the foreground."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
