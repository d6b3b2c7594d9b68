"""Seed data for the dashboard tests: a small realistic set written through the worker's own
write path (core.events.store_scored), and a large set (millions of rows) loaded by COPY with
the rollups built by one INSERT … SELECT … GROUP BY, as the worker would have left them."""

from __future__ import annotations

import itertools
import random
import re
from datetime import date, datetime, timedelta, timezone
from itertools import accumulate

import psycopg

from core.events import COLUMNS
from models.labels import TOPICS

SOURCES = ("newswire", "twitter", "reddit", "analyst's-desk")  # a quote: checks Grafana's quoting
TICKERS = tuple(f"T{i:03d}" for i in range(100)) + ("AAPL", "TSLA", "NVDA")
SENTIMENTS = ("negative", "neutral", "positive")
MODEL = "finsent-minilm-v2"
_SENTIMENT_CUM = list(accumulate((0.3, 0.45, 0.25)))  # (what `choices` sums from the weights on every call)


def fresh_db(postgres, name: str) -> str:
    """Create database `name` on the session server, migrate it to head; returns its async URL."""
    from core.pg import migrate

    with psycopg.connect(postgres.dsn, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}")
    url = postgres.url.replace("/postgres?", f"/{name}?")
    migrate(url)
    return url


def event(rng: random.Random, i: int, at: datetime, prefix: str = "e") -> tuple:
    """One scored_event row in core.events.COLUMNS order."""
    sentiment = rng.choices(SENTIMENTS, cum_weights=_SENTIMENT_CUM)[0]
    p_neg = rng.uniform(0.5, 0.99) if sentiment == "negative" else rng.uniform(0.0, 0.3)
    p_pos = rng.uniform(0.5, 0.99) * (1 - p_neg) if sentiment == "positive" else rng.uniform(0, 1 - p_neg) / 2
    tickers = rng.sample(TICKERS[-3:], 1) if i % 3 == 0 else rng.sample(TICKERS, rng.randint(0, 2))
    source = SOURCES[i % len(SOURCES)]
    return (source, f"{prefix}{i}", at, f"headline {i} about {' '.join(tickers)}", f"Headline {i}",
            f"https://example.com/{prefix}{i}", "en", tickers, at, at, rng.choice(TOPICS), 0.9, sentiment,
            p_neg, 1 - p_neg - p_pos, p_pos, p_pos - p_neg, MODEL, False)


OPPOSITE = {"negative": "positive", "positive": "negative", "neutral": "neutral"}


def entities_of(e: tuple) -> list[tuple]:
    """event_entity rows (core.events.ENTITY_COLUMNS order) for a seeded event, as the worker writes
    them: one per ticker; the first keeps the item's sentiment, a second one reads the opposite
    (the per-entity head); every fourth event's entities were found by name alone; relevance
    below 0.5 (not counted) on every seventh."""
    source, eid, at, sentiment, score = e[0], e[1], e[2], e[12], e[16]
    n = int(eid.lstrip("abcdefghijklmnopqrstuvwxyz") or 0)
    rows = []
    for k, ticker in enumerate(e[7]):
        own = sentiment if k == 0 else OPPOSITE[sentiment]
        relevance = 0.3 if n % 7 == 0 else 0.9 - 0.2 * k
        rows.append((source, eid, at, ticker, f"{ticker} Inc", relevance, own, score if k == 0 else -score,
                     "item" if len(e[7]) == 1 else "entity_head", "[[0, 4]]",
                     ["name"] if n % 4 == 0 else ["cashtag", "name"], relevance >= 0.5, "seed-1"))
    return rows


# --- stories (migration 0007: scored_event.story_id/novel/copies and the `story` index) -----------
BIG_STORY, BIG_EVERY = 5, 97  # event 5 is copied by most 97th events after it (a syndicated story)


def founder_of(i: int) -> int:
    """The index of the event whose story event i belongs to (never after it, always a founder):
    three copies after every tenth event, a big syndicated story (every 97th event otherwise
    alone copies event 5), the rest stories of their own."""
    if i % 10 in (1, 2, 3):
        return i - i % 10
    return BIG_STORY if i > BIG_STORY and i % 10 and i % BIG_EVERY == BIG_STORY else i


def unassigned(i: int) -> bool:
    """Events left without a story (rows stored before stories, not backfilled): every eleventh
    story of its own."""
    return i % 11 == 4 and founder_of(i) == i and i % 10 != 0 and i != BIG_STORY


