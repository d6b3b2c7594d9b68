"""Revision 0003 (the API's tables) upgrades, downgrades with rows in every table it touches,
and upgrades again; the SQLAlchemy classes in core/db.py describe the same columns."""

from __future__ import annotations

import pytest

from core.db import ApiKey, Delivery, DeliveryAttempt, Feedback, Subscription
from core.pg import downgrade, libpq_dsn, migrate
from tests.api.conftest import event, insert_alert, make_key, new_database, seed, sql

pytestmark = pytest.mark.slow


def columns(dsn: str, table: str) -> set[str]:
    return {r[0] for r in sql(dsn, "SELECT column_name FROM information_schema.columns WHERE table_name = %s", table)}


def test_0003_down_and_up_with_rows(postgres):
    url = new_database(postgres)
    dsn = libpq_dsn(url)
    for cls in (ApiKey, Subscription, Delivery, DeliveryAttempt, Feedback):  # the classes mirror the DDL
        assert columns(dsn, cls.__tablename__) == {c.name for c in cls.__table__.columns}, cls.__tablename__
    make_key(dsn, "admin")
    seed(dsn, [event(1)])
    _, event_id = insert_alert(dsn)
    sub = sql(dsn, "INSERT INTO subscription (api_key_id, kind, target_url, secret, name) "
                   "VALUES (1, 'webhook', 'https://93.184.215.14/', 's', 'n') RETURNING id")[0][0]
    delivery = sql(dsn, "INSERT INTO delivery (alert_event_id, subscription_id) VALUES (%s, %s) RETURNING id",
                   event_id, sub)[0][0]
    sql(dsn, "INSERT INTO delivery_attempt (delivery_id, subscription_id, attempt, outcome, duration_ms) "
             "VALUES (%s, %s, 1, 'retry', 3.5)", delivery, sub)
    sql(dsn, "INSERT INTO feedback (source, event_id, published_at, sentiment, api_key_id, created_by) "
             "SELECT source, id, published_at, 'negative', 1, 'me' FROM scored_event")
    downgrade(url, "0002")
    assert sql(dsn, "SELECT version_num FROM alembic_version") == [("0002",)]
    assert not {"delivery", "delivery_attempt", "feedback"} & {r[0] for r in sql(
        dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert "scopes" not in columns(dsn, "api_key") and "enabled" not in columns(dsn, "subscription")
    assert sql(dsn, "SELECT count(*) FROM api_key") == [(1,)] and sql(dsn, "SELECT count(*) FROM subscription") == [(1,)]
    migrate(url)
    assert sql(dsn, "SELECT scopes, prefix FROM api_key") == [(["read"], "")]  # old keys come back read-only
    assert sql(dsn, "SELECT enabled, key_types FROM subscription") == [(True, ["topic", "ticker"])]
