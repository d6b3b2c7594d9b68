"""The large seed writes its `story` rows as COPY text lines it formats itself (`seed.copy_line`):
they must load to exactly what psycopg's `write_row` loads, special characters included."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import psycopg

from core.events import COLUMNS
from core.pg import libpq_dsn
from tests.dashboards.seed import copy_line, event, fresh_db, utc_now, zipf_tickers

ODD = ["we\\ird\t\"src'", "id\nx", "a \\N text\r", 'A"B', "C\\D", "E,F", "{G}", "H I", "NULL", ""]


def test_copy_lines_load_as_write_row_loads(postgres):
    dsn = libpq_dsn(fresh_db(postgres, "dash_seed_lines"))
    end, rng = utc_now(), random.Random(5)
    events = []
    for i in range(500):
        e = list(event(rng, i, end - timedelta(seconds=i * 1.37), prefix="b"))
        e[7] = zipf_tickers(rng)
        events.append(e + [f"b{i // 4}", i % 4 == 0, i % 7 + 1])
    events.append([ODD[0], ODD[1], end, ODD[2], None, "", "en", ODD[3:], end, end, "M&A", 1e-05, "neutral", 0.1,
                   0.2, 0.7, -0.0, "m", True, None, None, None])
    stories = [[3, "b1", date(2026, 12, 6), end, end + timedelta(microseconds=1), "analyst's-desk", ["T001", "AAPL"],
                4, ["newswire", "analyst's-desk"]],
               [0, ODD[1], date(1999, 1, 1), datetime(1999, 1, 1, 23, 59, 59, 999999, tzinfo=timezone.utc), end,
                ODD[0], ODD[3:], 1, []]]
    event_cols = f"{', '.join(COLUMNS)}, story_id, novel, copies"
    story_cols = "slot, story_id, day, first_at, last_at, source, keys, copies, sources"
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table, cols, rows in (("scored_event", event_cols, events), ("story", story_cols, stories)):
            for copy_as in ("a", "b"):
                conn.execute(f"CREATE TABLE seed_{table}_{copy_as} AS SELECT {cols} FROM {table} WITH NO DATA")
            with conn.cursor().copy(f"COPY seed_{table}_a ({cols}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
            with conn.cursor().copy(f"COPY seed_{table}_b ({cols}) FROM STDIN") as copy:
                copy.write("".join(copy_line(r) for r in rows))
            a = conn.execute(f"SELECT * FROM seed_{table}_a ORDER BY 1, 2").fetchall()
            b = conn.execute(f"SELECT * FROM seed_{table}_b ORDER BY 1, 2").fetchall()
            assert len(a) == len(rows) and a == b, table
