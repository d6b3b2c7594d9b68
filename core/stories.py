"""One story, many copies: near-duplicate clustering of scored items within a horizon (72 h).

    signer = Signer()
    bands = signer.bands(["Acme shares plunge 12% after fraud probe https://t.co/x"], [["ACME"]])[0]
    # -> BANDS signed 64-bit band keys; two texts are copies when >= MIN_BANDS keys are equal

A text is normalised (NFKC, HTML entities, lower case; URLs, @mentions, a retweet or "BREAKING:"
prefix, emoji and punctuation dropped; cashtags become the bare ticker; every number becomes '#',
so an update of a story with a new figure stays the story), cut into word shingles (1- and
2-grams), and the item's company keys (the worker's ticker keys and every cashtag) are added as
`NAME_WEIGHT` token(s) each. MinHash (NUM_PERM permutations, each an independent 64-bit mix:
`Signer`) turns the set into a signature; its BANDS bands of ROWS values are hashed to 64-bit
band keys. Two items are copies when at least MIN_BANDS of their band keys are equal — with these
settings the probability of that is 1 % at Jaccard 0.2, 30 % at 0.4 and 87 % at 0.6
(`match_probability`) — and an item naming companies its candidate's first event does not (nor
the reverse) is not a copy. Every item of a company shares the company's tokens, so every one is
compared with all the company's live stories: the rule must stay far from merging at the
similarity of two different headlines about one company (0.1-0.25), which is why the company
weighs one token and three equal keys are needed. The parameters were chosen on labelled pairs
and labelled surges (bench/stories.py, docs/stories.md), not guessed.

The shared index lives in Postgres, so every worker finds the same clusters: `story_key`
(migration 0009: one row per band key, the live story that first had it, with that story's slot,
first day and time) and `story` (migration 0007: one row per story: first event, first seen,
copies, sources, keys; LIST-partitioned into SLOTS slots by its first UTC day). `upkeep`
truncates a story slot once all its days are older than the horizon and deletes the keys of
stories first seen before the oldest live day; a new story takes over a key whose story is past
the horizon. `assign` takes a batch inside the worker's store transaction (before its
scored_event rows are inserted, which then carry the story columns) and returns, per item, the
story id (its first event's `source/id`: `story_id_of`), whether the item is novel (the first of its story) and the
story's copy count so far (from the count the story upsert returns). It holds one
transaction-level advisory lock from its first statement to the commit: two workers never assign
at the same time, so the first stored copy founds the story and every later one joins it,
whichever worker stores it; an item whose
scored_event row already carries a story (a replayed batch) gets what it has. (Finer locks, per
band-key bucket, were weighed and not taken: a batch of 256 items has about 3,000 keys, so any
two batches share a bucket unless there are millions of buckets, and then each transaction
would take thousands of locks: docs/stories.md.) Each worker's `Stories` keeps a `KeyCache` of keys
it knows held by a live story (learned only from transactions it has seen committed): the probe
skips them.
"""

from __future__ import annotations

import html
import itertools
import re
import zlib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import NamedTuple

import numpy as np

from core.events import STORY_FILL_SQL

HORIZON_S = 72 * 3600  # a story takes copies for this long after its first event
NUM_PERM = 24
BANDS = 12
ROWS = 2  # BANDS * ROWS == NUM_PERM
MIN_BANDS = 3  # equal band keys needed for a copy (chosen on labelled pairs: docs/stories.md)
NAME_WEIGHT = 1  # each company key counts as this many tokens (docs/stories.md: why not more)
SLOTS = 6  # day slots: the 4 days a 72 h horizon spans, one day ahead (clock skew) and the expired one
MAX_SOURCES = 16  # sources listed on a story row
LOCK_ID = 0x5354_4F52_5953  # 'STORYS': the advisory lock that serialises assignment
CACHE_KEYS = 300_000  # band keys a worker remembers as held by a live story (KeyCache; ~27 MiB)

_URL = re.compile(r"(?:https?://|www\.)\S+", re.I)
_MENTION = re.compile(r"(?<!\w)@\w+")
_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9.\-]{0,9})(?![\w])")
_NUMBER = re.compile(r"(?<![a-z])[+\-]?\d[\d,.]*(?:[kmb]n?|%|x)?(?![a-z])")
_PREFIX = re.compile(r"^(?:\s*(?:rt\b:?|breaking(?: news)?|just in|update[ds]?|exclusive|alert|developing|"
                     r"watch|video|live|flash|hot|news)\s*[:\-|]\s*)+")
_WORD = re.compile(r"[^\W_]+|#")


def normalise(text: str) -> str:
    """The comparable form of a text: what a repost, a feed's prefix or a new figure changes is gone."""
    t = unicodedata.normalize("NFKC", html.unescape(text)).lower()
    t = _URL.sub(" ", t)
    t = re.sub(r"^\s*rt\s+@\w+\s*:?", " ", t)  # a retweet's "RT @who:"
    t = _MENTION.sub(" ", t)
    t = _CASHTAG.sub(lambda m: " " + m.group(1).replace(".", "").replace("-", "") + " ", t)
    t = _NUMBER.sub(" # ", t)
    t = _PREFIX.sub(" ", t.strip())
    return " ".join(_WORD.findall(t))


