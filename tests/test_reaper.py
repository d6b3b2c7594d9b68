"""The demo's watchdog (finsent.services.Reaper): when its pipe closes without `done` it stops
what was registered; after `release()` it leaves everything alone; it never signals a process
that a stale pid file names but that is not PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time

from finsent.services import Reaper, stop_postmaster


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)


def _gone(p: subprocess.Popen, timeout: float = 10) -> bool:
    try:
        p.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def test_abandoned_reaper_stops_the_registered_groups_and_leaves_others(tmp_path):
    reaper, watched, other = Reaper(tmp_path / "reaper.log").start(), _sleeper(), _sleeper()
    try:
        reaper.watch("group", watched.pid)
        reaper.watch("kafka", tmp_path / "no-kafka")  # nothing started there: nothing to do
        reaper.watch("postgres", tmp_path / "no-pg")
        reaper.abandon()  # what SIGKILL of the owner does to the pipe
        assert _gone(watched), (tmp_path / "reaper.log").read_text()
        assert _gone(reaper.proc)
        assert other.poll() is None
        assert f"reaper: stopping group {watched.pid}" in (tmp_path / "reaper.log").read_text()
    finally:
        for p in (watched, other):
            p.kill()


def test_released_reaper_does_nothing(tmp_path):
    reaper, watched = Reaper().start(), _sleeper()
    try:
        reaper.watch("group", watched.pid)
        reaper.release()
        assert reaper.proc.poll() is not None
        time.sleep(0.5)
        assert watched.poll() is None
    finally:
        watched.kill()


def test_a_stale_postmaster_pid_that_is_not_postgres_is_left_alone(tmp_path):
    bystander = _sleeper()
    try:
        (tmp_path / "postmaster.pid").write_text(f"{bystander.pid}\n{tmp_path}\n")
        stop_postmaster(tmp_path)
        (tmp_path / "postmaster.pid").write_text(f"-{bystander.pid}\n")  # initdb's standalone backend
        stop_postmaster(tmp_path)
        time.sleep(0.3)
        assert bystander.poll() is None
    finally:
        bystander.kill()
