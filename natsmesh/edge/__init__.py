"""The mesh's edge: HTTP gateway, MCP faces and the dashboard."""
