"""`dexecutor bench`: the load benchmark, run against the whole stack on this machine.

Each scenario starts real `dexecutor api` / `dexecutor worker` processes on a fresh
database and Redis namespace, drives them, and reads what happened from the stored
events (PostgreSQL is the truth; timestamps are taken by the engine). Scenarios:

1. submission   POST throughput and latency (wrk, 64 connections), worker running
2. end-to-end   default latencies and cap: orders/minute against 10 / mean venue
                latency (quote round + swap), and the peak executing count
3. overhead     venue latencies 0, cap 100, 20 ms chain slots: orders/s through the
                whole lifecycle
4. scale        cap 1,000, default latencies, one API and one worker: orders/minute
5. fan-out      N WebSocket watchers on one API process: delivery delay, memory

Rates are steady-state rates (`steady_rate`): the run's tail, when slots empty because
the queue has, is reported beside them as the whole-run rate. Each scenario reports its
median run over `--runs` repetitions as a whole, with every run's row beside it; a run
whose figures cannot be trusted (a non-2xx answer, an accepted order not stored) is
reported as failed. Results go to results.json and a PNG chart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
from redis.asyncio import Redis

from dexecutor import jsoncodec
from dexecutor.store.db import database_name, with_database
from dexecutor.store.migrate import migrate

SCENARIOS = (
    "submission",
    "end-to-end",
    "overhead",
    "scale",
    "chain-quote",
    "fan-out",
    "fan-out-spread",
    "quality",
    "landing",
)
EXECUTING = {"routing", "building", "submitted"}
TERMINAL = ("confirmed", "failed", "cancelled", "expired")


def peak_executing(events: Sequence[Any]) -> int:
    """Most orders in routing/building/submitted at once, from stored event timestamps.

    `events` are rows with order_id, seq, status, at. Leaving is counted before
    entering at equal times, so back-to-back slots do not count twice.
    """
    marks: list[tuple[datetime, int]] = []
    state: dict[Any, str] = {}
    for e in sorted(events, key=lambda r: (r["order_id"], r["seq"])):
        was = state.get(e["order_id"]) in EXECUTING
        now = e["status"] in EXECUTING
        if now and not was:
            marks.append((e["at"], 1))
        elif was and not now:
            marks.append((e["at"], -1))
        state[e["order_id"]] = e["status"]
    level = peak = 0
    for _, delta in sorted(marks, key=lambda m: (m[0], m[1])):
        level += delta
        peak = max(peak, level)
    return peak


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def create_scratch_database(server_dsn: str, prefix: str) -> str:
    """A fresh, migrated database on the server; returns its DSN (benchmarks and tests)."""
    name = f"{prefix}_{uuid4().hex[:12]}"
    admin = await asyncpg.connect(with_database(server_dsn, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = with_database(server_dsn, name)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return dsn


async def drop_scratch_database(server_dsn: str, dsn: str) -> None:
    admin = await asyncpg.connect(with_database(server_dsn, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database_name(dsn)}" WITH (FORCE)')
    finally:
        await admin.close()


async def drop_namespace(redis_url: str, namespace: str) -> None:
    """Delete every Redis key of a namespace (its queue, caches, counters)."""
    redis = Redis.from_url(redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{namespace}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await redis.delete(*keys[i : i + 500])
    finally:
        await redis.aclose()


@dataclass
class Stack:
    """A database, a namespace and the processes of one scenario run."""

    server_dsn: str
    redis_url: str
    env: dict[str, str]
    dsn: str = ""
    namespace: str = ""
    port: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    api_pid: int = 0
    # Each child's stderr, so one that fails to start can say why.
    stderr: dict[int, tuple[str, Any]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self, command: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            **self.env,
            "DATABASE_URL": self.dsn,
            "REDIS_URL": self.redis_url,
            "NAMESPACE": self.namespace,
            "PORT": str(self.port),
            "LOG_LEVEL": "warning",
        }
        errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the stack
        proc = subprocess.Popen(
            [sys.executable, "-m", "dexecutor.cli", command],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,  # its own group: API_PROCESSES children die with it
        )
        self.procs.append(proc)
        self.stderr[proc.pid] = (command, errors)
        if command == "api":
            self.api_pid = proc.pid
        return proc

    async def ready(self, url: str = "", path: str = "/readyz") -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                for proc in self.procs:
                    if proc.poll() is not None:
                        name = self.stderr[proc.pid][0]
                        raise RuntimeError(
                            f"{name} exited with {proc.returncode} at start-up:"
                            f"\n{self.stderr_tail(proc)}"
                        )
                try:
                    if (await client.get((url or self.url) + path)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        tails = "\n".join(f"{self.stderr[p.pid][0]}: {self.stderr_tail(p)}" for p in self.procs)
        raise RuntimeError(f"{url or 'the API'} did not become ready in 30 s; stderr:\n{tails}")

    def stderr_tail(self, proc: subprocess.Popen[bytes], lines: int = 20) -> str:
        _, errors = self.stderr[proc.pid]
        errors.seek(0)
        return "\n".join(errors.read().decode(errors="replace").splitlines()[-lines:])

    async def events(self, user_prefix: str = "") -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch(
                "SELECT e.order_id, e.seq, e.status, e.at FROM order_events e"
                " JOIN orders o ON o.id = e.order_id WHERE o.user_id LIKE $1",
                user_prefix + "%",
            )
        finally:
            await conn.close()

    async def finished(self) -> tuple[int, int]:
        """(terminal orders, all orders)."""
        conn = await asyncpg.connect(self.dsn)
        try:
            row = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE status = ANY($1::text[])) AS done, count(*) AS all"
                " FROM orders",
                list(TERMINAL),
            )
            assert row is not None
            return int(row["done"]), int(row["all"])
        finally:
            await conn.close()

    async def wait_all_terminal(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, total = await self.finished()
            if total and done == total:
                return
            await asyncio.sleep(0.25)  # a benchmark polls the store; it does not assert
        raise TimeoutError("orders did not all finish in time")


@asynccontextmanager
async def stack(server_dsn: str, redis_url: str, **env: str) -> AsyncIterator[Stack]:
    s = Stack(
        server_dsn,
        redis_url,
        {
            "RATE_LIMIT_PER_USER": "0",
            "RATE_LIMIT_PER_ADDRESS": "0",
            "MAX_QUEUE_DEPTH": "100000000",
            # A scenario's user sells thousands of SOL: its wallet starts with enough,
            # so no order of a load test fails for want of funds.
            "DEV_FUNDING": "SOL:100000000,USDC:100000000",
            **env,
        },
    )
    s.dsn = await create_scratch_database(server_dsn, "dexecutor_bench")
    s.namespace = f"bench{uuid4().hex[:8]}"
    s.port = free_port()
    # One chain for the whole deployment: every quote and swap goes through it.
    chain_port = free_port()
    s.env.update(CHAIN_PORT=str(chain_port), CHAIN_URL=f"http://127.0.0.1:{chain_port}")
    try:
        s.spawn("chain")
        await s.ready(s.env["CHAIN_URL"], "/health")
        yield s
    finally:
        for proc in s.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            s.stderr[proc.pid][1].close()
        await drop_scratch_database(server_dsn, s.dsn)
        await drop_namespace(redis_url, s.namespace)


async def submit_many(url: str, n: int, user: str, concurrency: int = 64) -> None:
    body = {"userId": user, "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": 1, "slippageBps": 300}
    payload = jsoncodec.dumps(body)
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one() -> None:
            async with sem:
                r = await client.post(
                    "/api/orders/execute",
                    content=payload,
                    headers={"content-type": "application/json"},
                )
                if r.status_code != 202:
                    raise RuntimeError(f"submission refused: {r.status_code} {r.text[:200]}")

        await asyncio.gather(*(one() for _ in range(n)))


def _span(events: Sequence[asyncpg.Record]) -> float:
    starts = [e["at"] for e in events if e["status"] == "routing"]
    ends = [e["at"] for e in events if e["status"] in TERMINAL]
    return float((max(ends) - min(starts)).total_seconds())


def _timeline(events: Sequence[asyncpg.Record], bucket_s: float = 1.0) -> list[int]:
    """Orders finished per bucket since the first routing event (for the chart)."""
    starts = [e["at"] for e in events if e["status"] == "routing"]
    if not starts:
        return []
    t0 = min(starts)
    ends = sorted((e["at"] - t0).total_seconds() for e in events if e["status"] in TERMINAL)
    counts = [0] * (int(ends[-1] // bucket_s) + 1 if ends else 0)
    for t in ends:
        counts[int(t // bucket_s)] += 1
    return counts


# --- scenarios -----------------------------------------------------------------------

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil,
    '{"userId":"wrk' .. (n % 500) .. '","tokenIn":"SOL","tokenOut":"USDC","amountIn":1}')
end
"""