def story_plan(events: list[tuple], prefix: str = "e") -> tuple[list[tuple | None], list[tuple]]:
    """Per event (in order): (story_id, novel, copies so far), None when unassigned; and the
    `story` rows, as core.stories leaves them (story_id = the founding event's source/id, slot by its
    UTC day, up to 16 sources in order of arrival)."""
    from core.stories import slot_of, story_id_of

    per, stories = [], {}
    for i, e in enumerate(events):
        if unassigned(i):
            per.append(None)
            continue
        f = founder_of(i)
        st = stories.setdefault(f, {"first": events[f], "last": e[2], "copies": 0, "sources": []})
        st["copies"] += 1
        st["last"] = max(st["last"], e[2])
        if e[0] not in st["sources"]:
            st["sources"].append(e[0])
        per.append((story_id_of(events[f][0], events[f][1]), i == f, st["copies"]))
    rows = []
    for st in stories.values():
        first = st["first"]
        day = first[2].astimezone(timezone.utc).date()
        rows.append((slot_of(day), story_id_of(first[0], first[1]), day, first[2], st["last"], first[0], list(first[7]), st["copies"],
                     st["sources"][:16]))
    return per, rows


EVENT_STORY = """UPDATE scored_event e SET story_id = u.story_id, novel = u.novel, copies = u.copies
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::bool[], $6::int[])
  AS u(source, id, published_at, story_id, novel, copies)
WHERE e.source = u.source AND e.id = u.id AND e.published_at = u.published_at"""
# keys and sources travel as text joined by chr(31) (asyncpg's arrays of arrays must be rectangular)
STORY_INSERT = """INSERT INTO story (slot, story_id, day, first_at, last_at, source, keys, copies, sources)
SELECT slot, story_id, day, first_at, last_at, source, string_to_array(keys, chr(31)), copies,
       string_to_array(sources, chr(31))
FROM unnest($1::smallint[], $2::text[], $3::date[], $4::timestamptz[], $5::timestamptz[], $6::text[], $7::text[],
            $8::int[], $9::text[]) AS u(slot, story_id, day, first_at, last_at, source, keys, copies, sources)"""


async def seed_stories(conn, events: list[tuple]) -> None:
    """The small set's stories (story_plan), written by plain statements."""
    per, rows = story_plan(events)
    kept = [(e, s) for e, s in zip(events, per) if s is not None]
    await conn.execute(EVENT_STORY, *[[e[k] for e, _ in kept] for k in (0, 1, 2)], *[[s[k] for _, s in kept]
                                                                                    for k in (0, 1, 2)])
    cols = [list(c) for c in zip(*rows)]
    cols[6] = [chr(31).join(k) for k in cols[6]]
    cols[8] = [chr(31).join(x) for x in cols[8]]
    await conn.execute(STORY_INSERT, *cols)


def small_events(now: datetime, n: int = 3000, span: timedelta = timedelta(hours=6)) -> list[tuple]:
    rng = random.Random(8)
    return [event(rng, i, now - span * (1 - (i + 0.5) / n)) for i in range(n)]


ALERT = """INSERT INTO alert (key_type, key, window_start, window_end, n, negatives, baseline_rate, baseline_n, z,
    p_value, severity, sample_event_ids, state, opened_at, resolved_at, revision, updated_at)
VALUES ($1, $2, $3, $4, 40, 31, 0.3, 20, 6.5, 1e-9, $5, $6, $7, $8, $9, 0, $8) RETURNING id"""
ALERT_EVENT = """INSERT INTO alert_event (alert_id, event, revision, key_type, key, severity, at, payload)
VALUES ($1, $2, 0, $3, $4, $5, $6, '{}'::jsonb)"""


async def seed_alerts(conn, now: datetime, events: list[tuple]) -> None:
    """Open and resolved alerts on topics and tickers, with sample ids of real events."""
    plan = [("ticker", "AAPL", "high", 50, None), ("ticker", "TSLA", "medium", 200, 170),
            ("topic", "earnings", "low", 120, 100), ("topic", "macro", "high", 30, None),
            ("ticker", "NVDA", "low", 300, 240)]
    for key_type, key, severity, ago_min, resolved_ago in plan:
        start = now - timedelta(minutes=ago_min)
        samples = [f"{e[0]}/{e[1]}" for e in events if start - timedelta(minutes=2) <= e[2] <= start][:5]
        resolved = now - timedelta(minutes=resolved_ago) if resolved_ago else None
        state = "resolved" if resolved else "open"
        alert_id = await conn.fetchval(ALERT, key_type, key, start - timedelta(minutes=2), start, severity, samples,
                                       state, start, resolved)
        await conn.execute(ALERT_EVENT, alert_id, "opened", key_type, key, severity, start)
        if resolved:
            await conn.execute(ALERT_EVENT, alert_id, "resolved", key_type, key, severity, resolved)


