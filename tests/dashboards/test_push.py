"""`finsent dashboards push` against a stub Grafana HTTP API (no Grafana server runs here):
the folder is found or created, every dashboard is posted with overwrite into it, the token
is sent as a bearer token, datasource uids can be remapped, and failures exit 1 without a trace.

    .venv/bin/python -m pytest tests/dashboards/test_push.py -q
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from dashboards.cli import dashboards_app
from tests.dashboards.conftest import dashboards


class StubGrafana(BaseHTTPRequestHandler):
    folders: list[dict] = []
    posted: list[dict] = []
    auth: list[str] = []

    def reply(self, body, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.auth.append(self.headers.get("Authorization", ""))
        self.reply(self.folders if self.path.startswith("/api/folders") else {"message": "not found"},
                   200 if self.path.startswith("/api/folders") else 404)

    def do_POST(self):
        self.auth.append(self.headers.get("Authorization", ""))
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/api/folders":
            self.folders.append({"uid": body["uid"], "title": body["title"]})
            return self.reply({"uid": body["uid"], "title": body["title"]})
        if self.path == "/api/dashboards/db":
            self.posted.append(body)
            return self.reply({"status": "success", "uid": body["dashboard"]["uid"],
                               "url": f"/d/{body['dashboard']['uid']}"})
        self.reply({"message": "not found"}, 404)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def grafana():
    StubGrafana.folders, StubGrafana.posted, StubGrafana.auth = [], [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubGrafana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_push_creates_folder_and_uploads_every_dashboard(grafana):
    result = CliRunner().invoke(dashboards_app, ["push", "--url", grafana, "--token", "glsa_test", "--folder", "Risk Desk"])
    assert result.exit_code == 0, result.output
    assert StubGrafana.folders == [{"uid": "risk-desk", "title": "Risk Desk"}]
    assert sorted(b["dashboard"]["uid"] for b in StubGrafana.posted) == sorted(d["uid"] for d in dashboards())
    assert all(b["folderUid"] == "risk-desk" and b["overwrite"] for b in StubGrafana.posted)
    assert set(StubGrafana.auth) == {"Bearer glsa_test"}


def test_push_reuses_existing_folder_and_remaps_datasources(grafana):
    StubGrafana.folders = [{"uid": "abc", "title": "finsent"}]
    args = ["push", "--url", grafana, "--token", "t", "--postgres-uid", "pg-prod"]
    assert CliRunner().invoke(dashboards_app, args).exit_code == 0
    assert len(StubGrafana.folders) == 1 and {b["folderUid"] for b in StubGrafana.posted} == {"abc"}
    text = json.dumps(StubGrafana.posted)
    assert '"pg-prod"' in text and '"finsent-postgres"' not in text and '"finsent-prometheus"' in text


def test_push_to_unreachable_grafana_exits_1():
    result = CliRunner().invoke(dashboards_app, ["push", "--url", "http://127.0.0.1:9", "--token", "t"])
    assert result.exit_code == 1
    assert "push failed" in result.output and "Traceback" not in result.output
