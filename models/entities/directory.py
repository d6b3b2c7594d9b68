"""The symbol directory: ticker, exchange, company name, aliases, share classes, with a version id.

Sources, none downloaded at run time:
- the default shipped in ``data/symbols.json`` (built by ``python -m models.entities.build`` from
  the pytickersymbols package) with the hand-curated aliases of ``data/curated.json`` on top;
- a user's file: the SEC ``company_tickers.json`` layout, SEC ``company_tickers_exchange.json``,
  a CSV (ticker, name, exchange, aliases separated by ``|``), or a file this module wrote.

    d = Directory.default()            # or Directory.load(path) / Directory.configured()
    d.version                          # 'pytickersymbols-1.17.10+curated@3f1c...'
    d.get("brk-b").name                # 'Berkshire Hathaway'
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from models.data import csv_records
from models.entities import names

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_FILE = DATA_DIR / "symbols.json"
CURATED_FILE = DATA_DIR / "curated.json"
FORMAT = "finsent-symbols/1"
ENV_PATH = "FINSENT_SYMBOLS_FILE"

# 'AAPL', 'BRK.B', 'SAP.DE', and a home-market class with its exchange ('ERIC-B.ST', 'BT-A.L': Yahoo's
# spelling, kept whole); at most 16 characters, the width of the ticker columns. A dash anywhere else
# ('RF-PB', a preferred share) is refused.
_TICKER_RE = re.compile(r"^(?=.{1,16}$)[A-Z0-9][A-Z0-9&]{0,9}(?:-[A-Z](?=\.))?(?:\.[A-Z0-9]{1,4})?$")
_CLASS_SEP = re.compile(r"^([A-Z0-9&]+)[-/. ]([A-Z])$")


class DirectoryError(ValueError):
    """A directory file that cannot be used, with the place and the reason."""


def normalize_ticker(raw: str) -> str:
    """'brk-b', 'BRK/B', 'BRK.B' -> 'BRK.B'; '$aapl' -> 'AAPL'. Exchange suffixes ('SAP.DE') are kept."""
    t = raw.strip().lstrip("$").upper()
    m = _CLASS_SEP.match(t)
    return f"{m.group(1)}.{m.group(2)}" if m else t


@dataclass(frozen=True)
class Symbol:
    ticker: str
    name: str
    exchange: str = ""
    aliases: tuple[str, ...] = ()
    ambiguous: tuple[str, ...] = ()   # aliases that are also ordinary words: linked only with context
    strict: tuple[str, ...] = ()      # of those, ones derived from a legal name ('Employers Holdings' ->
                                      # 'Employers'), not vouched for by a curator or the user: linked only
                                      # with the same company's cashtag, tag, full name, 'Inc' or '(TICK)'
    acronyms: tuple[str, ...] = ()    # aliases matched only when written in capitals
    issuer: str = ""                  # share classes of one company share an issuer
    primary: bool = True              # the class a name mention goes to (GOOGL, not GOOG)
    bare: bool = False                # may be linked when written without '$' (NVDA yes; ALL, ON, IT never)

    def to_json(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


@dataclass
class Directory:
    symbols: dict[str, Symbol]
    source: str
    licence: str = ""
    _version: str = field(default="", repr=False)

    # ---------- identity ----------
    @property
    def version(self) -> str:
        if not self._version:
            body = json.dumps([self.symbols[t].to_json() for t in sorted(self.symbols)],
                              sort_keys=True, separators=(",", ":")).encode()
            self._version = f"{self.source}@{hashlib.sha256(body).hexdigest()[:12]}"
        return self._version

    def __len__(self) -> int:
        return len(self.symbols)

    def get(self, ticker: str) -> Symbol | None:
        return self.symbols.get(normalize_ticker(ticker))

    def classes(self, ticker: str) -> list[Symbol]:
        """Every share class of the ticker's issuer, primary first."""
        s = self.get(ticker)
        if s is None:
            return []
        same = [x for x in self.symbols.values() if x.issuer == s.issuer]
        return sorted(same, key=lambda x: (not x.primary, x.ticker))

    def n_names(self) -> int:
        return sum(len(s.aliases) for s in self.symbols.values())

    # ---------- search ----------
    def search(self, query: str, limit: int = 20) -> list[Symbol]:
        """Ticker exact > ticker prefix > alias exact > alias prefix > alias contains."""
        q = names.key(query)
        if not q:
            return []
        qt = normalize_ticker(query)
        scored = []
        for s in self.symbols.values():
            keys = [names.key(a) for a in (s.name, *s.aliases)]
            if s.ticker == qt:
                rank = 0
            elif s.ticker.startswith(qt):
                rank = 1
            elif q in keys:
                rank = 2
            elif any(k.startswith(q) for k in keys):
                rank = 3
            elif any(q in k for k in keys):
                rank = 4
            else:
                continue
            scored.append((rank, not s.primary, s.ticker, s))
        return [x[-1] for x in sorted(scored, key=lambda x: x[:3])[:limit]]

    # ---------- files ----------
    def to_json(self) -> dict:
        return {"format": FORMAT, "source": self.source, "licence": self.licence,
                "version": self.version,
                "symbols": [self.symbols[t].to_json() for t in sorted(self.symbols)]}

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=0, sort_keys=True))
        os.replace(tmp, path)
        return path

    @classmethod
    def from_json(cls, doc: dict, where: str = "") -> "Directory":
        """A directory this module wrote (`to_json`); `where` (the file) prefixes the errors."""
        at = f"{where}: " if where else ""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise DirectoryError(f"{at}not a {FORMAT} file")
        rows = doc.get("symbols")
        if not isinstance(rows, list):
            raise DirectoryError(f"{at}'symbols' must be a list, got {'nothing' if rows is None else type(rows).__name__}")
        syms = {}
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise DirectoryError(f"{at}symbols[{i}]: expected an object, got {type(row).__name__}")
            try:
                s = Symbol(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in row.items()})
            except TypeError as e:
                raise DirectoryError(f"{at}symbols[{i}]: {str(e).replace('Symbol.__init__() ', '')}") from None
            if not isinstance(s.ticker, str) or not _TICKER_RE.match(s.ticker):
                raise DirectoryError(f"{at}symbols[{i}]: bad ticker {s.ticker!r}")
            if not isinstance(s.name, str) or not all(isinstance(a, str) for a in s.aliases):
                raise DirectoryError(f"{at}symbols[{i}] ({s.ticker}): name and aliases must be strings")
            syms[s.ticker] = s
        return cls(syms, str(doc.get("source", "file")), str(doc.get("licence", "")))

    @classmethod
    def default(cls) -> "Directory":
        """The shipped directory (pytickersymbols + curated aliases). No network, no word list."""
        return cls.from_json(json.loads(DEFAULT_FILE.read_text()))

    @classmethod
    def configured(cls, path: Path | None = None) -> "Directory":
        """The user's directory written by `finsent symbols load` if there is one, else the default."""
        p = Path(path) if path else user_path()
        if not p.exists():
            return cls.default()
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DirectoryError(f"{p}: the symbol directory cannot be read ({e}); load one again with "
                                 "`finsent symbols load FILE`, or remove it to use the default") from None
        return cls.from_json(doc, str(p))

    def records(self) -> list["Record"]:
        """The directory as source rows again, primary classes first (for merging)."""
        syms = sorted(self.symbols.values(), key=lambda s: (not s.primary, s.ticker))
        return [Record(s.ticker, s.name, s.exchange, list(s.aliases), s.issuer) for s in syms]

    @classmethod
    def load(cls, path: Path, curated: bool = True, base: "Directory | None" = None,
             skipped: list[str] | None = None) -> "Directory":
        """A user's file: our own JSON, SEC company_tickers(.json|_exchange.json), or CSV.

        With `base` (e.g. the default), the file is laid over it: its rows win a ticker's name and
        exchange and claim their aliases first; the base keeps everything the file does not name.
        SEC rows whose ticker the linker cannot use (preferred shares 'BAC-PB', warrants, units)
        are left out and, when `skipped` is given, listed in it ("entry '4': 'BAC-PB'")."""
        path = Path(path)
        text = _decode(path.read_bytes(), path)
        if path.suffix.lower() == ".csv" or not text.lstrip().startswith(("{", "[")):
            records = list(_csv_records(text, path))
            source = f"csv:{path.name}"
        else:
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as e:
                raise DirectoryError(f"{path}: invalid JSON ({e})") from None
            if isinstance(doc, dict) and doc.get("format") == FORMAT:
                own = cls.from_json(doc, str(path))
                if base is None:
                    return own
                records, source = own.records(), own.source.split("+curated")[0]
            else:
                records = list(_sec_records(doc, path, skipped if skipped is not None else []))
                source = f"sec:{path.name}"
        if not records:
            raise DirectoryError(f"{path}: no symbols")
        if base is not None:
            records += base.records()
            source = f"{base.source.split('+curated')[0]}+{source}"
        return build(records, source=source, licence="user file" + (f" over {base.licence}" if base else ""),
                     curated=_curated() if curated else None)


