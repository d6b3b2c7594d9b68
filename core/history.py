"""History lifecycle: retention per table, a Parquet archive per day, verify, restore.

Raw rows live in daily partitions (`scored_event_YYYYMMDD` and the tables whose rows hang off an
event and are partitioned the same way: `event_entity_YYYYMMDD`, and any later one listed in
DAY_TABLES). Past `FINSENT_RETENTION_RAW_DAYS` the worker's upkeep, one day per call:

    1. archives the day (when FINSENT_ARCHIVE_DIR is set): one Parquet file per table and day
       (zstd, sorted by time and key), written to a temporary name, fsynced and renamed, then a
       manifest (rows, min/max time, sha256 of each file, a fingerprint of the keys) written
       the same way. The manifest is written last: a crash before it leaves no archive, only a
       temporary file that the next attempt replaces.
    2. verifies the archive against the partitions still in the database (file checksum, row
       count, min/max time and the key fingerprint, computed from the file and from SQL);
    3. detaches and drops the day's partitions in one transaction. Never a DELETE over the table.

A crash anywhere leaves either the partition (archived or not: the next call starts again from
step 1, or 2 when the manifest is there) or a verified archive. `history_day` records each day's
state. Rollups are not partitioned: minute and 5-minute rows older than their retention are
deleted in bounded batches through their time index; hourly rollups and alerts are kept unless a
retention is set for them.

    finsent history status | archive DAY | verify DAY | drop DAY | restore DAY | upkeep

A restored day is pinned (`history_day.pinned_until`, FINSENT_RETENTION_RESTORE_DAYS) so that
upkeep does not drop it again at once; after that it is dropped without a second archive (the
manifest is still there and verified first).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

DAY_TABLES = ("scored_event", "event_entity")  # parent tables with daily partitions, archived together
KEYS = {"scored_event": ("source", "id", "published_at"),
        "event_entity": ("source", "event_id", "published_at", "ticker")}
ROLLUPS = {"event_rollup_minute": "minute", "event_rollup_5m": "bucket", "event_rollup_hour": "bucket"}
MANIFEST_VERSION = 1
CHUNK_ROWS = 50_000
PARTITION_NAME = re.compile(r"^(?P<table>[a-z_]+)_(?P<day>\d{8})$")


class HistoryError(RuntimeError):
    """An archive that is missing, incomplete or does not match the database: nothing is dropped."""


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
    path = manifest_file(root, day)
    if not path.exists():
        return None
    return json.loads(path.read_text())


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
    text = "|".join(_key_text(v) for v in values)
    return int(hashlib.md5(text.encode()).hexdigest()[:15], 16)


def _key_text(v: Any) -> str:
    if isinstance(v, datetime):
        return str(round(v.timestamp() * 1_000_000))
    return str(v)


def _key_sql(keys: tuple[str, ...]) -> str:
    parts = [f"(extract(epoch FROM {k}) * 1000000)::bigint::text" if k == "published_at" else f"{k}::text"
             for k in keys]
    joined = " || '|' || ".join(parts)
    return f"('x' || substr(md5({joined}), 1, 15))::bit(60)::bigint"


async def db_facts(conn, table: str, day: date) -> dict | None:
    """Rows, min/max time and key fingerprint of one day's partition, or None if it is gone."""
    part = partition_name(table, day)
    if not await _exists(conn, part):
        return None
    r = await conn.fetchrow(f"""SELECT count(*) AS rows, min(published_at) AS lo, max(published_at) AS hi,
        coalesce(sum({_key_sql(KEYS[table])}::numeric), 0)::text AS fingerprint FROM {part}""")
    return {"rows": r["rows"], "min_time": _iso(r["lo"]), "max_time": _iso(r["hi"]), "fingerprint": r["fingerprint"]}


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(timezone.utc).isoformat()


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
    """Write the day's partitions to Parquet and the manifest last (see the module's doc)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    manifest: dict[str, Any] = {"version": MANIFEST_VERSION, "day": day.isoformat(), "tables": {},
                                "written_at": datetime.now(timezone.utc).isoformat()}
    report = DayReport(day, "archived")
    for table in DAY_TABLES:
        part = partition_name(table, day)
        if not await _exists(conn, part):
            continue
        cols = await columns_of(conn, table)
        schema = pa.schema([(name, arrow_type(t)) for name, t in cols])
        names = [n for n, _ in cols]
        select = ", ".join(f"{n}::text" if t in ("jsonb", "json", "uuid") else n for n, t in cols)
        order = ", ".join(["published_at"] + [k for k in KEYS[table] if k != "published_at"])  # time, then key
        path = day_file(root, table, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        rows, fingerprint, lo, hi = 0, 0, None, None
        key_idx = [names.index(k) for k in KEYS[table]]
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                cursor = await conn.cursor(f"SELECT {select} FROM {part} ORDER BY {order}")
                while chunk := [tuple(r) for r in await cursor.fetch(CHUNK_ROWS)]:
                    fp, clo, chi = _write_chunk(writer, schema, chunk, key_idx, names)
                    rows, fingerprint = rows + len(chunk), fingerprint + fp
                    lo, hi = clo if lo is None else min(lo, clo), chi if hi is None else max(hi, chi)
                    if progress:
                        progress(table, len(chunk))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        manifest["tables"][table] = {"file": str(path.relative_to(root)), "rows": rows, "min_time": _iso(lo),
                                     "max_time": _iso(hi), "fingerprint": str(fingerprint),
                                     "sha256": sha256_of(path), "bytes": path.stat().st_size,
                                     "columns": [[n, t] for n, t in cols]}
        report.rows[table], report.bytes = rows, report.bytes + path.stat().st_size
    if not manifest["tables"]:
        raise HistoryError(f"{day}: no partition to archive")
    _write_atomic(manifest_file(root, day), json.dumps(manifest, indent=1).encode())
    await _record(conn, day, "archived", root)
    return report


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


async def verify_day(conn, root: Path, day: date) -> DayReport:
    """The manifest, each file's checksum and contents, and (while the partitions exist) the
    database agree; raises HistoryError naming the first difference."""
    root = Path(root)
    manifest = read_manifest(root, day)
    if manifest is None:
        raise HistoryError(f"{day}: no archive (no manifest at {manifest_file(root, day)})")
    report = DayReport(day, "verified")
    for table in DAY_TABLES:
        entry = manifest["tables"].get(table)
        in_db = await db_facts(conn, table, day)
        if entry is None:
            if in_db and in_db["rows"]:
                raise HistoryError(f"{day}: {table} has {in_db['rows']} rows in the database and none in the archive")
            continue
        path = root / entry["file"]
        if not path.exists():
            raise HistoryError(f"{day}: {table} archive file {path} is missing")
        if sha256_of(path) != entry["sha256"]:
            raise HistoryError(f"{day}: {table} archive file {path} does not match its checksum")
        got = file_facts(root, table, entry)
        for k in ("rows", "min_time", "max_time", "fingerprint"):
            if got[k] != entry[k]:
                raise HistoryError(f"{day}: {table} archive {k} is {got[k]}, the manifest says {entry[k]}")
            if in_db is not None and in_db[k] != entry[k]:
                raise HistoryError(f"{day}: {table} {k} in the database is {in_db[k]}, the archive has {entry[k]} "
                                   "(rows written after the archive? archive the day again)")
        report.rows[table] = entry["rows"]
    return report


async def drop_day(conn, day: date, root: Path | None, *, require_archive: bool = True,
                   lock_timeout_s: float = 5.0) -> DayReport:
    """Verify the archive, then detach and drop the day's partitions in one transaction."""
    report = DayReport(day, "dropped")
    if require_archive:
        if root is None:
            raise HistoryError(f"{day}: no archive directory set; refusing to drop unarchived history")
        report.rows = (await verify_day(conn, root, day)).rows
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
        for table in DAY_TABLES:
            part = partition_name(table, day)
            if await _exists(conn, part):
                if not require_archive:
                    report.rows[table] = await conn.fetchval(f"SELECT count(*) FROM {part}")
                await conn.execute(f"ALTER TABLE {table} DETACH PARTITION {part}")
                await conn.execute(f"DROP TABLE {part}")
        await _record(conn, day, "dropped", root)
    return report


