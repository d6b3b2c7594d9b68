"""`finsent history`: the raw-history lifecycle by hand (core/history.py; the worker's upkeep does
the same one day at a time).

    finsent history status                 days in the database and the archive, past retention or not
    finsent history archive 2026-11-01     write the day's Parquet files and manifest
    finsent history verify 2026-11-01      files, checksums and (while present) the partitions agree
    finsent history drop 2026-11-01        verify, then detach and drop the day's partitions
    finsent history restore 2026-11-01     load an archived day back (pinned for a while)
    finsent history upkeep                 one step of the worker's upkeep, now
"""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="raw history: retention, Parquet archive, restore")
console = Console(stderr=True)
ArchiveOpt = Annotated[Optional[Path], typer.Option("--archive-dir", help="default: FINSENT_ARCHIVE_DIR")]


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a day (YYYY-MM-DD)") from None


class _NoDatabase(Exception):
    pass


def _run(work) -> None:
    import asyncpg

    from core.history import HistoryError

    try:
        asyncio.run(work)
    except HistoryError as exc:
        _fail(str(exc), 1)
    except _NoDatabase as exc:
        _fail(f"the database could not be reached: {exc}"[:500], 1)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        _fail(f"the database refused the work: {type(exc).__name__}: {exc}"[:500], 1)
    except OSError as exc:  # the archive directory: missing, not writable, full
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"archive I/O failed ({exc.strerror or exc}){where}", 1)
    except asyncio.TimeoutError:
        _fail("the database did not answer in time", 1)


def _fail(message: str, code: int) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


async def _connect():
    import asyncpg

    from core.pg import libpq_dsn

    try:
        return await asyncpg.connect(libpq_dsn(_settings().database_url), timeout=30)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise _NoDatabase(f"{type(exc).__name__}: {exc}") from None


def _settings():
    """The settings, or a message and exit code 2 when the environment holds a bad one."""
    from pydantic import ValidationError

    from core.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        names = [str(e["loc"][0]) if e["loc"] else "?" for e in exc.errors()]
        envs = [n if n.isupper() else f"FINSENT_{n.upper()}" for n in names]
        bad = "; ".join(f"{env}: {e['msg']}" for env, e in zip(envs, exc.errors()))
        _fail(f"invalid setting: {bad}", 2)


def _policy(archive_dir: Path | None):
    from dataclasses import replace

    from core.history import Retention

    policy = Retention.from_settings(_settings())
    return replace(policy, archive_dir=archive_dir) if archive_dir is not None else policy


def _archive(archive_dir: Path | None) -> Path:
    root = _policy(archive_dir).archive_dir
    if root is None:
        _fail("no archive directory: set FINSENT_ARCHIVE_DIR or pass --archive-dir", 2)
    return root


def _progress(progress: Progress, total_of: dict):
    tasks: dict = {}

    def step(table: str, n: int) -> None:
        if table not in tasks:
            tasks[table] = progress.add_task(table, total=total_of.get(table))
        progress.advance(tasks[table], n)
    return step


def _bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


@app.command()
def status(archive_dir: ArchiveOpt = None) -> None:
    """Each day: rows in the database, archived or not, past raw retention or not."""
    from core import history

    async def go():
        conn = await _connect()
        try:
            rows = await history.status(conn, _policy(archive_dir))
        finally:
            await conn.close()
        table = Table("day", "rows in database", "archived", "state", "past retention")
        for r in rows:
            archived = r["archived"] if isinstance(r["archived"], str) else "yes" if r["archived"] else "no"
            table.add_row(str(r["day"]), "-" if r["rows"] is None else f"{r['rows']:,}", archived,
                          r["state"] or "", "yes" if r["past_retention"] else "")
        Console().print(table)
    _run(go())


@app.command()
def archive(day: str, archive_dir: ArchiveOpt = None) -> None:
    """Write DAY's partitions to Parquet (then the manifest)."""
    from core import history

    the_day, root = _day(day), _archive(archive_dir)

    async def go():
        conn = await _connect()
        try:
            totals = {t: n for t in history.DAY_TABLES if (n := await history.day_rows(conn, t, the_day)) is not None}
            with _bar() as progress:
                report = await history.archive_day(conn, root, the_day, _progress(progress, totals))
        finally:
            await conn.close()
        console.print(report.line() + f", {report.bytes / 1e6:.1f} MB")
    _run(go())


@app.command()
def verify(day: str, archive_dir: ArchiveOpt = None) -> None:
    """Check DAY's archive: files, checksums, and the partitions while they exist."""
    from core import history

    the_day, root = _day(day), _archive(archive_dir)

    async def go():
        conn = await _connect()
        try:
            console.print((await history.verify_day(conn, root, the_day)).line())
        finally:
            await conn.close()
    _run(go())


@app.command()
def drop(day: str, archive_dir: ArchiveOpt = None,
         unarchived: Annotated[bool, typer.Option("--unarchived", help="drop without an archive (lost for good)")] = False) -> None:
    """Verify DAY's archive, then detach and drop its partitions."""
    from core import history

    the_day, root = _day(day), None if unarchived else _archive(archive_dir)

    async def go():
        conn = await _connect()
        try:
            console.print((await history.drop_day(conn, the_day, root, require_archive=not unarchived)).line())
        finally:
            await conn.close()
    _run(go())


@app.command()
def restore(day: str, archive_dir: ArchiveOpt = None) -> None:
    """Load DAY back from its archive (rows already there are kept); upkeep leaves it for a while."""
    from core import history

    the_day, root = _day(day), _archive(archive_dir)

    async def go():
        conn = await _connect()
        try:
            manifest = history.read_manifest(root, the_day) or {"tables": {}}
            totals = {t: e["rows"] for t, e in manifest["tables"].items()}
            with _bar() as progress:
                report = await history.restore_day(conn, root, the_day, _progress(progress, totals),
                                                   restore_days=_policy(archive_dir).restore_days)
        finally:
            await conn.close()
        console.print(report.line())
    _run(go())


@app.command()
def upkeep(archive_dir: ArchiveOpt = None) -> None:
    """One step of the lifecycle now (what the worker does on its upkeep timer)."""
    from core import history

    async def go():
        conn = await _connect()
        try:
            for line in await history.upkeep(conn, _policy(archive_dir)) or ["nothing past retention"]:
                console.print(line)
        finally:
            await conn.close()
    _run(go())
