"""History lifecycle: retention per table, a Parquet archive per day, verify, restore.

Raw rows live in daily partitions (`scored_event_YYYYMMDD` and the tables whose rows hang off an
event and are partitioned the same way: `event_entity_YYYYMMDD`, and any later one listed in
DAY_TABLES). Past `FINSENT_RETENTION_RAW_DAYS` the worker's upkeep, one day per call:

    1. archives the day (when FINSENT_ARCHIVE_DIR is set): one Parquet file per table and day
       (zstd, sorted by time and key), all tables from one snapshot, each written to a temporary
       name, fsynced and renamed, then a manifest (rows, min/max time, sha256 of each file, a
       fingerprint of the keys, a digest of the rows' contents) written the same way. The
       manifest is written last: a crash before it leaves no archive, only a temporary file that
       the next attempt replaces. An archive is never replaced by one that has less: when the day
       was archived before and its partitions no longer hold all of it (dropped, then late rows
       made the partition again), the old archive's rows are put back first.
    2. verifies the archive's files (checksum, row count, min/max time, key fingerprint read back);
    3. in one transaction: locks the day's partitions against writes (only rows of that day wait),
       checks that they hold exactly what the archive has (rows, keys, contents: a row stored or
       changed after the archive stops the drop), detaches and drops them. Never a DELETE.

One archive, drop or restore of a day runs at a time (an advisory lock per day; upkeep skips a
day that is busy). A crash anywhere leaves either the partition (archived or not: the next call
starts again from step 1, or 2 when the manifest is there) or a verified archive. `history_day`
records each day's state. Rollups are not partitioned and never touched by archive, drop or
restore: minute and 5-minute rows older than their retention are deleted in bounded batches
through their time index; hourly rollups and alerts are kept unless a retention is set for them.

    finsent history status | archive DAY | verify DAY | drop DAY | restore DAY | upkeep

A restore checks every file first and loads all tables in one transaction with its pin: it
succeeds whole or changes nothing. A restored day is pinned (`history_day.pinned_until`,
FINSENT_RETENTION_RESTORE_DAYS, 0 = for good) so that upkeep does not drop it again at once; after
that it is dropped without a second archive (the manifest is still there and verified first).
A day that is not over (UTC) is never dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

DAY_TABLES = ("scored_event", "event_entity")  # parent tables with daily partitions, archived together
KEYS = {"scored_event": ("source", "id", "published_at"),
        "event_entity": ("source", "event_id", "published_at", "ticker")}
ROLLUPS = {"event_rollup_minute": "minute", "event_rollup_5m": "bucket", "event_rollup_hour": "bucket"}
# what each table's entry of a manifest holds (read_manifest refuses one without; `content` is version 2's)
MANIFEST_ENTRY = ("file", "rows", "min_time", "max_time", "fingerprint", "columns", "sha256")
MANIFEST_VERSION = 2  # 2: each table's `content` (row digests); 1 is still read
CHUNK_ROWS = 50_000
ARCHIVE_ATTEMPTS = 3  # upkeep archives a day again when rows of it came in between its archive and its drop
PARTITION_NAME = re.compile(r"^(?P<table>[a-z_]+)_(?P<day>\d{8})$")


class HistoryError(RuntimeError):
    """An archive that is missing, incomplete or does not match the database: nothing is dropped."""


class ChangedSinceArchive(HistoryError):
    """The day's partitions no longer hold what its archive has (a late row stored, a row changed
    after the archive was written): it is archived again before it is dropped."""


class DayBusy(HistoryError):
    """Another archive, drop or restore of the same day is running (another process or connection)."""


class NoArchive(HistoryError):
    """Days are past raw retention and no archive directory is set: they are kept (nothing is lost
    and nothing stops; the worker reports it in a metric and its log, not as a failure)."""


@dataclass(frozen=True)
class Retention:
    """Days kept per kind of row; 0 keeps forever. Raw rows go to the archive first when
    `archive_dir` is set; without it they are dropped at the end of their retention only when
    `drop_unarchived` is true (the default refuses: history is never lost by a setting left out)."""

    raw_days: int = 30
    minute_days: int = 90
    five_minute_days: int = 400
    hour_days: int = 0
    alert_days: int = 0
    restore_days: int = 7
    archive_dir: Path | None = None
    drop_unarchived: bool = False

    @classmethod
    def from_settings(cls, s) -> Retention:
        return cls(raw_days=s.retention_raw_days, minute_days=s.retention_minute_days,
                   five_minute_days=s.retention_5m_days, hour_days=s.retention_hour_days,
                   alert_days=s.retention_alert_days, restore_days=s.retention_restore_days,
                   archive_dir=s.archive_dir, drop_unarchived=s.retention_drop_unarchived)

    def rollup_days(self) -> dict[str, int]:
        return {"event_rollup_minute": self.minute_days, "event_rollup_5m": self.five_minute_days,
                "event_rollup_hour": self.hour_days}


# --- layout -------------------------------------------------------------------------------------

def day_file(root: Path, table: str, day: date) -> Path:
    """Hive-style folders, so that DuckDB, Spark or Trino read the archive as one table:
    read_parquet('ARCHIVE/scored_event/*/*.parquet', hive_partitioning = true)."""
    return Path(root) / table / f"day={day.isoformat()}" / "part-0.parquet"


def manifest_file(root: Path, day: date) -> Path:
    return Path(root) / "_manifests" / f"{day.isoformat()}.json"


def read_manifest(root: Path, day: date) -> dict | None:
    """The day's manifest, None when there is none; HistoryError when it cannot be read (a
    truncated or hand-edited file): nothing is archived over it, dropped or restored from it."""
    path = manifest_file(root, day)
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_bytes())
        if not isinstance(manifest, dict) or not isinstance(manifest.get("tables"), dict):
            raise ValueError("no 'tables' in it")
        for table, entry in manifest["tables"].items():
            lacks = [k for k in MANIFEST_ENTRY if not isinstance(entry, dict) or k not in entry]
            if lacks:
                raise ValueError(f"its {table} entry lacks {', '.join(lacks)}")
    except (OSError, ValueError) as exc:
        raise HistoryError(f"{day}: the manifest {path} cannot be read ({exc}); nothing was changed. Put back a good "
                           "copy, or move it and the day's files aside to archive the day anew (only while the "
                           "day is still in the database: they may hold rows that are nowhere else)") from None
    return manifest


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- the database side ------------------------------------------------------------------------------

def partition_name(table: str, day: date) -> str:
    return f"{table}_{day:%Y%m%d}"


async def day_partitions(conn) -> dict[date, list[str]]:
    """Every day that has a partition of one of DAY_TABLES: {day: [partition, ...]}."""
    rows = await conn.fetch("""SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY($1::text[])""", list(DAY_TABLES))
    days: dict[date, list[str]] = {}
    for r in rows:
        m = PARTITION_NAME.match(r["relname"])
        if m and m["table"] in DAY_TABLES:
            days.setdefault(datetime.strptime(m["day"], "%Y%m%d").date(), []).append(r["relname"])
    return days


async def _exists(conn, relname: str) -> bool:
    return await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", relname)


async def columns_of(conn, table: str) -> list[tuple[str, str]]:
    """(name, type) of a table's columns in table order, types as format_type writes them."""
    rows = await conn.fetch("""SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a
        WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""", table)
    return [(r["attname"], r["type"]) for r in rows]


