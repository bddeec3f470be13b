"""plyra-trace: OpenTelemetry-native tracing for AI agents.

Agents, tools, guards and model calls become spans with agent semantics (``plyra.span.kind``,
``agent.*``, ``agent.handoff.*``, ``guard.*``) next to OpenInference and OpenTelemetry GenAI
attributes, so any OTLP backend can read them.
"""

from plyra_trace._config import PlyraTrace, init, status
from plyra_trace._context import metadata, session, tags, user
from plyra_trace._decorators import agent, guard, llm, tool, trace
from plyra_trace._export import ExportStatus, FlushReport
from plyra_trace._guard import GuardResult
from plyra_trace._instrument import instrument, uninstrument
from plyra_trace._propagation import continue_trace, extract_context, handoff, inject_context
from plyra_trace._semconv import SpanKind
from plyra_trace._span_builder import SpanBuilder, record_llm_usage
from plyra_trace._version import VERSION as __version__
from plyra_trace.integrations.asgi import PlyraMiddleware

__all__ = [
    "ExportStatus",
    "FlushReport",
    "GuardResult",
    "PlyraMiddleware",
    "PlyraTrace",
    "SpanBuilder",
    "SpanKind",
    "__version__",
    "agent",
    "continue_trace",
    "extract_context",
    "guard",
    "handoff",
    "init",
    "inject_context",
    "instrument",
    "llm",
    "metadata",
    "record_llm_usage",
    "session",
    "status",
    "tags",
    "tool",
    "trace",
    "uninstrument",
    "user",
]
