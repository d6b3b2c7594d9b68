"""Upload the generated dashboards to an existing Grafana through its HTTP API (grafana-client),
into a folder (created when missing), overwriting earlier versions with the same uid.

    finsent dashboards push --url https://grafana.example.com --token glsa_... [--folder finsent]
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from grafana_client import GrafanaApi

from dashboards.main import GENERATED

DATASOURCE_UIDS = ("finsent-postgres", "finsent-prometheus")


def load(directory: Path = GENERATED) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def remap(obj, uids: dict[str, str]):
    """A copy of `obj` with datasource uids replaced (for a Grafana whose datasources differ)."""
    if isinstance(obj, dict):
        out = {k: remap(v, uids) for k, v in obj.items()}
        if "type" in out and out.get("uid") in uids:
            out["uid"] = uids[out["uid"]]
        return out
    if isinstance(obj, list):
        return [remap(v, uids) for v in obj]
    return obj


def folder_uid(title: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]+", "-", title.lower()).strip("-")[:40] or "finsent"


def ensure_folder(api: GrafanaApi, title: str) -> str:
    """The uid of the folder named `title`, created when no folder has that name."""
    for folder in api.folder.get_all_folders():
        if folder.get("title") == title:
            return folder["uid"]
    return api.folder.create_folder(title, uid=folder_uid(title))["uid"]


def push(api: GrafanaApi, folder: str, boards: list[dict], message: str = "finsent dashboards push") -> list[str]:
    """Upload `boards` into `folder`; returns the URLs Grafana reports."""
    uid = ensure_folder(api, folder)
    urls = []
    for board in boards:
        board = {k: v for k, v in board.items() if k not in ("id", "version")}
        result = api.dashboard.update_dashboard({"dashboard": board, "folderUid": uid, "overwrite": True,
                                                 "message": message})
        urls.append(result.get("url", board["uid"]))
    return urls


def connect(url: str, token: str, timeout: float = 10.0) -> GrafanaApi:
    return GrafanaApi.from_url(url, credential=token, timeout=timeout)