def _parse_wrk(text: str) -> dict[str, float]:
    """wrk's report: requests answered, non-2xx answers, socket errors, latencies."""
    out: dict[str, float] = {"non_2xx": 0.0, "socket_errors": 0.0}
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    for line in text.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            out["rps_all"] = float(parts[1])
        elif len(parts) >= 4 and parts[1] == "requests" and parts[2] == "in":
            out["requests"] = float(parts[0])
            out["seconds"] = float(parts[3].rstrip(",s"))
        elif len(parts) == 2 and parts[0] in ("50%", "99%"):
            value = parts[1]
            unit = next(u for u in ("us", "ms", "s") if value.endswith(u))
            out[f"p{parts[0][:-1]}_ms"] = float(value[: -len(unit)]) * units[unit]
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            out["non_2xx"] = float(parts[-1])
        elif line.strip().startswith("Socket errors:"):
            # "Socket errors: connect 0, read 0, write 0, timeout 12"
            out["socket_errors"] = float(sum(int(p.rstrip(",")) for p in parts[3::2]))
    if "requests" in out:
        out["ok_2xx"] = out["requests"] - out["non_2xx"]
        out["rps_2xx"] = out["ok_2xx"] / out["seconds"]
    return out


class BenchFailed(Exception):
    """A run whose figures cannot be trusted: refused requests, or orders lost."""


