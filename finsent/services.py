"""Real services started by the project itself, for tests, CI and the demo: the Kafka broker
(scripts/kafka.sh), an embedded PostgreSQL (pgserver), worker and API processes. Every stop is
bounded: SIGTERM, then SIGKILL after a timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "scripts" / "kafka.sh"


class Kafka:
    def __init__(self, directory: Path):
        self.dir = Path(directory)

    def start(self) -> Kafka:
        subprocess.run([str(KAFKA_SH), "start", str(self.dir)], check=True, capture_output=True, text=True)
        return self

    def stop(self) -> None:
        subprocess.run([str(KAFKA_SH), "stop", str(self.dir)], check=False, capture_output=True, timeout=60)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{(self.dir / 'kafka.port').read_text().strip()}"


class Postgres:
    """pgserver's PostgreSQL 16 in a directory; stop() / start() keep the data."""

    def __init__(self, directory: Path, database: str = "finsent"):
        self.dir, self.database, self.server = Path(directory), database, None

    def start(self) -> Postgres:
        import pgserver

        self.server = pgserver.get_server(str(self.dir), cleanup_mode=None)
        if "1 row" not in self.server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}';"):
            self.server.psql(f"CREATE DATABASE {self.database};")
        self.url = self.url_for(self.database)
        return self

    def url_for(self, database: str) -> str:
        """The async SQLAlchemy URL of another database on this server."""
        return f"postgresql+asyncpg://postgres@/{database}?host={self.server.pgdata}"

    def stop(self) -> None:
        """Stop the server now (fast shutdown), keeping the data; pgserver's own cleanup only
        stops it when the last handle of the process goes away."""
        from pgserver._commands import pg_ctl

        import atexit

        if self.server is None:
            return
        if (self.dir / "postmaster.pid").exists():
            pg_ctl(["-m", "fast", "-w", "stop"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)
        # forget pgserver's cached handle so that start() really starts the server again
        atexit.unregister(self.server._cleanup)
        type(self.server)._instances.pop(self.server.pgdata, None)
        self.server = None

    @property
    def dsn(self) -> str:
        return self.url.replace("postgresql+asyncpg://", "postgresql://", 1)


class Standby:
    """A streaming standby of a running `Postgres` (pgserver's own pg_basebackup and WAL receiver):
    read-only until promote(). With `synchronous=True` the primary waits for the standby's flush
    before it confirms a commit (synchronous_standby_names), so promoting it after the primary
    dies loses no acknowledged write; asynchronous, readers may lag (see `lag_sql`)."""

    NAME = "finsent_standby"
    # seconds behind the primary's last replayed commit: 0 while nothing is written
    lag_sql = ("SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
               "ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END")

    def __init__(self, primary: Postgres, directory: Path, synchronous: bool = False):
        self.primary, self.dir, self.synchronous = primary, Path(directory), synchronous
        self.user = primary.server.system_user if primary.server is not None else None

    def _run(self, exe: str, args: list[str], timeout: float = 120) -> str:
        from pgserver._commands import POSTGRES_BIN_PATH

        out = subprocess.run([str(POSTGRES_BIN_PATH / exe), *args], user=self.user, check=True, timeout=timeout,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return out.stdout

    def start(self) -> Standby:
        socket_dir = str(self.primary.server.pgdata)
        if not (self.dir / "PG_VERSION").exists():
            self.dir.parent.mkdir(parents=True, exist_ok=True)
            if self.user is not None:  # pgserver runs PostgreSQL as its own user when started as root
                import pwd

                self.dir.mkdir(mode=0o700, exist_ok=True)
                pw = pwd.getpwnam(self.user)
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._run("pg_basebackup", ["-D", str(self.dir), "-R", "-X", "stream", "-c", "fast", "-U", "postgres",
                                        "-d", f"host={socket_dir} user=postgres application_name={self.NAME}"])
            for name in (".s.PGSQL.5432.lock", "postmaster.pid", "log"):  # the primary's, copied with its data dir
                (self.dir / name).unlink(missing_ok=True)
        if self.synchronous:
            self.primary.server.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{self.NAME}';")
            self.primary.server.psql("SELECT pg_reload_conf();")
        self._run("pg_ctl", ["-D", str(self.dir), "-w", "-t", "60", "-l", str(self.dir / "log"),
                             "-o", '-h ""', "-o", f"-k {self.dir}", "start"])
        return self

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@/{self.primary.database}?host={self.dir}"

    @property
    def dsn(self) -> str:
        return self.url.replace("postgresql+asyncpg://", "postgresql://", 1)

    def promote(self) -> None:
        self._run("pg_ctl", ["-D", str(self.dir), "-w", "-t", "60", "promote"])

    def stop(self) -> None:
        stop_postmaster(self.dir)


def worker_env(bootstrap: str, database_url: str, **extra: object) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"FINSENT_KAFKA_BOOTSTRAP": bootstrap, "DATABASE_URL": database_url, "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"})
    env.update({f"FINSENT_{k.upper()}": str(v) for k, v in extra.items()})
    return env


