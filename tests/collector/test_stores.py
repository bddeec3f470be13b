"""Store lifecycle on both stores: retention, a lost database, a 0.3.0 file, bad --db values."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest

from plyra_trace.__main__ import main
from plyra_trace.collector.storage import is_postgres
from plyra_trace.collector.storage._migrate import LATEST
from tests.collector.conftest import make_request, make_span, start_collector, stop_collector, tid

DATA = Path(__file__).parent / "data"
DAY_NS = 86_400 * 10**9


def test_retention_deletes_old_traces_at_start_up_and_keeps_fresh_ones(tmp_path, db):
    now = time.time_ns()
    filling = start_collector(tmp_path, db=db)
    try:
        filling.send(
            make_span(900, 1, "old", base_ns=now - 3 * DAY_NS, llm__model_name="gpt-4o"),
            make_span(900, 2, "old-child", parent=1, base_ns=now - 3 * DAY_NS),
        )
        filling.send(make_span(901, 1, "fresh", base_ns=now - 10**9))
        assert filling.get("/api/v1/health")["spans"] == 3
    finally:
        stop_collector(filling)
    running = start_collector(tmp_path, db=db, retention_days=1)
    try:
        running.wait(lambda: running.api.get(f"/api/v1/traces/{tid(900)}").status_code == 404)
        assert running.trace(tid(901))["root_name"] == "fresh"
        assert running.get("/api/v1/health")["spans"] == 1
        if is_postgres(db):  # the old day went as whole partitions
            with psycopg.connect(db) as conn:
                old_day = time.strftime("%Y%m%d", time.gmtime((now - 3 * DAY_NS) // 10**9))
                found = conn.execute(
                    "SELECT relname FROM pg_class WHERE relname LIKE %s", (f"%_d{old_day}",)
                ).fetchall()
            assert found == []
        assert running.get("/api/v1/cost", by="model")["items"] == []
        # Ingest goes on after retention, also for days it dropped.
        running.send(make_span(902, 1, "late", base_ns=now))
        assert running.trace(tid(902))["span_count"] == 1
    finally:
        stop_collector(running)


def test_database_lost_while_running_answers_503_and_recovers(tmp_path, postgres):
    running = start_collector(tmp_path, db=postgres.database())
    body = make_request([make_span(950, 1, "before")]).SerializeToString()
    headers = {"content-type": "application/x-protobuf"}
    try:
        assert running.api.post("/v1/traces", content=body, headers=headers).status_code == 200
        postgres.stop()
        try:
            lost = make_request([make_span(951, 1, "while-down")]).SerializeToString()
            assert running.api.post("/v1/traces", content=lost, headers=headers).status_code == 503
            assert running.api.get("/api/v1/traces").status_code == 503
        finally:
            postgres.start()
        running.wait(
            lambda: (
                running.api.post("/v1/traces", content=lost, headers=headers).status_code == 200
            ),
            timeout=30,
        )
        listed = running.get("/api/v1/traces")["items"]
        assert {t["trace_id"] for t in listed} == {tid(950), tid(951)}
    finally:
        stop_collector(running)


def test_a_0_3_0_database_opens_with_everything_intact(tmp_path):
    """``data/collector-0.3.0.db`` was written by plyra-trace 0.3.0's storage (schema 1)."""
    db = tmp_path / "old.db"
    shutil.copy(DATA / "collector-0.3.0.db", db)
    token = "pt_abc123def456_fixture-secret-of-the-0.3.0-file"
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone() == (1,)
    running = start_collector(tmp_path, db=str(db), require_keys=True)
    try:
        running.api.headers["authorization"] = f"Bearer {token}"
        traces = {t["trace_id"]: t for t in running.get("/api/v1/traces")["items"]}
        assert set(traces) == {tid(1), tid(2)}
        assert traces[tid(1)]["span_count"] == 3
        assert traces[tid(1)]["cost"] == pytest.approx(0.0045)
        assert traces[tid(2)]["status"] == "error"
        root = running.trace(tid(1))["spans"][0]
        span = running.get(f"/api/v1/traces/{tid(1)}/spans/{root['span_id']}")
        assert span["input_value"] == "hello"
        assert span["resource"]["service.name"] == "svc-a"
        edges = running.get("/api/v1/agents/graph")["edges"]
        assert [(e["from"], e["to"]) for e in edges] == [("router", "writer")]
        assert running.get("/api/v1/sessions")["items"][0]["users"] == ["u1", "u2"]
        # Still writable; the revoked key stays revoked.
        running.send(make_span(1, 9, "late-child", parent=1))
        assert running.trace(tid(1))["span_count"] == 4
    finally:
        stop_collector(running)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (LATEST,)
        assert conn.execute("SELECT COUNT(*) FROM guards").fetchone() == (0,)  # added by v3
        keys = dict(conn.execute("SELECT key_id, revoked_ns IS NULL FROM api_keys").fetchall())
        assert keys == {"abc123def456": 1, "0123456789ab": 0}
        stored = conn.execute("SELECT secret_hash FROM api_keys WHERE key_id = 'abc123def456'")
        assert stored.fetchone()[0] == hashlib.sha256(token.encode()).hexdigest()


def test_unreachable_database_is_one_line_with_the_password_masked(capsys):
    url = "postgresql://plyra:s3cret@127.0.0.1:1/traces"
    assert main(["serve", "--db", url]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "postgresql://plyra:***@127.0.0.1:1/traces" in error and "s3cret" not in error


def test_unknown_scheme_and_workers_on_sqlite_are_refused(capsys, tmp_path, monkeypatch):
    assert main(["keys", "list", "--db", "mysql://u@h/db"]) == 1
    assert "unsupported database URL scheme 'mysql'" in capsys.readouterr().err
    assert main(["serve", "--workers", "2", "--db", str(tmp_path / "one.db")]) == 2
    assert "--workers needs a PostgreSQL" in capsys.readouterr().err
    monkeypatch.setenv("PLYRA_DB", str(tmp_path / "env.db"))
    assert main(["keys", "create", "--name", "from-env"]) == 0
    assert (tmp_path / "env.db").exists()


def test_sessions_list_their_distinct_users(collector):
    collector.send(make_span(970, 1, "a", session__id="s", user__id="u2", start_ms=0))
    collector.send(make_span(971, 1, "b", session__id="s", user__id="u1", start_ms=5))
    collector.send(make_span(972, 1, "c", session__id="s", user__id="u2", start_ms=9))
    (session,) = collector.get("/api/v1/sessions")["items"]
    assert session["users"] == ["u1", "u2"]
    assert session["user_id"] == "u1"