WRK_CONNECTIONS = 64
WARM_UP_S = 3


async def _wrk(url: str, seconds: int, script: str) -> dict[str, float]:
    cmd = [
        "wrk", "-t2", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", script,
        f"{url}/api/orders/execute",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return _parse_wrk(out.decode())


def check_submission(figures: dict[str, Any]) -> list[str]:
    """Why a submission run's figures cannot be trusted; empty when they can.

    Only 2xx answers count as accepted orders, so any other answer fails the run. Each
    accepted order must be stored: at least as many orders as 2xx answers. wrk stops
    with up to one request in flight per connection, which the server may still have
    committed after wrk stopped counting: no more than that many extra.
    """
    problems = []
    if figures.get("non_2xx"):
        problems.append(f"{figures['non_2xx']:.0f} non-2xx answers")
    if figures.get("socket_errors"):
        problems.append(f"{figures['socket_errors']:.0f} socket errors (timeouts included)")
    ok, stored = figures.get("ok_2xx", 0), figures.get("stored_orders", 0)
    if stored < ok:
        problems.append(f"{ok:.0f} orders accepted but only {stored:.0f} stored")
    elif stored > ok + WRK_CONNECTIONS:
        problems.append(f"{stored:.0f} orders stored for {ok:.0f} accepted")
    return problems


async def _settled_count(s: Stack, quiet_s: float = 0.5) -> int:
    """Orders stored once the requests wrk left in flight have been answered."""
    count = (await s.finished())[1]
    while True:
        await asyncio.sleep(quiet_s)  # the store is polled until it stops changing
        now = (await s.finished())[1]
        if now == count:
            return count
        count = now


async def submission(
    server_dsn: str, redis_url: str, seconds: int, api_processes: int
) -> dict[str, Any]:
    """POST throughput counting 2xx only, after a warm-up, checked against the store."""
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    async with stack(server_dsn, redis_url, API_PROCESSES=str(api_processes)) as s:
        s.spawn("api")
        s.spawn("worker")
        await s.ready()
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(WRK_SCRIPT)
        try:
            await _wrk(s.url, WARM_UP_S, script.name)  # connections, pools, caches
            before = await _settled_count(s)
            figures: dict[str, Any] = await _wrk(s.url, seconds, script.name)
        finally:
            os.unlink(script.name)
        figures["stored_orders"] = await _settled_count(s) - before
        figures["api_processes"] = api_processes
        problems = check_submission(figures)
        if problems:
            raise BenchFailed("submission: " + "; ".join(problems) + f" ({figures})")
        return figures


async def _queued_then_executed(
    server_dsn: str, redis_url: str, orders: int, user: str, timeout_s: float, **env: str
) -> list[asyncpg.Record]:
    """Queue `orders` with no worker running, then start one and let it drain the queue.

    Queueing first keeps the worker saturated from its first moment, so the span from
    the first routing event to the last terminal one measures execution alone.
    """
    async with stack(server_dsn, redis_url, **env) as s:
        s.spawn("api")
        await s.ready()
        await submit_many(s.url, orders, user)
        s.spawn("worker")
        await s.wait_all_terminal(timeout_s)
        return await s.events(user)


# The cap of the end-to-end scenario (MAX_CONCURRENT_ORDERS' default).
DEFAULT_CAP = 10


def steady_rate(events: Sequence[asyncpg.Record]) -> float:
    """Orders executed per second while the queue still held work for every slot.

    The window runs from the first routing event to the last order's: until then
    every slot that fell free found an order waiting. Each order counts for the part
    of its execution (routing to terminal) that falls inside the window, so the orders
    still running when it closes count for what they did. Counting only finished ones
    would charge the engine for the run's tail, when slots empty because the queue
    has, and for work half done at the window's end.
    """
    spans = _executions(events)
    start = min(b for b, _ in spans)
    end = max(b for b, _ in spans)
    done = sum(
        (min(e, end) - b).total_seconds() / (e - b).total_seconds()
        for b, e in spans
        if b < end and e > b
    )
    return float(done) / (end - start).total_seconds()


def _executions(events: Sequence[asyncpg.Record]) -> list[tuple[datetime, datetime]]:
    """(first routing, terminal) of every order that finished."""
    began: dict[Any, datetime] = {}
    spans: list[tuple[datetime, datetime]] = []
    for e in sorted(events, key=lambda r: (r["order_id"], r["seq"])):
        if e["status"] == "routing" and e["order_id"] not in began:
            began[e["order_id"]] = e["at"]
        elif e["status"] in TERMINAL and e["order_id"] in began:
            spans.append((began[e["order_id"]], e["at"]))
    return spans


def slot_use(events: Sequence[asyncpg.Record], cap: int) -> float:
    """The steady rate against the most `cap` slots allow (every slot busy all the time,
    each order holding one for the mean slot time): how full the engine kept them."""
    return steady_rate(events) * mean_slot_s(events) / cap


def mean_slot_s(events: Sequence[asyncpg.Record]) -> float:
    """Mean time an order held its slot: first routing event to its terminal event."""
    return statistics.fmean((e - b).total_seconds() for b, e in _executions(events))


async def end_to_end(server_dsn: str, redis_url: str, orders: int) -> dict[str, Any]:
    events = await _queued_then_executed(server_dsn, redis_url, orders, "e2e", orders * 3 + 60)
    per_minute = steady_rate(events) * 60
    # The most the cap allows: every slot busy all the time. A slot holds an order
    # from its first routing to its end (quotes, then the transaction landing as the
    # chain's landing model has it, which no setting fixes), so the bound is the cap
    # over the mean time an order held one, and `of_bound` is how full the engine kept
    # its slots while work waited.
    slot_s = mean_slot_s(events)
    bound = DEFAULT_CAP / slot_s * 60
    return {
        "orders": orders,
        "orders_per_minute": per_minute,
        "bound_per_minute": bound,
        "of_bound": slot_use(events, DEFAULT_CAP),
        "whole_run_per_minute": orders / _span(events) * 60,
        "mean_slot_s": slot_s,
        "peak_executing": peak_executing(events),
        "timeline": _timeline(events),
    }


# The overhead scenario's slot length. A swap reads `confirmed` only from the slot after
# the one it landed in, so at Solana's 400 ms each order would hold its place for
# 0.2-0.4 s of the chain's clock alone: a latency, which this scenario sets to zero.
# 20 ms, the engine's status poll period (`rpc.POLL_S`), and not less: below it the
# poll, not the slot, paces a confirmation (submitted to confirmed took ~60 ms at 10
# and at 20 ms alike), while what runs once a slot (the chain's tick; the engine's
# blockhash, fee bid and block height reads) keeps growing, ~0.1-0.3 ms of CPU more
# per order at 10 ms. Shorter is still correct (the slot is read from the clock, a
# late tick skips slots; the journal saves before any status is shown), only dearer.
OVERHEAD_SLOT_MS = 20
# A blockhash stays valid as long in wall time as at Solana's 150 slots of 400 ms (a
# minute), so no order of a loaded run expires for want of slots.
OVERHEAD_BLOCKHASH_SLOTS = 150 * 400 // OVERHEAD_SLOT_MS


async def overhead(server_dsn: str, redis_url: str, orders: int) -> dict[str, Any]:
    events = await _queued_then_executed(
        server_dsn, redis_url, orders, "ovh", orders / 20 + 60,
        MAX_CONCURRENT_ORDERS="100", MOCK_QUOTE_LATENCY_MS="0", MOCK_SWAP_LATENCY_MS="0",
        CHAIN_SLOT_MS=str(OVERHEAD_SLOT_MS), CHAIN_BLOCKHASH_SLOTS=str(OVERHEAD_BLOCKHASH_SLOTS),
    )  # fmt: skip
    return {
        "orders": orders,
        "orders_per_second": steady_rate(events),
        "whole_run_per_second": orders / _span(events),
        "mean_slot_s": mean_slot_s(events),
        "chain_slot_ms": OVERHEAD_SLOT_MS,
        "peak_executing": peak_executing(events),
        "timeline": _timeline(events),
    }


async def scale(server_dsn: str, redis_url: str, orders: int) -> dict[str, Any]:
    events = await _queued_then_executed(
        server_dsn, redis_url, orders, "scl", orders / 10 + 120,
        MAX_CONCURRENT_ORDERS="1000", PG_POOL_SIZE="40",
    )  # fmt: skip
    return {
        "orders": orders,
        "orders_per_minute": steady_rate(events) * 60,
        "whole_run_per_minute": orders / _span(events) * 60,
        "peak_executing": peak_executing(events),
        "timeline": _timeline(events),
    }


async def chain_quote(server_dsn: str, redis_url: str, quotes: int) -> dict[str, Any]:
    """The cost of one quote through the chain: the engine's client, HTTP, the chain's
    market, back again (quote latency 0, so this is the overhead alone).

    Sequential first (one in flight: the round trip), then 20 in flight (as routing
    does for many orders at once).
    """
    from decimal import Decimal

    from dexecutor.chain.client import ChainClient

    async with stack(server_dsn, redis_url, MOCK_QUOTE_LATENCY_MS="0") as s:
        client = ChainClient(s.env["CHAIN_URL"])
        try:

            async def timed(i: int) -> float:
                started = time.perf_counter()
                venue = ("raydium", "meteora")[i % 2]
                await client.quote(venue, "SOL", "USDC", Decimal(1 + i % 5))
                return (time.perf_counter() - started) * 1000

            for i in range(50):  # warm the connections
                await timed(i)
            alone = [await timed(i) for i in range(quotes)]
            sem = asyncio.Semaphore(20)

            async def limited(i: int) -> float:
                async with sem:
                    return await timed(i)

            started = time.perf_counter()
            loaded = await asyncio.gather(*(limited(i) for i in range(quotes)))
            elapsed = time.perf_counter() - started
        finally:
            await client.close()

    def pct(values: Sequence[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1]

    return {
        "quotes": quotes,
        "p50_ms": pct(alone, 50),
        "p99_ms": pct(alone, 99),
        "loaded_p50_ms": pct(loaded, 50),
        "loaded_p99_ms": pct(loaded, 99),
        "loaded_per_s": quotes / elapsed,
    }


def _rss_mib(pid: int) -> float:
    """Resident memory of the process and its children (the API's worker processes)."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) / 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError):
                total += _rss_mib(int(child))
    return total


def _cpu_s(pid: int) -> float:
    """CPU seconds (user and system) of the process and its children, as `_rss_mib`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError):
                total += _cpu_s(int(child))
    return total


async def fan_out(
    server_dsn: str, redis_url: str, watchers: int, users: int = 1, orders_per_user: int = 4
) -> dict[str, Any]:
    """`watchers` readers of `users` users' streams (round robin); each user places orders.

    One user: every event goes to every watcher (the broadcast worst case). As many
    users as watchers: each event goes to one watcher, and the process mostly holds
    connections.
    """
    from dexecutor.bench_fanout import Watchers

    env = {
        "MOCK_SWAP_LATENCY_MS": "200-300",
        "MOCK_QUOTE_LATENCY_MS": "0",
        "MAX_CONCURRENT_ORDERS": "100",
    }
    async with stack(server_dsn, redis_url, **env) as s:
        s.spawn("api")
        s.spawn("worker")
        await s.ready()
        paths = [f"/ws/orders?userId=fan{i % users}" for i in range(watchers)]
        readers = await Watchers.open("127.0.0.1", s.port, paths, orders_per_user, processes=2)
        try:
            rss_before = _rss_mib(s.api_pid)
            cpu_before = _cpu_s(s.api_pid)
            async with httpx.AsyncClient(base_url=s.url, timeout=120) as client:
                for _ in range(orders_per_user):
                    for u in range(users):
                        await client.post(
                            "/api/orders/execute",
                            json={
                                "userId": f"fan{u}",
                                "tokenIn": "SOL",
                                "tokenOut": "USDC",
                                "amountIn": 1,
                            },
                        )
            try:
                delays = await readers.delays()
            except RuntimeError as err:  # a watcher saw what a client must not
                raise BenchFailed(str(err)) from None
            rss = _rss_mib(s.api_pid)
            cpu = _cpu_s(s.api_pid) - cpu_before
        finally:
            readers.stop()
        delays.sort()
        return {
            "watchers": watchers,
            "users": users,
            "messages": len(delays),
            "delay_p50_ms": delays[len(delays) // 2],
            "delay_p99_ms": delays[int(len(delays) * 0.99) - 1],
            "delay_max_ms": delays[-1],
            "api_rss_mib": rss,
            "api_rss_idle_mib": rss_before,
            # The API's CPU from the first order to the last delivery, per delivery.
            "api_cpu_s": cpu,
            "api_cpu_us_per_message": cpu / max(len(delays), 1) * 1e6,
            "readers_cpu_s": readers.cpu_s,
        }


# --- driver ---------------------------------------------------------------------------


# The figure each scenario is ranked by when its median run is chosen.
PRIMARY = {
    "submission": "rps_2xx",
    "end-to-end": "orders_per_minute",
    "overhead": "orders_per_second",
    "scale": "orders_per_minute",
    "fan-out": "delay_p99_ms",
    "fan-out-spread": "delay_p99_ms",
}


async def _script(path: str) -> dict[str, Any]:
    """A measurement script's `--json` summary, run in a process of its own."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, path, "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def median_run(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run as a whole (ranked by the scenario's primary figure), with every
    run's row beside it: a median per column would mix figures of different runs."""
    key = PRIMARY.get(name)
    ranked = sorted(runs, key=lambda r: r.get(key, 0)) if key else runs
    out = dict(ranked[(len(ranked) - 1) // 2])
    out["runs"] = len(runs)
    out["every_run"] = [{k: v for k, v in r.items() if k != "timeline"} for r in runs]
    return out


async def run_all(
    server_dsn: str,
    redis_url: str,
    runs: int,
    quick: bool,
    only: Sequence[str],
    progress: Callable[[str, int, int], None],
    watchers: int = 0,
    api_processes: int = 2,
) -> dict[str, dict[str, Any]]:
    """Run the chosen scenarios `runs` times each; `progress(text, done, total)` is told
    before each run and once at the end."""
    fans = watchers or (500 if quick else 10_000)
    plans: dict[str, Callable[[], Any]] = {
        "submission": lambda: submission(server_dsn, redis_url, 5 if quick else 10, api_processes),
        "end-to-end": lambda: end_to_end(server_dsn, redis_url, 40 if quick else 200),
        "overhead": lambda: overhead(server_dsn, redis_url, 500 if quick else 3000),
        "scale": lambda: scale(server_dsn, redis_url, 1000 if quick else 5000),
        "chain-quote": lambda: chain_quote(server_dsn, redis_url, 500 if quick else 3000),
        "fan-out": lambda: fan_out(server_dsn, redis_url, fans),
        "fan-out-spread": lambda: fan_out(
            server_dsn, redis_url, fans, users=fans // 10, orders_per_user=1
        ),
        # Execution quality of split routing: in-process, no stack (bench/quality.py).
        "quality": lambda: _script("bench/quality.py"),
        # The chain's landing model against priority fees: in-process (bench/landing.py).
        "landing": lambda: _script("bench/landing.py"),
    }
    assert tuple(plans) == SCENARIOS, "SCENARIOS names every plan"
    chosen = [name for name in plans if not only or name in only]
    total = len(chosen) * runs
    results: dict[str, dict[str, Any]] = {}
    for n, name in enumerate(chosen):
        collected = []
        failed = []
        for i in range(runs):
            progress(f"{name}: run {i + 1}/{runs}", n * runs + i, total)
            try:
                collected.append(await plans[name]())
            except BenchFailed as err:
                failed.append(str(err))
        if not collected:
            results[name] = {"failed": failed, "runs": runs}
            continue
        results[name] = median_run(name, collected)
        if failed:
            results[name]["failed"] = failed  # the run fails; its reasons are reported
    progress("done", total, total)
    return results


def write_results(results: dict[str, dict[str, Any]], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=2, default=str))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return folder
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in ("end-to-end", "overhead", "scale"):
        line = results.get(name, {}).get("timeline")
        if line:
            axes[0].plot(range(len(line)), line, label=name)
    axes[0].set_title("orders finished per second")
    axes[0].set_xlabel("seconds since the first routing event")
    axes[0].legend()
    sub = results.get("submission", {})
    fan = results.get("fan-out", {})
    labels, values = [], []
    for label, value in (
        ("POST p50", sub.get("p50_ms")),
        ("POST p99", sub.get("p99_ms")),
        ("WS p50", fan.get("delay_p50_ms")),
        ("WS p99", fan.get("delay_p99_ms")),
    ):
        if isinstance(value, int | float):
            labels.append(label)
            values.append(value)
    axes[1].bar(labels, values, color=["#4c72b0", "#4c72b0", "#dd8452", "#dd8452"][: len(values)])
    axes[1].set_title("latency (ms)")
    fig.tight_layout()
    fig.savefig(folder / "chart.png", dpi=110)
    plt.close(fig)
    return folder