def arrow_type(pg_type: str):
    import pyarrow as pa

    base = pg_type.split("(")[0].strip()
    if pg_type.endswith("[]"):
        return pa.list_(arrow_type(pg_type[:-2]))
    return {"character varying": pa.string(), "text": pa.string(), "character": pa.string(),
            "timestamp with time zone": pa.timestamp("us", tz="UTC"), "double precision": pa.float64(),
            "real": pa.float32(), "integer": pa.int32(), "bigint": pa.int64(), "smallint": pa.int16(),
            "boolean": pa.bool_(), "jsonb": pa.string(), "json": pa.string(), "date": pa.date32(),
            "bytea": pa.binary(), "uuid": pa.string()}.get(base, pa.string())


def _key_digest(values: tuple) -> int:
    """A row's key as a 60-bit integer (md5): summed over a day it fingerprints the set of keys the
    same way in SQL (KEY_SQL) and in Python, whatever the order."""
    return _text_digest("|".join(_key_text(v) for v in values))


def _text_digest(text: str) -> int:
    return int(hashlib.md5(text.encode()).hexdigest()[:15], 16)


def _key_texts(table) -> list[str]:
    """scored_event keys of an Arrow table in _key_digest's text form, built by Arrow (5x faster
    than a Python loop over the rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    us = pc.cast(pc.cast(table.column("published_at"), pa.timestamp("us", tz="UTC")), pa.int64())
    return pc.binary_join_element_wise(pc.cast(table.column("source"), pa.string()),
                                       pc.cast(table.column("id"), pa.string()), pc.cast(us, pa.string()),
                                       "|").to_pylist()


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def _key_text(v: Any) -> str:
    if isinstance(v, datetime):  # whole microseconds since 1970, in integers (a float is 1 us off past ~2242)
        return str((v - _EPOCH) // _MICROSECOND)
    return str(v)


def _key_sql(keys: tuple[str, ...]) -> str:
    parts = [f"(extract(epoch FROM {k}) * 1000000)::bigint::text" if k == "published_at" else f"{k}::text"
             for k in keys]
    joined = " || '|' || ".join(parts)
    return f"('x' || substr(md5({joined}), 1, 15))::bit(60)::bigint"


# Each whole row hashed by Postgres's own hash of its type (hash_record_extended: every column,
# NULLs included, no text forms involved), summed over a day: the manifest's `content`, computed
# in the snapshot the files are written from, and again over the partition just before it is
# dropped. A row changed after the archive (the stories backfill fills story_id on stored rows)
# changes it, which the key fingerprint would not see.
_ROW_DIGEST = "hash_record_extended(t, 0)"


async def db_facts(conn, table: str, day: date) -> dict | None:
    """Rows, min/max time, key fingerprint and content digest of one day's partition, or None if it
    is gone."""
    part = partition_name(table, day)
    if not await _exists(conn, part):
        return None
    r = await conn.fetchrow(f"""SELECT count(*) AS rows, min(published_at) AS lo, max(published_at) AS hi,
        coalesce(sum({_key_sql(KEYS[table])}::numeric), 0)::text AS fingerprint,
        coalesce(sum({_ROW_DIGEST}::numeric), 0)::text AS content FROM {part} t""")
    return {"rows": r["rows"], "min_time": _iso(r["lo"]), "max_time": _iso(r["hi"]), "fingerprint": r["fingerprint"],
            "content": r["content"]}


async def day_rows(conn, table: str, day: date) -> int | None:
    """Rows of one day's partition (a count, cheaper than db_facts), or None if it is gone."""
    part = partition_name(table, day)
    return await conn.fetchval(f"SELECT count(*) FROM {part}") if await _exists(conn, part) else None


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(timezone.utc).isoformat()


