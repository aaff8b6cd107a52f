"""A small MCP server (the mcp SDK's MCPServer) that tests wrap as a mesh agent; stdio."""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("calc")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool(name="text.shout")
def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper() + "!"


@server.tool()
def whoami() -> dict[str, int]:
    """The process id of this MCP server."""
    return {"pid": os.getpid()}


@server.tool()
def divide(a: float, b: float) -> float:
    """Divide a by b."""
    return a / b


if __name__ == "__main__":
    server.run()
