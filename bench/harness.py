"""Benchmark infrastructure: a private nats-server, agent processes, statistics, output."""

from __future__ import annotations

import dataclasses
import secrets
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from natsmesh.config import Settings
from natsmesh.ops.processes import worker_env
from natsmesh.ops.server import RunningServer, start_server, stop_pid

HERE = Path(__file__).resolve().parent
AGENTS = HERE / "agents"


@dataclasses.dataclass
class Harness:
    """Owns the nats-server and every process a benchmark starts."""

    quick: bool
    tmp: Path
    server: RunningServer
    procs: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)

    @classmethod
    def start(cls, quick: bool) -> Harness:
        tmp = Path(tempfile.mkdtemp(prefix="natsmesh-bench-"))
        return cls(quick, tmp, start_server(tmp / "nats"))

    def settings(self, tracing: bool = True, **overrides: Any) -> Settings:
        """An isolated mesh on the shared server (own prefix, bucket, stream)."""
        tag = secrets.token_hex(3)
        values: dict[str, Any] = {
            "nats_url": self.server.url,
            "prefix": f"b{tag}",
            "registry_bucket": f"bench-{tag}",
            "spans_stream": f"BENCH_{tag}",
            "tracing": tracing,
            "registry_ttl": 3.0,
        }
        values.update(overrides)
        return Settings(**values)

    def env(self, settings: Settings) -> dict[str, str]:
        return worker_env(settings)

    def agent(
        self, name: str, settings: Settings, fast_headers: bool = False, prelude: str = ""
    ) -> subprocess.Popen[bytes]:
        """Start ``bench/agents/<name>.py`` as a worker process. Experiments may run
        Python ``prelude`` first (``fast_headers``: bench/fastheaders.py's codec)."""
        if fast_headers:
            prelude += "import bench.fastheaders; bench.fastheaders.install(); "
        if prelude:
            run = "import runpy; runpy.run_module('natsmesh.worker', run_name='__main__')"
            command = [sys.executable, "-c", prelude + run]
        else:
            command = [sys.executable, "-m", "natsmesh.worker"]
        proc = subprocess.Popen(
            [*command, str(AGENTS / f"{name}.py")],
            cwd=HERE.parent,
            env=self.env(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def raw_responder(self, subject: str, *modes: str) -> subprocess.Popen[bytes]:
        """A plain nats-py echo responder (``modes``: see bench/raw_responder.py)."""
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "raw_responder.py"), self.server.url, subject, *modes],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            stop_pid(proc.pid, 10)
        proc.wait()

    def close(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        self.server.stop()


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    """p50, p90, p99 in microseconds."""
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99)}


def summarize(rounds: list[float]) -> tuple[float, float, float]:
    """Median, min and max of repeated rounds."""
    return statistics.median(rounds), min(rounds), max(rounds)


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Table:
    """Rows of (section, measure, value, baseline, ratio, spread) printed at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []
        self.figures: dict[str, float] = {}

    def add(
        self,
        section: str,
        measure: str,
        value: str,
        baseline: str = "",
        ratio: str = "",
        spread: str = "",
    ) -> None:
        self.rows.append((section, measure, value, baseline, ratio, spread))
        print(
            f"  {section:<10} {measure:<34} {value:>12} {baseline:>12} {ratio:>8} {spread}",
            flush=True,
        )

    def grid(
        self,
        section: str,
        title: str,
        columns: Sequence[str],
        rows: Sequence[tuple[str, Sequence[float]]],
        note: str = "",
    ) -> None:
        """A block of rows with several numeric columns (the CPU table)."""
        print(f"  {section:<10} {title:<34}" + "".join(f"{c:>10}" for c in columns), flush=True)
        for name, values in rows:
            cells = "".join(f"{v:>10.1f}" if v < 1000 else f"{v:>10.0f}" for v in values)
            print(f"  {section:<10} {name:<34}{cells}", flush=True)
        if note:
            print(f"  {section:<10} ({note})", flush=True)

    def figure(self, name: str, value: float) -> None:
        self.figures[name] = value

    def header(self) -> None:
        print(
            f"  {'section':<10} {'measure':<34} {'value':>12} {'baseline':>12} {'ratio':>8} spread (min-max)"
        )

    def final_line(self) -> str:
        return "bench: " + " ".join(f"{k}={v:.4g}" for k, v in self.figures.items())
