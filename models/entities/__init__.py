"""Entity linking: a symbol directory and a linker that says which companies a text is about.

    from models.entities import Directory, Linker
    linker = Linker(Directory.configured())      # the user's directory if loaded, else the default
    for e in linker.link(text, tickers=feed_tickers):
        e.ticker, e.name, e.relevance, e.spans

Plain Python: no Kafka, Postgres or HTTP. The CLI is `models.entities.cli` (`finsent symbols`).
"""
from models.entities.directory import Directory, DirectoryError, Symbol, normalize_ticker
from models.entities.linker import DEFAULT_MIN_RELEVANCE, Entity, Linker

__all__ = ["DEFAULT_MIN_RELEVANCE", "Directory", "DirectoryError", "Entity", "Linker", "Symbol", "normalize_ticker"]
