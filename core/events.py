"""The one write path of scored events: rows are copied into a session-local table, inserted
with ON CONFLICT DO NOTHING, and only the rows really inserted feed the rollups (per minute, per
5 minutes, per hour: the API reads the coarsest that fits a series' bucket), all in the
caller's transaction. A replayed batch therefore adds neither rows nor counts.

    async with conn.transaction():
        new = await store_scored(conn, rows, entities)   # tuples in COLUMNS / ENTITY_COLUMNS order

With `stories` ({(source, id, published_at): (story id, novel, copies)}, from core.stories'
assign run just before under its lock) the rows are inserted with their story columns set: one
write per row. A row stored earlier without a story (stories were off) gets its columns by an
UPDATE of just those rows; a row stored with one keeps it.

Entity rows (event_entity, revision 0005: who each item is about) go in with the rows of the
events really inserted, in the same statement. The ticker keys of an event are its `tickers`
column (the worker writes there the entities at or above the relevance cut plus its cashtags
and feed tags); each ticker's rollup row counts that entity's own sentiment and score when an
entity row gives one, else the item's.

An item is identified by (source, id). The table's key also holds published_at (the daily
partitions need it), so an item re-sent with another time (an RSS pubDate moved, a wire's
re-timed correction) would be a second row counted twice. `retimed` finds the rows of a batch
whose (source, id) is already stored under another published_at within a window; the worker
drops them before the stories and the insert (the first stored wins, as an exact replay's does)
and counts them as duplicates. Beyond the window (or after the first's day was dropped) a re-sent
item is stored again.
"""

from __future__ import annotations

COLUMNS = ("source", "id", "published_at", "text", "title", "url", "lang", "tickers", "ingested_at", "scored_at",
           "topic", "topic_confidence", "sentiment", "p_negative", "p_neutral", "p_positive", "score",
           "model_version", "truncated")
_cols = ", ".join(COLUMNS)
ENTITY_COLUMNS = ("source", "event_id", "published_at", "ticker", "name", "relevance", "sentiment", "score",
                  "sentiment_from", "spans", "sources", "counted", "directory_version")
_ecols = ", ".join(ENTITY_COLUMNS)
STORY_COLUMNS = ("story_id", "novel", "copies")
_scols = ", ".join(STORY_COLUMNS)

# emptied by every commit or rollback (in place: cheaper than a TRUNCATE statement, which gives a
# table created in an earlier transaction new files, and two round trips fewer per batch)
# (the story columns typed here, not read from scored_event: the write path works on a schema
# from before revision 0007 too, as long as no story columns are given)
CREATE_STAGE = f"""CREATE TEMP TABLE IF NOT EXISTS finsent_stage ON COMMIT DELETE ROWS AS
SELECT {_cols}, NULL::varchar(321) AS story_id, NULL::boolean AS novel, NULL::integer AS copies
FROM scored_event WITH NO DATA"""
CREATE_ENTITY_STAGE = f"""CREATE TEMP TABLE IF NOT EXISTS finsent_entity_stage ON COMMIT DELETE ROWS AS
SELECT {_ecols} FROM event_entity WITH NO DATA"""

_ADD = """n = r.n + EXCLUDED.n, negatives = r.negatives + EXCLUDED.negatives,
        neutrals = r.neutrals + EXCLUDED.neutrals, positives = r.positives + EXCLUDED.positives,
        score_sum = r.score_sum + EXCLUDED.score_sum"""
_SUMS = "sum(n), sum(negatives), sum(neutrals), sum(positives), sum(score_sum)"


def _coarser(table: str, bucket: str) -> str:
    return f"""INSERT INTO {table} AS r (key_type, key, bucket, n, negatives, neutrals, positives, score_sum)
    SELECT key_type, key, {bucket}, {_SUMS} FROM per_minute GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (key_type, key, bucket) DO UPDATE SET {_ADD}"""