def cashtags(text: str) -> list[str]:
    return sorted({m.group(1).upper().replace("-", ".") for m in _CASHTAG.finditer(text)})


def shingles(text: str, keys: Iterable[str] = ()) -> set[bytes]:
    """Word 1- and 2-grams of the normalised text, plus each company key NAME_WEIGHT times."""
    words = normalise(text).split()
    out = {w.encode() for w in words}
    out.update(f"{a} {b}".encode() for a, b in zip(words, words[1:]))
    out.update(f"\x00{n}\x00{i}".encode() for n in names_of(text, keys) for i in range(NAME_WEIGHT))
    if not out:  # no word, no company (emoji, symbols): copies only of the same characters, not of
        # every other wordless post (one shared token made them all one story, copies weighing nothing)
        out.add(b"\x00chars\x00" + "".join(unicodedata.normalize("NFKC", text).split()).encode("utf-8", "replace"))
    return out


def names_of(text: str, keys: Iterable[str] = ()) -> frozenset[str]:
    """The companies an item names: its ticker keys and its cashtags."""
    names = {k.split(":", 1)[-1].upper() for k in keys}
    if "$" in text:  # (no cashtag without one: most texts skip the regex)
        names.update(cashtags(text))
    return frozenset(names)


def compatible(a: frozenset, b: frozenset) -> bool:
    """Can two items naming these companies be one story? Not when each names one the other does
    not (a template about another company); a repost that adds a cashtag can."""
    return a <= b or b <= a


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def match_probability(s: float, bands: int = BANDS, rows: int = ROWS, need: int = MIN_BANDS) -> float:
    """P(at least `need` of `bands` band keys equal) for two sets of Jaccard similarity `s`."""
    from scipy.stats import binom

    return float(binom.sf(need - 1, bands, s ** rows))


class Signer:
    """MinHash signatures and band keys of a batch of texts in a few numpy operations.

    Each shingle is hashed once (CRC-32, zlib), then every permutation k is its own 64-bit mix of
    it (the SplitMix64 finaliser of hash XOR a per-permutation seed drawn from a fixed numpy
    RandomState): close to independent random hash functions, so two sets agree on a
    permutation with probability equal to their Jaccard similarity (tests/test_stories.py checks
    it over many random set pairs; docs/stories.md has the measurement). A whole batch is mixed
    and min-reduced at once (no Python loop per permutation), which is what makes the worker's
    rate."""

    def __init__(self, num_perm: int = NUM_PERM, bands: int = BANDS, seed: int = 1):
        if num_perm % bands:
            raise ValueError(f"num_perm {num_perm} is not a multiple of bands {bands}")
        self.seeds = np.random.RandomState(seed).randint(0, 1 << 62, num_perm, dtype=np.uint64) * np.uint64(4)
        self.bands_n, self.rows = bands, num_perm // bands
        self.salts = (np.arange(1, bands + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))

    def signatures(self, texts: Sequence[str], keys: Sequence[Iterable[str]] | None = None) -> np.ndarray:
        """(len(texts), num_perm) uint64: the MinHash of each text's shingles."""
        return self.sign_sets([shingles(t, keys[i] if keys else ()) for i, t in enumerate(texts)])

    def sign_sets(self, sets: Sequence[Iterable[bytes]]) -> np.ndarray:
        """(len(sets), num_perm) uint64: the MinHash of each non-empty set of byte strings."""
        if not sets:
            return np.empty((0, len(self.seeds)), dtype=np.uint64)
        lens = np.fromiter((len(x) for x in sets), dtype=np.int64, count=len(sets))
        hv = np.fromiter((zlib.crc32(x) for one in sets for x in one), dtype=np.uint64, count=int(lens.sum()))
        hv = _splitmix64(hv[:, None] ^ self.seeds)  # one independent 64-bit mix per permutation
        return np.minimum.reduceat(hv, np.concatenate(([0], np.cumsum(lens)[:-1])), axis=0)

    def bands(self, texts: Sequence[str], keys: Sequence[Iterable[str]] | None = None) -> list[list[int]]:
        """Per text, BANDS signed 64-bit keys: each band's ROWS values folded by SplitMix64 from a
        per-band salt (equal values in different bands are different keys)."""
        sig = self.signatures(texts, keys).reshape(len(texts), self.bands_n, self.rows)
        h = np.broadcast_to(self.salts, sig.shape[:2]).copy()
        for r in range(self.rows):
            h = _splitmix64(h ^ sig[:, :, r])
        return h.view(np.int64).tolist()


