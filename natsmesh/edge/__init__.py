"""The mesh's edge: the HTTP gateway (JSON, SSE, OpenAPI), the MCP faces, the dashboard, the
FastAPI helper."""
