"""OTLP/gRPC ingest (needs the ``grpc`` extra): the same normaliser and writer as OTLP/HTTP.

The request arrives as bytes, so the in-flight budget is checked before it is parsed; past the
budget the answer is ``UNAVAILABLE`` with a ``google.rpc.RetryInfo`` in the status details (and
in ``google.rpc.retryinfo-bin``, which OpenTelemetry's exporters read).
"""

from __future__ import annotations

from concurrent import futures
from typing import Any, NoReturn

import grpc
from google.protobuf.any_pb2 import Any as AnyMessage  # type: ignore[import-untyped]
from google.protobuf.duration_pb2 import Duration  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from plyra_trace.collector.auth import token_from
from plyra_trace.collector.backpressure import THROTTLED_REASON
from plyra_trace.collector.runtime import Runtime

_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


class _TraceService:
    """TraceService/Export: acknowledged only after the spans are committed."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def export(self, body: bytes, context: Any) -> ExportTraceServiceResponse:
        """One Export call; ``body`` is the serialized request."""
        runtime = self._runtime
        metadata = {key.lower(): value for key, value in context.invocation_metadata()}
        token = token_from(metadata.get("authorization"), metadata.get("x-api-key"))
        try:
            allowed = runtime.keys.allows(token)
        except Exception:
            context.abort(grpc.StatusCode.UNAVAILABLE, "storage unavailable; retry later")
        if not allowed:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid API key is required")
        if not runtime.budget.take(len(body)):
            _throttle(context, runtime.config.retry_after_seconds)
        try:
            request = ExportTraceServiceRequest.FromString(body)
        except DecodeError:
            runtime.budget.give_back(len(body))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed ExportTraceServiceRequest")
        normalised = runtime.normaliser.request(request)
        future = runtime.writer.submit(normalised.spans)
        runtime.budget.give_back_when_done(future, len(body))
        try:
            future.result(timeout=60)
        except Exception:
            context.abort(grpc.StatusCode.UNAVAILABLE, "storage unavailable; retry later")
        reply = ExportTraceServiceResponse()
        if normalised.rejected:
            reply.partial_success.rejected_spans = normalised.rejected
            reply.partial_success.error_message = normalised.message
        return reply


def _throttle(context: Any, seconds: int) -> NoReturn:
    """OTLP's throttling answer: UNAVAILABLE carrying how long to wait."""
    info = error_details_pb2.RetryInfo(retry_delay=Duration(seconds=seconds))
    detail = AnyMessage()
    detail.Pack(info)
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=THROTTLED_REASON)
    status.details.append(detail)
    context.set_trailing_metadata(
        (
            ("grpc-status-details-bin", status.SerializeToString()),
            ("google.rpc.retryinfo-bin", info.SerializeToString()),
        )
    )
    context.abort(grpc.StatusCode.UNAVAILABLE, THROTTLED_REASON)
    raise AssertionError("unreachable: abort raises")


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
    export = grpc.unary_unary_rpc_method_handler(
        _TraceService(runtime).export,
        request_deserializer=None,  # bytes: sized against the budget before parsing
        response_serializer=ExportTraceServiceResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(_SERVICE, {"Export": export}),)
    )
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"could not bind gRPC on {host}:{port}")
    server.start()
    return server
