"""Command-line pieces the `finsent` CLI mounts: `finsent apikey create|list|revoke` and
`finsent api` (serve).

    finsent apikey create --name risk-desk --scope read --scope subscribe   # prints the key once
    finsent apikey list
    finsent apikey revoke 3
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from api import keys
from api import queries as q
from core.settings import Settings, get_settings

apikey_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Create, list and revoke API keys.")
console = Console(stderr=True)


async def _with_conn(settings: Settings, fn):
    import asyncpg

    conn = await asyncpg.connect(settings.asyncpg_dsn)
    try:
        return await fn(conn)
    finally:
        await conn.close()


def run_db(fn, settings: Settings | None = None):
    return asyncio.run(_with_conn(settings or get_settings(), fn))


@apikey_app.command("create")
def create(name: Annotated[str, typer.Option(help="who or what the key is for")],
           scope: Annotated[list[str], typer.Option(help=f"repeatable: {', '.join(keys.SCOPES)}")] = ["read"]) -> None:
    """Create a key and print it: it is shown this once (only its hash is stored)."""
    if not 1 <= len(name) <= 128:
        raise typer.BadParameter("name must be 1 to 128 characters", param_hint="--name")
    try:
        key_id, key = run_db(lambda c: keys.create(c, name=name, scopes=scope))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scope") from None
    console.print(f"created key {key_id} ({name}; scopes {', '.join(sorted(set(scope)))}); store it now:")
    typer.echo(key)


@apikey_app.command("list")
def list_keys() -> None:
    """Keys with their prefix, scopes and state (never the key)."""
    rows = run_db(lambda c: c.fetch(q.LIST_API_KEYS))
    table = Table("id", "name", "prefix", "scopes", "created", "revoked")
    for r in rows:
        table.add_row(str(r["id"]), r["name"], r["prefix"], ",".join(r["scopes"]), r["created_at"].isoformat(),
                      "yes" if r["revoked"] else "")
    Console().print(table)


@apikey_app.command("revoke")
def revoke(key_id: Annotated[int, typer.Argument(help="the id shown by `finsent apikey list`")]) -> None:
    """Revoke a key; requests with it get 401 from then on."""
    if run_db(lambda c: c.fetchval(q.REVOKE_API_KEY, key_id)) is None:
        console.print(f"no active key with id {key_id}")
        raise typer.Exit(1)
    console.print(f"revoked key {key_id}")


def serve(settings: Settings) -> None:
    """Run the API with uvicorn on settings.api_host:api_port (blocks until stopped)."""
    import uvicorn

    from api.main import create_app
    from api.server import uvicorn_config
    from core.logs import configure

    configure()
    # HTTP parsing: httptools, with a deadline on request heads (api/server.py); on SIGTERM open
    # requests and live streams get api_shutdown_grace_s, then they are cut
    uvicorn.Server(uvicorn_config(create_app(settings), settings, host=settings.api_host, port=settings.api_port,
                                  log_level="warning", timeout_graceful_shutdown=settings.api_shutdown_grace_s)).run()