# One archive, drop or restore of a day at a time, whoever runs it (the worker's upkeep, the CLI):
# two writers of the same files interleave their bytes, and a drop must not run under a restore.
_LOCK_SPACE = 0x66696E73  # 'fins': the first key of the (int, int) advisory lock; the second is the day


@asynccontextmanager
async def _day_lock(conn, day: date):
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", _LOCK_SPACE, day.toordinal()):
        raise DayBusy(f"{day}: another archive, drop or restore of this day is running (the worker's upkeep or "
                           "a `finsent history` command); nothing was done, try again once it is over")
    try:
        yield
    finally:
        if not conn.is_closed():
            try:
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", _LOCK_SPACE, day.toordinal())
            except Exception:  # noqa: BLE001 - a broken connection has let the lock go with it
                pass


async def _ensure_partition(conn, day: date, lock_timeout_s: float = 5.0) -> None:
    """The day's partitions (finsent_ensure_day_partition), waiting at most `lock_timeout_s` for the
    locks: the worker's inserts queue behind that wait.

    The parent tables themselves (ONLY) are locked against writes first: an insert that had already
    routed a row of that day to the default partition and waited there while the day was attached
    failed ("violates partition constraint"), and the worker takes that for bad data. Blocked at
    the parent, it routes after the attach instead. Held for the move of the day's late rows."""
    import asyncpg

    if all([await _exists(conn, partition_name(t, day)) for t in DAY_TABLES]):
        return
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
            await conn.execute(f"LOCK TABLE {', '.join('ONLY ' + t for t in DAY_TABLES)} IN SHARE MODE")
            await conn.fetchval("SELECT finsent_ensure_day_partition($1)", day)
    except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
        raise HistoryError(f"{day}: scored_event or its default partition stayed locked for {lock_timeout_s:g} s; "
                           "the day's partitions were not made, nothing was done; try again") from None


