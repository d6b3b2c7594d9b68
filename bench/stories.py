"""Stories: how well copies are found (labelled pairs) and how fast the worker's assign path runs
against a 72 h index in Postgres (a benchmark, not a test).

    python bench/stories.py pairs                     # precision / recall on labelled pairs
    python bench/stories.py throughput --index 2000000 --items 20000

Labelled pairs are built from the finance tweets in ../shared/data (twitter_financial_news_topic,
MIT), seeded, split by source text into a tuning half (where the Jaccard threshold and the band
rule were chosen) and a held-out half (the figures quoted):
  same story      repost    a retweet / "BREAKING:" / emoji prefix, a new link, an emoji tail
                  rewrite   a syndicated rewrite: outlet suffix, case, two or three synonym swaps,
                            a word dropped, a clause moved
                  update    the same story with new figures (every number changed)
  not the story   template  the same text with the company swapped for another (the linker's span
                            replaced by another directory name; cashtags swapped): must NOT merge
                  company   two different tweets about the same company
                  random    two different tweets
Keys are the linker's tickers (models.entities, as the worker computes them).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import stories as st  # noqa: E402
from core.settings import get_settings  # noqa: E402

DATA = get_settings().data_dir
SYNONYMS = [("shares", "stock"), ("falls", "drops"), ("fall", "drop"), ("rises", "climbs"), ("rise", "climb"),
            ("says", "said"), ("cuts", "slashes"), ("buy", "acquire"), ("plunges", "tumbles"), ("jumps", "surges"),
            ("profit", "earnings"), ("quarterly", "Q4"), ("company", "firm"), ("after", "following"),
            ("amid", "as"), ("to", "will"), ("for", "on"), ("in", "at"), ("reports", "posts"), ("CEO", "chief executive")]
OUTLETS = [" - Reuters", " | Bloomberg", " (AP)", " — MarketWatch", " via @WSJ", " - CNBC"]
PREFIXES = ["RT @marketwire: ", "BREAKING: ", "JUST IN: ", "🚨 ", "📉📉 ", "$SPY ", "Update: ", "RT @traderjoe99 "]
KINDS_SAME = ("repost", "rewrite", "update")
KINDS_OTHER = ("template", "company", "random")


def load_texts(limit: int = 6000, seed: int = 5) -> list[str]:
    path = DATA / "twitter_financial_news_topic" / "topic_train.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r["text"] for r in csv.DictReader(f)]
    rows = sorted({r.strip() for r in rows if len(r.split()) >= 6})
    random.Random(seed).shuffle(rows)
    return rows[:limit]


def repost(t: str, rng: random.Random) -> str:
    out = rng.choice(PREFIXES) + t if rng.random() < 0.8 else t
    if rng.random() < 0.5:
        out = re.sub(r"https?://\S+", "", out).strip() + f" https://t.co/{rng.getrandbits(40):x}"
    if rng.random() < 0.4:
        out += rng.choice([" 🚀", " 😱", " 📉", " 🔥🔥"])
    return out


def rewrite(t: str, rng: random.Random) -> str:
    words = re.sub(r"https?://\S+", "", t).split()
    swaps = [i for i, w in enumerate(words) if any(w.lower() == a.lower() for a, _ in SYNONYMS)]
    for i in rng.sample(swaps, min(len(swaps), rng.choice([2, 3]))):
        words[i] = next(b for a, b in SYNONYMS if a.lower() == words[i].lower())
    if len(words) > 8 and rng.random() < 0.5:
        del words[rng.randrange(1, len(words) - 1)]
    out = " ".join(words)
    if rng.random() < 0.3 and ", " in out:  # move a trailing clause to the front
        head, tail = out.rsplit(", ", 1)
        out = f"{tail[:1].upper()}{tail[1:]}: {head}"
    if rng.random() < 0.3:
        out = out.title()
    return out + (rng.choice(OUTLETS) if rng.random() < 0.7 else "")


def update(t: str, rng: random.Random) -> str | None:
    if not re.search(r"\d", re.sub(r"https?://\S+", "", t)):
        return None

    def new(m: re.Match) -> str:
        v = m.group(0)
        return str(int(float(v.replace(",", "")) * rng.uniform(1.1, 3.0)) + 1) if v.replace(",", "").replace(".", "").isdigit() else v

    return re.sub(r"(?<![/\w])\d[\d,]*(?:\.\d+)?", new, re.sub(r"https?://\S+", "", t)).strip()


def template(t: str, ents: list, names: list[tuple[str, str]], rng: random.Random) -> str | None:
    """The same text about another company: every span of the first entity named by its name
    (not only a cashtag: an unknown name left in place would still be the same story) replaced by
    another directory company's name, its cashtags by that company's."""
    ent = next((e for e in ents if "name" in e.sources and e.spans), None)
    if ent is None:
        return None
    ticker, name = rng.choice([n for n in names if n[0] != ent.ticker])
    out, last = [], 0
    for s, e in sorted(ent.spans):
        if s < last:
            continue
        out += [t[last:s], "$" + ticker if t[s] == "$" else name]
        last = e
    return "".join(out + [t[last:]])


def build_pairs(texts: list[str], seed: int = 5) -> list[tuple[str, str, str, bool, int]]:
    """(kind, text a, text b, same story?, group) where group 0/1 is the tuning / held-out half."""
    from models.entities import Directory, Linker

    rng = random.Random(seed)
    directory = Directory.default()
    linker = Linker(directory)
    names = sorted((s.ticker, s.name) for s in directory.symbols.values() if s.primary and s.name and len(s.name) < 30)
    ents = [linker.link(t) for t in texts]
    by_company: dict[str, list[int]] = {}
    for i, es in enumerate(ents):
        for e in es:
            by_company.setdefault(e.ticker, []).append(i)
    pairs = []
    for i, t in enumerate(texts):
        g = i % 2
        pairs.append(("repost", t, repost(t, rng), True, g))
        pairs.append(("rewrite", t, rewrite(t, rng), True, g))
        u = update(t, rng)
        if u and u != re.sub(r"https?://\S+", "", t).strip():
            pairs.append(("update", t, u, True, g))
        swapped = template(t, ents[i], names, rng)
        if swapped and swapped != t:
            pairs.append(("template", t, swapped, False, g))
        pairs.append(("random", t, texts[rng.randrange(len(texts))], False, g))
    for ticker, idx in by_company.items():
        for a, b in zip(idx[::2], idx[1::2]):
            if texts[a] != texts[b]:
                pairs.append(("company", texts[a], texts[b], False, a % 2))
    return [p for p in pairs if p[1] != p[2] or p[3]]


def keys_for(texts: list[str]) -> dict[str, tuple[str, ...]]:
    from models.entities import Directory, Linker

    linker = Linker(Directory.default())
    return {t: tuple(e.ticker for e in linker.link(t) if e.relevance >= 0.5) for t in texts}


def decide(signer: st.Signer, pairs: list, keys: dict, need: int = st.MIN_BANDS) -> list[bool]:
    """The worker's decision for each pair: >= `need` equal band keys and compatible companies."""
    texts = sorted({p[1] for p in pairs} | {p[2] for p in pairs})
    bands = dict(zip(texts, signer.bands(texts, [keys[t] for t in texts])))
    return [st.copies_of(bands[a], bands[b], need) and st.compatible(st.names_of(a, keys[a]), st.names_of(b, keys[b]))
            for _, a, b, _, _ in pairs]