# ---------- building ----------
@dataclass
class Record:
    """One listing as read from a source, before aliases are derived and flagged."""
    ticker: str
    name: str
    exchange: str = ""
    aliases: list[str] = field(default_factory=list)
    issuer: str = ""


def build(records: Iterable[Record], source: str, licence: str = "", curated: dict | None = None) -> Directory:
    """Derive aliases, flag ordinary-word and acronym aliases, group share classes, dedupe aliases.

    An alias belongs to the first issuer that claims it (curated aliases claim first)."""
    records = list(records)
    cur = curated or {}
    extra = {normalize_ticker(t): v for t, v in cur.get("aliases", {}).items()}
    # a listing the package gives the wrong company (its ticker -> the name the package wrongly gives it):
    # dropped, so that the company's own listings stand and the ticker's owner can be curated in
    wrong = {normalize_ticker(t): n for t, n in cur.get("wrong_listings", {}).items() if not t.startswith("_")}
    records = [r for r in records if wrong.get(normalize_ticker(r.ticker)) != r.name]
    for row in cur.get("symbols", []):
        records.append(Record(normalize_ticker(row["ticker"]), row["name"], row.get("exchange", ""),
                              list(row.get("aliases", [])), row.get("issuer", "")))
    force_amb = {names.key(a) for a in cur.get("ambiguous", [])}
    never_amb = {names.key(a) for a in cur.get("unambiguous", [])}
    dropped = {names.key(a) for a in cur.get("not_aliases", [])}
    stop_acronyms = {a.upper() for a in cur.get("stop_acronyms", [])}

    by_ticker: dict[str, Record] = {}
    for r in records:
        t = normalize_ticker(r.ticker)
        if not _TICKER_RE.match(t):
            continue
        if t in by_ticker:  # a later row for the same ticker adds aliases only
            by_ticker[t].aliases.extend(r.aliases)
            continue
        by_ticker[t] = Record(t, r.name.strip(), r.exchange.strip(), list(r.aliases), r.issuer or r.name.strip())
    primary_of: dict[str, str] = {}
    for t, r in by_ticker.items():
        primary_of.setdefault(r.issuer, t)
    for t, p in cur.get("primary", {}).items():
        p, t = normalize_ticker(p), normalize_ticker(t)
        if t in by_ticker and p in by_ticker:
            by_ticker[t].issuer = by_ticker[p].issuer
            primary_of[by_ticker[p].issuer] = p

    claimed: dict[str, str] = {}
    order = sorted(by_ticker, key=lambda t: (t not in extra, primary_of[by_ticker[t].issuer] != t))
    out: dict[str, Symbol] = {}
    for t in order:
        r = by_ticker[t]
        # SEC titles are often all capitals ('NVIDIA CORP'): then capitals say nothing about acronyms
        shouting = r.name.upper() == r.name and len(r.name.split()) > 1
        given = list(extra.get(t, [])) + list(r.aliases)
        derived = [a for a in names.name_aliases(r.name) if a not in given]
        aliases, amb, acr, strict = [], [], [], []
        for a in given + derived:
            k = names.key(a)
            if len(k) < 2 or k in dropped or claimed.get(k, t) != t or a in aliases:
                continue
            if a in derived and a != r.name and (names.is_very_common_word(a) or a.upper() in stop_acronyms):
                continue  # 'Next plc' -> 'Next', 'Q2 Holdings' -> 'Q2': words and codes, not names
            if any(names.key(x) == k for x in aliases):
                continue
            claimed[k] = t
            aliases.append(a)
            proof = a in derived and k not in never_amb and names.needs_proof(r.name, a)
            if k in force_amb or proof or (k not in never_amb and names.is_common_word(a)):
                amb.append(a)
                if a in derived and a != r.name and k not in force_amb:
                    strict.append(a)
            if names.is_acronym(a) and (a in given or not shouting):
                acr.append(a)
        out[t] = Symbol(t, r.name, r.exchange, tuple(aliases), tuple(amb), tuple(strict), tuple(acr),
                        r.issuer, primary_of[r.issuer] == t, _bare_ok(t, stop_acronyms))
    tag = "+curated" if curated else ""
    return Directory(out, source + tag, licence)