async def restore_day(conn, root: Path, day: date, progress=None, restore_days: int = 7) -> DayReport:
    """Load an archived day back (the partition is created if it is gone; rows already there are
    kept: ON CONFLICT DO NOTHING), then pin it for FINSENT_RETENTION_RESTORE_DAYS."""
    import pyarrow.parquet as pq

    root = Path(root)
    manifest = read_manifest(root, day)
    if manifest is None:
        raise HistoryError(f"{day}: no archive (no manifest at {manifest_file(root, day)})")
    await conn.fetchval("SELECT finsent_ensure_day_partition($1)", day)
    report = DayReport(day, "restored")
    for table, entry in manifest["tables"].items():
        path = root / entry["file"]
        if sha256_of(path) != entry["sha256"]:
            raise HistoryError(f"{day}: {table} archive file {path} does not match its checksum")
        cols = [n for n, _ in entry["columns"]]
        live = {n for n, _ in await columns_of(conn, table)}
        missing = [c for c in cols if c not in live]
        if missing:
            raise HistoryError(f"{day}: {table} lost columns {missing} since the archive; restore by hand")
        part = partition_name(table, day)
        async with conn.transaction():
            # an empty partition (the usual case: the day was dropped) takes the rows by COPY; one that
            # already holds some goes through a staging table and ON CONFLICT DO NOTHING
            empty = not await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {part})")
            target = part if empty else "restore_rows"
            if not empty:
                await conn.execute(f"CREATE TEMP TABLE restore_rows (LIKE {table}) ON COMMIT DROP")
            copied = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS):
                records = list(zip(*(batch.column(c).to_pylist() for c in cols)))
                await conn.copy_records_to_table(target, records=records, columns=cols)
                copied += len(records)
                if progress:
                    progress(table, len(records))
            if not empty:
                names = ", ".join(cols)
                status = await conn.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM restore_rows "
                                            "ON CONFLICT DO NOTHING")
                copied = int(status.split()[-1])
        report.rows[table] = copied
    await _record(conn, day, "restored", root, restore_days)
    return report


