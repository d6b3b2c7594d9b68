"""Integration fixtures: one real Kafka broker and one real PostgreSQL per session, started by
the project's own scripts; per test a fresh database, unique topic names and consumer group,
and a worker process."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer

from core.pg import migrate
from finsent.services import Kafka, Postgres, WorkerProcess, free_port, wait_for, worker_env
from core.settings import Settings
from stream.feed import produce
from stream.topics import ensure_topics

pytestmark = pytest.mark.slow


# Minutes of simulated traffic instead of hours: 5 s slices, 30 s windows, 60 s of warm-up.
FAST_DETECTOR = {"slice_s": 5, "window_s": 30, "detector_warmup_s": 60}


class Stack:
    """Handles of one test: settings, a database, a worker, helpers to feed and count."""

    def __init__(self, kafka: Kafka, postgres: Postgres, tmp: Path, **overrides):
        self.kafka, self.postgres, self.tmp = kafka, postgres, tmp
        tag = uuid.uuid4().hex[:8]
        self.db = f"t_{tag}"
        with psycopg.connect(postgres.dsn, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {self.db}")
        self.url = postgres.url.replace("/postgres?", f"/{self.db}?")
        migrate(self.url)
        names = {f"topic_{t}": f"t{tag}.{t}" for t in ("news", "social", "scored", "alerts", "deadletter")}
        self.env_overrides = {**names, "consumer_group": f"g{tag}", "web_port": free_port(), **overrides}
        self.settings = Settings(kafka_bootstrap=kafka.bootstrap, DATABASE_URL=self.url, **self.env_overrides)
        asyncio.run(ensure_topics(self.settings))
        self.workers: list[WorkerProcess] = []

    @property
    def dsn(self) -> str:
        return self.url.replace("postgresql+asyncpg://", "postgresql://", 1)

    def start_worker(self, **extra) -> WorkerProcess:
        """Another worker in the test's consumer group; a second one needs its own `web_port`."""
        env = worker_env(self.kafka.bootstrap, self.url, **{**self.env_overrides, **extra})
        w = WorkerProcess(env, self.tmp / f"worker{len(self.workers)}.log").start()
        self.workers.append(w)
        return w

    def produce(self, events, rate: float = 0.0) -> int:
        s = self.settings
        return asyncio.run(produce(self.kafka.bootstrap, events, s.topic_news, s.topic_social, rate))

    def sql(self, query: str, *args):
        with psycopg.connect(self.dsn, autocommit=True) as c:
            return c.execute(query, args).fetchall()

    def rows(self) -> int:
        try:
            return self.sql("SELECT count(*) FROM scored_event")[0][0]
        except psycopg.OperationalError:
            return -1

    def wait_rows(self, n: int, timeout: float = 240) -> None:
        wait_for(lambda: self.rows() >= n, timeout, what=f"{n} rows (have {self.rows()})")

    def read_topic(self, topic: str | list[str], expect: int, timeout: float = 60) -> list:
        topics = [topic] if isinstance(topic, str) else topic

        async def go():
            c = AIOKafkaConsumer(*topics, bootstrap_servers=self.kafka.bootstrap, auto_offset_reset="earliest",
                                 group_id=None)
            await c.start()
            out, deadline = [], asyncio.get_running_loop().time() + timeout
            try:
                while len(out) < expect and asyncio.get_running_loop().time() < deadline:
                    for msgs in (await c.getmany(timeout_ms=1000)).values():
                        out += msgs
            finally:
                await c.stop()
            return out
        return asyncio.run(go())

    def close(self) -> None:
        for w in self.workers:
            w.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test shows what its workers last said (CI keeps no files)."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.when == "call" and report.failed and isinstance(stack, Stack):
        for w in stack.workers:
            log = w.log_path.read_text(errors="replace") if w.log_path.exists() else "(no log)"
            report.sections.append((f"worker log {w.log_path.name}, last 12,000 characters", log[-12000:]))
    return report


@pytest.fixture
def stack(kafka, postgres, tmp_path):
    s = Stack(kafka, postgres, tmp_path, **FAST_DETECTOR)
    yield s
    s.close()  # a failed test's report carries its workers' logs (pytest_runtest_makereport above)