def _bare_ok(ticker: str, stop_acronyms: set[str]) -> bool:
    """A ticker written without '$' counts only if it cannot be a word or a common acronym."""
    base = ticker.split(".")[0]
    return (len(base) >= 2 and base.isalpha() and ticker not in stop_acronyms and base not in stop_acronyms
            and names.word_frequency(base) < names.COMMON_WORD_FREQ)


def _curated(path: Path | None = None) -> dict:
    """The curated file; a key written twice is refused (JSON keeps the last one silently, so a second
    '"GE": [...]' line would drop the first one's aliases)."""
    path = path or CURATED_FILE

    def unique(pairs: list) -> dict:
        seen = [k for k, _ in pairs]
        twice = sorted({k for k in seen if seen.count(k) > 1})
        if twice:
            raise DirectoryError(f"{path}: key(s) written twice: {', '.join(twice)}")
        return dict(pairs)

    return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=unique)


def _decode(raw: bytes, path: Path) -> str:
    """UTF-8 (BOM skipped), or UTF-16/32 with a BOM; else DirectoryError naming the line."""
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        enc = "utf-32"
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        enc = "utf-16"
    else:
        enc = "utf-8-sig"
    try:
        return raw.decode(enc)
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        where = f"{path}:{line}" if enc == "utf-8-sig" else str(path)
        raise DirectoryError(f"{where}: not UTF-8 (byte {e.start}: {e.reason}); re-encode the file as UTF-8") from None