def pr(pred: list[bool], gold: list[bool]) -> tuple[float, float]:
    tp = sum(p and g for p, g in zip(pred, gold))
    return tp / max(1, sum(pred)), tp / max(1, sum(gold))


def surge_trials(texts: list[str], keys: dict, group: int, trials: int, n: int, seed: int) -> list[list]:
    """Labelled surges: per trial, `n` different headlines about one company within minutes, each
    followed later by one copy (a repost or a rewrite). Half the trials are tweets of `group` that
    name no company (so the company rule cannot keep them apart) given one ticker key; half are
    the simulator's planted surge headlines (stream.simulate.surge_headline: one event template
    per story, the company's name in each), tagged with their ticker as a news feed does.
    Each trial: [(st.Item, gold story)] in event-time order."""
    from datetime import datetime, timedelta, timezone

    from stream.simulate import COMPANIES, surge_headline

    rng = random.Random(seed + group)
    plain = [t for i, t in enumerate(texts) if i % 2 == group and "$" not in t and not keys.get(t)]
    tickers = sorted(COMPANIES)
    t0 = datetime(2026, 1, 5, 14, tzinfo=timezone.utc)
    out = []
    for k in range(trials):
        ticker = tickers[k % len(tickers)]
        if k % 2:
            start = rng.randrange(64)  # n consecutive event templates (all different for n <= 32)
            heads = [surge_headline(start + j, ticker, rng.randint(2, 19)) for j in range(n)]
        else:
            heads = rng.sample(plain, n)
            ticker = f"Q{k:03d}"
        items = [(st.Item("wire", f"t{k}-{j}", t0 + timedelta(seconds=8 * j), h, (ticker,)), j)
                 for j, h in enumerate(heads)]
        items += [(st.Item("social", f"t{k}-{j}c", t0 + timedelta(seconds=160 + 8 * j),
                           repost(h, rng) if rng.random() < 0.5 else rewrite(h, rng), (ticker,)), j)
                  for j, h in enumerate(heads)]
        out.append(items)
    return out