# --- archive, verify, drop, restore --------------------------------------------------------------

@dataclass
class DayReport:
    day: date
    action: str
    rows: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    detail: str = ""

    def line(self) -> str:
        counts = ", ".join(f"{t} {n:,}" for t, n in self.rows.items())
        return f"{self.day} {self.action}: {counts}{' (' + self.detail + ')' if self.detail else ''}"


async def archive_day(conn, root: Path, day: date, progress=None) -> DayReport:
    """Write the day's partitions to Parquet and the manifest last (see the module's doc).

    A day archived before whose partitions no longer hold what its archive has (dropped, then a
    late row made the partition again; a restore that failed half way) gets the archive's rows
    back first (ON CONFLICT DO NOTHING), so that the new archive is the union and never loses
    what the one it replaces had."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    report = DayReport(day, "archived")
    async with _day_lock(conn, day):
        previous = read_manifest(root, day)
        if previous is not None and not await _passes(_verify_db(conn, day, previous)):
            kept = await _merge_previous(conn, root, day, previous)
            if kept:
                report.detail = f"{kept:,} rows of the previous archive put back first"
        manifest: dict[str, Any] = {"version": MANIFEST_VERSION, "day": day.isoformat(), "tables": {},
                                    "written_at": datetime.now(timezone.utc).isoformat()}
        written: list[tuple[Path, Path]] = []
        # one snapshot for every table: an event and its entity rows are in the archive together or not at all
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            for table in DAY_TABLES:
                part = partition_name(table, day)
                if not await _exists(conn, part):
                    continue
                cols = await columns_of(conn, table)
                schema = pa.schema([(name, arrow_type(t)) for name, t in cols])
                names = [n for n, _ in cols]
                select = ", ".join(f"{n}::text" if t in ("jsonb", "json", "uuid") else n for n, t in cols)
                order = ", ".join(["published_at"] + [k for k in KEYS[table] if k != "published_at"])  # time, key
                path = day_file(root, table, day)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                rows, fingerprint, content, lo, hi = 0, 0, 0, None, None
                key_idx = [names.index(k) for k in KEYS[table]]
                with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                    cursor = await conn.cursor(f"SELECT {select}, {_ROW_DIGEST} FROM {part} t ORDER BY {order}")
                    while fetched := await cursor.fetch(CHUNK_ROWS):
                        content += sum(r[-1] for r in fetched)
                        chunk = [tuple(r)[:-1] for r in fetched]
                        fp, clo, chi = _write_chunk(writer, schema, chunk, key_idx, names)
                        rows, fingerprint = rows + len(chunk), fingerprint + fp
                        lo, hi = clo if lo is None else min(lo, clo), chi if hi is None else max(hi, chi)
                        if progress:
                            progress(table, len(chunk))
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                written.append((tmp, path))
                manifest["tables"][table] = {"file": str(path.relative_to(root)), "rows": rows, "min_time": _iso(lo),
                                             "max_time": _iso(hi), "fingerprint": str(fingerprint),
                                             "content": str(content), "columns": [[n, t] for n, t in cols]}
                report.rows[table] = rows
        if not manifest["tables"]:
            raise HistoryError(f"{day}: no partition to archive")
        # every table written before any file of the previous archive is replaced: a failure while
        # writing (disk full) leaves that archive whole
        for (tmp, path), entry in zip(written, manifest["tables"].values()):
            os.replace(tmp, path)
            _fsync_dir(path.parent)
            entry["sha256"], entry["bytes"] = sha256_of(path), path.stat().st_size
            report.bytes += entry["bytes"]
        _write_atomic(manifest_file(root, day), json.dumps(manifest, indent=1).encode())
        await _record(conn, day, "archived", root)
    return report


async def _merge_previous(conn, root: Path, day: date, manifest: dict) -> int:
    """Load a previous archive's rows into the day's partitions (those already there are kept)
    before the day is archived again; refuses when that archive does not verify itself."""
    try:
        _verify_files(root, day, manifest)
        for table, entry in manifest["tables"].items():
            await _check_columns(conn, day, table, entry)
    except HistoryError as exc:
        raise HistoryError(f"{exc}. The database does not hold what that archive has, so archiving the day again "
                           f"could lose rows that are only in it: put back good files, or move "
                           f"{manifest_file(root, day)} and the day's files aside to archive it anew") from None
    await _ensure_partition(conn, day)
    kept = 0
    async with conn.transaction():
        for table, entry in manifest["tables"].items():
            kept += await _load(conn, root, day, table, entry)
    return kept


def _write_chunk(writer, schema, chunk: list, key_idx: list[int], names: list[str]):
    import pyarrow as pa

    columns = list(zip(*chunk))
    batch = pa.record_batch([pa.array(list(c), type=schema.field(i).type) for i, c in enumerate(columns)],
                            schema=schema)
    writer.write_batch(batch)
    fp = sum(_key_digest(tuple(row[i] for i in key_idx)) for row in chunk)
    times = columns[names.index("published_at")]
    return fp, min(times), max(times)


def file_facts(root: Path, table: str, entry: dict) -> dict:
    """Rows, min/max time and key fingerprint read back from an archived file."""
    import pyarrow.parquet as pq

    path = Path(root) / entry["file"]
    pf = pq.ParquetFile(path)
    keys = list(KEYS[table])
    rows, fingerprint, lo, hi = 0, 0, None, None
    for batch in pf.iter_batches(columns=keys, batch_size=CHUNK_ROWS):
        cols = [batch.column(k).to_pylist() for k in keys]
        for values in zip(*cols):
            fingerprint += _key_digest(values)
        times = cols[keys.index("published_at")]
        if times:
            lo = min(times) if lo is None else min(lo, min(times))
            hi = max(times) if hi is None else max(hi, max(times))
        rows += batch.num_rows
    return {"rows": rows, "min_time": _iso(lo), "max_time": _iso(hi), "fingerprint": str(fingerprint)}


def _check_file(root: Path, day: date, table: str, entry: dict) -> Path:
    path = Path(root) / entry["file"]
    if not path.is_file():
        raise HistoryError(f"{day}: {table} archive file {path} is missing")
    if sha256_of(path) != entry["sha256"]:
        raise HistoryError(f"{day}: {table} archive file {path} does not match its checksum")
    return path


def _verify_files(root: Path, day: date, manifest: dict) -> dict[str, int]:
    """Each file of the manifest is there, matches its checksum, and its rows, min/max time and key
    fingerprint read back are the manifest's. Returns the rows per table."""
    rows = {}
    for table in DAY_TABLES:
        entry = manifest["tables"].get(table)
        if entry is None:
            continue
        _check_file(root, day, table, entry)
        got = file_facts(root, table, entry)
        for k in ("rows", "min_time", "max_time", "fingerprint"):
            if got[k] != entry[k]:
                raise HistoryError(f"{day}: {table} archive {k} is {got[k]}, the manifest says {entry[k]}")
        rows[table] = entry["rows"]
    return rows