def _one_line(s: str) -> str:
    return " ".join(s.split())


def _csv_columns(header: list[str]):
    """The column index of the first of `names` the header has (any case, spaces trimmed), or None."""
    cols = {c.strip().lower(): i for i, c in reversed(list(enumerate(header)))}
    return lambda *names: next((cols[n] for n in names if n in cols), None)


def _csv_records(text: str, path: Path) -> Iterable[Record]:
    """Rows of a CSV with a header naming ticker (or symbol) and name (or title, company), separated
    by ',' (or ';' or tab, recognised from the header); errors name the line."""
    first = text.split("\n", 1)[0]
    delimiter = ","
    for d in (",", ";", "\t"):
        pick = _csv_columns(next(csv.reader([first], delimiter=d), []))
        if pick("ticker", "symbol") is not None and pick("name", "title", "company") is not None:
            delimiter = d
            break
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header = next(reader, None) or []
    pick = _csv_columns(header)
    tcol, ncol = pick("ticker", "symbol"), pick("name", "title", "company")
    if tcol is None or ncol is None:
        raise DirectoryError(f"{path}: CSV needs a header with ticker and name columns, got {header}")
    ecol, acol, icol = pick("exchange"), pick("aliases"), pick("issuer", "cik")
    seen: dict[str, tuple[int, str]] = {}
    for start, row, err in csv_records(reader):
        if err is not None:
            what = ("a quoted field opens on this line and is never closed" if "unexpected end of data" in err
                    else f"malformed CSV ({err})")
            raise DirectoryError(f"{path}:{start}: {what}")
        if not any(v.strip() for v in row):  # a line of blanks
            continue
        cell = lambda i: _one_line(row[i]) if i is not None and i < len(row) else ""  # noqa: E731
        t, n = cell(tcol), cell(ncol)
        if not t or not n:
            raise DirectoryError(f"{path}:{start}: empty ticker or name")
        tick = normalize_ticker(t)
        if not _TICKER_RE.match(tick):
            raise DirectoryError(f"{path}:{start}: bad ticker {t!r}")
        if tick in seen and names.key(seen[tick][1]) != names.key(n):
            raise DirectoryError(f"{path}:{start}: ticker {t!r} again, as {n!r} (line {seen[tick][0]}: "
                                 f"{seen[tick][1]!r}); one name per ticker")
        seen.setdefault(tick, (start, n))
        aliases = [_one_line(a) for a in re.split(r"[|;]", row[acol]) if a.strip()] \
            if acol is not None and acol < len(row) else []
        yield Record(t, n, cell(ecol), aliases, cell(icol))


