"""The one write path of scored events: rows are copied into a session-local table, inserted
with ON CONFLICT DO NOTHING, and only the rows really inserted feed the per-minute rollups, all
in the caller's transaction. A replayed batch therefore adds neither rows nor counts.

    async with conn.transaction():
        new = await store_scored(conn, rows)   # rows: tuples in COLUMNS order
"""

from __future__ import annotations

COLUMNS = ("source", "id", "published_at", "text", "title", "url", "lang", "tickers", "ingested_at", "scored_at",
           "topic", "topic_confidence", "sentiment", "p_negative", "p_neutral", "p_positive", "score",
           "model_version", "truncated")
_cols = ", ".join(COLUMNS)

CREATE_STAGE = f"""CREATE TEMP TABLE IF NOT EXISTS finsent_stage AS
SELECT {_cols} FROM scored_event WITH NO DATA"""

# The rollup rows are upserted in key order, so two writers lock them in the same order.
INSERT_FROM_STAGE = f"""
WITH ins AS (
    INSERT INTO scored_event ({_cols}) SELECT {_cols} FROM finsent_stage
    ON CONFLICT DO NOTHING
    RETURNING source, id, published_at, topic, tickers, sentiment, score
), keyed AS (
    SELECT 'topic' AS key_type, topic AS key, published_at, sentiment, score FROM ins
    UNION ALL SELECT 'ticker', unnest(tickers), published_at, sentiment, score FROM ins
    UNION ALL SELECT 'source', source, published_at, sentiment, score FROM ins
), rolled AS (
    INSERT INTO event_rollup_minute AS r (key_type, key, minute, n, negatives, neutrals, positives, score_sum)
    SELECT key_type, key, date_trunc('minute', published_at, 'UTC'), count(*),
           count(*) FILTER (WHERE sentiment = 'negative'), count(*) FILTER (WHERE sentiment = 'neutral'),
           count(*) FILTER (WHERE sentiment = 'positive'), sum(score)
    FROM keyed GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (key_type, key, minute) DO UPDATE SET n = r.n + EXCLUDED.n, negatives = r.negatives + EXCLUDED.negatives,
        neutrals = r.neutrals + EXCLUDED.neutrals, positives = r.positives + EXCLUDED.positives,
        score_sum = r.score_sum + EXCLUDED.score_sum
)
SELECT source, id FROM ins
"""


async def store_scored(conn, rows: list[tuple]) -> set[tuple[str, str]]:
    """Insert `rows` (asyncpg connection, inside the caller's transaction); returns the
    (source, id) pairs that were new. Rows already stored are absorbed, not counted again."""
    if not rows:
        return set()
    await conn.execute(CREATE_STAGE)
    await conn.execute("TRUNCATE finsent_stage")
    await conn.copy_records_to_table("finsent_stage", records=rows, columns=COLUMNS)
    new = await conn.fetch(INSERT_FROM_STAGE)
    await conn.execute("TRUNCATE finsent_stage")
    return {(r["source"], r["id"]) for r in new}