# --- upkeep -------------------------------------------------------------------------------------------

async def _record(conn, day: date, state: str, root: Path | None, restore_days: int = 7) -> None:
    await conn.execute("""INSERT INTO history_day (day, state, archive_dir, updated_at, pinned_until)
        VALUES ($1, $2::varchar, $3, now(), CASE WHEN $2::varchar = 'restored' THEN now() + make_interval(days => $4) END)
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
            if policy.archive_dir is not None:
                if read_manifest(policy.archive_dir, day) is None or not await _matches(conn, policy.archive_dir, day):
                    done.append((await archive_day(conn, policy.archive_dir, day)).line())
                done.append((await drop_day(conn, day, policy.archive_dir)).line())
            elif policy.drop_unarchived:
                done.append((await drop_day(conn, day, None, require_archive=False)).line())
            else:
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


async def _matches(conn, root: Path, day: date) -> bool:
    try:
        await verify_day(conn, root, day)
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
            await conn.fetchval("SELECT finsent_ensure_day_partition($1)", r["day"])


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


async def status(conn, policy: Retention, today: date | None = None) -> list[dict]:
    """Each day in the database or the history_day table: rows, state, archived or not."""
    today = today or utc_today()
    parts = await day_partitions(conn)
    states = {r["day"]: dict(r) for r in await conn.fetch("SELECT * FROM history_day")}
    out = []
    for day in sorted(set(parts) | set(states)):
        facts = await db_facts(conn, "scored_event", day) if day in parts else None
        archived = policy.archive_dir is not None and read_manifest(policy.archive_dir, day) is not None
        out.append({"day": day, "rows": None if facts is None else facts["rows"], "in_database": day in parts,
                    "archived": archived, "state": states.get(day, {}).get("state"),
                    "past_retention": policy.raw_days > 0 and day < today - timedelta(days=policy.raw_days)})
    return out