def _kind(v: object) -> str:
    return "null" if v is None else type(v).__name__


def _sec_records(doc, path: Path, skipped: list[str]) -> Iterable[Record]:
    """SEC company_tickers.json ({"0": {"cik_str", "ticker", "title"}, ...}) or
    company_tickers_exchange.json ({"fields": [...], "data": [[...], ...]}). Wrong types refuse the
    file naming the entry; tickers the linker cannot use are appended to `skipped`."""
    if isinstance(doc, dict) and "fields" in doc and "data" in doc:  # company_tickers_exchange.json
        fields, data = doc["fields"], doc["data"]
        if not isinstance(fields, list) or not all(isinstance(x, str) for x in fields):
            raise DirectoryError(f"{path}: 'fields' must be a list of names, got {fields!r:.80}")
        if not isinstance(data, list):
            raise DirectoryError(f"{path}: 'data' must be a list of rows, got {_kind(data)}")
        f = [x.lower() for x in fields]
        try:
            ci, ni, ti = f.index("cik"), f.index("name"), f.index("ticker")
        except ValueError:
            raise DirectoryError(f"{path}: fields must include cik, name, ticker; got {fields}") from None
        ei = f.index("exchange") if "exchange" in f else None
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != len(fields):
                got = f"{len(row)} values" if isinstance(row, list) else _kind(row)
                raise DirectoryError(f"{path}: data[{i}]: expected a list of {len(fields)} values ({', '.join(fields)}), "
                                     f"got {got}")
            t, n = row[ti], row[ni]
            if not t or not n:
                raise DirectoryError(f"{path}: data[{i}]: empty ticker or name")
            if not isinstance(t, str) or not isinstance(n, str):
                raise DirectoryError(f"{path}: data[{i}]: ticker and name must be strings, got "
                                     f"{_kind(t)} and {_kind(n)}")
            e = row[ei] if ei is not None else ""
            if e is not None and not isinstance(e, str):
                raise DirectoryError(f"{path}: data[{i}]: exchange must be a string, got {_kind(e)}")
            if not _TICKER_RE.match(normalize_ticker(t)):
                skipped.append(f"data[{i}]: {t!r}")
                continue
            yield Record(t.strip(), _one_line(n), (e or "").strip(), [], str(row[ci]))
        return
    if not isinstance(doc, dict):
        raise DirectoryError(f"{path}: expected the SEC layout {{\"0\": {{\"cik_str\", \"ticker\", \"title\"}}}}, "
                             f"got a JSON {'array' if isinstance(doc, list) else _kind(doc)}")
    for k, row in doc.items():
        if not isinstance(row, dict) or not {"ticker", "title"} <= row.keys():
            raise DirectoryError(f"{path}: entry {k!r} lacks ticker/title")
        t, n = row["ticker"], row["title"]
        if not isinstance(t, str) or not isinstance(n, str):
            raise DirectoryError(f"{path}: entry {k!r}: ticker and title must be strings, got {_kind(t)} and {_kind(n)}")
        t, n = t.strip(), _one_line(n)
        if not t or not n:
            raise DirectoryError(f"{path}: entry {k!r}: empty ticker or title")
        if not _TICKER_RE.match(normalize_ticker(t)):
            skipped.append(f"entry {k!r}: {t!r}")
            continue
        yield Record(t, n, "", [], str(row.get("cik_str", "")) or n)


def user_path() -> Path:
    """Where `finsent symbols load` writes: $FINSENT_SYMBOLS_FILE, else the user data folder."""
    env = os.environ.get(ENV_PATH)
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "finsent" / "symbols.json"
