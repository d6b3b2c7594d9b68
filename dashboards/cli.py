"""`finsent dashboards …`: regenerate the dashboards' JSON, or push it to an existing Grafana.

    finsent dashboards build
    finsent dashboards push --url URL --token TOKEN [--folder F] [--postgres-uid UID] [--prometheus-uid UID]
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

dashboards_app = typer.Typer(add_completion=False, no_args_is_help=True,
                             help="Grafana dashboards as code: build the JSON, push it to a Grafana.")
console = Console(stderr=True)


@dashboards_app.command("build")
def build() -> None:
    """Write dashboards/generated/*.json (sorted keys, stable uids)."""
    from dashboards.main import write

    for path in write():
        console.print(str(path))


@dashboards_app.command("push")
def push(
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. https://grafana.example.com")],
    token: Annotated[str, typer.Option(help="service-account token (Editor or Admin)", envvar="GRAFANA_TOKEN")],
    folder: Annotated[str, typer.Option(help="folder title; created when missing")] = "finsent",
    postgres_uid: Annotated[Optional[str], typer.Option(help="uid of that Grafana's Postgres datasource")] = None,
    prometheus_uid: Annotated[Optional[str], typer.Option(help="uid of that Grafana's Prometheus datasource")] = None,
) -> None:
    """Upload the generated dashboards into FOLDER, replacing earlier versions (same uids)."""
    from grafana_client.client import GrafanaException
    from rich.markup import escape

    from dashboards import push as p

    uids = {k: v for k, v in zip(p.DATASOURCE_UIDS, (postgres_uid, prometheus_uid)) if v}
    try:
        urls = p.push(p.connect(url, token), folder, [p.remap(b, uids) for b in p.load()])
    except (GrafanaException, OSError) as exc:
        console.print(f"[red]push failed:[/red] {type(exc).__name__}: {escape(str(exc))}")
        raise typer.Exit(1) from None
    for u in urls:
        console.print(f"pushed {u}")