def surge_case(stories: st.Stories, trials: list[list]) -> tuple[float, float, float]:
    """(share of trials whose n headlines stay n stories, stories found per headline, share of
    copies that join their own headline's story), decided as the worker does (assign_offline)."""
    whole = stories_per = joined = copies = 0
    for items in trials:
        got = stories.assign_offline([it for it, _ in items])
        n = sum(1 for it, _ in items if not it.id.endswith("c"))
        own = {g: a.story_id for (it, g), a in zip(items, got) if not it.id.endswith("c")}
        found = len(set(own.values()))
        whole += found == n
        stories_per += found / n
        for (it, g), a in zip(items, got):
            if it.id.endswith("c"):
                copies += 1
                joined += a.story_id == own[g]
    return whole / len(trials), stories_per / len(trials), joined / max(1, copies)


GRID = [(nw, b, r) for nw in (0, 1, 3) for b, r in ((12, 2), (16, 2), (16, 3))]


def tuning_table(texts, pairs, keys, args) -> Table:
    """Every (name weight, bands, rows, equal bands needed) on the tuning half: pair F1 and the
    surge case (n different headlines of one company must stay n stories)."""
    trials = surge_trials(texts, keys, 0, args.trials, args.surge, args.seed)
    tune = Table(title=f"tuning half: the band rule and the company weight (pairs; {args.trials} surges of "
                       f"{args.surge} different headlines + one copy each)")
    for col in ("name weight", "bands x rows", "needed", "precision", "recall", "F1", "surges kept apart",
                "stories/headline", "copies joined"):
        tune.add_column(col, justify="right")
    gold = [g for g, q in zip((p[3] for p in pairs), pairs) if q[4] == 0]
    weight = st.NAME_WEIGHT
    try:
        for nw, b, r in GRID:
            st.NAME_WEIGHT = nw
            signer = st.Signer(b * r, b)
            for need in (1, 2, 3):
                pred = decide(signer, pairs, keys, need)
                p, rc = pr([x for x, q in zip(pred, pairs) if q[4] == 0], gold)
                kept, per, joined = surge_case(st.Stories(signer, need=need), trials)
                chosen = (nw, b, r, need) == (weight, st.BANDS, st.ROWS, st.MIN_BANDS)
                tune.add_row(f"{nw}{' (chosen)' if chosen else ''}", f"{b} x {r}", str(need), f"{p:.4f}",
                             f"{rc:.4f}", f"{2 * p * rc / max(p + rc, 1e-9):.4f}", f"{kept:.3f}", f"{per:.3f}",
                             f"{joined:.3f}")
    finally:
        st.NAME_WEIGHT = weight
    return tune


