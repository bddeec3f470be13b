"""A collector on a shared machine: keys hold once created, the UI's session cookie, Host check."""

from __future__ import annotations

import time

import httpx
import pytest

from plyra_trace.collector.auth import SESSION_COOKIE, create_key, revoke_key
from tests.collector.conftest import make_request, make_span, start_collector, stop_collector, tid

PROTOBUF = {"content-type": "application/x-protobuf"}


def _body(trace: int) -> bytes:
    return make_request([make_span(trace, 1, "guarded")]).SerializeToString()


def _storage(collector):
    return collector._server[0].config.app.state.runtime.storage


def test_a_key_created_on_a_loopback_collector_is_then_required(collector):
    assert collector.api.post("/v1/traces", content=_body(400), headers=PROTOBUF).is_success
    _, token = create_key(_storage(collector), "late")
    # Seen within the gate's cache time, without a restart.
    collector.wait(lambda: collector.api.get("/api/v1/traces").status_code == 401, timeout=5)
    assert collector.api.post("/v1/traces", content=_body(401), headers=PROTOBUF).status_code == 401
    with httpx.stream("GET", f"{collector.url}/api/v1/stream", timeout=5) as response:
        assert response.status_code == 401
    health = collector.api.get("/api/v1/health")
    assert health.json() == {"status": "ok"}  # liveness stays public, without data
    keyed = {**PROTOBUF, "authorization": f"Bearer {token}"}
    assert collector.api.post("/v1/traces", content=_body(402), headers=keyed).is_success
    page = collector.api.get("/api/v1/traces", headers={"x-api-key": token}).json()
    assert {item["trace_id"] for item in page["items"]} == {tid(400), tid(402)}


def test_revoking_the_last_key_opens_a_loopback_collector_again(collector):
    key_id, _ = create_key(_storage(collector), "temp")
    collector.wait(lambda: collector.api.get("/api/v1/traces").status_code == 401, timeout=5)
    revoke_key(_storage(collector), key_id)
    collector.wait(lambda: collector.api.get("/api/v1/traces").status_code == 200, timeout=5)


def test_the_ui_session_cookie(collector):
    key_id, token = create_key(_storage(collector), "ui")
    api = collector.api
    collector.wait(lambda: api.get("/api/v1/traces").status_code == 401, timeout=5)
    assert api.get("/api/v1/session").json() == {"required": True, "signed_in": False}
    assert api.post("/api/v1/session", data={"key": token}).status_code == 415  # no form posts
    assert api.post("/api/v1/session", json={"key": token + "x"}).status_code == 401
    assert SESSION_COOKIE not in api.cookies
    signed = api.post("/api/v1/session", json={"key": token})
    assert signed.status_code == 200
    header = signed.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/" in header
    assert token not in header and token.rsplit("_", 1)[1] not in header
    assert api.get("/api/v1/session").json() == {"required": True, "signed_in": True}
    assert api.get("/api/v1/traces").status_code == 200
    with api.stream("GET", "/api/v1/stream") as response:
        assert response.status_code == 200
        assert next(response.iter_lines()) == "event: ready"
    # The cookie is for the UI's API calls, never for OTLP ingest.
    assert api.post("/v1/traces", content=_body(410), headers=PROTOBUF).status_code == 401
    value = api.cookies[SESSION_COOKIE]
    forged = value[:-1] + ("0" if value[-1] != "0" else "1")
    forged_headers = {"cookie": f"{SESSION_COOKIE}={forged}"}
    assert httpx.get(f"{collector.url}/api/v1/traces", headers=forged_headers).status_code == 401
    longer = value.replace(".", ".9", 1)  # a later expiry with the old signature
    longer_headers = {"cookie": f"{SESSION_COOKIE}={longer}"}
    assert httpx.get(f"{collector.url}/api/v1/traces", headers=longer_headers).status_code == 401
    assert api.delete("/api/v1/session").status_code == 200
    assert SESSION_COOKIE not in api.cookies
    assert api.get("/api/v1/traces").status_code == 401
    # A copied cookie dies with its key.
    kept = {"cookie": f"{SESSION_COOKIE}={value}"}
    assert httpx.get(f"{collector.url}/api/v1/traces", headers=kept).status_code == 200
    revoke_key(_storage(collector), key_id)
    assert httpx.get(f"{collector.url}/api/v1/traces", headers=kept).status_code == 401


def test_expired_session_is_refused(collector):
    from plyra_trace.collector.auth import SESSION_SECONDS, new_session, session_valid

    storage = _storage(collector)
    _, token = create_key(storage, "old")
    value = new_session(storage, token, now=time.time() - SESSION_SECONDS - 1)
    assert value is not None
    assert not session_valid(storage, value)
    assert session_valid(storage, new_session(storage, token) or "")


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:4318", "127.0.0.1.nip.io", "localhost.evil", ""]
)
def test_a_foreign_host_gets_no_data(collector, host):
    collector.send(make_span(420, 1, "secret-root"))
    for method, path in (
        ("GET", "/api/v1/traces"),
        ("GET", "/api/v1/stream"),
        ("GET", "/"),
        ("POST", "/v1/traces"),
    ):
        with httpx.Client(base_url=collector.url) as client:
            request = client.build_request(method, path, content=_body(421), headers=PROTOBUF)
            request.headers["host"] = host
            response = client.send(request)
        assert response.status_code == 421, (path, response.status_code)
        assert "secret-root" not in response.text and "not served here" in response.text
    assert [i["trace_id"] for i in collector.get("/api/v1/traces")["items"]] == [tid(420)]


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:9", "127.0.0.1", "127.8.9.1:80", "[::1]:1"]
)
def test_loopback_hosts_are_answered(collector, host):
    response = collector.api.get("/api/v1/traces", headers={"host": host})
    assert response.status_code == 200


def test_allowed_hosts_and_public_binds(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    allowed = start_collector(tmp_path / "a", allowed_hosts=("traces.internal",))
    try:
        ok = allowed.api.get("/api/v1/traces", headers={"host": "traces.internal:4318"})
        assert ok.status_code == 200
        assert allowed.api.get("/api/v1/traces", headers={"host": "other"}).status_code == 421
    finally:
        stop_collector(allowed)
    # Bound to a public address (keys demanded), any Host may ask, but only with a key.
    public = start_collector(tmp_path / "b", host="0.0.0.0", require_keys=True)
    try:
        _, token = create_key(_storage(public), "p")
        headers = {"host": "collector.example", "x-api-key": token}
        assert public.api.get("/api/v1/traces", headers=headers).status_code == 200
        anonymous = public.api.get("/api/v1/traces", headers={"host": "collector.example"})
        assert anonymous.status_code == 401
    finally:
        stop_collector(public)
