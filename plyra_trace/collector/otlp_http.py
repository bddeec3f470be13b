"""POST /v1/traces: OTLP/HTTP in protobuf or JSON (optionally gzip), acknowledged after commit;
POST /v1/live takes records of spans still running the same way (sent by the plyra SDK).

Bodies are held against the in-flight budget (``backpressure.py``): a declared Content-Length is
checked before a byte is read, a streamed body chunk by chunk, an inflated body by its new size;
past the budget the answer is 503 with ``Retry-After``, and the rest of the body is read and dropped
(never kept) so the sender sees the answer.
"""

from __future__ import annotations

import asyncio
import json
from typing import Final

from google.protobuf.json_format import MessageToJson  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from plyra_trace._version import VERSION
from plyra_trace.collector.backpressure import THROTTLED_REASON, InflightBudget
from plyra_trace.collector.ingest import JSON, PROTOBUF, IngestError, decode, inflate, media_type
from plyra_trace.collector.model import SpanRecord
from plyra_trace.collector.normalise import Normalised, mark_running
from plyra_trace.collector.runtime import Runtime

IDENTITY: Final = {"x-plyra-collector": VERSION}
"""Names this collector in every OTLP answer: the SDK turns live spans on when it sees it."""


class _Throttled(Exception):
    """The in-flight budget is spent: answer 503 + Retry-After."""


class _Hold:
    """Bytes one request holds from the budget; grows as the body arrives."""

    def __init__(self, budget: InflightBudget) -> None:
        self.budget = budget
        self.size = 0
        self.complete = False  # the whole body has been received

    def grow_to(self, size: int) -> None:
        if size > self.size:
            if not self.budget.take(size - self.size, mine=self.size):
                raise _Throttled
            self.size = size


async def export_traces(request: Request) -> Response:
    """Decode, normalise and store one OTLP export; answer with OTLP's (partial) success."""
    return await _ingest(request, live=False)


async def export_live(request: Request) -> Response:
    """Live records of spans still open (OTLP spans without an end time), sent by the plyra SDK
    while they run; stored apart from finished spans, which always replace them."""
    return await _ingest(request, live=True)


async def _ingest(request: Request, live: bool) -> Response:
    runtime: Runtime = request.app.state.runtime
    hold = _Hold(runtime.budget)
    try:
        return await _export(request, runtime, hold, live)
    except _Throttled:
        runtime.budget.give_back(hold.size)
        hold.size = 0
        if not hold.complete:
            await _discard_rest(request, runtime.config.max_body_bytes)
        return _throttled(runtime)
    finally:
        runtime.budget.give_back(hold.size)


async def _export(request: Request, runtime: Runtime, hold: _Hold, live: bool) -> Response:
    kind = media_type(request.headers.get("content-type"))
    try:
        if kind not in (PROTOBUF, JSON):
            shown = kind or "(none)"
            raise IngestError(415, f"unsupported content-type {shown!r}; use {PROTOBUF} or {JSON}")
        limit = runtime.config.max_body_bytes
        body = await _read_body(request, limit, hold)
        body = inflate(body, request.headers.get("content-encoding"), limit)
        hold.grow_to(len(body))
        export = decode(body, kind, limit)
    except IngestError as error:
        return _error(error.status, error.reason)
    except ClientDisconnect:
        return _error(400, "client disconnected before the body was complete")
    outcome: list[Normalised] = []

    def _prepare() -> list[SpanRecord]:
        outcome.append(runtime.normaliser.request(export))
        if live:
            mark_running(outcome[0].spans)
        return outcome[0].spans

    future = runtime.writer.submit(_prepare)
    # The writer holds the body until it commits, even if this request is cancelled meanwhile.
    runtime.budget.give_back_when_done(future, hold.size)
    hold.size = 0
    try:
        await asyncio.wrap_future(future)
    except Exception:
        return _error(503, "storage unavailable; retry later")
    normalised = outcome[0]
    reply = ExportTraceServiceResponse()
    if normalised.rejected:
        reply.partial_success.rejected_spans = normalised.rejected
        reply.partial_success.error_message = normalised.message
    if kind == JSON:
        return Response(MessageToJson(reply, indent=None), media_type=JSON, headers=IDENTITY)
    return Response(reply.SerializeToString(), media_type=PROTOBUF, headers=IDENTITY)


async def _read_body(request: Request, limit: int, hold: _Hold) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise IngestError(400, "invalid content-length") from None
        if size > limit:
            raise IngestError(413, f"body of {declared} bytes is over the {limit}-byte limit")
        hold.grow_to(size)
    chunks: list[bytes] = []
    size = 0
    while not hold.complete:
        message = await request.receive()
        if message["type"] != "http.request":
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        hold.complete = not message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise IngestError(413, f"body is over the {limit}-byte limit")
        hold.grow_to(size)
        chunks.append(chunk)
    return b"".join(chunks)


async def _discard_rest(request: Request, limit: int) -> None:
    """Read and drop what is left of a refused body (never kept), so the sender, still writing
    it, reads the 503 instead of a reset connection; past ``limit`` bytes the server closes."""
    dropped = 0
    while dropped <= limit:
        message = await request.receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        dropped += len(message.get("body", b""))


def _throttled(runtime: Runtime) -> Response:
    """OTLP's throttling answer."""
    response = _error(503, THROTTLED_REASON)
    response.headers["retry-after"] = str(runtime.config.retry_after_seconds)
    return response


def _error(status: int, reason: str) -> Response:
    body = json.dumps({"code": status, "message": reason}, ensure_ascii=True)
    return Response(body, status_code=status, media_type=JSON)
