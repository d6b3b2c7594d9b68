"""Every SQL statement of the API, in one place and parameterised only ($n placeholders;
dynamic parts of a query are chosen among fixed fragments here, never built from input).

Times are timestamptz; the pool's sessions run in UTC so that a '1 day' step is 24 hours."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

SEVERITIES = "ARRAY['low','medium','high']::text[]"

# --- keys and health -------------------------------------------------------------------
INSERT_API_KEY = """INSERT INTO api_key (name, key_hash, prefix, scopes) VALUES ($1, $2, $3, $4) RETURNING id"""
API_KEY_BY_HASH = "SELECT id, name, scopes FROM api_key WHERE key_hash = $1 AND NOT revoked"
LIST_API_KEYS = "SELECT id, name, prefix, scopes, created_at, revoked FROM api_key ORDER BY id"
VALID_API_KEYS = "SELECT id FROM api_key WHERE id = ANY($1::int[]) AND NOT revoked"
REVOKE_API_KEY = "UPDATE api_key SET revoked = true, revoked_at = now() WHERE id = $1 AND NOT revoked RETURNING id"
ALEMBIC_VERSION = "SELECT version_num FROM alembic_version"
# seconds a standby is behind: 0 when it has replayed all it received (or is not a standby at all),
# else the age of the last replayed commit (finsent.services.Standby.lag_sql, for a primary too)
REPLICA_LAG = """SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0
    WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
    ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END"""

# --- events ------------------------------------------------------------------------------
EVENT_COLUMNS = ("source, id, published_at, title, text, url, lang, tickers, topic, topic_confidence, sentiment, "
                 "p_negative, p_neutral, p_positive, score, model_version, truncated, ingested_at, scored_at, "
                 "story_id, novel, copies")


@dataclass
class Where:
    """Collects `AND`ed conditions with their arguments; `col` fragments are fixed strings."""

    parts: list[str] = field(default_factory=list)
    args: list = field(default_factory=list)

    def add(self, fragment: str, *values) -> None:
        """`fragment` uses {} for each value's placeholder, filled with $n in order."""
        marks = [f"${len(self.args) + i + 1}" for i in range(len(values))]
        self.parts.append(fragment.format(*marks))
        self.args.extend(values)

    def sql(self) -> str:
        return " AND ".join(self.parts) or "true"


def events_where(*, start: datetime, end: datetime, topics, tickers, sources, sentiments, min_score, max_score,
                 model_version, q, after: tuple | None, min_relevance: float | None = None,
                 novel_only: bool = False) -> Where:
    w = Where()
    w.add("published_at >= {}", start)
    w.add("published_at < {}", end)
    if topics:
        w.add("topic = ANY({}::text[])", topics)
    if tickers and min_relevance is None:  # the items counted for the ticker (the worker's cut; = its series)
        w.add("tickers && {}::varchar[]", tickers)
    elif tickers:  # entity rows about the ticker: at or above the relevance, or a cashtag / feed tag
        w.add("(source, id, published_at) IN (SELECT source, event_id, published_at FROM event_entity "
              "WHERE ticker = ANY({}::text[]) AND published_at >= {} AND published_at < {} "
              f"AND (relevance >= {{}} OR sources && {ALWAYS_COUNTED}))", tickers, start, end, min_relevance)
    if sources:
        w.add("source = ANY({}::text[])", sources)
    if sentiments:
        w.add("sentiment = ANY({}::text[])", sentiments)
    if min_score is not None:
        w.add("score >= {}", min_score)
    if max_score is not None:
        w.add("score <= {}", max_score)
    if model_version:
        w.add("model_version = {}", model_version)
    if novel_only:  # the first item of its story (rows no one assigned a story yet are left out)
        w.add("novel")
    if q:
        w.add(r"(text ILIKE {0} ESCAPE '\' OR title ILIKE {0} ESCAPE '\')", like_pattern(q))
    if after is not None:
        # the plain bound lets the planner use the time index; the row comparison is the exact keyset
        w.add("published_at <= {}", after[0])
        w.add("(published_at, source, id) < ({}, {}, {})", *after)
    return w