def cmd_pairs(args, console: Console) -> None:
    texts = load_texts(args.texts, args.seed)
    pairs = build_pairs(texts, args.seed)
    keys = keys_for(sorted({p[1] for p in pairs} | {p[2] for p in pairs} | set(texts)))
    signer = st.Signer()
    gold = [p[3] for p in pairs]
    if not args.no_grid:
        console.print(tuning_table(texts, pairs, keys, args))
    pred = decide(signer, pairs, keys)
    table = Table(title=f"held-out half ({len(texts):,} tweets, seed {args.seed}): pairs decided as the worker does "
                        f"(name weight {st.NAME_WEIGHT}, {st.BANDS} bands of {st.ROWS}, {st.MIN_BANDS} needed)")
    for col in ("kind", "same story?", "pairs", "merged", "share merged"):
        table.add_column(col, justify="right")
    for kind in (*KINDS_SAME, *KINDS_OTHER):
        sel = [x for x, q in zip(pred, pairs) if q[0] == kind and q[4] == 1]
        table.add_row(kind, "yes" if kind in KINDS_SAME else "no", f"{len(sel):,}", f"{sum(sel):,}",
                      f"{sum(sel) / max(1, len(sel)):.3f}")
    p, r = pr([x for x, q in zip(pred, pairs) if q[4] == 1], [g for g, q in zip(gold, pairs) if q[4] == 1])
    table.add_row("all", "", "", "", f"precision {p:.4f} recall {r:.4f}")
    console.print(table)
    kept, per, joined = surge_case(st.Stories(signer), surge_trials(texts, keys, 1, args.trials, args.surge,
                                                                    args.seed))
    console.print(f"held-out surges: {args.trials} of {args.surge} different headlines about one company within "
                  f"2 minutes, then one copy of each: {kept:.3f} of surges stay {args.surge} stories "
                  f"({per:.3f} stories per headline); {joined:.3f} of copies join their own headline's story")
    for kind in ("template", "rewrite"):
        wrong = [q for x, q in zip(pred, pairs) if q[0] == kind and q[4] == 1 and x != q[3]][: args.show]
        for q in wrong:
            console.print(f"  {kind} {'merged' if not q[3] else 'missed'}: {q[1][:90]!r} | {q[2][:90]!r}")


PREFILL = """WITH s AS (
    INSERT INTO story (slot, story_id, day, first_at, last_at, source, keys, copies, sources)
    SELECT ((day - date '0001-01-01') + 1) % {slots}, 'pre/' || i, day, first_at, first_at, 'wire', '{{}}', 1, '{{wire}}'
    FROM (SELECT i, first_at, (first_at AT TIME ZONE 'UTC')::date AS day
          FROM (SELECT i, $1::timestamptz - random() * interval '72 hours' AS first_at
                FROM generate_series($2::bigint, $3::bigint) AS i) a) b
    RETURNING slot, story_id, day, first_at)
INSERT INTO story_key (slot, band, story_id, day, first_at)
SELECT s.slot, (random() * 1.8e19 - 9.0e18)::bigint, s.story_id, s.day, s.first_at
FROM s, generate_series(1, {bands}) AS b
ON CONFLICT DO NOTHING"""


# the stored rows of the index's stories (a 72 h index of 2 M stories is 2 M+ rows in scored_event):
# what the replay check and the scored_event update must not scan
PREFILL_EVENTS = """INSERT INTO scored_event (source, id, published_at, text, tickers, ingested_at, topic, topic_confidence,
    sentiment, p_negative, p_neutral, p_positive, score, model_version, story_id, novel, copies)
SELECT 'pre', story_id, first_at, 'prefilled headline ' || story_id, '{}', first_at, 'M&A', 0.9, 'neutral', 0.1, 0.8,
    0.1, 0, 'v-pre', story_id, true, 1
FROM story WHERE story_id = ANY(SELECT 'pre/' || i FROM generate_series($1::bigint, $2::bigint) AS i)
ON CONFLICT DO NOTHING"""


def stream_items(texts: list[str], n: int, copy_share: float, now, seed: int):
    """n items over the last hour, in event-time order: new tweets (each once) and, `copy_share`
    of them, reposts or rewrites of an earlier one; with the linker's keys, as the worker has them."""
    from datetime import timedelta

    rng, out, fresh = random.Random(seed), [], iter(texts)
    for i in range(n):
        text = next(fresh, None) if not out or rng.random() >= copy_share else None
        if text is None:
            base = rng.choice(out[-2000:])[1]
            text = repost(base, rng) if rng.random() < 0.6 else rewrite(base, rng)
        at = now - timedelta(seconds=3600 * (1 - i / n))
        out.append((f"b{seed}-{now.timestamp():.0f}-{i}", text, at))  # new ids every run (a rerun is not a replay)
    keys = keys_for(sorted({t for _, t, _ in out}))
    return [(i, t, at, keys[t]) for i, t, at in out]


