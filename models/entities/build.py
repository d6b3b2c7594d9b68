"""Build the shipped directory ``data/symbols.json`` from the pytickersymbols package + ``data/curated.json``.

    .venv/bin/python -m models.entities.build          # rewrites models/entities/data/symbols.json

pytickersymbols (MIT, offline: its data is a Python module in the wheel) lists the members of
20 indices (S&P 500/600/100, NASDAQ 100, Dow, DAX family, FTSE 100, CAC, AEX, IBEX, Nikkei 225,
...). US listings (NYSE, NASDAQ) become the primary ticker of a company; the home-market Yahoo
symbol (``SAP.DE``) is kept as a second class of the same issuer. Only this build needs the
package and the word list; loading the result needs neither.
"""
from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

from models.entities.directory import DEFAULT_FILE, Directory, Record, _curated, build

US_EXCHANGES = ("NYSE", "NASDAQ")


def pytickersymbols_records() -> list[Record]:
    from pytickersymbols.indices_data import INDICES  # the data module; the package's __init__ wants requests
    seen: dict[str, dict] = {}
    for index in INDICES.values():
        for c in index["companies"]:
            seen.setdefault(c["name"], c)
    out: list[Record] = []
    for c in seen.values():
        out.extend(_company_records(c))
    return out


def _company_records(c: dict) -> list[Record]:
    issuer = (c.get("isins") or [c["name"]])[0]
    syms = [s for s in (c.get("symbols") or []) if isinstance(s, dict)]
    us = []
    for s in syms:
        exch, sep, tick = (s.get("google") or "").partition(":")
        if not sep and exch == c.get("symbol"):
            exch, tick = "US", exch  # a bare symbol (no 'NYSE:' prefix): a US listing, exchange not given
        if exch in US_EXCHANGES + ("US",) and tick and (exch, tick) not in us:
            us.append((exch, tick))
    home = c.get("symbol") or ""
    us.sort(key=lambda e: e[1] != home)  # the company's own symbol first (GOOGL before GOOG)
    rows = [Record(t, c["name"], e, [], issuer) for e, t in us]
    if home and all(home != t for _, t in us):
        exch = next(((s.get("google") or "").partition(":")[0] for s in syms if s.get("yahoo") == home), "")
        rows.append(Record(home, c["name"], exch or _country_exchange(c), [], issuer))
    return rows


def _country_exchange(c: dict) -> str:
    return "US" if c.get("country") == "United States" else ""


def build_default() -> Directory:
    src = f"pytickersymbols-{version('pytickersymbols')}"
    return build(pytickersymbols_records(), source=src, licence="MIT (pytickersymbols); curated file: this project",
                 curated=_curated())


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DEFAULT_FILE
    d = build_default()
    d.save(out)
    sys.stdout.write(f"{out}: {len(d)} symbols, {d.n_names()} names, version {d.version}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
