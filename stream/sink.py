"""Postgres writes of the worker (asyncpg). Nothing is acknowledged unwritten:

- connection loss, deadlocks, serialization failures, a full disk, a missing table or any
  other error the batch cannot fix: retried with exponential backoff (≤ `max_backoff_s`) for
  as long as it takes, while /health says why and `finsent_halted` is 1; offsets do not move;
- a data error (a row Postgres refuses): raised as `Rejected` so the caller can isolate the
  row and dead-letter it with the reason, storing the rest.

Every wait has a bound (DbTimeouts): connect and pool acquire, the server's statement_timeout,
lock_timeout and idle_in_transaction_session_timeout, asyncpg's command_timeout on the client (a
half-open connection fails within it instead of hanging until the kernel gives up), and TCP
keepalives on TCP connections. A timeout is one more failure retried with backoff and shown in
/health, never a silent wait: a `LOCK TABLE alert` left open makes alert writes fail with
LockNotAvailable after lock_timeout, reported under `alert` even while row writes succeed
(errors are kept per kind of write; a success clears only its own).

Failover: `DATABASE_URL` may name several hosts (host=a,b or a:5432,b:5432) with
`target_session_attrs=read-write`; a server that answers read-only (SQLSTATE 25006, a primary
demoted to a standby) is treated like a lost connection: the pool is thrown away and the next
connect picks the host that accepts writes.

Every write is idempotent: rows and rollups through core.events.store_scored (ON CONFLICT DO
NOTHING RETURNING), alerts by their identity (key, start of the window they opened on) and
their events by (alert, event, revision).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import orjson

from core import logs
from core.events import retimed, store_scored
from core.history import ArchivedKeys
from core.pg import ensure_partitions
from stream import metrics
from stream.detector import Decision
from stream.records import ALERT_EVENTS, AlertRecord

log = logs.get("finsent.sink")

CONNECTION = (OSError, ConnectionError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
              asyncpg.InterfaceError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError,
              asyncpg.AdminShutdownError, asyncpg.ReadOnlySQLTransactionError,
              asyncpg.IdleInTransactionSessionTimeoutError)
TRANSIENT = (asyncpg.TransactionRollbackError, asyncpg.LockNotAvailableError, asyncpg.InsufficientResourcesError,
             asyncpg.OperatorInterventionError)
# a value the driver cannot encode (asyncpg's COPY raises OverflowError for a date before year 1 in
# UTC) is a data error too: retrying it would hold every partition forever
DATA = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, asyncpg.ProgramLimitExceededError,
        OverflowError, UnicodeEncodeError)


class Rejected(Exception):
    """Postgres refused the data itself (not the connection or the server state)."""


def ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def routing_race(exc: BaseException) -> bool:
    """A row the router had sent to the default partition while that day's partition was being
    attached (the worker's or the history upkeep's partition upkeep): once the attach commits, the
    default partition's new constraint refuses it. Not the row's fault: the same insert again routes
    it to the new partition. (With a default partition every row has a home, so no row of ours is
    refused by a partition constraint for what it holds.)"""
    return isinstance(exc, asyncpg.CheckViolationError) and "partition constraint" in str(exc)


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, CONNECTION):
        return "connection"
    return "transient" if isinstance(exc, TRANSIENT) or routing_race(exc) else "error"


@dataclass(frozen=True)
class DbTimeouts:
    """Bounds of every Postgres wait of the worker, in seconds (0 turns a server-side one off)."""

    connect_s: float = 10.0  # one connection attempt (per host)
    acquire_s: float = 10.0  # waiting for a free pooled connection
    statement_s: float = 60.0  # server: statement_timeout
    lock_s: float = 10.0  # server: lock_timeout
    idle_in_transaction_s: float = 60.0  # server: idle_in_transaction_session_timeout
    command_s: float = 90.0  # client: asyncpg command_timeout (outlasts the server's own, for a dead link)
    keepalive_s: float = 10.0  # TCP: first keepalive probe after this much silence; dead after ~3 more

    def server_settings(self) -> dict[str, str]:
        return {"statement_timeout": str(int(self.statement_s * 1000)), "lock_timeout": str(int(self.lock_s * 1000)),
                "idle_in_transaction_session_timeout": str(int(self.idle_in_transaction_s * 1000))}


def keepalive(conn: asyncpg.Connection, idle_s: float) -> None:
    """TCP keepalives and a user timeout on a TCP connection (not on a Unix socket)."""
    sock = conn._transport.get_extra_info("socket") if getattr(conn, "_transport", None) else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    idle = max(1, int(idle_s))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", idle), ("TCP_KEEPCNT", 3),
                        ("TCP_USER_TIMEOUT", idle * 4 * 1000)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


DROPPED_DAYS_SQL = "SELECT day, archive_dir FROM history_day WHERE state = 'dropped' AND day = ANY($1::date[])"


def _without(dropped: set, rows: list[tuple], entities, items) -> tuple[list, list, list]:
    """The batch without the rows keyed (source, id, published_at) in `dropped` (and their entity
    rows and story items)."""
    if not dropped:
        return rows, entities, items
    return ([r for r in rows if (r[0], r[1], r[2]) not in dropped],
            [e for e in entities if (e[0], e[1], e[2]) not in dropped],
            [i for i in items if (i.source, i.id, i.published_at) not in dropped])


class PostgresSink:
    def __init__(self, dsn: str, max_backoff_s: float = 5.0, pool_size: int = 4, timeouts: DbTimeouts | None = None,
                 dedupe_window_s: float = 72 * 3600.0):
        self.dsn, self.max_backoff_s, self.pool_size = dsn, max_backoff_s, pool_size
        self.dedupe_window_s = dedupe_window_s  # core.events.retimed: 0 = (source, id, published_at) is the key
        self.archived_keys = ArchivedKeys()  # the keys of dropped days' archives, read when their rows come again
        self._unreadable: set = set()  # dropped days whose archive could not be read (warned once each)
        self.timeouts = timeouts or DbTimeouts()
        self.pool: asyncpg.Pool | None = None
        self.errors: dict[str, str] = {}  # kind of write (scored_event, outbox, alert) -> its last failure

    @property
    def up(self) -> bool:
        return not self.errors

    @property
    def last_error(self) -> str:
        """Every kind of write that is failing now, with its error ("" when none)."""
        return "; ".join(f"{what}: {err}" for what, err in sorted(self.errors.items()))

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def _connect(self) -> asyncpg.Pool:
        if self.pool is None:
            t = self.timeouts
            self.pool = await asyncio.wait_for(asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self.pool_size, timeout=t.connect_s, command_timeout=t.command_s,
                server_settings=t.server_settings(), init=lambda c: self._init(c)), t.connect_s * 3)
        return self.pool

    async def _init(self, conn: asyncpg.Connection) -> None:
        keepalive(conn, self.timeouts.keepalive_s)

    async def retrying(self, what: str, op: Callable[[asyncpg.Connection], Awaitable]):
        """Run `op` in a transaction until it succeeds; `Rejected` for a data error."""
        delay, t0 = 0.2, time.perf_counter()
        while True:
            try:
                pool = await self._connect()
                async with pool.acquire(timeout=self.timeouts.acquire_s) as conn, conn.transaction():
                    result = await op(conn)
                self._healthy(what)
                metrics.WRITE_LATENCY.observe(time.perf_counter() - t0)
                return result
            except DATA as exc:
                if not routing_race(exc):
                    raise Rejected(f"{type(exc).__name__}: {exc}"[:500]) from exc
                await self._failed(what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
            except Exception as exc:  # noqa: BLE001 - every other failure holds the batch and retries
                await self._failed(what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)

    def _healthy(self, what: str) -> None:
        if self.errors.pop(what, None) is not None:
            log.info("postgres writes resumed", what=what)
        metrics.DB_UP.set(0 if self.errors else 1)
        metrics.HALTED.set(1 if self.errors else 0)

    async def _failed(self, what: str, exc: Exception, delay: float) -> None:
        kind = error_kind(exc)
        metrics.DB_UP.set(0)
        metrics.HALTED.set(1)
        metrics.DB_RETRIES.labels(kind).inc()
        self.errors[what] = f"{kind}: {exc!r}"[:300]
        message = "postgres unavailable; retrying" if kind == "connection" else "postgres write failed; retrying"
        log.warning(message, what=what, kind=kind, error=repr(exc)[:300], retry_in_s=delay)
        if kind == "connection":
            pool, self.pool = self.pool, None
            if pool is not None:
                pool.terminate()

    # -- scored events ----------------------------------------------------------------------
    async def store(self, rows: list[tuple], outbox: Callable[..., bytes | None],
                    entities: list[tuple] = (), stories=None, items: list = ()) -> tuple[set, int | None]:
        """Rows, their entity rows and rollups, their stories (`stories.assign(conn, items)`, a
        core.stories.Stories: under its advisory lock, whose wait lock_timeout bounds), plus the
        detector's count records of the rows really inserted (`outbox(new ids[, {(source, id):
        (story id, novel, copies)}]) -> payload`), in one transaction. Returns (new ids, outbox id).
        Rows whose (source, id) is stored under another published_at (core.events.retimed), and rows
        of a dropped day that its archive holds (`_archived`), are left out before anything is
        written: not new, not counted, not a story's copy."""
        async def op(conn):
            dropped = await retimed(conn, rows, self.dedupe_window_s)
            archived = await self._archived(conn, [r for r in rows if (r[0], r[1], r[2]) not in dropped])
            new, oid = await write(conn, *_without(dropped | archived, rows, entities, items))
            return new, oid, dropped, archived

        async def write(conn, rows, entities, items):
            if stories is not None and items:
                # stories first (under their lock), so that each row is inserted once with its story
                assigned = await stories.assign(conn, items, write_events=False)
                new = await store_scored(conn, rows, entities, {(a.source, a.id, a.published_at):
                                                                (a.story_id, a.novel, a.copies) for a in assigned})
                payload = outbox(new, {(a.source, a.id): (a.story_id, a.novel, a.copies) for a in assigned})
            else:
                new = await store_scored(conn, rows, entities)
                payload = outbox(new)
            oid = await conn.fetchval(INSERT_OUTBOX, payload) if payload else None
            return new, oid
        new, oid, dropped, archived = await self.retrying("scored_event", op)
        for counter, keys, what in ((metrics.RETIMED, dropped, "re-timed copies of stored items left out"),
                                    (metrics.ARCHIVED, archived, "items of archived days arriving again left out")):
            if keys:
                counter.inc(len(keys))
                log.info(what, count=len(keys), examples=[f"{s}/{i}@{t.isoformat()}" for s, i, t in sorted(keys)[:3]])
        return new, oid

    async def _archived(self, conn, rows: list[tuple]) -> set[tuple]:
        """The (source, id, published_at) of `rows` that the archive of their day holds, for the
        days upkeep has dropped (history_day): such a row is a replay of one stored, counted and
        archived before, not a new one. A day dropped without an archive, or whose archive cannot
        be read (a warning, once per day), has nothing to compare with: its rows are stored."""
        if not rows:
            return set()
        by_day: dict = {}
        today = datetime.now(timezone.utc).date()
        for r in rows:
            day = r[2].astimezone(timezone.utc).date()
            if day < today:  # a day is dropped only once it is over: today's rows (the live feed) skip the lookup
                by_day.setdefault(day, []).append((r[0], r[1], r[2]))
        if not by_day:
            return set()
        found = set()
        for rec in await conn.fetch(DROPPED_DAYS_SQL, list(by_day)):
            day, root = rec["day"], rec["archive_dir"]
            if root is None:
                continue
            keys = by_day[day]
            try:
                held = await asyncio.to_thread(self.archived_keys.held, Path(root), day, keys)
            except Exception as exc:  # noqa: BLE001 - HistoryError, or a manifest of an unexpected shape: never a halt
                if day not in self._unreadable:
                    self._unreadable.add(day)
                    log.warning("a dropped day's archive cannot be read: its rows arriving again are stored as new "
                                "and counted again", day=day.isoformat(), error=str(exc)[:300])
                continue
            self._unreadable.discard(day)
            found.update(k for k, h in zip(keys, held) if h)
        return found

    async def acquire(self):
        """A pooled connection for upkeep (`async with await sink.acquire() as conn`), its wait bounded."""
        pool = await self._connect()
        return pool.acquire(timeout=self.timeouts.acquire_s)

    async def outbox_done(self, oid: int) -> None:
        await self.retrying("outbox", lambda c: c.execute("DELETE FROM detector_outbox WHERE id = $1", oid))

    async def outbox_stale(self, older_than_s: float, limit: int = 100) -> list[tuple[int, bytes]]:
        rows = await self.retrying("outbox", lambda c: c.fetch(STALE_OUTBOX, older_than_s, limit))
        return [(r["id"], r["payload"]) for r in rows]

    # -- alerts -----------------------------------------------------------------------------
    async def write_decision(self, d: Decision) -> AlertRecord | None:
        """The alert row and its event, idempotently; returns the finsent.alerts record (None when
        the row was already past this decision)."""
        payload = alert_payload(d)
        key_type, key = d.key.split(":", 1)
        ident = (key_type, key, ts(d.alert_start))
        evidence = (ts(d.window_end), d.n, d.negatives, d.baseline_rate, d.baseline_n, d.z, d.p_value, d.severity,
                    list(d.sample_event_ids), orjson.dumps(payload.stories).decode())
        args = {"open": ident + evidence, "escalate": ident + evidence + (d.revision,), "resolve": ident}[d.action]

        async def op(conn):
            row = await conn.fetchrow(ALERT_SQL[d.action], *args)
            if row is None:
                return None
            full = dataclasses.replace(payload, alert_id=row["id"], opened_at=row["opened_at"].isoformat(),
                                       resolved_at=row["resolved_at"].isoformat() if row["resolved_at"] else None)
            await conn.execute(INSERT_ALERT_EVENT, row["id"], full.event, d.revision, key_type, key, d.severity,
                               full.encode().decode())
            return full
        return await self.retrying("alert", op)

    # -- upkeep -----------------------------------------------------------------------------
    async def partition_upkeep(self, days_ahead: int = 7) -> list:
        """Daily partitions (UTC), one transaction per day; errors are counted and re-raised."""
        pool = await self._connect()
        async with pool.acquire(timeout=self.timeouts.acquire_s) as conn:
            try:
                return await ensure_partitions(conn, days_ahead)
            except Exception:
                metrics.PARTITION_UPKEEP_ERRORS.inc()
                raise


def alert_payload(d: Decision) -> AlertRecord:
    key_type, key = d.key.split(":", 1)
    return AlertRecord(event=ALERT_EVENTS[d.action], state="resolved" if d.action == "resolve" else "open",
                       revision=d.revision, key_type=key_type, key=key, alert_start=ts(d.alert_start).isoformat(),
                       window_start=ts(d.window_start).isoformat(), window_end=ts(d.window_end).isoformat(),
                       n=d.n, negatives=d.negatives, expected_negatives=d.expected, baseline_rate=d.baseline_rate,
                       baseline_n=d.baseline_n, z=d.z, p_value=d.p_value, severity=d.severity,
                       sample_event_ids=list(d.sample_event_ids), stories=story_list(d))


def story_list(d: Decision) -> list[dict]:
    """The decision's stories as alert.stories and the finsent.alerts record carry them."""
    return [{"story_id": sid, "copies": int(copies), "sources": list(sources)} for sid, copies, sources in d.stories]


INSERT_OUTBOX = "INSERT INTO detector_outbox (payload) VALUES ($1) RETURNING id"
STALE_OUTBOX = """SELECT id, payload FROM detector_outbox WHERE created_at < now() - make_interval(secs => $1)
ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"""
_RETURNING = "RETURNING id, opened_at, resolved_at"
ALERT_SQL = {
    "open": f"""INSERT INTO alert (key_type, key, window_start, window_end, n, negatives, baseline_rate, baseline_n,
        z, p_value, severity, sample_event_ids, stories, state)
    VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13::jsonb,'open')
    ON CONFLICT ON CONSTRAINT uq_alert_key_window DO UPDATE SET key = EXCLUDED.key {_RETURNING}""",
    "escalate": f"""UPDATE alert SET window_end = $4, n = $5, negatives = $6, baseline_rate = $7, baseline_n = $8,
        z = $9, p_value = $10, severity = $11, sample_event_ids = $12, stories = $13::jsonb,
        revision = greatest(revision, $14),
        updated_at = now()
    WHERE key_type = $1 AND key = $2 AND window_start = $3 {_RETURNING}""",
    "resolve": f"""UPDATE alert SET state = 'resolved', resolved_at = coalesce(resolved_at, now()), updated_at = now()
    WHERE key_type = $1 AND key = $2 AND window_start = $3 {_RETURNING}""",
}
INSERT_ALERT_EVENT = """INSERT INTO alert_event (alert_id, event, revision, key_type, key, severity, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) ON CONFLICT ON CONSTRAINT uq_alert_event_alert_event_revision DO NOTHING"""