async def throughput(args, console: Console) -> None:
    import resource
    import tempfile
    import time
    from datetime import datetime, timezone

    import asyncpg

    from core.events import store_scored
    from core.pg import libpq_dsn, migrate
    from finsent.services import Postgres

    base = Path(args.pgdir or tempfile.mkdtemp(prefix="finsent-stories-"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    pg = Postgres(base / "data", database="bench_stories").start()
    # the server as one would run it for this index (pgserver's defaults are 128 MB of shared buffers, a
    # quarter of the key index, and a checkpoint every 1 GB of WAL); a change restarts it
    want = {"shared_buffers": args.shared_buffers, "max_wal_size": args.max_wal_size, "checkpoint_timeout": "30min"}
    if any(pg.server.psql(f"SHOW {k};").split("\n")[2].strip() != v for k, v in want.items()):
        for k, v in want.items():
            pg.server.psql(f"ALTER SYSTEM SET {k} = '{v}';")
        pg.stop()
        pg = Postgres(base / "data", database="bench_stories").start()
    migrate(pg.url)
    conn = await asyncpg.connect(libpq_dsn(pg.url))
    others = [await asyncpg.connect(libpq_dsn(pg.url)) for _ in range(args.workers - 1)]
    now = datetime.now(timezone.utc)
    have = await conn.fetchval("SELECT count(*) FROM story WHERE story_id LIKE 'pre/%'")
    t0 = time.perf_counter()
    step = 100_000
    for lo in range(have, args.index, step):
        hi = min(args.index, lo + step) - 1
        await conn.execute(PREFILL.format(slots=st.SLOTS, bands=st.BANDS), now, lo, hi)
        console.print(f"  index: {hi + 1:,} stories", end="\r")
    have = await conn.fetchval("SELECT count(*) FROM scored_event WHERE source = 'pre'")
    for lo in range(have, args.index, step):
        hi = min(args.index, lo + step) - 1
        await conn.execute(PREFILL_EVENTS, lo, hi)
        console.print(f"  stored rows of the index: {hi + 1:,}", end="\r")
    # what an earlier run assigned goes (its tweets would all be copies now): only the prefill stays
    await conn.execute("DELETE FROM story_key WHERE story_id NOT LIKE 'pre/%'")
    await conn.execute("DELETE FROM story WHERE story_id NOT LIKE 'pre/%'")
    await conn.execute("DELETE FROM scored_event WHERE source = 'bench'")
    # the rows just deleted would otherwise sit in the indexes the run probes, at the very keys it
    # probes again (its texts are the same every run): vacuumed, as a live index is by autovacuum.
    # INDEX_CLEANUP ON: a plain VACUUM skips the indexes when under 2 % of the heap's pages hold dead
    # rows (one run's ~150,000 of 24 M keys), which left each earlier run's keys in the index as dead
    # entries that this run's probe found and fetched from the heap (1,957 of 2,922 in one batch)
    await conn.execute("VACUUM (ANALYZE, INDEX_CLEANUP ON) story, story_key, scored_event")
    size = await conn.fetchval("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                               "WHERE c.relname ~ '^story_s[0-9]$' OR c.relname = 'story_key'")
    bands = await conn.fetchval("SELECT count(*) FROM story_key")
    events = await conn.fetchval("SELECT count(*) FROM scored_event")
    console.print(f"index: {args.index:,} stories, {bands:,} band rows, {size / 2**20:,.0f} MiB with indexes; "
                  f"{events:,} rows in scored_event "
                  f"(prefilled in {time.perf_counter() - t0:.0f} s)")

    texts = load_texts(args.texts, args.seed)
    items = stream_items(texts, args.items, args.copy_share, now, args.seed)
    workers = [(c, st.Stories(cache_keys=args.cache_keys)) for c in [conn, *others]]
    sign_s = assign_s = store_s = commit_s = 0.0
    novel = 0
    if args.after_checkpoint:  # the worst case: every index page the run touches first is a full-page image
        await conn.execute("CHECKPOINT")
    backends = [await c.fetchval("SELECT pg_backend_pid()") for c, _ in workers]  # CPU time: load shifts it less
    cpu0, load0, wal0 = sum(map(backend_cpu_s, backends)), os.getloadavg()[0], await conn.fetchrow(WAL_SQL)
    wall = None
    if args.concurrent:  # each worker its own batches, all at once: they meet at the advisory lock
        wall, novel = await _concurrently(workers, items, args.batch)
    for lo in range(0, len(items) if wall is None else 0, args.batch):
        chunk = items[lo:lo + args.batch]
        wconn, stories = workers[(lo // args.batch) % len(workers)]
        rows = _rows(chunk)
        t0 = time.perf_counter()
        # the worker computes band keys in its scoring thread, outside the store transaction
        # (and the companies each names: stream/pipeline.py's _bands)
        batch = _items(stories, chunk)
        t1 = time.perf_counter()
        async with wconn.transaction():  # as stream/sink.py: assign first, then one insert with the story columns
            got = await stories.assign(wconn, batch, write_events=False)
            t2 = time.perf_counter()
            await store_scored(wconn, rows, stories={(a.source, a.id, a.published_at): (a.story_id, a.novel, a.copies)
                                                    for a in got})
            t3 = time.perf_counter()
        commit_s += time.perf_counter() - t3
        sign_s, assign_s, store_s = sign_s + (t1 - t0), assign_s + (t2 - t1), store_s + (t3 - t2)
        novel += sum(a.novel for a in got)
    cpu = sum(map(backend_cpu_s, backends)) - cpu0
    served = sum(w.cache.served for _, w in workers)
    probed = sum(w.cache.probed for _, w in workers)
    wal = {k: v - wal0[k] for k, v in (await conn.fetchrow(WAL_SQL)).items()}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = Table(title=f"assign path: {args.items:,} items in batches of {args.batch} against a 72 h index of "
                        f"{args.index:,} stories ({_who(args)}, pgserver PostgreSQL 16 on this machine, "
                        + ", ".join(f"{k} {v}" for k, v in want.items()) + ")")
    for col in ("step", "seconds", "items/s"):
        table.add_column(col, justify="right")
    n = len(items)
    if wall is not None:
        table.add_row(f"[b]worker path: {len(workers)} workers at once[/b] (wall clock; each worker every Nth batch)",
                      f"{wall:.2f}", f"[b]{n / wall:,.0f}[/b]")
    else:
        table.add_row("band keys and names (Signer.bands, names_of; the worker's scoring thread)", f"{sign_s:.2f}",
                      f"{n / sign_s:,.0f}")
        table.add_row("assign with the keys given (lock, replay check, candidates, story + band upserts)",
                      f"{assign_s:.2f}", f"{n / assign_s:,.0f}")
        table.add_row("both, one after the other (one core's worth of the worker path)", f"{sign_s + assign_s:.2f}",
                      f"{n / (sign_s + assign_s):,.0f}")
        table.add_row("store_scored (the worker's insert, story columns included)", f"{store_s:.2f}",
                      f"{n / store_s:,.0f}")
        path = store_s + assign_s + commit_s
        table.add_row("[b]worker path: assign + store_scored + commit[/b] (the issue's target: 5,000 items/s)",
                      f"{path:.2f}", f"[b]{n / path:,.0f}[/b]")
    console.print(table)
    batches = -(-n // args.batch)
    console.print(f"PostgreSQL backend CPU {cpu * 1000 / batches:.1f} ms per batch of {args.batch} (store, assign, "
                  f"commit); load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
                  f"on {os.cpu_count()} CPUs")
    console.print(f"band keys of the batches: {served + probed:,}, {served / max(1, served + probed):.0%} of them served "
                  f"by the workers' key caches (held by a live story: not probed)")
    console.print(f"WAL a batch: {float(wal['wal_bytes']) / batches / 2**20:.2f} MiB, {wal['wal_fpi'] / batches:.0f} "
                  f"full-page images; checkpoints during the run: {wal['checkpoints']}"
                  f"{' (a CHECKPOINT just before it: the worst case)' if args.after_checkpoint else ''}")
    console.print(f"{novel:,} of {len(items):,} items novel (about {args.copy_share:.0%} were built as copies; "
                  f"real tweets also repeat and share templates); "
                  f"bench process max RSS {rss:,.0f} MiB")
    for c, _ in workers:
        await c.close()
    if not args.pgdir:
        pg.stop()


def _rows(chunk) -> list[tuple]:
    return [("bench", i, at, text, None, None, "en", [], at, at, "M&A", 0.9, "negative", 0.8, 0.1, 0.1, -0.7,
             "v-bench", False) for i, text, at, _ in chunk]


def _items(stories, chunk) -> list:
    bands = stories.signer.bands([text for _, text, _, _ in chunk], [k for *_, k in chunk])
    names = [st.names_of(text, k) for _, text, _, k in chunk]
    return [st.Item("bench", i, at, text, k, tuple(b), n) for (i, text, at, k), b, n in zip(chunk, bands, names)]


async def _concurrently(workers, items, size: int) -> tuple[float, int]:
    """Every worker stores its own batches (worker k the k-th of every N) at the same time as the others,
    as worker processes do; returns (wall seconds, novel items). Band keys are made first, untimed."""
    import asyncio
    import time

    from core.events import store_scored

    batches = [(_rows(items[lo:lo + size]), _items(workers[0][1], items[lo:lo + size]))
               for lo in range(0, len(items), size)]

    async def worker(k: int) -> int:
        wconn, stories = workers[k]
        novel = 0
        for rows, batch in batches[k::len(workers)]:
            async with wconn.transaction():
                got = await stories.assign(wconn, batch, write_events=False)
                await store_scored(wconn, rows, stories={(a.source, a.id, a.published_at):
                                                         (a.story_id, a.novel, a.copies) for a in got})
            novel += sum(a.novel for a in got)
        return novel

    t0 = time.perf_counter()
    novel = sum(await asyncio.gather(*(worker(k) for k in range(len(workers)))))
    return time.perf_counter() - t0, novel


def _who(args) -> str:
    cache = f"a key cache of {args.cache_keys:,} each" if args.cache_keys else "no key cache"
    how = "at once" if args.concurrent else "taking batches in turn"
    return f"{args.workers} workers {how}, {cache}" if args.workers > 1 else f"one worker, {cache}"


WAL_SQL = """SELECT w.wal_bytes, w.wal_fpi, b.checkpoints_timed + b.checkpoints_req AS checkpoints
FROM pg_stat_wal w, pg_stat_bgwriter b"""


def backend_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a local PostgreSQL backend (/proc; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    import asyncio

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pairs", help="precision / recall on labelled pairs")
    p.add_argument("--texts", type=int, default=6000)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--show", type=int, default=5, help="wrong decisions to print per kind")
    p.add_argument("--trials", type=int, default=200, help="labelled surges per half")
    p.add_argument("--surge", type=int, default=15, help="different headlines about one company per surge")
    p.add_argument("--no-grid", action="store_true", help="skip the tuning grid (held-out figures only)")
    t = sub.add_parser("throughput", help="the assign path against a prefilled index in Postgres")
    t.add_argument("--index", type=int, default=2_000_000, help="stories in the 72 h index")
    t.add_argument("--items", type=int, default=20_000)
    t.add_argument("--batch", type=int, default=256)
    t.add_argument("--copy-share", type=float, default=0.3)
    t.add_argument("--texts", type=int, default=20000, help="distinct tweets to draw new items from")
    t.add_argument("--seed", type=int, default=5)
    t.add_argument("--pgdir", help="keep the server and its index here (reused by the next run)")
    t.add_argument("--shared-buffers", default="1GB", help="the server's shared_buffers (the key index is ~520 MB)")
    t.add_argument("--max-wal-size", default="8GB", help="WAL between checkpoints (a write-heavy server's setting)")
    t.add_argument("--workers", type=int, default=1,
                   help="workers taking the batches in turn, each with its own connection and key cache (a worker "
                        "then sees 1/N of the copies: the cache's worst case)")
    t.add_argument("--concurrent", action="store_true",
                   help="the --workers store their batches at the same time (each every Nth batch), meeting at the "
                        "advisory lock as worker processes do; the wall clock is reported")
    t.add_argument("--cache-keys", type=int, default=st.CACHE_KEYS, help="each worker's KeyCache (0: off)")
    t.add_argument("--after-checkpoint", action="store_true",
                   help="CHECKPOINT right before the timed part (every page then written first is a full-page image)")
    args = ap.parse_args()
    console = Console(width=160)
    if args.cmd == "pairs":
        cmd_pairs(args, console)
    else:
        asyncio.run(throughput(args, console))


if __name__ == "__main__":
    main()
