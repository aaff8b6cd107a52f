"""Run the benchmarks: ``python -m bench`` (about 3 minutes) or ``python -m bench --quick``."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from bench.harness import Harness, Table
from bench.sections import Bench


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (CI smoke test)")
    args = parser.parse_args()
    print(f"natsmesh bench ({'quick' if args.quick else 'full'}) on {machine()}", flush=True)
    harness = Harness.start(args.quick)
    table = Table()
    table.header()
    started = time.perf_counter()
    try:
        import uvloop

        uvloop.run(Bench(harness, table).run())
    finally:
        harness.close()
    print(f"  ({time.perf_counter() - started:.0f} s)")
    print(table.final_line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
