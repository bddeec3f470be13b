"""API keys: CLI create/list/revoke, required on public binds, checked whenever presented."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import plyra_trace
from plyra_trace.__main__ import main
from tests.collector.conftest import make_request, make_span, start_collector, stop_collector, tid

PROTOBUF = {"content-type": "application/x-protobuf"}


def _create_key(capsys, db, name="ci"):
    assert main(["keys", "--db", str(db), "create", "--name", name]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    key_id = lines[0].split()[2]
    return key_id, lines[-1]


def test_keys_cli_stores_only_a_hash(capsys, tmp_path):
    db = tmp_path / "keys.db"
    key_id, token = _create_key(capsys, db, "ingest")
    assert token.startswith(f"pt_{key_id}_")
    assert main(["keys", "--db", str(db), "list"]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "active" in listing and "ingest" in listing
    assert token not in listing
    stored = sqlite3.connect(db).execute("SELECT * FROM api_keys").fetchall()
    assert token not in repr(stored) and token.split("_", 2)[2] not in repr(stored)
    assert main(["keys", "--db", str(db), "revoke", key_id]) == 0
    capsys.readouterr()
    assert main(["keys", "--db", str(db), "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "--db", str(db), "revoke", key_id]) == 1


@pytest.fixture
def secured(tmp_path, capsys, db):
    key_id, token = _create_key(capsys, db)
    running = start_collector(tmp_path, db=db, require_keys=True)
    yield running, key_id, token
    stop_collector(running)


def test_required_keys_guard_ingest_and_api(secured):
    running, _, token = secured
    body = make_request([make_span(300, 1, "guarded")]).SerializeToString()
    post = lambda headers: running.api.post("/v1/traces", content=body, headers=headers)  # noqa: E731
    assert post(PROTOBUF).status_code == 401
    assert post({**PROTOBUF, "authorization": "Bearer pt_nope_nope"}).status_code == 401
    assert post({**PROTOBUF, "authorization": f"Bearer {token}x"}).status_code == 401
    assert post({**PROTOBUF, "authorization": f"Bearer {token}"}).status_code == 200
    assert post({**PROTOBUF, "x-api-key": token}).status_code == 200
    assert running.api.get("/api/v1/traces").status_code == 401
    listed = running.api.get("/api/v1/traces", headers={"authorization": f"Bearer {token}"})
    assert listed.status_code == 200
    assert listed.json()["items"][0]["trace_id"] == tid(300)
    assert running.api.get("/").status_code == 200  # the UI page itself is public
    stream = f"{running.url}/api/v1/stream"
    with httpx.stream("GET", stream, headers={"x-api-key": token}, timeout=5) as r:
        assert r.status_code == 200
        assert next(r.iter_lines()) == "event: ready"
    with httpx.stream("GET", stream, timeout=5) as r:
        assert r.status_code == 401
    with httpx.stream("GET", f"{stream}?api_key={token}", timeout=5) as r:
        assert r.status_code == 401  # keys never travel in URLs


def test_sdk_api_key_reaches_a_secured_collector(secured):
    running, _, token = secured
    handle = plyra_trace.init("keyed", endpoint=running.url, api_key=token, batch=False)

    @plyra_trace.agent(name="keyed-agent")
    def work() -> int:
        return 1

    work()
    handle.shutdown()
    page = running.api.get("/api/v1/traces", headers={"x-api-key": token}).json()
    assert [item["agents"] for item in page["items"]] == [["keyed-agent"]]


def test_revoked_key_is_refused(secured, capsys):
    running, key_id, token = secured
    assert main(["keys", "--db", running.db, "revoke", key_id]) == 0
    response = running.api.get("/api/v1/traces", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_grpc_checks_keys(tmp_path, capsys):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    _, token = _create_key(capsys, tmp_path / "collector.db")
    running = start_collector(tmp_path, grpc=True, require_keys=True)
    try:
        for headers, name in (
            ((), "anonymous"),
            ((("authorization", f"Bearer {token}"),), "keyed"),
        ):
            exporter = OTLPSpanExporter(
                endpoint=f"127.0.0.1:{running.grpc_port}", insecure=True, headers=headers
            )
            provider = TracerProvider(resource=Resource.create({"service.name": "g"}))
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            with provider.get_tracer("t").start_as_current_span(name):
                pass
            provider.shutdown()
        page = running.api.get("/api/v1/traces", headers={"x-api-key": token}).json()
        assert [item["root_name"] for item in page["items"]] == ["keyed"]
    finally:
        stop_collector(running)


def test_on_loopback_keys_are_optional_but_checked_when_given(collector):
    body = make_request([make_span(301, 1, "open")]).SerializeToString()
    assert collector.api.post("/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    wrong = {**PROTOBUF, "authorization": "Bearer pt_abc_def"}
    assert collector.api.post("/v1/traces", content=body, headers=wrong).status_code == 401