async def seed_small(url: str, now: datetime) -> list[tuple]:
    import asyncpg

    from core.events import store_scored
    from core.pg import libpq_dsn

    events = small_events(now)
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        async with conn.transaction():
            await store_scored(conn, events, [x for e in events for x in entities_of(e)])
            await seed_stories(conn, events)
            await seed_alerts(conn, now, events)
    finally:
        await conn.close()
    return events


# --- the large set -------------------------------------------------------------------------

ROLLUP = """INSERT INTO event_rollup_minute (key_type, key, minute, n, negatives, neutrals, positives, score_sum)
SELECT key_type, key, date_trunc('minute', published_at, 'UTC'), count(*),
       count(*) FILTER (WHERE sentiment = 'negative'), count(*) FILTER (WHERE sentiment = 'neutral'),
       count(*) FILTER (WHERE sentiment = 'positive'), sum(score)
FROM (SELECT 'topic' AS key_type, topic AS key, published_at, sentiment, score FROM scored_event
      UNION ALL SELECT 'ticker', unnest(tickers), published_at, sentiment, score FROM scored_event
      UNION ALL SELECT 'source', source, published_at, sentiment, score FROM scored_event) AS keyed
GROUP BY 1, 2, 3"""

ALERTS_BULK = """INSERT INTO alert (key_type, key, window_start, window_end, n, negatives, baseline_rate, baseline_n,
    z, p_value, severity, sample_event_ids, state, opened_at, resolved_at, revision, updated_at)
SELECT CASE WHEN mod(g, 3) = 0 THEN 'topic' ELSE 'ticker' END,
       CASE WHEN mod(g, 3) = 0 THEN (%(topics)s::text[])[1 + mod(g, 20)] ELSE 'T' || lpad(mod(g, 100)::text, 3, '0') END,
       t - interval '2 minutes', t, 40 + mod(g, 30), 30 + mod(g, 10), 0.3, 20, 5 + mod(g, 7), 1e-8, (ARRAY['low','medium','high'])[1 + mod(g, 3)],
       ARRAY['newswire/b' || (%(events)s - g * %(ratio)s)], CASE WHEN mod(g, 10) = 0 THEN 'open' ELSE 'resolved' END, t,
       CASE WHEN mod(g, 10) = 0 THEN NULL ELSE t + make_interval(mins => 5 + mod(g, 60)) END, 0, t
FROM generate_series(1, %(n)s) AS g, LATERAL (SELECT %(end)s::timestamptz - g * %(step)s::interval AS t) AS w"""


# event_entity rows for the large set, as the worker writes them: one per ticker, a second entity
# reading the opposite of its item, a quarter found by name alone
ENTITIES = """INSERT INTO event_entity (source, event_id, published_at, ticker, name, relevance, sentiment, score,
    sentiment_from, spans, sources, counted, directory_version)
SELECT s.source, s.id, s.published_at, t.ticker, t.ticker || ' Inc', CASE WHEN t.k = 1 THEN 0.9 ELSE 0.6 END,
       CASE WHEN t.k = 1 THEN s.sentiment WHEN s.sentiment = 'negative' THEN 'positive'
            WHEN s.sentiment = 'positive' THEN 'negative' ELSE 'neutral' END,
       CASE WHEN t.k = 1 THEN s.score ELSE -s.score END,
       CASE WHEN cardinality(s.tickers) = 1 THEN 'item' ELSE 'entity_head' END, '[]'::jsonb,
       CASE WHEN hashtext(s.id) % 4 = 0 THEN ARRAY['name'] ELSE ARRAY['cashtag', 'name'] END::varchar[], TRUE, 'seed-1'
FROM scored_event s, unnest(s.tickers) WITH ORDINALITY AS t(ticker, k)"""


def zipf_tickers(rng: random.Random) -> list[str]:
    """0–3 tickers per item; a few tickers carry most mentions (rank-1/k weights)."""
    k = rng.choices((0, 1, 2, 3), cum_weights=_K_CUM)[0]
    return list(dict.fromkeys(rng.choices(_ZIPF, cum_weights=_ZIPF_CUM, k=k)))


