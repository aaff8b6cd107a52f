"""The benchmark still runs (``--quick``); no timing is asserted, only that it reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_quick_prints_its_figures() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("bench: ")
    figures = dict(pair.split("=") for pair in last.removeprefix("bench: ").split())
    for name in ("raw_p50_us", "mesh_traced_p50_us", "throughput64_ratio", "scale2_speedup",
                 "discovery_ms", "collector_grpc_spans_s", "collector_http_spans_s", "cli_call_ms",
                 "tracing_cost_pct", "throughput64_ratio_untraced", "cpu64_raw_total_us",
                 "cpu64_rawhdr_total_us", "cpu64_mesh_agent_us", "cpu64_trace_server_us",
                 "python_pass_ms", "cli_ratio", "spans64_s", "collector_grpc_ratio",
                 "collector_http_ratio", "rawhdr_p50_us", "cli_cpu_ratio"):  # fmt: skip
        assert float(figures[name]) > 0 or name == "tracing_cost_pct", name
    # every process of a call spends some CPU on it
    for mode in ("raw", "rawhdr", "mesh", "trace"):
        for role in ("caller", "agent", "server"):
            assert float(figures[f"cpu64_{mode}_{role}_us"]) > 0, (mode, role)