class ArchivedKeys:
    """Which scored_event keys (source, id, published_at) a dropped day's archive holds, so that an
    event of that day arriving again (a replay, a feed re-sending an old item) is a duplicate and
    not a new row counted a second time by the rollups. The keys of a day are read once from its
    archived file (the key columns only) as sorted 60-bit digests (8 bytes a row: 4 MB for a day
    of 500,000 events) and kept for the `days` days used last; a day archived again (the union,
    after late rows) is read again (the manifest's size and time are part of the cache key)."""

    def __init__(self, days: int = 8):
        self.days = days
        self._cache: dict[tuple[str, date], tuple[tuple, Any]] = {}

    def held(self, root: Path, day: date, keys: list[tuple]) -> list[bool]:
        """For each key of `day`, whether the archive under `root` has it. HistoryError when the
        day has no archive there or it cannot be read."""
        import numpy as np

        digests = self._digests(Path(root), day)
        if not len(digests) or not keys:
            return [False] * len(keys)
        want = np.fromiter((_key_digest(k) for k in keys), dtype=np.int64, count=len(keys))
        at = np.minimum(np.searchsorted(digests, want), len(digests) - 1)
        return (digests[at] == want).tolist()

    def _digests(self, root: Path, day: date):
        import numpy as np
        import pyarrow.parquet as pq

        path = manifest_file(root, day)
        try:
            st = path.stat()
        except OSError:
            raise HistoryError(f"{day}: no archive manifest at {path}") from None
        stamp, key = (st.st_mtime_ns, st.st_size), (str(root), day)
        hit = self._cache.pop(key, None)
        if hit is None or hit[0] != stamp:
            manifest = read_manifest(root, day)
            entry = (manifest or {"tables": {}})["tables"].get("scored_event")
            if entry is None:
                raise HistoryError(f"{day}: the archive at {root} has no scored_event file")
            try:  # batch by batch: only the digests (8 bytes a row) are held for the whole day
                pf = pq.ParquetFile(Path(root) / entry["file"])
                digests, at = np.empty(pf.metadata.num_rows, np.int64), 0
                for batch in pf.iter_batches(columns=list(KEYS["scored_event"]), batch_size=CHUNK_ROWS):
                    digests[at:at + batch.num_rows] = np.fromiter(map(_text_digest, _key_texts(batch)), np.int64,
                                                                  count=batch.num_rows)
                    at += batch.num_rows
            except (OSError, ValueError) as exc:
                raise HistoryError(f"{day}: the archive file {entry['file']} cannot be read ({exc})") from None
            hit = (stamp, np.unique(digests[:at]))
        self._cache[key] = hit  # the most recently used last
        while len(self._cache) > self.days:
            self._cache.pop(next(iter(self._cache)))
        return hit[1]


