"""Running agents in this process: ``python -m natsmesh.worker FILE`` and ``natsmesh.run()``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from natsmesh.config import Settings
from natsmesh.loader import LoadedAgent, collect, load_file
from natsmesh.records import RecordError
from natsmesh.runtime import Runtime, event_loop_runner


def setup_logging(debug: bool = False) -> None:
    """Log lines with time, level and logger name to stderr."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("nats", "LiteLLM", "litellm", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def serve(loaded: LoadedAgent, settings: Settings | None = None) -> None:
    """Serve one agent until SIGINT or SIGTERM."""
    settings = settings or Settings.from_env()
    setup_logging(settings.debug)
    runtime: Any
    if loaded.mcp is not None:
        from natsmesh.edge.mcp_bridge import McpAgent

        runtime = McpAgent(loaded.mcp, settings)
    else:
        runtime = Runtime(loaded.agent, loaded.tools, settings)
    with event_loop_runner() as runner:
        try:
            runner.run(runtime.serve_forever())
        except KeyboardInterrupt:
            pass
        except RecordError as exc:
            print(f"natsmesh: {loaded.agent.name} cannot register: {exc}", file=sys.stderr)
            raise SystemExit(1) from None


def run(module_name: str = "__main__") -> None:
    """Serve the agent defined in ``module_name``; end an agent file with ``mesh.run()``."""
    module = sys.modules[module_name]
    serve(collect(module, Path(getattr(module, "__file__", module_name))))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m natsmesh.worker AGENT_FILE", file=sys.stderr)
        return 2
    try:
        loaded = load_file(args[0])
    except Exception as exc:
        print(f"natsmesh: cannot load {args[0]}: {exc}", file=sys.stderr)
        return 1
    serve(loaded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
