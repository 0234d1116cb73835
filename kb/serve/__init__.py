"""The HTTP API (FastAPI) and the MCP server over one index: JSON shapes, the service both call, auth, limits."""
