"""Shared fixtures. The committed model is copied to a temp dir and its fp32 ONNX graph is
rebuilt there once per session (the graph is a build output, not a commit)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from models.runtime import DEFAULT_ARTIFACT  # noqa: E402

SHIPPED_VERSION = json.loads((DEFAULT_ARTIFACT / "finsent.json").read_text())["version"]  # the default model's


@pytest.fixture(scope="session")
def artifact(tmp_path_factory) -> Path:
    """A copy of the committed model with model.onnx (fp32, fused) and a fresh int8 graph."""
    from models.export import export

    d = tmp_path_factory.mktemp("artifact") / DEFAULT_ARTIFACT.name
    shutil.copytree(DEFAULT_ARTIFACT, d, ignore=shutil.ignore_patterns("model.onnx", "eval-*", "*.engine"))
    export(d, int8=True)
    return d


@pytest.fixture(scope="session")
def real_texts() -> list[str]:
    """Varied finance texts: the project's synthetic feed plus hand-written headlines/tweets."""
    from models.export import SAMPLE_TEXTS
    from stream.simulate import synthetic_texts

    return SAMPLE_TEXTS + sorted(set(synthetic_texts(3000, seed=11)))


# Real services, one of each per session, shared by every test folder (stream, api, dashboards).
@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    from finsent.services import Kafka

    k = Kafka(tmp_path_factory.mktemp("kafka")).start()
    yield k
    k.stop()


@pytest.fixture(scope="session")
def postgres():
    from finsent.services import Postgres

    # Not under pytest's tmp dir: that is 0700 and root's, and when run as root pgserver runs
    # PostgreSQL (and pg_ctl) as its own system user, which must reach the data directory.
    global _SERVER
    base = Path(tempfile.mkdtemp(prefix="finsent-pg-"))
    base.chmod(0o755)
    pg = Postgres(base / "data", database="postgres").start()
    _SERVER = pg
    yield pg
    _SERVER = None
    pg.stop()
    shutil.rmtree(base, ignore_errors=True)


_SERVER = None  # the session's PostgreSQL once a test asked for it


def _databases() -> set[str]:
    import psycopg

    with psycopg.connect(_SERVER.dsn, autocommit=True, connect_timeout=10) as c:
        return {r[0] for r in c.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")}


@pytest.fixture(scope="module", autouse=True)
def _drop_module_databases():
    """Drop the databases a test module created once the module is done: the suite creates a few
    hundred, and kept to the end of the session they took ~4 GB of a disk the CI shares."""
    import psycopg

    try:
        before = _databases() if _SERVER is not None else {"postgres"}
    except psycopg.Error:  # the server is down just now: leave this module's databases alone
        before = None
    yield
    if _SERVER is None or before is None:
        return
    try:
        with psycopg.connect(_SERVER.dsn, autocommit=True, connect_timeout=10) as c:
            for db in sorted(_databases() - before):
                c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    except psycopg.Error as e:  # a tidy-up: never a test failure, but said
        print(f"could not drop this module's databases: {e}")


def new_database(postgres, prefix: str = "t") -> str:
    """A fresh database migrated to head on the session's server: its async SQLAlchemy URL."""
    import uuid

    import psycopg

    from core.pg import migrate

    db = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {db}")
    url = postgres.url.replace("/postgres?", f"/{db}?")
    migrate(url)
    return url


@pytest.fixture
def migrated_db(postgres):
    """A fresh database at head: returns its async SQLAlchemy URL (libpq DSN: core.pg.libpq_dsn)."""
    return new_database(postgres)


class Recorder:
    """A BatchProcessor publisher that keeps what it was given (dead letters, count records)."""

    def __init__(self):
        self.deadletters, self.records = [], []

    async def dead(self, dead):
        self.deadletters += dead

    async def counts(self, records):
        self.records += records


def swap_models_dir(root: Path, v2_version: str) -> Path:
    """A models directory for hot-swap tests: `v1` (the shipped artifact), `v2` (the same weights
    under another version id), `broken` (a finsent.json that is not JSON), `current` → v1."""
    import json

    models = root / "models"
    models.mkdir()
    (models / "v1").symlink_to(DEFAULT_ARTIFACT)
    v2 = models / "v2"
    v2.mkdir()
    for f in DEFAULT_ARTIFACT.iterdir():
        if f.name != "finsent.json":
            (v2 / f.name).symlink_to(f)
    meta = json.loads((DEFAULT_ARTIFACT / "finsent.json").read_text())
    (v2 / "finsent.json").write_text(json.dumps({**meta, "version": v2_version}))
    (models / "broken").mkdir()
    (models / "broken" / "finsent.json").write_text("{not json")
    (models / "current").write_text("v1")
    return models



def pytest_collection_modifyitems(items):
    """schemathesis gives the test of every API operation one node id (`test_api_schema`), and
    pytest-xdist schedules by node id: it ran the first operation alone and dropped 22 others,
    silently. Each gets its operation in its id (`test_api_schema[GET /v1/events]`)."""
    for item in items:
        if type(item).__name__ == "SchemathesisFunction" and item.nodeid.rpartition("::")[2] != item.name:
            item._id = type(item.id).parse(f"{item.nodeid.rpartition('::')[0]}::{item.name}")


def pytest_collection_finish(session):
    """Two tests with one node id: pytest-xdist runs one of them; say so instead of dropping one."""
    seen, twice = set(), set()
    for item in session.items:
        (twice if item.nodeid in seen else seen).add(item.nodeid)
    if twice:
        raise pytest.UsageError(f"tests share a node id (pytest-xdist would run one of each): {sorted(twice)[:5]}")
