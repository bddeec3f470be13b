"""A multi-service, multi-agent system: gateway (FastAPI), researcher (Flask), tools (MCP), writer
(Celery). Every request becomes one distributed trace. Start it with ``plyra-trace demo``."""
