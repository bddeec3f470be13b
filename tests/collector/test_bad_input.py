"""Bad input gets a clear 400/413/415 and leaves the collector working for everyone else."""

from __future__ import annotations

import gzip
import zlib

import pytest

from tests.collector.conftest import make_request, make_span, start_collector, stop_collector, tid

PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}


@pytest.fixture
def small(tmp_path):
    running = start_collector(tmp_path, max_body_bytes=64 * 1024)
    yield running
    stop_collector(running)


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (b"\x0a\xff\xff\xff\xff\x0f", PROTOBUF, 400, "malformed protobuf"),
        (b"{not json", JSON, 400, "malformed JSON"),
        (b"[1, 2]", JSON, 400, "must be an object"),
        (b'{"resourceSpans": 5}', JSON, 400, "malformed OTLP JSON"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            JSON,
            400,
            "not hex",
        ),
        (b'{"resourceSpans": [{"resource": {"attributes": 3}}]}', JSON, 400, "OTLP JSON"),
        (b"{}", {"content-type": "text/plain"}, 415, "unsupported content-type"),
        (b"{}", {}, 415, "unsupported content-type"),
        (b"{}", {**JSON, "content-encoding": "br"}, 415, "content-encoding"),
        (b"not gzip at all", {**PROTOBUF, "content-encoding": "gzip"}, 400, "not valid gzip"),
        (gzip.compress(b"x" * 1000)[:-12], {**PROTOBUF, "content-encoding": "gzip"}, 400, "trunc"),
    ],
)
def test_malformed_bodies_are_refused_with_the_reason(small, body, headers, status, reason):
    response = small.api.post("/v1/traces", content=body, headers=headers)
    assert response.status_code == status
    assert reason in response.json()["message"]


def test_body_over_the_limit_is_413(small):
    response = small.api.post("/v1/traces", content=b"\x00" * (65 * 1024), headers=PROTOBUF)
    assert response.status_code == 413


def test_chunked_body_over_the_limit_is_413(small):
    def chunks():
        for _ in range(100):
            yield b"\x00" * 1024

    response = small.api.post("/v1/traces", content=chunks(), headers=PROTOBUF)
    assert response.status_code == 413


def test_gzip_bomb_is_413(small):
    bomb = gzip.compress(b"\x00" * (50 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 64 * 1024
    response = small.api.post(
        "/v1/traces", content=bomb, headers={**PROTOBUF, "content-encoding": "gzip"}
    )
    assert response.status_code == 413
    assert "inflates past" in response.json()["message"]


def test_deflate_is_accepted(small):
    body = zlib.compress(make_request([make_span(61, 1, "deflated")]).SerializeToString())
    response = small.api.post(
        "/v1/traces", content=body, headers={**PROTOBUF, "content-encoding": "deflate"}
    )
    assert response.status_code == 200


def test_collector_keeps_working_after_bad_input(small):
    for _ in range(3):
        small.api.post("/v1/traces", content=b"\xff" * 100, headers=PROTOBUF)
        small.api.post("/v1/traces", content=b"[", headers=JSON)
    small.send(make_span(62, 1, "after-the-storm"))
    assert small.trace(tid(62))["root_name"] == "after-the-storm"
    assert small.get("/api/v1/health")["spans"] == 1


def test_oversized_attribute_values_are_truncated(small):
    huge = "x" * 25_000
    small.send(make_span(63, 1, "big", note=huge, input__value=huge))
    span = small.get(f"/api/v1/traces/{tid(63)}/spans/{'00' * 7}01")
    assert len(span["attributes"]["note"]) == small.config.max_attribute_chars
    assert span["input_value"] == huge  # input/output keep more and live apart


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/api/v1/traces?limit=0", "limit"),
        ("/api/v1/traces?limit=abc", "limit"),
        ("/api/v1/traces?cursor=not-a-cursor", "cursor"),
        ("/api/v1/traces?status=maybe", "status"),
        ("/api/v1/traces?since=yesterday", "since"),
        ("/api/v1/traces?last=5 weeks", "last"),
        ("/api/v1/cost?by=planet", "by"),
        ("/api/v1/flamegraph", "root_name"),
        ("/api/v1/traces/not-hex", "hex"),
        ("/api/v1/traces/00000000000000000000000000000001/flamegraph?weight=mass", "weight"),
        ("/api/v1/traces/0000000000000001", "32 hex"),  # a span id is no trace id
        (f"/api/v1/traces/{tid(1)}/spans/{tid(1)}", "16 hex"),
        ("/api/v1/traces?limit=", "limit"),  # a typed parameter left empty is malformed
        ("/api/v1/traces?limit=%D9%A3", "limit"),  # an Arabic-Indic 3: digits are ASCII
        ("/api/v1/traces?min_cost=nan", "min_cost"),
        ("/api/v1/traces?min_duration_ms=1e999", "finite"),
        ("/api/v1/traces?since=2026-01-01", "since"),  # RFC 3339 needs a time and an offset
        ("/api/v1/traces?since=2026-13-01T00:00:00Z", "since"),
        ("/api/v1/cost?by=", "by"),
        ("/api/v1/flamegraph?root_name=&agent=", "root_name"),
    ],
)
def test_bad_query_parameters_are_400(small, path, reason):
    response = small.api.get(path)
    assert response.status_code == 400
    assert reason in response.json()["error"]


@pytest.mark.parametrize(
    "query",
    [
        "last=99999999999999999999999d",  # clamped to the oldest time a column can hold
        "since=-99999999999999999999999&until=99999999999999999999999",
        "min_duration_ms=1e300",
        "since=2016-12-31T23:59:60Z",  # a leap second
        "since=0001-01-01T00:00:00%2B01:00",
        "q=&service=&status=error",  # empty free text is the same as none
    ],
)
def test_extreme_but_valid_parameters_are_answered(small, query):
    response = small.api.get(f"/api/v1/traces?{query}")
    assert response.status_code == 200, response.text


def test_unknown_routes_and_methods_answer_json(small):
    missing = small.api.get("/api/v1/nothing-here")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found"})
    wrong = small.api.delete("/api/v1/traces")
    assert wrong.status_code == 405 and "GET" in wrong.headers["allow"]
    assert wrong.json() == {"error": "Method Not Allowed"}


def test_unknown_trace_and_span_are_404(small):
    assert small.api.get(f"/api/v1/traces/{tid(999)}").status_code == 404
    assert small.api.get(f"/api/v1/traces/{tid(999)}/spans/{'0' * 16}").status_code == 404
    assert small.api.get(f"/api/v1/traces/{tid(999)}/flamegraph").status_code == 404
