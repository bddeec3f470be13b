"""OTLP/gRPC ingest (needs the ``grpc`` extra): the same normaliser and writer as OTLP/HTTP."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from plyra_trace.collector.auth import token_from, verify
from plyra_trace.collector.runtime import Runtime


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    """TraceService/Export: acknowledged only after the spans are committed."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def Export(  # the generated service's method name
        self, request: ExportTraceServiceRequest, context: Any
    ) -> ExportTraceServiceResponse:
        metadata = {key.lower(): value for key, value in context.invocation_metadata()}
        token = token_from(metadata.get("authorization"), metadata.get("x-api-key"))
        required = self._runtime.config.require_keys
        if (token is not None or required) and (
            token is None or not verify(self._runtime.storage, token)
        ):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid API key is required")
        normalised = self._runtime.normaliser.request(request)
        try:
            self._runtime.writer.submit(normalised.spans).result(timeout=60)
        except Exception:
            context.abort(grpc.StatusCode.UNAVAILABLE, "storage unavailable; retry later")
        reply = ExportTraceServiceResponse()
        if normalised.rejected:
            reply.partial_success.rejected_spans = normalised.rejected
            reply.partial_success.error_message = normalised.message
        return reply


def start_grpc(runtime: Runtime, host: str, port: int) -> Any:
    """Start a gRPC server for OTLP traces on host:port; returns it (call ``stop`` to end)."""
    limit = runtime.config.max_body_bytes
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="plyra-grpc"),
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ],
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        _TraceService(runtime), server
    )
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"could not bind gRPC on {host}:{port}")
    server.start()
    return server