WEIGHTS = [1 / (r + 1) for r in range(100)]
# the cumulative weights `choices` would sum on every call (the same draws, summed once: the 2 M-row
# seed spent a tenth of its time there)
_K_CUM, _ZIPF, _ZIPF_CUM = list(accumulate((0.35, 0.4, 0.2, 0.05))), TICKERS[:100], list(accumulate(WEIGHTS))


def copy_events(dsn: str, end: datetime, n: int, span: timedelta) -> None:
    """COPY n events spread evenly over (end - span, end], with daily partitions made first, each
    with its story (founder_of), and the `story` rows."""
    from core.stories import slot_of, story_id_of

    rng = random.Random(2)
    step = span / n
    stories: dict[int, list] = {}  # founder → [slot, story_id, day, first_at, last_at, source, keys, copies, sources]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for d in range(span.days + 2):
            conn.execute("SELECT finsent_ensure_day_partition(%s)", ((end - timedelta(days=d)).date(),))

        def event_lines():
            for i in range(n):
                row = list(event(rng, i, end - step * (n - i), prefix="b"))
                row[7] = zipf_tickers(rng)
                f = founder_of(i)
                if f == i:
                    day = row[2].astimezone(timezone.utc).date()
                    stories[i] = [slot_of(day), story_id_of(row[0], row[1]), day, row[2], row[2], row[0], row[7], 0, []]
                st = stories[f]
                st[4], st[7] = row[2], st[7] + 1
                if row[0] not in st[8] and len(st[8]) < 16:
                    st[8].append(row[0])
                yield copy_line(row + [st[1], f == i, st[7]])

        # (COPY text lines made here, not psycopg's write_row, which took a third of the seed)
        with conn.cursor().copy(f"COPY scored_event ({', '.join(COLUMNS)}, story_id, novel, copies) FROM STDIN") as copy:
            _write_lines(copy, event_lines())
        with conn.cursor().copy(STORY_COPY) as copy:
            _write_lines(copy, map(copy_line, stories.values()))


def _write_lines(copy, lines, per: int = 500) -> None:
    """COPY text lines, `per` a write."""
    for chunk in iter(lambda: list(itertools.islice(lines, per)), []):
        copy.write("".join(chunk))


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")


def _text(s: str) -> str:
    return s.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE.search(s) else s  # (translate is slow; most need none)


def copy_line(values) -> str:
    """One row in COPY's text format, as psycopg's `write_row` sends it (tests/dashboards/test_seed.py
    compares what the two load): None as \\N, booleans t/f, a list as an array literal of quoted elements, a date or
    datetime in ISO 8601, a float by repr; backslashes, tabs and line ends escaped."""
    out, last, last_s = [], None, ""
    for v in values:
        if v is None:
            out.append("\\N")
        elif v is True or v is False:
            out.append("t" if v else "f")
        elif isinstance(v, str):
            out.append(_text(v))
        elif isinstance(v, (list, tuple)):
            out.append(_text("{" + ",".join('"' + str(x).replace("\\", "\\\\").replace('"', '\\"') + '"' for x in v)
                             + "}"))
        elif isinstance(v, (datetime, date)):
            if v is not last:  # (an event's three times are one object)
                last, last_s = v, v.isoformat()
            out.append(last_s)
        elif isinstance(v, float):
            out.append(repr(v))
        else:
            out.append(_text(str(v)))
    return "\t".join(out) + "\n"


STORY_COPY = "COPY story (slot, story_id, day, first_at, last_at, source, keys, copies, sources) FROM STDIN"


def seed_large(dsn: str, end: datetime, n: int, span: timedelta, alerts: int = 5000) -> dict[str, float]:
    """COPY the events, build the rollups, add alerts, ANALYZE; returns seconds per step."""
    import time

    took, t0 = {}, time.perf_counter()
    copy_events(dsn, end, n, span)
    took["copy"] = time.perf_counter() - t0
    with psycopg.connect(dsn, autocommit=True) as conn:
        for step, sql, params in (("rollups", ROLLUP, None), ("entities", ENTITIES, None), ("alerts", ALERTS_BULK, alert_params(n, alerts, end, span)),
                                  ("analyze", "ANALYZE", None)):
            t0 = time.perf_counter()
            conn.execute(sql, params)
            took[step] = time.perf_counter() - t0
    return took


def alert_params(n: int, alerts: int, end: datetime, span: timedelta) -> dict:
    # sample ids name the event copied at the alert's time (event i is at end - (n - i) * span / n)
    return {"topics": list(TOPICS), "n": alerts, "end": end, "step": span / alerts, "events": n, "ratio": n // alerts}


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)