async def _verify_db(conn, day: date, manifest: dict) -> None:
    """The partitions still in the database hold what the manifest says (rows, min/max time, keys
    and, for manifests that have it, each row's content)."""
    for table in DAY_TABLES:
        entry = manifest["tables"].get(table)
        in_db = await db_facts(conn, table, day)
        if entry is None:
            if in_db and in_db["rows"]:
                raise ChangedSinceArchive(f"{day}: {table} has {in_db['rows']} rows in the database and none in the "
                                          "archive")
            continue
        if in_db is None:
            continue
        for k in ("rows", "min_time", "max_time", "fingerprint", "content"):
            if k in entry and in_db[k] != entry[k]:
                what = "row contents" if k == "content" else k
                raise ChangedSinceArchive(f"{day}: {table} {what} in the database is {in_db[k]}, the archive has "
                                          f"{entry[k]} (rows written or changed after the archive? archive the day again)")


async def _check_columns(conn, day: date, table: str, entry: dict) -> None:
    live = {n for n, _ in await columns_of(conn, table)}
    missing = [n for n, _ in entry["columns"] if n not in live]
    if missing:
        raise HistoryError(f"{day}: {table} lost columns {missing} since the archive; restore by hand")


async def verify_day(conn, root: Path, day: date) -> DayReport:
    """The manifest, each file's checksum and contents, and (while the partitions exist) the
    database agree; raises HistoryError naming the first difference."""
    root = Path(root)
    manifest = read_manifest(root, day)
    if manifest is None:
        raise HistoryError(f"{day}: no archive (no manifest at {manifest_file(root, day)})")
    report = DayReport(day, "verified")
    report.rows = _verify_files(root, day, manifest)
    await _verify_db(conn, day, manifest)
    return report


async def drop_day(conn, day: date, root: Path | None, *, require_archive: bool = True,
                   lock_timeout_s: float = 5.0, today: date | None = None) -> DayReport:
    """Verify the archive's files, then, in one transaction: lock the day's partitions against
    writes (only rows of that day wait), check that they still hold exactly what the archive has,
    detach and drop them. A row stored or changed after the check cannot be lost with them."""
    import asyncpg

    if day >= (today or utc_today()):
        raise HistoryError(f"{day} is not over yet (UTC): its rows are still being written; refusing to drop it")
    report = DayReport(day, "dropped")
    ms = int(lock_timeout_s * 1000)
    async with _day_lock(conn, day):
        manifest = None
        if require_archive:
            if root is None:
                raise HistoryError(f"{day}: no archive directory set; refusing to drop unarchived history")
            manifest = read_manifest(root, day)
            if manifest is None:
                raise HistoryError(f"{day}: no archive (no manifest at {manifest_file(root, day)})")
            report.rows = _verify_files(root, day, manifest)
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{ms}ms'")
                parts = [(t, partition_name(t, day)) for t in DAY_TABLES if await _exists(conn, partition_name(t, day))]
                if parts:
                    await conn.execute(f"LOCK TABLE {', '.join(p for _, p in parts)} IN SHARE MODE")
                if manifest is not None:
                    await _verify_db(conn, day, manifest)
                for table, part in parts:
                    if not require_archive:
                        report.rows[table] = await conn.fetchval(f"SELECT count(*) FROM {part}")
                    await conn.execute(f"ALTER TABLE {table} DETACH PARTITION {part}")
                    await conn.execute(f"DROP TABLE {part}")
                await _record(conn, day, "dropped", root)
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError) as exc:
            raise HistoryError(f"{day}: its partitions were busy ({type(exc).__name__}: rows being written to the "
                               f"day, or a long reader; waited at most {lock_timeout_s:g} s); nothing was dropped, "
                               "try again") from None
    return report


