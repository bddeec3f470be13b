"""Arbitrary bodies never crash decoding or normalisation: they decode or get a 4xx reason."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from plyra_trace.collector.config import CollectorConfig
from plyra_trace.collector.ingest import IngestError, decode, inflate
from plyra_trace.collector.normalise import Normaliser
from plyra_trace.collector.pricing import Pricer
from tests.collector.conftest import make_request, make_span

_NORMALISER = Normaliser(CollectorConfig(max_spans_per_request=100), Pricer())
_VALID = make_request([make_span(1, 1, "root"), make_span(1, 2, "child", parent=1)])
_VALID_BYTES = _VALID.SerializeToString()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceSpans",
                    "scopeSpans",
                    "spans",
                    "traceId",
                    "spanId",
                    "name",
                    "attributes",
                    "key",
                    "value",
                    "stringValue",
                    "intValue",
                    "kvlistValue",
                    "values",
                    "resource",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


def _accepts_or_refuses(body: bytes, content_type: str, encoding: str | None = None) -> None:
    refused: IngestError | None = None
    try:
        request = decode(inflate(body, encoding, 1 << 20), content_type, 1 << 20)
    except IngestError as error:
        refused = error
    else:
        _NORMALISER.request(request)
        return
    assert 400 <= refused.status < 500
    assert refused.reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_protobuf_bytes(body):
    _accepts_or_refuses(body, "application/x-protobuf")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_VALID_BYTES) - 1), st.integers(0, 255))
def test_corrupted_valid_protobuf(position, byte):
    body = bytearray(_VALID_BYTES)
    body[position] = byte
    _accepts_or_refuses(bytes(body), "application/x-protobuf")


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_random_json_documents(document):
    _accepts_or_refuses(json.dumps(document).encode(), "application/json")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=256))
def test_random_gzip_bodies(body):
    _accepts_or_refuses(b"\x1f\x8b" + body, "application/x-protobuf", "gzip")
