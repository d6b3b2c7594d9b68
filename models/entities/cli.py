"""`finsent symbols`: the symbol directory from the command line (a typer sub-app).

    python -m models.entities.cli load company_tickers.json   # validate, write to the configured path
    python -m models.entities.cli list --limit 20
    python -m models.entities.cli search google

The lead mounts it with ``app.add_typer(models.entities.cli.app, name="symbols")``. The configured
path is ``$FINSENT_SYMBOLS_FILE`` or ``~/.local/share/finsent/symbols.json``; without a loaded file
the shipped default is used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from models.entities.directory import Directory, DirectoryError, Symbol, user_path

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The symbol directory: load your own, list, search.")

PathOpt = Annotated[Optional[Path], typer.Option("--path", help="directory file (default: $FINSENT_SYMBOLS_FILE "
                                                                "or ~/.local/share/finsent/symbols.json)")]


def _row(s: Symbol) -> str:
    aliases = ", ".join(a for a in s.aliases if a != s.name)
    flags = " (ordinary word: " + ", ".join(s.ambiguous) + ")" if s.ambiguous else ""
    return f"{s.ticker:<10} {s.exchange:<8} {s.name}" + (f"  [{aliases}]" if aliases else "") + flags


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _configured(path: Path | None) -> Directory:
    try:
        return Directory.configured(path)
    except DirectoryError as e:  # a damaged directory file: say which, no traceback
        _fail(str(e))


def _os_error(file: Path, e: OSError) -> str:
    return f"{file}: {e.strerror or e}" if e.strerror else str(e)


@app.command()
def load(file: Annotated[Path, typer.Argument(help="SEC company_tickers.json, a CSV (ticker,name,exchange,aliases "
                                                   "with | between aliases) or a finsent symbols file")],
         path: PathOpt = None,
         curated: Annotated[bool, typer.Option("--curated/--no-curated",
                                               help="add the shipped brand and short-name aliases")] = True,
         merge: Annotated[bool, typer.Option("--merge/--replace",
                                             help="lay FILE over the shipped directory, or use FILE alone")] = False,
         ) -> None:
    """Validate FILE, write it as the directory the linker uses, print its version. A refused file
    leaves the directory in use as it was."""
    out = Path(path or user_path())
    if out.is_dir():
        _fail(f"{out}: is a directory; the symbol directory is a file (--path or $FINSENT_SYMBOLS_FILE)")
    skipped: list[str] = []
    try:
        d = Directory.load(file, curated=curated, base=Directory.default() if merge else None, skipped=skipped)
    except DirectoryError as e:
        _fail(str(e))
    except OSError as e:
        _fail(_os_error(file, e))
    tmp = out.with_suffix(out.suffix + ".tmp")  # Directory.save writes here, then renames
    try:
        out = d.save(out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        _fail(f"cannot write the directory: {_os_error(out, e)}")
    if skipped:
        typer.echo(f"skipped {len(skipped)} row(s) whose ticker the linker cannot use (preferred shares, "
                   f"warrants, units): {', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}", err=True)
    typer.echo(f"{out}: {len(d)} symbols, {d.n_names()} names, version {d.version}")


@app.command("list")
def list_(limit: Annotated[int, typer.Option(min=0, help="0 for all")] = 50, path: PathOpt = None) -> None:
    """List the directory in use (the loaded one, else the default)."""
    d = _configured(path)
    typer.echo(f"# {d.version}: {len(d)} symbols")
    for i, t in enumerate(sorted(d.symbols)):
        if limit and i >= limit:
            typer.echo(f"# ... {len(d) - limit} more (--limit 0 for all)")
            break
        typer.echo(_row(d.symbols[t]))


@app.command()
def search(query: str, limit: Annotated[int, typer.Option(min=0, help="0 for all")] = 20,
           path: PathOpt = None) -> None:
    """Tickers, names and aliases matching QUERY (exact ticker first; plain text, not a pattern)."""
    if not any(c.isalnum() for c in query):
        _fail(f"the query {query!r} has no letter or digit to match")
    d = _configured(path)
    hits = d.search(query, limit or max(len(d), 1))
    if not hits:
        typer.echo(f"no symbol matches {query[:200]!r}", err=True)
        raise typer.Exit(1)
    for s in hits:
        typer.echo(_row(s))


if __name__ == "__main__":
    app()