def like_pattern(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def events_page(w: Where, limit: int) -> tuple[str, list]:
    sql = (f"SELECT {EVENT_COLUMNS} FROM scored_event WHERE {w.sql()} "
           f"ORDER BY published_at DESC, source DESC, id DESC LIMIT ${len(w.args) + 1}")
    return sql, [*w.args, limit]


# the entities of a page of events, most relevant first (the bounds let the planner prune partitions)
ENTITY_COLUMNS = "ticker, name, relevance, sentiment, score, sentiment_from, spans, sources"
ENTITIES_OF = f"""SELECT en.source, en.event_id, en.published_at, {ENTITY_COLUMNS}
FROM event_entity en JOIN unnest($1::text[], $2::text[], $3::timestamptz[]) AS x(src, eid, at)
  ON en.source = x.src AND en.event_id = x.eid AND en.published_at = x.at
WHERE en.published_at >= $4 AND en.published_at <= $5
ORDER BY en.relevance DESC, en.ticker"""
ALWAYS_COUNTED = "ARRAY['cashtag','tag']::varchar[]"
# /v1/entities/{ticker}: its items in a window, counted like the worker counts them
ENTITY_RECENT = f"""SELECT count(*) AS n, count(*) FILTER (WHERE sentiment = 'negative') AS negatives,
       count(*) FILTER (WHERE sentiment = 'neutral') AS neutrals,
       count(*) FILTER (WHERE sentiment = 'positive') AS positives,
       avg(score) AS mean_score, avg(relevance) AS mean_relevance, max(published_at) AS last_seen
FROM event_entity WHERE ticker = $1 AND published_at >= $2 AND published_at < $3
  AND (relevance >= $4 OR sources && {ALWAYS_COUNTED})"""
ENTITY_PASSING = """SELECT count(*) FROM event_entity WHERE ticker = $1 AND published_at >= $2 AND published_at < $3
  AND relevance < $4"""

EVENT_BY_KEY = f"""SELECT {EVENT_COLUMNS} FROM scored_event WHERE source = $1 AND id = $2
ORDER BY published_at DESC LIMIT 1"""

# --- series (sums of the rollups; summed per bucket and zero-filled in crud.series) ----------
# One row per key with the rollup rows of its span as parallel arrays (NULL when it has none;
# decoded in C by asyncpg): b = the series bucket each row falls in, counted from $3 (start,
# epoch seconds) in steps of $4 seconds. Per key, a plain aggregate over its own index range
# (LATERAL): no GROUP BY bucket, no sort, no hash; numpy sums rows into buckets. On 20 M events,
# EXPLAIN ANALYZE: 20 topics × 288 five-minute buckets 9.0 → 2.4 ms, 50 tickers × 97 quarter
# hours 17.4 → 8.7 ms against one GROUP BY key over all of them (bench/api.py); with a GROUP BY
# bucket as well, as before, the 20-topic query was 9.8 ms on 2 M.
SERIES = """
SELECT k.key, r.b, r.n, r.negatives, r.neutrals, r.positives, r.score_sum
FROM unnest($2::text[]) AS k(key) CROSS JOIN LATERAL (
    SELECT array_agg(floor((date_part('epoch', {col}) - $3::float8) / $4::float8)::int4) AS b,
           array_agg(n) AS n, array_agg(negatives) AS negatives, array_agg(neutrals) AS neutrals,
           array_agg(positives) AS positives, array_agg(score_sum) AS score_sum
    FROM {table} t WHERE t.key_type = $1 AND t.key = k.key AND t.{col} >= $5 AND t.{col} < $6) r
"""
# The same answer summed per series bucket in Postgres, for buckets many rollup rows wide (a day of
# hourly rows): it returns one row per bucket instead of shipping every rollup row to numpy.
SERIES_GROUPED = """
SELECT k.key, r.b, r.n, r.negatives, r.neutrals, r.positives, r.score_sum
FROM unnest($2::text[]) AS k(key) CROSS JOIN LATERAL (
    SELECT array_agg(g.b) AS b, array_agg(g.n) AS n, array_agg(g.negatives) AS negatives,
           array_agg(g.neutrals) AS neutrals, array_agg(g.positives) AS positives, array_agg(g.score_sum) AS score_sum
    FROM (SELECT floor((date_part('epoch', {col}) - $3::float8) / $4::float8)::int4 AS b, sum(n)::int8 AS n,
                 sum(negatives)::int8 AS negatives, sum(neutrals)::int8 AS neutrals, sum(positives)::int8 AS positives,
                 sum(score_sum)::float8 AS score_sum
          FROM {table} t WHERE t.key_type = $1 AND t.key = k.key AND t.{col} >= $5 AND t.{col} < $6 GROUP BY 1) g) r
"""
GROUP_FROM = 12  # rollup rows per series bucket from which Postgres sums them (bench/api.py --past-retention)


def series_statement(table: str, col: str, step_s: int, rollup_s: int) -> str:
    return (SERIES_GROUPED if step_s // rollup_s >= GROUP_FROM else SERIES).format(table=table, col=col)


# The coarsest rollup whose buckets tile a series bucket of that many seconds (the worker keeps
# all three; see core/events.py): hourly for 1h…1d, 5-minute for 5m…30m, else per minute. Exact
# because a series' start and end are aligned to its bucket.
ROLLUPS = ((3600, "event_rollup_hour", "bucket"), (300, "event_rollup_5m", "bucket"), (60, "event_rollup_minute", "minute"))


def series_sql(step_s: int) -> str:
    table, col = next((t, c) for s, t, c in ROLLUPS if step_s % s == 0)
    return SERIES.format(table=table, col=col)

# Raw days no longer in the database (core/history.py): a request over any of them is a 410 that
# says where the archive is. A day restored from the archive is 'restored' and readable again.
DROPPED_DAYS = """SELECT day, archive_dir FROM history_day WHERE state = 'dropped' AND day >= $1::date AND day <= $2::date
ORDER BY day"""

# novel_only series: counted from scored_event (the rollups have no novel column), within raw retention
NOVEL_KEY = {"topic": "e.topic = k.key", "source": "e.source = k.key", "ticker": "e.tickers @> ARRAY[k.key]::varchar[]"}
NOVEL_SERIES = """
SELECT k.key, r.b, r.n, r.negatives, r.neutrals, r.positives, r.score_sum
FROM unnest($2::text[]) AS k(key) CROSS JOIN LATERAL (
    SELECT array_agg(x.b) AS b, array_agg(x.n) AS n, array_agg(x.negatives) AS negatives,
           array_agg(x.neutrals) AS neutrals, array_agg(x.positives) AS positives, array_agg(x.score_sum) AS score_sum
    FROM (SELECT floor((date_part('epoch', e.published_at) - $3::float8) / $4::float8)::int4 AS b, count(*) AS n,
                 count(*) FILTER (WHERE e.sentiment = 'negative') AS negatives,
                 count(*) FILTER (WHERE e.sentiment = 'neutral') AS neutrals,
                 count(*) FILTER (WHERE e.sentiment = 'positive') AS positives, sum(e.score) AS score_sum
          FROM scored_event e WHERE $1::text IS NOT NULL AND {match} AND e.novel
            AND e.published_at >= $5 AND e.published_at < $6
          GROUP BY 1) x) r
"""


def novel_series_sql(key_type: str) -> str:
    return NOVEL_SERIES.format(match=NOVEL_KEY[key_type])


# --- stories (core/stories.py, migration 0007) ----------------------------------------------
# a story row with its founding event: the novel one of its story, at (source, published_at) = the
# story's (source, first_at), found by the partial index (story_id, published_at) whatever form the id
# has (`source/id` since migration 0011, the bare id before); the founding event may be gone (its raw
# day dropped): then headline and text are null
STORY_COLUMNS = """s.story_id, s.source, s.first_at, s.last_at, s.copies, s.sources, s.keys,
       f.title AS headline, f.text, f.topic, f.sentiment, f.score"""
_FOUNDER = """LEFT JOIN LATERAL (SELECT title, text, topic, sentiment, score FROM scored_event e
    WHERE e.story_id = s.story_id AND e.published_at = s.first_at AND e.source = s.source AND e.novel
    LIMIT 1) f ON true"""


def stories_where(*, start: datetime, end: datetime, tickers, topics, min_copies: int, after: tuple | None) -> Where:
    w = Where()
    w.add("s.last_at >= {}", start)
    w.add("s.last_at < {}", end)
    if tickers:
        w.add("s.keys && {}::text[]", tickers)
    if topics:
        w.add("EXISTS (SELECT 1 FROM scored_event e WHERE e.story_id = s.story_id AND e.published_at = s.first_at "
              "AND e.source = s.source AND e.novel AND e.topic = ANY({}::text[]))", topics)
    if min_copies > 1:
        w.add("s.copies >= {}", min_copies)
    if after is not None:
        w.add("(s.last_at, s.story_id) < ({}, {})", *after)
    return w


def stories_page(w: Where, limit: int) -> tuple[str, list]:
    sql = (f"SELECT {STORY_COLUMNS} FROM story s {_FOUNDER} WHERE {w.sql()} "
           f"ORDER BY s.last_at DESC, s.story_id DESC LIMIT ${len(w.args) + 1}")
    return sql, [*w.args, limit]


STORY_BY_ID = f"""SELECT {STORY_COLUMNS} FROM story s {_FOUNDER} WHERE s.story_id = $1
ORDER BY s.first_at DESC LIMIT 1"""
# a story whose index row is past the horizon (truncated by upkeep): summed from its events
STORY_FROM_EVENTS = """SELECT min(published_at) AS first_at, max(published_at) AS last_at, count(*) AS copies,
       (array_agg(DISTINCT source))[1:16] AS sources
FROM scored_event WHERE story_id = $1"""
STORY_FOUNDER = """SELECT source, title AS headline, text, topic, sentiment, score FROM scored_event
WHERE story_id = $1 AND novel ORDER BY published_at LIMIT 1"""
# its events, oldest first, by the partial index (story_id, published_at)
STORY_EVENTS = f"""SELECT {EVENT_COLUMNS} FROM scored_event WHERE story_id = $1
  AND (published_at, source, id) > ($2, $3, $4) ORDER BY published_at, source, id LIMIT $5"""

# --- movers: negative share in the window against the key's trailing baseline -------------
MOVERS = """
WITH w AS (
    SELECT key,
           sum(n) FILTER (WHERE minute >= $2)::bigint AS n,
           sum(negatives) FILTER (WHERE minute >= $2)::bigint AS negatives,
           sum(n) FILTER (WHERE minute < $2)::bigint AS baseline_n,
           sum(negatives) FILTER (WHERE minute < $2)::bigint AS baseline_negatives
    FROM event_rollup_minute
    WHERE key_type = $1 AND minute >= $3 AND minute < $4
    GROUP BY key
)
SELECT key, n, negatives, coalesce(baseline_n, 0) AS baseline_n, coalesce(baseline_negatives, 0) AS baseline_negatives
FROM w WHERE n >= $5
"""

# --- alerts -------------------------------------------------------------------------------
ALERT_COLUMNS = ("id, key_type, key, window_start, window_end, n, negatives, baseline_rate, baseline_n, z, p_value, stories, "
                 "severity, sample_event_ids, state, opened_at, resolved_at, revision, updated_at")


def alerts_where(*, start, end, state, key_type, keys, min_severity, after: tuple | None) -> Where:
    w = Where()
    w.add("opened_at >= {}", start)
    w.add("opened_at < {}", end)
    if state:
        w.add("state = {}", state)
    if key_type:
        w.add("key_type = {}", key_type)
    if keys:
        w.add("key = ANY({}::text[])", keys)
    if min_severity:
        w.add(f"array_position({SEVERITIES}, severity) >= array_position({SEVERITIES}, {{}}::text)", min_severity)
    if after is not None:
        w.add("(opened_at, id) < ({}, {})", *after)
    return w


def alerts_page(w: Where, limit: int) -> tuple[str, list]:
    sql = (f"SELECT {ALERT_COLUMNS} FROM alert WHERE {w.sql()} ORDER BY opened_at DESC, id DESC "
           f"LIMIT ${len(w.args) + 1}")
    return sql, [*w.args, limit]


ALERT_BY_ID = f"SELECT {ALERT_COLUMNS} FROM alert WHERE id = $1"
# sample ids are "source/id"; the time bound lets the planner prune partitions
ALERT_SAMPLES = f"""SELECT {EVENT_COLUMNS} FROM scored_event s
JOIN unnest($1::text[], $2::text[]) AS x(src, eid) ON s.source = x.src AND s.id = x.eid
WHERE s.published_at >= $3 AND s.published_at < $4 ORDER BY s.published_at, s.source, s.id"""
ALERT_HISTORY = "SELECT id, event, revision, severity, at FROM alert_event WHERE alert_id = $1 ORDER BY id"

# --- the alert event log (live stream, webhooks) -------------------------------------------
ALERT_EVENT_COLUMNS = "id, alert_id, event, revision, key_type, key, severity, at, payload"
ALERT_EVENTS_AFTER = f"SELECT {ALERT_EVENT_COLUMNS} FROM alert_event WHERE id > $1 ORDER BY id LIMIT $2"
ALERT_EVENTS_BY_ID = f"SELECT {ALERT_EVENT_COLUMNS} FROM alert_event WHERE id = ANY($1::bigint[]) ORDER BY id"
MAX_ALERT_EVENT_ID = "SELECT coalesce(max(id), 0) FROM alert_event"

# --- subscriptions --------------------------------------------------------------------------
SUBSCRIPTION_COLUMNS = ("id, name, kind, target_url, key_types, topics, tickers, min_severity, min_relevance, enabled, "
                        "disabled_reason, consecutive_failures, created_at, updated_at")
INSERT_SUBSCRIPTION = f"""INSERT INTO subscription (api_key_id, name, kind, target_url, secret, key_types, topics,
    tickers, min_severity, min_relevance, start_event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, (SELECT coalesce(max(id), 0) FROM alert_event))
RETURNING {SUBSCRIPTION_COLUMNS}"""
# the lock, then the count in a statement of its own: its snapshot sees the rows committed meanwhile
LOCK_API_KEY = "SELECT id FROM api_key WHERE id = $1 FOR UPDATE"
COUNT_SUBSCRIPTIONS = "SELECT count(*) FROM subscription WHERE api_key_id = $1"
LIST_SUBSCRIPTIONS = f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscription WHERE api_key_id = $1 ORDER BY id"
GET_SUBSCRIPTION = f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscription WHERE id = $1 AND api_key_id = $2"
# NULL means "leave as is"; re-enabling clears the failure count and the reason
UPDATE_SUBSCRIPTION = f"""UPDATE subscription SET
    name = coalesce($3, name), target_url = coalesce($4, target_url), key_types = coalesce($5, key_types),
    topics = coalesce($6, topics), tickers = coalesce($7, tickers), min_severity = coalesce($8, min_severity),
    min_relevance = CASE WHEN $10 THEN $11 ELSE min_relevance END, enabled = coalesce($9, enabled),
    consecutive_failures = CASE WHEN $9 THEN 0 ELSE consecutive_failures END,
    disabled_reason = CASE WHEN $9 THEN NULL WHEN $9 = false THEN 'disabled by its owner' ELSE disabled_reason END,
    updated_at = now()
WHERE id = $1 AND api_key_id = $2 RETURNING {SUBSCRIPTION_COLUMNS}"""
DELETE_SUBSCRIPTION = "DELETE FROM subscription WHERE id = $1 AND api_key_id = $2 RETURNING id"
DELIVERY_LOG = """SELECT a.id, a.delivery_id, d.alert_event_id, a.attempt, a.at, a.outcome, a.status_code, a.error,
       a.duration_ms
FROM delivery_attempt a JOIN delivery d ON d.id = a.delivery_id
WHERE a.subscription_id = $1 AND a.id < $2 ORDER BY a.id DESC LIMIT $3"""

# --- webhook delivery -----------------------------------------------------------------------
# A subscription's min_relevance: a ticker alert goes to it only when the alert's evidence (its
# sample events) has an item about the company at least that relevant (event_entity), so an
# alert made of passing mentions does not page a desk that asked for more. {alert}, {ticker},
# {cut}: the alert id, the ticker and the relevance.
_RELEVANT = """EXISTS (SELECT 1 FROM alert a JOIN event_entity en ON en.ticker = {ticker} AND en.relevance >= {cut}
        AND en.published_at >= a.window_start - interval '1 day' AND en.published_at < a.window_end + interval '1 hour'
        AND (en.source || '/' || en.event_id) = ANY(a.sample_event_ids)
    WHERE a.id = {alert})"""
ALERT_RELEVANT = "SELECT " + _RELEVANT.format(alert="$1", ticker="$2", cut="$3")
_MATCH = f"""s.kind = 'webhook' AND s.enabled AND e.id > s.start_event_id AND e.key_type = ANY(s.key_types)
    AND (e.key_type <> 'topic' OR cardinality(s.topics) = 0 OR e.key = ANY(s.topics))
    AND (e.key_type <> 'ticker' OR cardinality(s.tickers) = 0 OR e.key = ANY(s.tickers))
    AND (e.key_type <> 'ticker' OR s.min_relevance IS NULL
         OR {_RELEVANT.format(alert="e.alert_id", ticker="e.key", cut="s.min_relevance")})
    AND array_position({SEVERITIES}, e.severity) >= array_position({SEVERITIES}, s.min_severity::text)"""
# Idempotent fan-out: every API process may run it; the unique pair makes one row per
# (alert event, subscription), so whoever inserts it first owns it and the others insert nothing.
# A revoked key's subscriptions get nothing new, and nothing pending is sent for them (CLAIM).
FANOUT = f"""INSERT INTO delivery (alert_event_id, subscription_id)
SELECT e.id, s.id FROM alert_event e JOIN subscription s ON {_MATCH}
JOIN api_key k ON k.id = s.api_key_id AND NOT k.revoked
WHERE e.at > now() - interval '1 day'
  AND NOT EXISTS (SELECT 1 FROM delivery d WHERE d.alert_event_id = e.id AND d.subscription_id = s.id)
ON CONFLICT DO NOTHING"""
# Lease due deliveries; SKIP LOCKED + the lease make two processes take different rows.
CLAIM = """UPDATE delivery d SET locked_until = now() + make_interval(secs => $2), attempts = d.attempts + 1
FROM (SELECT d2.id FROM delivery d2 JOIN subscription s2 ON s2.id = d2.subscription_id AND s2.enabled
      JOIN api_key k2 ON k2.id = s2.api_key_id AND NOT k2.revoked
      WHERE d2.state = 'pending' AND d2.next_attempt_at <= now()
        AND (d2.locked_until IS NULL OR d2.locked_until < now())
      ORDER BY d2.next_attempt_at, d2.id LIMIT $1 FOR UPDATE OF d2 SKIP LOCKED) c,
     subscription s, alert_event e
WHERE d.id = c.id AND s.id = d.subscription_id AND e.id = d.alert_event_id
RETURNING d.id, d.subscription_id, d.attempts, s.target_url, s.secret, e.id AS alert_event_id, e.event, e.payload"""
SECONDS_TO_NEXT_DUE = """SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM delivery
WHERE state = 'pending' AND locked_until IS NULL"""
LOG_ATTEMPT = """INSERT INTO delivery_attempt (delivery_id, subscription_id, attempt, outcome, status_code, error, duration_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7)"""
# Before an attempt is written: its subscription's row, locked in the order a DELETE of the subscription
# takes (subscription, then its deliveries), so a delete meanwhile waits or has happened (then None)
LOCK_DELIVERY = """SELECT d.id FROM subscription s JOIN delivery d ON d.subscription_id = s.id
WHERE d.id = $1 AND s.id = $2 FOR NO KEY UPDATE OF s"""
MARK_DELIVERED = """UPDATE delivery SET state = 'delivered', delivered_at = now(), locked_until = NULL, last_status = $2,
    last_error = NULL WHERE id = $1"""
RESET_FAILURES = "UPDATE subscription SET consecutive_failures = 0 WHERE id = $1 AND consecutive_failures <> 0"
COUNT_FAILURE = """UPDATE subscription SET consecutive_failures = consecutive_failures + 1,
    enabled = enabled AND consecutive_failures + 1 < $2,
    disabled_reason = CASE WHEN consecutive_failures + 1 >= $2 THEN $3 ELSE disabled_reason END, updated_at = now()
WHERE id = $1 RETURNING enabled"""
RETRY_LATER = """UPDATE delivery SET next_attempt_at = now() + make_interval(secs => $2), locked_until = NULL,
    last_status = $3, last_error = $4 WHERE id = $1"""
FAIL_PENDING = """UPDATE delivery SET state = 'failed', locked_until = NULL, last_status = coalesce($2, last_status),
    last_error = $3 WHERE subscription_id = $1 AND state = 'pending'"""

# --- feedback ---------------------------------------------------------------------------------
FEEDBACK_COLUMNS = "id, source, event_id, published_at, topic, sentiment, note, created_by, created_at"
INSERT_FEEDBACK = f"""INSERT INTO feedback (source, event_id, published_at, topic, sentiment, note, api_key_id, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {FEEDBACK_COLUMNS}"""
LIST_FEEDBACK = f"""SELECT {FEEDBACK_COLUMNS} FROM feedback WHERE created_at >= $1 AND created_at < $2 AND id < $3
ORDER BY id DESC LIMIT $4"""
EXPORT_FEEDBACK = """SELECT f.id, f.source, f.event_id, f.published_at, s.text, s.topic AS model_topic,
       s.sentiment AS model_sentiment, f.topic, f.sentiment, f.note, f.created_by, f.created_at
FROM feedback f LEFT JOIN scored_event s
  ON s.source = f.source AND s.id = f.event_id AND s.published_at = f.published_at
WHERE f.created_at >= $1 AND f.created_at < $2 ORDER BY f.id"""