def _splitmix64(h: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = h + np.uint64(0x9E3779B97F4A7C15)
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def copies_of(a: Sequence[int], b: Sequence[int], need: int = MIN_BANDS) -> bool:
    return len(set(a) & set(b)) >= need


# -- the shared index (Postgres) -------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """One stored event to assign: the scored_event row's key, its text and its ticker keys."""

    source: str
    id: str
    published_at: datetime
    text: str
    keys: tuple[str, ...] = ()
    bands: tuple[int, ...] | None = None  # precomputed band keys (else computed here)
    names: frozenset[str] | None = None  # precomputed names_of(text, keys) (else computed here)


class Assignment(NamedTuple):  # (a tuple: 0.3 µs to make, a frozen dataclass 1.5 µs; one per item)
    source: str
    id: str
    published_at: datetime
    story_id: str
    novel: bool
    copies: int  # the story's copies so far, this one included (1 for a novel item)


STORY_ID_MAX = 64 + 1 + 256  # source + "/" + event id, at their longest (stream.records; migration 0011)


def story_id_of(source: str, event_id: str) -> str:
    """A story's id: its first event's `source/id`. Event ids are unique per source only: two
    feeds numbering their items 1, 2, 3 ... must never found one story (the founder's bare id
    made the second feed's item 7 a copy of the first feed's item 7, counted as a tenth of an item,
    whatever either said). The detector's event ids have the same form (stream.pipeline)."""
    return f"{source}/{event_id}"


def slot_of(day: date) -> int:
    return day.toordinal() % SLOTS


def _day(t: datetime) -> date:
    return t.astimezone(timezone.utc).date()


# a replayed row (one already stored with its story) by its primary key, read with the candidates (one
# round trip): one probe per row (LATERAL ... OFFSET 0, pruned to the row's day partition), whatever the
# planner thinks of the sizes (a join on the unnest hashed whole
# partitions on a small table; redundant `= ANY` conditions made it hash 2 M rows: 21 ms vs 0.5 ms)
_REPLAYED = """FROM (SELECT source, id, timestamptz 'epoch' + us * interval '1 microsecond' AS published_at
      FROM unnest($4::text[], $5::text[], $6::text::bigint[]) AS u(source, id, us)) b
CROSS JOIN LATERAL (SELECT story_id, novel, copies FROM scored_event e
                    WHERE e.source = b.source AND e.id = b.id AND e.published_at = b.published_at
                      AND e.story_id IS NOT NULL OFFSET 0) e"""

# the batch's band keys as one array (a text literal) read through a subquery: one index scan of
# story_key's primary key (PostgreSQL's B-tree takes `= ANY(array)` itself, one descent per key, no
# executor node per key). Through the subquery no plan depends on the array's contents, so the statement
# is planned once per connection (a plan for the literal itself cost 1.1 ms a batch: a selectivity
# estimate per element), and the planner still takes the index from a table of about a thousand keys
# up (below that a sequential scan, ~3 ms at worst). (The keys a worker's KeyCache knows held by a live
# story are not probed.) The time window is
# applied to the rows found, behind a MATERIALIZED fence: with `first_at` in the same WHERE, an index
# (or statistics) saying the window is narrow made PostgreSQL scan every key of the window through
# `ix_story_key_first_at` and test each against the whole array, one comparison per element (every key
# is inside a 72 h window): 257-408 ms of backend CPU for 2,400 probe keys on a 35,000-key table against
# 5 ms now, 9 → 6.5-8.5 ms on 24 M keys (docs/stories.md). One row per story holding probed keys, its
# keys in an array (about 330 rows a batch of 256 instead of ~1,500 key rows to decode), `live` when it
# is inside the window; then the story row of each live story, once (a copy hits its story with 3-12
# keys), by its primary key (LATERAL ... OFFSET 0: a probe, never a join over `story`). Keys of stories
# not live come back too: they are present, so the batch takes them over (or leaves them) instead of
# inserting them.
CANDIDATES_SQL = f"""WITH k AS MATERIALIZED (
    SELECT band, slot, story_id, first_at, day FROM story_key WHERE band = ANY((SELECT $1::text::bigint[])::bigint[])),
s AS MATERIALIZED (SELECT slot, story_id, first_at, day, array_agg(band) AS bands,
                          first_at >= $2 AND first_at <= $3 AS live
                   FROM k GROUP BY slot, story_id, first_at, day)
SELECT 's' AS kind, s.story_id, s.first_at, s.day, s.live, s.bands, x.copies, x.keys,
       NULL::text AS source, NULL::text AS id, NULL::boolean AS novel FROM s
LEFT JOIN LATERAL (SELECT copies, keys FROM story WHERE s.live AND slot = s.slot AND story_id = s.story_id OFFSET 0) x
  ON true
UNION ALL
SELECT 'r', e.story_id, b.published_at, NULL, NULL, NULL, e.copies, NULL, b.source, b.id, e.novel
{_REPLAYED}"""
# (kind 's': a story holding probed keys; 'r': a batch item already stored with its story, a replay, which
# keeps it. The stories of keys the worker's KeyCache holds are not read here at all: their first events'
# companies are cached with the keys, and every story's copy count comes back from the write, INDEX_WRITE_SQL)

STORY_UPSERT_SQL = """INSERT INTO story AS s (slot, story_id, day, first_at, last_at, source, keys, copies, sources)
SELECT u.slot, u.story_id, u.day, timestamptz 'epoch' + u.first_at * interval '1 microsecond',
       timestamptz 'epoch' + u.last_at * interval '1 microsecond', u.source, string_to_array(u.keys, chr(31)), u.copies,
       string_to_array(u.sources, chr(31))
FROM unnest($1::text::smallint[], $2::text[], $3::text::date[], $4::text::bigint[], $5::text::bigint[],
            $6::text[], $7::text[], $8::text::int[], $9::text[]) AS u(slot, story_id, day, first_at, last_at, source,
                                                                      keys, copies, sources)
ON CONFLICT (slot, story_id) DO UPDATE SET copies = s.copies + EXCLUDED.copies,
    last_at = greatest(s.last_at, EXCLUDED.last_at),
    sources = CASE WHEN cardinality(s.sources) >= {max_sources} THEN s.sources
                   ELSE (s.sources || ARRAY(SELECT x FROM unnest(EXCLUDED.sources) x WHERE x <> ALL(s.sources)))
                        [1:{max_sources}] END""".format(max_sources=MAX_SOURCES)

# the new band keys: each key with the ordinal of its story in the story upsert's arrays ($1 slot, $2
# story_id, $3 day, $4 first_at), as two text literals ('{...}': asyncpg checks every element of a
# Python list it encodes). The probe (CANDIDATES_SQL) returns every probed key the index has, live or
# not, and it ran under the advisory lock, so a key it did not return is absent: a plain INSERT (no
# speculative insertion: 2 ms of backend CPU and ~1,400 WAL records less a batch of 256 on the 2 M-story
# bench); a key it returned whose story is past the horizon is taken over (the upsert of before). A
# unique violation here is raised as KeyRace (retried), never as bad data.
_KEY_ROWS = """SELECT s.slot, k.band, s.story_id, s.day, timestamptz 'epoch' + s.first_at * interval '1 microsecond'
FROM unnest(${b}::text::bigint[], ${i}::text::int[]) AS k(band, i)
JOIN unnest($1::text::smallint[], $2::text[], $3::text::date[], $4::text::bigint[]) WITH ORDINALITY
  AS s(slot, story_id, day, first_at, i)
  USING (i)"""
BAND_INSERT_SQL = ("INSERT INTO story_key (slot, band, story_id, day, first_at)\n"
                   + _KEY_ROWS.format(b=10, i=11) + "\nORDER BY k.band")
# (an upsert, as all new keys were before: the hourly upkeep may be deleting that very key; these are
# a handful a batch)
BAND_TAKEOVER_SQL = """INSERT INTO story_key AS b (slot, band, story_id, day, first_at)
{rows}
ORDER BY k.band
ON CONFLICT (band) DO UPDATE SET slot = EXCLUDED.slot, story_id = EXCLUDED.story_id, day = EXCLUDED.day,
    first_at = EXCLUDED.first_at
WHERE b.first_at < EXCLUDED.first_at - make_interval(secs => {horizon})""".format(
    rows=_KEY_ROWS.format(b=12, i=13), horizon=HORIZON_S)

# (the planner probes the key per row here once scored_event has real sizes: 2 M rows, 5-7 ms a
# batch of 256 with the writes; on a near-empty table it hashes it, which is cheap there)
# (the rows planned here have no story yet: a row with one is read back with the candidates instead (kind r))
EVENT_UPDATE_SQL = STORY_FILL_SQL


# the batch's index writes in one statement (one round trip instead of three; each part touches its own
# table, so running them under one snapshot changes nothing): story rows, new band keys (empty arrays when
# none), keys taken over; it returns each written story's copy count after the batch (as two arrays: one row
# to decode), from which every item's count is known without reading a story row first. The worker assigns
# before it inserts the batch, and the INSERT carries story_id / novel / copies (core.events.store_scored),
# so no row is written twice; `assign(write_events=True)` (backfill, tests) updates the stored rows after.
INDEX_WRITE_SQL = f"""WITH story_up AS ({STORY_UPSERT_SQL}
RETURNING story_id, copies),
key_new AS ({BAND_INSERT_SQL}),
key_up AS ({BAND_TAKEOVER_SQL})
SELECT array_agg(story_id) AS story_ids, array_agg(copies) AS copies FROM story_up"""
LOCK_SQL = ("SELECT set_config('max_parallel_workers_per_gather', '0', true), "  # a handful of index probes:
            # parallel workers for them cost more than the scan; and the connection's cached plans reused
            # whatever its session says (no statement here needs a plan made for its parameters: planning
            # them all for every batch cost ~2 ms of 50 on the 2 M-story bench)
            "set_config('plan_cache_mode', 'auto', true), "
            "pg_advisory_xact_lock($1), "
            # this transaction's id, and what became of those in which the KeyCache learned keys
            # ('committed', 'aborted', 'in progress'; null when too old to tell)
            "pg_current_xact_id()::text::bigint AS xid, "
            "ARRAY(SELECT pg_xact_status(x::text::xid8) FROM unnest($2::bigint[]) WITH ORDINALITY AS t(x, i) "
            "ORDER BY i) AS status")


class KeyRace(RuntimeError):
    """A key the probe found absent was there at the insert. Only a writer that bypassed the advisory
    lock can cause it; it is not a fault of the data, so it is raised as this (the worker's sink
    retries the whole store transaction, which probes again) and never as the unique violation
    (which the sink would take for bad rows)."""


class KeyCache:
    """A worker's memory of band keys held by a live story, so that the candidate probe skips them.

    While its story is live a key's holder never changes (a key is taken over only from a story past
    the horizon, and upkeep deletes only those), so a key once seen held by a live story (in a probe)
    or written by this worker stays valid until its story's first event is `horizon - skew` old: a
    later item of any worker, within the skew of the clock, cannot take it over or see it purged
    before that. Such a key is served from here with its holder, (story_id, first_at, day, names): the
    story's row is not read (names, its first event's companies, never change; its copy count comes
    back from the batch's write) and only the other keys are probed: the probe's B-tree descents and
    heap fetches for keys already held are the part of a batch that repeats (docs/stories.md).

    What a transaction taught is kept apart by its transaction id until a later assignment sees it
    committed (`pg_xact_status`, read with the advisory lock): keys written by a transaction that
    rolled back (a fault, a retried batch) are never used. At most `limit` keys: past it, the keys of
    stories too old to use go first, then the oldest learned, down to half. `limit` 0 turns it off."""

    def __init__(self, limit: int, horizon: timedelta, skew: timedelta):
        self.limit, self.ttl = limit, horizon - skew
        self.keys: dict[int, tuple[tuple]] = {}  # band -> ((story_id, first_at, day, names),): by_band's form
        self.pending: dict[int, dict[int, tuple]] = {}  # transaction id -> what it taught, until seen committed
        self.served = self.probed = 0  # keys served from here, keys probed (counters, for the metric)

    def xids(self) -> list[int]:
        return list(self.pending)

    def settle(self, xids: Sequence[int], status: Sequence[str | None]) -> None:
        """Take in what committed transactions taught, forget what aborted ones did (`status`: one per
        transaction of `xids`, as read). (An assignment on another connection of the same worker may
        have settled some meanwhile.)"""
        for xid, state in zip(xids, status):
            if state == "in progress" or xid not in self.pending:
                continue
            taught = self.pending.pop(xid)
            if state == "committed":
                self.keys.update(taught)
        if len(self.keys) > self.limit:
            self._trim()

    def learn(self, xid: int, keys: dict[int, tuple]) -> None:
        """Keys a transaction saw or wrote held by a live story ({band: (holder,)}; `_Plan.learned`
        leaves out stories too old to be served), kept apart until it is seen committed."""
        if self.limit > 0 and keys:
            self.pending.setdefault(xid, {}).update(keys)

    def split(self, bands: set[int], lo: datetime, hi: datetime) -> tuple[dict[int, tuple], set[int]]:
        """The batch's keys held by a story live for it and for any writer now ({band: (holder,)}), and
        the keys to probe."""
        lo = max(lo, datetime.now(timezone.utc) - self.ttl)
        cached, keys = {}, self.keys
        for b in keys.keys() & bands:  # (the intersection in C: only the keys known are looked at)
            e = keys[b]
            if lo <= e[0][1] <= hi:
                cached[b] = e
        probe = bands.difference(cached) if cached else bands
        self.served += len(cached)
        self.probed += len(probe)
        return cached, probe

    def _trim(self) -> None:
        floor = datetime.now(timezone.utc) - self.ttl
        self.keys = {b: e for b, e in self.keys.items() if e[0][1] >= floor}
        if len(self.keys) > self.limit // 2:  # still full: the oldest learned go (a dict keeps that order), down
            # to half, so that this O(limit) pass comes once every limit/2 new keys (~0.5 ms a batch at 300,000)
            drop = len(self.keys) - self.limit // 2
            self.keys = dict(itertools.islice(self.keys.items(), drop, None))


class Stories:
    """Assigns stories against the shared index on an asyncpg connection (see the module text)."""

    def __init__(self, signer: Signer | None = None, need: int = MIN_BANDS, horizon_s: float = HORIZON_S,
                 skew_s: float = 3600.0, cache_keys: int = CACHE_KEYS):
        self.signer = signer or Signer()
        self.need, self.horizon, self.skew = need, timedelta(seconds=horizon_s), timedelta(seconds=skew_s)
        self.cache = KeyCache(cache_keys, self.horizon, self.skew)

    async def assign(self, conn, items: Sequence[Item], write_events: bool = True) -> list[Assignment]:
        """Call inside the store transaction; returns one Assignment per item, in the items' order
        (a duplicate item gets the same). With `write_events` the items' scored_event rows, inserted
        before, get their story columns here (backfill, tests); without, the caller inserts the rows
        after this call with the columns set (`store_scored(..., stories=...)`: the worker's path,
        one write per row instead of an insert and an update). Band keys the items do not carry
        are computed before the lock is taken."""
        if not items:
            return []
        bands = self._bands(items)
        xids = self.cache.xids()
        lock = await conn.fetchrow(LOCK_SQL, LOCK_ID, xids)
        self.cache.settle(xids, lock["status"])
        unique = {(i.source, i.id, i.published_at): i for i in items}
        lo = min(i.published_at for i in items) - self.horizon
        hi = max(i.published_at for i in items) + self.skew
        # (the probe's array unsorted: the B-tree scan sorts it itself; a replayed item's keys are probed
        # too, which saves the round trip that would tell the replays first)
        cached, probe = self.cache.split({b for i in unique.values() for b in bands[id(i)]}, lo, hi)
        sources, ids, times = _columns(unique.values())
        rows = await conn.fetch(CANDIDATES_SQL, _literal(probe), lo, hi, sources, ids, _times(times))
        done = {(r["source"], r["id"], r["first_at"]): Assignment(r["source"], r["id"], r["first_at"], r["story_id"],
                                                                  r["novel"], r["copies"])
                for r in rows if r["kind"] == "r"}
        todo = sorted((i for k, i in unique.items() if k not in done), key=lambda i: (i.published_at, i.source, i.id))
        if todo:
            plan = _Plan(self, rows, cached)
            for it in todo:
                plan.add(it, bands[id(it)])
            for a in await plan.write(conn, write_events):
                done[(a.source, a.id, a.published_at)] = a
            self.cache.learn(lock["xid"], plan.learned())
        return [done[(i.source, i.id, i.published_at)] for i in items]

    def _bands(self, items: Sequence[Item]) -> dict[int, list[int]]:
        """id(item) -> its band keys: carried by the item (the worker computes them with the
        scoring) or computed here for all those without in one Signer call."""
        missing = [i for i in items if i.bands is None]
        computed = dict(zip((id(i) for i in missing),
                            self.signer.bands([i.text for i in missing], [i.keys for i in missing])))
        return {id(i): list(i.bands) if i.bands is not None else computed[id(i)] for i in items}

    def assign_offline(self, items: Sequence[Item]) -> list[Assignment]:
        """The same decisions without a database, for items in event-time order from an empty
        index (a replay of a feed). A worker that stores a copy before its original (a backlog
        on several partitions) founds the story on what it stored first: replays of stored rows
        read story_id / novel / copies from the rows instead."""
        plan = _Plan(self, [])
        bands = self.signer.bands([i.text for i in items], [i.keys for i in items])
        seen = set()
        for it, b in sorted(zip(items, bands), key=lambda p: (p[0].published_at, p[0].source, p[0].id)):
            key = (it.source, it.id, it.published_at)
            if key not in seen:
                seen.add(key)
                plan.add(it, list(it.bands) if it.bands is not None else b)
        by_key = {(a.source, a.id, a.published_at): a for a in plan.assignments()}
        return [by_key[(i.source, i.id, i.published_at)] for i in items]


class _Plan:
    """The batch's decisions, in event-time order, against the index as read plus the batch itself.
    A story's holder is (story_id, first_at, day, names): names, the companies its first event names,
    never change, so the KeyCache keeps them with its keys and a cached story's row is never read."""

    def __init__(self, stories: Stories, rows, cached: dict[int, tuple[tuple]] | None = None):
        self.cfg = stories
        self.by_band: dict[int, Sequence[tuple]] = {}  # band -> (holder,)
        self.meta: dict[str, tuple] = {}  # story_id -> (first_at, day)
        self.names: dict[str, frozenset] = {}  # story_id -> the companies its first event names
        by_band = self.by_band
        present = self.present = set()  # every probed key the index has, live or not
        self.seen: dict[int, tuple] = {}  # probed keys held by a live story, (holder,) (the KeyCache learns them)
        for r in rows:  # one row per story holding probed keys; only live ones with a story row are candidates
            if r["kind"] != "s":
                continue
            present.update(r["bands"])
            if not r["live"] or r["copies"] is None:
                continue
            sid, first_at, day, names = r["story_id"], r["first_at"], r["day"], frozenset(r["keys"])
            entry = ((sid, first_at, day, names),)
            for b in r["bands"]:
                by_band[b] = entry  # (one row per key: the band is story_key's primary key)
                self.seen[b] = entry
            self.meta[sid] = (first_at, day)
            self.names.setdefault(sid, names)
        if cached:  # keys the KeyCache knows held by a live story (whose row a live story keeps: upkeep
            # truncates only slots past the horizon), (holder,) each, as by_band holds them
            present.update(cached)
            by_band.update(cached)
            for e in cached.values():
                h = e[0]
                if h[0] not in self.meta:
                    self.meta[h[0]] = (h[1], h[2])
                    self.names[h[0]] = h[3]
        self.stories: dict[str, list] = {}  # story_id -> [slot, day, first_at, last_at, source, keys, n, sources]
        self.new_bands: dict[int, str] = {}  # band -> the story its new story_key row points to
        self.events: list[tuple[Item, str, int]] = []  # (item, its story, its rank among the batch's copies)

    def add(self, it: Item, bands: list[int]) -> None:
        names = it.names if it.names is not None else names_of(it.text, it.keys)
        t, own = it.published_at, set(bands)
        by_band = self.by_band
        known = by_band.keys() & own  # (set and dict operations in C, over the 12 keys: this runs for every item)
        hits: dict[str, int] = {}
        if known:
            lo, hi = t - self.cfg.horizon, t + self.cfg.skew
            for b in known:
                for h in by_band[b]:
                    if lo <= h[1] <= hi:
                        hits[h[0]] = hits.get(h[0], 0) + 1
        best = min((s for s, n in hits.items() if n >= self.cfg.need and compatible(names, self.names[s])),
                   key=lambda s: (-hits[s], self.meta[s][0], s), default=None) if hits else None
        if best is None:  # a new story, founded by this event
            best, day = story_id_of(it.source, it.id), _day(t)
            self.meta[best] = (t, day)
            self.names[best] = names
        first_at, day = self.meta[best]
        # its band keys that no live story has yet point to this story too (a key another story
        # holds stays that story's, the first to have it, until that story is past the horizon)
        holder = ((best, first_at, day, self.names[best]),)
        free = own.difference(known) if known else own
        expired = first_at - self.cfg.horizon
        for b in known:
            for h in by_band[b]:
                if h[1] >= expired:
                    break
            else:
                free.add(b)
        if free:
            by_band.update(dict.fromkeys(free, holder))
            self.new_bands.update(dict.fromkeys(free, best))
        st = self.stories.get(best)
        if st is None:
            st = self.stories[best] = [slot_of(day), day, first_at, t, it.source, sorted(self.names[best]), 0, []]
        elif t > st[3]:
            st[3] = t
        st[6] += 1
        if it.source not in st[7]:
            st[7].append(it.source)
        self.events.append((it, best, st[6]))

    def assignments(self, totals: dict[str, int] | None = None) -> list[Assignment]:
        """One Assignment per item added: its story's copies so far are the story's count after the batch
        (`totals`, from the write; None: the batch's own, as for stories founded in it) less the batch's
        copies after this one."""
        stories, out = self.stories, []
        for it, sid, rank in self.events:
            n = rank if totals is None else max(rank, totals.get(sid, 0) - stories[sid][6] + rank)
            out.append(Assignment(it.source, it.id, it.published_at, sid, n == 1, n))
        return out

    def learned(self) -> dict[int, tuple]:
        """Keys this batch saw or made held by a live story, {band: (holder,)}: the probe's, and the absent
        keys it inserts (not those it takes over: the upsert may leave them to their holder); none of a
        story too old for the KeyCache to serve."""
        floor = datetime.now(timezone.utc) - self.cfg.cache.ttl
        out = {b: e for b, e in self.seen.items() if e[0][1] >= floor}
        present, made = self.present, {}
        for band, sid in self.new_bands.items():
            if band not in present:
                entry = made.get(sid)
                if entry is None:
                    holder = (sid, *self.meta[sid], self.names[sid])
                    entry = made[sid] = (holder,) if holder[1] >= floor else ()
                if entry:
                    out[band] = entry
        return out

    async def write(self, conn, events: bool = True) -> list[Assignment]:
        """The batch's index writes (and with `events`, its stored rows' story columns); returns the
        Assignments."""
        import asyncpg

        us = "\x1f"
        order = {sid: i for i, sid in enumerate(self.stories, 1)}  # a key's story by its ordinal
        stories = self.stories.values()
        columns = [_literal(st[0] for st in stories), list(self.stories), _literal(st[1] for st in stories),
                   _times(st[2] for st in stories), _times(st[3] for st in stories), [st[4] for st in stories],
                   [us.join(st[5]) for st in stories], _literal(st[6] for st in stories),
                   [us.join(st[7][:MAX_SOURCES]) for st in stories]]
        new, held = [], []  # keys absent from the index (inserted), keys of a story past the horizon (taken over)
        for band, sid in self.new_bands.items():
            (held if band in self.present else new).append((band, order[sid]))
        keys = (_literal(b for b, _ in new), _literal(i for _, i in new),
                _literal(b for b, _ in held), _literal(i for _, i in held))
        try:
            got = await conn.fetchrow(INDEX_WRITE_SQL, *columns, *keys)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "pk_story_key":
                raise
            raise KeyRace("a band key appeared in story_key between the probe and the insert: a writer "
                          "without the stories' advisory lock; the batch is assigned again") from exc
        out = self.assignments(dict(zip(got["story_ids"] or (), got["copies"] or ())))
        if events:
            await conn.execute(EVENT_UPDATE_SQL, [a.source for a in out], [a.id for a in out],
                               [a.published_at for a in out], [a.story_id for a in out], [a.novel for a in out],
                               [a.copies for a in out])
        return out


def _literal(values: Iterable[int | date]) -> str:
    """An array of integers (or dates) in PostgreSQL's text form ('{1,2,3}'), for `$n::text::bigint[]`:
    asyncpg checks every element of a list it encodes against the iterable ABCs (~0.4 µs an integer,
    ~1.7 µs a datetime), a literal is one string."""
    return "{" + ",".join(map(str, values)) + "}"


_EPOCH, _NAIVE_EPOCH, _US = datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(1970, 1, 1), timedelta(microseconds=1)


def _times(values: Iterable[datetime]) -> str:
    """Timestamps as integer microseconds since the epoch in a `$n::text::bigint[]` literal, which the SQL
    turns back into timestamptz (`timestamptz 'epoch' + us * interval '1 microsecond'`, exact to the
    microsecond; a naive one is UTC): an integer costs a third of an ISO 8601 string to write (0.5 µs
    against 1.75; about 760 a batch of 256)."""
    return "{" + ",".join(str((t - (_EPOCH if t.tzinfo else _NAIVE_EPOCH)) // _US) for t in values) + "}"


def _columns(items: Iterable[Item]) -> tuple[list, list, list]:
    items = list(items)
    return [i.source for i in items], [i.id for i in items], [i.published_at for i in items]


# -- upkeep ------------------------------------------------------------------------------------

async def upkeep(conn, today: date | None = None, horizon_s: float = HORIZON_S) -> list[int]:
    """Truncate every story slot whose newest day is past the horizon (relative to `today`, UTC)
    and delete the band keys of stories first seen before the oldest live day (an index range on
    first_at: about an hour's keys when run hourly): the index stays bounded by the horizon.
    Returns the slots truncated."""
    today = today or datetime.now(timezone.utc).date()
    oldest_live = today - timedelta(days=int(-(-horizon_s // 86400)))
    done = []
    for slot in range(SLOTS):
        newest = await conn.fetchval(f"SELECT max(day) FROM story_s{slot}")
        if newest is not None and newest < oldest_live:
            await conn.execute(f"TRUNCATE story_s{slot}")
            done.append(slot)
    await conn.execute("DELETE FROM story_key WHERE first_at < $1",
                       datetime.combine(oldest_live, datetime.min.time(), timezone.utc))
    return done


# -- backfill ------------------------------------------------------------------------------------

CURSOR = "backfill"
BACKFILL_ROWS_SQL = """SELECT source, id, published_at, text, tickers FROM scored_event
WHERE story_id IS NULL AND (published_at, source, id) > ($1, $2, $3)
ORDER BY published_at, source, id LIMIT $4"""
BACKFILL_LEFT_SQL = """SELECT count(*) FROM scored_event
WHERE story_id IS NULL AND (published_at, source, id) > ($1, $2, $3)"""
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


async def backfill_cursor(conn) -> tuple[datetime, str, str, int]:
    """Where the backfill stands: (published_at, source, id) of the last row it assigned, rows done."""
    r = await conn.fetchrow("SELECT published_at, source, id, rows FROM story_cursor WHERE name = $1", CURSOR)
    return (r["published_at"], r["source"], r["id"], r["rows"]) if r else (EPOCH, "", "", 0)


async def backfill_left(conn) -> int:
    return await conn.fetchval(BACKFILL_LEFT_SQL, *(await backfill_cursor(conn))[:3])


async def backfill_step(conn, stories: Stories, batch: int = 1000) -> int:
    """Assign stories to the next `batch` stored rows without one, in event-time order, in one
    transaction that also moves the cursor (story_cursor): stopped anywhere, a rerun goes on
    from the last batch committed. Returns the rows assigned (0: done). The worker's live
    assignment can run meanwhile (the same advisory lock serialises them)."""
    async with conn.transaction():
        await conn.execute("INSERT INTO story_cursor (name, published_at, source, id) VALUES ($1, $2, '', '') "
                           "ON CONFLICT (name) DO NOTHING", CURSOR, EPOCH)
        await conn.execute("SELECT 1 FROM story_cursor WHERE name = $1 FOR UPDATE", CURSOR)  # one backfill at a time
        at, source, eid, _ = await backfill_cursor(conn)
        rows = await conn.fetch(BACKFILL_ROWS_SQL, at, source, eid, batch)
        if not rows:
            return 0
        await stories.assign(conn, [Item(r["source"], r["id"], r["published_at"], r["text"], tuple(r["tickers"]))
                                     for r in rows])
        last = rows[-1]
        await conn.execute("UPDATE story_cursor SET published_at = $2, source = $3, id = $4, rows = rows + $5, "
                           "updated_at = now() WHERE name = $1", CURSOR, last["published_at"], last["source"],
                           last["id"], len(rows))
        if _day(last["published_at"]) != _day(rows[0]["published_at"]) or len(rows) < batch:
            await upkeep(conn, _day(last["published_at"]))  # slots past the horizon of the rows it has reached
    return len(rows)


async def backfill_reset(conn) -> None:
    await conn.execute("DELETE FROM story_cursor WHERE name = $1", CURSOR)
