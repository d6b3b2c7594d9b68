"""`finsent demo` stops everything it started, whatever ends it: SIGTERM (what `kill`, systemd
and container runtimes send) while it holds the stack with --keep, SIGINT to the demo process
alone during the feed, SIGHUP while it is still starting the stack, and SIGKILL, which no
program can handle: then its reaper process stops Kafka, PostgreSQL, the worker and the API.
Each case runs the real demo as a subprocess (own session, like a terminal's job) on one data
directory, and looks for every process it started: its children, the Kafka broker and the
PostgreSQL server (pid files), and anything whose command line names the data directory. With
the API's port taken, the demo says so and uses another one. With --replica (the SIGTERM and the
SIGKILL cases) the streaming standby it starts is stopped with the rest, and the report gives
the standby's lag and rows."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
STOP_WITHIN_S = 45  # API and worker: SIGTERM, SIGKILL after 10 s; then Kafka and PostgreSQL, each bounded


@pytest.fixture(scope="module")
def data_dir():
    # not under pytest's tmp dir (0700, root's): pgserver runs PostgreSQL as its own user when root
    base = Path(tempfile.mkdtemp(prefix="finsent-demo-signals-"))
    base.chmod(0o755)
    yield base / "demo"
    shutil.rmtree(base, ignore_errors=True)


class Demo:
    """`python -m finsent.cli demo …` with its output collected and its processes tracked."""

    def __init__(self, data_dir: Path, *args: str):
        self.dir = data_dir
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "finsent.cli", "demo", "--data-dir", str(data_dir), *args],
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.lines: list[str] = []
        self.seen: set[int] = set()  # every process of the demo's tree seen while it ran
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def track(self) -> None:
        try:
            self.seen |= {c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass
        for name in ("kafka/kafka.pid", "pg/postmaster.pid", "standby/postmaster.pid"):
            try:
                pid = int((self.dir / name).read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if pid > 0:  # (initdb's standalone backend writes its pid negated)
                self.seen.add(pid)

    def wait_for_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            self.track()
            if self.proc.poll() is not None:
                time.sleep(0.5)  # the reader's last lines
                pytest.fail(f"the demo exited ({self.proc.returncode}) before '{text}':\n{self.output}")
            if time.monotonic() > deadline:
                pytest.fail(f"no '{text}' within {timeout:.0f} s:\n{self.output}")
            time.sleep(0.2)
        self.track()

    def left(self) -> list[str]:
        """Processes of this demo still running: tracked ones, and any naming the data directory."""
        alive = []
        for pid in self.seen:
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{pid} {' '.join(p.cmdline())[:150]}")
            except psutil.NoSuchProcess:
                pass
        for p in psutil.process_iter(["pid", "cmdline", "status"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if str(self.dir) in cmd and p.info["pid"] not in self.seen and p.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.info['pid']} {cmd[:150]}")
        return alive

    def kill_leftovers(self) -> None:
        for pid in self.seen:
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass


def stop_and_check(demo: Demo, sig: int, exits: bool = True) -> float:
    """Send `sig` to the demo process alone; returns how long until none of its processes is left."""
    demo.track()
    assert len(demo.seen) >= 2, demo.output
    t0 = time.monotonic()
    os.kill(demo.proc.pid, sig)
    try:
        try:
            demo.proc.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo still runs {STOP_WITHIN_S} s after {signal.Signals(sig).name}:\n{demo.output}")
        deadline = time.monotonic() + (STOP_WITHIN_S if sig == signal.SIGKILL else 5)
        while demo.left() and time.monotonic() < deadline:
            time.sleep(0.2)
        took = time.monotonic() - t0
        assert not demo.left(), (f"left running {took:.0f} s after {signal.Signals(sig).name}:\n"
                                 + "\n".join(demo.left()) + "\n" + demo.output)
        if exits:
            assert "stopped the API, the worker, Kafka and PostgreSQL" in demo.output, demo.output
        print(f"{signal.Signals(sig).name}: nothing left after {took:.1f} s")
        return took
    finally:
        demo.kill_leftovers()


def test_sigterm_while_holding_the_stack_on_a_taken_port(data_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = Demo(data_dir, "--keep", "--replica", "--seconds", "20", "--rate", "60", "--api-port", str(port))
        demo.wait_for_line("still running", 300)
    assert f"port {port} is taken: the API listens on 127.0.0.1:" in demo.output, demo.output
    api_line = next(line for line in demo.lines if line.startswith("API http://127.0.0.1:"))
    url = api_line.split()[1]
    assert not url.endswith(f":{port}")
    assert httpx.get(url + "/health", timeout=5, trust_env=False).status_code == 200
    # the standby runs (a pid in its data dir), follows the primary, and the report says how far behind
    assert int((data_dir / "standby" / "postmaster.pid").read_text().split()[0]) in demo.seen
    lag = re.search(r"read replica: lag (\d+\.\d+) s .*scored_event (\d+) rows on the standby, (\d+) on the primary",
                    demo.output)
    assert lag and float(lag[1]) < 30 and int(lag[3]) >= 20 * 60 and int(lag[2]) > 0, demo.output
    stop_and_check(demo, signal.SIGTERM)
    assert "SIGTERM: stopping" in demo.output and "PostgreSQL and its standby" in demo.output


def test_sigint_to_the_demo_alone_during_the_feed(data_dir):
    demo = Demo(data_dir, "--seconds", "30", "--rate", "60")
    demo.wait_for_line("feeding", 300)
    time.sleep(2)
    stop_and_check(demo, signal.SIGINT)
    assert "SIGINT: stopping" in demo.output


def test_sighup_while_starting(data_dir):
    demo = Demo(data_dir, "--seconds", "30", "--rate", "60")
    deadline = time.monotonic() + 120
    while not (data_dir / "pg" / "postmaster.pid").exists():  # Kafka is up, PostgreSQL starting or up
        assert time.monotonic() < deadline and demo.proc.poll() is None, demo.output
        demo.track()
        time.sleep(0.1)
    stop_and_check(demo, signal.SIGHUP)


def test_sigkill_leaves_the_reaper_to_stop_everything(data_dir):
    demo = Demo(data_dir, "--replica", "--seconds", "30", "--rate", "60")
    demo.wait_for_line("feeding", 300)
    assert (data_dir / "standby" / "postmaster.pid").exists(), demo.output
    stop_and_check(demo, signal.SIGKILL, exits=False)
    assert "reaper: stopping group" in (data_dir / "reaper.log").read_text()
