"""Decode OTLP/HTTP bodies (protobuf or JSON, optionally gzip) into the generated request class.

Everything that can go wrong with a body becomes an :class:`IngestError` carrying the HTTP status to
answer with, so the server never crashes on bad input.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any, Final

from google.protobuf.json_format import ParseDict, ParseError  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
_ID_FIELDS: Final = ("traceId", "spanId", "parentSpanId")


class IngestError(Exception):
    """A request the collector refuses, with the HTTP status and the reason told to the sender."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header, lowercased (parameters dropped)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo Content-Encoding, refusing bodies that inflate past ``limit`` bytes (gzip bombs)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise IngestError(415, f"unsupported content-encoding {encoding!r}; use gzip or identity")
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise IngestError(400, f"body is not valid {encoding}: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise IngestError(413, f"body inflates past the {limit}-byte limit")
    if not inflater.eof:
        raise IngestError(400, f"{encoding} body is truncated")
    return data


def decode(body: bytes, content_type: str | None, limit: int) -> ExportTraceServiceRequest:
    """Parse an (already inflated) OTLP export body of the given Content-Type."""
    kind = media_type(content_type)
    if kind == PROTOBUF:
        return _decode_protobuf(body)
    if kind == JSON:
        return _decode_json(body)
    raise IngestError(
        415, f"unsupported content-type {kind or '(none)'!r}; use {PROTOBUF} or {JSON}"
    )


def _decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise IngestError(400, f"malformed protobuf: {exc or 'could not decode'}") from None
    return request


def _decode_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise IngestError(400, f"malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise IngestError(400, "malformed OTLP JSON: the body must be an object")
    try:
        _hex_ids_to_base64(document)
        request = ExportTraceServiceRequest()
        ParseDict(document, request, ignore_unknown_fields=True)
    except (ParseError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise IngestError(400, f"malformed OTLP JSON: {exc}") from None
    return request


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """OTLP JSON spells trace and span ids in hex; protobuf's JSON mapping expects base64 bytes."""
    for resource_spans in _objects(document.get("resourceSpans")):
        for scope_spans in _objects(resource_spans.get("scopeSpans")):
            for span in _objects(scope_spans.get("spans")):
                _convert_ids(span)
                for link in _objects(span.get("links")):
                    _convert_ids(link)


def _objects(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return [item for item in value if isinstance(item, dict)]


def _convert_ids(obj: dict[str, Any]) -> None:
    for key in _ID_FIELDS:
        value = obj.get(key)
        if not isinstance(value, str) or not value:
            continue
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"{key} {value[:40]!r} is not hex") from None
        obj[key] = base64.b64encode(raw).decode("ascii")
