"""POST /v1/traces: OTLP/HTTP in protobuf or JSON (optionally gzip), acknowledged after commit."""

from __future__ import annotations

import asyncio
import json

from google.protobuf.json_format import MessageToJson  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from plyra_trace.collector.ingest import JSON, PROTOBUF, IngestError, decode, inflate, media_type
from plyra_trace.collector.model import SpanRecord
from plyra_trace.collector.normalise import Normalised
from plyra_trace.collector.runtime import Runtime


async def export_traces(request: Request) -> Response:
    """Decode, normalise and store one OTLP export; answer with OTLP's (partial) success."""
    runtime: Runtime = request.app.state.runtime
    kind = media_type(request.headers.get("content-type"))
    try:
        if kind not in (PROTOBUF, JSON):
            shown = kind or "(none)"
            raise IngestError(415, f"unsupported content-type {shown!r}; use {PROTOBUF} or {JSON}")
        limit = runtime.config.max_body_bytes
        body = await _read_body(request, limit)
        body = inflate(body, request.headers.get("content-encoding"), limit)
        export = decode(body, kind, limit)
    except IngestError as error:
        return _error(error.status, error.reason)
    except ClientDisconnect:
        return _error(400, "client disconnected before the body was complete")
    outcome: list[Normalised] = []

    def _prepare() -> list[SpanRecord]:
        outcome.append(runtime.normaliser.request(export))
        return outcome[0].spans

    try:
        await asyncio.wrap_future(runtime.writer.submit(_prepare))
    except Exception:
        return _error(503, "storage unavailable; retry later")
    normalised = outcome[0]
    reply = ExportTraceServiceResponse()
    if normalised.rejected:
        reply.partial_success.rejected_spans = normalised.rejected
        reply.partial_success.error_message = normalised.message
    if kind == JSON:
        return Response(MessageToJson(reply, indent=None), media_type=JSON)
    return Response(reply.SerializeToString(), media_type=PROTOBUF)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise IngestError(413, f"body of {declared} bytes is over the {limit}-byte limit")
        except ValueError:
            raise IngestError(400, "invalid content-length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise IngestError(413, f"body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, reason: str) -> Response:
    body = json.dumps({"code": status, "message": reason}, ensure_ascii=True)
    return Response(body, status_code=status, media_type=JSON)
