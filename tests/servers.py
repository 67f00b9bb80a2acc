"""Real PostgreSQL, redis-server and Postfix processes on loopback, for tests and benchmarks.

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
    python -m tests.servers postfix --relayhost-port 1025   # a relay in front of a capture server
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
from collections.abc import Callable, Coroutine, Iterator, Mapping
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

def start_on_a_free_port(server: Any, start: Callable[[], None], stop: Callable[[], None]) -> None:
    """Run `start` with `server.port` set to the requested port or, when none was asked for,
    a free one; a start that fails (another process took the free port meanwhile) is
    stopped and retried on another, up to START_ATTEMPTS times."""
    for attempt in range(1, START_ATTEMPTS + 1):
        server.port = server.requested_port or free_port()
        try:
            start()
            return
        except ServerStartError:
            stop()
            if server.requested_port or attempt == START_ATTEMPTS:
                raise


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

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int | None = None,
        keep_data: bool = False,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.bindir = find_postgres_bindir()
        self.keep_data = keep_data
        # Extra `-c name=value` server settings, after the defaults below (a later -c wins):
        # a benchmark's A/B of one setting, e.g. {"shared_buffers": "128MB"}.
        self.settings = dict(settings or {})
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
            start_on_a_free_port(self, self._start_postmaster, self._stop_postmaster)
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
        for name, value in self.settings.items():
            args += ["-c", f"{name}={value}"]
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
        start_on_a_free_port(self, self._start, self.stop)
        return self

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


# --- Postfix ----------------------------------------------------------------------------

POSTFIX_USER = "postfix"
POSTFIX_DOMAIN = "consentry.test"  # the SASL realm and the relay's own name; never resolved
RELAY_USER, RELAY_PASSWORD = "mailer", "relay-s3cret"


def find_postfix() -> dict[str, Path]:
    """Debian's Postfix programs (postfix, postmap, master) and Cyrus SASL's saslpasswd2."""
    found = {
        "postfix": shutil.which("postfix") or "/usr/sbin/postfix",
        "postmap": shutil.which("postmap") or "/usr/sbin/postmap",
        "master": "/usr/lib/postfix/sbin/master",
        "saslpasswd2": shutil.which("saslpasswd2") or "/usr/sbin/saslpasswd2",
        "openssl": shutil.which("openssl") or "/usr/bin/openssl",
    }
    missing = [name for name, path in found.items() if not _is_executable(path)]
    if missing:
        raise MissingServerBinary(f"Postfix ({', '.join(missing)})", "PATH, /usr/sbin and /usr/lib/postfix/sbin")
    return {name: Path(path) for name, path in found.items()}


class PostfixServer:
    """A private Postfix instance: the relay of a real deployment, on loopback.

    It listens on a free port of 127.0.0.1 and relays everything it accepts to
    ``relayhost_port`` (a capture server), with what a production relay has:

    - STARTTLS with a certificate for 127.0.0.1 and ``localhost`` issued by a private CA made
      for this instance (``ca_file``): a client that does not trust that CA must refuse it;
    - SASL AUTH (Cyrus SASL, a sasldb of one user), offered only over TLS; relaying only for
      authenticated clients (an anonymous client gets ``554 5.7.1 Relay access denied``);
    - a recipient access map (``set_recipient_access``) for refusals by policy
      (``554 5.7.1 ... Access denied``).

    Everything lives in its own config, queue and data directories, with its own log
    (``maillog``); the system's Postfix configuration is never read or touched. The master
    runs in the foreground in its own process group (killed whole by ``stop()``). Postfix
    starts as root and drops to the ``postfix`` user, which cannot reach into root's private
    pytest tree: like ``PostgresServer``, the instance lives in a directory under the system
    temp dir (``base_dir/instance`` links to it), removed by ``stop()``.
    """

    def __init__(self, base_dir: Path, relayhost_port: int, *, port: int | None = None,
                 user: str = RELAY_USER, password: str = RELAY_PASSWORD) -> None:
        self.programs = find_postfix()
        self.base_dir = Path(base_dir)
        self.relayhost_port = relayhost_port
        self.requested_port = port
        self.port = 0
        self.user = user
        self.password = password
        self.home = self.base_dir / "instance"
        self._external: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # paths and URLs ---------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The instance's real directory: every path Postfix is given is under it, since the
        `postfix` user cannot follow the link through root's private tree."""
        return self._external or self.home

    @property
    def config_dir(self) -> Path:
        return self.root / "conf"

    @property
    def ca_file(self) -> Path:
        """The private CA that issued the relay's certificate (CONSENTRY_SMTP_CA_FILE)."""
        return self.root / "tls" / "ca.pem"

    @property
    def log_path(self) -> Path:
        return self.root / "maillog"

    def url(self, password: str | None = None, *, user: str | None = None, starttls: bool = True) -> str:
        """``smtp://user:password@127.0.0.1:PORT?starttls=true`` (the right credentials unless
        told otherwise; ``user=""`` for none)."""
        user = self.user if user is None else user
        credentials = f"{user}:{self.password if password is None else password}@" if user else ""
        return f"smtp://{credentials}{LOOPBACK}:{self.port}?starttls={'true' if starttls else 'false'}"

    # lifecycle --------------------------------------------------------------------------

    def start(self) -> PostfixServer:
        if os.geteuid() != 0:
            raise ServerError("Postfix's master must start as root (it binds its port, then runs as `postfix`)")
        try:
            entry = pwd.getpwnam(POSTFIX_USER)
        except KeyError:
            raise MissingServerBinary("the `postfix` system user", "/etc/passwd") from None
        self.base_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._external = Path(tempfile.mkdtemp(prefix="consentry-postfix-"))
            self._external.chmod(0o755)  # the postfix user reads its config, certificate and sasldb here
            self.home.symlink_to(self._external)
            for name in ("conf", "conf/sasl", "tls", "queue", "data"):
                (self.root / name).mkdir()
            os.chown(self.root / "data", entry.pw_uid, entry.pw_gid)
            self._make_certificates()
            self._make_sasldb(entry.pw_gid)
            start_on_a_free_port(self, self._start_master, self._stop_master)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._stop_master()
        if self._external is not None:
            shutil.rmtree(self._external, ignore_errors=True)
            self.home.unlink(missing_ok=True)
            self._external = None

    def __enter__(self) -> PostfixServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # configuration ----------------------------------------------------------------------

    def set_recipient_access(self, entries: dict[str, str], *, reload: bool = True) -> None:
        """Write the recipient access map (``{"blocked.example": "REJECT"}``), ``postmap`` it
        and, by default, ``postfix reload`` so that new sessions see it at once."""
        table = self.config_dir / "recipient_access"
        _write_settled(table, "".join(f"{key} {action}\n" for key, action in entries.items()))
        self._run(self.programs["postmap"], "-c", str(self.config_dir), f"hash:{table}")
        if reload:
            self.reload()

    def reload(self) -> None:
        self._run(self.programs["postfix"], "-c", str(self.config_dir), "reload")

    def log_tail(self, limit: int = 4000) -> str:
        return _tail(self.log_path, limit)

    def queued(self) -> int:
        """Messages Postfix holds and has not relayed yet (incoming, active, deferred...)."""
        queue = self.root / "queue"
        return sum(len(files) for name in ("maildrop", "incoming", "active", "deferred", "hold")
                   for _root, _dirs, files in os.walk(queue / name))

    def wait_until_relayed(self, timeout: float = 10.0) -> None:
        """Until the queue is empty: everything accepted was handed to the relayhost (or
        bounced). Raises ServerError with the log tail when it does not drain in time."""
        deadline = time.monotonic() + timeout
        while self.queued():
            if time.monotonic() > deadline:
                raise ServerError(f"postfix still holds {self.queued()} messages after {timeout:.0f}s\n"
                                  f"--- {self.log_path} ---\n{self.log_tail()}")
            time.sleep(0.02)

    def _run(self, *args: Any, stdin: bytes | None = None) -> None:
        result = subprocess.run([str(a) for a in args], input=stdin, capture_output=True, env=_server_env(),
                                timeout=START_TIMEOUT, check=False)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            raise ServerStartError(f"{Path(str(args[0])).name} exited with status {result.returncode}: {output}",
                                   self.log_path)

    def _make_certificates(self) -> None:
        tls, openssl = self.root / "tls", self.programs["openssl"]
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]  # EC: instant to generate
        self._run(openssl, "req", "-x509", *ec, "-days", "2", "-keyout", tls / "ca.key", "-out", tls / "ca.pem",
                  "-subj", "/CN=Consentry test relay CA", "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._run(openssl, "req", *ec, "-keyout", tls / "server.key", "-out", tls / "server.csr", "-subj", "/CN=localhost")
        (tls / "server.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
        self._run(openssl, "x509", "-req", "-in", tls / "server.csr", "-CA", tls / "ca.pem", "-CAkey", tls / "ca.key",
                  "-CAcreateserial", "-days", "2", "-out", tls / "server.pem", "-extfile", tls / "server.ext")

    def _make_sasldb(self, postfix_gid: int) -> None:
        # Debian's Postfix reads the SASL application config from $config_directory/sasl.
        sasldb = self.config_dir / "sasl" / "sasldb2"
        (self.config_dir / "sasl" / "smtpd.conf").write_text(
            f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: {sasldb}\n")
        self._run(self.programs["saslpasswd2"], "-f", sasldb, "-p", "-c", "-u", POSTFIX_DOMAIN, self.user,
                  stdin=self.password.encode())
        os.chown(sasldb, 0, postfix_gid)
        sasldb.chmod(0o640)

    def _write_config(self) -> None:
        home = self.root
        _write_settled(self.config_dir / "main.cf", f"""\
compatibility_level = 3.6
queue_directory = {home}/queue
data_directory = {home}/data
command_directory = /usr/sbin
daemon_directory = {self.programs["master"].parent}
meta_directory = /etc/postfix
mail_owner = {POSTFIX_USER}
setgid_group = postdrop
maillog_file = {home}/maillog
maillog_file_prefixes = {home}
myhostname = relay.{POSTFIX_DOMAIN}
mydomain = {POSTFIX_DOMAIN}
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
biff = no
inet_interfaces = {LOOPBACK}
inet_protocols = ipv4
mynetworks = {LOOPBACK}/32
relayhost = [{LOOPBACK}]:{self.relayhost_port}
smtp_tls_security_level = none
smtpd_tls_security_level = may
smtpd_tls_cert_file = {home}/tls/server.pem
smtpd_tls_key_file = {home}/tls/server.key
smtpd_tls_auth_only = yes
smtpd_tls_received_header = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
smtpd_sasl_local_domain = {POSTFIX_DOMAIN}
smtpd_sasl_security_options = noanonymous
# Relaying for authenticated clients only (mynetworks is not trusted here), then the map.
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access hash:{home}/conf/recipient_access
""")
        # No chroot (the instance's paths are not inside a jail); only the services a relay
        # that hands everything to a relayhost needs.
        _write_settled(self.config_dir / "master.cf", f"""\
{LOOPBACK}:{self.port} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
""")

    def _start_master(self) -> None:
        self._write_config()
        if not (self.config_dir / "recipient_access").exists():
            self.set_recipient_access({}, reload=False)
        # `postfix check` creates the queue's subdirectories with their owners and modes.
        self._run(self.programs["postfix"], "-c", str(self.config_dir), "check")
        with open(self.base_dir / "master.out", "ab") as log:
            self._proc = subprocess.Popen(
                [str(self.programs["master"]), "-c", str(self.config_dir), "-d"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=_server_env(),
                cwd=self.root, start_new_session=True, preexec_fn=_parent_death_signal(),
            )
        _wait_until(lambda: _accepts_tcp(self.port), self._proc, f"postfix on port {self.port}", self.log_path)

    def _stop_master(self) -> None:
        if self._proc is not None:
            # SIGTERM: the master stops its children; its queue dies with the instance.
            _stop_process_group(self._proc, signal.SIGTERM)
            self._proc = None


def _write_settled(path: Path, content: str) -> None:
    """Write a file Postfix will read, dated ten seconds before it was written: Postfix waits
    until a configuration file is older than a second or two (it may still be being
    edited), polling every 0.3 s, which would cost every start and every map change seconds."""
    path.write_text(content)
    written = path.stat()
    os.utime(path, ns=(written.st_atime_ns - 10**10, written.st_mtime_ns - 10**10))


# --- Prometheus -------------------------------------------------------------------------

PROMETHEUS_VARIABLE = "CONSENTRY_TEST_PROMETHEUS"


def find_prometheus() -> Path:
    """Debian's `prometheus` (``CONSENTRY_TEST_PROMETHEUS`` picks another binary)."""
    override = os.environ.get(PROMETHEUS_VARIABLE)
    if override is not None:
        if _is_executable(override):
            return Path(override)
        raise MissingServerBinary("prometheus", f"{PROMETHEUS_VARIABLE}={override}")
    found = shutil.which("prometheus")
    if found is None:
        raise MissingServerBinary("prometheus", "PATH")
    return Path(found)


class PrometheusServer:
    """A throwaway Prometheus scraping ``targets`` (``host:port`` of /metrics endpoints)
    every ``scrape_interval_s``, its TSDB in a temporary directory, its API on loopback.

    ``query(promql)`` asks the HTTP API for an instant vector, as Grafana would.
    """

    def __init__(self, base_dir: Path, targets: dict[str, list[str]], *, scrape_interval_s: float = 1.0,
                 port: int | None = None) -> None:
        self.binary = find_prometheus()
        self.base_dir = Path(base_dir)
        self.targets = targets  # job name -> ["127.0.0.1:PORT", ...]
        self.scrape_interval_s = scrape_interval_s
        self.log_path = self.base_dir / "prometheus.log"
        self.requested_port = port
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _config(self) -> str:
        interval = f"{int(self.scrape_interval_s * 1000)}ms"
        jobs = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: [{', '.join(repr(t) for t in targets)}]\n"
            for job, targets in self.targets.items()
        )
        return f"global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\nscrape_configs:\n{jobs}"

    def start(self) -> PrometheusServer:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "prometheus.yml").write_text(self._config())
        start_on_a_free_port(self, self._start, self.stop)
        return self

    def _start(self) -> None:
        args = [
            str(self.binary),
            f"--config.file={self.base_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.base_dir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--log.level=warn",
        ]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.base_dir,
                start_new_session=True, preexec_fn=_parent_death_signal(),
            )
        _wait_until(self._is_ready, self._proc, f"prometheus on port {self.port}", self.log_path)

    def _is_ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url()}/-/ready", timeout=0.5) as response:
                return response.status == 200
        except OSError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result of an instant query: ``[{"metric": {...}, "value": [t, "v"]}, ...]``."""
        import json
        import urllib.parse
        import urllib.request

        url = f"{self.url()}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise ServerError(f"prometheus query {promql!r}: {body}")
        return body["data"]["result"]

    def stop(self) -> None:
        if self._proc is not None:
            _stop_process_group(self._proc, signal.SIGTERM)
            self._proc = None

    def __enter__(self) -> PrometheusServer:
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
    parser.add_argument("server", choices=["postgres", "redis", "postfix"])
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--relayhost-port", type=int, default=1025,
                        help="postfix: where on 127.0.0.1 to relay to (default 1025, `consentry capture smtp`)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())

    try:
        with _scratch_dir(args.keep) as base:
            server: PostgresServer | RedisServer | PostfixServer
            if args.server == "postgres":
                server = PostgresServer(base, port=args.port, keep_data=args.keep)
            elif args.server == "postfix":
                server = PostfixServer(base, args.relayhost_port, port=args.port)
            else:
                server = RedisServer(base, port=args.port)
            with server:
                print(server.url(), flush=True)
                if isinstance(server, PostfixServer):
                    print(f"CONSENTRY_SMTP_CA_FILE={server.ca_file}", flush=True)
                print(f"data in {base}; Ctrl-C or SIGTERM stops it", file=sys.stderr, flush=True)
                stop.wait()
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
