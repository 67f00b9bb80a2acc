"""Real PostgreSQL and redis-server processes on loopback, for tests and benchmarks.

Each server runs from its own temporary directory on a free loopback port and is stopped by
killing its process group, so nothing outlives the caller (on Linux the server also gets
SIGKILL if the process that started it dies without cleaning up).

Binaries are found the way ``scripts/ensure-system-deps.sh`` finds them: ``PATH`` first, then
the Debian layout ``/usr/lib/postgresql/<version>/bin``. A missing binary raises
``MissingServerBinary``, whose message names that script; callers must not turn it into a
skip, because a run without the real servers proves nothing.

PostgreSQL refuses to run as root, so when we are root ``initdb`` and ``postgres`` run as the
``postgres`` system user, with the cluster in a directory that user owns and can reach (see
``PostgresServer``).

Used by ``tests/conftest.py``; from a shell (bench, demo on PostgreSQL)::

    python -m tests.servers postgres   # prints a URL, serves until SIGINT/SIGTERM
    python -m tests.servers redis
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import glob
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

ENSURE_SCRIPT = "scripts/ensure-system-deps.sh"
POSTGRES_USER = "postgres"
DEFAULT_DATABASE = "consentry_test"
LOOPBACK = "127.0.0.1"
PG_BINDIR_VARIABLE = "CONSENTRY_TEST_PG_BINDIR"
REDIS_SERVER_VARIABLE = "CONSENTRY_TEST_REDIS_SERVER"

# A cold initdb plus first start takes about a second on a 2-core machine; the margin is for
# loaded CI runners, not for a server that will never come up (its exit is noticed at once).
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# Ports are picked by binding port 0 and closing, so another process may grab one before the
# server binds it; a server that fails to bind is retried on a new port this many times.
START_ATTEMPTS = 3


class ServerError(RuntimeError):
    """A test server could not be started or used."""


class MissingServerBinary(ServerError):
    """A server binary is not installed; the message says how to install it."""

    def __init__(self, what: str, looked_in: str) -> None:
        self.what = what
        self.looked_in = looked_in
        super().__init__(
            f"{what} not found (looked in {looked_in}). Install the test servers with "
            f"`sudo bash {ENSURE_SCRIPT}` (or `make test`, which runs it)."
        )


class ServerStartError(ServerError):
    """The server process exited or did not become ready; carries its log tail."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        self.log_path = log_path
        tail = _tail(log_path) if log_path is not None else ""
        super().__init__(f"{message}\n--- {log_path} ---\n{tail}" if tail else message)


# --- finding binaries -------------------------------------------------------------------


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _version_key(bindir: str) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin -> (15,); newest first when sorted in reverse.
    return tuple(int(n) for n in re.findall(r"\d+", Path(bindir).parent.name))


def find_postgres_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres`` of one PostgreSQL installation.

    ``CONSENTRY_TEST_PG_BINDIR`` picks one explicitly (another major version, say).
    """
    override = os.environ.get(PG_BINDIR_VARIABLE)
    if override is not None:
        if all(_is_executable(os.path.join(override, n)) for n in ("initdb", "postgres")):
            return Path(override)
        raise MissingServerBinary(
            "PostgreSQL server (initdb, postgres)", f"{PG_BINDIR_VARIABLE}={override}"
        )
    candidates: list[str] = []
    on_path = shutil.which("initdb")
    if on_path:
        # /usr/local/bin/initdb may be a symlink into /usr/lib/postgresql/N/bin: use the real
        # directory so initdb and postgres come from the same version.
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
        candidates.append(os.path.dirname(on_path))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for bindir in candidates:
        if all(_is_executable(os.path.join(bindir, name)) for name in ("initdb", "postgres")):
            return Path(bindir)
    raise MissingServerBinary(
        "PostgreSQL server (initdb, postgres)", "PATH and /usr/lib/postgresql/*/bin"
    )


def find_redis_server() -> Path:
    """The ``redis-server`` binary (``CONSENTRY_TEST_REDIS_SERVER`` names one explicitly)."""
    override = os.environ.get(REDIS_SERVER_VARIABLE)
    if override is not None:
        if _is_executable(override):
            return Path(override)
        raise MissingServerBinary("redis-server", f"{REDIS_SERVER_VARIABLE}={override}")
    found = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if _is_executable(p)),
        None,
    )
    if found is None:
        raise MissingServerBinary("redis-server", "PATH")
    return Path(found)


# --- process plumbing -------------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec function asking Linux to SIGKILL the child when its parent dies.

    Resolved before fork, so the child only makes one libc call. Runs after the setuid that
    ``subprocess`` does for ``user=``, because a credential change clears the setting.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return set_pdeathsig


def _server_env() -> dict[str, str]:
    # Drop PG* variables (PGDATA, PGPORT, PGHOST...) that would redirect initdb or clients.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _stop_process_group(proc: subprocess.Popen[bytes], first_signal: int) -> None:
    """Signal the whole group, wait, then SIGKILL whatever is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, first_signal)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    # The leader may be gone while children linger (a postgres backend); sweep the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(STOP_TIMEOUT)