# The rollup rows are upserted in key order, so two writers lock them in the same order.
_STORY_INSERT = f"INSERT INTO scored_event ({_cols}, {_scols}) SELECT {_cols}, {_scols} FROM finsent_stage"
INSERT_FROM_STAGE = f"""
WITH ins AS (
    INSERT INTO scored_event ({_cols}) SELECT {_cols} FROM finsent_stage
    ON CONFLICT DO NOTHING
    RETURNING source, id, published_at, topic, tickers, sentiment, score
), staged AS (
    SELECT DISTINCT ON (source, event_id, published_at, ticker) {_ecols} FROM finsent_entity_stage
), ents AS (
    INSERT INTO event_entity ({_ecols})
    SELECT st.* FROM staged st JOIN ins ON ins.source = st.source AND ins.id = st.event_id
        AND ins.published_at = st.published_at
    ORDER BY st.source, st.event_id, st.published_at, st.ticker
    ON CONFLICT DO NOTHING
), keyed AS (
    SELECT 'topic' AS key_type, topic AS key, published_at, sentiment, score FROM ins
    UNION ALL SELECT 'ticker', t.ticker, ins.published_at, coalesce(st.sentiment, ins.sentiment),
        coalesce(st.score, ins.score)
    FROM ins CROSS JOIN LATERAL unnest(ins.tickers) AS t(ticker)
    LEFT JOIN staged st ON st.source = ins.source AND st.event_id = ins.id AND st.published_at = ins.published_at
        AND st.ticker = t.ticker
    UNION ALL SELECT 'source', source, published_at, sentiment, score FROM ins
), per_minute AS (
    SELECT key_type, key, date_trunc('minute', published_at, 'UTC') AS minute, count(*) AS n,
           count(*) FILTER (WHERE sentiment = 'negative') AS negatives,
           count(*) FILTER (WHERE sentiment = 'neutral') AS neutrals,
           count(*) FILTER (WHERE sentiment = 'positive') AS positives, sum(score) AS score_sum
    FROM keyed GROUP BY 1, 2, 3
), rolled AS (
    INSERT INTO event_rollup_minute AS r (key_type, key, minute, n, negatives, neutrals, positives, score_sum)
    SELECT * FROM per_minute ORDER BY 1, 2, 3
    ON CONFLICT (key_type, key, minute) DO UPDATE SET {_ADD}
), rolled_5m AS (
    {_coarser("event_rollup_5m", "date_bin('5 minutes', minute, TIMESTAMPTZ '1970-01-01 00:00:00+00')")}
), rolled_hour AS (
    {_coarser("event_rollup_hour", "date_trunc('hour', minute, 'UTC')")}
), emptied AS (  -- the stage empties at commit; this for a second call in the same transaction
    DELETE FROM finsent_stage
), emptied_entities AS (
    DELETE FROM finsent_entity_stage
)
SELECT source, id FROM ins
"""
# the same with the story columns (the worker's path with stories on)
INSERT_FROM_STAGE_STORIES = INSERT_FROM_STAGE.replace(
    f"INSERT INTO scored_event ({_cols}) SELECT {_cols} FROM finsent_stage", _STORY_INSERT, 1)
assert INSERT_FROM_STAGE_STORIES != INSERT_FROM_STAGE


# (source, id) already stored under another published_at within ±$4 seconds: the batch's keys are
# probed in each partition the window reaches (run-time partition pruning keeps the others out)
RETIMED_SQL = """SELECT b.source, b.id, b.published_at
FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS b(source, id, published_at)
WHERE EXISTS (SELECT 1 FROM scored_event e WHERE e.source = b.source AND e.id = b.id
              AND e.published_at <> b.published_at
              AND e.published_at >= b.published_at - make_interval(secs => $4)
              AND e.published_at <= b.published_at + make_interval(secs => $4))"""


async def retimed(conn, rows: list[tuple], window_s: float) -> set[tuple]:
    """The (source, id, published_at) of `rows` (tuples in COLUMNS order) whose (source, id) is
    stored under another published_at less than `window_s` away; empty when `window_s` is 0."""
    if not rows or window_s <= 0:
        return set()
    found = await conn.fetch(RETIMED_SQL, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                             float(window_s))
    return {(r["source"], r["id"], r["published_at"]) for r in found}


# rows that were stored before without a story (ON CONFLICT DO NOTHING left them as they were)
STORY_FILL_SQL = """UPDATE scored_event e SET story_id = u.story_id, novel = u.novel, copies = u.copies
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::bool[], $6::int[])
  AS u(source, id, published_at, story_id, novel, copies)
WHERE e.source = u.source AND e.id = u.id AND e.published_at = u.published_at AND e.story_id IS NULL"""
_NO_STORY = (None, None, None)


async def store_scored(conn, rows: list[tuple], entities: list[tuple] = (),
                       stories: dict[tuple, tuple] | None = None) -> set[tuple[str, str]]:
    """Insert `rows` and their `entities` (asyncpg connection, inside the caller's transaction);
    returns the (source, id) pairs that were new. Rows already stored are absorbed, not counted
    again, and their entity rows are not written again. `spans` in an entity tuple is JSON text.
    `stories`: the rows' story columns by (source, id, published_at) (see the module text)."""
    if not rows:
        return set()
    if not conn.is_in_transaction():  # the stage tables empty at each commit: one is needed around it all
        async with conn.transaction():
            return await store_scored(conn, rows, entities, stories)
    await conn.execute(CREATE_STAGE)
    await conn.execute(CREATE_ENTITY_STAGE)
    if stories:
        await conn.copy_records_to_table("finsent_stage", columns=COLUMNS + STORY_COLUMNS,
                                         records=[(*r, *stories.get((r[0], r[1], r[2]), _NO_STORY)) for r in rows])
    else:
        await conn.copy_records_to_table("finsent_stage", records=rows, columns=COLUMNS)
    if entities:
        await conn.copy_records_to_table("finsent_entity_stage", records=entities, columns=ENTITY_COLUMNS)
    insert = INSERT_FROM_STAGE_STORIES if stories else INSERT_FROM_STAGE
    new = {(r["source"], r["id"]) for r in await conn.fetch(insert)}
    if stories:
        old = [(k, v) for k, v in stories.items() if (k[0], k[1]) not in new and v[0] is not None]
        if old:
            await conn.execute(STORY_FILL_SQL, *map(list, zip(*(k + v for k, v in old))))
    return new
