"""Health, readiness, metrics, API keys (CLI and HTTP), scopes, closed reads, CORS default."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import apikey_app
from api.keys import hash_key
from api.main import alembic_head
from core.settings import Settings
from tests.api.conftest import ApiServer, make_key, sql, api_settings

pytestmark = pytest.mark.slow


def test_health_ready_and_metrics(client, dsn):
    assert client.get("/health").json()["status"] == "ok"
    r = client.get("/ready")
    head = alembic_head(Settings())
    versions = Path(__file__).resolve().parents[2] / "core" / "migrations" / "versions"
    assert head == max(p.name[:4] for p in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))  # the newest migration
    assert r.status_code == 200 and r.json() == {"status": "ready", "database": "ok", "revision": head,
                                                 "replica": "none", "replica_lag_s": None}
    for path in ("/health", "/ready"):  # probes that check with HEAD get the same status, no body
        h = client.head(path)
        assert h.status_code == 200 and h.content == b"", (path, h.status_code, h.content)
    client.get("/v1/alerts/999999")
    text = client.get("/metrics").text
    assert 'finsent_api_requests_total{method="GET",route="/v1/alerts/{alert_id}",status="404"}' in text
    assert "finsent_api_request_seconds_bucket" in text and "finsent_api_sse_clients" in text
    assert 'finsent_webhook_deliveries_total{outcome="delivered"}' in text
    assert "finsent_api_replica_lag_seconds{" not in text  # no replica configured: no lag sample at all


def test_ready_is_503_when_migrations_are_behind(client, dsn):
    sql(dsn, "UPDATE alembic_version SET version_num = '0002'")
    try:
        r = client.get("/ready")
        assert r.status_code == 503 and "0002" in r.json()["detail"]
    finally:
        sql(dsn, "UPDATE alembic_version SET version_num = %s", alembic_head(Settings()))
    assert client.get("/ready").status_code == 200


def test_ready_is_503_without_database(postgres):
    settings = api_settings(postgres.url.replace("/postgres?", "/no_such_db?"))
    with ApiServer(settings) as server, server.client() as c:
        assert c.get("/health").status_code == 200
        r = c.get("/ready")
        assert r.status_code == 503 and r.json()["detail"].startswith("database unreachable")


def test_apikey_cli_create_list_revoke(db_url, dsn, client, monkeypatch):
    from core.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        out = runner.invoke(apikey_app, ["create", "--name", "cli-desk", "--scope", "read", "--scope", "subscribe"])
        assert out.exit_code == 0, out.output
        key = out.stdout.strip().splitlines()[-1]
        assert key.startswith("fsk_") and len(key) > 40
        stored = sql(dsn, "SELECT key_hash, prefix, scopes FROM api_key WHERE name = 'cli-desk'")
        assert stored == [(hash_key(key), key[:12], ["read", "subscribe"])]  # the hash, never the key
        assert key not in str(sql(dsn, "SELECT * FROM api_key"))
        assert client.get("/v1/subscriptions", headers={"X-API-Key": key}).status_code == 200
        listing = runner.invoke(apikey_app, ["list"])
        assert listing.exit_code == 0 and "cli-desk" in listing.stdout and key not in listing.stdout
        key_id = sql(dsn, "SELECT id FROM api_key WHERE name = 'cli-desk'")[0][0]
        assert runner.invoke(apikey_app, ["revoke", str(key_id)]).exit_code == 0
        assert runner.invoke(apikey_app, ["revoke", str(key_id)]).exit_code == 1
        assert client.get("/v1/subscriptions", headers={"X-API-Key": key}).status_code == 401
        bad = runner.invoke(apikey_app, ["create", "--name", "x", "--scope", "root"])
        assert bad.exit_code == 2
    finally:
        get_settings.cache_clear()


def test_auth_errors(client, dsn):
    assert client.get("/v1/subscriptions").status_code == 401
    r = client.get("/v1/subscriptions", headers={"X-API-Key": "fsk_not-a-key"})
    assert r.status_code == 401 and r.json() == {"detail": "invalid or revoked API key"}
    assert r.headers["www-authenticate"] == "Bearer"
    reader = make_key(dsn, "read")
    r = client.get("/v1/subscriptions", headers={"X-API-Key": reader})
    assert r.status_code == 403 and "subscribe" in r.json()["detail"]
    admin = make_key(dsn, "admin")
    assert client.get("/v1/subscriptions", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    assert client.get("/v1/events").status_code == 200  # reads are open by default
    assert client.get("/v1/events", headers={"X-API-Key": "wrong"}).status_code == 401  # a bad key is never ignored


def test_closed_reads_need_the_read_scope(db_url, dsn):
    feedback_only, reader = make_key(dsn, "feedback"), make_key(dsn, "read")
    with ApiServer(api_settings(db_url, api_reads_open=False)) as server, server.client() as c:
        assert c.get("/v1/events").status_code == 401
        assert c.get("/v1/series", params={"key": "ACME"}, headers={"X-API-Key": feedback_only}).status_code == 403
        assert c.get("/v1/events", headers={"X-API-Key": reader}).status_code == 200
        assert c.get("/health").status_code == 200


def test_cors_is_off_by_default(client):
    r = client.options("/v1/events", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers


def test_unknown_route_and_bad_json_are_json_4xx(client, dsn):
    r = client.get("/v1/nope")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    key = make_key(dsn, "subscribe")
    r = client.post("/v1/subscriptions", content=b"{not json", headers={"X-API-Key": key,
                                                                       "Content-Type": "application/json"})
    assert r.status_code == 422 and "detail" in r.json()
