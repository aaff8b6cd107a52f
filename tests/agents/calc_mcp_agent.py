"""A mesh agent that wraps the calc MCP server (tests/agents/calc_mcp_server.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import natsmesh as mesh

calc = mesh.mcp_server(
    name="calc-mcp",
    command=[sys.executable, str(Path(__file__).with_name("calc_mcp_server.py"))],
    tags=["math"],
)