def _wait_until(
    ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, log_path: Path
) -> None:
    """Poll ``ready`` until it holds, the process exits, or START_TIMEOUT passes."""
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.005
    while True:
        if proc.poll() is not None:
            raise ServerStartError(f"{what} exited with status {proc.returncode}", log_path)
        if ready():
            return
        if time.monotonic() > deadline:
            raise ServerStartError(f"{what} not ready after {START_TIMEOUT:.0f}s", log_path)
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _accepts_tcp(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def _run_async(make_coro: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine on a private event loop in a worker thread.

    Safe to call from synchronous fixtures whether or not the test's own loop is running.
    """
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(make_coro()))
        except BaseException as exc:  # handed back to the caller's thread and re-raised there
            error.append(exc)

    thread = threading.Thread(target=target, name="tests.servers-admin")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


# --- PostgreSQL -------------------------------------------------------------------------


class PostgresServer:
    """A throwaway PostgreSQL cluster: ``start()``, hand out URLs, ``stop()``.

    Durability is switched off (fsync, full-page writes, synchronous commit): the data dies
    with the test session, and these are what make CREATE DATABASE and commits fast.

    ``base_dir`` holds the logs and, normally, the cluster. As root the cluster lives in its
    own ``postgres``-owned directory under the system temp dir instead (``base_dir/cluster``
    links to it), removed by ``stop()``: the server runs as ``postgres``, which cannot reach
    into root's private pytest tree, and making that tree traversable does not last, since
    every pytest session that starts makes ``/tmp/pytest-of-root`` private again, under a
    running server's feet.
    """

    def __init__(self, base_dir: Path, *, port: int | None = None, keep_data: bool = False) -> None:
        self.bindir = find_postgres_bindir()
        self.keep_data = keep_data
        self.base_dir = Path(base_dir)
        self.cluster_dir = self.base_dir / "cluster"
        self.log_path = self.base_dir / "postgres.log"
        self.requested_port = port
        self.port = 0
        self.user = POSTGRES_USER
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as: dict[str, Any] = {}
        self._owns_external_cluster = False
        self._names = itertools.count(1)

    @property
    def data_dir(self) -> Path:
        return self.cluster_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.cluster_dir / "sock"

    # URLs ------------------------------------------------------------------------------

    def url(self, database: str = DEFAULT_DATABASE, driver: str = "asyncpg") -> str:
        """SQLAlchemy URL, e.g. ``postgresql+asyncpg://postgres@127.0.0.1:PORT/db``."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}@{LOOPBACK}:{self.port}/{database}"

    def dsn(self, database: str = DEFAULT_DATABASE) -> str:
        """libpq / asyncpg DSN, ``postgresql://postgres@127.0.0.1:PORT/db``."""
        return self.url(database, driver="")

    # lifecycle -------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._prepare_cluster_dir()
            self._initdb()
            for attempt in range(1, START_ATTEMPTS + 1):
                self.port = self.requested_port or free_port()
                try:
                    self._start_postmaster()
                    break
                except ServerStartError:
                    self._stop_postmaster()
                    if self.requested_port or attempt == START_ATTEMPTS:
                        raise
            self.create_database(DEFAULT_DATABASE)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server and remove a cluster directory outside ``base_dir``."""
        self._stop_postmaster()
        if self._owns_external_cluster and not self.keep_data:
            shutil.rmtree(self.cluster_dir.resolve(), ignore_errors=True)
            self.cluster_dir.unlink(missing_ok=True)
            self._owns_external_cluster = False

    def _stop_postmaster(self) -> None:
        if self._proc is not None:
            # SIGQUIT is immediate shutdown: no checkpoint, which we would throw away anyway.
            _stop_process_group(self._proc, signal.SIGQUIT)
            self._proc = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _prepare_cluster_dir(self) -> None:
        if os.geteuid() != 0:
            # Not root: the server runs as ourselves, which PostgreSQL accepts; the superuser
            # role is still named `postgres` (initdb --username).
            self.cluster_dir.mkdir()
            return
        try:
            entry = pwd.getpwnam(POSTGRES_USER)
        except KeyError:
            raise MissingServerBinary(
                f"the `{POSTGRES_USER}` system user (PostgreSQL refuses to run as root)",
                "/etc/passwd",
            ) from None
        self._run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        # mkdtemp makes it 0700; the temp dir itself (/tmp, 1777) is traversable by anyone.
        external = Path(tempfile.mkdtemp(prefix="consentry-pg-"))
        os.chown(external, entry.pw_uid, entry.pw_gid)
        self._owns_external_cluster = True
        self.cluster_dir.symlink_to(external)

    def _popen(self, args: list[str], log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_server_env(),
            cwd=self.cluster_dir.resolve(),  # a directory the server's user can reach
            start_new_session=True,  # own process group: stop() kills it whole
            preexec_fn=_parent_death_signal(),
            **self._run_as,
        )

    def _initdb(self) -> None:
        args = [
            str(self.bindir / "initdb"),
            "--pgdata", str(self.data_dir.resolve()),
            "--username", POSTGRES_USER,  # superuser name, whoever runs the server
            "--auth", "trust",
            "--encoding", "UTF8",
            "--locale", "C",
            "--no-sync",  # fsync of a throwaway cluster is most of initdb's time
            "--no-instructions",
        ]  # fmt: skip
        log_path = self.base_dir / "initdb.log"
        with open(log_path, "wb") as log:
            proc = self._popen(args, log)
            try:
                status = proc.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                _stop_process_group(proc, signal.SIGKILL)
                raise ServerStartError("initdb timed out", log_path) from None
        if status != 0:
            raise ServerStartError(f"initdb exited with status {status}", log_path)

    def _start_postmaster(self) -> None:
        self.socket_dir.mkdir(exist_ok=True)
        if self._run_as:
            os.chown(self.socket_dir, self._run_as["user"], self._run_as["group"])
        args = [
            str(self.bindir / "postgres"),
            "-D", str(self.data_dir.resolve()),
            "-p", str(self.port),
            "-k", str(self.socket_dir.resolve()),
            "-c", f"listen_addresses={LOOPBACK}",
            "-c", "fsync=off",
            "-c", "full_page_writes=off",
            "-c", "synchronous_commit=off",
            "-c", "max_connections=200",  # a pool per test database, several workers
            "-c", "timezone=UTC",
            "-c", "log_min_messages=warning",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self._proc = self._popen(args, log)
        _wait_until(self._is_ready, self._proc, f"postgres on port {self.port}", self.log_path)

    def _is_ready(self) -> bool:
        # The postmaster writes "ready" as the 8th line of postmaster.pid once it accepts
        # connections (this is what `pg_ctl -w` waits for); then check the TCP port itself.
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready" and _accepts_tcp(self.port)

    # databases -------------------------------------------------------------------------

    def unique_database_name(self, prefix: str = "t") -> str:
        return f"{prefix}_{next(self._names)}_{uuid.uuid4().hex[:8]}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name`` (optionally from ``template``); returns its URL."""
        statement = f'CREATE DATABASE "{_identifier(name)}"'
        if template:
            statement += f' TEMPLATE "{_identifier(template)}"'
        self.execute(statement)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever is still connected (a test's leaked pool)."""
        self.execute(f'DROP DATABASE IF EXISTS "{_identifier(name)}" WITH (FORCE)')

    def execute(self, statement: str, database: str = "postgres") -> None:
        """Run one SQL statement as the superuser, synchronously."""
        import asyncpg

        async def run() -> None:
            connection = await asyncpg.connect(self.dsn(database), timeout=START_TIMEOUT)
            try:
                await connection.execute(statement)
            finally:
                await connection.close()

        _run_async(run)


def _identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


# --- Redis ------------------------------------------------------------------------------


class RedisServer:
    """A throwaway redis-server: no persistence, loopback only."""

    def __init__(self, base_dir: Path, *, port: int | None = None) -> None:
        self.binary = find_redis_server()
        self.base_dir = Path(base_dir)
        self.log_path = self.base_dir / "redis.log"
        self.requested_port = port
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{LOOPBACK}:{self.port}/{db}"

    def start(self) -> RedisServer:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = self.requested_port or free_port()
            try:
                self._start()
                return self
            except ServerStartError:
                self.stop()
                if self.requested_port or attempt == START_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _start(self) -> None:
        args = [
            str(self.binary),
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.base_dir),
            "--daemonize", "no",
            "--logfile", "",  # log to stdout, which goes to redis.log
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                start_new_session=True,
                preexec_fn=_parent_death_signal(),
            )
        _wait_until(
            self._answers_ping, self._proc, f"redis-server on port {self.port}", self.log_path
        )

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def flushall(self) -> None:
        """Empty every database (per-test reset)."""
        import redis

        client = redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=START_TIMEOUT)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        if self._proc is not None:
            # SIGKILL: there is nothing to save and no reason to wait for a clean exit.
            _stop_process_group(self._proc, signal.SIGKILL)
            self._proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- command line -----------------------------------------------------------------------


@contextlib.contextmanager
def _scratch_dir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="consentry-server-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.servers",
        description="Start a throwaway server, print its URL, serve until interrupted.",
    )
    parser.add_argument("server", choices=["postgres", "redis"])
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())

    try:
        with _scratch_dir(args.keep) as base:
            server: PostgresServer | RedisServer
            if args.server == "postgres":
                server = PostgresServer(base, port=args.port, keep_data=args.keep)
            else:
                server = RedisServer(base, port=args.port)
            with server:
                print(server.url(), flush=True)
                print(f"data in {base}; Ctrl-C or SIGTERM stops it", file=sys.stderr, flush=True)
                stop.wait()
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
