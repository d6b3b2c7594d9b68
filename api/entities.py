"""The symbol directory and entity linker of the API process (one each, built on first use in a
thread: about 20 ms for the shipped directory, from Settings.symbols_file or the directory
`finsent symbols load` wrote, else the shipped one, as the worker does), and the entity rows of
stored events (event_entity) attached to the events a route returns."""

from __future__ import annotations

import asyncio
from datetime import datetime

import asyncpg
from fastapi import HTTPException

from api import queries as q
from api.heap import freeze_long_lived
from core.logs import get
from core.settings import Settings

log = get("api.entities")


class Entities:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._linker = None
        self._lock = asyncio.Lock()

    async def linker(self):
        """The linker; a directory file that cannot be read is a 503 (and logged), tried again next time."""
        if self._linker is None:
            async with self._lock:
                if self._linker is None:
                    try:
                        self._linker = await asyncio.wait_for(asyncio.to_thread(self._build), 30)
                        freeze_long_lived()  # the directory lives as long as the process (api/heap.py)
                    except Exception as exc:  # noqa: BLE001 - DirectoryError, OSError, bad JSON: not the client's
                        log.error("entities.directory_unavailable", error=repr(exc)[:300])
                        raise HTTPException(503, "symbol directory unavailable") from None
        return self._linker

    def _build(self):
        from models.entities import Directory, Linker

        return Linker(Directory.configured(self.settings.symbols_file))


def symbol_json(directory, symbol) -> dict:
    return {"ticker": symbol.ticker, "name": symbol.name, "exchange": symbol.exchange, "aliases": list(symbol.aliases),
            "share_classes": [s.ticker for s in directory.classes(symbol.ticker)], "primary": symbol.primary}


async def attach(conn: asyncpg.Connection, events: list[dict]) -> list[dict]:
    """Give each event dict (source, id, published_at) its `entities`, one query for the page."""
    if not events:
        return events
    times: list[datetime] = [e["published_at"] for e in events]
    rows = await conn.fetch(q.ENTITIES_OF, [e["source"] for e in events], [e["id"] for e in events], times,
                            min(times), max(times))
    by: dict[tuple, list] = {}
    for r in rows:
        d = dict(r)
        key = (d.pop("source"), d.pop("event_id"), d.pop("published_at"))
        by.setdefault(key, []).append(d)
    for e in events:
        e["entities"] = by.get((e["source"], e["id"], e["published_at"]), [])
    return events