async def restore_day(conn, root: Path, day: date, progress=None, restore_days: int = 7,
                      lock_timeout_s: float = 5.0) -> DayReport:
    """Load an archived day back (the partition is created if it is gone; rows already there are
    kept: ON CONFLICT DO NOTHING), then pin it for FINSENT_RETENTION_RESTORE_DAYS (0: for good).
    Every file is checked before anything is written, and all tables load in one transaction with
    the pin: a restore that fails leaves the day as it was."""
    root = Path(root)
    async with _day_lock(conn, day):
        manifest = read_manifest(root, day)
        if manifest is None:
            raise HistoryError(f"{day}: no archive (no manifest at {manifest_file(root, day)})")
        for table, entry in manifest["tables"].items():
            _check_file(root, day, table, entry)
            await _check_columns(conn, day, table, entry)
        await _ensure_partition(conn, day, lock_timeout_s)
        report = DayReport(day, "restored")
        async with conn.transaction():
            for table, entry in manifest["tables"].items():
                report.rows[table] = await _load(conn, root, day, table, entry, progress)
            await _record(conn, day, "restored", root, restore_days)
    return report


async def _load(conn, root: Path, day: date, table: str, entry: dict, progress=None) -> int:
    """Copy one archived file into the day's partition (inside the caller's transaction); returns
    the rows that were not there yet. An empty partition takes them by COPY; one that holds some
    (or gets one meanwhile) through a staging table and ON CONFLICT DO NOTHING."""
    import asyncpg

    path, cols = Path(root) / entry["file"], [n for n, _ in entry["columns"]]
    part = partition_name(table, day)
    if not await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {part})"):
        try:
            async with conn.transaction():  # a savepoint: a row stored meanwhile sends it the other way
                return await _copy_file(conn, path, part, cols, table, progress)
        except asyncpg.UniqueViolationError:
            pass
    stage = f"finsent_restore_{table}"
    await conn.execute(f"CREATE TEMP TABLE {stage} (LIKE {table}) ON COMMIT DROP")
    await _copy_file(conn, path, stage, cols, table, progress)
    names = ", ".join(cols)
    status = await conn.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} ON CONFLICT DO NOTHING")
    await conn.execute(f"DROP TABLE {stage}")
    return int(status.split()[-1])


async def _copy_file(conn, path: Path, target: str, cols: list[str], table: str, progress=None) -> int:
    import pyarrow.parquet as pq

    copied = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS):
        records = list(zip(*(batch.column(c).to_pylist() for c in cols)))
        await conn.copy_records_to_table(target, records=records, columns=cols)
        copied += len(records)
        if progress:
            progress(table, len(records))
    return copied


# --- upkeep -------------------------------------------------------------------------------------------

async def _record(conn, day: date, state: str, root: Path | None, restore_days: int = 7) -> None:
    # a restored day is pinned for restore_days; 0 keeps it for good (0 = forever, as for every retention)
    await conn.execute("""INSERT INTO history_day (day, state, archive_dir, updated_at, pinned_until)
        VALUES ($1, $2::varchar, $3, now(), CASE WHEN $2::varchar = 'restored' THEN
            CASE WHEN $4 > 0 THEN now() + make_interval(days => $4) ELSE 'infinity'::timestamptz END END)
        ON CONFLICT (day) DO UPDATE SET state = excluded.state, updated_at = now(),
            archive_dir = coalesce(excluded.archive_dir, history_day.archive_dir),
            pinned_until = excluded.pinned_until""",
                       day, state, None if root is None else str(root), restore_days)


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