class ServiceProcess:
    """`python -m finsent.cli <command>` in its own session (so stop() ends its children too),
    output appended to a log file."""

    command: tuple[str, ...] = ()

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env, self.log_path, self.proc = env, Path(log_path), None

    def start(self) -> ServiceProcess:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "finsent.cli", *self.command], env=self.env, cwd=ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        _killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def terminate(self) -> None:
        """Ask the process (and its children: its session's group) to stop; does not wait. stop()
        then waits for it, so that several can be stopped at once."""
        if self.alive():
            _killpg(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the process group, SIGKILL after `timeout`; always returns within about
        `timeout` + 10 s."""
        if self.proc is None:
            return
        if self.alive():
            _killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class WorkerProcess(ServiceProcess):
    """`finsent worker`."""

    command = ("worker",)


class ApiProcess(ServiceProcess):
    """`finsent api` on FINSENT_API_HOST:FINSENT_API_PORT of its environment; wait_ready()
    returns once /ready answers 200 (Postgres reachable, schema at head)."""

    command = ("api",)

    @property
    def url(self) -> str:
        return f"http://{self.env.get('FINSENT_API_HOST', '127.0.0.1')}:{self.env.get('FINSENT_API_PORT', '8000')}"

    def wait_ready(self, timeout: float = 60.0) -> ApiProcess:
        import httpx

        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"the API exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return httpx.get(self.url + "/ready", timeout=2, trust_env=False).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout, 0.2, what=f"API ready at {self.url}")
        return self


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):  # the group is gone
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Reaper:
    """A watchdog for everything a program starts (the demo): a small process of its own session
    that reads what to clean up from a pipe. When the pipe closes without `release()` — the
    program was killed with SIGKILL, crashed, or its own stop was cut short — it stops what was
    registered, newest first, every wait bounded: process groups (SIGTERM, SIGKILL after 10 s),
    Kafka (scripts/kafka.sh stop), PostgreSQL (fast shutdown by postmaster.pid, immediate after 20 s,
    SIGKILL after 5 more). It ignores SIGINT and SIGHUP: a terminal's Ctrl-C or hang-up reaches
    the program, which stops its processes itself."""

    def __init__(self, log_path: Path | None = None):
        self.proc: subprocess.Popen | None = None
        self.log_path = log_path

    def start(self) -> Reaper:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-c", "from finsent.services import reap; reap()"], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        if self.log_path:
            out.close()
        return self

    def watch(self, kind: str, target: object) -> None:
        """kind: "group" (a process group id), "kafka" (its directory), "postgres" (its data directory)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.write(f"{kind}\t{target}\n".encode())
            self.proc.stdin.flush()

    def abandon(self) -> None:
        """Hang up without `done`: the reaper stops everything registered, then exits (its owner
        does not wait for it)."""
        if self.proc is not None and self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass

    def release(self) -> None:
        """Everything was stopped by its owner: the reaper exits without doing anything."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.write(b"done\n")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def reap() -> None:
    """The reaper process (see Reaper)."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    watched = []
    for line in sys.stdin.buffer:
        kind, _, target = line.decode().rstrip("\n").partition("\t")
        if kind == "done":
            return
        watched.append((kind, target))
    for kind, target in reversed(watched):
        try:
            _reap_one(kind, target)
        except Exception as exc:  # noqa: BLE001 (go on with the others)
            print(f"reaper: {kind} {target}: {exc!r}", flush=True)


def _wait_gone(alive, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _reap_one(kind: str, target: str) -> None:
    print(f"reaper: stopping {kind} {target}", flush=True)
    if kind == "group":
        pgid = int(target)
        _killpg(pgid, signal.SIGTERM)
        if not _wait_gone(lambda: _group_alive(pgid), 10):
            _killpg(pgid, signal.SIGKILL)
    elif kind == "kafka":
        Kafka(Path(target)).stop()
    elif kind == "postgres":
        stop_postmaster(Path(target))


def stop_postmaster(data_dir: Path) -> None:
    """Stop the PostgreSQL whose data directory is `data_dir` by the pid in its postmaster.pid
    (for a server whose pgserver handle is gone): fast shutdown, immediate after 20 s, SIGKILL
    after 5 more."""
    try:
        pid = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if pid <= 0:  # initdb's standalone backend (its pid negated): it ends by itself
        return
    try:  # a stale file's pid may belong to another process by now
        if b"postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return
    except OSError:
        return
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGQUIT, 5), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait_gone(lambda: _pid_alive(pid), wait):
            return


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """`preferred` when nothing listens on it, else a free port chosen by the kernel."""
    import socket

    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port")


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout:.0f} s")