async def upkeep(conn, policy: Retention, today: date | None = None, *, rollup_batch: int = 50_000) -> list[str]:
    """One bounded step of the lifecycle: the oldest day past raw retention is archived, verified
    and dropped (or just dropped when no archive is wanted and `drop_unarchived`); rollup rows
    past their retention are deleted, at most `rollup_batch` per table. Returns what it did, a
    line each. Raises HistoryError when a day past retention cannot be dropped safely."""
    today = today or utc_today()
    done: list[str] = []
    if policy.raw_days > 0:
        cutoff = today - timedelta(days=policy.raw_days)
        await _split_default(conn, cutoff)
        pinned = {r["day"] for r in await conn.fetch(
            "SELECT day FROM history_day WHERE state = 'restored' AND pinned_until > now()")}
        old = sorted(d for d in await day_partitions(conn) if d < cutoff and d not in pinned)
        if old:
            day = old[0]
            try:
                if policy.archive_dir is not None:
                    async with _day_lock(conn, day):  # a day being restored (or archived by hand) is left alone
                        for attempt in range(ARCHIVE_ATTEMPTS):
                            if (read_manifest(policy.archive_dir, day) is None
                                    or not await _passes(verify_day(conn, policy.archive_dir, day))):
                                done.append((await archive_day(conn, policy.archive_dir, day)).line())
                            try:
                                done.append((await drop_day(conn, day, policy.archive_dir, today=today)).line())
                                break
                            except ChangedSinceArchive:  # a late row of the day came in meanwhile: again
                                if attempt == ARCHIVE_ATTEMPTS - 1:
                                    raise
                elif policy.drop_unarchived:
                    done.append((await drop_day(conn, day, None, require_archive=False, today=today)).line())
            except DayBusy as exc:
                done.append(f"{day} skipped: {exc}")
            if policy.archive_dir is None and not policy.drop_unarchived:
                raise NoArchive(f"{day} is past raw retention ({policy.raw_days} days) and no archive directory "
                                   "is set: set FINSENT_ARCHIVE_DIR, or FINSENT_RETENTION_DROP_UNARCHIVED=true")
    for table, days in policy.rollup_days().items():
        if days > 0:
            col = ROLLUPS[table]
            status = await conn.execute(f"""DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table}
                WHERE {col} < $1 LIMIT {int(rollup_batch)}))""", _midnight(today - timedelta(days=days)))
            if (n := int(status.split()[-1])):
                done.append(f"{table}: {n:,} rows past {days} days deleted")
    if policy.alert_days > 0:
        status = await conn.execute("""DELETE FROM alert WHERE id = ANY(ARRAY(SELECT id FROM alert
            WHERE state = 'resolved' AND opened_at < $1 LIMIT 10000))""", _midnight(today - timedelta(days=policy.alert_days)))
        if (n := int(status.split()[-1])):
            done.append(f"alert: {n:,} resolved alerts past {policy.alert_days} days deleted")
    return done


async def _passes(check) -> bool:
    """Whether an awaited check (verify_day, _verify_db) finds nothing wrong."""
    try:
        await check
        return True
    except HistoryError:
        return False


async def _split_default(conn, cutoff: date) -> None:
    """Old rows that landed in a default partition (late or backfilled) get their day's partition
    first, so that they are archived and dropped like the rest, never deleted from the default."""
    for table in DAY_TABLES:
        if not await _exists(conn, f"{table}_default"):
            continue
        days = await conn.fetch(f"""SELECT DISTINCT (published_at AT TIME ZONE 'UTC')::date AS day
            FROM {table}_default WHERE published_at < $1 LIMIT 100""", _midnight(cutoff))
        for r in days:
            await _ensure_partition(conn, r["day"])


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


async def status(conn, policy: Retention, today: date | None = None) -> list[dict]:
    """Each day in the database or the history_day table: rows, state, archived or not."""
    today = today or utc_today()
    parts = await day_partitions(conn)
    states = {r["day"]: dict(r) for r in await conn.fetch("SELECT * FROM history_day")}
    out = []
    for day in sorted(set(parts) | set(states)):
        rows = await day_rows(conn, "scored_event", day) if day in parts else None
        try:
            archived: bool | str = policy.archive_dir is not None and read_manifest(policy.archive_dir, day) is not None
        except HistoryError:
            archived = "unreadable manifest"
        out.append({"day": day, "rows": rows, "in_database": day in parts,
                    "archived": archived, "state": states.get(day, {}).get("state"),
                    "past_retention": policy.raw_days > 0 and day < today - timedelta(days=policy.raw_days)})
    return out
